//! `KcpEndpoint`: one socket that accepts and dials. Two OS processes (this test binary and
//! a child copy of it) each bind one endpoint and dial each other at the same instant, then
//! exchange data both ways, every byte checked, in the two documented cases: the same conv on
//! both sides is one session each (nothing to accept), different convs are two sessions each
//! (the one dialed, the one accepted with the peer's conv). In one process: a dial whose
//! peer's session arrived first takes that session over, sessions queued before it stay
//! acceptable in order, and the socket is there through `AsFd`; the peer-to-peer example's
//! pair runs.

#[allow(dead_code)] // its `main`
#[path = "../examples/p2p.rs"]
mod p2p_example;

use std::future::Future;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kcp_core::Config;
use kcp_tokio::perf::pattern;
use kcp_tokio::{KcpConfig, KcpConnector, KcpEndpoint, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const PEER_ADDR: &str = "KCP_TOKIO_P2P_PEER_ADDR";
const PEER_MODE: &str = "KCP_TOKIO_P2P_MODE";
/// The conv both peers agree on in the same-conv case.
const AGREED: u32 = 0x5eed_c0de;
/// Bytes each side writes on each session.
const TOTAL: usize = 1 << 20;
const WAIT: Duration = Duration::from_secs(60);

fn cfg() -> KcpConfig {
    KcpConfig::new(Config::fast3().with_windows(512, 512))
}

/// The byte at `i` of stream `tag` (each direction of each session has its own tag, so data
/// that went to the wrong session or came from the wrong writer fails the check).
fn byte(tag: u8, i: usize) -> u8 {
    pattern(i as u64) ^ tag.wrapping_mul(0x3b)
}

async fn write_all_tagged(s: &mut KcpStream, tag: u8) {
    let data: Vec<u8> = (0..TOTAL).map(|i| byte(tag, i)).collect();
    s.write_all(&data).await.unwrap();
}

async fn read_all_tagged(s: &mut KcpStream, tag: u8) {
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0usize;
    while got < TOTAL {
        let n = timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("tag {tag}: stalled after {got} bytes"))
            .unwrap();
        assert!(n > 0, "tag {tag}: end of stream after {got} bytes");
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, byte(tag, got + k), "tag {tag}: byte {}", got + k);
        }
        got += n;
    }
}

/// Writes `out` and reads `inp` on `s` at once, then waits until what it wrote was
/// acknowledged (so neither process exits with the other's data in flight).
/// The halves are returned: the session stays while they are held.
async fn exchange(s: KcpStream, out: u8, inp: u8) -> impl Sized {
    let (mut r, mut w) = s.into_split();
    tokio::join!(
        async {
            let data: Vec<u8> = (0..TOTAL).map(|i| byte(out, i)).collect();
            w.write_all(&data).await.unwrap();
            timeout(WAIT, w.shutdown()).await.unwrap().unwrap();
        },
        read_exactly(&mut r, inp),
    );
    (r, w)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sleeps until the wall-clock instant `at` (ms since the epoch), which both processes share.
async fn until(at: u64) {
    let now = epoch_ms();
    assert!(
        at > now,
        "the start instant passed before this peer was ready"
    );
    tokio::time::sleep(Duration::from_millis(at - now)).await;
}

/// The convs one side saw: the session it dialed, and the one it accepted (if any).
#[derive(Debug, PartialEq)]
struct Seen {
    dialed: u32,
    accepted: Option<u32>,
}

/// One peer's whole part: dial `peer` at `start`, exchange, check the documented outcome.
/// `me` (0 or 1) picks the tags this side writes.
async fn side(ep: &KcpEndpoint, peer: SocketAddr, same_conv: bool, start: u64, me: u8) -> Seen {
    // Tags: what side `me` writes on the session it dialed, and on the one it accepted.
    let dial_tag = |side: u8| 10 + side;
    let accept_tag = |side: u8| 20 + side;
    let other = 1 - me;
    until(start).await;
    if same_conv {
        let s = ep.connect_with_conv(peer, AGREED).unwrap();
        assert_eq!(s.conv(), AGREED);
        assert_eq!(s.peer_addr().unwrap(), peer);
        let seen = Seen {
            dialed: s.conv(),
            accepted: None,
        };
        // One session: this side's writes are what the other side reads on its dial.
        let held = exchange(s, dial_tag(me), dial_tag(other)).await;
        assert_eq!(
            ep.sessions(),
            1,
            "a simultaneous open with one conv is one session"
        );
        assert!(
            timeout(Duration::from_millis(500), ep.accept())
                .await
                .is_err(),
            "nothing to accept: the peer's dial is this side's session"
        );
        drop(held);
        timeout(WAIT, ep.wait_idle()).await.unwrap();
        seen
    } else {
        let mut d = ep.connect(peer).await.unwrap();
        // Both sessions start with a write: the dial's first flight opens it at the peer.
        let (mut a, from) = {
            let first = async {
                d.write_all(&[me]).await.unwrap();
            };
            let acc = async { timeout(WAIT, ep.accept()).await.unwrap().unwrap() };
            tokio::join!(first, acc).1
        };
        assert_eq!(from, peer);
        assert_ne!(a.conv(), d.conv(), "two dials, two sessions");
        let mut b = [0u8; 1];
        timeout(WAIT, a.read_exact(&mut b)).await.unwrap().unwrap();
        assert_eq!(b[0], other, "the accepted session is the peer's dial");
        let seen = Seen {
            dialed: d.conv(),
            accepted: Some(a.conv()),
        };
        // Each session carries data both ways: this side writes its dial tag on the session
        // it dialed and reads the peer's accept tag there, and the other way round.
        let held = tokio::join!(
            exchange(d, dial_tag(me), accept_tag(other)),
            exchange(a, accept_tag(me), dial_tag(other)),
        );
        assert_eq!(
            ep.sessions(),
            2,
            "two dials with two convs are two sessions"
        );
        assert!(
            timeout(Duration::from_millis(500), ep.accept())
                .await
                .is_err(),
            "no third session"
        );
        drop(held);
        timeout(WAIT, ep.wait_idle()).await.unwrap();
        seen
    }
}

/// Reads `TOTAL` bytes of `tag` from a borrowed read half.
async fn read_exactly(r: &mut (impl tokio::io::AsyncRead + Unpin), tag: u8) {
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0usize;
    while got < TOTAL {
        let n = timeout(WAIT, r.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("tag {tag}: stalled after {got} bytes"))
            .unwrap();
        assert!(n > 0, "tag {tag}: end of stream after {got} bytes");
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, byte(tag, got + k), "tag {tag}: byte {}", got + k);
        }
        got += n;
    }
}

