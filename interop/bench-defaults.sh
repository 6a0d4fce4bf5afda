#!/bin/bash
# Default-configuration throughput over a WAN-like link: a kcp-perf server and client with
# `--defaults` (KcpConfig::default(): fast mode, DEFAULT_WINDOW windows, MTU 1400, no FEC, no
# encryption), a 16 MiB sink through kcp-perf's impairment proxy with 50 ms delay and 1 % loss
# each way (100 ms round trip). With a window argument, the same with `--mode fast --crypt
# null --datashard 0 --parityshard 0 --mtu 1400 --sndwnd W --rcvwnd W` (the defaults with other
# windows), for the window-sizing table in docs/tuning.md.
#
# usage: interop/bench-defaults.sh [WINDOW] [SEED...]
# prints one line per seed: throughput, retransmissions, peak RSS of client and server.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kcpx-tokio --features perf,impair --example kcp-perf || exit 1
B=target/release/examples/kcp-perf
W=${1:-defaults}
shift || true
SEEDS=${*:-1 2 3}
if [ "$W" = defaults ]; then
    FL=(--defaults)
else
    FL=(--mode fast --crypt null --datashard 0 --parityshard 0 --mtu 1400 --sndwnd "$W" --rcvwnd "$W")
fi
T=$(mktemp -d)
S=
P=
trap 'kill $S $P 2>/dev/null; rm -rf "$T"' EXIT
# Whether a process printed its whole `listening ADDR` line (stderr may arrive in pieces).
listening() { grep -q '^listening ' "$1" && [ -z "$(tail -c1 "$1")" ]; }
for seed in $SEEDS; do
    rm -f "$T"/*
    $B server --json --listen 127.0.0.1:0 "${FL[@]}" >"$T/s.out" 2>"$T/s.err" &
    S=$!
    until listening "$T/s.err"; do sleep 0.05; kill -0 $S || exit 1; done
    SADDR=$(sed -n 's/^listening //p' "$T/s.err")
    $B proxy --listen 127.0.0.1:0 --forward "$SADDR" --delay 50 --loss 1 --seed "$seed" 2>"$T/p.err" &
    P=$!
    until listening "$T/p.err"; do sleep 0.05; kill -0 $P || { cat "$T/p.err"; exit 1; }; done
    PADDR=$(sed -n 's/^listening //p' "$T/p.err")
    timeout 300 $B client --json --connect "$PADDR" --test sink --bytes 16M "${FL[@]}" >"$T/c.out" 2>"$T/c.err" ||
        echo "seed $seed: client failed: $(cat "$T/c.err")"
    for _ in $(seq 100); do grep -q '"role"' "$T/s.out" && break; sleep 0.1; done
    c=$(grep -v summary "$T/c.out" | tail -1)
    s=$(grep '"role"' "$T/s.out" | head -1)
    kill $S $P
    wait $S $P 2>/dev/null
    S=
    P=
    field() { grep -oE "\"$1\":[^,}]*" <<<"$2" | cut -d: -f2; }
    echo "window $W seed $seed: $(field mb_per_s "$c") MB/s, retrans $(field retrans "$c"), ok $(field ok "$c"), peak RSS client $(field peak_rss_kb "$c") KiB server $(field peak_rss_kb "$s") KiB"
done
