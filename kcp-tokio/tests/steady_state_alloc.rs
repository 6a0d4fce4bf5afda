//! A steady transfer through kcp-tokio (listener and client drivers, streams, the shared
//! stack with AES and FEC 10/3, the batched socket I/O) does not allocate per packet: a
//! counting allocator over some 20,000 datagrams after a warm-up. Both ends run on one
//! current-thread runtime in one thread, so the count is the whole stack's, both directions.
//!
//! What may still allocate is growth to a bound: a session's rings double when a burst first
//! exceeds them (up to their window-derived bounds), and a payload chunk is allocated when more
//! are in flight at once than ever before. Traced runs show 0 to 7 such events per 16 MiB
//! (`SeqRing::grow` on a new out-of-order or in-flight high-water mark, `new_chunk`), and
//! when they fall is timing-dependent (a loaded machine lets queues reach new high-water
//! marks). So the test allows one allocation per 1,000 datagrams plus the rings' doublings
//! over a session's life: an allocation per packet, or per flush, exceeds that many times.

use std::time::Duration;

use kcp_core::Config;
use kcp_testkit::alloc;
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Moves `warm` bytes, then counts allocations while moving `measure` more; returns them and
/// the datagrams the server received meanwhile.
async fn steady(config: KcpConfig, warm: usize, measure: usize) -> (u64, u64) {
    let listener = KcpListener::bind("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let addr = listener.local_addr();
    // The server echoes with one reused buffer.
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return listener,
                Ok(n) => {
                    if w.write_all(&buf[..n]).await.is_err() {
                        return listener;
                    }
                }
            }
        }
    });
    let c = KcpStream::connect(addr, config).await.unwrap();
    let monitor = c.monitor();
    let (mut r, mut w) = c.into_split();
    let chunk: Vec<u8> = (0..16 * 1024 + 256).map(|i| i as u8).collect();
    let total = warm + measure;
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        while sent < total {
            let n = (total - sent).min(16 * 1024);
            w.write_all(&chunk[sent % 256..sent % 256 + n])
                .await
                .unwrap();
            sent += n;
        }
        w
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    let mut before = None;
    let mut datagrams = 0;
    let stats = |_: &kcp_tokio::OwnedReadHalf| monitor.socket_stats().datagrams_received;
    while got < total {
        if before.is_none() && got >= warm {
            datagrams = stats(&r);
            before = Some(alloc::thread_allocs());
        }
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0, "echo ended early");
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, (got + k) as u8, "echo corrupted");
        }
        got += n;
    }
    let allocs = alloc::thread_allocs() - before.unwrap();
    let datagrams = stats(&r) - datagrams;
    drop(writer.await.unwrap());
    drop(r);
    server.abort();
    (allocs, datagrams)
}

fn run(config: KcpConfig) -> (u64, u64) {
    // The whole stack on this thread: a current-thread runtime.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(120), steady(config, 64 << 20, 16 << 20))
                .await
                .expect("transfer within two minutes")
        })
}

#[test]
fn a_steady_transfer_allocates_nothing_per_packet() {
    for (name, config) in [
        (
            "aes",
            KcpConfig::new(Config::fast3().with_windows(256, 256))
                .crypt("aes", "steady")
                .unwrap(),
        ),
        (
            "aes + fec 10/3",
            KcpConfig::new(Config::fast3().with_windows(256, 256))
                .fec(10, 3)
                .crypt("aes", "steady")
                .unwrap(),
        ),
    ] {
        let (allocs, datagrams) = run(config);
        eprintln!("{name}: {allocs} allocations for {datagrams} datagrams received by the client");
        assert!(datagrams > 10_000, "{name}: {datagrams}");
        // Growth to a bound is allowed, whenever the machine's timing makes it fall: each of a
        // session's rings (send, receive, ACK list, transmit queue, their links) can double
        // at most 10 times over its life (1 -> 1024 slots at these windows), two sessions. A
        // per-packet or per-flush allocation is thousands.
        let growth = 2 * 6 * 10;
        assert!(
            allocs <= datagrams / 1000 + growth,
            "{name}: {allocs} allocations for {datagrams} datagrams"
        );
    }
}
