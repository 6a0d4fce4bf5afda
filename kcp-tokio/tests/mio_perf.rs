//! The kcp-perf protocol of `kcp_mio::perf` against the contract
//! (`interop/kcpperf-go/README.md`), over loopback in both stream and message mode:
//!
//! * kcp-tokio's client (`kcp_tokio::perf`, what `kcp-perf client` runs) drives the mio
//!   server through echo, sink and source, by byte count and for a duration (`--duration`:
//!   count 0, framed payload, the end-of-run frame);
//! * the mio client runs every test for a duration against the kcp-tokio server and the mio
//!   server, and both sides count the same bytes;
//! * a client written here, sending random bytes cut at arbitrary points, gets the right sink
//!   answers and its echoes back: the server checks nothing but the header, the frames and
//!   the counts;
//! * bad headers and oversized frames fail only their own session.
//!
//! The Go peer's count-0 runs are in `kcpgo_interop.rs`.

mod common;

use common::mio as mio_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::runtime;
use kcp_mio::perf::{self, ClientSession, Report, Test};
use kcp_mio::KcpConfig;
use kcp_testkit::go::Case;
use kcp_testkit::rng::Rng;
use kcp_tokio::perf as tperf;
use kcp_tokio::KcpStream;
use mio_common::{case_config, mio_sessions, MioServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TESTS: [Test; 3] = [Test::Echo, Test::Sink, Test::Source];
/// How long each `--duration` run lasts.
const RUN: Duration = Duration::from_millis(300);

/// AES and FEC 10/3 (both adapters take the same `KcpConfig`).
fn config(stream: bool) -> KcpConfig {
    case_config(&Case::new("aes", true, stream))
}

fn tokio_test(test: Test) -> tperf::Test {
    match test {
        Test::Echo => tperf::Test::Echo,
        Test::Sink => tperf::Test::Sink,
        Test::Source => tperf::Test::Source,
    }
}

/// Waits until the mio server finished `n` sessions; returns their reports, oldest first.
/// Panics unless exactly `failures` sessions failed and `n` finished within 5 s.
fn served_after(server: &MioServer, n: usize, failures: usize, what: &str) -> Vec<Report> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.served().done.len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Copied out: a panic while holding the lock would poison it for the server thread.
    let (done, failed) = {
        let s = server.served();
        (s.done.clone(), s.failed.clone())
    };
    assert_eq!(failed.len(), failures, "{what}: {failed:?}");
    assert_eq!(done.len(), n, "{what}: {done:?}");
    done
}

fn served(server: &MioServer, n: usize, what: &str) -> Vec<Report> {
    served_after(server, n, 0, what)
}

/// A kcp-tokio client session (kcp-perf's code path): `duration` None runs by count.
fn tokio_client(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    stream: bool,
    test: Test,
    count: u64,
    duration: Option<Duration>,
) -> tperf::Report {
    rt.block_on(async move {
        let mut s = KcpStream::connect(addr, config(stream)).await?;
        let msg = if test == Test::Echo { 1000 } else { 16 << 10 };
        let msg = if stream { msg } else { msg.min(s.mss()) };
        let t = tokio_test(test);
        let run = async {
            match duration {
                Some(d) => tperf::client_for(&mut s, t, msg, !stream, None, d).await,
                None => tperf::client(&mut s, t, count, msg, !stream).await,
            }
        };
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .map_err(|_| std::io::Error::other("timed out"))?
    })
    .unwrap_or_else(|e| panic!("stream {stream} {test:?} {duration:?}: {e}"))
}

#[test]
fn kcp_perf_client_runs_every_test_against_the_mio_server_by_byte_count() {
    let rt = runtime();
    for stream in [true, false] {
        let server = MioServer::start(config(stream));
        for (k, test) in TESTS.into_iter().enumerate() {
            let count = if test == Test::Echo { 100_000 } else { 1 << 20 };
            let r = tokio_client(&rt, server.addr, stream, test, count, None);
            assert_eq!(r.bytes, count, "stream {stream} {test:?}");
            let s = served(&server, k + 1, &format!("stream {stream} {test:?}"));
            assert_eq!((s[k].test, s[k].bytes), (test, count));
        }
    }
}

/// Count 0: the server must take the framed run and report when the end frame arrives (it
/// has no idle timeout here, so a report at all proves the end frame was understood), with
/// the payload bytes the client counted.
#[test]
fn kcp_perf_client_runs_every_test_against_the_mio_server_for_a_duration() {
    let rt = runtime();
    for stream in [true, false] {
        let server = MioServer::start(config(stream));
        for (k, test) in TESTS.into_iter().enumerate() {
            let r = tokio_client(&rt, server.addr, stream, test, 0, Some(RUN));
            assert!(r.bytes > 0, "stream {stream} {test:?}: {r:?}");
            assert!(r.seconds >= 0.25, "stream {stream} {test:?}: {r:?}");
            let s = served(&server, k + 1, &format!("stream {stream} {test:?}"));
            assert_eq!((s[k].test, s[k].bytes), (test, r.bytes), "stream {stream}");
        }
    }
}

