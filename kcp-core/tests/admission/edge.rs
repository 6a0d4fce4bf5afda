//! What creates state at the server edge: the first-flight rule, half-open entries and
//! their WASK probe, reaping, eviction, the accept timeout, floods and per-host caps.

use super::*;

#[test]
fn random_datagrams_never_create_a_session() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(server_cfg()).unwrap();
    let mut rng = Rng::new(1);
    let now = Millis(1);
    let mut d = [0u8; 1500];
    for i in 0..200_000u32 {
        let len = rng.below(1400) as usize;
        rng.fill(&mut d[..len]);
        let from = addr((i % 250) as u8, rng.below(60_000) as u16 + 1);
        let _ = ep.handle_datagram(now, from, &mut d[..len]);
        assert!(drain(&mut ep, now).is_empty(), "no reply to garbage");
    }
    assert_eq!(ep.len(), 0);
    assert!(ep.accept().is_none());
    let st = ep.stats();
    assert_eq!(st.passive_opens, 0);
    assert_eq!(st.in_pkts, 200_000);
    assert!(st.in_errs >= 199_000, "{st:?}");
}

#[test]
fn the_first_flight_rule_matches_what_peers_send_first() {
    // A kcp-go or ikcp.c session's first flush: PUSH segments numbered from 0, una 0.
    let mut first = push(9, 0, 0, b"hello");
    first.extend(push(9, 1, 0, &[7; 100]));
    assert_eq!(first_flight(&first, 9, 32), Ok(()));
    // A peer that lost its session sends ACKs and a non-zero una.
    assert_eq!(
        first_flight(&seg(9, Command::Ack, 4, 0, &[]), 9, 32),
        Err(FirstFlightError::NotPush)
    );
    assert_eq!(
        first_flight(&push(9, 40, 12, b"x"), 9, 32),
        Err(FirstFlightError::Una)
    );
    // And the endpoint applies the rule: no session, counted.
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(server_cfg()).unwrap();
    let r = ep.handle_datagram(Millis(0), addr(1, 1), &mut push(9, 40, 12, b"x"));
    assert_eq!(
        r,
        Err(EndpointError::Rejected(DropReason::NotFirstFlight(
            FirstFlightError::Una
        )))
    );
    assert_eq!(ep.stats().not_first_flight, 1);
    assert!(ep.is_empty());
}

#[test]
fn a_half_open_session_probes_its_peer_and_a_real_peer_confirms_it() {
    let mut server: Endpoint<u8> = Endpoint::new(server_cfg()).unwrap();
    let mut client: Endpoint<u8> = Endpoint::new(EndpointConfig::new(Config::fast3())).unwrap();
    let mut now = Millis(u32::MAX - 100);
    let c = client.connect(now, 0, 42).unwrap();
    client.send(c, b"hi").unwrap();
    let mut wire: VecDeque<(u8, u8, Vec<u8>)> = drain(&mut client, now)
        .into_iter()
        .map(|(to, d)| (1, to, d))
        .collect();
    let mut saw_wask = false;
    let mut confirmed_at = None;
    for step in 0..200 {
        while let Some((from, to, mut d)) = wire.pop_front() {
            if to == 0 {
                let _ = server.handle_datagram(now, from, &mut d);
            } else {
                let _ = client.handle_datagram(now, 0, &mut d);
            }
        }
        server.handle_timeout(now);
        client.handle_timeout(now);
        for (to, d) in drain(&mut server, now) {
            saw_wask |= Datagram::new(&d)
                .flatten()
                .any(|(s, _)| s.cmd == Command::WindowAsk);
            wire.push_back((0, to, d));
        }
        for (to, d) in drain(&mut client, now) {
            wire.push_back((1, to, d));
        }
        if confirmed_at.is_none() && server.len() == 1 {
            confirmed_at = Some(step);
        }
        now += 5;
    }
    assert!(saw_wask, "the server asks a new peer for its window");
    let at = confirmed_at.expect("the peer's answer confirms the session");
    assert!(at < 20, "confirmed within a few intervals, at step {at}");
    assert_eq!(server.stats().half_open, 0);
    // Long after the half-open timeout the session is still there.
    for _ in 0..1_400 {
        now += 5;
        server.handle_timeout(now);
        drain(&mut server, now);
    }
    assert_eq!(server.len(), 1);
}

