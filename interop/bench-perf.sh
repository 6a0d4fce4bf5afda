#!/usr/bin/env bash
# Side-by-side benchmark: our Rust kcp-perf vs kcp-perf-go (Debian's kcp-go v5.6.1),
# on loopback, one session at a time.
#
#   interop/bench-perf.sh [REPEATS]      (default 3; each cell is the median of REPEATS runs)
#
# Cells:
#   * sink throughput (client's MB/s) and CPU seconds per GiB for three packet setups:
#     null (no cipher, no FEC), aes (no FEC), aes + FEC 10/3. Same-implementation pairs
#     (Rust<->Rust, Go<->Go) give throughput and CPU; the cross pairs (Rust client -> Go
#     server, Go client -> Rust server) give throughput only.
#   * echo RTT p50/p99 of ECHO_N back-to-back 64-byte messages (aes + FEC 10/3), and a
#     paced variant (--rate 100, Rust only: kcp-perf-go has no --rate).
#
# CPU per GiB counts both ends: client CPU (user+sys of the whole client process, from
# /usr/bin/time) + server CPU (utime+stime of the server process from /proc/PID/stat, sampled
# just before the client starts and after the server has reported the session). Every run
# gets a fresh server, killed afterwards.
#
# Environment: BYTES (sink size, default 256M), ECHO_N (default 2000), PACED_N (default 300),
# MTU (default 1400), WND (default 1024), MODE (default fast3), NICE (niceness, default 0),
# RUST (path of kcp-perf; built with cargo if unset), GO_PERF (path of kcp-perf-go; built
# with interop/build-go.sh if unset), TIMEOUT (seconds per client run, default 90).
# Ratios: throughput Rust/Go, CPU/GiB Go/Rust, RTT Go/Rust: > 1 always means Rust is better.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
REPEATS=${1:-3}
BYTES=${BYTES:-256M}
ECHO_N=${ECHO_N:-2000}
PACED_N=${PACED_N:-300}
MTU=${MTU:-1400}
WND=${WND:-1024}
MODE=${MODE:-fast3}
NICE=${NICE:-0}
TIMEOUT=${TIMEOUT:-90}
case $REPEATS in ''|*[!0-9]*|0) echo "usage: $0 [REPEATS>=1]" >&2; exit 2;; esac

for t in jq /usr/bin/time timeout; do command -v "$t" >/dev/null || { echo "bench-perf.sh: needs $t" >&2; exit 1; }; done
if [ -z "${RUST:-}" ]; then
    (cd "$root" && cargo build --release -q -p kcp-tokio --example kcp-perf) >&2
    tdir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
    RUST="$tdir/release/examples/kcp-perf"
fi
GO_PERF=${GO_PERF:-$("$here/build-go.sh")}
[ -x "$RUST" ] && [ -x "$GO_PERF" ] || { echo "bench-perf.sh: missing binaries" >&2; exit 1; }

tmp=$(mktemp -d /tmp/bench-perf.XXXXXX)
spid=
cleanup() { if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; fi; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
tck=$(getconf CLK_TCK)
bin() { if [ "$1" = rust ]; then echo "$RUST"; else echo "$GO_PERF"; fi; }
shortbin() { if [ "$1" = rust ]; then echo kcp-perf; else echo kcp-perf-go; fi; }
proc_cpu() { awk -v t="$tck" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); printf "%.3f", (f[12] + f[13]) / t }' "/proc/$1/stat" 2>/dev/null || echo dead; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
bytes_of() { awk -v s="$1" 'BEGIN { m = 1; u = toupper(substr(s, length(s))); if (u == "K") m = 1024; else if (u == "M") m = 1048576; else if (u == "G") m = 1073741824; if (m > 1) s = substr(s, 1, length(s) - 1); printf "%d", s * m }'; }

declare -A CMDS=()   # one example command line per (setup) for the report

