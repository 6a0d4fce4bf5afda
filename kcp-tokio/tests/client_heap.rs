//! Heap per client session when every session has a socket of its own (`KcpStream::connect`,
//! as kcp-go's `Dial` and the 10,000-session benchmark's client make them): AES and FEC 10/3,
//! fast3, eight 64-byte echoes per session, then idle with the sessions open. The clients run
//! on this thread (a current-thread runtime) and the server on another, so the counting
//! allocator's per-thread view is the clients' alone: per session a socket's driver (its
//! endpoint, its send and receive halves), the session and the stream.
//!
//! An idle socket holds no batch slots (they are lent per batch from a stock kept per
//! thread): holding either half's first batch (4 slots of 2 KiB) again would add 8 KiB per
//! session, and a key schedule and FEC code per endpoint instead of one per configuration
//! about 5 KB, which the bound below catches. Run with `--nocapture` for the numbers.

use std::sync::mpsc;
use std::time::Duration;

mod common;

use kcp_core::Config;
use kcp_testkit::alloc;
use kcp_tokio::{KcpConfig, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Sessions measured (after one warm-up session).
const N: usize = 200;
/// 64-byte echoes per session (each side's first FEC group completes).
const ECHOES: usize = 8;

fn config() -> KcpConfig {
    KcpConfig::new(Config::fast3())
        .fec(10, 3)
        .crypt("aes", "client-heap")
        .unwrap()
}

/// The shared echo server (`common::echo_server`) on its own thread, with room for every
/// first flight at once; returns its address and a sender that stops it.
fn server() -> (
    std::net::SocketAddr,
    mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let c = config();
                let timeout = c.half_open_timeout();
                let c = c.half_open(timeout, 4 * N, 2 * N).backlog(2 * N);
                addr_tx.send(common::echo_server(c).await).unwrap();
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            });
    });
    (addr_rx.recv().unwrap(), stop_tx, t)
}

/// `n` sessions, a socket each, `ECHOES` echoes each, all from clones of `cfg` (as an
/// application builds its configuration once); returns the open streams.
async fn sessions(addr: std::net::SocketAddr, n: usize, cfg: &KcpConfig) -> Vec<KcpStream> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = KcpStream::connect(addr, cfg).await.unwrap();
            let mut buf = [0u8; 64];
            for i in 0..ECHOES {
                s.write_all(&[i as u8; 64]).await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, [i as u8; 64]);
            }
            s
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        open.push(t.await.unwrap());
    }
    open
}

#[test]
fn an_idle_client_socket_holds_no_batch_slots() {
    let (addr, stop, server) = server();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            // One session first: the thread's stock of batch slots, and the configuration's
            // shared key schedule and FEC code, exist before measuring.
            let cfg = config();
            let warm = sessions(addr, 1, &cfg).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let before = (alloc::thread_live(), alloc::thread_live_blocks());
            let open = sessions(addr, N, &cfg).await;
            // The last ACKs leave and the timers settle.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let after = (alloc::thread_live(), alloc::thread_live_blocks());
            let bytes = (after.0 - before.0) as f64 / N as f64;
            let blocks = (after.1 - before.1) as f64 / N as f64;
            println!(
                "client, {N} sessions with a socket each (aes, FEC 10/3, {ECHOES} x 64 B): \
                 {bytes:.0} heap bytes per session in {blocks:.1} blocks"
            );
            drop(open);
            drop(warm);
            // Measured 15,750 bytes in 53 blocks; 20,650 when every endpoint built its own
            // key schedule and FEC code from the configuration; 29,230 with the receive half
            // holding its slots after a turn (a turn that stops at a drained batch and does
            // not hand them back).
            assert!(bytes <= 18_000.0, "{bytes:.0} bytes per session");
        });
    stop.send(()).unwrap();
    server.join().unwrap();
}
