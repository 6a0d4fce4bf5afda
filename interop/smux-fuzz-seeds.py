#!/usr/bin/env python3
# Writes fuzz seeds from real Go traffic: the first bytes Go smux (v1, v2) sends as a client,
# plain (fuzz/corpus/smux_session/go-v*) and under snappy framing (fuzz/corpus/snappy_decode/go-v*),
# in each target's input format. Run from the repository root after interop/build-go.sh.
import socket, subprocess, sys, time, struct
def capture(ver, comp):
    ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(1)
    args = ['interop/bin/smux-peer', '-mode', 'open', '-ver', str(ver), '-streams', '6', '-max', '2000', '-connect', '%s:%d' % ls.getsockname()]
    if comp: args.append('-comp')
    p = subprocess.Popen(args, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    c, _ = ls.accept(); c.settimeout(0.5)
    data = b''
    t = time.time()
    while time.time() - t < 1.5 and len(data) < 3000:
        try:
            d = c.recv(65536)
            if not d: break
            data += d
        except socket.timeout:
            pass
    c.close(); p.kill(); p.wait()
    return data
for ver in (1, 2):
    raw = capture(ver, False)[:900]
    for head in ((ver - 1) | 0x40,):
        ops = b''
        for i in range(0, len(raw), 255):
            part = raw[i:i+255]; ops += bytes([0, len(part)]) + part
            ops += bytes([2, 0, 3, 200])
        open('fuzz/corpus/smux_session/go-v%d' % ver, 'wb').write(bytes([head]) + ops)
    comp = capture(ver, True)[:1000]
    open('fuzz/corpus/snappy_decode/go-v%d' % ver, 'wb').write(bytes([2, 7]) + comp)
    print(ver, len(raw), len(comp))