/// A kcp-tokio kcp-perf server (what `kcp-perf server` runs) whose reports come back on a
/// channel.
fn tokio_server(
    rt: &tokio::runtime::Runtime,
    stream: bool,
) -> (
    SocketAddr,
    std::sync::mpsc::Receiver<std::io::Result<tperf::Report>>,
) {
    let l = rt
        .block_on(kcp_tokio::KcpListener::bind("127.0.0.1:0", config(stream)))
        .unwrap();
    let addr = l.local_addr();
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let r = tperf::serve(&mut s, !stream).await;
                let _ = tx.send(r);
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, rx)
}

/// A mio client's `--duration` run of `RUN`; checks what any such run must show.
fn mio_duration_run(addr: SocketAddr, stream: bool, test: Test) -> Report {
    let msg = if test == Test::Echo { 1000 } else { 16 << 10 };
    let t = Instant::now();
    let r = mio_sessions(addr, &config(stream), 1, Duration::from_secs(20), |mss| {
        let msg = if stream { msg } else { msg.min(mss) };
        ClientSession::for_duration(test, msg, !stream, RUN)
    })
    .pop()
    .unwrap()
    .unwrap_or_else(|e| panic!("stream {stream} {test:?}: {e}"));
    // The run lasts its duration; then the end frame ends it.
    assert!(t.elapsed() >= RUN, "stream {stream} {test:?}: {r:?}");
    assert!(
        r.bytes > 0 && r.seconds > 0.0,
        "stream {stream} {test:?}: {r:?}"
    );
    if test != Test::Source {
        // From the first write, which follows the header at once, to the end of the run.
        // (A source's interval starts at the first byte received, whenever the server
        // starts sending.)
        assert!(r.seconds >= 0.25, "stream {stream} {test:?}: {r:?}");
    }
    if test == Test::Echo {
        assert!(!r.rtt.is_empty());
    }
    r
}

#[test]
fn mio_client_runs_every_test_against_the_tokio_server_for_a_duration() {
    let rt = runtime();
    for stream in [true, false] {
        let (addr, reports) = tokio_server(&rt, stream);
        for test in TESTS {
            let r = mio_duration_run(addr, stream, test);
            let s = reports
                .recv_timeout(Duration::from_secs(5))
                .expect("the kcp-tokio server reported")
                .unwrap_or_else(|e| panic!("kcp-tokio server, stream {stream} {test:?}: {e}"));
            assert_eq!((s.test, s.bytes), (tokio_test(test), r.bytes));
        }
    }
}

#[test]
fn mio_client_runs_every_test_against_the_mio_server_for_a_duration_and_by_count() {
    for stream in [true, false] {
        let server = MioServer::start(config(stream));
        for (k, test) in TESTS.into_iter().enumerate() {
            let r = mio_duration_run(server.addr, stream, test);
            let s = served(&server, 2 * k + 1, &format!("stream {stream} {test:?}"));
            assert_eq!((s[2 * k].test, s[2 * k].bytes), (test, r.bytes));
            let r = mio_common::mio_client(
                server.addr,
                &config(stream),
                test,
                300_000,
                1200,
                &format!("stream {stream}"),
            );
            assert_eq!(r.bytes, 300_000);
            served(&server, 2 * k + 2, &format!("stream {stream} {test:?}"));
        }
    }
}

/// Another implementation's client: its own writes, cut where it likes.
struct RawClient {
    s: KcpStream,
    stream: bool,
}

impl RawClient {
    async fn connect(addr: SocketAddr, stream: bool, test: Test, count: u64) -> RawClient {
        let mut c = RawClient {
            s: KcpStream::connect(addr, config(stream)).await.unwrap(),
            stream,
        };
        // The header is a message of its own.
        c.write(&perf::header(test, count)).await;
        c
    }

    /// One write (message mode: as messages of at most one segment, as kcp-go writes).
    async fn write(&mut self, data: &[u8]) {
        if self.stream {
            self.s.write_all(data).await.unwrap();
        } else {
            for m in data.chunks(self.s.mss()) {
                self.s.send_message(m).await.unwrap();
            }
        }
    }

    async fn read(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(10), self.s.read_exact(&mut v))
            .await
            .expect("the server answered in time")
            .unwrap();
        v
    }

    /// Writes `stream` in pieces cut at random points (frames split across writes).
    async fn write_cut(&mut self, rng: &mut Rng, mut stream: &[u8]) {
        while !stream.is_empty() {
            let n = (1 + rng.below(3000) as usize).min(stream.len());
            self.write(&stream[..n]).await;
            stream = &stream[n..];
        }
    }
}

fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in payloads {
        v.extend_from_slice(&perf::frame_header(p.len() as u32));
        v.extend_from_slice(p);
    }
    v
}

