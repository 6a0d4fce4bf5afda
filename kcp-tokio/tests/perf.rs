//! The kcp-perf protocol in-process: every test by byte count and by duration, message and
//! stream mode, and a bad header that closes only its own session.

use std::time::Duration;

use kcp_core::Config;
use kcp_tokio::perf::{self, Test};
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

fn cfg(stream: bool) -> KcpConfig {
    KcpConfig::new(Config {
        stream,
        ..Config::fast3().with_windows(256, 256)
    })
    .idle_timeout(Some(Duration::from_millis(800)))
}

async fn server(
    stream: bool,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<std::io::Result<perf::Report>>,
) {
    let l = KcpListener::bind("127.0.0.1:0", cfg(stream)).await.unwrap();
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
                assert_eq!(r.rtts_us.len(), 100);
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

#[tokio::test]
async fn duration_runs_end_with_the_session() {
    let (addr, mut reports) = server(true).await;
    for test in [Test::Echo, Test::Sink, Test::Source] {
        let mut c = KcpStream::connect(addr, cfg(true)).await.unwrap();
        let r = timeout(
            Duration::from_secs(20),
            perf::client_for(&mut c, test, 1000, false, None, Duration::from_millis(400)),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(r.bytes > 0 && r.seconds >= 0.39, "{r:?}");
        drop(c); // the server notices by its idle timeout
        let s = timeout(Duration::from_secs(20), reports.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(s.test, test);
        assert!(s.bytes > 0);
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
