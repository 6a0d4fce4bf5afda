//! A new session's first messages: held whole until the peer confirms, the shared half-open
//! pool, how soon they are answered, and a burst of clients from one host.

use super::*;

/// A new session's first messages are answered without waiting for a retransmission: the
/// server holds the first flight and what follows it (here a second message sent in its own
/// datagram before the probe arrives) while it probes, and once the peer's answer confirms
/// the session the held messages are delivered and the replies leave at once, well before
/// the client's first retransmission timeout (200 ms).
#[test]
fn the_first_messages_of_a_new_session_are_answered_within_a_few_intervals() {
    let mut server: Endpoint<u8> = Endpoint::new(server_cfg()).unwrap();
    let mut client: Endpoint<u8> = Endpoint::new(EndpointConfig::new(Config::fast3())).unwrap();
    let start = Millis(1_000);
    let mut now = start;
    let c = client.connect(now, 0, 42).unwrap();
    client.send(c, b"ping").unwrap();
    for (_, mut d) in drain(&mut client, now) {
        let _ = server.handle_datagram(now, 1, &mut d);
    }
    client.send(c, b"more").unwrap();
    let mut answered_at = None;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    for _ in 0..400 {
        let mut moved = true;
        while moved {
            moved = false;
            for (to, mut d) in drain(&mut client, now) {
                assert_eq!(to, 0);
                let _ = server.handle_datagram(now, 1, &mut d);
                moved = true;
            }
            echo_ready(&mut server, &mut buf);
            for (to, mut d) in drain(&mut server, now) {
                assert_eq!(to, 1);
                let _ = client.handle_datagram(now, 0, &mut d);
                moved = true;
            }
        }
        while let Ok(n) = client.recv(c, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        if answered_at.is_none() && got.len() == 8 {
            answered_at = Some(now.0 - start.0);
        }
        now += 1;
        server.handle_timeout(now);
        client.handle_timeout(now);
    }
    let at = answered_at.expect("both echoes arrive");
    assert_eq!(got, b"pingmore");
    assert_eq!(
        client.session(c).unwrap().kcp().stats().retrans_segs,
        0,
        "no retransmission"
    );
    assert!(at < 60, "both echoes after {at} ms");
    assert_eq!(server.stats().half_open_held, 1);
}

/// The server side of an echo: accepts new sessions and sends back what every readable one
/// has received.
fn echo_ready<A: PeerAddr>(server: &mut Endpoint<A>, buf: &mut [u8]) {
    let mut ids: Vec<_> = events(server)
        .into_iter()
        .filter_map(|e| match e {
            Event::Readable(id) => Some(id),
            _ => None,
        })
        .collect();
    ids.extend(std::iter::from_fn(|| server.accept()));
    for id in ids {
        while let Ok(n) = server.recv(id, buf) {
            server.send(id, &buf[..n]).unwrap();
        }
    }
}

/// Plays a client endpoint against `server` until the client has `want` bytes echoed back;
/// returns the milliseconds it took and the client's retransmissions.
fn echo_through(
    server: &mut Endpoint<u8>,
    client: &mut Endpoint<u8>,
    c: kcp_core::endpoint::SessionId,
    start: Millis,
    want: usize,
) -> (u32, u64) {
    let mut now = start;
    let mut got = 0;
    let mut buf = [0u8; 8192];
    for _ in 0..2_000 {
        let mut moved = true;
        while moved {
            moved = false;
            for (_, mut d) in drain(client, now) {
                let _ = server.handle_datagram(now, 1, &mut d);
                moved = true;
            }
            echo_ready(server, &mut buf);
            for (_, mut d) in drain(server, now) {
                let _ = client.handle_datagram(now, 0, &mut d);
                moved = true;
            }
        }
        while let Ok(n) = client.recv(c, &mut buf) {
            got += n;
        }
        if got >= want {
            break;
        }
        now += 1;
        server.handle_timeout(now);
        client.handle_timeout(now);
    }
    assert_eq!(got, want, "every byte echoed");
    let retrans = client.session(c).unwrap().kcp().stats().retrans_segs;
    (now.0 - start.0, retrans)
}

#[test]
fn a_first_message_of_several_datagrams_is_held_whole_until_the_peer_confirms() {
    // A 4 KiB request is four datagrams at MTU 1400, all sent before the client hears the
    // server: none may wait for the client's first retransmission timeout (200 ms).
    let mut server: Endpoint<u8> = Endpoint::new(server_cfg()).unwrap();
    let mut client: Endpoint<u8> = Endpoint::new(EndpointConfig::new(Config::fast3())).unwrap();
    let start = Millis(1_000);
    let c = client.connect(start, 0, 42).unwrap();
    client.send(c, &[9u8; 4096]).unwrap();
    let first = drain(&mut client, start);
    assert!(first.len() >= 3, "{} datagrams", first.len());
    for (_, mut d) in first {
        let _ = server.handle_datagram(start, 1, &mut d);
    }
    assert_eq!(server.stats().half_open_dropped, 0);
    let (ms, retrans) = echo_through(&mut server, &mut client, c, start, 4096);
    assert_eq!(retrans, 0, "nothing sent twice");
    assert!(ms < 60, "echoed after {ms} ms");
}

#[test]
fn a_bulk_senders_first_window_is_held_whole() {
    // kcp-go's client sends up to 128 full segments (its initial view of the peer's window)
    // before it hears the server: the server keeps them all and delivers them on confirmation.
    let mut server: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        accept: true,
        ..EndpointConfig::new(Config::fast3().with_windows(1024, 1024))
    })
    .unwrap();
    let now = Millis(10);
    let from = addr(1, 5000);
    for sn in 0..128u32 {
        let mut d = push(77, sn, 0, &[sn as u8; 1376]);
        server.handle_datagram(now, from, &mut d).unwrap();
    }
    assert_eq!(server.stats().half_open_dropped, 0);
    assert_eq!(server.stats().half_open_held, 127);
    drain(&mut server, now);
    let mut wins = seg(77, Command::WindowTell, 0, 0, &[]);
    server.handle_datagram(now, from, &mut wins).unwrap();
    let id = server.accept().expect("confirmed");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = server.recv(id, &mut buf) {
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got.len(), 128 * 1376, "the whole first window, in order");
    assert!(got
        .chunks(1376)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
}

