#!/usr/bin/env bash
# End-to-end performance of the stack against kcp-go v5.6.1 (Debian's), on loopback, in one
# run: every end-to-end table of docs/benchmarks.md (the performance targets at scale, and the
# kcp-mio example server against the kcp-tokio server).
#
#   interop/bench-perf.sh [REPEATS] [SECTION...]
#
# REPEATS (default 3): runs per cell; a cell shows the median of its successful runs.
# SECTIONs (default all, in this order):
#   sink      one session, 64 MiB sink, fast3, MTU 1400: null, aes, aes + FEC 10/3 at windows
#             1024 and 4096; Rust client -> Rust server vs Go client -> Go server, same flags:
#             throughput timed by the receiver (the server's first to last payload byte) and by
#             the client (first write to the server's answer), CPU per GiB of both ends,
#             retransmissions, kernel UDP drops.
#   iperf     `iperf3 -u -b 0 -l 1400` on the same loopback (receiver's rate) vs the null sink
#             at windows 1024 / 4096 (from `sink`, or run here) and 8192; with PACING=1 also
#             our sink with `--pacing` on both ends, in the same run (table 2b).
#   echo      64 B echo p50/p99 (Rust<->Rust vs Go<->Go); a kcp-go client echoing 64 B and
#             4 KiB messages one at a time (salsa20, FEC 10/3, windows 1024 client / 4096
#             server, fast3) against our server vs a kcp-go server: round trips per second.
#   echo4k    4 KiB echo, a kcp-go client against our server and a kcp-go server, one run of
#             each in turn per repeat, for each cipher of ECHO4K_CRYPTS (null, aes, salsa20),
#             in two server setups: FEC 10/3 both ways, and kcp-go's own test suite's (its
#             sess_test.go echo server listens with FEC 10/0, i.e. decodes but sends no parity;
#             the client dials with 10/3): round trips per second, the ratio per pair of runs.
#   sessions  1,000 / 5,000 / 10,000 sessions, one 64 B echo per second each, our client
#             driving our server and kcp-go's, sessions started over a ramp and all at once:
#             server CPU (% of a core and µs per echo), peak RSS per session, echo p50/p99,
#             client retransmissions; plus kcp-go at 2,000 (the reference of the target: our CPU
#             at 10,000 sessions at most 0.2x kcp-go's at 2,000).
#   drivers   8 concurrent sink sessions against our server with 1 and 2 SO_REUSEPORT sockets
#             (a driver each; kcp-perf server --sockets N), and kcp-go's server for reference.
#   mio       our client against the kcp-mio example server and the kcp-tokio server,
#             same flags: sink throughput and CPU per GiB; echo p50/p99 with 1,000 sessions.
#
# Builds both sides first (cargo --release; interop/build-go.sh). Needs jq, GNU time, timeout,
# iperf3, Go and Debian's kcp-go: interop/bench-setup.sh installs them. Loopback only; every
# client run is bounded by `timeout`; a fresh server per run. Each run's commands, outputs and
# record stay in OUT (printed at the end). Markdown tables on stdout, progress on stderr.
# Ratios are ours / kcp-go (or ours / iperf3, kcp-mio / kcp-tokio): above 1 is better for
# throughput and round trips per second, below 1 is better for CPU, memory and latency.
#
# Environment (defaults): BYTES (64M, per sink session), MTU (1400), MODE (fast3),
# WINDOWS ("1024 4096"), IPERF_SECS (3), IPERF_WND (8192), PACING (empty; 1: table 2b), ECHO_N (2000),
# ECHO4K_CRYPTS ("null aes salsa20"), ECHO4K_N (20000, messages per echo4k run),
# SESS_LIST ("1000 5000 10000"), SESS_ECHOES (8, echoes per session at 1/s), SESS_RAMP (4, s),
# SESS_REPEATS (REPEATS: runs per sessions cell, the longest ones),
# SESS_GO_REF (2000; empty to skip), SESS_OPEN_LIST (the largest of SESS_LIST: burst runs against
# our server with its half-open admission limits raised; empty to skip), SESS_SHARED (8: for the
# same N, one more burst row with our client's sessions on this many shared sockets, so that
# the row measures the server rather than ten thousand client sockets; empty to skip), SESS_FLAGS,
# SESS_CLIENT (rust: kcp-perf's client; go: kcp-perf-go's, kcp-go's own sessions, which drop
# SESS_CLIENT_FLAGS), SESS_MIO (empty; 1: rows for the kcp-mio example server too, with SESS_MIO_FLAGS, e.g.
# "--receive-hold-us 1000"),
# SESS_CLIENT_FLAGS (extra client flags, e.g. "--client-sockets 8": ours only, kcp-go's server
# keys sessions by address), SESS_SERVER_FLAGS (extra flags for our server only, e.g.
# "--threads 1": a current-thread runtime),
# DRV_CONNS (8), DRV_BYTES (32M), DRV_FLAGS, MIO_CONNS (1000), MIO_ECHO_N (20), TIMEOUT (60, s per single-session client),
# RUST / MIO / GO_PERF (prebuilt binaries; built if unset), OUT (result folder),
# PIN_SERVER / PIN_CLIENT (CPU lists for `taskset -c`, empty: not pinned; e.g. 0 and 1 keep the
# two ends of a loopback run on different cores, which the kernel does not always do: a sink
# with both on one core runs at a quarter of its speed), for every implementation and iperf3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=interop/bench-lib.sh
. "$here/bench-lib.sh"

REPEATS=${1:-3}
case $REPEATS in ''|*[!0-9]*|0) echo "usage: $0 [REPEATS>=1] [sink|iperf|echo|echo4k|sessions|drivers|mio...]" >&2; exit 2;; esac
shift || true
ALL_SECTIONS="sink iperf echo echo4k sessions drivers mio"
SECTIONS=${*:-$ALL_SECTIONS}
for s in $SECTIONS; do case " $ALL_SECTIONS " in *" $s "*) ;; *) echo "bench-perf.sh: unknown section $s (one of: $ALL_SECTIONS)" >&2; exit 2;; esac; done
want() { case " $SECTIONS " in *" $1 "*) return 0;; *) return 1;; esac; }

BYTES=${BYTES:-64M}
MTU=${MTU:-1400}
MODE=${MODE:-fast3}
WINDOWS=${WINDOWS:-1024 4096}
IPERF_SECS=${IPERF_SECS:-3}
IPERF_WND=${IPERF_WND:-8192}
PACING=${PACING:-}
ECHO_N=${ECHO_N:-2000}
ECHO4K_CRYPTS=${ECHO4K_CRYPTS:-null aes salsa20}
ECHO4K_N=${ECHO4K_N:-20000}
SESS_LIST=${SESS_LIST:-1000 5000 10000}
SESS_ECHOES=${SESS_ECHOES:-8}
SESS_RAMP=${SESS_RAMP:-4}
SESS_REPEATS=${SESS_REPEATS:-$REPEATS}
SESS_GO_REF=${SESS_GO_REF-2000}
SESS_OPEN_LIST=${SESS_OPEN_LIST-${SESS_LIST##* }}
SESS_FLAGS=${SESS_FLAGS:---mode $MODE --mtu $MTU --crypt aes --datashard 10 --parityshard 3}
SESS_CLIENT_FLAGS=${SESS_CLIENT_FLAGS:-}
SESS_SHARED=${SESS_SHARED-8}
SESS_SERVER_FLAGS=${SESS_SERVER_FLAGS:-}
SESS_MIO=${SESS_MIO:-}
SESS_CLIENT=${SESS_CLIENT:-rust}
case $SESS_CLIENT in rust|go) ;; *) echo "bench-perf.sh: SESS_CLIENT must be rust or go" >&2; exit 2 ;; esac
SESS_MIO_FLAGS=${SESS_MIO_FLAGS:-}
DRV_CONNS=${DRV_CONNS:-8}
DRV_BYTES=${DRV_BYTES:-32M}
DRV_FLAGS=${DRV_FLAGS:---mode $MODE --mtu $MTU --sndwnd 1024 --rcvwnd 1024 --crypt aes --datashard 10 --parityshard 3}
MIO_CONNS=${MIO_CONNS:-1000}
MIO_ECHO_N=${MIO_ECHO_N:-20}
TIMEOUT=${TIMEOUT:-60}

