#!/usr/bin/env bash
# Runs the stack where its users are, under emulation:
#   1. the Cortex-M4 firmware (fmt, clippy) on QEMU's mps2-an386 (kcp-core/firmware/run.sh): two engines over
#      a lossy, reordering link, 256 KiB each through the bare engine, kcp-go's packet cipher and
#      FEC 10/3 with the cipher, every byte checked; fails on a non-zero exit or a failed check;
#   2. the kcp-core, kcp-fec and kcp-crypto test suites (unit, property, known-answer vectors,
#      doc tests and the live kcp-go/ikcp.c interop tests, whose peers run natively) on
#      big-endian s390x and on aarch64 under qemu-user, property tests at
#      CROSS_PROPTEST_CASES cases (default 32);
#   3. the whole workspace built for 32-bit PowerPC (no 64-bit atomics), kcp-crypto's unit
#      tests run there under qemu-ppc, and kcp-crypto and kcp-fec built for
#      thumbv7em-none-eabihf (no_std; kcp-fec with alloc).
# Needs what .ci/setup.sh installs. Prints the time of each step.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
t0=$SECONDS
lap() { echo "(step took $((SECONDS - t_step)) s)"; }

export CARGO_TARGET_S390X_UNKNOWN_LINUX_GNU_LINKER=s390x-linux-gnu-gcc
export CARGO_TARGET_S390X_UNKNOWN_LINUX_GNU_RUNNER="qemu-s390x -L /usr/s390x-linux-gnu"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_POWERPC_UNKNOWN_LINUX_GNU_LINKER=powerpc-linux-gnu-gcc
export CARGO_TARGET_POWERPC_UNKNOWN_LINUX_GNU_RUNNER="qemu-ppc -L /usr/powerpc-linux-gnu"

step "firmware on QEMU mps2-an386 (Cortex-M4)"
t_step=$SECONDS
(cd kcp-core/firmware && cargo fmt -- --check && cargo clippy -q --locked --release --bins -- -D warnings)
bash kcp-core/firmware/run.sh
lap

for t in s390x-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    step "kcp-core, kcp-fec, kcp-crypto tests on $t (qemu-user)"
    t_step=$SECONDS
    PROPTEST_CASES=${CROSS_PROPTEST_CASES:-32} \
        cargo test -q -p kcpx-core -p kcpx-fec -p kcpx-crypto --all-features --target "$t"
    lap
done

step "workspace build for powerpc-unknown-linux-gnu (32-bit, no 64-bit atomics)"
t_step=$SECONDS
cargo build -q --workspace --all-features --target powerpc-unknown-linux-gnu
cargo test -q -p kcpx-crypto --all-features --lib --target powerpc-unknown-linux-gnu
lap

step "kcp-crypto and kcp-fec for thumbv7em-none-eabihf (no_std)"
t_step=$SECONDS
cargo build -q -p kcpx-crypto -p kcpx-fec --target thumbv7em-none-eabihf
cargo build -q -p kcpx-crypto --features alloc --target thumbv7em-none-eabihf
lap

step "cross checks passed in $((SECONDS - t0)) s"
