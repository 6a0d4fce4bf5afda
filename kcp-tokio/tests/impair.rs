//! Loopback tests of the UDP impairment proxy.

use std::net::SocketAddr;
use std::time::Duration;

use kcp_tokio::impair::{ImpairConfig, ImpairError, Proxy, ProxyHandle};
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

const LOOPBACK: &str = "127.0.0.1:0";

async fn socket() -> UdpSocket {
    UdpSocket::bind(LOOPBACK).await.unwrap()
}

async fn start(
    server: &UdpSocket,
    up: ImpairConfig,
    down: ImpairConfig,
) -> (ProxyHandle, SocketAddr) {
    let any: SocketAddr = LOOPBACK.parse().unwrap();
    let proxy = Proxy::bind(any, server.local_addr().unwrap(), up, down)
        .await
        .unwrap();
    let addr = proxy.local_addr();
    (proxy.spawn(), addr)
}

/// Sends `n` datagrams carrying their index (plus `pad` bytes), a few at a time so that no
/// kernel socket buffer overflows on the way.
async fn send_numbered(from: &UdpSocket, to: SocketAddr, n: u32, pad: usize) {
    let mut msg = vec![0u8; 4 + pad];
    for i in 0..n {
        msg[..4].copy_from_slice(&i.to_be_bytes());
        from.send_to(&msg, to).await.unwrap();
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Receives datagrams (concurrently with the sender, so that the server's socket buffer never
/// overflows) until none arrives for `quiet`, returning their leading indices.
async fn collect(sock: &UdpSocket, quiet: Duration) -> Vec<u32> {
    let mut buf = vec![0u8; 70_000];
    let mut got = Vec::new();
    while let Ok(r) = timeout(quiet, sock.recv_from(&mut buf)).await {
        let (n, _) = r.unwrap();
        assert!(n >= 4);
        got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
    }
    got
}

#[tokio::test]
async fn passes_unchanged_both_ways_and_maps_clients_apart() {
    let server = socket().await;
    let (proxy, addr) = start(&server, ImpairConfig::default(), ImpairConfig::default()).await;
    let a = socket().await;
    let b = socket().await;
    let mut buf = vec![0u8; 70_000];

    // Ordered small datagrams, then the largest IPv4 payload, each echoed back.
    let mut payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 1 + i as usize * 7]).collect();
    payloads.push((0..65_507).map(|i| (i % 251) as u8).collect());
    let mut seen_a = None;
    for p in &payloads {
        a.send_to(p, addr).await.unwrap();
        let (n, from) = timeout(Duration::from_secs(2), server.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &p[..]);
        assert_ne!(
            from,
            a.local_addr().unwrap(),
            "server must see the proxy, not the client"
        );
        assert_eq!(
            *seen_a.get_or_insert(from),
            from,
            "one upstream address per client"
        );
        server.send_to(&buf[..n], from).await.unwrap();
        let (n, back_from) = timeout(Duration::from_secs(2), a.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &p[..]);
        assert_eq!(back_from, addr);
    }

    b.send_to(b"from b", addr).await.unwrap();
    let (n, from_b) = timeout(Duration::from_secs(2), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"from b");
    assert_ne!(
        Some(from_b),
        seen_a,
        "distinct clients get distinct upstream addresses"
    );
    server.send_to(b"to b", from_b).await.unwrap();
    let (n, _) = timeout(Duration::from_secs(2), b.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"to b");

    let s = proxy.stats();
    assert_eq!(s.clients, 2);
    assert_eq!(s.up.received, payloads.len() as u64 + 1);
    assert_eq!(s.up.forwarded, s.up.received);
    assert_eq!(s.down.forwarded, s.down.received);
    assert_eq!(
        s.up.lost + s.up.duplicated + s.up.reordered + s.up.queue_drops,
        0
    );
    proxy.shutdown().await;
}

fn lossy(seed: u64) -> ImpairConfig {
    // The delay keeps a few hundred datagrams in flight in the proxy at once.
    ImpairConfig {
        loss: 0.3,
        delay_ms: 30,
        seed,
        ..ImpairConfig::default()
    }
}

#[tokio::test]
async fn loss_is_in_band_consistent_and_reproducible() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let server = socket().await;
        let (proxy, addr) = start(&server, lossy(42), ImpairConfig::default()).await;
        let client = socket().await;
        let (_, got) = tokio::join!(
            send_numbered(&client, addr, 2000, 20),
            collect(&server, Duration::from_millis(300))
        );
        let s = proxy.stats().up;
        assert_eq!(s.received, 2000);
        assert_eq!(s.forwarded + s.lost, 2000);
        assert_eq!(s.forwarded, got.len() as u64);
        assert!(
            (1200..=1600).contains(&s.forwarded),
            "forwarded {}",
            s.forwarded
        );
        runs.push(got);
        proxy.shutdown().await;
    }
    assert_eq!(
        runs[0], runs[1],
        "same seed, same traffic: same datagrams lost"
    );
}