#[test]
fn the_half_open_pool_evicts_for_new_first_flights_and_caps_later_data() {
    let mut server: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        half_open_pool_bytes: 4_000,
        half_open_min_age_ms: 0,
        ..server_cfg()
    })
    .unwrap();
    let now = Millis(10);
    let big = [5u8; 1476];
    for ip in 1..=3u8 {
        let mut d = push(100 + u32::from(ip), 0, 0, &big);
        assert_eq!(d.len(), 1500);
        server.handle_datagram(now, addr(ip, 9), &mut d).unwrap();
        drain(&mut server, now);
    }
    // Three 1500-byte first flights do not fit a 4000-byte pool: the oldest made room.
    assert_eq!(server.stats().half_open, 2);
    assert_eq!(server.stats().half_open_evicted, 1);
    // A later datagram of a half-open peer is kept only while the pool has room (1000 bytes
    // here): it evicts no one.
    let mut d = push(102, 1, 0, &big);
    let r = server.handle_datagram(now, addr(2, 9), &mut d);
    assert!(
        matches!(r, Err(EndpointError::Rejected(DropReason::Unconfirmed))),
        "{r:?}"
    );
    assert_eq!(server.stats().half_open_dropped, 1);
    assert_eq!(server.stats().half_open_evicted, 1);
    let mut d = push(102, 1, 0, &big[..500]);
    server.handle_datagram(now, addr(2, 9), &mut d).unwrap();
    assert_eq!(server.stats().half_open_held, 1);
}

#[test]
fn young_half_open_entries_are_not_evicted_new_first_flights_wait() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open_per_host: 4,
        half_open_min_age_ms: 100,
        ..server_cfg()
    })
    .unwrap();
    let mut now = Millis(1_000);
    for port in 1..=4u16 {
        ep.handle_datagram(now, addr(1, port), &mut push(7, 0, 0, b"x"))
            .unwrap();
    }
    // The host's share is full of entries younger than the minimum age: refused.
    now += 10;
    let r = ep.handle_datagram(now, addr(1, 5), &mut push(7, 0, 0, b"x"));
    assert!(
        matches!(r, Err(EndpointError::Rejected(DropReason::Refused))),
        "{r:?}"
    );
    // Their peers can still answer (this one in 10 ms: the host's answers stay well within
    // the minimum age).
    ep.handle_datagram(now, addr(1, 1), &mut seg(7, Command::WindowTell, 0, 0, &[]))
        .unwrap();
    assert_eq!(ep.len(), 1);
    // The confirmed session earned its host one more entry (a share of 5): two first
    // flights fill it again.
    for port in 5..=6u16 {
        ep.handle_datagram(now, addr(1, port), &mut push(7, 0, 0, b"x"))
            .unwrap();
    }
    now += 89;
    let r = ep.handle_datagram(now, addr(1, 7), &mut push(7, 0, 0, b"x"));
    assert!(
        matches!(r, Err(EndpointError::Rejected(DropReason::Refused))),
        "{r:?}"
    );
    assert_eq!(ep.stats().half_open_evicted, 0);
    // Once old enough, the oldest goes for a new first flight.
    now += 1;
    ep.handle_datagram(now, addr(1, 7), &mut push(7, 0, 0, b"x"))
        .unwrap();
    assert_eq!(ep.stats().half_open_evicted, 1);
    assert_eq!(ep.stats().half_open, 5);
}

