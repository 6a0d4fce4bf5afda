//! KcpStream and KcpListener over loopback UDP: data integrity, message boundaries, many
//! sessions per socket, backpressure, loss through the impairment proxy, lifecycle.

use std::time::{Duration, Instant};

use kcp_core::Config;
use kcp_tokio::impair::{ImpairConfig, Proxy};
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
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