#[test]
fn spoofed_first_flights_are_reaped_and_leave_no_trace() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        backlog: 1_000,
        ..server_cfg()
    })
    .unwrap();
    let mut now = Millis(0);
    for i in 0..300u16 {
        let from = addr((i % 100) as u8, 1000 + i);
        let mut d = push(u32::from(i), 0, 0, b"spoof");
        ep.handle_datagram(now, from, &mut d).unwrap();
        // Another first flight (a retransmission) confirms nothing.
        let r = ep.handle_datagram(now, from, &mut push(u32::from(i), 0, 0, b"spoof!"));
        assert_eq!(r, Err(EndpointError::Rejected(DropReason::Unconfirmed)));
        let replies = drain(&mut ep, now);
        assert_eq!(replies.len(), 1, "one probe");
        assert!(
            replies.iter().all(|(_, d)| d.len() == HEADER_LEN),
            "only a WASK goes to an unconfirmed address, no ACK"
        );
    }
    assert!(ep.is_empty(), "half-open entries are not sessions");
    assert!(ep.accept().is_none());
    assert_eq!(ep.stats().half_open, 300);
    assert!(events(&mut ep).is_empty(), "nothing to accept");
    let cfg_timeout = ep.config().half_open_timeout_ms;
    let ev = idle(&mut ep, &mut now, cfg_timeout + 100);
    assert!(ev.is_empty(), "{ev:?}");
    assert!(ep.is_empty());
    assert_eq!(ep.stats().unconfirmed, 300);
    assert_eq!(ep.stats().half_open, 0);
    // No linger entry: a real peer at one of those addresses gets in at once.
    ep.handle_datagram(now, addr(1, 1001), &mut push(1, 0, 0, b"real"))
        .unwrap();
    assert_eq!(ep.stats().half_open, 1);
    ep.handle_datagram(
        now,
        addr(1, 1001),
        &mut seg(1, Command::WindowTell, 0, 0, &[]),
    )
    .unwrap();
    assert_eq!(ep.len(), 1);
    let id = ep.accept().expect("confirmed sessions are accepted");
    let mut buf = [0u8; 16];
    assert_eq!(
        ep.recv(id, &mut buf),
        Ok(4),
        "the first flight's data is kept"
    );
    assert_eq!(&buf[..4], b"real");
}

#[test]
fn a_full_half_open_table_evicts_its_oldest_entries() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open: 100,
        max_half_open_per_host: 10,
        backlog: 1_000,
        // Every entry is old enough to go (the minimum age has its own test).
        half_open_min_age_ms: 0,
        ..server_cfg()
    })
    .unwrap();
    let now = Millis(0);
    // Thousands of source ports of one host: it keeps its ten newest.
    for port in 1..=2_000u16 {
        ep.handle_datagram(now, addr(1, port), &mut push(7, 0, 0, b"x"))
            .unwrap();
    }
    assert_eq!(ep.stats().half_open, 10);
    assert_eq!(ep.stats().half_open_evicted, 1_990);
    // Many hosts: the total cap holds, the oldest go first.
    for ip in 2..=200u8 {
        for port in 1..=5u16 {
            ep.handle_datagram(now, addr(ip, port), &mut push(7, 0, 0, b"x"))
                .unwrap();
        }
    }
    let st = ep.stats();
    assert_eq!(st.half_open, 100);
    assert_eq!(st.half_open_evicted, 1_990 + 10 + 199 * 5 - 100);
    // The newest entry of all is confirmable: its peer gets in.
    ep.handle_datagram(
        now,
        addr(200, 5),
        &mut seg(7, Command::WindowTell, 0, 0, &[]),
    )
    .unwrap();
    assert_eq!(ep.len(), 1);
    // The oldest are gone: their answer finds no entry (and is no first flight).
    let r = ep.handle_datagram(now, addr(1, 1), &mut seg(7, Command::WindowTell, 0, 0, &[]));
    assert!(matches!(
        r,
        Err(EndpointError::Rejected(DropReason::NotFirstFlight(_)))
    ));
}

#[test]
fn confirmed_sessions_no_longer_count_as_half_open() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open_per_host: 2,
        ..server_cfg()
    })
    .unwrap();
    let now = Millis(0);
    for conv in 0..6u32 {
        let from = addr(3, 100 + conv as u16);
        ep.handle_datagram(now, from, &mut push(conv, 0, 0, b"a"))
            .unwrap();
        // The peer's answer to the probe (a WINS) confirms it.
        ep.handle_datagram(now, from, &mut seg(conv, Command::WindowTell, 0, 0, &[]))
            .unwrap();
        drain(&mut ep, now);
    }
    assert_eq!(ep.len(), 6);
    assert_eq!(ep.stats().half_open, 0);
}

