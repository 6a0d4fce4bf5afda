#!/usr/bin/env bash
# Runs every cargo-fuzz target for a few seconds (default 20) on the nightly toolchain.
# Installs nightly and cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for t in $(cargo +nightly fuzz list); do
    echo "fuzz: $t for ${secs}s"
    cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
    # cargo fuzz exits non-zero on a crash; set -e stops the run there.
done
