//! A listener under a flood over real loopback sockets, as an open UDP port sees it: 200,000
//! random datagrams, then valid-looking first flights from 16 source hosts x 64 ports
//! (127.0.0.10-25) at 3,000 a second, which keep the half-open table full, once without
//! encryption and once with kcp-go's AES packet crypto (sealed with the key: an insider, the
//! strongest sender of first flights). During the burst a real client connects and moves a
//! checked megabyte: ours, kcp-go's (the kcp-perf-go harness), and ours again with an
//! application that accepts only every 200 ms. No flood datagram produces an accepted session,
//! each real transfer finishes in under a second, and peak RSS grows by less than 32 MiB.
//!
//! One test function: peak RSS is process-wide, and tests of one binary run in parallel.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kcp_core::wire::{Command, SegmentRepr, HEADER_LEN};
use kcp_core::{Codec, Config, Millis};
use kcp_testkit::go::{self, Case};
use kcp_testkit::rng::Rng;
use kcp_tokio::perf::{self, Test};
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

const RANDOM_DATAGRAMS: usize = 200_000;
const TRANSFER: u64 = 1 << 20;
const RSS_BUDGET: u64 = 32 << 20;
/// The kcp-go client's key (the Go interop cases').
const KEY: &str = go::KEY;
/// First flights per second, spread over `HOSTS` x `PORTS` spoofed sources.
const RATE: u64 = 3_000;
const HOSTS: u8 = 16;
const PORTS: usize = 64;

/// Peak resident set of this process in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kb * 1024
}

/// A peer's first datagram: one PUSH with sequence number 0, as kcp-go sends it.
fn first_flight(conv: u32, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN + payload.len()];
    SegmentRepr {
        conv,
        cmd: Command::Push,
        frg: 0,
        wnd: 32,
        ts: 1,
        sn: 0,
        una: 0,
        len: payload.len() as u32,
    }
    .emit(&mut d)
    .expect("room");
    d[HEADER_LEN..].copy_from_slice(payload);
    d
}

fn config(crypt: Option<&str>) -> KcpConfig {
    let engine = Config {
        mtu: go::MTU,
        ..Config::fast3().with_windows(go::WINDOW, go::WINDOW)
    };
    let c = KcpConfig::new(engine).idle_timeout(Some(Duration::from_secs(10)));
    match crypt {
        Some(name) => c.crypt(name, KEY).unwrap(),
        None => c,
    }
}

/// Sends first flights from `HOSTS` x `PORTS` sockets at `RATE` a second until `stop`.
async fn first_flights(crypt: Option<&'static str>, to: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let mut socks = Vec::new();
    for h in 0..HOSTS {
        for _ in 0..PORTS {
            let ip = std::net::Ipv4Addr::new(127, 0, 0, 10 + h);
            socks.push(UdpSocket::bind((ip, 0)).await.expect("bind 127.0.0.x"));
        }
    }
    let mut sealer = crypt.map(|name| {
        let kind = kcp_crypto::CipherKind::from_name(name).unwrap();
        let pass = kcp_crypto::Pass::derive(KEY.as_bytes());
        kcp_crypto::PacketCrypt::new(kcp_crypto::BlockCrypt::from_pass(kind, &pass), &mut Rng(3))
    });
    let mut rng = Rng(0xF1F1);
    let mut sent = 0u64;
    let start = Instant::now();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // Keep to the rate: as many as are due by now.
        let due = start.elapsed().as_millis() as u64 * RATE / 1000;
        while sent < due {
            let mut payload = [0u8; 100];
            rng.fill(&mut payload);
            let plain = first_flight(rng.next_u64() as u32, &payload);
            let datagram = match &mut sealer {
                Some(c) => {
                    let room = kcp_crypto::HEADER_LEN;
                    let mut b = vec![0u8; room + plain.len()];
                    b[room..].copy_from_slice(&plain);
                    let n = c.seal(&mut b, room + plain.len(), Millis(0)).unwrap();
                    b.truncate(n);
                    b
                }
                None => plain,
            };
            let _ = socks[i % socks.len()].send_to(&datagram, to).await;
            i += 1;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sent
}

/// Our client: 1 MiB to the listener (kcp-perf sink), timed from connect to the answer.
async fn our_client(to: SocketAddr, crypt: Option<&str>) -> Duration {
    let start = Instant::now();
    let mut s = KcpStream::connect(to, config(crypt)).await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        perf::client(&mut s, Test::Sink, TRANSFER, 16 << 10, false),
    )
    .await
    .expect("the transfer completes")
    .expect("checked transfer");
    assert_eq!(r.bytes, TRANSFER);
    start.elapsed()
}

