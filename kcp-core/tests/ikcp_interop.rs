//! Interop with ikcp.c (the PyPI package `siokcp`, driven by `interop/ikcp_peer.py`) over a
//! loopback UDP socket: kcp-core sends to ikcp.c and receives from it, in message and stream
//! mode, with loss injected on both sides, and every byte is checked.
//!
//! The peer must be installed (`.ci/setup.sh`); if it is missing these tests fail, never skip.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kcp_core::sim::Rng;
use kcp_core::{Config, Kcp, Millis};

const CONV: u32 = 0x1122_3344;
const LOSS: f64 = 0.05; // on our side; the peer drops another 5% of its own
const DEADLINE: Duration = Duration::from_secs(60);

fn pattern(i: u64) -> u8 {
    ((i * 7 + i / 251) % 256) as u8
}

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/ikcp_peer.py")
}

fn spawn_peer(args: &[&str]) -> Child {
    Command::new("python3")
        .arg(peer_script())
        .args(args)
        .args([
            "--conv",
            &CONV.to_string(),
            "--loss",
            "5",
            "--seed",
            "3",
            "--timeout",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with siokcp is required: run .ci/setup.sh")
}

fn config(stream: bool, pacing: bool) -> Config {
    // Matches the peer: ikcp_nodelay(1, 10, 2, 1), windows 128, mtu 1400.
    let mut cfg = Config::ikcp()
        .with_nodelay(true, 10, 2, true)
        .with_windows(128, 128);
    cfg.stream = stream;
    cfg.pacing = pacing;
    cfg
}

/// Our side of the link: a socket, an engine and a lossy pump driven by the real clock.
struct Local {
    sock: UdpSocket,
    kcp: Kcp<'static>,
    peer: Option<std::net::SocketAddr>,
    rng: Rng,
    start: Instant,
    buf: Vec<u8>,
}

impl Local {
    fn new(stream: bool, pacing: bool) -> Local {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let start = Instant::now();
        Local {
            sock,
            kcp: Kcp::new(CONV, config(stream, pacing), Millis(0)).unwrap(),
            peer: None,
            rng: Rng::new(11),
            start,
            buf: vec![0; 2048],
        }
    }
    fn now(&self) -> Millis {
        Millis(self.start.elapsed().as_millis() as u32)
    }
    /// One turn: receive what is there, run timers, send what is due.
    fn turn(&mut self) {
        let now = self.now();
        while let Ok((n, from)) = self.sock.recv_from(&mut self.buf) {
            self.peer.get_or_insert(from);
            if !self.rng.chance(LOSS) {
                let _ = self.kcp.handle_datagram(now, &self.buf[..n]);
            }
            self.sock.set_nonblocking(true).unwrap();
        }
        self.sock.set_nonblocking(false).unwrap();
        self.kcp.handle_timeout(now);
        self.flush(now);
    }
    fn flush(&mut self, now: Millis) {
        while let Some(n) = self.kcp.poll_transmit(now, &mut self.buf) {
            if let (Some(peer), false) = (self.peer, self.rng.chance(LOSS)) {
                let _ = self.sock.send_to(&self.buf[..n], peer);
            }
        }
    }
}

fn read_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

fn rust_sends_to_ikcp(stream: bool, pacing: bool, total: u64, msg: usize) {
    let mode = if stream { "stream" } else { "message" };
    let mut child = spawn_peer(&[
        "recv",
        "--mode",
        mode,
        "--bytes",
        &total.to_string(),
        "--msg",
        &msg.to_string(),
    ]);
    let line = read_line(&mut child);
    let port: u16 = line
        .strip_prefix("listening ")
        .expect(&line)
        .parse()
        .unwrap();
    let mut local = Local::new(stream, pacing);
    local.peer = Some(format!("127.0.0.1:{port}").parse().unwrap());
    let mut sent = 0u64;
    let begin = Instant::now();
    while sent < total || !local.kcp.is_idle() {
        assert!(
            begin.elapsed() < DEADLINE,
            "timed out with {sent} of {total} sent"
        );
        while sent < total && local.kcp.is_writable() {
            let len = (msg as u64).min(total - sent);
            let data: Vec<u8> = (sent..sent + len).map(pattern).collect();
            match local.kcp.send(&data) {
                Ok(n) => sent += n as u64,
                Err(e) => panic!("send: {e}"),
            }
        }
        let now = local.now();
        local.flush(now);
        local.turn();
    }
    // Keep answering while the peer lingers, then check its verdict.
    let linger = Instant::now();
    while linger.elapsed() < Duration::from_millis(300) {
        local.turn();
    }
    let verdict = read_line(&mut child);
    let status = child.wait().unwrap();
    assert_eq!(verdict, format!("received {total} ok"));
    assert!(status.success());
    assert!(
        local.kcp.stats().retrans_segs > 0,
        "loss should have forced retransmissions"
    );
}

fn ikcp_sends_to_rust(stream: bool, total: u64, msg: usize) {
    let mode = if stream { "stream" } else { "message" };
    let mut local = Local::new(stream, false);
    let addr = local.sock.local_addr().unwrap().to_string();
    let mut child = spawn_peer(&[
        "send",
        "--connect",
        &addr,
        "--mode",
        mode,
        "--bytes",
        &total.to_string(),
        "--msg",
        &msg.to_string(),
    ]);
    let mut got = 0u64;
    let mut app = vec![0u8; 256 * 1024];
    let begin = Instant::now();
    while got < total {
        assert!(
            begin.elapsed() < DEADLINE,
            "timed out with {got} of {total} received"
        );
        local.turn();
        while let Ok(n) = local.kcp.recv(&mut app) {
            {
                if !stream {
                    let want = (msg as u64).min(total - got) as usize;
                    assert_eq!(n, want, "message boundary at offset {got}");
                }
                for (k, &b) in app[..n].iter().enumerate() {
                    assert_eq!(b, pattern(got + k as u64), "byte {}", got + k as u64);
                }
                got += n as u64;
            }
        }
    }
    // Let our last ACKs reach the sender so it can finish.
    let mut verdict = String::new();
    let mut reader_done = false;
    let linger = Instant::now();
    while linger.elapsed() < Duration::from_secs(20) {
        local.turn();
        if let Ok(Some(_)) = child.try_wait() {
            reader_done = true;
            break;
        }
    }
    assert!(reader_done, "ikcp.c sender did not finish");
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut verdict)
        .unwrap();
    assert_eq!(verdict.trim(), format!("sent {total}"));
    assert!(child.wait().unwrap().success());
    assert!(local.kcp.recv(&mut app).is_err(), "more data than was sent");
}

#[test]
fn rust_to_ikcp_message_mode() {
    rust_sends_to_ikcp(false, false, 400_000, 3000);
}

#[test]
fn rust_to_ikcp_stream_mode() {
    rust_sends_to_ikcp(true, false, 600_000, 5000);
}

/// A paced sender (one segment until the ikcp.c peer answered, then paced at the rate its
/// ACKs show) delivers every byte through the same losses.
#[test]
fn paced_rust_to_ikcp_stream_mode() {
    rust_sends_to_ikcp(true, true, 600_000, 5000);
}

#[test]
fn paced_rust_to_ikcp_message_mode() {
    rust_sends_to_ikcp(false, true, 400_000, 3000);
}

#[test]
fn ikcp_to_rust_message_mode() {
    ikcp_sends_to_rust(false, 400_000, 3000);
}

#[test]
fn ikcp_to_rust_stream_mode() {
    ikcp_sends_to_rust(true, 600_000, 5000);
}
