#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine:
#   - Debian's golang-go and golang-github-xtaci-kcp-dev (kcp-go v5.6.1, the reference peer),
#     golang-github-xtaci-smux-dev and golang-github-golang-snappy-dev (the smux/snappy peer)
#   - Debian's kcptun (20210922: kcptun-client and kcptun-server, the tunnel's reference peer)
#   - the PyPI package siokcp (wraps ikcp.c, the C reference peer)
#   - the thumbv7em-none-eabihf target (no_std build check, the QEMU firmware)
#   - the aarch64 Linux, macOS and Windows targets (kcp-tokio is type-checked for them)
#   - Rust 1.89, the declared minimum (`rust-version`), which .ci/test.sh builds with
#   - for .ci/cross.sh: cross gcc and libc for s390x, aarch64 and 32-bit PowerPC Linux, QEMU's
#     user-mode emulators and its Arm system emulator, and the s390x and powerpc targets
#   - socket buffers of up to 32 MiB (net.core.rmem_max, wmem_max; Linux's default is 208 KiB):
#     the flood and bulk tests send bursts of megabytes to one socket over loopback, and the
#     stack asks for a receive buffer that holds its receive window
# Idempotent: each step is skipped when its result is already present.
set -euo pipefail

need_apt=()
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
[ -d /usr/share/gocode/src/github.com/xtaci/kcp-go ] || need_apt+=(golang-github-xtaci-kcp-dev)
[ -d /usr/share/gocode/src/github.com/xtaci/smux ] || need_apt+=(golang-github-xtaci-smux-dev)
[ -d /usr/share/gocode/src/github.com/golang/snappy ] || need_apt+=(golang-github-golang-snappy-dev)
# Debian's kcptun (kcptun-client, kcptun-server): the tunnel's interop peer.
command -v kcptun-client >/dev/null 2>&1 && command -v kcptun-server >/dev/null 2>&1 || need_apt+=(kcptun)
for arch in s390x:s390x aarch64:arm64 powerpc:powerpc; do
    gnu=${arch%%:*} deb=${arch##*:}
    command -v "$gnu-linux-gnu-gcc" >/dev/null 2>&1 || need_apt+=("gcc-$gnu-linux-gnu")
    [ -e "/usr/$gnu-linux-gnu/lib/crt1.o" ] || need_apt+=("libc6-dev-$deb-cross")
done
command -v qemu-s390x >/dev/null 2>&1 || need_apt+=(qemu-user)
command -v qemu-system-arm >/dev/null 2>&1 || need_apt+=(qemu-system-arm)
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

if ! python3 -c 'import siokcp' >/dev/null 2>&1; then
    python3 -m pip install -q siokcp
fi

for t in thumbv7em-none-eabihf aarch64-unknown-linux-gnu x86_64-apple-darwin x86_64-pc-windows-gnu \
    s390x-unknown-linux-gnu powerpc-unknown-linux-gnu; do
    if ! rustup target list --installed | grep -qx "$t"; then
        rustup target add "$t"
    fi
done

if ! rustup toolchain list | grep -q '^1\.89[.-]'; then
    rustup toolchain install 1.89 --profile minimal
fi

for k in rmem_max wmem_max; do
    if [ "$(cat /proc/sys/net/core/$k)" -lt 33554432 ]; then
        sysctl -q -w "net.core.$k=33554432"
    fi
done
