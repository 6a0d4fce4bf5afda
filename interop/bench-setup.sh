#!/usr/bin/env bash
# Installs what interop/bench-perf.sh needs on a fresh Debian machine (run as root; not part
# of CI): iperf3 (raw-UDP reference), jq (the scripts read JSON), GNU time (client CPU),
# procps (pgrep, ps), Go and Debian's kcp-go v5.6.1 with golang.org/x/crypto (the Go peer,
# interop/kcpperf-go), and, with --perf, linux-perf for profiles (`perf record -g`).
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
if [ "${1:-}" = --perf ] && ! command -v perf >/dev/null 2>&1; then need+=(linux-perf); fi
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # iperf3's package asks whether to start a daemon: no.
    echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi
command -v cargo >/dev/null 2>&1 || echo "bench-setup.sh: cargo not found: install Rust (rustup) to build the Rust side" >&2
here=$(cd "$(dirname "$0")" && pwd)
"$here/build-go.sh" >/dev/null
echo "bench-setup.sh: ready ($(iperf3 --version | head -1 | cut -d' ' -f1-2), $(go version | cut -d' ' -f3), kcp-go $(dpkg-query -W -f '${Version}' golang-github-xtaci-kcp-dev))"
