#!/usr/bin/env bash
# Installs what interop/bench-perf.sh needs on a fresh Debian machine (run as root; not part
# of CI): iperf3 (raw-UDP reference), jq (the scripts read JSON), GNU time (client CPU),
# procps (pgrep, ps), Go and Debian's kcp-go v5.6.1 with golang.org/x/crypto (the Go peer,
# interop/kcpperf-go), smux and snappy (the Go smux peer that build-go.sh also builds), and,
# with --perf, linux-perf for profiles (`perf record -g`).
# It also raises net.core.rmem_max and wmem_max to 32 MiB where they are lower: a receiver
# asks for a socket buffer that holds its receive window (8192 x 1400 bytes in the sink
# tables), which the kernel's default cap (208 KiB) would cut; kcp-go, kcp-perf-go and
# iperf3 still ask for their own 4 MiB.
# Rust (cargo) is expected to be there already, as for the rest of the workspace.
# Idempotent: installs only what is missing, and runs `apt-get update` only then.
#
#   interop/bench-setup.sh [--perf]
set -euo pipefail
need=()
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v jq >/dev/null 2>&1 || need+=(jq)
[ -x /usr/bin/time ] || need+=(time)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/xtaci/kcp-go ] || need+=(golang-github-xtaci-kcp-dev)
[ -d /usr/share/gocode/src/golang.org/x/crypto/pbkdf2 ] || need+=(golang-golang-x-crypto-dev)
# build-go.sh also builds the smux peer, which the tunnel benchmarks run.
[ -d /usr/share/gocode/src/github.com/xtaci/smux ] || need+=(golang-github-xtaci-smux-dev)
[ -d /usr/share/gocode/src/github.com/golang/snappy ] || need+=(golang-github-golang-snappy-dev)
if [ "${1:-}" = --perf ] && ! command -v perf >/dev/null 2>&1; then need+=(linux-perf); fi
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # iperf3's package asks whether to start a daemon: no.
    echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi
for k in rmem_max wmem_max; do
    if [ "$(cat /proc/sys/net/core/$k)" -lt 33554432 ]; then
        sysctl -q -w "net.core.$k=33554432" || echo "bench-setup.sh: could not raise net.core.$k" >&2
    fi
done
command -v cargo >/dev/null 2>&1 || echo "bench-setup.sh: cargo not found: install Rust (rustup) to build the Rust side" >&2
here=$(cd "$(dirname "$0")" && pwd)
"$here/build-go.sh" >/dev/null
echo "bench-setup.sh: ready ($(iperf3 --version | head -1 | cut -d' ' -f1-2), $(go version | cut -d' ' -f3), kcp-go $(dpkg-query -W -f '${Version}' golang-github-xtaci-kcp-dev))"