/// `n` clients behind one address (a NAT, a load test) connect, four a millisecond, each
/// sending one message; the server's datagrams reach them `delay` ms after it sends (a round
/// trip, a busy client). Returns when all have their echo (ms after the first connected) and
/// the server's counters; panics if that takes 10 s.
fn burst_from_one_host(n: u16, delay: u32) -> (u32, kcp_core::endpoint::EndpointStats) {
    let mut server: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        backlog: usize::from(n),
        ..server_cfg()
    })
    .unwrap();
    let mut clients: Vec<Option<(Endpoint<u8>, kcp_core::endpoint::SessionId)>> = Vec::new();
    clients.resize_with(usize::from(n), || None);
    let start = Millis(1_000);
    let mut now = start;
    let mut to_clients: VecDeque<(u32, usize, Vec<u8>)> = VecDeque::new();
    let mut got = vec![false; usize::from(n)];
    let mut buf = [0u8; 64];
    for step in 0..10_000u32 {
        for k in 0..4 {
            let i = (step * 4 + k) as usize;
            if i < usize::from(n) {
                let mut c: Endpoint<u8> =
                    Endpoint::new(EndpointConfig::new(Config::fast3())).unwrap();
                let id = c.connect(now, 0, 1_000 + i as u32).unwrap();
                c.send(id, b"hello").unwrap();
                clients[i] = Some((c, id));
            }
        }
        for (i, c) in clients.iter_mut().enumerate() {
            if let Some((c, _)) = c {
                for (_, mut d) in drain(c, now) {
                    let _ = server.handle_datagram(now, addr(1, 10_000 + i as u16), &mut d);
                }
            }
        }
        let ids: Vec<_> = std::iter::from_fn(|| server.accept()).collect();
        let readable: Vec<_> = events(&mut server)
            .into_iter()
            .filter_map(|e| match e {
                Event::Readable(id) => Some(id),
                _ => None,
            })
            .chain(ids)
            .collect();
        for id in readable {
            while let Ok(n) = server.recv(id, &mut buf) {
                server.send(id, &buf[..n]).unwrap();
            }
        }
        for (to, d) in drain(&mut server, now) {
            to_clients.push_back((now.0 + delay, usize::from(to.port() - 10_000), d));
        }
        while to_clients.front().is_some_and(|(at, _, _)| *at <= now.0) {
            let (_, i, mut d) = to_clients.pop_front().unwrap();
            if let Some((c, _)) = &mut clients[i] {
                let _ = c.handle_datagram(now, 0, &mut d);
            }
        }
        for (i, c) in clients.iter_mut().enumerate() {
            if let Some((c, id)) = c {
                if c.recv(*id, &mut buf).is_ok() {
                    got[i] = true;
                }
            }
        }
        if got.iter().all(|&g| g) {
            let st = server.stats();
            eprintln!(
                "{n} clients, answers after {delay} ms: all echoed after {} ms; refused {}, \
                 evicted {}, late answers {}",
                now.0 - start.0,
                st.refused,
                st.half_open_evicted,
                st.half_open_late_answers
            );
            return (now.0 - start.0, st);
        }
        now += 1;
        server.handle_timeout(now);
        for (c, _) in clients.iter_mut().flatten() {
            c.handle_timeout(now);
        }
    }
    let n_in = got.iter().filter(|&&g| g).count();
    panic!("{n_in} of {n} echoed in 10 s; {:?}", server.stats());
}

#[test]
fn a_burst_of_clients_from_one_host_all_get_in() {
    // 400 clients in 100 ms, six times the host's share of the half-open table, answering
    // 20 ms after the server sends. Every one must get in: an entry is kept until its peer
    // could answer. Evicting the oldest entry for every new first flight gave each entry
    // 16 ms here, less than its peer needs, so none could be confirmed until the clients'
    // retransmission timeouts had backed off far enough apart.
    let (at, _) = burst_from_one_host(400, 20);
    assert!(at < 1_000, "all 400 echoed after {at} ms");
}

