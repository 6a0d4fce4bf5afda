//! A congestion controller of the application's own, chosen through `KcpConfig::congestion`,
//! runs every session of both adapters: a controller that allows two segments in flight keeps
//! every flush of a bulk transfer at two or fewer, where an observing controller that allows
//! anything sees many more.

mod common;

use common::mio as mio_common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kcp_core::congestion::{Controller, FlushEvent};
use kcp_core::Config;
use kcp_tokio::perf::{self, Test};
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};

#[derive(Default)]
struct Seen {
    flushes: AtomicU64,
    acks: AtomicU64,
    max_inflight: AtomicU32,
}

/// Allows `window` segments in flight (`None`: no limit) and records what the engine did.
struct Probe {
    window: Option<u32>,
    seen: Arc<Seen>,
}

impl Controller for Probe {
    fn window(&self) -> Option<u32> {
        self.window
    }
    fn on_ack(&mut self, _mss: u32, _rmt_wnd: u32) {
        self.seen.acks.fetch_add(1, Ordering::Relaxed);
    }
    fn on_flush(&mut self, ev: FlushEvent) {
        self.seen.flushes.fetch_add(1, Ordering::Relaxed);
        self.seen
            .max_inflight
            .fetch_max(ev.inflight, Ordering::Relaxed);
    }
}

fn with_probe(window: Option<u32>) -> (KcpConfig, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let cfg = KcpConfig::new(Config::fast3().with_windows(256, 256)).congestion(move || {
        Box::new(Probe {
            window,
            seen: s.clone(),
        })
    });
    (cfg, seen)
}

async fn tokio_sink(cfg: KcpConfig) {
    let l = KcpListener::bind(
        "127.0.0.1:0",
        KcpConfig::new(Config::fast3().with_windows(256, 256)),
    )
    .await
    .unwrap();
    let addr = l.local_addr();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        perf::serve(&mut s, false).await.unwrap();
    });
    let mut c = KcpStream::connect(addr, cfg).await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        perf::client(&mut c, Test::Sink, 256 << 10, 16 << 10, false),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.bytes, 256 << 10);
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_controller_runs_kcp_tokio_sessions() {
    let (capped, seen) = with_probe(Some(2));
    tokio_sink(capped).await;
    assert!(
        seen.flushes.load(Ordering::Relaxed) > 0,
        "the controller ran"
    );
    assert!(seen.acks.load(Ordering::Relaxed) > 0);
    let max = seen.max_inflight.load(Ordering::Relaxed);
    assert!(max <= 2, "{max} segments in flight under a window of 2");
    let (open, seen) = with_probe(None);
    tokio_sink(open).await;
    let max = seen.max_inflight.load(Ordering::Relaxed);
    assert!(max > 2, "without the cap {max} in flight");
}

#[test]
fn a_custom_controller_runs_kcp_mio_sessions() {
    use kcp_mio::perf::Test as MioTest;
    let server = mio_common::MioServer::start(kcp_mio::KcpConfig::new(
        Config::fast3().with_windows(256, 256),
    ));
    for (window, capped) in [(Some(2), true), (None, false)] {
        let (cfg, seen) = with_probe(window);
        mio_common::mio_client(server.addr, &cfg, MioTest::Sink, 256 << 10, 16 << 10, "mio");
        assert!(
            seen.flushes.load(Ordering::Relaxed) > 0,
            "the controller ran"
        );
        let max = seen.max_inflight.load(Ordering::Relaxed);
        assert_eq!(
            max <= 2,
            capped,
            "{max} segments in flight, window {window:?}"
        );
    }
}
