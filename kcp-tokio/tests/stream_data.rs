//! KcpStream and KcpListener over loopback UDP, what arrives: data integrity (with FEC, through
//! a lossy delayed proxy, through `copy_bidirectional`), message boundaries, reads of any
//! size, and many sessions per socket (one listener, reuseport sockets, one connector).

mod common;

use std::time::Duration;

use common::{cfg, echo_roundtrip, echo_server, message_cfg, pattern};
use kcp_core::Config;
use kcp_tokio::impair::{ImpairConfig, Proxy};
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

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
    let config = message_cfg();
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

/// Two tasks wait in `recv_message` on one stream: each gets one of the two messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_recv_message_callers_both_get_messages() {
    let config = message_cfg();
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

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuseport_sockets_share_a_port_and_the_sessions() {
    let l = KcpListener::bind_reuseport("127.0.0.1:0".parse().unwrap(), cfg(), 2)
        .await
        .unwrap();
    let addr = l.local_addr();
    let l = std::sync::Arc::new(l);
    let acceptor = tokio::spawn(common::echo_all(l.clone()));
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
