#!/usr/bin/env bash
# Loopback self-test of kcp-perf-go against itself (see README.md):
#   every cipher x FEC 0/0 and 10/3 x stream and message mode x echo/sink/source (1 MiB),
#   4 concurrent sessions (also paced with --rate and dialled over a --ramp), a wrong key (client must fail after --timeout), a bad header
#   (server must log it and keep serving), bad flags (non-zero exit).
# Usage: interop/kcpperf-go/selftest.sh [cipher...]     (runs niced; ~1-2 min)
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
B=$("$here/build-go.sh") || exit 1
ciphers=${*:-aes aes-128 aes-192 salsa20 blowfish twofish cast5 3des tea xtea xor sm4 none null}
tmp=$(mktemp -d); srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0; fail=0
check() { # name, then the command
    local name=$1; shift
    if "$@" >"$tmp/out" 2>"$tmp/err"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $name"; cat "$tmp/err" >&2; fi
}
start_server() { # args...
    rm -f "$tmp/srv.out" "$tmp/srv.err"
    nice "$B" server --json "$@" >"$tmp/srv.out" 2>"$tmp/srv.err" & srv=$!
    for _ in $(seq 50); do grep -qs '^listening' "$tmp/srv.err" && break; sleep 0.1; done
    addr=$(awk '/^listening/{print $2}' "$tmp/srv.err")
    [ -n "$addr" ] || { echo "server did not start: $(cat "$tmp/srv.err")"; exit 1; }
}
stop_server() { kill "$srv"; wait "$srv" 2>/dev/null; srv=; }

for c in $ciphers; do
  for fec in "0 0" "10 3"; do
    set -- $fec
    for stream in true false; do
      opts=(--crypt "$c" --datashard "$1" --parityshard "$2" --stream="$stream")
      start_server "${opts[@]}"
      for t in echo sink source; do
        check "$c fec $1/$2 stream=$stream $t" nice "$B" client --connect "$addr" --test "$t" --bytes 1M --timeout 10 "${opts[@]}"
      done
      stop_server
    done
  done
  echo "cipher $c: $pass passed, $fail failed so far"
done

start_server
for t in echo sink source; do
  check "4 conns $t" nice "$B" client --connect "$addr" --test "$t" --conns 4 --json
  grep -q '"ok":true,"summary":true' "$tmp/out" || { echo "FAIL 4 conns $t summary"; fail=$((fail+1)); }
done
check "4 conns message mode echo" nice "$B" client --connect "$addr" --test echo --conns 4 --stream=false --msg 4K
# --rate and --ramp: 4 sessions dialled over 0.3 s, 5 messages each 0.1 s apart: the run
# takes at least 0.4 s (a session's last message) + 0.225 s (the last session's start).
t0=$(date +%s%N)
check "4 conns echo --rate 10 --ramp 0.3" nice "$B" client --connect "$addr" --test echo --conns 4 --rate 10 --ramp 0.3 --msg 64 --bytes 320
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ "$ms" -ge 600 ]; then pass=$((pass+1)); else echo "FAIL --rate/--ramp run took $ms ms (at least 625 expected)"; fail=$((fail+1)); fi
# wrong key: must fail (non-zero), within about --timeout
t0=$(date +%s)
if nice "$B" client --connect "$addr" --test echo --key wrong --timeout 2 >"$tmp/out" 2>"$tmp/err"; then
  echo "FAIL wrong key: client succeeded"; fail=$((fail+1))
else
  echo "wrong key: client failed as expected after $(( $(date +%s) - t0 )) s: $(tail -1 "$tmp/err")"; pass=$((pass+1))
fi
stop_server

# bad header: a raw KCP push segment (null crypt, no FEC) carrying 16 bytes of garbage
start_server --crypt null --datashard 0 --parityshard 0
python3 - "$addr" <<'PY'
import socket, struct, sys
host, port = sys.argv[1].rsplit(':', 1)
data = b'XPRF\x01\x01\x00\x00' + bytes(8)
seg = struct.pack('<IBBHIIII', 0x1234, 81, 0, 128, 0, 0, 0, len(data)) + data
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(seg, (host, int(port)))
PY
sleep 0.5
if grep -q 'bad header' "$tmp/srv.err"; then echo "bad header logged: $(grep 'bad header' "$tmp/srv.err")"; pass=$((pass+1)); else echo "FAIL bad header not logged"; fail=$((fail+1)); fi
check "serves after bad header" nice "$B" client --connect "$addr" --test sink --crypt null --datashard 0 --parityshard 0
stop_server

# bad flags must exit non-zero with a message
for args in "client --test echo" "client --connect 127.0.0.1:1 --test nope" "client --connect 127.0.0.1:1 --test echo --crypt rot13" \
            "client --connect 127.0.0.1:1 --test echo --bytes 1X" "client --connect 127.0.0.1:1 --test sink --rate 1" \
            "client --connect 127.0.0.1:1 --test echo --ramp -1" "server --mode turbo" "server --bogus" "frobnicate"; do
  if "$B" $args >/dev/null 2>"$tmp/err"; then echo "FAIL flags '$args' exited 0"; fail=$((fail+1)); else pass=$((pass+1)); fi
done
echo "total: $pass passed, $fail failed"
[ "$fail" = 0 ]
