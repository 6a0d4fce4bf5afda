#!/usr/bin/env bash
# Builds the firmware (release, thumbv7em-none-eabihf), boots it on QEMU's mps2-an386
# (Cortex-M4) with semihosting and a time limit, and fails unless the firmware exits with
# status 0 and its report shows every byte checked: three runs of 262144 bytes delivered with
# zero mismatches, and "RESULT: PASS". Prints the report (the figures in docs/benchmarks.md).
# Needs: the thumbv7em-none-eabihf rustup target and qemu-system-arm (.ci/setup.sh).
set -euo pipefail
cd "$(dirname "$0")"
timeout_s=${FIRMWARE_TIMEOUT:-120}

cargo build --release --locked
elf=${CARGO_TARGET_DIR:-target}/thumbv7em-none-eabihf/release/kcp-firmware

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
timeout "$timeout_s" qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
    -monitor none -serial none -semihosting-config enable=on,target=native \
    -icount shift=0 -kernel "$elf" >"$log" 2>&1 || status=$?
cat "$log"

fail() { echo "firmware: FAIL: $*" >&2; exit 1; }
[ "$status" -eq 124 ] && fail "no exit within ${timeout_s}s"
[ "$status" -eq 0 ] || fail "exit status $status"
runs=$(grep -c '^run .*: delivered=262144 mismatches=0 stalled=false ' "$log" || true)
[ "$runs" -eq 3 ] || fail "$runs of 3 runs delivered 262144 bytes with no mismatch"
grep -q '^RESULT: PASS$' "$log" || fail "no RESULT: PASS line"
if command -v llvm-size >/dev/null 2>&1; then
    llvm-size -A "$elf" | grep -E '^(section|\.vector_table|\.text|\.rodata|\.data|\.bss|\.uninit) '
fi
echo "firmware: PASS"