#[test]
fn a_burst_of_slow_answering_clients_from_one_host_all_get_in() {
    // 2,000 clients in 500 ms whose answers take 300 ms, three times the minimum age (a
    // long path, a client busy starting all of them). The host's late answers teach the
    // server its answer time, its confirmed sessions earn it a larger share of the table,
    // and the first flights refused while young entries fill that share are probed all the
    // same (the host answers probes), so their answers open their sessions: all in after
    // 1.3 s. Without the probes 2.7 s (the refused clients wait out their retransmission
    // back-off); without the answer times, entries went at the fixed minimum age before
    // their answers came (7.2 s, 7,040 evictions); without the larger share, 1,132 of 2,000
    // got in within 10 s.
    let (at, st) = burst_from_one_host(2_000, 300);
    assert!(at < 2_000, "all 2,000 echoed after {at} ms");
    assert!(st.half_open_late_answers > 0, "{st:?}");
    assert!(st.half_open_refusal_probes > 0, "{st:?}");
    assert!(st.half_open_late_opens > 0, "{st:?}");
    assert!(
        st.half_open_evicted < 2_000,
        "entries evicted before their answers could come: {st:?}"
    );
}

#[test]
fn a_refused_first_flight_of_a_host_that_answers_gets_a_probe_whose_answer_opens_it() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open_per_host: 2,
        half_open_min_age_ms: 1_000,
        ..server_cfg()
    })
    .unwrap();
    let t0 = Millis(1_000);
    let wask_to = |out: &[(SocketAddr, Vec<u8>)], to: SocketAddr| {
        out.iter()
            .filter(|(a, d)| {
                *a == to
                    && SegmentRepr::parse(&kcp_core::wire::Segment::new_checked(&d[..]).unwrap())
                        .is_ok_and(|s| s.cmd == Command::WindowAsk && s.conv == 7)
            })
            .count()
    };
    // Host 2 has answered nothing: a refused first flight gets nothing back (a spoofed
    // flood learns nothing and is not reflected).
    assert_eq!(first_flights(&mut ep, t0, 2, 1..3), 2);
    drain(&mut ep, t0);
    assert_eq!(first_flights(&mut ep, t0 + 10, 2, 3..4), 0);
    assert!(drain(&mut ep, t0 + 10).is_empty());
    assert_eq!(ep.stats().half_open_refusal_probes, 0);
    // Host 1's peers answer: one confirmed session earns it a share of 3, which fills.
    assert_eq!(first_flights(&mut ep, t0, 1, 1..3), 2);
    answer(&mut ep, t0, addr(1, 1));
    assert_eq!(first_flights(&mut ep, t0, 1, 3..5), 2);
    drain(&mut ep, t0);
    // Its next first flight is refused (the entries are young) but probed.
    let t = t0 + 10;
    assert_eq!(first_flights(&mut ep, t, 1, 5..6), 0);
    let out = drain(&mut ep, t);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(wask_to(&out, addr(1, 5)), 1);
    assert!(
        out[0].1.len() <= HEADER_LEN + 1,
        "no larger than the first flight"
    );
    // Its retransmission within 200 ms gets no second probe; a later one does (the entries
    // are still too young to evict: the minimum age here is 1 s).
    assert_eq!(first_flights(&mut ep, t + 100, 1, 5..6), 0);
    assert!(drain(&mut ep, t + 100).is_empty());
    assert_eq!(first_flights(&mut ep, t + 200, 1, 5..6), 0);
    assert_eq!(wask_to(&drain(&mut ep, t + 200), addr(1, 5)), 1);
    let st = ep.stats();
    assert_eq!((st.refused, st.half_open_refusal_probes), (4, 2));
    // The answer opens the session; the first message comes with the peer's retransmission.
    let before = ep.len();
    answer(&mut ep, t + 250, addr(1, 5));
    assert_eq!(ep.len(), before + 1);
    let ids: Vec<_> = std::iter::from_fn(|| ep.accept()).collect();
    let id = ids
        .into_iter()
        .find(|&id| ep.remote(id) == Some(addr(1, 5)))
        .expect("the probed refusal's session");
    assert_eq!(ep.stats().half_open_late_opens, 1);
    ep.handle_datagram(t + 260, addr(1, 5), &mut push(7, 0, 0, b"x"))
        .unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(ep.recv(id, &mut buf), Ok(1));
    assert_eq!(&buf[..1], b"x");
    // An answer from an address of host 1 that was never probed opens nothing.
    let r = try_answer(&mut ep, t + 270, addr(1, 99));
    assert!(r.is_err(), "{r:?}");
    assert_eq!(ep.stats().half_open_late_opens, 1);
}