#[tokio::test]
async fn delay_applies_in_both_directions() {
    let delayed = ImpairConfig {
        delay_ms: 50,
        ..ImpairConfig::default()
    };
    let server = socket().await;
    let (proxy, addr) = start(&server, delayed.clone(), delayed).await;
    let client = socket().await;
    let mut buf = [0u8; 64];
    let t0 = Instant::now();
    client.send_to(b"ping", addr).await.unwrap();
    let (n, from) = timeout(Duration::from_secs(2), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(50));
    server.send_to(&buf[..n], from).await.unwrap();
    timeout(Duration::from_secs(2), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let rtt = t0.elapsed();
    assert!(rtt >= Duration::from_millis(100), "rtt {rtt:?}");
    assert!(rtt < Duration::from_secs(1), "rtt {rtt:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn duplication_delivers_extra_copies() {
    let up = ImpairConfig {
        dup: 0.5,
        seed: 3,
        ..ImpairConfig::default()
    };
    let server = socket().await;
    let (proxy, addr) = start(&server, up, ImpairConfig::default()).await;
    let client = socket().await;
    let (_, got) = tokio::join!(
        send_numbered(&client, addr, 200, 0),
        collect(&server, Duration::from_millis(300))
    );
    let s = proxy.stats().up;
    assert!(got.len() > 200, "received {}", got.len());
    assert_eq!(s.forwarded, 200);
    assert_eq!(got.len() as u64, s.forwarded + s.duplicated);
    assert!(
        (50..=150).contains(&s.duplicated),
        "duplicated {}",
        s.duplicated
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn reordering_changes_arrival_order() {
    let up = ImpairConfig {
        reorder: 0.25,
        reorder_ms: 200,
        seed: 9,
        ..ImpairConfig::default()
    };
    let server = socket().await;
    let (proxy, addr) = start(&server, up, ImpairConfig::default()).await;
    let client = socket().await;
    let (_, got) = tokio::join!(
        send_numbered(&client, addr, 100, 0),
        collect(&server, Duration::from_millis(500))
    );
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..100).collect::<Vec<_>>(),
        "nothing lost or duplicated"
    );
    assert_ne!(got, sorted, "arrival order must differ from send order");
    let s = proxy.stats().up;
    assert!(s.reordered > 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn rate_limit_paces_delivery() {
    // 250 datagrams of 1000 bytes at 2 Mbit/s (250 kB/s): about one second.
    let up = ImpairConfig {
        rate_mbps: Some(2.0),
        queue_bytes: 1 << 20,
        ..ImpairConfig::default()
    };
    let server = socket().await;
    let (proxy, addr) = start(&server, up, ImpairConfig::default()).await;
    let client = socket().await;
    let t0 = Instant::now();
    send_numbered(&client, addr, 250, 996).await;
    let mut buf = vec![0u8; 2000];
    let mut count = 0;
    while count < 250 {
        timeout(Duration::from_secs(3), server.recv_from(&mut buf))
            .await
            .expect("all 250 datagrams within 3 s")
            .unwrap();
        count += 1;
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took <= Duration::from_secs(3),
        "took {took:?}"
    );
    let s = proxy.stats().up;
    assert_eq!(s.forwarded, 250);
    assert_eq!(s.queue_drops, 0);
    assert_eq!(s.bytes, 250_000);
    proxy.shutdown().await;
}

#[tokio::test]
async fn small_queue_drops_tail() {
    // 200 kB offered to a 16 kB queue at 2 Mbit/s: most of it is dropped at the tail.
    let up = ImpairConfig {
        rate_mbps: Some(2.0),
        queue_bytes: 16_000,
        ..ImpairConfig::default()
    };
    let server = socket().await;
    let (proxy, addr) = start(&server, up, ImpairConfig::default()).await;
    let client = socket().await;
    let (_, got) = tokio::join!(
        send_numbered(&client, addr, 200, 996),
        collect(&server, Duration::from_millis(400))
    );
    let s = proxy.stats().up;
    assert_eq!(s.received, 200);
    assert!(s.queue_drops > 0);
    assert_eq!(s.forwarded + s.queue_drops, 200);
    assert_eq!(got.len() as u64, s.forwarded);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(got, sorted, "a FIFO bottleneck keeps order");
    proxy.shutdown().await;
}

#[tokio::test]
async fn idle_mappings_expire_and_oldest_is_evicted() {
    let server = socket().await;
    let any: SocketAddr = LOOPBACK.parse().unwrap();
    let mut proxy = Proxy::bind(
        any,
        server.local_addr().unwrap(),
        ImpairConfig::default(),
        ImpairConfig::default(),
    )
    .await
    .unwrap();
    proxy.set_max_clients(2);
    proxy.set_idle_timeout(Duration::from_millis(200));
    let addr = proxy.local_addr();
    let proxy = proxy.spawn();
    let mut buf = [0u8; 16];
    let mut upstream = Vec::new();
    for _ in 0..3 {
        let c = socket().await;
        c.send_to(b"hi", addr).await.unwrap();
        let (_, from) = timeout(Duration::from_secs(2), server.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        upstream.push(from);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = proxy.stats();
    assert_eq!(s.clients, 2, "capped at max_clients");
    assert_eq!(s.expired, 1, "the oldest was evicted");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = proxy.stats();
    assert_eq!(s.clients, 0, "idle mappings expire");
    assert_eq!(s.expired, 3);
    proxy.shutdown().await;
}

#[tokio::test]
async fn invalid_config_is_rejected() {
    let bad = [
        ImpairConfig {
            loss: 1.5,
            ..ImpairConfig::default()
        },
        ImpairConfig {
            dup: -0.1,
            ..ImpairConfig::default()
        },
        ImpairConfig {
            reorder: f64::NAN,
            ..ImpairConfig::default()
        },
        ImpairConfig {
            rate_mbps: Some(0.0),
            ..ImpairConfig::default()
        },
        ImpairConfig {
            rate_mbps: Some(-1.0),
            ..ImpairConfig::default()
        },
        ImpairConfig {
            rate_mbps: Some(f64::NAN),
            ..ImpairConfig::default()
        },
        ImpairConfig {
            rate_mbps: Some(f64::INFINITY),
            ..ImpairConfig::default()
        },
    ];
    for cfg in &bad {
        assert!(cfg.validate().is_err(), "{cfg:?}");
    }
    assert!(matches!(
        bad[0].validate(),
        Err(ImpairError::Probability { field: "loss", .. })
    ));
    assert!(matches!(bad[3].validate(), Err(ImpairError::Rate(_))));
    let ok = ImpairConfig {
        loss: 1.0,
        dup: 0.0,
        reorder: 1.0,
        rate_mbps: Some(0.001),
        ..ImpairConfig::default()
    };
    assert_eq!(ok.validate(), Ok(()));

    let any: SocketAddr = LOOPBACK.parse().unwrap();
    let err = Proxy::bind(any, any, ImpairConfig::default(), bad[0].clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn extreme_settings_do_not_panic() {
    let extreme = ImpairConfig {
        loss: 0.0,
        delay_ms: u32::MAX,
        jitter_ms: u32::MAX,
        reorder: 1.0,
        reorder_ms: u32::MAX,
        dup: 1.0,
        rate_mbps: Some(1e-300),
        queue_bytes: 0,
        seed: u64::MAX,
    };
    let server = socket().await;
    let (proxy, addr) = start(&server, extreme.clone(), extreme).await;
    let client = socket().await;
    client.send_to(&[], addr).await.unwrap();
    client.send_to(&[1; 1000], addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = proxy.stats().up;
    assert_eq!(s.received, 2);
    assert_eq!(s.forwarded, 0, "held for a very long time");
    proxy.shutdown().await;
}