#[test]
fn unaccepted_sessions_close_after_the_accept_timeout() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        accept_timeout_ms: Some(2_000),
        ..server_cfg()
    })
    .unwrap();
    let mut now = Millis(0);
    let from = addr(1, 1);
    ep.handle_datagram(now, from, &mut push(5, 0, 0, b"a"))
        .unwrap();
    ep.handle_datagram(now, from, &mut seg(5, Command::WindowTell, 0, 0, &[]))
        .unwrap();
    // The peer keeps talking (it is confirmed), but the application never accepts.
    let mut ev = Vec::new();
    for sn in 1..30u32 {
        now += 100;
        let _ = ep.handle_datagram(now, from, &mut push(5, sn, 0, b"b"));
        ep.handle_timeout(now);
        drain(&mut ep, now);
        ev.extend(events(&mut ep));
    }
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Closed(_, CloseReason::NotAccepted))),
        "{ev:?}"
    );
    assert_eq!(ep.stats().not_accepted, 1);
    assert!(ep.accept().is_none());
}

/// A scripted network for the flood: the server and our client exchange datagrams with a
/// 2 ms delay each way; spoofed sources send first flights and never answer.
struct Flood {
    server: Endpoint<SocketAddr>,
    client: Endpoint<SocketAddr>,
    now: Millis,
    wire: VecDeque<(Millis, SocketAddr, SocketAddr, Vec<u8>)>,
}

const SERVER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4000);

impl Flood {
    fn step(&mut self, client_addr: SocketAddr) {
        let now = self.now;
        let mut buf = [0u8; 1500];
        while let Some((to, n)) = self.client.poll_transmit(now, &mut buf) {
            self.wire
                .push_back((now + 2, client_addr, to, buf[..n].to_vec()));
        }
        while let Some((to, n)) = self.server.poll_transmit(now, &mut buf) {
            // Replies to spoofed sources go nowhere.
            if to == client_addr {
                self.wire
                    .push_back((now + 2, SERVER_ADDR, to, buf[..n].to_vec()));
            }
        }
        while self.wire.front().is_some_and(|(t, ..)| now.reached(*t)) {
            let (_, from, to, mut d) = self.wire.pop_front().unwrap();
            if to == SERVER_ADDR {
                let _ = self.server.handle_datagram(now, from, &mut d);
            } else {
                let _ = self.client.handle_datagram(now, from, &mut d);
            }
        }
        if self.server.poll_timeout().is_some_and(|t| now.reached(t)) {
            self.server.handle_timeout(now);
        }
        if self.client.poll_timeout().is_some_and(|t| now.reached(t)) {
            self.client.handle_timeout(now);
        }
    }
}

