//! The Tokio face of smux, ours against ours: streams both ways over an in-memory pipe and over
//! a KCP session, versions 1 and 2, plain and snappy, small buffers so the bucket and the
//! windows turn over, keepalive timeout, a peer of another version, and one task per session.

use std::time::Duration;

use kcp_testkit::rng::Rng;
use kcp_tokio::smux::{
    CloseReason, Framing, Keepalive, ProtocolError, SessionEnd, SmuxConfig, SmuxSession, Version,
};
use kcp_tokio::{Config, KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

fn config(version: Version, bucket: usize, window: usize) -> SmuxConfig {
    SmuxConfig {
        version,
        max_receive_buffer: bucket,
        max_stream_buffer: window,
        ..SmuxConfig::default()
    }
}

/// Echoes every accepted stream until the session ends.
fn echo_server(session: SmuxSession) {
    tokio::spawn(async move {
        while let Ok(s) = session.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(s);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// `n` streams of `len` bytes each, echoed and checked, all at once.
async fn echo_streams(client: &SmuxSession, n: usize, len: usize) {
    let mut set = JoinSet::new();
    for i in 0..n {
        let s = client.open().unwrap();
        set.spawn(async move {
            let sent = Rng::new(i as u64 + 1).bytes(len);
            let (mut r, mut w) = tokio::io::split(s);
            let out = sent.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&out).await.unwrap();
                w
            });
            let mut got = vec![0u8; len];
            r.read_exact(&mut got).await.unwrap();
            assert!(got == sent, "stream {i}: wrong bytes");
            drop(writer.await.unwrap());
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

async fn pair(
    version: Version,
    framing: Framing,
    bucket: usize,
    window: usize,
) -> (SmuxSession, SmuxSession) {
    let (a, b) = tokio::io::duplex(16 * 1024);
    let c = SmuxSession::client(a, config(version, bucket, window), framing).unwrap();
    let s = SmuxSession::server(b, config(version, bucket, window), framing).unwrap();
    (c, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_both_versions_and_framings_with_small_buffers() {
    for version in [Version::V1, Version::V2] {
        for framing in [Framing::Plain, Framing::Snappy] {
            // A 64 KiB bucket and 16 KiB windows: both turn over many times.
            let (client, server) = pair(version, framing, 64 * 1024, 16 * 1024).await;
            echo_server(server);
            tokio::time::timeout(
                Duration::from_secs(60),
                echo_streams(&client, 16, 300 * 1024),
            )
            .await
            .unwrap_or_else(|_| panic!("{version:?} {framing:?} timed out"));
            assert!(!client.is_closed());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_opens_streams_too() {
    let (client, server) = pair(Version::V2, Framing::Snappy, 1 << 20, 256 * 1024).await;
    echo_server(client.clone());
    echo_streams(&server, 4, 100_000).await;
    let s = server.open().unwrap();
    assert_eq!(s.id() % 2, 0, "a server's stream ids are even");
    let c = client.open().unwrap();
    assert_eq!(c.id() % 2, 1, "a client's stream ids are odd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_stream_ends_the_peers_reads() {
    let (client, server) = pair(Version::V1, Framing::Plain, 1 << 20, 65536).await;
    let mut a = client.open().unwrap();
    a.write_all(b"last words").await.unwrap();
    a.shutdown().await.unwrap();
    let mut b = server.accept().await.unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    // Dropping a stream closes it as well.
    let c = client.open().unwrap();
    let mut d = server.accept().await.unwrap();
    drop(c);
    let mut buf = [0u8; 4];
    assert_eq!(d.read(&mut buf).await.unwrap(), 0);
    // Other streams are unaffected.
    echo_server(server);
    echo_streams(&client, 2, 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_closes_the_session() {
    let (client, server) = pair(Version::V1, Framing::Plain, 1 << 20, 65536).await;
    let s = client.open().unwrap();
    drop(s);
    drop(client);
    let end = tokio::time::timeout(Duration::from_secs(5), server.closed())
        .await
        .unwrap();
    assert_eq!(end, SessionEnd::Smux(CloseReason::Eof));
    assert!(server.accept().await.is_err() || server.is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_times_out_and_keepalives_keep_a_quiet_one() {
    let ka = Keepalive {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
    };
    let cfg = SmuxConfig {
        keepalive: Some(ka),
        ..SmuxConfig::default()
    };
    // A peer that never writes: the session ends after one to two timeouts.
    let (a, _silent) = tokio::io::duplex(1 << 16);
    let lonely = SmuxSession::client(a, cfg.clone(), Framing::Plain).unwrap();
    let t0 = tokio::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), lonely.closed())
        .await
        .unwrap();
    assert_eq!(end, SessionEnd::Smux(CloseReason::Timeout));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_secs(6),
        "{took:?}"
    );
    // Two live peers with nothing to say stay up on keepalives alone.
    let (a, b) = tokio::io::duplex(1 << 16);
    let c = SmuxSession::client(a, cfg.clone(), Framing::Snappy).unwrap();
    let s = SmuxSession::server(b, cfg, Framing::Snappy).unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!c.is_closed() && !s.is_closed());
    assert!(c.stats().nop_in >= 20 && s.stats().nop_in >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_version_ends_the_session_with_a_clear_error() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let c = SmuxSession::client(a, config(Version::V2, 1 << 20, 65536), Framing::Plain).unwrap();
    let s = SmuxSession::server(b, config(Version::V1, 1 << 20, 65536), Framing::Plain).unwrap();
    let _stream = c.open().unwrap();
    let e = s.accept().await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(
        s.end(),
        Some(SessionEnd::Smux(CloseReason::Protocol(
            ProtocolError::Version {
                expected: 1,
                got: 2
            }
        )))
    );
    assert!(e.to_string().contains("smux version 2 received"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_snappy_framing_ends_the_session() {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let s = SmuxSession::server(a, SmuxConfig::default(), Framing::Snappy).unwrap();
    b.write_all(b"this is not the snappy stream identifier")
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), s.closed())
        .await
        .unwrap();
    assert!(
        matches!(end, SessionEnd::Transport(ref e) if e.contains("snappy")),
        "{end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_kcp_session_with_one_task_per_session() {
    let kcp = KcpConfig::new(Config::fast3())
        .fec(10, 3)
        .crypt("aes", "smux")
        .unwrap();
    // The server runs on a runtime of its own, so this runtime's task count is the client's.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server_kcp = kcp.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = KcpListener::bind("127.0.0.1:0", server_kcp).await.unwrap();
            tx.send(listener.local_addr()).unwrap();
            let mut sessions = Vec::new();
            // Serve the one client session, then stop (the thread ends with the test).
            if let Ok(Ok((k, _))) =
                tokio::time::timeout(Duration::from_secs(60), listener.accept()).await
            {
                let s =
                    SmuxSession::server(k, config(Version::V2, 4 << 20, 2 << 20), Framing::Snappy)
                        .unwrap();
                sessions.push(s.clone());
                echo_server(s);
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
    });
    let addr = rx.await.unwrap();
    let k = KcpStream::connect(addr, kcp).await.unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let client =
        SmuxSession::client(k, config(Version::V2, 4 << 20, 2 << 20), Framing::Snappy).unwrap();
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 1,
        "one task for the session"
    );
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(client.open().unwrap());
    }
    assert_eq!(metrics.num_alive_tasks(), before + 1, "no task per stream");
    drop(streams);
    tokio::time::timeout(Duration::from_secs(60), echo_streams(&client, 8, 1 << 20))
        .await
        .expect("1 MiB x 8 over KCP");
}
