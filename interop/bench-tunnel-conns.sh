#!/usr/bin/env bash
# Many concurrent TCP connections through one tunnel against kcptun: CONNS connections (default
# 1000) through a client/server pair on loopback (aes, FEC 10/3, fast3, --nocomp, kcptun's
# default windows and --conn 1: one KCP session), each echoing one 64 B..1 KiB message every
# 100 ms..1 s for SECONDS (default 30) through a TCP echo target behind the server. Reports per
# pair the connections up / failed, echoes checked, echo latency p50/p99/max, both ends' peak RSS
# (VmHWM) and CPU seconds. The load generator and the echo target are
# kcp-tokio/examples/tunnel-load.rs; every echoed byte is compared, and failures are printed.
# Usage: interop/bench-tunnel-conns.sh [SECONDS] [CONNS]   (needs Debian's kcptun)
# Pairs: Go<->Go, ours<->ours and both mixed pairs. Exit status 1 when any pair had a failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-30}
conns=${2:-1000}
command -v kcptun-client >/dev/null || { echo "bench-tunnel-conns: kcptun missing (run .ci/setup.sh)" >&2; exit 2; }
# Each connection costs a descriptor in the load client, the tunnel client, the tunnel server
# and the echo target.
need=$((conns + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" || { echo "bench-tunnel-conns: cannot raise ulimit -n to $need (hard limit $(ulimit -Hn))" >&2; exit 2; }
fi
(cd "$root" && cargo build -q --release -p kcpx-tokio --features tunnel --bins --example tunnel-load)
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ours_c=$target/release/kcptun-rs-client ours_s=$target/release/kcptun-rs-server
load=$target/release/examples/tunnel-load
go_c=$(command -v kcptun-client) go_s=$(command -v kcptun-server)
out=$(mktemp -d /tmp/bench-tunnel-conns.XXXXXX)
# Ports below the ephemeral range (the 2,000 connections of a run take ephemeral ports, and an
# established connection's local port cannot be listened on), free for TCP and UDP.
# shellcheck source=interop/ports.sh
. "$root/interop/ports.sh"
ep=$(free_pair)
"$load" echo "127.0.0.1:$ep" 2>"$out/echo.err" & epid=$!
trap 'kill $epid 2>/dev/null || true' EXIT
sleep 0.5
tck=$(getconf CLK_TCK)
cpu() { awk -v t="$tck" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
hwm() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
rss() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
status=0
run() { # CLIENT SERVER LABEL
    local c=$1 s=$2 label=$3 tag
    tag=$(tr -c 'a-zA-Z0-9\n' _ <<<"$label")
    local up; up=$(free_pair); local tp=$((up + 1))
    local args="--crypt aes --key bench --mode fast3 --ds 10 --ps 3 --nocomp --quiet"
    # shellcheck disable=SC2086
    "$s" -l "127.0.0.1:$up" -t "127.0.0.1:$ep" $args >"$out/$tag.server.log" 2>&1 & local sp=$!
    # shellcheck disable=SC2086
    "$c" -l "127.0.0.1:$tp" -r "127.0.0.1:$up" $args >"$out/$tag.client.log" 2>&1 & local cp=$!
    sleep 1
    local p
    for p in "$sp" "$cp"; do
        kill -0 "$p" 2>/dev/null ||
            echo "bench-tunnel-conns: $label: a tunnel end exited at start: $(cat "$out/$tag".*.log | grep -i 'error\|in use' | head -2)" >&2
    done
    local s_idle c0 s0 r rc=0
    s_idle=$(rss $sp); c0=$(cpu $cp); s0=$(cpu $sp)
    r=$(timeout $((secs + 120)) "$load" run "127.0.0.1:$tp" --conns "$conns" --secs "$secs" \
        2>"$out/$tag.load.err") || rc=$?
    local c1 s1 shwm chwm
    c1=$(cpu $cp); s1=$(cpu $sp); shwm=$(hwm $sp); chwm=$(hwm $cp)
    kill $cp $sp 2>/dev/null || true; wait $cp $sp 2>/dev/null || true
    if [ "$rc" != 0 ]; then
        status=1
        echo "bench-tunnel-conns: $label: load exit $rc: ${r:-no summary}" >&2
        sed 's/^/    /' "$out/$tag.load.err" >&2
    fi
    echo "$label: $r" >>"$out/summary.txt"
    python3 - "$label" "$r" "$rc" "$s_idle" "$shwm" "$chwm" "$s0" "$s1" "$c0" "$c1" <<'EOF'
import sys
label, r, rc, s_idle, shwm, chwm, s0, s1, c0, c1 = sys.argv[1:]
kv = dict(p.split("=", 1) for p in r.split()) if r else {}
g = lambda k: kv.get(k, "n/a")
ok = "ok" if rc == "0" else "FAIL (exit %s)" % rc
print("| %s | %s/%s | %s | %s | %s | %s | %s | %s -> %s | %s | %.1f | %.1f | %s |" % (
    label, g("up"), g("conns"), g("failed"), g("msgs"), g("p50_ms"), g("p99_ms"), g("max_ms"),
    s_idle, shwm, chwm, float(s1) - float(s0), float(c1) - float(c0), ok))
EOF
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $conns connections, $secs s per pair; logs in $out"
echo
echo "| pair (client / server) | conns up | failed | echoes checked | p50 ms | p99 ms | max ms | server RSS idle -> peak MiB | client peak RSS MiB | server CPU s | client CPU s | result |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
run "$go_c" "$go_s" "Go / Go"
run "$ours_c" "$ours_s" "ours / ours"
run "$go_c" "$ours_s" "Go / ours"
run "$ours_c" "$go_s" "ours / Go"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
