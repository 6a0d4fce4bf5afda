//! The diagnostic events (feature `log`): a session opened and accepted, its close reason, an
//! admission refusal and a dropped datagram each reach the `log` backend under target `kcp`.
#![cfg(feature = "log")]

mod common;

use std::sync::Mutex;
use std::time::Duration;

use kcp_core::Config;
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target() == "kcp"
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LINES
                .lock()
                .unwrap()
                .push(format!("{} {}", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

fn lines() -> Vec<String> {
    LINES.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_drops_and_refusals_are_logged() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let cfg = KcpConfig::new(Config::fast3())
        .idle_timeout(Some(Duration::from_millis(500)))
        .max_sessions(1);
    let l = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = l.local_addr();
    let (c, s) = common::pair(&l, cfg.clone(), b"hi").await;
    // A second client is refused: the listener holds one session at most.
    let mut refused = KcpStream::connect(addr, cfg.clone()).await.unwrap();
    refused.write_all(b"no room").await.unwrap();
    // Garbage is dropped.
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.send_to(b"not kcp", addr).await.unwrap();
    // The listener must have read both before it goes (bounded wait; the assertions below
    // fail if either is never logged).
    for _ in 0..500 {
        let got = lines();
        if got
            .iter()
            .any(|l| l.starts_with("TRACE") && l.contains("dropped"))
            && got.iter().any(|l| l.contains("admission refused"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The client's session ends at its idle timeout once the listener side is gone.
    s.abort();
    drop(l);
    timeout(Duration::from_secs(10), c.closed())
        .await
        .unwrap()
        .unwrap();
    let got = lines();
    let has =
        |level: &str, text: &str| got.iter().any(|l| l.starts_with(level) && l.contains(text));
    assert!(has("DEBUG", "opened to 127.0.0.1"), "{got:#?}");
    assert!(has("DEBUG", "accepted from 127.0.0.1"), "{got:#?}");
    assert!(has("DEBUG", "admission refused a session from"), "{got:#?}");
    assert!(has("TRACE", "dropped"), "{got:#?}");
    assert!(has("DEBUG", "closed: idle timeout"), "{got:#?}");
    assert!(has("DEBUG", "closed: closed locally"), "{got:#?}");

    // A receive window larger than the kernel lets a socket buffer hold is reported.
    #[cfg(target_os = "linux")]
    receive_buffer_short_is_logged().await;
}

#[cfg(target_os = "linux")]
async fn receive_buffer_short_is_logged() {
    let rmem_max = kcp_mio::stack::receive_buffer_cap().expect("rmem_max");
    let wnd = (rmem_max / 1400 + 1) as u32;
    let engine = Config::fast3().with_windows(32, wnd);
    assert!(
        engine.validate().is_ok(),
        "rmem_max {rmem_max}: no window can exceed it"
    );
    let big = KcpConfig::new(Config {
        mtu: 1400,
        ..engine
    });
    let _l = KcpListener::bind("127.0.0.1:0", big).await.unwrap();
    let got = lines();
    assert!(
        got.iter()
            .any(|l| l.starts_with("WARN") && l.contains("receive buffer")),
        "{got:#?}"
    );
}