/// Confirms a half-open entry of `from` (its peer answers the probe).
fn answer(ep: &mut Endpoint<SocketAddr>, now: Millis, from: SocketAddr) {
    try_answer(ep, now, from).unwrap();
}

/// The peer at `from` answers a probe (a WINS of conversation 7), whether or not one was
/// sent or its entry still exists.
fn try_answer(
    ep: &mut Endpoint<SocketAddr>,
    now: Millis,
    from: SocketAddr,
) -> Result<(), kcp_core::endpoint::EndpointError> {
    ep.handle_datagram(now, from, &mut seg(7, Command::WindowTell, 0, 0, &[]))
}

/// First flights from `ip`, ports `ports`: how many opened an entry.
fn first_flights(
    ep: &mut Endpoint<SocketAddr>,
    now: Millis,
    ip: u8,
    ports: std::ops::Range<u16>,
) -> usize {
    ports
        .filter(|&p| {
            ep.handle_datagram(now, addr(ip, p), &mut push(7, 0, 0, b"x"))
                .is_ok()
        })
        .count()
}

#[test]
fn a_host_earns_half_open_room_only_by_answering() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open: 64,
        max_half_open_per_host: 4,
        backlog: 1_000,
        ..server_cfg()
    })
    .unwrap();
    let now = Millis(1_000);
    // A host that answers nothing keeps the fixed share however much it sends.
    assert_eq!(first_flights(&mut ep, now, 1, 1..41), 4);
    assert_eq!(ep.stats().refused, 36);
    // A host whose peers answered holds one more entry per session they opened...
    assert_eq!(first_flights(&mut ep, now, 2, 1..5), 4);
    for p in 1..5 {
        answer(&mut ep, now, addr(2, p));
    }
    assert_eq!(ep.len(), 4);
    assert_eq!(first_flights(&mut ep, now, 2, 5..45), 8);
    // ... up to half the table, whatever it earned.
    for p in 5..13 {
        answer(&mut ep, now, addr(2, p));
    }
    let mut port = 45;
    while ep.len() < 40 {
        assert_eq!(first_flights(&mut ep, now, 2, port..port + 1), 1);
        answer(&mut ep, now, addr(2, port));
        port += 1;
    }
    assert_eq!(first_flights(&mut ep, now, 2, port..port + 100), 32);
    assert_eq!(ep.stats().half_open, 4 + 32);
}

#[test]
fn late_answers_teach_a_host_how_long_its_entries_must_wait() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open_per_host: 2,
        half_open_min_age_ms: 100,
        ..server_cfg()
    })
    .unwrap();
    let t0 = Millis(1_000);
    assert_eq!(first_flights(&mut ep, t0, 1, 1..3), 2);
    // At the minimum age the oldest entry goes for a new first flight: nothing is known of
    // this host's answers yet.
    assert_eq!(first_flights(&mut ep, t0 + 100, 1, 3..4), 1);
    assert_eq!(ep.stats().half_open_evicted, 1);
    // Its answer comes 300 ms after its first flight: too late for the entry (no session),
    // counted, and learned.
    let r = try_answer(&mut ep, t0 + 300, addr(1, 1));
    assert!(r.is_err(), "{r:?}");
    assert_eq!(ep.len(), 0);
    assert_eq!(ep.stats().half_open_late_answers, 1);
    // Now this host's entries are kept until its answers could come (entry 2 is 310 ms old:
    // refused)...
    assert_eq!(first_flights(&mut ep, t0 + 310, 1, 4..5), 0);
    assert_eq!(ep.stats().half_open_evicted, 1);
    // ... and entry 2's answer at 400 ms still finds it.
    answer(&mut ep, t0 + 400, addr(1, 2));
    assert_eq!(ep.len(), 1);
    // Another host's entries, whose peers answered nothing, still go at the minimum age.
    assert_eq!(first_flights(&mut ep, t0 + 400, 2, 1..3), 2);
    assert_eq!(first_flights(&mut ep, t0 + 500, 2, 3..4), 1);
    assert_eq!(ep.stats().half_open_evicted, 2);
}

