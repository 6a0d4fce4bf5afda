#!/bin/bash
# kcp-perf's own memory over a long echo run: a kcp-perf server and an echo client with
# --duration SECS on loopback (defaults otherwise), the client's resident size sampled every
# 5 s from /proc. With round-trip times in a bounded histogram it stays flat.
#
# usage: interop/bench-perf-rss.sh [SECS]   (default 60)
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kcpx-tokio --features perf,impair --example kcp-perf || exit 1
B=target/release/examples/kcp-perf
SECS=${1:-60}
T=$(mktemp -d)
S=
C=
trap 'kill $S $C 2>/dev/null; rm -rf "$T"' EXIT
listening() { grep -q '^listening ' "$1" && [ -z "$(tail -c1 "$1")" ]; }
$B server --listen 127.0.0.1:0 >"$T/s.out" 2>"$T/s.err" &
S=$!
until listening "$T/s.err"; do sleep 0.05; kill -0 $S || exit 1; done
SADDR=$(sed -n 's/^listening //p' "$T/s.err")
$B client --connect "$SADDR" --test echo --msg 64 --duration "$SECS" >"$T/c.out" 2>"$T/c.err" &
C=$!
t=0
while kill -0 $C 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$C/status" 2>/dev/null)
    [ -n "$rss" ] && echo "t=${t}s client RSS ${rss} KiB"
    sleep 5
    t=$((t + 5))
done
wait $C
echo "client exit $?: $(tail -1 "$T/c.out")"
