//! KcpStream and KcpListener over loopback UDP: data integrity, message boundaries, many
//! sessions per socket, backpressure, loss through the impairment proxy, lifecycle.

use std::time::{Duration, Instant};

use kcp_core::Config;
use kcp_tokio::impair::{ImpairConfig, Proxy};
use kcp_tokio::{KcpConfig, KcpError, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn pattern(i: usize) -> u8 {
    ((i * 7 + i / 251) % 256) as u8
}

fn cfg() -> KcpConfig {
    KcpConfig::new(Config::fast3().with_windows(256, 256))
}

/// An echo server accepting any number of sessions.
async fn echo_server(config: KcpConfig) -> std::net::SocketAddr {
    let listener = KcpListener::bind("127.0.0.1:0", config).await.unwrap();
    let addr = listener.local_addr();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn echo_roundtrip(addr: std::net::SocketAddr, config: KcpConfig, len: usize) {
    let c = KcpStream::connect(addr, config).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let data: Vec<u8> = (0..len).map(pattern).collect();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w
    });
    let mut got = vec![0u8; len];
    r.read_exact(&mut got).await.unwrap();
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "echo corrupted"
    );
    writer.await.unwrap();
}

#[tokio::test]
async fn echoes_a_megabyte_through_tokio_io_copy() {
    let addr = echo_server(cfg()).await;
    timeout(
        Duration::from_secs(20),
        echo_roundtrip(addr, cfg(), 1 << 20),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn echoes_with_fec() {
    let config = cfg().fec(10, 3);
    let addr = echo_server(config.clone()).await;
    timeout(
        Duration::from_secs(20),
        echo_roundtrip(addr, config, 1 << 20),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn many_sessions_share_one_listener_socket() {
    let addr = echo_server(cfg()).await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        tasks.push(tokio::spawn(echo_roundtrip(addr, cfg(), 64 * 1024)));
    }
    timeout(Duration::from_secs(30), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn message_mode_keeps_boundaries() {
    let config = KcpConfig::new(Config {
        stream: false,
        ..Config::fast3()
    });
    let listener = KcpListener::bind("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let addr = listener.local_addr();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        for expect in 1..=50usize {
            let n = s.recv_message(&mut buf).await.unwrap();
            assert_eq!(n, expect * 97, "message {expect}");
            assert!(buf[..n].iter().all(|&b| b == expect as u8));
        }
    });
    let c = KcpStream::connect(addr, config).await.unwrap();
    for i in 1..=50usize {
        c.send_message(&vec![i as u8; i * 97]).await.unwrap();
    }
    timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn writes_wait_while_the_window_is_full() {
    // The server accepts but never reads: its receive window fills, then ours.
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let addr = listener.local_addr();
    let hold = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(s);
    });
    let mut c = KcpStream::connect(addr, cfg()).await.unwrap();
    let chunk = vec![1u8; 64 * 1024];
    let mut written = 0usize;
    let r = timeout(Duration::from_secs(1), async {
        loop {
            c.write_all(&chunk).await.unwrap();
            written += chunk.len();
        }
    })
    .await;
    assert!(r.is_err(), "writes never blocked");
    // Bounded: the peer's window (256) + our send window and queue, in 1376-byte segments.
    assert!(
        written < (256 + 256 + 255 + 64) * 1376,
        "{written} bytes accepted"
    );
    hold.abort();
}

#[tokio::test]
async fn transfers_through_a_lossy_delayed_proxy() {
    let config = cfg();
    let server = echo_server(config.clone()).await;
    let imp = ImpairConfig {
        loss: 0.05,
        delay_ms: 20,
        seed: 7,
        ..ImpairConfig::default()
    };
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().unwrap(),
        server,
        imp.clone(),
        ImpairConfig { seed: 8, ..imp },
    )
    .await
    .unwrap();
    let paddr = proxy.local_addr();
    let handle = proxy.spawn();
    timeout(
        Duration::from_secs(30),
        echo_roundtrip(paddr, config, 256 * 1024),
    )
    .await
    .unwrap();
    let st = handle.stats();
    assert!(
        st.up.lost > 0 && st.down.lost > 0,
        "the proxy should have dropped datagrams"
    );
}

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

#[tokio::test]
async fn a_vanished_peer_ends_in_an_idle_timeout_error() {
    let config = cfg().idle_timeout(Some(Duration::from_millis(500)));
    let listener = KcpListener::bind("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let addr = listener.local_addr();
    let mut c = KcpStream::connect(addr, config).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    let (mut s, _) = timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    drop(c); // the client goes away without a word (KCP has no FIN)
    let e = timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
}

#[tokio::test]
async fn invalid_fec_is_refused() {
    let r = KcpListener::bind("127.0.0.1:0", cfg().fec(200, 100)).await;
    assert!(r.is_err());
}

#[tokio::test]
async fn settings_change_at_run_time() {
    let addr = echo_server(cfg()).await;
    let c = KcpStream::connect(addr, cfg()).await.unwrap();
    c.set_config(|c| {
        c.snd_wnd = 1024;
        c.ack_nodelay = true;
    })
    .unwrap();
    c.set_dscp(46).unwrap();
    c.set_sockbuf(1 << 20).unwrap();
    assert!(c.set_dscp(64).is_err());
    c.set_config(|c| c.mtu = 500).unwrap();
    assert_eq!(c.mss(), 500 - 24);
    assert!(c.set_config(|c| c.mtu = 40).is_err());
    assert!(c.set_config(|c| c.stream = false).is_err());
    assert!(c.set_config(|c| c.interval = 1).is_err());
}

#[tokio::test]
async fn read_and_write_timeouts() {
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let addr = listener.local_addr();
    let mut c = KcpStream::connect(addr, cfg().write_timeout(Some(Duration::from_millis(300))))
        .await
        .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)));
    c.write_all(b"hi").await.unwrap();
    let (_s, _) = timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 4];
    let e = c.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_millis(190) && t.elapsed() < Duration::from_secs(2));
    // The server never reads: writes stall once the windows are full, then time out.
    let chunk = vec![0u8; 64 * 1024];
    let e = loop {
        if let Err(e) = c.write_all(&chunk).await {
            break e;
        }
    };
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    // The session itself is still alive after a timeout.
    assert!(c.stats().is_some());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuseport_sockets_share_a_port_and_the_sessions() {
    let l = KcpListener::bind_reuseport("127.0.0.1:0".parse().unwrap(), cfg(), 2)
        .await
        .unwrap();
    let addr = l.local_addr();
    let l = std::sync::Arc::new(l);
    let acceptor = {
        let l = l.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..16 {
        tasks.push(tokio::spawn(echo_roundtrip(addr, cfg(), 32 * 1024)));
    }
    for t in tasks {
        timeout(Duration::from_secs(30), t).await.unwrap().unwrap();
    }
    let per = l.sessions_per_socket();
    assert_eq!(per.iter().sum::<usize>(), 16);
    // The kernel hashes peers over both sockets (all 16 on one: probability 2^-15).
    assert!(per.iter().all(|&n| n > 0), "{per:?}");
    assert_eq!(l.stats().passive_opens, 16);
    acceptor.abort();
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

/// tokio's copy_bidirectional through a KCP link in both directions: a client proxies a
/// local duplex pipe to a KCP echo server; everything written comes back.
#[tokio::test]
async fn copy_bidirectional_through_a_kcp_link() {
    let addr = echo_server(cfg()).await;
    let mut kcp = KcpStream::connect(addr, cfg().idle_timeout(Some(Duration::from_millis(800))))
        .await
        .unwrap();
    let (app, mut local) = tokio::io::duplex(64 * 1024);
    let pump =
        tokio::spawn(async move { tokio::io::copy_bidirectional(&mut local, &mut kcp).await });
    let data: Vec<u8> = (0..500_000).map(pattern).collect();
    let (mut r, mut w) = tokio::io::split(app);
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        // EOF on the local side: copy_bidirectional shuts the KCP write side down.
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    timeout(Duration::from_secs(30), r.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 500_000);
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    let w = writer.await.unwrap();
    drop((r, w));
    let (up, down) = timeout(Duration::from_secs(10), pump)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((up, down), (500_000, 500_000));
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
async fn zero_length_reads_return_at_once() {
    let addr = echo_server(cfg()).await;
    let mut c = KcpStream::connect(addr, cfg()).await.unwrap();
    let n = timeout(Duration::from_millis(100), c.read(&mut []))
        .await
        .expect("a zero-length read waited")
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(c.recv_message(&mut []).await.unwrap(), 0);
}

/// AsyncRead works with any buffer size in both modes: 1- and 2-byte reads and read_exact
/// of a 2-byte length prefix; in message mode a small read takes part of a message and the
/// rest comes with the next reads.
#[tokio::test]
async fn reads_of_one_and_two_bytes_in_both_modes() {
    for stream in [true, false] {
        let config = KcpConfig::new(Config {
            stream,
            ..Config::fast3()
        });
        let listener = KcpListener::bind("127.0.0.1:0", config.clone())
            .await
            .unwrap();
        let addr = listener.local_addr();
        let c = KcpStream::connect(addr, config).await.unwrap();
        let msgs: Vec<Vec<u8>> = (1..=20u16)
            .map(|i| {
                let body: Vec<u8> = (0..i as usize * 37).map(pattern).collect();
                let mut m = (body.len() as u16).to_le_bytes().to_vec();
                m.extend_from_slice(&body);
                m
            })
            .collect();
        for m in &msgs {
            c.send_message(m).await.unwrap();
        }
        let (mut s, _) = timeout(Duration::from_secs(5), listener.accept())
            .await
            .unwrap()
            .unwrap();
        for (k, m) in msgs.iter().enumerate() {
            let mut len = [0u8; 2];
            timeout(Duration::from_secs(5), s.read_exact(&mut len))
                .await
                .unwrap()
                .unwrap();
            let n = u16::from_le_bytes(len) as usize;
            assert_eq!(n, m.len() - 2, "stream {stream} message {k}");
            let mut body = Vec::new();
            let step = if k % 2 == 0 { 1 } else { 2 };
            while body.len() < n {
                let mut b = [0u8; 2];
                let want = step.min(n - body.len());
                let got = timeout(Duration::from_secs(5), s.read(&mut b[..want]))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(got > 0);
                body.extend_from_slice(&b[..got]);
            }
            assert_eq!(body, m[2..]);
        }
    }
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

/// Two tasks wait in `recv_message` on one stream: each gets one of the two messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_recv_message_callers_both_get_messages() {
    let config = KcpConfig::new(Config {
        stream: false,
        ..Config::fast3()
    });
    let listener = KcpListener::bind("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let c = KcpStream::connect(listener.local_addr(), config)
        .await
        .unwrap();
    c.send_message(b"hello").await.unwrap();
    let (s, _) = timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut first = [0u8; 16];
    let n = s.recv_message(&mut first).await.unwrap();
    assert_eq!(&first[..n], b"hello");
    let s = std::sync::Arc::new(s);
    let waiter = |s: std::sync::Arc<KcpStream>| async move {
        let mut b = [0u8; 16];
        let n = s.recv_message(&mut b).await.unwrap();
        b[..n].to_vec()
    };
    let a = tokio::spawn(waiter(s.clone()));
    let b = tokio::spawn(waiter(s.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send_message(b"m1").await.unwrap();
    c.send_message(b"m2").await.unwrap();
    let mut got = vec![
        timeout(Duration::from_secs(5), a).await.unwrap().unwrap(),
        timeout(Duration::from_secs(5), b).await.unwrap().unwrap(),
    ];
    got.sort();
    assert_eq!(got, vec![b"m1".to_vec(), b"m2".to_vec()]);
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

/// An application that reads slowly closes its receive window: the sender waits instead
/// of retransmitting into a full receiver, and every byte arrives.
#[tokio::test]
async fn a_slow_reader_slows_the_sender_through_its_window() {
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let addr = listener.local_addr();
    let mut c = KcpStream::connect(addr, cfg()).await.unwrap();
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..1_000_000).map(pattern).collect();
        c.write_all(&data).await.unwrap();
        c
    });
    let (mut s, _) = timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = 0usize;
    let mut b = vec![0u8; 16 * 1024];
    while got < 1_000_000 {
        let n = timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(b[..n]
            .iter()
            .enumerate()
            .all(|(k, &x)| x == pattern(got + k)));
        got += n;
        tokio::time::sleep(Duration::from_millis(2)).await; // ~8 MB/s at most
    }
    let c = writer.await.unwrap();
    let st = c.stats().unwrap();
    assert!(
        st.kcp.retrans_segs < st.kcp.out_segs / 20,
        "the sender retransmitted into a full window: {:?}",
        st.kcp
    );
}

/// A codec layer with no header whose `open` costs ~300 µs: a receiver that decrypts slowly
/// (a debug build's 3DES).
struct SlowOpen;

impl kcp_core::Codec for SlowOpen {
    fn header_len(&self) -> usize {
        0
    }
    fn seal(
        &mut self,
        _buf: &mut [u8],
        len: usize,
        _now: kcp_core::Millis,
    ) -> Result<usize, kcp_core::CodecError> {
        Ok(len)
    }
    fn open(
        &mut self,
        buf: &mut [u8],
        _now: kcp_core::Millis,
    ) -> Result<Option<std::ops::Range<usize>>, kcp_core::CodecError> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(300) {
            std::hint::spin_loop();
        }
        Ok(Some(0..buf.len()))
    }
}

/// A receiver whose socket driver is slower than the sender keeps acknowledging while it
/// works through its backlog (timers run between chunks of received datagrams), so its ACK
/// list never overflows and the sender, clocked by those ACKs, does not collapse into
/// retransmitting whole windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_keeps_acknowledging_while_it_catches_up() {
    let slow = cfg().layers(|| vec![Box::new(SlowOpen) as kcp_core::Layer], 0);
    let listener = KcpListener::bind("127.0.0.1:0", slow).await.unwrap();
    let addr = listener.local_addr();
    let mut c = KcpStream::connect(addr, cfg()).await.unwrap();
    let total = 1_500_000usize;
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..total).map(pattern).collect();
        c.write_all(&data).await.unwrap();
        c
    });
    let (mut s, _) = timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = vec![0u8; total];
    timeout(Duration::from_secs(40), s.read_exact(&mut got))
        .await
        .expect("the transfer collapsed")
        .unwrap();
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    let st = s.stats().unwrap();
    assert_eq!(st.kcp.ack_list_full, 0, "ACKs were dropped: {:?}", st.kcp);
    let c = writer.await.unwrap();
    let sent = c.stats().unwrap().kcp;
    assert!(
        sent.retrans_segs < sent.out_segs,
        "more retransmissions than new segments: {sent:?}"
    );
}

#[tokio::test]
async fn a_connector_runs_many_sessions_over_one_socket() {
    let addr = echo_server(cfg()).await;
    let connector = kcp_tokio::KcpConnector::bind("127.0.0.1:0", cfg())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for k in 0..20usize {
        let s = connector.connect(addr).await.unwrap();
        assert_eq!(s.local_addr(), connector.local_addr());
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let data: Vec<u8> = (0..10_000).map(|i| pattern(i + k)).collect();
            w.write_all(&data).await.unwrap();
            let mut got = vec![0u8; data.len()];
            r.read_exact(&mut got).await.unwrap();
            assert_eq!(got, data, "session {k}");
        }));
    }
    assert_eq!(connector.sessions(), 20);
    for t in tasks {
        timeout(Duration::from_secs(20), t).await.unwrap().unwrap();
    }
    // One socket: one driver's counters saw every session's datagrams.
    assert!(connector.socket_stats().datagrams_received >= 20);
}
