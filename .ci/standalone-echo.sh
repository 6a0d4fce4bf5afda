#!/usr/bin/env bash
# Builds and runs kcp-tokio's echo example as a crate of its own whose only dependencies are
# kcp-tokio and tokio: proof that one dependency line (plus the runtime) opens a stream.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
pkg="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$root/kcp-tokio/Cargo.toml" | head -n1)"
mkdir -p "$dir/src"
cp "$root/kcp-tokio/examples/echo.rs" "$dir/src/main.rs"
cp "$root/Cargo.lock" "$dir/Cargo.lock"
cat > "$dir/Cargo.toml" <<TOML
[package]
name = "standalone-echo"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
kcp-tokio = { package = "$pkg", path = "$root/kcp-tokio" }
tokio = { version = "1.47", features = ["rt-multi-thread", "macros", "io-util"] }

[workspace]
TOML
CARGO_TARGET_DIR="$root/target/standalone-echo" cargo run -q --manifest-path "$dir/Cargo.toml"