for t in jq /usr/bin/time timeout awk; do command -v "$t" >/dev/null || { echo "bench-perf.sh: needs $t (run interop/bench-setup.sh)" >&2; exit 1; }; done
if want iperf; then command -v iperf3 >/dev/null || { echo "bench-perf.sh: needs iperf3 (run interop/bench-setup.sh)" >&2; exit 1; }; fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 25000 ]; then ulimit -n 25000 2>/dev/null || true; fi

started=$(date +%s)
echo "bench-perf: building" >&2
if [ -z "${RUST:-}" ] || [ -z "${MIO:-}" ]; then
    (cd "$root" && cargo build --release -q -p kcpx-tokio --example kcp-perf -p kcpx-mio --example server) >&2
    tdir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
    RUST=${RUST:-$tdir/release/examples/kcp-perf}
    MIO=${MIO:-$tdir/release/examples/server}
fi
GO_PERF=${GO_PERF:-$("$here/build-go.sh")}
for b in "$RUST" "$MIO" "$GO_PERF"; do [ -x "$b" ] || { echo "bench-perf.sh: missing binary $b" >&2; exit 1; }; done

OUT=${OUT:-$(mktemp -d /tmp/bench-perf.XXXXXX)}
mkdir -p "$OUT"
cleanup() {
    [ -z "$CPID" ] || kill "$CPID" 2>/dev/null || true
    [ -z "$SPID" ] || kill "$SPID" 2>/dev/null || true
    [ -z "${IPID:-}" ] || kill "$IPID" 2>/dev/null || true
    [ -z "${LOADPID:-}" ] || kill "$LOADPID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
exec 3>&1                      # the report: stdout, and a copy in $OUT/report.md
report() { printf '%s\n' "$@" | tee -a "$OUT/report.md" >&3; }
log() { echo "[$(( $(date +%s) - started ))s] $*" >&2; }
NOTES=()
note() { NOTES+=("$*"); log "NOTE: $*"; }

win_flags() { echo "--mode $MODE --mtu $MTU --sndwnd $1 --rcvwnd $1"; }
setup_flags() {
    case $1 in
        null) echo "--crypt null --datashard 0 --parityshard 0" ;;
        aes) echo "--crypt aes --datashard 0 --parityshard 0" ;;
        aesfec) echo "--crypt aes --datashard 10 --parityshard 3" ;;
    esac
}
setup_name() { case $1 in null) echo null ;; aes) echo aes ;; aesfec) echo "aes + FEC 10/3" ;; esac; }

