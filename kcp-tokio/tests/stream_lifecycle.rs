//! A KcpStream's end over loopback UDP: shutdown (waits for the acknowledgement, then reads go
//! on, writes fail at once), drop (delivers), abort (discards), a vanished peer (idle timeout),
//! and accept (concurrent callers, sessions that ended before they were accepted).

mod common;

use std::time::{Duration, Instant};

use common::{cfg, echo_server, pair, pattern};
use kcp_tokio::{KcpError, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

#[tokio::test]
async fn shutdown_waits_until_data_is_acknowledged() {
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let addr = listener.local_addr();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 300_000];
        s.read_exact(&mut buf).await.unwrap();
        buf
    });
    let mut c = KcpStream::connect(addr, cfg()).await.unwrap();
    c.write_all(&vec![9u8; 300_000]).await.unwrap();
    let t = Instant::now();
    timeout(Duration::from_secs(10), c.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    let got = timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    assert!(got.iter().all(|&b| b == 9));
    // After shutdown the stream is finished.
    assert!(c.write_all(b"more").await.is_err());
}

/// A server that reads the request to its end... cannot: KCP has no FIN. This one reads a
/// request of known length, replies and drops its stream; the client, after `shutdown`,
/// still reads the whole reply and then end of stream (its idle timeout ends the silent
/// session, which after a shutdown reads as EOF).
#[tokio::test]
async fn shutdown_then_read_to_end_gets_the_whole_reply() {
    let server_cfg = cfg();
    let listener = KcpListener::bind("127.0.0.1:0", server_cfg).await.unwrap();
    let addr = listener.local_addr();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = vec![0u8; 100_000];
        s.read_exact(&mut req).await.unwrap();
        let reply: Vec<u8> = (0..300_000).map(pattern).collect();
        s.write_all(&reply).await.unwrap();
        // Dropped: the reply is delivered within the linger.
    });
    let mut c = KcpStream::connect(addr, cfg().idle_timeout(Some(Duration::from_millis(600))))
        .await
        .unwrap();
    c.write_all(&vec![5u8; 100_000]).await.unwrap();
    timeout(Duration::from_secs(10), c.shutdown())
        .await
        .unwrap()
        .unwrap();
    let mut reply = Vec::new();
    timeout(Duration::from_secs(20), c.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.len(), 300_000);
    assert!(reply.iter().enumerate().all(|(i, &b)| b == pattern(i)));
}

#[tokio::test]
async fn a_write_after_shutdown_fails_at_once_with_broken_pipe() {
    let addr = echo_server(cfg()).await;
    let mut c = KcpStream::connect(addr, cfg()).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    timeout(Duration::from_secs(5), c.shutdown())
        .await
        .unwrap()
        .unwrap();
    // At once: no wait for the peer or a timer (a generous bound for a loaded machine).
    let e = timeout(Duration::from_secs(1), c.write_all(b"more"))
        .await
        .expect("the write after shutdown waited")
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    assert_eq!(KcpError::of(&e), Some(KcpError::WriteShutdown));
    // Reading goes on after the half-close: the echo arrives.
    let mut back = [0u8; 5];
    timeout(Duration::from_secs(5), c.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"hello");
}

/// Dropping a stream right after a write delivers what was written (TCP's close), it does
/// not discard it.
#[tokio::test]
async fn dropping_a_stream_delivers_what_was_written() {
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let addr = listener.local_addr();
    let mut c = KcpStream::connect(addr, cfg()).await.unwrap();
    let data: Vec<u8> = (0..400_000).map(pattern).collect();
    c.write_all(&data).await.unwrap();
    drop(c);
    let (mut s, _) = timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = vec![0u8; 400_000];
    timeout(Duration::from_secs(20), s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got == data);
}

/// `abort` discards what was not delivered: a peer that never reads gets nothing more
/// after it, and the local socket's driver stops sending.
#[tokio::test]
async fn abort_discards_at_once() {
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = KcpStream::connect(peer.local_addr().unwrap(), cfg())
        .await
        .unwrap();
    c.write_all(&[1u8; 10_000]).await.unwrap();
    let m = c.monitor();
    c.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(m.stats().is_none(), "the session is gone");
    let sent = m.socket_stats().datagrams_sent;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        m.socket_stats().datagrams_sent,
        sent,
        "no retransmission after abort"
    );
}

#[tokio::test]
async fn a_vanished_peer_ends_in_an_idle_timeout_error() {
    let config = cfg().idle_timeout(Some(Duration::from_millis(500)));
    let listener = KcpListener::bind("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let (c, mut s) = pair(&listener, config, b"hello").await;
    let mut buf = [0u8; 5];
    drop(c); // the client goes away without a word (KCP has no FIN)
    let e = timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
}

/// Two tasks wait in `accept` on one listener at once: both get a session (a shared
/// waker let the second one hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_accept_callers_both_get_sessions() {
    let l = std::sync::Arc::new(KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap());
    let addr = l.local_addr();
    let a = tokio::spawn({
        let l = l.clone();
        async move { l.accept().await.map(|x| x.1) }
    });
    let b = tokio::spawn({
        let l = l.clone();
        async move { l.accept().await.map(|x| x.1) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c1 = KcpStream::connect(addr, cfg()).await.unwrap();
    c1.send_message(b"one").await.unwrap();
    let c2 = KcpStream::connect(addr, cfg()).await.unwrap();
    c2.send_message(b"two").await.unwrap();
    let pa = timeout(Duration::from_secs(5), a)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let pb = timeout(Duration::from_secs(5), b)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_ne!(pa, pb);
}

/// A session that ends before anyone accepts it (its peer vanished) is skipped: `accept`
/// does not fail, and the next session is accepted.
#[tokio::test]
async fn accept_skips_sessions_that_ended_before_they_were_accepted() {
    let config = cfg().idle_timeout(Some(Duration::from_millis(200)));
    let l = KcpListener::bind("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let addr = l.local_addr();
    let gone = KcpStream::connect(addr, config.clone()).await.unwrap();
    gone.send_message(b"hi").await.unwrap();
    gone.abort();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let c = KcpStream::connect(addr, config).await.unwrap();
    c.send_message(b"still here").await.unwrap();
    let (s, _) = timeout(Duration::from_secs(5), l.accept())
        .await
        .unwrap()
        .expect("accept failed because an unaccepted session ended");
    let mut b = [0u8; 32];
    let n = timeout(Duration::from_secs(5), s.recv_message(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b[..n], b"still here");
}

#[tokio::test]
async fn a_listener_counts_refusals_without_walking_its_sessions() {
    let listener = KcpListener::bind("127.0.0.1:0", cfg().max_sessions(1))
        .await
        .unwrap();
    let (_c, _s) = pair(&listener, cfg(), b"first").await;
    // A second client is refused: the listener holds one session at most.
    let mut refused = KcpStream::connect(listener.local_addr(), cfg())
        .await
        .unwrap();
    refused.write_all(b"no room").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while listener.own_stats().refused == 0 {
        assert!(Instant::now() < deadline, "{:?}", listener.own_stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (own, all) = (listener.own_stats(), listener.stats());
    // The refused client may retry in between: the later reading is at least the earlier.
    assert!(all.refused >= own.refused, "{own:?} {all:?}");
    assert_eq!(own.curr_estab, 1, "{own:?}");
    // What the session counted itself is only in the full sum.
    assert!(all.bytes_received >= 5, "{all:?}");
    assert_eq!(own.bytes_received, 0, "{own:?}");
}
