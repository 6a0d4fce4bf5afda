//! The end of sessions as an application sees it: `KcpStream::closed` resolves with the close
//! reason, and `KcpConnector::wait_idle` keeps a process alive until the sessions of its
//! dropped streams have delivered what was written (a child process writes 8 MiB, drops the
//! stream, waits, exits; the parent receives every byte).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use kcp_core::Config;
use kcp_tokio::perf::pattern;
use kcp_tokio::{CloseReason, KcpConfig, KcpConnector, KcpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const CHILD_ADDR: &str = "KCP_TOKIO_LINGER_CHILD_ADDR";
const TOTAL: usize = 8 << 20;

fn cfg() -> KcpConfig {
    KcpConfig::new(Config::fast3().with_windows(1024, 1024)).linger(Duration::from_secs(30))
}

/// The child's side of `a_child_process_delivers_everything_before_it_exits`: not a test of
/// its own (it needs the parent's listener), hence ignored; the parent runs it with
/// `--ignored --exact`.
#[test]
#[ignore = "run as a child process by a_child_process_delivers_everything_before_it_exits"]
fn child_writes_drops_and_waits_idle() {
    let addr: SocketAddr = std::env::var(CHILD_ADDR)
        .expect("run by the parent test")
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let data: Vec<u8> = (0..TOTAL as u64).map(pattern).collect();
        let connector = KcpConnector::bind("127.0.0.1:0", cfg()).await.unwrap();
        let mut s = connector.connect(addr).await.unwrap();
        s.write_all(&data).await.unwrap();
        // Most of it is still queued or in flight here.
        drop(s);
        timeout(Duration::from_secs(60), connector.wait_idle())
            .await
            .expect("the lingering session finished within its linger");
        eprintln!("child: idle, exiting");
    });
    // The runtime, its driver task and the socket end here; the process exits next.
    drop(rt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_process_delivers_everything_before_it_exits() {
    let l = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_writes_drops_and_waits_idle",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ADDR, l.local_addr().to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (mut s, _) = timeout(Duration::from_secs(30), l.accept())
        .await
        .expect("the child connects")
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    while got < TOTAL {
        let n = timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("stalled after {got} bytes"))
            .unwrap();
        assert!(n > 0, "end of stream after {got} bytes");
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pattern((got + k) as u64), "byte {}", got + k);
        }
        got += n;
    }
    let status = timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the child exits once idle")
        .unwrap();
    assert!(status.success(), "child: {status}");
    assert_eq!(got, TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_resolves_with_the_close_reason() {
    // A client whose peer vanishes: the idle timeout ends its session.
    let quiet = cfg()
        .idle_timeout(Some(Duration::from_millis(600)))
        .keepalive(Some(Duration::from_millis(150)));
    let l = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let (c, s) = common::pair(&l, quiet, b"hello").await;
    // While the peer is there, the keepalive keeps the quiet session: closed() stays pending
    // for several idle timeouts.
    assert!(
        timeout(Duration::from_secs(2), c.closed()).await.is_err(),
        "the session ended with its peer alive"
    );
    // The peer vanishes (its session discarded, its socket's driver gone with the listener).
    s.abort();
    drop(l);
    let reason = timeout(Duration::from_secs(10), c.closed())
        .await
        .expect("closed() resolves")
        .expect("a session end, not a socket failure");
    assert_eq!(reason, CloseReason::IdleTimeout);
    // Any number of waiters see the same reason, and after the end at once.
    let (r1, r2) = tokio::join!(c.closed(), c.closed());
    assert_eq!((r1.unwrap(), r2.unwrap()), (reason, reason));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_idle_returns_at_once_with_nothing_lingering() {
    let c = KcpConnector::bind("127.0.0.1:0", cfg()).await.unwrap();
    timeout(Duration::from_secs(1), c.wait_idle())
        .await
        .expect("nothing lingers");
    let l = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    timeout(Duration::from_secs(1), l.wait_idle())
        .await
        .expect("nothing lingers");
}