#[test]
fn a_host_that_answers_late_keeps_its_entries_at_most_half_the_timeout() {
    // Late answers (real, or forged where there is no key) can make a host's entries wait,
    // but never longer than half the entry timeout: its newer first flights still get in.
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open_per_host: 2,
        half_open_min_age_ms: 100,
        half_open_timeout_ms: 5_000,
        ..server_cfg()
    })
    .unwrap();
    let t0 = Millis(1_000);
    assert_eq!(first_flights(&mut ep, t0, 1, 1..3), 2);
    assert_eq!(first_flights(&mut ep, t0 + 100, 1, 3..4), 1);
    // Entry 1 was evicted; its answer comes 2 s after its first flight: the learned bound
    // (2 s plus four deviations) is above half the timeout.
    let _ = try_answer(&mut ep, t0 + 2_000, addr(1, 1));
    assert_eq!(ep.stats().half_open_late_answers, 1);
    // Entry 2 is kept until 2.5 s old, not longer.
    assert_eq!(first_flights(&mut ep, t0 + 2_499, 1, 4..5), 0);
    assert_eq!(first_flights(&mut ep, t0 + 2_500, 1, 4..5), 1);
    assert_eq!(ep.stats().half_open_evicted, 2);
}

#[test]
fn a_late_answer_that_finds_the_backlog_full_opens_its_session_at_the_next_accept() {
    // As `the_answer_to_a_probe_of_an_evicted_entry_opens_its_session`, but the backlog is
    // full when the answer comes: the session opens as soon as the application accepts,
    // instead of when the peer next retransmits and answers a new probe.
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open_per_host: 2,
        half_open_min_age_ms: 100,
        backlog: 1,
        ..server_cfg()
    })
    .unwrap();
    let t0 = Millis(1_000);
    // Another host's session fills the backlog of one.
    assert_eq!(first_flights(&mut ep, t0, 2, 10..11), 1);
    answer(&mut ep, t0, addr(2, 10));
    assert_eq!(ep.len(), 1);
    // Host 1's entry 1 is probed, then evicted for a newer first flight at the minimum age.
    assert_eq!(first_flights(&mut ep, t0, 1, 1..3), 2);
    assert_eq!(drain(&mut ep, t0).len(), 2);
    assert_eq!(first_flights(&mut ep, t0 + 100, 1, 3..4), 1);
    assert_eq!(ep.stats().half_open_evicted, 1);
    // Its answer finds the backlog full: remembered, not refused; no session yet.
    let r = try_answer(&mut ep, t0 + 300, addr(1, 1));
    assert!(r.is_ok(), "{r:?}");
    let st = ep.stats();
    assert_eq!(ep.len(), 1);
    assert_eq!(
        (st.half_open_deferred, st.refused, st.half_open_late_opens),
        (1, 0, 0),
        "{st:?}"
    );
    // A copy of the answer opens nothing more, now or later.
    let _ = try_answer(&mut ep, t0 + 305, addr(1, 1));
    // Accepting the first session makes room: the late answer's session opens at once.
    let first = ep.accept().unwrap();
    assert_eq!(ep.remote(first), Some(addr(2, 10)));
    assert_eq!(ep.len(), 2);
    let id = ep.accept().expect("the late answer's session");
    assert_eq!(ep.remote(id), Some(addr(1, 1)));
    assert!(ep.accept().is_none());
    assert_eq!(ep.stats().half_open_late_opens, 1);
    // Its first message comes with the peer's retransmission and is delivered once.
    ep.handle_datagram(t0 + 310, addr(1, 1), &mut push(7, 0, 0, b"x"))
        .unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(ep.recv(id, &mut buf), Ok(1));
    assert_eq!(&buf[..1], b"x");
    let _ = try_answer(&mut ep, t0 + 320, addr(1, 1));
    assert_eq!(ep.len(), 2);
}