#[test]
fn the_mio_server_answers_random_bytes_by_their_count_and_crc_and_echoes_them() {
    let rt = runtime();
    for stream in [true, false] {
        let server = MioServer::start(config(stream));
        let addr = server.addr;
        let sent = rt.block_on(async move {
            let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ stream as u64);
            let mut bytes = Vec::new();

            // Sink by count: random bytes in random writes; the answer is their count and CRC.
            let data = rng.bytes(200_000);
            let mut c = RawClient::connect(addr, stream, Test::Sink, data.len() as u64).await;
            c.write_cut(&mut rng, &data).await;
            let ans = c.read(12).await;
            let ans: [u8; 12] = ans.try_into().unwrap();
            assert_eq!(
                perf::parse_sink_answer(&ans),
                (data.len() as u64, crc32fast::hash(&data))
            );
            bytes.push(data.len() as u64);

            // Sink for a duration: random frames of random sizes, cut anywhere, then the end.
            let frames: Vec<Vec<u8>> = (0..40)
                .map(|_| {
                    let n = 1 + rng.below(5000) as usize;
                    rng.bytes(n)
                })
                .collect();
            let payload: Vec<u8> = frames.concat();
            let mut c = RawClient::connect(addr, stream, Test::Sink, 0).await;
            let mut wire = framed(&frames);
            wire.extend_from_slice(&perf::END_FRAME);
            c.write_cut(&mut rng, &wire).await;
            let ans: [u8; 12] = c.read(12).await.try_into().unwrap();
            assert_eq!(
                perf::parse_sink_answer(&ans),
                (payload.len() as u64, crc32fast::hash(&payload))
            );
            bytes.push(payload.len() as u64);

            // Echo by count: random messages come back unchanged.
            let mut c = RawClient::connect(addr, stream, Test::Echo, 50 * 700).await;
            for _ in 0..50 {
                let m = rng.bytes(700);
                c.write(&m).await;
                assert_eq!(c.read(m.len()).await, m);
            }
            bytes.push(50 * 700);

            // Echo for a duration: random frames (some cut in two writes) come back, then the
            // end frame does.
            let mut c = RawClient::connect(addr, stream, Test::Echo, 0).await;
            let mut echoed = 0;
            for _ in 0..30 {
                let n = 1 + rng.below(3000) as usize;
                let f = framed(&[rng.bytes(n)]);
                let cut = rng.below(f.len() as u64) as usize;
                c.write(&f[..cut]).await;
                c.write(&f[cut..]).await;
                assert_eq!(c.read(f.len()).await, f);
                echoed += n as u64;
            }
            c.write(&perf::END_FRAME).await;
            assert_eq!(c.read(4).await, perf::END_FRAME);
            bytes.push(echoed);
            bytes
        });
        let s = served(&server, 4, &format!("stream {stream}"));
        let tests: Vec<_> = s.iter().map(|r| (r.test, r.bytes)).collect();
        assert_eq!(
            tests,
            vec![
                (Test::Sink, sent[0]),
                (Test::Sink, sent[1]),
                (Test::Echo, sent[2]),
                (Test::Echo, sent[3]),
            ],
            "stream {stream}"
        );
    }
}

/// Waits for the server's first failure and returns it.
fn failure(server: &MioServer) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let first = server.served().failed.first().cloned();
        if let Some(f) = first {
            return f;
        }
        assert!(Instant::now() < deadline, "no failure reported");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_header_message_of_the_wrong_length_fails_only_its_session() {
    let rt = runtime();
    let server = MioServer::start(config(false));
    let addr = server.addr;
    rt.block_on(async move {
        let c = KcpStream::connect(addr, config(false)).await.unwrap();
        let mut h = perf::header(Test::Sink, 100).to_vec();
        h.extend_from_slice(b"more");
        c.send_message(&h).await.unwrap();
        // Keep the session until the server reacted.
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let f = failure(&server);
    assert!(f.starts_with("bad header: "), "{f}");
    let r = tokio_client(&rt, addr, false, Test::Sink, 100_000, None);
    assert_eq!(r.bytes, 100_000);
    assert_eq!(
        served_after(&server, 1, 1, "after a bad header")[0].bytes,
        100_000
    );
}

#[test]
fn a_frame_longer_than_one_mebibyte_fails_only_its_session() {
    let rt = runtime();
    let server = MioServer::start(config(true));
    let addr = server.addr;
    rt.block_on(async move {
        let mut c = RawClient::connect(addr, true, Test::Sink, 0).await;
        c.write(&perf::frame_header(perf::MAX_FRAME + 1)).await;
        c.write(&[0u8; 100]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let f = failure(&server);
    assert!(f.contains("frame of 1048577 bytes"), "{f}");
    let r = tokio_client(&rt, addr, true, Test::Echo, 0, Some(RUN));
    assert!(r.bytes > 0);
    assert_eq!(
        served_after(&server, 1, 1, "after a long frame")[0].bytes,
        r.bytes
    );
}
