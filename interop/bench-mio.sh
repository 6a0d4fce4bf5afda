#!/usr/bin/env bash
# kcp-perf client (kcp-tokio's example) against two servers with the same flags: kcp-mio's
# example server (one thread, one mio loop) and kcp-tokio's `kcp-perf server`; loopback.
#
#   interop/bench-mio.sh [REPEATS]      (default 3; each cell is the median of REPEATS runs)
#
# Cells, per server:
#   * sink: client MB/s, server CPU seconds per GiB (utime+stime of the server process from
#     /proc/PID/stat, sampled before the client starts and after it ends), client CPU/GiB;
#   * echo with CONNS sessions at once (default 1000), ECHO_N 64-byte messages each, back to
#     back: RTT p50/p99 over all sessions (client's summary line), server CPU seconds.
#
# Environment: BYTES (sink size, default 256M), CONNS (1000), ECHO_N (20), MTU (1400),
# WND (1024), MODE (fast3), CRYPT (aes), FEC ("10 3"), TIMEOUT (seconds per client run, 120).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
REPEATS=${1:-3}
BYTES=${BYTES:-256M}
CONNS=${CONNS:-1000}
ECHO_N=${ECHO_N:-20}
MTU=${MTU:-1400}
WND=${WND:-1024}
MODE=${MODE:-fast3}
CRYPT=${CRYPT:-aes}
FEC=${FEC:-10 3}
TIMEOUT=${TIMEOUT:-120}
case $REPEATS in ''|*[!0-9]*|0) echo "usage: $0 [REPEATS>=1]" >&2; exit 2;; esac
for t in jq /usr/bin/time timeout; do command -v "$t" >/dev/null || { echo "bench-mio.sh: needs $t" >&2; exit 1; }; done

(cd "$root" && cargo build --release -q -p kcp-tokio --example kcp-perf && cargo build --release -q -p kcp-mio --example server) >&2
tdir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
PERF="$tdir/release/examples/kcp-perf"
MIO="$tdir/release/examples/server"

read -r DS PS <<<"$FEC"
SHARED="--mode $MODE --mtu $MTU --sndwnd $WND --rcvwnd $WND --crypt $CRYPT --key bench --datashard $DS --parityshard $PS"

tmp=$(mktemp -d /tmp/bench-mio.XXXXXX)
spid=
cleanup() { if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; fi; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
tck=$(getconf CLK_TCK)
proc_cpu() { awk -v t="$tck" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); printf "%.3f", (f[12] + f[13]) / t }' "/proc/$1/stat"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else print v[int((NR + 1) / 2)] }'; }
bytes_of() { awk -v s="$1" 'BEGIN { m = 1; u = toupper(substr(s, length(s))); if (u == "K") m = 1024; else if (u == "M") m = 1048576; else if (u == "G") m = 1073741824; if (m > 1) s = substr(s, 1, length(s) - 1); printf "%d", s * m }'; }

start_server() { # IMPL -> $addr, $spid
    : >"$tmp/s.err"
    if [ "$1" = mio ]; then
        # shellcheck disable=SC2086
        "$MIO" --listen 127.0.0.1:0 --json $SHARED >"$tmp/s.out" 2>"$tmp/s.err" &
    else
        # shellcheck disable=SC2086
        "$PERF" server --listen 127.0.0.1:0 --json $SHARED >"$tmp/s.out" 2>"$tmp/s.err" &
    fi
    spid=$!
    addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening //p' "$tmp/s.err")
        [ -n "$addr" ] && return; sleep 0.05
    done
    echo "server did not start: $(cat "$tmp/s.err")" >&2; exit 1
}
stop_server() { kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=; }

# client FLAGS -> $tmp/c.out (JSON lines), $tmp/c.time (user sys), server CPU delta in $scpu
client() {
    local c0 rc=0; c0=$(proc_cpu "$spid")
    # shellcheck disable=SC2086
    /usr/bin/time -f '%U %S' -o "$tmp/c.time" timeout "$TIMEOUT" "$PERF" client --connect "$addr" "$@" --json $SHARED >"$tmp/c.out" 2>"$tmp/c.err" || rc=$?
    sleep 0.2
    scpu=$(awk -v a="$c0" -v b="$(proc_cpu "$spid")" 'BEGIN { printf "%.3f", b - a }')
    [ $rc -eq 0 ] || { echo "client failed ($rc): $(tail -3 "$tmp/c.err")" >&2; exit 1; }
}

gib=$(awk -v b="$(bytes_of "$BYTES")" 'BEGIN { print b / 1073741824 }')
echo "kcp-perf client vs kcp-mio server and kcp-tokio server; $REPEATS runs each, median"
echo "shared flags: $SHARED"
printf '%-6s | %-10s %-12s %-12s | %-9s %-9s %-10s\n' server "sink MB/s" "srv CPU/GiB" "cli CPU/GiB" "echo p50" "echo p99" "echo srv s"
for impl in mio tokio; do
    : >"$tmp/sink"; : >"$tmp/echo"
    for _ in $(seq "$REPEATS"); do
        start_server "$impl"
        client --test sink --bytes "$BYTES" --msg 16K
        mbps=$(jq -r 'select(.summary) | (.mb_per_s // .mbps)' "$tmp/c.out")
        ccpu=$(awk '{ print $1 + $2 }' "$tmp/c.time")
        echo "$mbps $(awk -v s="$scpu" -v g="$gib" 'BEGIN { printf "%.3f", s / g }') $(awk -v s="$ccpu" -v g="$gib" 'BEGIN { printf "%.3f", s / g }')" >>"$tmp/sink"
        stop_server
        start_server "$impl"
        client --test echo --conns "$CONNS" --bytes $((64 * ECHO_N)) --msg 64
        echo "$(jq -r 'select(.summary) | "\(.rtt_p50_us) \(.rtt_p99_us)"' "$tmp/c.out") $scpu" >>"$tmp/echo"
        stop_server
    done
    col() { awk -v c="$2" '{ print $c }' "$1" | median; }
    printf '%-6s | %-10s %-12s %-12s | %-9s %-9s %-10s\n' "$impl" \
        "$(col "$tmp/sink" 1)" "$(col "$tmp/sink" 2)" "$(col "$tmp/sink" 3)" \
        "$(col "$tmp/echo" 1)us" "$(col "$tmp/echo" 2)us" "$(col "$tmp/echo" 3)"
done