/// Spoofed first flights keep the half-open table full while a real client connects and
/// sends 1 MiB; it finishes in under a second of (virtual) time, whether the application
/// accepts at once or only every 200 ms.
#[test]
fn a_real_client_gets_in_and_transfers_under_a_first_flight_flood() {
    let v6 = |i: u64| {
        SocketAddr::new(
            IpAddr::V6(std::net::Ipv6Addr::from(
                (0x2001_0db8_0001_0002u128 << 64) | u128::from(i * 7919 + 1),
            )),
            (i % 60_000) as u16 + 1024,
        )
    };
    // Each flood with the half-open entries it holds at once: the whole table, or one
    // host's share (a /64 is one host).
    type Spoofer = Box<dyn Fn(u64) -> SocketAddr>;
    let floods: [(&str, usize, Spoofer); 3] = [
        (
            "16 IPv4 hosts x 64 ports",
            1024,
            Box::new(|i: u64| addr((i % 16) as u8 + 100, ((i / 16) % 64) as u16 + 2000)),
        ),
        (
            "4,096 IPv4 hosts (the oldest of all evicted)",
            1024,
            Box::new(|i: u64| {
                let h = (i % 4096) as u32;
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A10_0000 | h)), 3000)
            }),
        ),
        (
            "2,000 addresses of one IPv6 /64",
            64,
            Box::new(move |i| v6(i % 2_000)),
        ),
    ];
    for (name, fill, spoofed) in &floods {
        for accept_every in [1u32, 200] {
            let mut rng = Rng(0x5EED ^ u64::from(accept_every));
            let mut f = Flood {
                server: Endpoint::new(server_cfg()).unwrap(),
                client: Endpoint::new(EndpointConfig::new(Config::fast3())).unwrap(),
                now: Millis(1),
                wire: VecDeque::new(),
            };
            let client_addr = addr(1, 5555);
            let mut i = 0u64;
            // One second of flood first, so the table is full when the client comes.
            for _ in 0..1_000 {
                for _ in 0..3 {
                    let conv = rng.next_u64() as u32;
                    let _ = f.server.handle_datagram(
                        f.now,
                        spoofed(i),
                        &mut push(conv, 0, 0, &[0x42; 100]),
                    );
                    i += 1;
                }
                f.step(client_addr);
                f.now += 1;
            }
            assert_eq!(
                f.server.stats().half_open,
                *fill as u64,
                "{name}: the flood holds its share"
            );
            let start = f.now;
            let c = f.client.connect(f.now, SERVER_ADDR, 0xC11E).unwrap();
            let total = 1 << 20;
            let mut sent = 0usize;
            let mut got = 0usize;
            let mut session = None;
            let mut buf = vec![0u8; 1 << 16];
            let mut ms = 0u32;
            while got < total && ms < 3_000 {
                for _ in 0..3 {
                    let conv = rng.next_u64() as u32;
                    let _ = f.server.handle_datagram(
                        f.now,
                        spoofed(i),
                        &mut push(conv, 0, 0, &[0x42; 100]),
                    );
                    i += 1;
                }
                while sent < total {
                    let end = (sent + 16_384).min(total);
                    match f.client.send(c, &payload(sent, end)) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                if ms.is_multiple_of(accept_every) {
                    while let Some(id) = f.server.accept() {
                        assert_eq!(f.server.remote(id), Some(client_addr), "{name}");
                        session = Some(id);
                    }
                }
                if let Some(id) = session {
                    while let Ok(n) = f.server.recv(id, &mut buf) {
                        assert_eq!(&buf[..n], &payload(got, got + n)[..], "{name}");
                        got += n;
                    }
                }
                f.step(client_addr);
                f.now += 1;
                ms += 1;
            }
            let took = f.now.since(start);
            let st = f.server.stats();
            eprintln!(
                "{name}, accepting every {accept_every} ms: 1 MiB in {took} ms; \
                 evicted {} unconfirmed {} half_open {}",
                st.half_open_evicted, st.unconfirmed, st.half_open
            );
            assert_eq!(got, total, "{name}: transfer incomplete after {took} ms");
            assert!(took < 1_000, "{name}: {took} ms");
            assert_eq!(f.server.len(), 1, "{name}: no spoofed session");
            assert!(
                st.half_open_evicted > 0,
                "{name}: the flood did fill the table"
            );
        }
    }
}

fn payload(from: usize, to: usize) -> Vec<u8> {
    (from..to).map(|i| (i % 251) as u8).collect()
}

/// Replies to an address that never confirmed are at most three times what it sent,
/// counting every probe and its repeats: a first flight of one empty PUSH, one that
/// advertises window 0, and a real client whose replies are all lost (it retransmits).
#[test]
fn replies_to_unconfirmed_addresses_stay_within_three_times_what_they_sent() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(server_cfg()).unwrap();
    let mut inb: std::collections::BTreeMap<SocketAddr, usize> = Default::default();
    let mut outb: std::collections::BTreeMap<SocketAddr, usize> = Default::default();
    let mut now = Millis(0);
    let mut zero_wnd = push(2, 0, 0, b"z");
    zero_wnd[6] = 0;
    zero_wnd[7] = 0;
    for (a, mut d) in [
        (addr(1, 1), push(1, 0, 0, &[])),
        (addr(2, 2), zero_wnd),
        (addr(3, 3), push(3, 0, 0, b"x")),
    ] {
        *inb.entry(a).or_default() += d.len();
        ep.handle_datagram(now, a, &mut d).unwrap();
    }
    // A real client whose every reply is lost: it retransmits its first flight.
    let mut client: Endpoint<SocketAddr> =
        Endpoint::new(EndpointConfig::new(Config::fast3())).unwrap();
    let lost = addr(4, 4);
    let c = client.connect(now, SERVER_ADDR, 4).unwrap();
    client.send(c, b"hello").unwrap();
    let mut buf = [0u8; 1500];
    for _ in 0..10_000 {
        while let Some((_, n)) = client.poll_transmit(now, &mut buf) {
            *inb.entry(lost).or_default() += n;
            let _ = ep.handle_datagram(now, lost, &mut buf[..n]);
        }
        ep.handle_timeout(now);
        while let Some((to, n)) = ep.poll_transmit(now, &mut buf) {
            *outb.entry(to).or_default() += n;
        }
        if client.poll_timeout().is_some_and(|t| now.reached(t)) {
            client.handle_timeout(now);
        }
        now += 1;
    }
    assert!(ep.is_empty());
    for (a, &i) in &inb {
        let o = outb.get(a).copied().unwrap_or(0);
        eprintln!("{a}: in {i} B, out {o} B, ratio {:.2}", o as f64 / i as f64);
        assert!(o > 0, "{a}: probed at least once");
        assert!(o <= 3 * i, "{a}: {o} B out for {i} B in");
    }
    assert!(ep.stats().amplification_limited > 0);
}

