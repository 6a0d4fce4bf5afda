//! A listener under a flood over real loopback sockets, as an open UDP port sees it: 200,000
//! random datagrams, then valid-looking first datagrams from thousands of source ports, once
//! without encryption and once with kcp-go's AES packet crypto, while a real client moves a
//! checked megabyte through the same socket. The server stays up, no random datagram produces
//! an accepted session, the first flights are bounded by the half-open caps, peak RSS grows
//! by less than 32 MiB, and the real transfer completes with every byte checked.
//!
//! One test function: peak RSS is process-wide, and tests of one binary run in parallel.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcp_core::wire::{Command, SegmentRepr, HEADER_LEN};
use kcp_core::{Codec, Config, Millis};
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

const RANDOM_DATAGRAMS: usize = 200_000;
const FIRST_FLIGHT_PORTS: usize = 3_000;
const TRANSFER: usize = 1 << 20;
const RSS_BUDGET: u64 = 32 << 20;

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

/// xorshift64*: the flood is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}
impl rand_core::TryRng for Rng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.next() as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.fill(dst);
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Rng {}

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

#[derive(Default)]
struct Accepted {
    real: AtomicUsize,
    from_random: AtomicUsize,
    from_first_flights: AtomicUsize,
}

async fn flood(crypt: Option<&str>) {
    let key = "flood test key";
    let mut config = KcpConfig::new(Config::fast3()).idle_timeout(Some(Duration::from_secs(10)));
    if let Some(name) = crypt {
        config = config.crypt(name, key).unwrap();
    }
    let listener = Arc::new(
        KcpListener::bind("127.0.0.1:0", config.clone())
            .await
            .unwrap(),
    );
    let server = listener.local_addr();

    let random_sources: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    // The real client's port (its socket is bound to the unspecified address).
    let client_port: Arc<Mutex<Option<u16>>> = Arc::default();
    let accepted = Arc::new(Accepted::default());
    {
        let (random_sources, client_port, accepted) = (
            random_sources.clone(),
            client_port.clone(),
            accepted.clone(),
        );
        let listener = listener.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, peer)) = listener.accept().await else {
                    return;
                };
                if Some(peer.port()) == *client_port.lock().unwrap() {
                    accepted.real.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; TRANSFER];
                        if s.read_exact(&mut buf).await.is_ok() {
                            let crc = crc32fast::hash(&buf);
                            let _ = s.write_all(&crc.to_le_bytes()).await;
                            let _ = s.shutdown().await;
                        }
                    });
                } else if random_sources.lock().unwrap().contains(&peer) {
                    accepted.from_random.fetch_add(1, Ordering::SeqCst);
                } else {
                    accepted.from_first_flights.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }

    // The real client, through the flood.
    let mut c = KcpStream::connect(server, config).await.unwrap();
    *client_port.lock().unwrap() = Some(c.local_addr().port());
    let real = tokio::spawn(async move {
        let mut rng = Rng(7);
        let mut data = vec![0u8; TRANSFER];
        rng.fill(&mut data);
        c.write_all(&data).await.unwrap();
        let mut crc = [0u8; 4];
        c.read_exact(&mut crc).await.unwrap();
        assert_eq!(
            u32::from_le_bytes(crc),
            crc32fast::hash(&data),
            "the server received other bytes than were sent"
        );
        // Kept alive: it still acknowledges the answer after this task ends, and its count
        // of datagrams sent is read after the listener's counters (below).
        c
    });

    // 200,000 random datagrams from a few sockets.
    let mut rng = Rng(0x5EED ^ crypt.map_or(0, |n| n.len() as u64));
    let mut socks = Vec::new();
    for _ in 0..4 {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        random_sources
            .lock()
            .unwrap()
            .insert(s.local_addr().unwrap());
        socks.push(s);
    }
    let mut buf = vec![0u8; 1400];
    for i in 0..RANDOM_DATAGRAMS {
        let len = (rng.next() % 1400) as usize;
        rng.fill(&mut buf[..len]);
        let _ = socks[i % socks.len()].send_to(&buf[..len], server).await;
        if i % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }

    // Valid-looking first datagrams from thousands of source ports (sealed with the key when
    // the listener encrypts: an insider, the strongest sender of first flights).
    let mut sealer = crypt.map(|name| {
        let kind = kcp_crypto::CipherKind::from_name(name).unwrap();
        let pass = kcp_crypto::Pass::derive(key.as_bytes());
        kcp_crypto::PacketCrypt::new(kcp_crypto::BlockCrypt::from_pass(kind, &pass), &mut Rng(3))
    });
    let mut sent = 0;
    while sent < FIRST_FLIGHT_PORTS {
        let mut round = Vec::new();
        for _ in 0..500 {
            round.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        for s in &round {
            let payload_len = 1 + (rng.next() % 100) as usize;
            let mut payload = vec![0u8; payload_len];
            rng.fill(&mut payload);
            let plain = first_flight(rng.next() as u32, &payload);
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
            let _ = s.send_to(&datagram, server).await;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let real_client = tokio::time::timeout(Duration::from_secs(60), real)
        .await
        .expect("the real transfer completes during the flood")
        .unwrap();
    assert_eq!(accepted.real.load(Ordering::SeqCst), 1);
    assert_eq!(
        accepted.from_random.load(Ordering::SeqCst),
        0,
        "a random datagram produced an accepted session"
    );
    let ff = accepted.from_first_flights.load(Ordering::SeqCst);
    // All first flights come from one host (127.0.0.1): the per-host cap bounds them while
    // they are half-open (and their sessions end, unconfirmed, within seconds).
    let cap = kcp_core::endpoint::EndpointConfig::new(Config::fast3()).max_half_open_per_host;
    eprintln!(
        "{}: {} first flights accepted of {FIRST_FLIGHT_PORTS} (per-host cap {cap})",
        crypt.unwrap_or("null"),
        ff
    );
    let st = listener.stats();
    // Read after the listener's counters: the client may still be sending (the ACK of the
    // answer), and a datagram it sent that the listener has not counted yet only makes the
    // estimate of random arrivals below smaller, never larger. (The client publishes its
    // count just after each send call returns: the pause lets a send the listener already
    // counted reach the client's counter.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    let real_sent = real_client.socket_stats().datagrams_sent;
    eprintln!(
        "  in_errs {} csum {} not_first_flight {} half_open_refused {} unconfirmed {}",
        st.in_errs, st.in_csum_errors, st.not_first_flight, st.half_open_refused, st.unconfirmed
    );
    // Every random datagram that reached the endpoint was dropped before it made state: by
    // the first-flight rule, or by the CRC with encryption. (The kernel may drop some of a
    // flood before the socket is read: what arrived is what the endpoint counted, minus the
    // real client's datagrams and the first flights.)
    let dropped = match crypt {
        None => st.in_errs,
        Some(_) => st.in_csum_errors + st.in_errs,
    };
    let random_arrived = st
        .in_pkts
        .saturating_sub(real_sent + FIRST_FLIGHT_PORTS as u64);
    assert!(
        dropped >= random_arrived && random_arrived > RANDOM_DATAGRAMS as u64 / 2,
        "{dropped} dropped of about {random_arrived} random datagrams that arrived ({:?})",
        st
    );
    // The bursts of first flights ran into the per-host cap.
    assert!(st.half_open_refused > 0, "{st:?}");
    assert!(ff < FIRST_FLIGHT_PORTS, "{ff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_survives_a_flood_with_bounded_memory() {
    let before = peak_rss();
    for crypt in [None, Some("aes")] {
        flood(crypt).await;
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
