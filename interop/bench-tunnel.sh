#!/usr/bin/env bash
# The tunnel against kcptun: iperf3 TCP through a client/server pair on loopback (aes, FEC 10/3,
# fast3, --nocomp), throughput and CPU seconds per GiB of both tunnel ends together.
# Usage: interop/bench-tunnel.sh [SECONDS]   (default 10; needs iperf3 and Debian's kcptun)
# Pairs: Go<->Go, ours<->ours and both mixed pairs, upload and download (-R).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
command -v iperf3 >/dev/null || { echo "bench-tunnel: iperf3 missing (apt-get install iperf3)" >&2; exit 2; }
command -v kcptun-client >/dev/null || { echo "bench-tunnel: kcptun missing (run .ci/setup.sh)" >&2; exit 2; }
(cd "$root" && cargo build -q --release -p kcpx-tokio --features tunnel --bins)
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ours_c=$target/release/kcptun-rs-client ours_s=$target/release/kcptun-rs-server
go_c=$(command -v kcptun-client) go_s=$(command -v kcptun-server)
out=$(mktemp -d /tmp/bench-tunnel.XXXXXX)
# Ports below the ephemeral range (where a port the kernel gave a recent connection may still
# be taken), free for TCP and UDP.
# shellcheck source=interop/ports.sh
. "$root/interop/ports.sh"
ip=$(free_pair)
iperf3 -s -p "$ip" >/dev/null 2>&1 & ipid=$!
trap 'kill $ipid 2>/dev/null || true; rm -rf "$out"' EXIT
sleep 0.5
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # CLIENT SERVER LABEL [iperf args]
    local c=$1 s=$2 label=$3; shift 3
    local up; up=$(free_pair); local tp=$((up + 1))
    local args="--crypt aes --key bench --mode fast3 --ds 10 --ps 3 --nocomp --quiet"
    # shellcheck disable=SC2086
    "$s" -l "127.0.0.1:$up" -t "127.0.0.1:$ip" $args >/dev/null 2>"$out/server.err" & local sp=$!
    # shellcheck disable=SC2086
    "$c" -l "127.0.0.1:$tp" -r "127.0.0.1:$up" $args >/dev/null 2>"$out/client.err" & local cp=$!
    sleep 1
    if ! kill -0 "$cp" 2>/dev/null || ! kill -0 "$sp" 2>/dev/null; then
        echo "| $label | failed: a tunnel end exited: $(cat "$out/server.err" "$out/client.err" | tr '\n' ' ' | head -c 300) | | | |"
        kill $cp $sp 2>/dev/null || true; wait $cp $sp 2>/dev/null || true
        return
    fi
    local c0 s0 c1 s1 r
    c0=$(cpu $cp); s0=$(cpu $sp)
    r=$(timeout $((secs + 20)) iperf3 -c 127.0.0.1 -p "$tp" -t "$secs" -J "$@" |
        python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]; print("%.1f %d" % (e["sum_received"]["bits_per_second"]/1e6, e["sum_received"]["bytes"]))')
    c1=$(cpu $cp); s1=$(cpu $sp)
    kill $cp $sp 2>/dev/null || true; wait $cp $sp 2>/dev/null || true
    python3 -c "
mbps, b = '$r'.split(); b = int(b); tck = $(getconf CLK_TCK)
c = ($c1 - $c0) / tck; s = ($s1 - $s0) / tck
print('| %s | %s | %.1f | %.1f | %.2f |' % ('$label', mbps, c, s, (c + s) / max(b / 2**30, 1e-9)))"
}
echo "| pair, direction | Mbit/s | client CPU s | server CPU s | CPU-s per GiB (both ends) |"
echo "|---|---|---|---|---|"
for dir in up down; do
    extra=(); [ "$dir" = down ] && extra=(-R)
    run "$go_c" "$go_s" "Go client / Go server, $dir" "${extra[@]}"
    run "$ours_c" "$ours_s" "our client / our server, $dir" "${extra[@]}"
    run "$go_c" "$ours_s" "Go client / our server, $dir" "${extra[@]}"
    run "$ours_c" "$go_s" "our client / Go server, $dir" "${extra[@]}"
done
