//! The endpoint's hostile-input tests, against the mio adapter over real loopback sockets:
//! random datagrams, truncated copies of real ones, a flood from many source ports. The
//! server stays up, opens no session for garbage (with encryption, as kcptun runs), keeps
//! sessions bounded without it, and a real session still completes with every byte checked.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{mio_client, MioServer};
use kcp_core::Config;
use kcp_mio::perf::Test;
use kcp_mio::KcpConfig;

/// xorshift64*: reproducible garbage.
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

fn encrypted() -> KcpConfig {
    KcpConfig::new(Config::fast3().with_windows(256, 256))
        .fec(10, 3)
        .crypt("aes", "hostile")
        .unwrap()
}

/// Sends `count` random datagrams (lengths 0..1500, a quarter of them shorter than a KCP
/// header) from `socket` to `to`, pacing a little so the server's socket buffer keeps them.
fn spray(socket: &UdpSocket, to: SocketAddr, rng: &mut Rng, count: usize) -> usize {
    let mut buf = [0u8; 1500];
    let mut sent = 0;
    for i in 0..count {
        let len = if i % 4 == 0 {
            (rng.next() % 24) as usize
        } else {
            (rng.next() % 1500) as usize
        };
        rng.fill(&mut buf[..len]);
        if socket.send_to(&buf[..len], to).is_ok() {
            sent += 1;
        }
        if i % 64 == 63 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    sent
}

/// Waits until the server's refreshed counters satisfy `f`.
fn wait(server: &MioServer, what: &str, f: impl Fn(&common::Served) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f(&server.served()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", server.served());
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn random_datagrams_open_no_session_and_a_real_one_still_completes() {
    let server = MioServer::start(encrypted());
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seed in [1u64, 2, 3, 0xDEAD_BEEF] {
        spray(&attacker, server.addr, &mut Rng(seed), 500);
    }
    // Every datagram was looked at and dropped, counted as a checksum or header failure.
    wait(&server, "garbage counted", |s| {
        s.stats.in_csum_errors + s.stats.in_errs >= 1500
    });
    assert_eq!(server.served().accepted, 0, "no session for garbage");
    assert_eq!(server.served().peak_sessions, 0);
    mio_client(
        server.addr,
        &encrypted(),
        Test::Sink,
        512 << 10,
        16 << 10,
        "after garbage",
    );
    mio_client(
        server.addr,
        &encrypted(),
        Test::Echo,
        64 << 10,
        1024,
        "after garbage",
    );
    assert_eq!(server.served().accepted, 2);
    assert!(server.served().failed.is_empty(), "{:?}", server.served());
}

/// A relay between a real client and the server that also sends the server, from another
/// port, every datagram of the client truncated at a random length and with a flipped byte.
#[test]
fn truncated_and_corrupted_copies_of_real_datagrams_are_dropped() {
    let server = MioServer::start(encrypted());
    let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let evil = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, to) = (stop.clone(), server.addr);
    let copies = thread::spawn(move || {
        relay
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut rng = Rng(7);
        let mut client: Option<SocketAddr> = None;
        let mut buf = [0u8; 2048];
        let mut sent = 0usize;
        while !stop2.load(Ordering::Relaxed) {
            let Ok((n, from)) = relay.recv_from(&mut buf) else {
                continue;
            };
            if from == to {
                if let Some(c) = client {
                    let _ = relay.send_to(&buf[..n], c);
                }
                continue;
            }
            client = Some(from);
            let _ = relay.send_to(&buf[..n], to);
            let mut bad = buf[..n].to_vec();
            let cut = (rng.next() as usize % n.max(1)).max(1);
            bad.truncate(cut);
            let flip = rng.next() as usize % bad.len();
            bad[flip] ^= 0x5A;
            if evil.send_to(&bad, to).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    mio_client(
        relay_addr,
        &encrypted(),
        Test::Sink,
        256 << 10,
        16 << 10,
        "through the relay",
    );
    mio_client(
        relay_addr,
        &encrypted(),
        Test::Source,
        256 << 10,
        16 << 10,
        "through the relay",
    );
    stop.store(true, Ordering::Relaxed);
    let sent = copies.join().unwrap();
    assert!(sent > 100, "{sent} corrupted copies");
    wait(&server, "copies counted", |s| {
        s.stats.in_csum_errors + s.stats.in_errs >= sent as u64 * 9 / 10
    });
    let served = server.served();
    assert_eq!(served.accepted, 2, "only the real sessions: {served:?}");
    assert!(served.failed.is_empty(), "{served:?}");
}

#[test]
fn a_flood_from_many_source_ports_does_not_stop_a_real_session() {
    let server = MioServer::start(encrypted());
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, to) = (stop.clone(), server.addr);
    let flood = thread::spawn(move || {
        let sockets: Vec<UdpSocket> = (0..256)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut rng = Rng(99);
        let mut sent = 0;
        while !stop2.load(Ordering::Relaxed) && sent < 100_000 {
            for s in &sockets {
                sent += spray(s, to, &mut rng, 4);
            }
        }
        sent
    });
    // Meanwhile, a real session moves 1 MiB each way, every byte checked.
    let cfg = encrypted();
    mio_client(
        server.addr,
        &cfg,
        Test::Sink,
        1 << 20,
        16 << 10,
        "during the flood",
    );
    mio_client(
        server.addr,
        &cfg,
        Test::Source,
        1 << 20,
        16 << 10,
        "during the flood",
    );
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert!(sent >= 1024, "the flood ran: {sent} datagrams");
    wait(&server, "flood counted", |s| {
        s.stats.in_csum_errors + s.stats.in_errs > 0
    });
    let served = server.served();
    assert_eq!(served.accepted, 2, "no garbage session: {served:?}");
    assert!(served.failed.is_empty(), "{served:?}");
}

/// Without encryption any 24 bytes can look like a KCP header, so garbage can open
/// sessions: they stay within the limits, never deliver data, and end at the idle timeout;
/// shorter datagrams open none; a real session completes once there is room.
#[test]
fn without_encryption_garbage_sessions_stay_bounded_and_expire() {
    let cfg = KcpConfig::new(Config::fast3())
        .crypt("null", "")
        .unwrap()
        .backlog(16)
        .max_sessions(32)
        .idle_timeout(Some(Duration::from_millis(400)));
    let server = MioServer::start(cfg.clone());
    let sockets: Vec<UdpSocket> = (0..64)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    // Short datagrams first: no session.
    let mut rng = Rng(5);
    for s in &sockets {
        for _ in 0..4 {
            let mut d = [0u8; 23];
            let len = rng.next() as usize % 24;
            rng.fill(&mut d[..len]);
            s.send_to(&d[..len], server.addr).unwrap();
        }
    }
    wait(&server, "short datagrams counted", |s| {
        s.stats.in_errs >= 200
    });
    assert_eq!(server.served().accepted, 0);
    // Then random datagrams long enough for a header.
    for s in &sockets {
        for _ in 0..8 {
            let mut d = [0u8; 200];
            let len = 24 + rng.next() as usize % 176;
            rng.fill(&mut d[..len]);
            s.send_to(&d[..len], server.addr).unwrap();
        }
    }
    thread::sleep(Duration::from_millis(200));
    {
        let served = server.served();
        // (Today's kcp-core admits them; with half-open admission it will not.)
        eprintln!("garbage opened {} sessions at most", served.peak_sessions);
        assert!(served.peak_sessions <= 32, "{served:?}");
        assert!(served.done.is_empty(), "garbage ran no test: {served:?}");
    }
    // They end at the idle timeout; a real session then completes.
    wait(&server, "garbage sessions expired", |s| s.sessions == 0);
    mio_client(
        server.addr,
        &cfg,
        Test::Sink,
        256 << 10,
        16 << 10,
        "after expiry",
    );
    mio_client(
        server.addr,
        &cfg,
        Test::Echo,
        32 << 10,
        1024,
        "after expiry",
    );
    let served = server.served();
    assert_eq!(served.done.len(), 2, "{served:?}");
    assert!(served.peak_sessions <= 32);
}
