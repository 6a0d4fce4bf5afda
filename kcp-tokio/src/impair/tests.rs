use super::*;

#[test]
fn link_config_translates_units() {
    let c = ImpairConfig {
        loss: 0.1,
        delay_ms: 20,
        jitter_ms: 5,
        reorder: 0.02,
        reorder_ms: 15,
        dup: 0.01,
        rate_mbps: Some(2.0),
        queue_bytes: 1000,
        seed: 9,
    };
    let l = c.link_config();
    assert_eq!(
        l,
        LinkConfig {
            loss: 0.1,
            delay_ms: 20,
            jitter_ms: 5,
            reorder: 0.02,
            reorder_ms: 15,
            duplicate: 0.01,
            bandwidth: Some(250_000),
            queue_bytes: 1000,
            mtu: MAX_DATAGRAM,
        }
    );
    let tiny = ImpairConfig {
        rate_mbps: Some(1e-300),
        ..ImpairConfig::default()
    };
    assert_eq!(tiny.link_config().bandwidth, Some(1));
    assert_eq!(ImpairConfig::default().link_config().bandwidth, None);
}

/// The proxy's jitter is the model's: it only adds to the delay, so no datagram arrives
/// before `delay_ms` and about half arrive after `delay_ms + jitter_ms / 2`.
#[tokio::test]
async fn jitter_never_undercuts_the_delay() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up = ImpairConfig {
        delay_ms: 30,
        jitter_ms: 20,
        seed: 5,
        ..ImpairConfig::default()
    };
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let proxy = Proxy::bind(
        any,
        server.local_addr().unwrap(),
        up,
        ImpairConfig::default(),
    )
    .await
    .unwrap();
    let addr = proxy.local_addr();
    let handle = proxy.spawn();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let n = 100usize;
    let mut sent = Vec::with_capacity(n);
    let mut held = Vec::with_capacity(n);
    let mut buf = [0u8; 16];
    for i in 0..n {
        sent.push(Instant::now());
        client
            .send_to(&(i as u32).to_be_bytes(), addr)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        while let Ok(Ok((4, _))) =
            tokio::time::timeout(Duration::ZERO, server.recv_from(&mut buf)).await
        {
            let k = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            held.push(sent[k].elapsed());
        }
    }
    while held.len() < n {
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), server.recv_from(&mut buf))
            .await
            .expect("every datagram arrives")
            .unwrap();
        assert_eq!(len, 4);
        let k = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        held.push(sent[k].elapsed());
    }
    handle.shutdown().await;
    let min = held.iter().min().unwrap();
    assert!(*min >= Duration::from_millis(30), "held only {min:?}");
    let late = held
        .iter()
        .filter(|h| **h >= Duration::from_millis(40))
        .count();
    assert!(late >= 25, "{late} of {n} held 40 ms or more: {held:?}");
}