/// kcp-go's client: 1 MiB to the listener; the time it reports for the transfer plus its
/// process start.
async fn go_client(bin: PathBuf, to: SocketAddr, crypt: Option<&'static str>) -> Duration {
    let start = Instant::now();
    let case = Case::new(crypt.unwrap_or("null"), false, true);
    let mut cmd = case.go_client(&bin, to);
    cmd.args([
        "--test",
        "sink",
        "--bytes",
        "1M",
        "--msg",
        &case.msg().to_string(),
    ]);
    let out = tokio::task::spawn_blocking(move || go::run_go_client(cmd, &format!("{case:?}")))
        .await
        .unwrap();
    eprintln!("  kcp-go: {}", String::from_utf8_lossy(&out.stdout).trim());
    start.elapsed()
}

async fn flood(crypt: Option<&'static str>, go: &std::path::Path) {
    let listener = Arc::new(
        KcpListener::bind("127.0.0.1:0", config(crypt))
            .await
            .unwrap(),
    );
    let server = listener.local_addr();
    let accepted = Arc::new(AtomicUsize::new(0));
    let slow = Arc::new(AtomicBool::new(false));
    {
        let (listener, accepted, slow) = (listener.clone(), accepted.clone(), slow.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                // A slow application: each session waits 200 ms before it is served (and the
                // next accept waits for that).
                if slow.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if perf::serve(&mut s, false).await.is_ok() {
                        let _ = s.shutdown().await;
                    }
                });
            }
        });
    }

    // 200,000 random datagrams from a few sockets.
    let mut rng = Rng(0x5EED ^ crypt.map_or(0, |n| n.len() as u64));
    let mut socks = Vec::new();
    for _ in 0..4 {
        socks.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    let mut buf = vec![0u8; 1400];
    for i in 0..RANDOM_DATAGRAMS {
        let len = (rng.next_u64() % 1400) as usize;
        rng.fill(&mut buf[..len]);
        let _ = socks[i % socks.len()].send_to(&buf[..len], server).await;
        if i % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let random_in = listener.stats().in_pkts;

    // First flights at 3,000 a second; a second of them fills the half-open table.
    let stop = Arc::new(AtomicBool::new(false));
    let ff = tokio::spawn(first_flights(crypt, server, stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = listener.stats();
    assert!(
        st.half_open >= 1000,
        "the flood fills the half-open table: {st:?}"
    );
    let name = crypt.unwrap_or("null");
    let mut times = Vec::new();
    for (who, slow_accept) in [
        ("ours", false),
        ("kcp-go", false),
        ("ours, slow accept", true),
    ] {
        slow.store(slow_accept, Ordering::Relaxed);
        let took = if who == "kcp-go" {
            go_client(go.to_path_buf(), server, crypt).await
        } else {
            our_client(server, crypt).await
        };
        eprintln!(
            "{name}: {who}: 1 MiB in {:.3} s under the flood",
            took.as_secs_f64()
        );
        times.push((who, took));
    }
    stop.store(true, Ordering::Relaxed);
    let flights = ff.await.unwrap();
    let st = listener.stats();
    eprintln!(
        "{name}: {flights} first flights; evicted {} unconfirmed {} half_open {} replayed {} \
         in_errs {} csum {} not_first_flight {}",
        st.half_open_evicted,
        st.unconfirmed,
        st.half_open,
        st.replayed,
        st.in_errs,
        st.in_csum_errors,
        st.not_first_flight
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "only the three real clients reached accept"
    );
    assert!(flights >= RATE, "the flood ran: {flights}");
    assert!(st.half_open_evicted > 0, "{st:?}");
    // Every random datagram that reached the endpoint was dropped before it made state.
    let dropped = match crypt {
        None => st.in_errs,
        Some(_) => st.in_csum_errors + st.in_errs,
    };
    assert!(
        dropped >= random_in * 99 / 100 && random_in > RANDOM_DATAGRAMS as u64 / 2,
        "{dropped} dropped of {random_in} random datagrams that arrived ({st:?})"
    );
    for (who, took) in times {
        assert!(
            took < Duration::from_secs(1),
            "{name}: {who}: 1 MiB took {took:?} under the flood"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_under_a_first_flight_flood_lets_real_clients_in_with_bounded_memory() {
    let go = go::peer(None);
    let before = peak_rss();
    for crypt in [None, Some("aes")] {
        flood(crypt, &go).await;
        let grown = peak_rss().saturating_sub(before);
        eprintln!(
            "{}: peak RSS grew by {:.1} MiB",
            crypt.unwrap_or("null"),
            grown as f64 / (1 << 20) as f64
        );
        assert!(
            grown < RSS_BUDGET,
            "peak RSS grew by {grown} bytes under the flood"
        );
    }
}
