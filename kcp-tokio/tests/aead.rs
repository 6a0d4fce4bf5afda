//! The authenticated modes chosen by name in `KcpConfig::crypt`: a transfer through a link
//! that duplicates datagrams. With the replay-protected modes every duplicate is a replay,
//! dropped by the receiving session's window and counted (`EndpointStats::replays`); with the
//! plain AEAD modes the duplicates authenticate and KCP discards the repeated segments.

use std::time::Duration;

use kcp_core::Config;
use kcp_tokio::impair::{ImpairConfig, Proxy};
use kcp_tokio::perf::{self, Test};
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::time::timeout;

async fn through_a_duplicating_link(crypt: &str) -> kcp_tokio::EndpointStats {
    let cfg = KcpConfig::new(Config::fast3().with_windows(256, 256))
        .crypt(crypt, "aead test key")
        .unwrap();
    let l = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = l.local_addr();
    let imp = ImpairConfig {
        dup: 0.1,
        seed: 5,
        ..ImpairConfig::default()
    };
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().unwrap(),
        addr,
        imp.clone(),
        ImpairConfig { seed: 6, ..imp },
    )
    .await
    .unwrap();
    let paddr = proxy.local_addr();
    let link = proxy.spawn();
    let served = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        perf::serve(&mut s, false).await.unwrap();
        l
    });
    let mut c = KcpStream::connect(paddr, cfg).await.unwrap();
    let r = timeout(
        Duration::from_secs(30),
        perf::client(&mut c, Test::Sink, 1 << 20, 16 << 10, false),
    )
    .await
    .expect("in time")
    .unwrap_or_else(|e| panic!("{crypt}: {e}"));
    assert_eq!(r.bytes, 1 << 20);
    let l = timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap();
    assert!(
        link.stats().up.duplicated > 20,
        "{crypt}: the link duplicated"
    );
    l.stats()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_datagrams_are_dropped_and_counted() {
    for crypt in ["aes-128-gcm-replay", "chacha20-poly1305-replay"] {
        let st = through_a_duplicating_link(crypt).await;
        assert!(st.replays > 20, "{crypt}: {} replays counted", st.replays);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_aead_modes_pass_duplicates_to_kcp() {
    for crypt in ["aes-128-gcm", "chacha20-poly1305"] {
        let st = through_a_duplicating_link(crypt).await;
        assert_eq!(st.replays, 0, "{crypt}");
        assert!(st.repeat_segs > 0, "{crypt}: KCP saw the duplicates");
    }
}