# run_one SERVER_IMPL CLIENT_IMPL "SHARED FLAGS" "CLIENT FLAGS" -> $tmp/run: mbps p50 p99 cpu_client cpu_server ok
# (not run in a subshell, so that the EXIT trap sees $spid)
run_one() {
    local simpl=$1 cimpl=$2 shared=$3 cflags=$4
    : >"$tmp/s.out"; : >"$tmp/s.err"
    # shellcheck disable=SC2086
    nice -n "$NICE" "$(bin "$simpl")" server --listen 127.0.0.1:0 --json $shared >"$tmp/s.out" 2>"$tmp/s.err" &
    spid=$!
    local addr="" i
    for i in $(seq 100); do
        addr=$(sed -n 's/^listening //p' "$tmp/s.err")
        [ -n "$addr" ] && break; sleep 0.05
    done
    [ -n "$addr" ] || { echo "server did not start: $(cat "$tmp/s.err")" >&2; kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=; echo "0 0 0 0 0 false" >"$tmp/run"; return; }
    local c0; c0=$(proc_cpu "$spid")
    local rc=0
    # shellcheck disable=SC2086
    /usr/bin/time -f '%U %S' -o "$tmp/c.time" timeout "$TIMEOUT" nice -n "$NICE" "$(bin "$cimpl")" client --connect "$addr" $cflags --json $shared >"$tmp/c.out" 2>"$tmp/c.err" || rc=$?
    # wait (up to 3 s) for the server's report of this session
    for i in $(seq 60); do grep -q '"role":"server"' "$tmp/s.out" && break; sleep 0.05; done
    local c1; c1=$(proc_cpu "$spid")
    [ "$c1" != dead ] || { echo "server died: $(tail -3 "$tmp/s.err" | tr '\n' ' ')" >&2; rc=99; }
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=
    local line; line=$(grep '"role":"client"' "$tmp/c.out" | tail -1 || true)
    if [ "$rc" != 0 ] || [ -z "$line" ] || [ "$(jq -r .ok <<<"$line")" != true ]; then
        echo "run failed ($(shortbin "$cimpl") client -> $(shortbin "$simpl") server, $cflags $shared, rc $rc): $(tail -3 "$tmp/c.err" | tr '\n' ' ')" >&2
        echo "0 0 0 0 0 false" >"$tmp/run"; return
    fi
    local ccpu; ccpu=$(awk '{ printf "%.3f", $1 + $2 }' "$tmp/c.time" 2>/dev/null || echo 0)
    echo "$(jq -r '"\(.mb_per_s) \(.rtt_p50_us) \(.rtt_p99_us)"' <<<"$line") $ccpu $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }') true" >"$tmp/run"
}

# cell SERVER CLIENT SHARED CFLAGS -> sets MB P50 P99 CPUGIB (medians) and FAILS
cell() {
    local s=$1 c=$2 shared=$3 cflags=$4 gib r
    gib=$(awk -v b="$(bytes_of "${5:-0}")" 'BEGIN { printf "%.6f", b / 1073741824 }')
    : >"$tmp/cell"
    FAILS=0
    for r in $(seq "$REPEATS"); do
        run_one "$s" "$c" "$shared" "$cflags"
        local out; out=$(cat "$tmp/run")
        echo "$out" >>"$tmp/cell"
        [ "${out##* }" = true ] || FAILS=$((FAILS + 1))
        echo "  $(shortbin "$c") -> $(shortbin "$s") [$cflags] run $r: $out" >&2
    done
    MB=$(awk '$6 == "true" { printf "%.1f\n", $1 }' "$tmp/cell" | median)
    # slow outliers: runs under half the cell's median throughput (e.g. kcp-go's 7 s window-probe stall)
    local slow; slow=$(awk -v m="$MB" '$6 == "true" && m > 0 && $1 < m / 2 { printf "%s%.1f", (n++ ? ", " : ""), $1 }' "$tmp/cell")
    [ -z "$slow" ] || [ "$gib" = 0.000000 ] || NOTES+=("$(shortbin "$c") client -> $(shortbin "$s") server, ${3#"$win "}: slow run(s) at $slow MB/s (cell median $MB)")
    P50=$(awk '$6 == "true" { print $2 }' "$tmp/cell" | median)
    P99=$(awk '$6 == "true" { print $3 }' "$tmp/cell" | median)
    CPU=$(awk '$6 == "true" { print $4 + $5 }' "$tmp/cell" | median)
    CPUGIB=$(awk -v c="$CPU" -v g="$gib" 'BEGIN { if (g > 0 && c ~ /^[0-9.]+$/) printf "%.2f", c / g; else print "n/a" }')
}

win="--mode $MODE --mtu $MTU --sndwnd $WND --rcvwnd $WND"
declare -a SETUPS=("null|--crypt null --datashard 0 --parityshard 0"
                   "aes|--crypt aes --datashard 0 --parityshard 0"
                   "aes + FEC 10/3|--crypt aes --datashard 10 --parityshard 3")
