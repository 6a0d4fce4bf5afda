# Helpers of interop/bench-perf.sh (sourced, not run): servers and clients of the kcp-perf
# protocol on loopback, CPU and memory of their processes, per-run records and medians.
#
# Every run gets a folder $OUT/runN with the commands (s.cmd, c.cmd), the server's and the
# client's stdout/stderr, /usr/bin/time's numbers (c.time) and one JSON record (rec.json);
# cells are files of records (one JSON object per line) that `med` reads.
# shellcheck shell=bash
# shellcheck disable=SC2034  # SCPU0, CRC, ...: set here, read by bench-perf.sh

TCK=$(getconf CLK_TCK)
RUN_N=0
SPID=
CPID=
ADDR=
RUN=

# pin_prefix CPUS: sets PIN_PRE to the words that run a command on CPUS (`taskset -c CPUS`,
# which execs the command, so a PID taken of it stays the command's), or to nothing when CPUS
# is empty. Servers use $PIN_SERVER, clients $PIN_CLIENT (bench-perf.sh).
PIN_PRE=()
pin_prefix() { PIN_PRE=(); [ -z "${1:-}" ] || PIN_PRE=(taskset -c "$1"); }

# CPU seconds (utime+stime, all threads, exited ones included) of a live process.
proc_cpu() {
    awk -v t="$TCK" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); printf "%.3f", (f[12] + f[13]) / t }' "/proc/$1/stat" 2>/dev/null || echo dead
}
# VmHWM / VmRSS of a live process, KiB.
proc_hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
proc_rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# Kernel drops so far, system-wide: UDP RcvbufErrors + SndbufErrors + MemErrors
# (/proc/net/snmp) and packets dropped from full per-CPU backlogs (/proc/net/softnet_stat,
# second column: loopback traffic passes there, netdev_max_backlog deep).
udp_drops() {
    local u b
    u=$(awk '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) n[$i] = i; h = 1 } else print $n["RcvbufErrors"] + $n["SndbufErrors"] + ($n["MemErrors"] ? $n["MemErrors"] : 0) }' /proc/net/snmp)
    b=0
    local _ d
    while read -r _ d _; do b=$((b + 16#$d)); done </proc/net/softnet_stat
    echo $((u + b))
}
# Kernel drops of the UDP sockets a live process holds (the drops column of /proc/net/udp*).
proc_sock_drops() {
    local pid=$1
    [ -d "/proc/$pid/fd" ] || { echo n/a; return; }
    find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' >"$RUN/inodes"
    awk 'NR == FNR { want[$1] = 1; next } FNR > 1 && ($10 in want) { d += $13 } END { print d + 0 }' "$RUN/inodes" /proc/net/udp /proc/net/udp6
}
# The client program itself (/usr/bin/time -> timeout -> client), once started.
client_proc() {
    local p=$CPID i
    for i in 1 2; do p=$(pgrep -P "$p" | head -1) || { echo; return; }; done
    echo "$p"
}
now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "dead" || b == "dead") print "n/a"; else printf "%.3f", a - b }'; }
bytes_of() { awk -v s="$1" 'BEGIN { m = 1; u = toupper(substr(s, length(s))); if (u == "K") m = 1024; else if (u == "M") m = 1048576; else if (u == "G") m = 1073741824; if (m > 1) s = substr(s, 1, length(s) - 1); printf "%d", s * m }'; }

bin_of() {
    case $1 in
        rust|rustp) echo "$RUST" ;;
        go) echo "$GO_PERF" ;;
        mio) echo "$MIO" ;;
        *) echo "bench: unknown implementation $1" >&2; return 1 ;;
    esac
}
name_of() { case $1 in rust) echo kcp-perf ;; rustp) echo "kcp-perf --pacing" ;; go) echo kcp-perf-go ;; mio) echo kcp-mio-server ;; esac; }

# new_run: a fresh folder for the next run's files ($RUN).
new_run() { RUN_N=$((RUN_N + 1)); RUN="$OUT/run$RUN_N"; mkdir -p "$RUN"; }

# start_server IMPL [FLAGS...]: a fresh server on 127.0.0.1:0 -> $SPID, $ADDR; also the
# baseline $SCPU0 (CPU s) once it is listening.
start_server() {
    local impl=$1; shift
    local b; b=$(bin_of "$impl")
    local cmd
    if [ "$impl" = mio ]; then cmd=("$b" --listen 127.0.0.1:0 --json "$@"); else cmd=("$b" server --listen 127.0.0.1:0 --json "$@"); fi
    echo "${cmd[*]}" >"$RUN/s.cmd"
    : >"$RUN/s.err"
    pin_prefix "${PIN_SERVER:-}"
    ${PIN_PRE[@]+"${PIN_PRE[@]}"} "${cmd[@]}" >"$RUN/s.out" 2>"$RUN/s.err" &
    SPID=$!
    ADDR=
    local i
    for i in $(seq 200); do
        # Only a whole line (stderr is written in pieces; `read` fails on an unfinished one).
        local line
        while IFS= read -r line; do
            case $line in "listening "*) ADDR=${line#listening }; break ;; esac
        done <"$RUN/s.err"
        [ -n "$ADDR" ] && break
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.025
    done
    if [ -z "$ADDR" ]; then
        echo "bench: $(name_of "$impl") server did not start: $(head -c 500 "$RUN/s.err")" >&2
        stop_server; return 1
    fi
    SCPU0=$(proc_cpu "$SPID")
}