#[test]
fn answers_waiting_for_a_backlog_that_never_drains_stay_bounded() {
    // The application never accepts; a host's peers keep coming and answering, each round's
    // entries evicted by the next round's first flights. What waits is bounded by the
    // half-open table and the remembered evicted entries, and the heap stops growing.
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open: 8,
        max_half_open_per_host: 8,
        half_open_min_age_ms: 100,
        backlog: 1,
        ..server_cfg()
    })
    .unwrap();
    let mut t = Millis(1_000);
    assert_eq!(first_flights(&mut ep, t, 2, 10..11), 1);
    answer(&mut ep, t, addr(2, 10));
    let mut heap_at = Vec::new();
    for round in 0..200u16 {
        t += 150;
        let ports = 100 + round * 8..100 + round * 8 + 8;
        assert_eq!(first_flights(&mut ep, t, 1, ports.clone()), 8);
        drain(&mut ep, t);
        for p in ports {
            answer(&mut ep, t + 1, addr(1, p));
        }
        ep.handle_timeout(t + 1);
        drain(&mut ep, t + 1);
        assert_eq!(ep.len(), 1);
        if round == 20 || round == 199 {
            heap_at.push(ep.heap_bytes().0);
        }
    }
    let st = ep.stats();
    assert_eq!((st.half_open_deferred, st.refused), (1_600, 0), "{st:?}");
    assert!(
        heap_at[1] <= heap_at[0] + 4_096,
        "heap grew from {} to {} bytes",
        heap_at[0],
        heap_at[1]
    );
    // Once the application accepts, the waiting answers get their sessions: the live
    // entries' and the remembered evicted ones' (at most 8 x max_half_open of those).
    let mut opened = 0;
    while let Some(id) = ep.accept() {
        opened += 1;
        let _ = ep.close(id);
    }
    eprintln!("heap {heap_at:?}, {opened} sessions opened");
    // The other host's session, the table's 8, at most 64 remembered.
    assert!((1 + 8..=1 + 8 + 64).contains(&opened), "{opened} sessions");
}

#[test]
fn the_answer_to_a_probe_of_an_evicted_entry_opens_its_session() {
    // A loaded client answers after its entry was evicted for newer first flights. The
    // answer proves what a timely one proves (the peer heard the probe sent to its
    // address), so the session opens then, instead of the client starting over.
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig {
        max_half_open_per_host: 2,
        half_open_min_age_ms: 100,
        ..server_cfg()
    })
    .unwrap();
    let t0 = Millis(1_000);
    assert_eq!(first_flights(&mut ep, t0, 1, 1..3), 2);
    let probes = drain(&mut ep, t0);
    assert_eq!(probes.len(), 2, "one probe per entry");
    // Entry 1 goes for a newer first flight at the minimum age (its probe went out); entry
    // 3's probe is not sent yet when entry 2 goes too.
    assert_eq!(first_flights(&mut ep, t0 + 100, 1, 3..4), 1);
    assert_eq!(first_flights(&mut ep, t0 + 100, 1, 4..5), 1);
    assert_eq!(ep.stats().half_open_evicted, 2);
    assert_eq!(first_flights(&mut ep, t0 + 200, 1, 5..6), 1);
    assert_eq!(ep.stats().half_open_evicted, 3, "entry 3 went unprobed");
    // Entry 1's answer, 300 ms after its first flight: the session opens.
    let r = try_answer(&mut ep, t0 + 300, addr(1, 1));
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(ep.len(), 1);
    let id = ep.accept().expect("the late answer's session");
    assert_eq!(ep.remote(id), Some(addr(1, 1)));
    let st = ep.stats();
    assert_eq!((st.half_open_late_answers, st.half_open_late_opens), (1, 1));
    // Its first message, which the evicted entry dropped, comes with the peer's
    // retransmission and is delivered once.
    ep.handle_datagram(t0 + 310, addr(1, 1), &mut push(7, 0, 0, b"x"))
        .unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(ep.recv(id, &mut buf), Ok(1));
    assert_eq!(&buf[..1], b"x");
    // A copy of the answer opens nothing more.
    let _ = try_answer(&mut ep, t0 + 320, addr(1, 1));
    assert_eq!(ep.len(), 1);
    // An "answer" for an entry whose probe never went out (entry 3) opens nothing: it is
    // counted as a late answer and dropped.
    let r = try_answer(&mut ep, t0 + 330, addr(1, 3));
    assert!(r.is_err(), "{r:?}");
    assert_eq!(ep.len(), 1);
    assert_eq!(ep.stats().half_open_late_opens, 1);
    // Nor does an answer for an address the endpoint never probed.
    let r = try_answer(&mut ep, t0 + 340, addr(1, 99));
    assert!(r.is_err(), "{r:?}");
    assert_eq!(ep.len(), 1);
}

/// An inner layer for the next test: a 4-byte header numbering each packet its sender seals;
/// the server's instances log the numbers of the packets they open.
struct Numbered {
    next: u32,
    opened: Option<std::sync::Arc<std::sync::Mutex<Vec<u32>>>>,
}