sinkflags="--test sink --bytes $BYTES --msg 16K"
started=$(date -u +%s)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "bench-perf: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), repeats $REPEATS, sink $BYTES" >&2

rows=()
NOTES=()
fails_total=0
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for setup in "${SETUPS[@]}"; do
    name=${setup%%|*}; flags="$win ${setup#*|}"
    cell rust rust "$flags" "$sinkflags" "$BYTES"; r_mb=$MB; r_cpu=$CPUGIB; fails_total=$((fails_total + FAILS))
    cell go go "$flags" "$sinkflags" "$BYTES"; g_mb=$MB; g_cpu=$CPUGIB; fails_total=$((fails_total + FAILS))
    cell go rust "$flags" "$sinkflags" "$BYTES"; rg_mb=$MB; fails_total=$((fails_total + FAILS))
    cell rust go "$flags" "$sinkflags" "$BYTES"; gr_mb=$MB; fails_total=$((fails_total + FAILS))
    rows+=("| sink $name: MB/s (client) | $r_mb | $g_mb | $(ratio "$r_mb" "$g_mb") | $rg_mb | $gr_mb |")
    rows+=("| sink $name: CPU s/GiB (client+server) | $r_cpu | $g_cpu | $(ratio "$g_cpu" "$r_cpu") | | |")
    CMDS[$name]="$flags"
done

echoflags="--test echo --bytes $((ECHO_N * 64)) --msg 64"
eflags="$win --crypt aes --datashard 10 --parityshard 3"
cell rust rust "$eflags" "$echoflags"; r50=$P50; r99=$P99; fails_total=$((fails_total + FAILS))
cell go go "$eflags" "$echoflags"; g50=$P50; g99=$P99; fails_total=$((fails_total + FAILS))
rows+=("| echo $ECHO_N x 64 B back to back, aes + FEC 10/3: RTT p50 µs | $r50 | $g50 | $(ratio "$g50" "$r50") | | |")
rows+=("| echo $ECHO_N x 64 B back to back, aes + FEC 10/3: RTT p99 µs | $r99 | $g99 | $(ratio "$g99" "$r99") | | |")
pacedflags="--test echo --bytes $((PACED_N * 64)) --msg 64 --rate 100"
cell rust rust "$eflags" "$pacedflags"; fails_total=$((fails_total + FAILS))
rows+=("| echo $PACED_N x 64 B at 100/s (Rust only), aes + FEC 10/3: RTT p50 / p99 µs | $P50 / $P99 | n/a | | | |")

cat <<EOF
Date: $started_at; $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)); load average at start $load0, at end $(cut -d' ' -f1-3 /proc/loadavg); loopback; one session; median of $REPEATS runs per cell; $(( $(date -u +%s) - started )) s in all; failed runs: $fails_total.
Ratios: throughput Rust/Go, CPU/GiB Go/Rust, RTT Go/Rust (> 1 means Rust is better).

| cell | Rust↔Rust | Go↔Go | ratio | Rust client → Go server | Go client → Rust server |
|------|----------:|------:|------:|------------------------:|------------------------:|
EOF
printf '%s\n' "${rows[@]}"
if [ ${#NOTES[@]} -gt 0 ]; then echo; echo "Slow outliers (under half the cell median; the median of 3 is robust to one such run):"; printf -- '- %s\n' "${NOTES[@]}"; fi
cat <<EOF

Commands (each server is fresh per run; the client gets the same shared flags; ADDR is the port the server printed):

    kcp-perf / kcp-perf-go server --listen 127.0.0.1:0 --json SHARED
    kcp-perf / kcp-perf-go client --connect ADDR $sinkflags --json SHARED
    kcp-perf / kcp-perf-go client --connect ADDR $echoflags --json $eflags
    kcp-perf client --connect ADDR $pacedflags --json $eflags
EOF
for setup in "${SETUPS[@]}"; do name=${setup%%|*}; echo "    SHARED ($name) = ${CMDS[$name]}"; done
echo
echo "Client CPU: /usr/bin/time -f '%U %S' (whole process). Server CPU: /proc/PID/stat utime+stime delta around the client run."
[ "$fails_total" = 0 ] || { echo "bench-perf.sh: $fails_total run(s) failed (see stderr)" >&2; exit 1; }