#[test]
fn confirmed_sessions_are_capped_per_host_and_hosts_are_prefixes() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_sessions_per_host: 2,
        host_prefix_v4: 24,
        ..server_cfg()
    })
    .unwrap();
    let now = Millis(0);
    // Three addresses of one /24: two sessions; the third peer's first flight is refused.
    for ip in 1..=2u8 {
        let from = addr(ip, 9);
        ep.handle_datagram(now, from, &mut push(7, 0, 0, b"a"))
            .unwrap();
        ep.handle_datagram(now, from, &mut seg(7, Command::WindowTell, 0, 0, &[]))
            .unwrap();
        drain(&mut ep, now);
    }
    assert_eq!(
        ep.handle_datagram(now, addr(3, 9), &mut push(7, 0, 0, b"a")),
        Err(EndpointError::Rejected(DropReason::Refused))
    );
    assert_eq!(ep.stats().refused, 1);
    // The endpoint's own counters say the same without the walk over sessions, and leave
    // out what the sessions count themselves.
    let (own, all) = (ep.own_stats(), ep.stats());
    assert_eq!(
        (own.refused, own.curr_estab, own.in_pkts),
        (1, 2, all.in_pkts)
    );
    assert!(all.in_segs > 0, "{all:?}");
    assert_eq!(own.in_segs, 0, "{own:?}");
    assert_eq!(ep.len(), 2);
    // A fourth /24 is another host.
    let other = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)), 9);
    ep.handle_datagram(now, other, &mut push(7, 0, 0, b"a"))
        .unwrap();
    ep.handle_datagram(now, other, &mut seg(7, Command::WindowTell, 0, 0, &[]))
        .unwrap();
    assert_eq!(ep.len(), 3);
    // Closing one frees its host's place.
    let id = ep.accept().unwrap();
    ep.close(id).unwrap();
    drain(&mut ep, now);
    let from = addr(4, 9);
    ep.handle_datagram(now, from, &mut push(8, 0, 0, b"a"))
        .unwrap();
    ep.handle_datagram(now, from, &mut seg(8, Command::WindowTell, 0, 0, &[]))
        .unwrap();
    assert_eq!(ep.len(), 3);
}

#[test]
fn hosts_are_counted_per_prefix() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    let v6a = a("[2001:db8:1:2:aaaa::1]:5").host_prefix(32, 64);
    let v6b = a("[2001:db8:1:2:ffff::9]:6").host_prefix(32, 64);
    let v6c = a("[2001:db8:1:3::1]:5").host_prefix(32, 64);
    assert_eq!(v6a, v6b, "one /64");
    assert_ne!(v6a, v6c);
    assert_eq!(
        a("10.1.2.3:4").host_prefix(24, 64),
        a("10.1.2.200:9").host_prefix(24, 64)
    );
    assert_ne!(
        a("10.1.2.3:4").host_prefix(32, 64),
        a("10.1.2.4:4").host_prefix(32, 64)
    );
    // An IPv4 peer on a dual-stack socket counts as its IPv4 address.
    assert_eq!(
        a("[::ffff:10.1.2.3]:4").host_prefix(32, 64),
        a("10.1.2.3:1").host_prefix(32, 64)
    );
    assert_eq!(
        a("[2001:db8::1]:1").host_prefix(32, 0),
        a("[fe80::1]:1").host_prefix(32, 0)
    );
}