impl kcp_core::Codec for Numbered {
    fn header_len(&self) -> usize {
        4
    }
    fn seal(
        &mut self,
        buf: &mut [u8],
        len: usize,
        _now: Millis,
    ) -> Result<usize, kcp_core::CodecError> {
        buf[..4].copy_from_slice(&self.next.to_le_bytes());
        self.next += 1;
        Ok(len)
    }
    fn open(
        &mut self,
        buf: &mut [u8],
        _now: Millis,
    ) -> Result<Option<std::ops::Range<usize>>, kcp_core::CodecError> {
        let n: [u8; 4] = buf
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(kcp_core::CodecError::Truncated)?;
        if let Some(log) = &self.opened {
            log.lock().unwrap().push(u32::from_le_bytes(n));
        }
        Ok(Some(4..buf.len()))
    }
    fn route(&self, packet: &[u8]) -> Result<kcp_core::Route, kcp_core::CodecError> {
        if packet.len() < 4 {
            return Err(kcp_core::CodecError::Truncated);
        }
        Ok(kcp_core::Route::Inner(4..packet.len()))
    }
}

/// What a half-open entry keeps of the peer's datagrams before it answers, and what the new
/// session's inner layers see of them. Without inner layers it keeps new segments only (a
/// retransmission adds nothing); with an inner layer (FEC in practice) it keeps every
/// datagram whole, and the session's layer opens each of them at confirmation, in the order
/// they came, before the answer: as if the session had existed from the first datagram.
/// Either way the application gets each byte once, in order.
#[test]
fn a_half_open_entry_passes_every_datagram_through_the_sessions_inner_layers() {
    for layered in [false, true] {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let server_log = log.clone();
        let layers = move |log: Option<std::sync::Arc<std::sync::Mutex<Vec<u32>>>>| {
            move || -> Vec<kcp_core::Layer> {
                if layered {
                    vec![Box::new(Numbered {
                        next: 0,
                        opened: log.clone(),
                    })]
                } else {
                    Vec::new()
                }
            }
        };
        let mut server: Endpoint<u8> = Endpoint::new(EndpointConfig {
            layers: Box::new(layers(Some(server_log))),
            ..server_cfg()
        })
        .unwrap();
        let mut client: Endpoint<u8> = Endpoint::new(EndpointConfig {
            layers: Box::new(layers(None)),
            ..EndpointConfig::new(Config::fast3())
        })
        .unwrap();
        let mut now = Millis(1_000);
        let c = client.connect(now, 0, 42).unwrap();
        // The first flight, a second message, then (the server's probes lost) the client's
        // retransmission of both: four datagrams numbered 0 to 3 with the layer.
        client.send(c, b"first ").unwrap();
        let mut sent = drain(&mut client, now);
        client.send(c, b"second ").unwrap();
        sent.extend(drain(&mut client, now));
        for _ in 0..400 {
            now += 1;
            client.handle_timeout(now);
            sent.extend(drain(&mut client, now));
            if sent.len() >= 3 {
                break;
            }
        }
        assert_eq!(
            sent.len(),
            3,
            "layered {layered}: first, second, retransmission"
        );
        for (_, mut d) in sent {
            let _ = server.handle_datagram(now, 1, &mut d);
        }
        let st = server.stats();
        if layered {
            assert_eq!((st.half_open_held, st.half_open_dropped), (2, 0));
        } else {
            assert_eq!(
                (st.half_open_held, st.half_open_dropped),
                (1, 1),
                "the retransmission adds nothing"
            );
        }
        assert!(
            log.lock().unwrap().is_empty(),
            "nothing opened before the session"
        );
        // The probe reaches the client now; its answer confirms the session.
        client.send(c, b"third").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        for _ in 0..100 {
            for (_, mut d) in drain(&mut server, now) {
                let _ = client.handle_datagram(now, 0, &mut d);
            }
            for (_, mut d) in drain(&mut client, now) {
                let _ = server.handle_datagram(now, 1, &mut d);
            }
            while server.poll_event().is_some() {}
            while server.accept().is_some() {}
            for id in server.sessions() {
                while let Ok(n) = server.recv(id, &mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
            }
            now += 1;
            server.handle_timeout(now);
            client.handle_timeout(now);
        }
        let log = log.lock().unwrap().clone();
        if layered {
            // The three kept datagrams in the order they came, then the answer and on.
            assert!(log.len() >= 4, "{log:?}");
            assert_eq!(log[..4], [0, 1, 2, 3], "{log:?}");
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            "first second third",
            "layered {layered}: each byte once, in order"
        );
    }
}