# ---------------------------------------------------------------------------------------------
# One sink session: IMPL (client and server) SETUP WND -> cell sink.IMPL.SETUP.WND
sink_run() {
    local impl=$1 setup=$2 wnd=$3 cell="sink.$1.$2.$3"
    local flags; flags="$(win_flags "$wnd") $(setup_flags "$setup")"
    [ "$impl" != rustp ] || flags="$flags --pacing"
    # shellcheck disable=SC2086
    for r in $(seq "$REPEATS"); do
        new_run
        # shellcheck disable=SC2086
        start_server "$impl" $flags || { record "$cell" '{"ok":false}'; continue; }
        local d0; d0=$(udp_drops)
        # shellcheck disable=SC2086
        client "$impl" "$TIMEOUT" --test sink --bytes "$BYTES" --msg 16K $flags
        wait_server_lines 1 5 || true
        local scpu; scpu=$(fsub "$(proc_cpu "$SPID")" "$SCPU0")
        local sdrops; sdrops=$(proc_sock_drops "$SPID")
        stop_server
        local drops=$(( $(udp_drops) - d0 ))
        local c; c=$(client_summary)
        local s; s=$({ grep '"role":"server"' "$RUN/s.out" || echo '{}'; } | tail -1)
        local rec
        rec=$(jq -nc --argjson c "$c" --argjson s "$s" --arg rc "$CRC" --arg ccpu "$(client_cpu)" --arg scpu "$scpu" \
            --arg gib "$(awk -v b="$(bytes_of "$BYTES")" 'BEGIN { print b / 1073741824 }')" --arg drops "$drops" --arg sdrops "$sdrops" '
            ($ccpu | tonumber) as $cc | ($scpu | tonumber? // null) as $sc |
            { ok: ($rc == "0" and $c.ok == true and $s.ok == true and $sc != null),
              recv_mbps: $s.mb_per_s, client_mbps: $c.mb_per_s,
              tail_ms: (if $c.seconds and $s.seconds then (($c.seconds - $s.seconds) * 1000 | round) else null end),
              cpu_gib: (if $sc != null then (($cc + $sc) / ($gib | tonumber) * 100 | round / 100) else null end),
              client_cpu: $cc, server_cpu: $sc,
              retrans: $c.retrans, server_retrans: $s.retrans, sys_drops: ($drops | tonumber),
              server_drops: ($sdrops | tonumber? // null), rc: ($rc | tonumber) }')
        record "$cell" "$rec"
        [ "$(jq -r .ok <<<"$rec")" = true ] || note "failed run: $(name_of "$impl") sink $(setup_name "$setup") wnd $wnd (rc $CRC; $RUN): $(tail -2 "$RUN/c.err" | tr '\n' ' ' | head -c 300)"
        log "sink $impl $setup wnd $wnd run $r: $rec"
    done
}
sink_cell() { [ -f "$OUT/cell.sink.$1.$2.$3" ] || sink_run "$@"; }

# Slow runs (under half the cell's median) are worth a note: kcp-go's 7 s probe stall.
slow_note() {
    local cell=$1 label=$2 m; m=$(med "$cell" recv_mbps)
    local slow; slow=$(jq -rs --arg m "$m" '[.[] | select(.ok == true and ($m | tonumber? // 0) > 0 and .recv_mbps < ($m | tonumber) / 2) | .recv_mbps] | map(tostring) | join(", ")' "$OUT/cell.$cell")
    [ -z "$slow" ] || note "$label: slow run(s) at $slow MB/s (median $m)"
}

section_sink() {
    log "section sink"
    for setup in null aes aesfec; do for wnd in $WINDOWS; do
        sink_cell rust "$setup" "$wnd"; sink_cell go "$setup" "$wnd"
    done; done
    report "" "### 1. One-session sink, $BYTES, $MODE, MTU $MTU" ""
    report "Rust client → Rust server vs Go client → Go server (kcp-go v5.6.1), same flags. MB/s = 10^6 B/s timed by the receiver (the server's first to last payload byte); \"client-timed\" runs from the client's first write to the server's answer; tail = client-timed minus receiver-timed interval. CPU s/GiB = client + server CPU (utime+stime) per GiB. Retransmissions: the sender's (client's). Drops: the server socket's kernel drops (/proc/net/udp), and in brackets all of the machine's UDP RcvbufErrors+SndbufErrors and softnet backlog drops during the run (client sockets included, other users' too). Median of $REPEATS runs (ok/total in the last column)." ""
    report "| setup | wnd | ours MB/s | kcp-go MB/s | ratio | ours client-timed | kcp-go client-timed | ours tail ms | kcp-go tail ms | ours CPU s/GiB | kcp-go CPU s/GiB | ratio | ours retrans | kcp-go retrans | ours drops | kcp-go drops | runs |"
    report "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"
    for setup in null aes aesfec; do for wnd in $WINDOWS; do
        local r="sink.rust.$setup.$wnd" g="sink.go.$setup.$wnd"
        slow_note "$r" "ours sink $(setup_name "$setup") wnd $wnd"; slow_note "$g" "kcp-go sink $(setup_name "$setup") wnd $wnd"
        report "| $(setup_name "$setup") | $wnd | $(fmt 1 "$(med "$r" recv_mbps)") | $(fmt 1 "$(med "$g" recv_mbps)") | $(ratio "$(med "$r" recv_mbps)" "$(med "$g" recv_mbps)") | $(fmt 1 "$(med "$r" client_mbps)") | $(fmt 1 "$(med "$g" client_mbps)") | $(med "$r" tail_ms) | $(med "$g" tail_ms) | $(fmt 2 "$(med "$r" cpu_gib)") | $(fmt 2 "$(med "$g" cpu_gib)") | $(ratio "$(med "$r" cpu_gib)" "$(med "$g" cpu_gib)") | $(med "$r" retrans) | $(med "$g" retrans) | $(med "$r" server_drops) ($(med "$r" sys_drops)) | $(med "$g" server_drops) ($(med "$g" sys_drops)) | $(runs "$r") / $(runs "$g") |"
    done; done
    report "" "Per-run retransmissions (ours): $(for setup in null aes aesfec; do for wnd in $WINDOWS; do printf '%s/%s: %s; ' "$setup" "$wnd" "$(all "sink.rust.$setup.$wnd" retrans)"; done; done)"
}

# ---------------------------------------------------------------------------------------------
# A port free for TCP (iperf3's control connection) and UDP (its data) at once.
free_port() {
    python3 -c '
import socket
for _ in range(50):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        u.close(); t.close()
' 2>/dev/null || echo $((20000 + RANDOM % 20000))
}

# iperf_run CELL [EXTRA FLAGS]
iperf_run() {
    local cell=$1; shift
    for r in $(seq "$REPEATS"); do
        local rec='{"ok":false}' try
        for try in 1 2 3; do    # a port taken between the choice and the bind: another port
            new_run
            local port; port=$(free_port)
            pin_prefix "${PIN_SERVER:-}"
            ${PIN_PRE[@]+"${PIN_PRE[@]}"} iperf3 -s -1 -B 127.0.0.1 -p "$port" -J >"$RUN/s.out" 2>"$RUN/s.err" &
            IPID=$!
            sleep 0.3
            local rc=0
            pin_prefix "${PIN_CLIENT:-}"
            timeout -k 5 $((IPERF_SECS + 20)) ${PIN_PRE[@]+"${PIN_PRE[@]}"} iperf3 -c 127.0.0.1 -p "$port" -u -b 0 -l 1400 -t "$IPERF_SECS" -J "$@" >"$RUN/c.out" 2>"$RUN/c.err" || rc=$?
            kill "$IPID" 2>/dev/null || true; wait "$IPID" 2>/dev/null || true; IPID=
            rec=$(jq -c --arg rc "$rc" '{ ok: ($rc == "0" and .end.sum_received.bytes > 0),
                recv_mbps: (.end.sum_received.bytes / .end.sum_received.seconds / 1e6 * 10 | round / 10),
                sent_mbps: (.end.sum_sent.bytes / .end.sum_sent.seconds / 1e6 * 10 | round / 10),
                lost_pct: (.end.sum_received.lost_percent * 10 | round / 10) }' "$RUN/c.out" 2>/dev/null || echo '{"ok":false}')
            [ "$(jq -r .ok <<<"$rec")" = true ] && break
            log "iperf3 try $try failed: $(jq -r '.error // empty' "$RUN/c.out" 2>/dev/null | head -c 200)"
        done
        record "$cell" "$rec"
        [ "$(jq -r .ok <<<"$rec")" = true ] || note "iperf3 failed ($RUN): $(jq -r '.error // empty' "$RUN/c.out" 2>/dev/null | head -c 200)"
        log "iperf3 $* run $r: $rec"
    done
}

section_iperf() {
    log "section iperf"
    iperf_run iperf
    iperf_run iperf.w4m -w 4M
    local w
    for w in $WINDOWS $IPERF_WND; do
        sink_cell rust null "$w"; [ "$PACING" != 1 ] || sink_cell rustp null "$w"; sink_cell go null "$w"
    done
    local ip; ip=$(med iperf recv_mbps)
    report "" "### 2. Null sink vs raw UDP (\`iperf3 -u -b 0 -l 1400 -t $IPERF_SECS\`), same loopback, same run" ""
    report "iperf3: received **$(fmt 1 "$ip") MB/s** (sent $(fmt 1 "$(med iperf sent_mbps)") MB/s, $(med iperf lost_pct) % lost; runs $(runs iperf)); with \`-w 4M\` (the client asks both ends for the 4 MiB socket buffers our tools ask for): received $(fmt 1 "$(med iperf.w4m recv_mbps)") MB/s (sent $(fmt 1 "$(med iperf.w4m sent_mbps)"), $(med iperf.w4m lost_pct) % lost; runs $(runs iperf.w4m)). Null sink as in table 1 (receiver-timed), ratios to iperf3's received rates:" ""
    local ipw; ipw=$(med iperf.w4m recv_mbps)
    report "| wnd | ours MB/s | ours / iperf3 | ours / iperf3 -w 4M | ours retrans | ours tail ms | kcp-go MB/s | kcp-go / iperf3 | kcp-go / iperf3 -w 4M | kcp-go retrans | kcp-go tail ms |"
    report "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for w in $WINDOWS $IPERF_WND; do
        local r="sink.rust.null.$w" g="sink.go.null.$w"
        report "| $w | $(fmt 1 "$(med "$r" recv_mbps)") | $(ratio "$(med "$r" recv_mbps)" "$ip") | $(ratio "$(med "$r" recv_mbps)" "$ipw") | $(med "$r" retrans) | $(med "$r" tail_ms) | $(fmt 1 "$(med "$g" recv_mbps)") | $(ratio "$(med "$g" recv_mbps)" "$ip") | $(ratio "$(med "$g" recv_mbps)" "$ipw") | $(med "$g" retrans) | $(med "$g" tail_ms) |"
    done
    report "" "Per-run retransmissions (ours): $(for w in $WINDOWS $IPERF_WND; do printf 'wnd %s: %s; ' "$w" "$(all "sink.rust.null.$w" retrans)"; done)"
    [ "$PACING" = 1 ] || return 0
    report "" "#### 2b. The same null sink with \`--pacing\` on both ends (same run)" ""
    report "| wnd | paced MB/s | paced / iperf3 | paced / iperf3 -w 4M | paced / unpaced | paced retrans | unpaced retrans | paced tail ms | paced CPU s/GiB | unpaced CPU s/GiB | runs |"
    report "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for w in $WINDOWS $IPERF_WND; do
        local p="sink.rustp.null.$w" r="sink.rust.null.$w"
        report "| $w | $(fmt 1 "$(med "$p" recv_mbps)") | $(ratio "$(med "$p" recv_mbps)" "$ip") | $(ratio "$(med "$p" recv_mbps)" "$ipw") | $(ratio "$(med "$p" recv_mbps)" "$(med "$r" recv_mbps)") | $(med "$p" retrans) | $(med "$r" retrans) | $(med "$p" tail_ms) | $(fmt 2 "$(med "$p" cpu_gib)") | $(fmt 2 "$(med "$r" cpu_gib)") | $(runs "$p") |"
    done
    report "" "Per-run (paced): $(for w in $WINDOWS $IPERF_WND; do printf 'wnd %s: %s MB/s, retrans %s; ' "$w" "$(all "sink.rustp.null.$w" recv_mbps)" "$(all "sink.rustp.null.$w" retrans)"; done)"
}

# ---------------------------------------------------------------------------------------------
# echo_once CELL SERVER CLIENT MSG "SERVER FLAGS" "CLIENT FLAGS" [MESSAGES]: one run, one record
echo_once() {
    local cell=$1 simpl=$2 cimpl=$3 msg=$4 sflags=$5 cflags=$6 n=${7:-$ECHO_N}
    new_run
    # shellcheck disable=SC2086
    start_server "$simpl" $sflags || { record "$cell" '{"ok":false}'; return 0; }
    local d0; d0=$(udp_drops)
    # shellcheck disable=SC2086
    client "$cimpl" "$TIMEOUT" --test echo --bytes $((n * msg)) --msg "$msg" $cflags
    wait_server_lines 1 3 || true
    local sdrops; sdrops=$(proc_sock_drops "$SPID")
    stop_server
    local c; c=$(client_summary)
    local rec
    rec=$(jq -nc --argjson c "$c" --arg rc "$CRC" --arg msg "$msg" --arg drops "$(( $(udp_drops) - d0 ))" --arg sdrops "$sdrops" '
        { ok: ($rc == "0" and $c.ok == true), p50_us: $c.rtt_p50_us, p99_us: $c.rtt_p99_us, max_us: $c.rtt_max_us,
          rtps: (if $c.seconds > 0 then ($c.bytes / ($msg | tonumber) / $c.seconds | round) else null end),
          retrans: $c.retrans, sys_drops: ($drops | tonumber), server_drops: ($sdrops | tonumber? // null) }')
    record "$cell" "$rec"
    [ "$(jq -r .ok <<<"$rec")" = true ] || note "failed run: echo $cell (rc $CRC; $RUN): $(tail -2 "$RUN/c.err" | tr '\n' ' ' | head -c 300)"
    log "echo $cell: $rec"
}

# echo_cell CELL SERVER CLIENT MSG "SERVER FLAGS" "CLIENT FLAGS": REPEATS runs
echo_cell() {
    for _ in $(seq "$REPEATS"); do echo_once "$@"; done
}

section_echo() {
    log "section echo"
    local f64; f64="$(win_flags 1024) --crypt aes --datashard 10 --parityshard 3"
    echo_cell echo.rr rust rust 64 "$f64" "$f64"
    echo_cell echo.gg go go 64 "$f64" "$f64"
    local base="--mode $MODE --mtu $MTU --crypt salsa20 --datashard 10 --parityshard 3"
    local cf="$base --sndwnd 1024 --rcvwnd 1024" sf="$base --sndwnd 4096 --rcvwnd 4096"
    echo_cell echo.gr64 rust go 64 "$sf" "$cf"
    echo_cell echo.gg64 go go 64 "$sf" "$cf"
    echo_cell echo.gr4k rust go 4096 "$sf" "$cf"
    echo_cell echo.gg4k go go 4096 "$sf" "$cf"
    report "" "### 3. Echo latency, one session, messages one at a time ($ECHO_N per run)" ""
    report "Round trips in µs (client-measured p50 / p99 / max), round trips per second = messages / client's echo interval. Median of $REPEATS runs." ""
    report "| case | ours p50 | kcp-go p50 | ratio | ours p99 | kcp-go p99 | ratio | ours rt/s | kcp-go rt/s | ratio | ours max | kcp-go max | retrans ours / kcp-go | runs |"
    report "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    local row
    for row in "64 B, aes + FEC 10/3, wnd 1024, Rust↔Rust vs Go↔Go|echo.rr|echo.gg" \
               "64 B, kcp-go client → our server vs kcp-go server|echo.gr64|echo.gg64" \
               "4 KiB, kcp-go client → our server vs kcp-go server|echo.gr4k|echo.gg4k"; do
        local label=${row%%|*} rest=${row#*|}; local r=${rest%%|*} g=${rest#*|}
        report "| $label | $(med "$r" p50_us) | $(med "$g" p50_us) | $(ratio "$(med "$r" p50_us)" "$(med "$g" p50_us)") | $(med "$r" p99_us) | $(med "$g" p99_us) | $(ratio "$(med "$r" p99_us)" "$(med "$g" p99_us)") | $(med "$r" rtps) | $(med "$g" rtps) | $(ratio "$(med "$r" rtps)" "$(med "$g" rtps)") | $(med "$r" max_us) | $(med "$g" max_us) | $(med "$r" retrans) / $(med "$g" retrans) | $(runs "$r") / $(runs "$g") |"
    done
    report "" "kcp-go client rows: \`kcp-perf-go client --test echo --msg 64|4096 $cf\` against \`kcp-perf server $sf\` or \`kcp-perf-go server $sf\` (kcp-go's retrans counter is process-wide: the client's own). Per-run 4 KiB rt/s: ours $(all echo.gr4k rtps); kcp-go $(all echo.gg4k rtps)."
}

# 4 KiB echo, kcp-go client, ours and kcp-go's server in turn (so both see the same load).
section_echo4k() {
    log "section echo4k"
    local c setup base cf sf
    for c in $ECHO4K_CRYPTS; do
        for setup in fec gotest; do
            base="--mode $MODE --mtu $MTU --crypt $c"
            cf="$base --datashard 10 --parityshard 3 --sndwnd 1024 --rcvwnd 1024 --sockbuf 16777216"
            case $setup in
                fec) sf="$base --datashard 10 --parityshard 3 --sndwnd 4096 --rcvwnd 4096" ;;
                gotest) sf="$base --datashard 10 --parityshard 0 --sndwnd 4096 --rcvwnd 4096" ;;
            esac
            for _ in $(seq "$REPEATS"); do
                echo_once "e4k.$setup.$c.rust" rust go 4096 "$sf" "$cf" "$ECHO4K_N"
                echo_once "e4k.$setup.$c.go" go go 4096 "$sf" "$cf" "$ECHO4K_N"
            done
        done
    done
    report "" "### 3b. 4 KiB echo, kcp-go client: our server vs kcp-go's server, run in turn" ""
    report "\`kcp-perf-go client --test echo --msg 4096 --bytes $((ECHO4K_N * 4096)) --mode $MODE --mtu $MTU --crypt C --datashard 10 --parityshard 3 --sndwnd 1024 --rcvwnd 1024 --sockbuf 16777216\` against \`kcp-perf server\` or \`kcp-perf-go server\` with \`--mode $MODE --mtu $MTU --crypt C --datashard 10 --parityshard P --sndwnd 4096 --rcvwnd 4096\`, P = 3 (\"FEC 10/3\") or 0 (\"kcp-go's test\": its sess_test.go echo server's setting, which decodes FEC but sends no parity). One run of each server in turn, $REPEATS pairs; ratio = ours / kcp-go round trips per second, per pair and of the medians." ""
    report "| cipher | server FEC | ours rt/s | kcp-go rt/s | ratio of medians | ratio per pair | lowest | ours p50 / p99 µs | kcp-go p50 / p99 µs | runs |"
    report "|---|---|---:|---:|---:|---|---:|---|---|---|"
    for c in $ECHO4K_CRYPTS; do
        for setup in fec gotest; do
            local r="e4k.$setup.$c.rust" g="e4k.$setup.$c.go" pairs low
            pairs=$(jq -rs --slurpfile g "$OUT/cell.$g" '[range(0; length) as $i | if .[$i].ok == true and $g[$i].ok == true then (.[$i].rtps / $g[$i].rtps * 100 | round | tostring) else "fail" end] | join(" ")' "$OUT/cell.$r" | awk '{ for (i = 1; i <= NF; i++) printf "%s%s", (i > 1 ? ", " : ""), ($i == "fail" ? $i : sprintf("%.2f", $i / 100)) }')
            low=$(jq -rs --slurpfile g "$OUT/cell.$g" '[range(0; length) as $i | if .[$i].ok == true and $g[$i].ok == true then (.[$i].rtps / $g[$i].rtps) else 0 end] | min' "$OUT/cell.$r" | awk '{ printf "%.2f", $1 }')
            report "| $c | $([ $setup = fec ] && echo "10/3" || echo "10/0 (kcp-go's test)") | $(med "$r" rtps) | $(med "$g" rtps) | $(ratio "$(med "$r" rtps)" "$(med "$g" rtps)") | $pairs | ${low}x | $(med "$r" p50_us) / $(med "$r" p99_us) | $(med "$g" p50_us) / $(med "$g" p99_us) | $(runs "$r") / $(runs "$g") |"
        done
    done
}

# ---------------------------------------------------------------------------------------------
# sess_run IMPL N ramp|burst -> cell sess.IMPL.N.MODE
# (KIND rustopen: our server with the half-open admission limits raised out of the way;
# rustshared: the same, with our client's sessions on SESS_SHARED shared sockets.)
sess_run() {
    local kind=$1 n=$2 how=$3 cell="sess.$1.$2.$3"
    # The one loopback client stands for many hosts: our server's per-host cap on confirmed
    # sessions (4096 by default) is raised in every row.
    local impl=$kind sflags=
    case $kind in
        rust) sflags="--sessions-per-host 1000000 $SESS_SERVER_FLAGS" ;;
        rustopen|rustshared) impl=rust; sflags="--max-half-open 1000000 --half-open-per-host 1000000 --sessions-per-host 1000000 $SESS_SERVER_FLAGS" ;;
        mio) sflags="--sessions-per-host 1000000 $SESS_MIO_FLAGS" ;;
    esac
    local ramp=0; [ "$how" = ramp ] && ramp=$SESS_RAMP
    # The steady window: every session is up (ramp over, connects done) and none has finished.
    # Session i sends echo k at its start + k s (k < SESS_ECHOES) and starts at i/N of the ramp.
    local wa; wa=$(awk -v r="$ramp" 'BEGIN { print r + 1 }')
    local w; w=$(awk -v a="$wa" -v e="$SESS_ECHOES" 'BEGIN { w = int(e - 1 - a); print (w < 1 ? 1 : w) }')
    for r in $(seq "$SESS_REPEATS"); do
        new_run
        # shellcheck disable=SC2086
        start_server "$impl" $sflags $SESS_FLAGS || { record "$cell" '{"ok":false}'; continue; }
        sleep 0.2
        local hwm0; hwm0=$(proc_hwm "$SPID"); local cpu0; cpu0=$(proc_cpu "$SPID")
        local d0; d0=$(udp_drops)
        local t0; t0=$(now)
        # shellcheck disable=SC2086
        # The extra client flags are for our servers: kcp-go's keys sessions by address alone,
        # so sessions sharing a client socket (--client-sockets) would collide there.
        local cflags=$SESS_CLIENT_FLAGS; [ "$SESS_CLIENT" = rust ] && [ "$impl" != go ] || cflags=
        [ "$kind" != rustshared ] || cflags="$cflags --client-sockets $SESS_SHARED"
        # shellcheck disable=SC2086
        client_bg "$SESS_CLIENT" $((ramp + SESS_ECHOES + 90)) --test echo --conns "$n" --rate 1 --bytes $((64 * SESS_ECHOES)) --msg 64 --ramp "$ramp" --timeout 30 $cflags $SESS_FLAGS
        sleep "$(awk -v t0="$t0" -v n="$(now)" -v a="$wa" 'BEGIN { d = t0 + a - n; print (d > 0 ? d : 0) }')"
        local ca; ca=$(proc_cpu "$SPID"); local ta; ta=$(now)
        sleep "$w"
        local cb; cb=$(proc_cpu "$SPID"); local tb; tb=$(now)
        local cdrops; cdrops=$(proc_sock_drops "$(client_proc)")
        client_wait
        local tc; tc=$(now)
        sleep 0.5
        local cpu1; cpu1=$(proc_cpu "$SPID"); local hwm1; hwm1=$(proc_hwm "$SPID"); local rss1; rss1=$(proc_rss "$SPID")
        local sdone; sdone=$(grep -c '"role":"server"' "$RUN/s.out" || true)
        local sdrops; sdrops=$(proc_sock_drops "$SPID")
        # Our server's counters (SIGUSR1): sessions refused at admission, its retransmissions,
        # the longest hold of its driver's lock.
        local st=; [ "$impl" = rust ] && st=$(server_stats)
        local ev rf refused; ev=$(stat_field "$st" half_open_evicted); rf=$(stat_field "$st" refused)
        refused=$([ -n "$ev$rf" ] && echo $(( ${ev:-0} + ${rf:-0} )) || true)
        local sretrans; sretrans=$(stat_field "$st" retrans_segs)
        local lockmax; lockmax=$(stat_field "$st" lock_hold_max_ns)
        # kcp-go's server: its process-wide counter, as of the last report.
        # (The kcp-mio server's lines count per session: no column for it.)
        [ -n "$sretrans" ] || [ "$impl" != go ] || sretrans=$(jq -s 'map(.retrans // 0) | max // null' "$RUN/s.out")
        stop_server
        local drops=$(( $(udp_drops) - d0 ))
        local c; c=$(client_summary)
        local okn; okn=$(grep -v '"summary":true' "$RUN/c.out" | grep -c '"ok":true' || true)
        local rec
        rec=$(jq -nc --argjson c "$c" --arg rc "$CRC" --arg n "$n" --arg okn "$okn" --arg ca "$ca" --arg cb "$cb" --arg ta "$ta" --arg tb "$tb" \
            --arg cpu0 "$cpu0" --arg cpu1 "$cpu1" --arg hwm0 "$hwm0" --arg hwm1 "$hwm1" --arg rss1 "$rss1" --arg t0 "$t0" --arg tc "$tc" \
            --arg ccpu "$(client_cpu)" --arg drops "$drops" --arg sdone "$sdone" --arg sdrops "$sdrops" --arg cdrops "$cdrops" \
            --arg refused "$refused" --arg sretrans "$sretrans" --arg lockmax "$lockmax" '
            ($n | tonumber) as $n | (($cb | tonumber) - ($ca | tonumber)) as $wcpu | (($tb | tonumber) - ($ta | tonumber)) as $wsec |
            (($c.bytes // 0) / 64) as $echoes |
            { ok: ($rc == "0" and $c.ok == true), sessions_ok: ($okn | tonumber), server_reports: ($sdone | tonumber),
              cpu_pct: ($wcpu / $wsec * 100 | round),
              us_per_echo: ($wcpu / ($n * $wsec) * 1e6 * 10 | round / 10),
              us_per_echo_all: (if $echoes > 0 then ((($cpu1 | tonumber) - ($cpu0 | tonumber)) / $echoes * 1e6 * 10 | round / 10) else null end),
              rss_kib_per_session: ((($hwm1 | tonumber) - ($hwm0 | tonumber)) / $n * 100 | round / 100),
              hwm_mib: (($hwm1 | tonumber) / 1024 | round), rss_end_mib: (($rss1 | tonumber) / 1024 | round),
              p50_ms: ($c.rtt_p50_us / 1000), p99_ms: ($c.rtt_p99_us / 1000), max_ms: ($c.rtt_max_us / 1000),
              retrans: $c.retrans, echoes: $echoes, sys_drops: ($drops | tonumber),
              server_drops: ($sdrops | tonumber? // null), client_drops: ($cdrops | tonumber? // null),
              refused: ($refused | tonumber? // null), server_retrans: ($sretrans | tonumber? // null),
              lock_max_ms: (($lockmax | tonumber? // null) | if . then (. / 1e5 | round / 10) else null end),
              client_us_per_echo: (if $echoes > 0 then (($ccpu | tonumber) / $echoes * 1e6 | round) else null end),
              client_cpu: ($ccpu | tonumber), wall_s: ((($tc | tonumber) - ($t0 | tonumber)) * 10 | round / 10) }')
        record "$cell" "$rec"
        [ "$(jq -r .ok <<<"$rec")" = true ] || note "failed run: $n sessions ($how) against $kind (rc $CRC; $RUN): $(grep -v '^$' "$RUN/c.err" | sort | uniq -c | sort -rn | head -3 | tr '\n' ' ' | head -c 400)"
        # Keep the evidence small: the summary and failed sessions only.
        { grep -v '"ok":true' "$RUN/c.out" || true; client_summary; } >"$RUN/c.trim" && mv "$RUN/c.trim" "$RUN/c.out"
        { grep -v '"ok":true' "$RUN/s.out" || true; } >"$RUN/s.trim" && mv "$RUN/s.trim" "$RUN/s.out"
        log "sessions $kind $n $how run $r: $rec"
    done
}

# echo_cpu CELL N: the cell's median µs per echo times N (CPU µs per second of N sessions at
# one echo a second each), n/a without a number.
echo_cpu() { awk -v u="$(med "$1" us_per_echo)" -v n="$2" 'BEGIN { if (u ~ /^[0-9.]+$/) print u * n; else print "n/a" }'; }

section_sessions() {
    log "section sessions"
    local n how
    for n in $SESS_LIST; do for how in ramp burst; do
        sess_run rust "$n" "$how"; [ -z "$SESS_MIO" ] || sess_run mio "$n" "$how"; sess_run go "$n" "$how"
    done; done
    for n in $SESS_OPEN_LIST; do
        sess_run rustopen "$n" burst
        # Only our client can share sockets (kcp-go's server would see one session per socket).
        [ -z "$SESS_SHARED" ] || [ "$SESS_CLIENT" != rust ] || sess_run rustshared "$n" burst
    done
    [ -z "$SESS_GO_REF" ] || sess_run go "$SESS_GO_REF" ramp
    local cname=kcp-perf cwho="our client"; [ "$SESS_CLIENT" = rust ] || { cname=kcp-perf-go; cwho="kcp-go's client (kcp-perf-go)"; }
    report "" "### 4. Many sessions, one 64 B echo per second each ($SESS_ECHOES per session), $cwho driving both servers" ""
    report "\`$cname client --test echo --conns N --rate 1 --bytes $((64 * SESS_ECHOES)) --msg 64 --ramp R --timeout 30 $([ "$SESS_CLIENT" = rust ] && echo "$SESS_CLIENT_FLAGS ")$SESS_FLAGS\`$([ "$SESS_CLIENT" = rust ] && [ -n "$SESS_CLIENT_FLAGS" ] && echo " (\`$SESS_CLIENT_FLAGS\` against our servers only)") (default windows 128/512), our server \`kcp-perf server $SESS_SERVER_FLAGS\` (plus the admission flags below), R = $SESS_RAMP s (ramp) or 0 (all at once). Server CPU over a steady window (every session up, none done): % of a core and µs per echo (= window CPU / (N × window s)); \"all\": the whole run's server CPU per echo, set-up and close included. RSS: (server VmHWM at the end − VmHWM before the client) / N. Echo round trips and retransmissions: client's, all sessions. Server retrans: our server's RetransSegs (its counters, printed on SIGUSR1 at the end), kcp-go's process-wide counter. Lock ms: the longest hold of our server's driver lock (kcp-perf's \`perf\` feature; preemption included). Refused: first flights our server turned away at admission, evicted half-open entries (\`half_open_evicted\`) plus refused first flights (\`refused\`; by default a host keeps at most 64 half-open entries plus one per session it confirmed, up to half the table (1024), the oldest evicted for a new first flight once 100 ms old or as old as the host's smoothed answer time plus four deviations, else the new one refused, and the refused clients retry at their retransmission timeouts); \"admission open\": the same server with \`--max-half-open 1000000 --half-open-per-host 1000000\`.$([ -z "$SESS_SHARED" ] || [ "$SESS_CLIENT" != rust ] || echo " \"client on $SESS_SHARED sockets\": that server with our client's sessions sharing $SESS_SHARED sockets (\`--client-sockets $SESS_SHARED\`): with a socket, a driver and a wake-up per session the client costs several times the server's CPU per echo and, in each second's wave of echoes, reads its replies late, so this row is the server's own answer to the burst.")$([ -z "$SESS_MIO" ] || echo " \"kcp-mio\": the kcp-mio example server (one \`mio::Poll\` loop, no tasks) with \`--sessions-per-host 1000000 $SESS_MIO_FLAGS\` (it has no counters to print: no server retrans, refused or lock columns).") Client µs/echo: the client's whole CPU per echo (it runs one socket and driver per session). Drops: kernel drops of the server's socket / of the client's sockets (until the end of the window) / all of the machine's UDP buffer errors and backlog drops during the run. Median of $SESS_REPEATS runs." ""
    report "| N | start | server | CPU % core | µs/echo | µs/echo all | KiB/session | peak RSS MiB | p50 ms | p99 ms | max ms | client retrans | server retrans | refused | lock ms | drops server / client / all | client µs/echo | sessions ok | runs |"
    report "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    local rows=()
    for n in $SESS_LIST; do for how in ramp burst; do rows+=("$n $how"); done; done
    [ -z "$SESS_GO_REF" ] || rows+=("$SESS_GO_REF ramp")
    local row kind label
    for row in "${rows[@]}"; do
        read -r n how <<<"$row"
        for kind in rust rustopen rustshared mio go; do
            local c="sess.$kind.$n.$how"
            [ -f "$OUT/cell.$c" ] || continue
            case $kind in rust) label=ours;; rustopen) label="ours, admission open";; rustshared) label="ours, admission open, client on $SESS_SHARED sockets";; mio) label="ours, kcp-mio";; go) label=kcp-go;; esac
            report "| $n | $how | $label | $(med "$c" cpu_pct) | $(med "$c" us_per_echo) | $(med "$c" us_per_echo_all) | $(fmt 2 "$(med "$c" rss_kib_per_session)") | $(med "$c" hwm_mib) | $(fmt 2 "$(med "$c" p50_ms)") | $(fmt 1 "$(med "$c" p99_ms)") | $(fmt 1 "$(med "$c" max_ms)") | $(med "$c" retrans) | $(med "$c" server_retrans) | $(med "$c" refused) | $(med "$c" lock_max_ms) | $(med "$c" server_drops) / $(med "$c" client_drops) / $(med "$c" sys_drops) | $(med "$c" client_us_per_echo) | $(med "$c" sessions_ok) | $(runs "$c") |"
        done
    done
    report "" "Ratios ours / kcp-go (same N, same start):" ""
    report "| N | start | CPU | µs/echo | KiB/session | p99 |"
    report "|---:|---|---:|---:|---:|---:|"
    for n in $SESS_LIST; do for how in ramp burst; do
        local r="sess.rust.$n.$how" g="sess.go.$n.$how"
        report "| $n | $how | $(ratio "$(med "$r" cpu_pct)" "$(med "$g" cpu_pct)") | $(ratio "$(med "$r" us_per_echo)" "$(med "$g" us_per_echo)") | $(ratio "$(med "$r" rss_kib_per_session)" "$(med "$g" rss_kib_per_session)") | $(ratio "$(med "$r" p99_ms)" "$(med "$g" p99_ms)") |"
    done; done
    local top; top=$(echo "$SESS_LIST" | awk '{ print $NF }')
    if [ -n "$SESS_GO_REF" ]; then
        report "" "Target (our server CPU at 10,000 sessions at most 0.2x kcp-go's at 2,000): our CPU at $top sessions / kcp-go's at $SESS_GO_REF (ramp): $(ratio "$(med "sess.rust.$top.ramp" cpu_pct)" "$(med "sess.go.$SESS_GO_REF.ramp" cpu_pct)") (ramp), $(ratio "$(med "sess.rust.$top.burst" cpu_pct)" "$(med "sess.go.$SESS_GO_REF.ramp" cpu_pct)") (all at once); by µs per echo × sessions: $(ratio "$(echo_cpu "sess.rust.$top.ramp" "$top")" "$(echo_cpu "sess.go.$SESS_GO_REF.ramp" "$SESS_GO_REF")") (ramp)$([ -z "$SESS_MIO" ] || echo "; the kcp-mio server: $(ratio "$(echo_cpu "sess.mio.$top.ramp" "$top")" "$(echo_cpu "sess.go.$SESS_GO_REF.ramp" "$SESS_GO_REF")") (ramp)")."
    fi
    report "" "Per-run p99 ms / retrans at $top (ours): ramp $(all "sess.rust.$top.ramp" p99_ms) / $(all "sess.rust.$top.ramp" retrans); all at once $(all "sess.rust.$top.burst" p99_ms) / $(all "sess.rust.$top.burst" retrans)$([ ! -f "$OUT/cell.sess.rustshared.$top.burst" ] || echo "; all at once, admission open, client on $SESS_SHARED sockets $(all "sess.rustshared.$top.burst" p99_ms) / $(all "sess.rustshared.$top.burst" retrans)")."
}

# ---------------------------------------------------------------------------------------------
# drv_run IMPL SOCKETS -> cell drv.IMPL.SOCKETS
drv_run() {
    local impl=$1 sockets=$2 cell="drv.$1.$2"
    local extra=; [ "$impl" = rust ] && extra="--sockets $sockets"
    local gib; gib=$(awk -v b="$(bytes_of "$DRV_BYTES")" -v n="$DRV_CONNS" 'BEGIN { print b * n / 1073741824 }')
    for r in $(seq "$REPEATS"); do
        new_run
        # shellcheck disable=SC2086
        start_server "$impl" $extra $DRV_FLAGS || { record "$cell" '{"ok":false}'; continue; }
        local d0; d0=$(udp_drops)
        # shellcheck disable=SC2086
        client "$impl" "$((TIMEOUT * 2))" --test sink --conns "$DRV_CONNS" --bytes "$DRV_BYTES" --msg 16K $DRV_FLAGS
        wait_server_lines "$DRV_CONNS" 5 || true
        local scpu; scpu=$(fsub "$(proc_cpu "$SPID")" "$SCPU0")
        local sdrops; sdrops=$(proc_sock_drops "$SPID")
        local st=; [ "$impl" = rust ] && st=$(server_stats)
        stop_server
        local spread; spread=$(sed -n 's/^sessions per socket //p' "$RUN/s.err" | tail -1)
        local c; c=$(client_summary)
        local rec
        rec=$(jq -nc --argjson c "$c" --arg rc "$CRC" --arg scpu "$scpu" --arg ccpu "$(client_cpu)" --arg gib "$gib" \
            --arg spread "${spread:-[$DRV_CONNS]}" --arg drops "$(( $(udp_drops) - d0 ))" --arg sdrops "$sdrops" \
            --arg sendfail "$(stat_field "$st" send_drops)" --arg wouldblock "$(stat_field "$st" send_would_block)" --arg wall "$(client_wall)" '
            ($scpu | tonumber? // null) as $sc | ($ccpu | tonumber) as $cc |
            { ok: ($rc == "0" and $c.ok == true and $sc != null), mbps: $c.mb_per_s,
              server_cpu_pct: (if $sc != null and $c.seconds > 0 then ($sc / $c.seconds * 100 | round) else null end),
              client_cpu_pct: (if $c.seconds > 0 then ($cc / ($wall | tonumber) * 100 | round) else null end),
              cpu_gib: (if $sc != null then (($sc + $cc) / ($gib | tonumber) * 100 | round / 100) else null end),
              server_cpu_gib: (if $sc != null then ($sc / ($gib | tonumber) * 100 | round / 100) else null end),
              retrans: $c.retrans, spread: $spread, send_drops: ($sendfail | tonumber? // null),
              send_would_block: ($wouldblock | tonumber? // null), sys_drops: ($drops | tonumber), server_drops: ($sdrops | tonumber? // null) }')
        record "$cell" "$rec"
        [ "$(jq -r .ok <<<"$rec")" = true ] || note "failed run: $DRV_CONNS sinks against $(name_of "$impl") with $sockets socket(s) (rc $CRC; $RUN): $(tail -2 "$RUN/c.err" | tr '\n' ' ' | head -c 300)"
        log "drivers $impl $sockets run $r: $rec"
    done
}

section_drivers() {
    log "section drivers"
    drv_run rust 1; drv_run rust 2; drv_run go 1
    report "" "### 5. Across cores: $DRV_CONNS concurrent sink sessions, $DRV_BYTES each, 1 vs 2 SO_REUSEPORT sockets" ""
    report "Same client (each side's own) with \`--test sink --conns $DRV_CONNS --bytes $DRV_BYTES --msg 16K $DRV_FLAGS\`; our server \`kcp-perf server --sockets 1|2\` (a driver task per socket on Tokio's 2 workers); kcp-go's server (one socket) for reference. MB/s: aggregate, client's summary (all bytes / first start to last answer). CPU %: process CPU / that interval. Spread: sessions per socket (kernel's SO_REUSEPORT hash). Median of $REPEATS runs." ""
    report "| server | MB/s | vs 1 socket | server CPU % | client CPU % | CPU s/GiB (both) | server CPU s/GiB | retrans | drops server (all) | spread (last run) | runs |"
    report "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"
    local c label
    for c in rust.1 rust.2 go.1; do
        case $c in rust.1) label="ours, 1 socket";; rust.2) label="ours, 2 sockets";; go.1) label="kcp-go client → kcp-go server";; esac
        local last; last=$(jq -rs '[.[] | .spread // empty] | last // ""' "$OUT/cell.drv.$c")
        report "| $label | $(fmt 1 "$(med "drv.$c" mbps)") | $(ratio "$(med "drv.$c" mbps)" "$(med drv.rust.1 mbps)") | $(med "drv.$c" server_cpu_pct) | $(med "drv.$c" client_cpu_pct) | $(fmt 2 "$(med "drv.$c" cpu_gib)") | $(fmt 2 "$(med "drv.$c" server_cpu_gib)") | $(med "drv.$c" retrans) | $(med "drv.$c" server_drops) ($(med "drv.$c" sys_drops)) | $last | $(runs "drv.$c") |"
    done
    report "" "Per-run MB/s: 1 socket $(all drv.rust.1 mbps); 2 sockets $(all drv.rust.2 mbps) (spreads: $(all drv.rust.2 spread))."
}

# ---------------------------------------------------------------------------------------------
# kcp-perf client against the kcp-mio example server and the kcp-tokio server.
mio_run() {
    local impl=$1
    local flags; flags="$(win_flags 1024) --crypt aes --key bench --datashard 10 --parityshard 3"
    local gib; gib=$(awk -v b="$(bytes_of "$BYTES")" 'BEGIN { print b / 1073741824 }')
    for r in $(seq "$REPEATS"); do
        new_run
        # shellcheck disable=SC2086
        if start_server "$impl" $flags; then
            # shellcheck disable=SC2086
            client rust "$TIMEOUT" --test sink --bytes "$BYTES" --msg 16K $flags
            wait_server_lines 1 5 || true
            local scpu; scpu=$(fsub "$(proc_cpu "$SPID")" "$SCPU0")
            stop_server
            local c; c=$(client_summary); local s; s=$({ grep '"role":"server"' "$RUN/s.out" || echo '{}'; } | tail -1)
            record "mio.sink.$impl" "$(jq -nc --argjson c "$c" --argjson s "$s" --arg rc "$CRC" --arg scpu "$scpu" --arg ccpu "$(client_cpu)" --arg gib "$gib" '
                ($scpu | tonumber? // null) as $sc |
                { ok: ($rc == "0" and $c.ok == true and $sc != null), recv_mbps: $s.mb_per_s, client_mbps: $c.mb_per_s,
                  server_cpu_gib: (if $sc != null then ($sc / ($gib | tonumber) * 100 | round / 100) else null end),
                  client_cpu_gib: (($ccpu | tonumber) / ($gib | tonumber) * 100 | round / 100), retrans: $c.retrans }')"
            log "mio sink $impl run $r: $(cat "$RUN/rec.json")"
        else record "mio.sink.$impl" '{"ok":false}'; fi
        new_run
        # shellcheck disable=SC2086
        if start_server "$impl" $flags; then
            # shellcheck disable=SC2086
            client rust $((TIMEOUT * 2)) --test echo --conns "$MIO_CONNS" --bytes $((64 * MIO_ECHO_N)) --msg 64 $flags
            local scpu; scpu=$(fsub "$(proc_cpu "$SPID")" "$SCPU0")
            local hwm; hwm=$(proc_hwm "$SPID")
            stop_server
            local c; c=$(client_summary)
            record "mio.echo.$impl" "$(jq -nc --argjson c "$c" --arg rc "$CRC" --arg scpu "$scpu" --arg hwm "$hwm" '
                { ok: ($rc == "0" and $c.ok == true), p50_ms: ($c.rtt_p50_us / 1000), p99_ms: ($c.rtt_p99_us / 1000),
                  server_cpu: ($scpu | tonumber? // null), hwm_mib: (($hwm | tonumber) / 1024 | round), retrans: $c.retrans }')"
            log "mio echo $impl run $r: $(cat "$RUN/rec.json")"
            grep -q '"summary":true' "$RUN/c.out" && { client_summary >"$RUN/c.trim"; mv "$RUN/c.trim" "$RUN/c.out"; }
        else record "mio.echo.$impl" '{"ok":false}'; fi
    done
}

section_mio() {
    log "section mio"
    mio_run mio; mio_run rust
    report "" "### 6. kcp-mio example server vs kcp-tokio server, same client (kcp-perf), same flags" ""
    report "Flags: \`$(win_flags 1024) --crypt aes --key bench --datashard 10 --parityshard 3\`. Sink: one session, $BYTES (MB/s receiver-timed and client-timed; CPU per GiB of each end). Echo: $MIO_CONNS sessions at once, $MIO_ECHO_N × 64 B back to back each; round trips over all sessions (client's summary); server CPU seconds over the run. Median of $REPEATS runs; ratio = kcp-mio / kcp-tokio." ""
    report "| server | sink MB/s | client-timed | server CPU s/GiB | client CPU s/GiB | sink retrans | echo ×$MIO_CONNS p50 ms | p99 ms | echo server CPU s | echo peak RSS MiB | echo retrans | runs sink / echo |"
    report "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    local i
    for i in mio rust; do
        report "| $([ "$i" = mio ] && echo "kcp-mio \`server\` example" || echo "kcp-tokio \`kcp-perf server\`") | $(fmt 1 "$(med "mio.sink.$i" recv_mbps)") | $(fmt 1 "$(med "mio.sink.$i" client_mbps)") | $(fmt 2 "$(med "mio.sink.$i" server_cpu_gib)") | $(fmt 2 "$(med "mio.sink.$i" client_cpu_gib)") | $(med "mio.sink.$i" retrans) | $(fmt 1 "$(med "mio.echo.$i" p50_ms)") | $(fmt 1 "$(med "mio.echo.$i" p99_ms)") | $(fmt 2 "$(med "mio.echo.$i" server_cpu)") | $(med "mio.echo.$i" hwm_mib) | $(med "mio.echo.$i" retrans) | $(runs "mio.sink.$i") / $(runs "mio.echo.$i") |"
    done
    report "| ratio | $(ratio "$(med mio.sink.mio recv_mbps)" "$(med mio.sink.rust recv_mbps)") | $(ratio "$(med mio.sink.mio client_mbps)" "$(med mio.sink.rust client_mbps)") | $(ratio "$(med mio.sink.mio server_cpu_gib)" "$(med mio.sink.rust server_cpu_gib)") | | | $(ratio "$(med mio.echo.mio p50_ms)" "$(med mio.echo.rust p50_ms)") | $(ratio "$(med mio.echo.mio p99_ms)" "$(med mio.echo.rust p99_ms)") | $(ratio "$(med mio.echo.mio server_cpu)" "$(med mio.echo.rust server_cpu)") | | | |"
}

# ---------------------------------------------------------------------------------------------
load0=$(cut -d' ' -f1-3 /proc/loadavg)
report "## bench-perf.sh run of $(date -u '+%Y-%m-%d %H:%M UTC')" ""
report "Machine: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r); $(rustc --version 2>/dev/null | cut -d' ' -f1-2), $(go version 2>/dev/null | awk '{ print $3 }'), kcp-go $(dpkg-query -W -f '${Version}' golang-github-xtaci-kcp-dev 2>/dev/null || echo '?'), iperf3 $(iperf3 --version 2>/dev/null | awk 'NR == 1 { print $2 }'); commit $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$root" && [ -n "$(git status --porcelain -uno 2>/dev/null)" ] && echo ' (modified)'). Loopback; repeats $REPEATS; sections: $SECTIONS.$([ -z "${PIN_SERVER:-}${PIN_CLIENT:-}" ] || echo " Pinned (taskset -c): servers on CPUs ${PIN_SERVER:-any}, clients on ${PIN_CLIENT:-any}.")"
report "Kernel: net.core.rmem_max $(cat /proc/sys/net/core/rmem_max), wmem_max $(cat /proc/sys/net/core/wmem_max), netdev_max_backlog $(cat /proc/sys/net/core/netdev_max_backlog) (the tools ask for 4 MiB socket buffers; the kernel caps them at these maxima)."
report "Load average at start: $load0. Busiest processes at start (CPU % over their lifetime): $(ps -eo pcpu=,ni=,comm= --sort=-pcpu | awk '$1 > 5 { printf "%s%s (%s%%, nice %s)", (n++ ? ", " : ""), $3, $1, $2 }' | head -c 300)."
MYSID=$(ps -o sid= $$ | tr -d ' ')
# How quiet the machine was, every 15 s: the load average, and the processes outside this
# run's session that used more than 10 % of a core over the last second (top's second sample).
( while sleep 14; do
    echo "$(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg) others: $(top -b -n 2 -d 1 -w 200 2>/dev/null | awk '/^top -/ { n++ } n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 > 10 { print $1, $9, $4, $12 }' | while read -r pid cpu ni cmd; do [ "$(ps -o sid= "$pid" 2>/dev/null | tr -d ' ')" = "$MYSID" ] || printf '%s(%s%%,nice %s) ' "$cmd" "$cpu" "$ni"; done | head -c 200)"
  done ) >"$OUT/load.log" 2>/dev/null &
LOADPID=$!
for s in $ALL_SECTIONS; do if want "$s"; then "section_$s"; fi; done
kill "$LOADPID" 2>/dev/null || true
report "" "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg); 1-minute load during the run (every 15 s): $(awk '{ print $3 }' "$OUT/load.log" | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "min %s, median %s, max %s", v[1], v[int((NR + 1) / 2)], v[NR]; else print "n/a" }'); $(( $(date +%s) - started )) s in all. Raw runs: $OUT (load.log: the busiest other processes)."
if [ ${#NOTES[@]} -gt 0 ]; then report "" "Notes:"; for n in "${NOTES[@]}"; do report "- $n"; done; fi
