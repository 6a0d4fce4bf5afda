#!/usr/bin/env bash
# kcp-core engine benchmarks next to the same operations in kcp-go v5.6.1, in one run on this
# machine; prints a Markdown table with ratios (kcp-go time / kcp-core time: above 1 means
# kcp-core is faster).
#
# Usage: interop/bench-engine.sh [SECONDS]   (measurement time per benchmark, default 3)
# Needs Go and Debian's kcp-go (.ci/setup.sh). kcp-go's source is copied to a temporary
# GOPATH entry together with engine-bench/engine_bench_test.go and removed afterwards.
set -euo pipefail
secs=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
deb=/usr/share/gocode/src/github.com/xtaci/kcp-go
command -v go >/dev/null 2>&1 || { echo "bench-engine: 'go' not found: run .ci/setup.sh" >&2; exit 2; }
[ -f "$deb/kcp.go" ] || { echo "bench-engine: kcp-go not found at $deb: run .ci/setup.sh" >&2; exit 2; }

echo "== Rust: cargo bench -p kcpx-core --bench engine (measurement ${secs}s)" >&2
(cd "$root" && cargo bench -q -p kcpx-core --bench engine -- --warm-up-time 1 \
    --measurement-time "$secs") >&2
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

echo "== Go: kcp-go v5.6.1 go test -bench (benchtime ${secs}s)" >&2
base_gopath=$("$here/gopath.sh")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pkg="$tmp/src/kcpenginebench"
"$here/kcpgo-scratch.sh" "$pkg"
cp "$here/engine-bench/engine_bench_test.go" "$pkg/"
(cd "$pkg" && GOPATH="$tmp:$base_gopath" GO111MODULE=off GOFLAGS= \
    go test -run '^$' -bench '^BenchmarkEngine' -benchtime "${secs}s" -count 1 .) |
    tee "$tmp/go.txt" >&2

python3 - "$target/criterion" "$tmp/go.txt" <<'PY'
import json, re, sys
crit, gofile = sys.argv[1], sys.argv[2]
go = {}
for line in open(gofile):
    m = re.match(r'BenchmarkEngine(\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op', line)
    if m:
        go[m.group(1)] = float(m.group(3))
def rust(group, param=None):
    path = f"{crit}/{group}/{param}/new/estimates.json" if param else f"{crit}/{group}/new/estimates.json"
    with open(path) as f:
        return json.load(f)["mean"]["point_estimate"]
rows = [
    ("segment encode", ("segment", "encode"), "SegmentEncode"),
    ("input of 1023 ACKs behind a hole, window 1024", ("input_ack_batch", "1024"), "InputAckBatch/1024"),
    ("input of 8191 ACKs behind a hole, window 8192", ("input_ack_batch", "8192"), "InputAckBatch/8192"),
    ("flush, nothing due, window 32", ("flush_nothing_due", "32"), "FlushNothingDue/32"),
    ("flush, nothing due, window 1024", ("flush_nothing_due", "1024"), "FlushNothingDue/1024"),
    ("flush, nothing due, window 8192", ("flush_nothing_due", "8192"), "FlushNothingDue/8192"),
    ("flush of a full window, 1024 x 1376 B", ("flush_full_window", "1024"), "FlushFullWindow/1024"),
    ("flush of a full window, 8192 x 1376 B", ("flush_full_window", "8192"), "FlushFullWindow/8192"),
]
def fmt(ns):
    return f"{ns/1e6:.2f} ms" if ns >= 1e6 else (f"{ns/1e3:.2f} µs" if ns >= 1e3 else f"{ns:.1f} ns")
print("| operation | kcp-go v5.6.1 | kcp-core | ratio (kcp-go / kcp-core) |")
print("|---|---|---|---|")
for name, (g, p), gname in rows:
    r = rust(g, p)
    gv = go.get(gname)
    print(f"| {name} | {fmt(gv) if gv else 'missing'} | {fmt(r)} | {gv / r:.1f}x |" if gv else f"| {name} | missing | {fmt(r)} | n/a |")
PY
