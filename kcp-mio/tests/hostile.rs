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
use kcp_testkit::rng::Rng;

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
            (rng.next_u64() % 24) as usize
        } else {
            (rng.next_u64() % 1500) as usize
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
            let cut = (rng.next_u64() as usize % n.max(1)).max(1);
            bad.truncate(cut);
            let flip = rng.next_u64() as usize % bad.len();
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
    let (running, flooding) = std::sync::mpsc::channel();
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
            // The first round is out: the real session may start.
            let _ = running.send(());
        }
        sent
    });
    // The session starts once the flood runs (on a loaded machine it could otherwise end
    // before the flood's sockets are bound).
    flooding.recv().expect("the flood started");
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
    // Nearly every flood datagram reached the endpoint and each was counted as a checksum or
    // header failure (the kernel may drop a few when the socket buffer is full).
    wait(&server, "flood counted", |s| {
        s.stats.in_csum_errors + s.stats.in_errs >= sent as u64 * 9 / 10
    });
    let served = server.served();
    assert_eq!(served.accepted, 2, "no garbage session: {served:?}");
    assert!(served.failed.is_empty(), "{served:?}");
}

/// Without encryption any 24 bytes can look like a KCP header, so garbage can open half-open
/// entries: they never become sessions (nobody answers their probe); shorter datagrams open
/// none; a real session completes meanwhile.
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
            let len = rng.next_u64() as usize % 24;
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
            let len = 24 + rng.next_u64() as usize % 176;
            rng.fill(&mut d[..len]);
            s.send_to(&d[..len], server.addr).unwrap();
        }
    }
    thread::sleep(Duration::from_millis(200));
    {
        // A datagram that passes the first-flight rule opens a half-open entry, never a
        // session: garbage never answers the probe.
        let served = server.served();
        eprintln!(
            "garbage: {} sessions at most, {} half-open entries",
            served.peak_sessions, served.stats.half_open
        );
        assert_eq!(served.peak_sessions, 0, "{served:?}");
        assert_eq!(served.accepted, 0, "{served:?}");
        assert!(served.stats.half_open <= 64, "{served:?}");
    }
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
    assert_eq!(served.accepted, 2, "{served:?}");
}

/// A relay between a real client and the server that keeps the client's first two
/// datagrams; they are then replayed from other addresses (127.0.0.2-4) and from the relay's
/// own address after the session: no session opens, and every copy is counted.
// Sources on 127.0.0.x other than 127.0.0.1: Linux routes all of 127/8 to loopback.
#[cfg(target_os = "linux")]
#[test]
fn a_captured_first_and_second_datagram_replayed_open_no_session() {
    let server = MioServer::start(encrypted());
    let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, to) = (stop.clone(), server.addr);
    let captured_so_far = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = captured_so_far.clone();
    let captor = thread::spawn(move || {
        relay
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut client: Option<SocketAddr> = None;
        let mut buf = [0u8; 2048];
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
            let mut captured = kept.lock().unwrap();
            if captured.len() < 2 {
                captured.push(buf[..n].to_vec());
            }
            drop(captured);
            let _ = relay.send_to(&buf[..n], to);
        }
        relay
    });
    mio_client(
        relay_addr,
        &encrypted(),
        Test::Sink,
        64 << 10,
        16 << 10,
        "through the captor",
    );
    wait(&server, "the real session counted", |s| s.accepted == 1);
    let captured = captured_so_far.lock().unwrap().clone();
    assert_eq!(captured.len(), 2);
    let before = server.served().stats;
    let mut copies = 0u64;
    for ip in 2..=4u8 {
        let s = UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, ip), 0)).unwrap();
        for d in &captured {
            s.send_to(d, server.addr).unwrap();
            copies += 1;
        }
    }
    wait(&server, "replays counted", |s| {
        s.stats.replayed - before.replayed == copies
    });
    // The relay forwards until the server's session has ended: the client's last datagram
    // (its ACK of the server's report, sent as it closed) may still wait in the relay's
    // socket when the client returns, and without it the server's session would only end
    // at its shutdown timeout.
    wait(&server, "the real session ended", |s| s.sessions == 0);
    stop.store(true, Ordering::Relaxed);
    let relay = captor.join().unwrap();
    // From the original address too, once its session ended on the server (dropped as a
    // recently closed conversation, or as a replay once that linger is over).
    let errs = server.served().stats.in_errs;
    for d in &captured {
        relay.send_to(d, server.addr).unwrap();
    }
    wait(&server, "replays from the original address counted", |s| {
        s.stats.in_errs - errs == 2
    });
    thread::sleep(Duration::from_millis(300));
    let served = server.served();
    assert_eq!(served.accepted, 1, "no replayed session: {served:?}");
    assert_eq!(served.stats.passive_opens, 1, "{served:?}");
    assert_eq!(served.stats.half_open, 0, "{served:?}");
}

/// Spoofed-looking sources on 127.0.0.x each send one first flight and never answer: the
/// replies each receives within the half-open timeout (every probe and its repeats) are at
/// most three times what it sent. A one-byte PUSH, an empty PUSH, and a first flight that
/// advertises window 0.
// Sources on 127.0.0.x other than 127.0.0.1: Linux routes all of 127/8 to loopback.
#[cfg(target_os = "linux")]
#[test]
fn replies_to_unconfirmed_sources_are_at_most_three_times_what_they_sent() {
    let server = MioServer::start(KcpConfig::new(Config::fast3()));
    let shapes: [(&str, &[u8], u16); 3] = [
        ("1-byte PUSH", b"x", 32),
        ("empty PUSH", b"", 32),
        ("window 0", b"x", 0),
    ];
    let mut sources = Vec::new();
    for (k, (name, payload, wnd)) in shapes.iter().enumerate() {
        for i in 0..21u32 {
            let ip = std::net::Ipv4Addr::new(127, 0, 1 + k as u8, 1 + i as u8);
            let s = UdpSocket::bind((ip, 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let mut d = vec![0u8; kcp_core::wire::HEADER_LEN + payload.len()];
            kcp_core::wire::SegmentRepr {
                conv: 1000 + i,
                cmd: kcp_core::wire::Command::Push,
                frg: 0,
                wnd: *wnd,
                ts: 1,
                sn: 0,
                una: 0,
                len: payload.len() as u32,
            }
            .emit(&mut d)
            .unwrap();
            d[kcp_core::wire::HEADER_LEN..].copy_from_slice(payload);
            s.send_to(&d, server.addr).unwrap();
            sources.push((*name, s, d.len()));
        }
    }
    // Collect replies for longer than the half-open timeout (5 s).
    let deadline = Instant::now() + Duration::from_millis(6_000);
    let mut got = vec![0usize; sources.len()];
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        for (i, (_, s, _)) in sources.iter().enumerate() {
            s.set_nonblocking(true).unwrap();
            while let Ok(n) = s.recv(&mut buf) {
                got[i] += n;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    for (i, (name, _, sent)) in sources.iter().enumerate() {
        assert!(got[i] > 0, "{name}: probed at least once");
        assert!(
            got[i] <= 3 * sent,
            "{name}: {} bytes back for {sent} sent",
            got[i]
        );
    }
    let worst = sources
        .iter()
        .zip(&got)
        .map(|((_, _, s), g)| *g as f64 / *s as f64)
        .fold(0.0, f64::max);
    eprintln!("worst bytes out / bytes in: {worst:.2}");
    let served = server.served();
    assert_eq!(served.accepted, 0);
    assert!(served.stats.amplification_limited > 0, "{:?}", served.stats);
}
