//! The kcp-perf protocol in-process: every test by byte count and by duration, message and
//! stream mode, and a bad header that closes only its own session.

use std::time::Duration;

use kcp_core::Config;
use kcp_tokio::perf::{self, Test};
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

fn cfg(stream: bool) -> KcpConfig {
    cfg_idle(stream, Duration::from_millis(800))
}

fn cfg_idle(stream: bool, idle: Duration) -> KcpConfig {
    KcpConfig::new(Config {
        stream,
        ..Config::fast3().with_windows(256, 256)
    })
    .idle_timeout(Some(idle))
}

async fn server(
    stream: bool,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<std::io::Result<perf::Report>>,
) {
    server_with(stream, cfg(stream)).await
}

async fn server_with(
    stream: bool,
    config: KcpConfig,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<std::io::Result<perf::Report>>,
) {
    let l = KcpListener::bind("127.0.0.1:0", config).await.unwrap();
    let addr = l.local_addr();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let r = perf::serve(&mut s, !stream).await;
                if r.is_ok() {
                    let _ = s.shutdown().await;
                }
                let _ = tx.send(r);
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn every_test_by_count_in_both_modes() {
    for stream in [true, false] {
        let (addr, mut reports) = server(stream).await;
        for test in [Test::Echo, Test::Sink, Test::Source] {
            let mut c = KcpStream::connect(addr, cfg(stream)).await.unwrap();
            let bytes = if test == Test::Echo {
                64 * 100
            } else {
                1 << 20
            };
            let msg = if test == Test::Echo { 64 } else { 1000 };
            let r = timeout(
                Duration::from_secs(20),
                perf::client(&mut c, test, bytes, msg, !stream),
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(r.bytes, bytes);
            if test == Test::Echo {
                assert_eq!(r.rtt.count(), 100);
                assert!(r.rtt_us(0.5) > 0);
            }
            let s = timeout(Duration::from_secs(20), reports.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!((s.test, s.bytes), (test, bytes));
        }
    }
}

/// A `--duration` run ends with an end-of-run frame: the server reports at once (not after
/// its idle timeout) with the bytes the client counted, in both modes.
#[tokio::test]
async fn duration_runs_end_with_an_end_of_run_message() {
    // A long idle timeout, so that a report well before it can only come from the end frame
    // even on a loaded machine.
    let idle = Duration::from_secs(10);
    for stream in [true, false] {
        let (addr, mut reports) = server_with(stream, cfg_idle(stream, idle)).await;
        for test in [Test::Echo, Test::Sink, Test::Source] {
            let mut c = KcpStream::connect(addr, cfg_idle(stream, idle))
                .await
                .unwrap();
            let r = timeout(
                Duration::from_secs(20),
                perf::client_for(
                    &mut c,
                    test,
                    1000,
                    !stream,
                    None,
                    Duration::from_millis(300),
                ),
            )
            .await
            .unwrap()
            .unwrap();
            assert!(r.bytes > 0 && r.seconds >= 0.29, "{r:?}");
            let t = std::time::Instant::now();
            // The idle timeout is 10 s: a report within 3 s came from the end frame.
            let s = timeout(Duration::from_secs(3), reports.recv())
                .await
                .expect("the server reported only by idle timeout")
                .unwrap()
                .unwrap();
            assert!(t.elapsed() < Duration::from_secs(3));
            assert_eq!((s.test, s.bytes), (test, r.bytes));
        }
    }
}

/// A client of another implementation may send any bytes: the server checks nothing but
/// the header, answers the sink with the count and CRC of what arrived, and echoes
/// whatever it gets.
#[tokio::test]
async fn the_server_accepts_any_bytes_for_sink_and_echo() {
    use tokio::io::AsyncReadExt;
    let mut rng = kcp_testkit::rng::Rng::new(5);
    let mut random = move |n: usize| rng.bytes(n);
    for stream in [true, false] {
        let (addr, mut reports) = server(stream).await;
        // Sink: 200 KiB of random bytes in 1000-byte writes.
        let mut c = KcpStream::connect(addr, cfg(stream)).await.unwrap();
        let data = random(200 * 1024);
        if stream {
            c.write_all(&perf::header(Test::Sink, data.len() as u64))
                .await
                .unwrap();
        } else {
            c.send_message(&perf::header(Test::Sink, data.len() as u64))
                .await
                .unwrap();
        }
        for piece in data.chunks(1000) {
            c.write_all(piece).await.unwrap();
        }
        let mut ans = [0u8; 12];
        timeout(Duration::from_secs(20), c.read_exact(&mut ans))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            u64::from_le_bytes(ans[..8].try_into().unwrap()),
            data.len() as u64
        );
        assert_eq!(
            u32::from_le_bytes(ans[8..].try_into().unwrap()),
            crc32fast::hash(&data)
        );
        let s = timeout(Duration::from_secs(10), reports.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.unwrap().bytes, data.len() as u64);
        // Echo: random messages come back unchanged.
        let mut c = KcpStream::connect(addr, cfg(stream)).await.unwrap();
        let total = 100 * 700;
        if stream {
            c.write_all(&perf::header(Test::Echo, total)).await.unwrap();
        } else {
            c.send_message(&perf::header(Test::Echo, total))
                .await
                .unwrap();
        }
        for _ in 0..100 {
            let m = random(700);
            c.write_all(&m).await.unwrap();
            let mut back = vec![0u8; 700];
            timeout(Duration::from_secs(10), c.read_exact(&mut back))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(back, m);
        }
        let s = timeout(Duration::from_secs(10), reports.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.unwrap().bytes, total);
    }
}

#[tokio::test]
async fn a_bad_header_closes_only_its_session() {
    let (addr, mut reports) = server(true).await;
    let mut bad = KcpStream::connect(addr, cfg(true)).await.unwrap();
    bad.write_all(b"NOPE this is not a header").await.unwrap();
    let e = timeout(Duration::from_secs(10), reports.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    let mut good = KcpStream::connect(addr, cfg(true)).await.unwrap();
    let r = perf::client(&mut good, Test::Sink, 100_000, 4096, false)
        .await
        .unwrap();
    assert_eq!(r.bytes, 100_000);
}
