#!/usr/bin/env python3
"""ikcp.c reference peer over loopback UDP, for the Rust interop tests.

Wraps the original C KCP (ikcp.c) through the `siokcp` package (its
KCPConnection class calls ikcp_create/send/recv/input/update/check/...).
Roles: echo, send, recv.  See interop/README-ikcp.md for the interface.

Single-threaded loop: drain the UDP socket into ikcp_input, let the role
consume/produce data, ikcp_update with a u32 millisecond clock, then wait on
the socket for at most min(ikcp_check delay, 10 ms).
"""
import argparse
import random
import select
import socket
import sys
import time

try:
    from siokcp import KCPConnection
except ImportError as e:  # e.g. /usr/bin/python3 instead of the pyenv one
    print(f"ikcp_peer: cannot import siokcp ({e}); run with the python3 "
          "that has it installed (pip install siokcp==0.0.5)", file=sys.stderr)
    sys.exit(2)

U32 = 0xFFFFFFFF
IKCP_WND_RCV = 128  # ikcp.c refuses one ikcp_send needing >= this many fragments
LINGER_SECS = 1.0
MAX_DGRAMS_PER_TICK = 256

# byte[i] = (i * 7 + i // 251) % 256 repeats every 251 * 256 bytes.
PERIOD_LEN = 251 * 256
PERIOD = bytes((i * 7 + i // 251) % 256 for i in range(PERIOD_LEN))
PERIOD2 = PERIOD * 2


def pattern(offset, n):
    """Bytes offset..offset+n of the deterministic test pattern."""
    start = offset % PERIOD_LEN
    if n <= PERIOD_LEN:  # the common case: no big copy per message
        return PERIOD2[start:start + n]
    reps = (start + n) // PERIOD_LEN + 1
    return (PERIOD * reps)[start:start + n]


def now_ms():
    return int(time.monotonic() * 1000) & U32


def die(msg, code=2):
    print(f"ikcp_peer: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def parse_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_args(argv):
    p = argparse.ArgumentParser(description="ikcp.c (siokcp) peer for interop tests")
    p.add_argument("role", choices=["echo", "send", "recv"])
    p.add_argument("--bind", type=parse_addr, default=("127.0.0.1", 0))
    p.add_argument("--connect", type=parse_addr)
    p.add_argument("--bytes", type=int, default=0)
    p.add_argument("--msg", type=int, default=1024)
    p.add_argument("--conv", type=lambda s: int(s, 0), default=0x11223344)
    p.add_argument("--mode", choices=["stream", "message"], default="stream")
    p.add_argument("--nodelay", type=int, default=1)
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--resend", type=int, default=2)
    p.add_argument("--nc", type=int, default=1)
    p.add_argument("--sndwnd", type=int, default=128)
    p.add_argument("--rcvwnd", type=int, default=128)
    p.add_argument("--mtu", type=int, default=1400)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--idle", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args(argv)
    if a.role == "send" and a.connect is None:
        p.error("send needs --connect HOST:PORT")
    if a.bytes < 0 or a.msg < 1:
        p.error("--bytes must be >= 0 and --msg >= 1")
    if not 0 <= a.loss <= 100:
        p.error("--loss must be within 0..100")
    return a


class Peer:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.peer = a.connect  # learned from the first datagram for echo/recv
        self.stats = dict(rx=0, rx_drop=0, tx=0, tx_drop=0, input_err=0, max_waitsnd=0)

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            self.sock.setsockopt(socket.SOL_SOCKET, opt, 1 << 20)
        self.sock.bind(("127.0.0.1", 0) if a.role == "send" else a.bind)
        self.sock.setblocking(False)

        # siokcp registers its own C output callback at construction; it
        # forwards each datagram to this Python callable as bytes.
        self.kcp = KCPConnection(a.conv & U32, self._output, lambda _log: None)
        self.kcp.stream = 1 if a.mode == "stream" else 0
        if self.kcp.nodelay(a.nodelay, a.interval, a.resend, a.nc) < 0:
            die("ikcp_nodelay failed")
        if self.kcp.wndsize(a.sndwnd, a.rcvwnd) < 0:
            die("ikcp_wndsize failed")
        if self.kcp.setmtu(a.mtu) < 0:
            die(f"ikcp_setmtu({a.mtu}) failed")

    def lost(self):
        return self.a.loss > 0 and self.rng.random() * 100.0 < self.a.loss

    def _output(self, data):
        # Must never raise: siokcp turns an exception here into a SystemError
        # escaping from whatever ikcp call flushed.
        try:
            if self.peer is None or self.lost():
                self.stats["tx_drop"] += 1
            else:
                self.sock.sendto(data, self.peer)
                self.stats["tx"] += 1
        except OSError:  # ENOBUFS/EAGAIN etc.: treat as a lost datagram
            self.stats["tx_drop"] += 1
        return 0

    def pump_socket(self):
        """ikcp_input every pending datagram; returns how many arrived."""
        n = 0
        while n < MAX_DGRAMS_PER_TICK:
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # e.g. ICMP-induced ECONNREFUSED: ignore
            if self.peer is None:
                self.peer = addr
            elif addr != self.peer:
                continue  # a stranger: not our conversation
            n += 1
            if self.lost():
                self.stats["rx_drop"] += 1
                continue
            self.stats["rx"] += 1
            if self.kcp.receive_data(data) < 0:
                self.stats["input_err"] += 1
        return n

    def messages(self):
        """Everything ikcp_recv currently yields, in order."""
        while True:
            m = self.kcp.next_event()  # ikcp_peeksize + ikcp_recv
            if m is None:
                return
            yield m

    def wait(self, deadline):
        cur = now_ms()
        delay = (self.kcp.check(cur) - cur) & U32
        delay = min(delay, 10) / 1000.0
        delay = max(0.0, min(delay, deadline - time.monotonic()))
        select.select([self.sock], [], [], delay)

    def report(self, what):
        s = self.stats
        print(f"ikcp_peer {self.a.role}: {what}; datagrams rx={s['rx']} "
              f"rx_dropped={s['rx_drop']} tx={s['tx']} tx_dropped={s['tx_drop']} "
              f"input_errors={s['input_err']} max_waitsnd={s['max_waitsnd']}", file=sys.stderr, flush=True)


def run(a):
    pr = Peer(a)
    kcp = pr.kcp
    if a.role != "send":
        print(f"listening {pr.sock.getsockname()[1]}", flush=True)

    start = time.monotonic()
    deadline = start + a.timeout
    last_rx = start
    data = pattern(0, a.bytes) if a.role == "send" else b""
    sent_off = 0       # send: bytes handed to ikcp_send
    got = 0            # recv: bytes verified so far
    done_at = None     # recv: when the last byte arrived (linger start)
    echoed = [0, 0]    # echo: messages, bytes
    limit = 2 * a.sndwnd
    if a.mode == "message" and a.role == "send" and -(-a.msg // kcp.mss) >= IKCP_WND_RCV:
        die(f"--msg {a.msg} needs >= {IKCP_WND_RCV} fragments of mss {kcp.mss}; "
            "ikcp_send would return -2")
    chunk = a.msg if a.mode == "message" else min(a.msg, 64 * kcp.mss)

    while True:
        t = time.monotonic()
        if t >= deadline:
            pr.report("timeout")
            die(f"{a.role}: timeout after {a.timeout}s "
                f"(sent_off={sent_off} got={got} waitsnd={kcp.waitsnd()})")
        if pr.pump_socket():
            last_rx = t

        if a.role == "echo":
            for m in pr.messages():
                kcp.send(m)  # same boundaries in message mode
                echoed[0] += 1
                echoed[1] += len(m)
            if t - last_rx >= a.idle:
                pr.report(f"idle {a.idle}s, echoed {echoed[0]} messages / {echoed[1]} bytes")
                return 0

        elif a.role == "send":
            for _ in pr.messages():
                pass  # receive (and so ACK) whatever arrives; content unused
            while sent_off < a.bytes:
                piece = data[sent_off:sent_off + chunk]
                frags = -(-len(piece) // kcp.mss)
                # Keep waitsnd <= 2*snd_wnd (a piece bigger than that alone
                # may still go out when nothing is pending).
                if kcp.waitsnd() + frags > limit and kcp.waitsnd() > 0:
                    break
                n = kcp.send(piece)  # bytes queued (stream mode may queue fewer)
                sent_off += n if n > 0 else len(piece)
                pr.stats["max_waitsnd"] = max(pr.stats["max_waitsnd"], kcp.waitsnd())
            if sent_off >= a.bytes and kcp.waitsnd() == 0:
                print(f"sent {a.bytes}", flush=True)
                pr.report(f"sent {a.bytes}")
                return 0
            if kcp.state == -1:
                die("ikcp.c declared the link dead (dead_link retransmissions)")

        else:  # recv
            for m in pr.messages():
                if a.mode == "message":
                    last = got + len(m) >= a.bytes
                    if len(m) != a.msg and not (last and len(m) < a.msg):
                        print(f"ikcp_peer recv: message of {len(m)} bytes at offset "
                              f"{got}, expected {a.msg}", file=sys.stderr)
                        print(f"MISMATCH at offset {got}", flush=True)
                        return 1
                want = pattern(got, min(len(m), max(a.bytes - got, 0)))
                if m[:len(want)] != want or len(m) > len(want):
                    bad = next((i for i in range(len(want)) if m[i] != want[i]), len(want))
                    print(f"MISMATCH at offset {got + bad}", flush=True)
                    return 1
                got += len(m)
            if got >= a.bytes and done_at is None:
                done_at = t
            if done_at is not None and t - done_at >= LINGER_SECS:
                print(f"received {got} ok", flush=True)
                pr.report(f"received {got}")
                return 0

        kcp.update(now_ms())
        pr.wait(deadline)


def main():
    a = parse_args(sys.argv[1:])
    try:
        sys.exit(run(a))
    except KeyboardInterrupt:
        die("interrupted", 130)
    except (OSError, ValueError) as e:  # socket errors, ikcp_send < 0
        die(f"{a.role}: {e!r}")


if __name__ == "__main__":
    main()