/// The child's side of the two-process tests: not a test of its own (it needs the parent),
/// hence ignored; the parent runs it with `--ignored --exact`. It prints its address, reads
/// the start instant from stdin, plays side 1 and prints the convs it saw.
#[test]
#[ignore = "run as a child process by the peer-to-peer tests"]
fn p2p_child() {
    let peer: SocketAddr = std::env::var(PEER_ADDR)
        .expect("run by the parent test")
        .parse()
        .unwrap();
    let same_conv = std::env::var(PEER_MODE).unwrap() == "same";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ep = KcpEndpoint::bind("127.0.0.1:0", cfg()).await.unwrap();
        println!("ADDR {}", ep.local_addr());
        io::stdout().flush().unwrap();
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line).unwrap();
        let start: u64 = line.trim().strip_prefix("START ").unwrap().parse().unwrap();
        let seen = side(&ep, peer, same_conv, start, 1).await;
        println!("SEEN {} {}", seen.dialed, seen.accepted.unwrap_or(0));
        io::stdout().flush().unwrap();
    });
}

/// What follows `key` on the child's next line that has it (the test harness prints lines
/// of its own).
async fn next_line(
    out: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    key: &str,
) -> String {
    loop {
        let line = timeout(WAIT, out.next_line())
            .await
            .unwrap_or_else(|_| panic!("the child never printed {key}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the child exited before printing {key}"));
        // The harness's "test p2p_child ... " may precede ours on the line.
        if let Some(at) = line.find(key) {
            return line[at + key.len()..].trim().to_string();
        }
    }
}