# server_stats: our kcp-perf server's counters line (`stats ...`), asked for with SIGUSR1 (so
# nothing reads them during the run); empty for other servers.
server_stats() {
    local n0 i; n0=$(grep -c '^stats ' "$RUN/s.err" || true)
    kill -USR1 "$SPID" 2>/dev/null || return 0
    for i in $(seq 60); do
        [ "$(grep -c '^stats ' "$RUN/s.err" || true)" -gt "$n0" ] && break
        sleep 0.05
    done
    grep '^stats ' "$RUN/s.err" | tail -1 || true
}
# stat_field LINE NAME: a counter of a `stats` line (empty if absent).
stat_field() { grep -o " $2: [0-9]*" <<<"$1" | grep -o '[0-9]*$' || true; }

stop_server() {
    if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
    SPID=
}

# wait_server_lines N [SECS]: until the server printed N report lines (or SECS passed).
wait_server_lines() {
    local n=$1 secs=${2:-3} _
    for _ in $(seq $((secs * 20))); do
        [ "$(grep -c '"role":"server"' "$RUN/s.out" 2>/dev/null)" -ge "$n" ] && return 0
        sleep 0.05
    done
    return 1
}

# client_bg IMPL SECS [FLAGS...]: starts a client against $ADDR in the background ($CPID),
# bounded by SECS (then killed); /usr/bin/time writes "wall user sys" to $RUN/c.time.
client_bg() {
    local impl=$1 secs=$2; shift 2
    local b; b=$(bin_of "$impl")
    local cmd=("$b" client --connect "$ADDR" --json "$@")
    pin_prefix "${PIN_CLIENT:-}"
    echo "${PIN_PRE[*]} ${cmd[*]}" >"$RUN/c.cmd"
    /usr/bin/time -f '%e %U %S' -o "$RUN/c.time" timeout -k 5 "$secs" ${PIN_PRE[@]+"${PIN_PRE[@]}"} "${cmd[@]}" >"$RUN/c.out" 2>"$RUN/c.err" &
    CPID=$!
}
# client_wait -> $CRC (the client's exit status; 124 = timed out)
client_wait() { CRC=0; wait "$CPID" || CRC=$?; CPID=; }
# client IMPL SECS [FLAGS...]: client_bg + client_wait.
client() { client_bg "$@"; client_wait; }
client_cpu() { awk 'END { printf "%.3f", $2 + $3 }' "$RUN/c.time" 2>/dev/null || echo 0; }
client_wall() { awk 'END { print $1 + 0 }' "$RUN/c.time" 2>/dev/null || echo 0; }
# The client's summary line (JSON) or {}.
client_summary() { { grep '"summary":true' "$RUN/c.out" || echo '{}'; } | tail -1; }

# record CELL JSON: appends a run's record to a cell (and keeps it in the run's folder).
record() { echo "$2" >"$RUN/rec.json"; echo "$2" >>"$OUT/cell.$1"; }

# med CELL FIELD: median (lower median for an even count) of FIELD over the cell's runs
# with ok = true; "n/a" if none.
med() {
    [ -f "$OUT/cell.$1" ] || { echo n/a; return; }
    jq -rs --arg f "$2" '[.[] | select(.ok == true) | .[$f] | select(. != null)] | sort
        | if length == 0 then "n/a" else .[((length - 1) / 2 | floor)] end' "$OUT/cell.$1"
}
# runs CELL: "ok/total" runs of a cell.
runs() { [ -f "$OUT/cell.$1" ] && jq -rs '"\([.[] | select(.ok == true)] | length)/\(length)"' "$OUT/cell.$1" || echo 0/0; }
# all CELL FIELD: every run's value, comma-separated (failed runs as "fail").
all() { [ -f "$OUT/cell.$1" ] && jq -rs --arg f "$2" '[.[] | if .ok == true then (.[$f] | tostring) else "fail" end] | join(", ")' "$OUT/cell.$1" || echo; }

# fmt DECIMALS VALUE (n/a stays n/a)
fmt() { awk -v d="$1" -v v="$2" 'BEGIN { if (v ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) printf "%.*f", d, v; else print "n/a" }'; }
# ratio A B: A / B with two decimals and an x, or n/a.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+(e[-+]?[0-9]+)?$/ && b ~ /^[0-9.]+(e[-+]?[0-9]+)?$/ && b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
