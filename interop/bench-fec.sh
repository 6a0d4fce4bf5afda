#!/usr/bin/env bash
# FEC (10,3) encode and decode cost per packet: kcp-fec's criterion benches next to kcp-go
# v5.6.1's BenchmarkFECEncode / BenchmarkFECDecode (1500-byte packets, from Debian's kcp-go
# fec_test.go) and the same two with 1400-byte packets (fec-vectors/kcpshim/bench1400_test.go),
# on this machine in one run. Prints a table; ratio = kcp-go ns/op / Rust ns/op (higher is
# better for Rust; the target is >= 2).
#
# Usage: interop/bench-fec.sh [SECONDS]   (measurement time per benchmark, default 3)
# Needs Go and Debian's kcp-go (.ci/setup.sh). kcp-go's source is copied to a temporary
# GOPATH entry (GOPATH mode) and removed afterwards.
set -euo pipefail
secs=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
deb=/usr/share/gocode/src/github.com/xtaci/kcp-go
command -v go >/dev/null 2>&1 || { echo "bench-fec: 'go' not found: run .ci/setup.sh" >&2; exit 2; }
[ -f "$deb/fec_test.go" ] || { echo "bench-fec: kcp-go not found at $deb: run .ci/setup.sh" >&2; exit 2; }

echo "== Rust: cargo bench -p kcpx-fec --features bench-internals --bench fec (measurement ${secs}s)" >&2
(cd "$root" && cargo bench -q -p kcpx-fec --features bench-internals --bench fec -- --warm-up-time 1 \
    --measurement-time "$secs" '^(encode|decode)/') >&2
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

echo "== Go: kcp-go v5.6.1 go test -bench (benchtime ${secs}s)" >&2
base_gopath=$("$here/gopath.sh")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pkg="$tmp/src/kcpfecbench"
"$here/kcpgo-scratch.sh" "$pkg"
cp "$deb/fec_test.go" "$here/fec-vectors/kcpshim/bench1400_test.go" "$pkg/"
(cd "$pkg" && GOPATH="$tmp:$base_gopath" GO111MODULE=off GOFLAGS= \
    go test -run '^$' -bench '^BenchmarkFEC(En|De)code' -benchtime "${secs}s" -count 1 .) |
    tee "$tmp/go.txt" >&2

python3 - "$target/criterion" "$tmp/go.txt" <<'PY'
import json, re, sys
crit, gofile = sys.argv[1], sys.argv[2]
go = {}
for line in open(gofile):
    m = re.match(r'(BenchmarkFEC\w+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op', line)
    if m:
        go[m.group(1)] = float(m.group(3))
def rust(op, size):
    with open(f"{crit}/{op}/{size}/new/estimates.json") as f:
        return json.load(f)["mean"]["point_estimate"]
rows = [("encode", 1500, "BenchmarkFECEncode"), ("decode", 1500, "BenchmarkFECDecode"),
        ("encode", 1400, "BenchmarkFECEncode1400"), ("decode", 1400, "BenchmarkFECDecode1400")]
print("| (10,3) per packet | bytes | kcp-go v5.6.1 ns/op | kcp-fec ns/op | ratio (kcp-go / Rust) |")
print("|---|---|---|---|---|")
for op, size, gname in rows:
    r, g = rust(op, size), go.get(gname)
    ratio = f"{g / r:.2f}x" if g else "n/a"
    gs = f"{g:.1f}" if g else "missing"
    print(f"| {op} | {size} | {gs} | {r:.1f} | {ratio} |")
PY
