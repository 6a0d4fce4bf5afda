#!/usr/bin/env bash
# Every test of the project, on a fresh machine: the README's test command.
# Installs what is missing (.ci/setup.sh), then: formatting, clippy (all targets, warnings
# denied), all tests (including the live kcp-go and ikcp.c interop tests, which fail rather than
# skip when a peer is missing), rustdoc with warnings denied, the no_std build for
# thumbv7em-none-eabihf, the cross targets under QEMU (.ci/cross.sh: firmware, s390x, aarch64,
# powerpc), the minimum Rust version (1.89), `cargo package` of every crate, a standalone Tokio
# echo crate, the kcp-perf demo, and a short fuzz smoke run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "install test dependencies"
bash .ci/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt --all -- --check)

step "clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo clippy -p kcpx-core --no-default-features -- -D warnings

step "tests"
cargo test --workspace --all-features

step "rustdoc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

step "MSRV: Rust 1.89 builds every library and binary (all features; tests and benches not included)"
cargo +1.89 check --workspace --all-features

step "cargo package: every published crate packaged and built from its package, against the others (kcp-testkit is test support, publish = false)"
# Verified in a target directory of its own, emptied first: in the shared one, the build of a
# sibling package from the temporary registry (same name and version as an earlier run's) is
# taken as fresh and the verification compiles against stale sources.
# Cargo also unpacks the temporary registry's packages into its registry source cache, keyed
# by the registry's path, and reuses an unpacked copy whose name and version match: a clone at
# a path an earlier run used compiled against that run's sources. Drop our packages' copies.
rm -rf target/package-verify "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/kcpx-*
cargo package --workspace --exclude kcp-testkit --allow-dirty --target-dir target/package-verify

step "no_std build (thumbv7em-none-eabihf, no allocator)"
cargo build -p kcpx-core --no-default-features --target thumbv7em-none-eabihf

step "cross targets: the Cortex-M4 firmware on QEMU, s390x/aarch64 test suites, powerpc and thumbv7em builds"
bash .ci/cross.sh

step "kcp-tokio and kcp-mio type-check for Linux x86_64 and aarch64, macOS and Windows"
for t in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin x86_64-pc-windows-gnu; do
    RUSTFLAGS="-D warnings" cargo check -q -p kcpx-tokio -p kcpx-mio --all-features --all-targets --target "$t"
done

step "a Tokio echo program with kcp-tokio and tokio as its only dependencies"
bash .ci/standalone-echo.sh

step "kcp-perf demo (the README's main job)"
cargo run --release -q -p kcpx-tokio --example kcp-perf -- demo

step "fuzz smoke run"
bash .ci/fuzz-smoke.sh "${FUZZ_SECONDS:-20}"

step "all checks passed"