/// Runs side 0 here and side 1 in a child process, both dialing at the same instant.
async fn two_processes(same_conv: bool) {
    use tokio::io::AsyncBufReadExt;
    let ep = KcpEndpoint::bind("127.0.0.1:0", cfg()).await.unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "p2p_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PEER_ADDR, ep.local_addr().to_string())
        .env(PEER_MODE, if same_conv { "same" } else { "different" })
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let peer: SocketAddr = next_line(&mut out, "ADDR ").await.parse().unwrap();
    // Both peers dial at this instant (the wall clock both processes share).
    let start = epoch_ms() + 1_000;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("START {start}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let mine = side(&ep, peer, same_conv, start, 0).await;
    let theirs: Vec<u32> = next_line(&mut out, "SEEN ")
        .await
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let status = timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "child: {status}");
    if same_conv {
        assert_eq!(mine.dialed, AGREED);
        assert_eq!(theirs, [AGREED, 0]);
    } else {
        // Each side accepted the session the other dialed.
        assert_eq!(mine.accepted, Some(theirs[0]));
        assert_eq!(theirs[1], mine.dialed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_dial_each_other_with_one_conv_one_session_each() {
    two_processes(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_dial_each_other_with_two_convs_two_sessions_each() {
    two_processes(false).await;
}

/// A future written by hand around `poll_accept`.
struct AcceptOne<'a>(&'a KcpEndpoint);

impl Future for AcceptOne<'_> {
    type Output = io::Result<(KcpStream, SocketAddr)>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll_accept(cx)
    }
}

/// Waits until `ep` has confirmed `n` sessions that peers opened.
async fn passive_opens(ep: &KcpEndpoint, n: u64) {
    let t = Instant::now();
    while ep.stats().passive_opens < n {
        assert!(t.elapsed() < WAIT, "{:?}", ep.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_takes_over_the_peers_session_of_its_conv_that_arrived_first() {
    let a = KcpEndpoint::bind("127.0.0.1:0", cfg()).await.unwrap();
    let b = KcpEndpoint::bind("127.0.0.1:0", cfg()).await.unwrap();
    // A third peer's session reaches `a` first and waits for accept.
    let other = KcpConnector::bind("127.0.0.1:0", cfg()).await.unwrap();
    let mut o = other.connect(a.local_addr()).await.unwrap();
    o.write_all(b"first in line").await.unwrap();
    passive_opens(&a, 1).await;
    // `b` dials `a` with the agreed conv and writes before `a` dials: `a` has confirmed the
    // session as one a peer opened by the time it dials.
    let mut sb = b.connect_with_conv(a.local_addr(), AGREED).unwrap();
    sb.write_all(b"from b").await.unwrap();
    passive_opens(&a, 2).await;
    let mut sa = a.connect_with_conv(b.local_addr(), AGREED).unwrap();
    let mut got = [0u8; 6];
    timeout(WAIT, sa.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"from b");
    sa.write_all(b"from a").await.unwrap();
    timeout(WAIT, sb.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"from a");
    assert_eq!((a.sessions(), b.sessions()), (2, 1));
    // Once a stream has the session, dialing its conv again is refused.
    let e = a.connect_with_conv(b.local_addr(), AGREED).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    // The session queued before it is still there for accept (a hand-written future around
    // poll_accept), and it is the only one.
    let (mut s, from) = timeout(WAIT, AcceptOne(&a)).await.unwrap().unwrap();
    assert_eq!(from, other.local_addr());
    let mut first = [0u8; 13];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"first in line");
    assert!(timeout(Duration::from_millis(300), a.accept())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_dials_a_listener_and_is_dialed_by_a_connector() {
    use kcp_tokio::KcpListener;
    let ep = KcpEndpoint::bind("127.0.0.1:0", cfg()).await.unwrap();
    let l = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let c = KcpConnector::bind("127.0.0.1:0", cfg()).await.unwrap();
    let mut out = ep.connect(l.local_addr()).await.unwrap();
    let mut inc = c.connect(ep.local_addr()).await.unwrap();
    tokio::join!(write_all_tagged(&mut out, 1), write_all_tagged(&mut inc, 2));
    let (mut at_l, _) = timeout(WAIT, l.accept()).await.unwrap().unwrap();
    let (mut at_ep, from) = timeout(WAIT, ep.accept()).await.unwrap().unwrap();
    assert_eq!(from, c.local_addr());
    tokio::join!(
        read_all_tagged(&mut at_l, 1),
        read_all_tagged(&mut at_ep, 2)
    );
    assert_eq!(ep.sessions(), 2);
    let st = ep.stats();
    assert_eq!((st.active_opens, st.passive_opens), (1, 1));
}

#[cfg(unix)]
#[tokio::test]
async fn the_endpoints_socket_is_there_through_as_fd() {
    let ep = KcpEndpoint::bind("127.0.0.1:0", cfg()).await.unwrap();
    // SockRef borrows the socket through AsFd.
    let sock = socket2::SockRef::from(&ep);
    sock.set_recv_buffer_size(1 << 20).unwrap();
    assert!(sock.recv_buffer_size().unwrap() >= 1 << 20);
    assert_eq!(
        sock.local_addr().unwrap().as_socket(),
        Some(ep.local_addr())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_p2p_examples_pair_exchanges_its_lines() {
    let a = KcpEndpoint::bind("127.0.0.1:0", p2p_example::config())
        .await
        .unwrap();
    let b = KcpEndpoint::bind("127.0.0.1:0", p2p_example::config())
        .await
        .unwrap();
    let (aa, ba) = (a.local_addr(), b.local_addr());
    let gap = Duration::from_millis(20);
    let (ra, rb) = timeout(WAIT, async {
        tokio::join!(
            p2p_example::peer(a, ba, 5, gap),
            p2p_example::peer(b, aa, 5, gap)
        )
    })
    .await
    .unwrap();
    let lines = |from: SocketAddr| (0..5).map(move |i| format!("line {i} from {from}"));
    assert!(ra.unwrap().into_iter().eq(lines(ba)));
    assert!(rb.unwrap().into_iter().eq(lines(aa)));
}
