//! Helpers shared by kcp-tokio's tests: the configuration they start from (and that of an
//! interop case), a byte pattern, an echo server and a checked round trip, a connected pair,
//! a kcp-perf listener, and (in `mio`) kcp-mio's harness with the runtime for the tests that
//! run both adapters.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kcp_core::Config;
use kcp_tokio::perf;
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// kcp-mio's test harness (a kcp-perf server and clients on kcp-mio endpoints, the
/// configuration of an interop case), for the tests that run both adapters.
#[path = "../../../kcp-mio/tests/common/mod.rs"]
pub mod mio;
#[allow(unused_imports)]
pub use mio::case_config;

/// Byte `i` of the test data.
pub fn pattern(i: usize) -> u8 {
    ((i * 7 + i / 251) % 256) as u8
}

/// `fast3` with windows of 256 segments, in stream mode.
pub fn cfg() -> KcpConfig {
    KcpConfig::new(Config::fast3().with_windows(256, 256))
}

/// `fast3` (default windows) in message mode.
pub fn message_cfg() -> KcpConfig {
    KcpConfig::new(Config {
        stream: false,
        ..Config::fast3()
    })
}

/// An echo server accepting any number of sessions.
pub async fn echo_server(config: KcpConfig) -> SocketAddr {
    let listener = KcpListener::bind("127.0.0.1:0", config).await.unwrap();
    let addr = listener.local_addr();
    tokio::spawn(echo_all(Arc::new(listener)));
    addr
}

/// Echoes every session `listener` accepts, until it fails.
pub async fn echo_all(listener: Arc<KcpListener>) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// Sends `len` pattern bytes to the echo server at `addr` and checks what comes back.
pub async fn echo_roundtrip(addr: SocketAddr, config: KcpConfig, len: usize) {
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

/// A client of `listener` with `config` that has sent `hello`, and the server's side of it,
/// accepted and with `hello` read.
pub async fn pair(
    listener: &KcpListener,
    config: KcpConfig,
    hello: &[u8],
) -> (KcpStream, KcpStream) {
    let mut c = KcpStream::connect(listener.local_addr(), config)
        .await
        .unwrap();
    c.write_all(hello).await.unwrap();
    let (mut s, _) = timeout(Duration::from_secs(10), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut b = vec![0u8; hello.len()];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(b, hello);
    (c, s)
}

/// A listener on `at` serving kcp-perf sessions (in message mode unless `config` is in stream
/// mode) until the task is aborted or its runtime ends.
pub async fn perf_listener(
    at: &str,
    config: KcpConfig,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let message = !config.engine().stream;
    let l = KcpListener::bind(at, config).await.unwrap();
    let addr = l.local_addr();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if perf::serve(&mut s, message).await.is_ok() {
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    (addr, task)
}

/// A runtime of one worker thread, for tests that drive a kcp-mio endpoint in their own thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}
