//! Admission at the server edge: which datagrams create state, half-open sessions, their
//! limits and reaping, and the WASK that makes a real peer confirm its session.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use kcp_core::endpoint::{
    first_flight, CloseReason, DropReason, Endpoint, EndpointConfig, EndpointError, Event,
    FirstFlightError, PeerAddr,
};
use kcp_core::wire::{Command, Datagram, SegmentRepr, HEADER_LEN};
use kcp_core::{Config, Millis};

fn addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip)), port)
}

fn server_cfg() -> EndpointConfig {
    EndpointConfig {
        accept: true,
        ..EndpointConfig::new(Config::fast3())
    }
}

fn push(conv: u32, sn: u32, una: u32, data: &[u8]) -> Vec<u8> {
    seg(conv, Command::Push, sn, una, data)
}

fn seg(conv: u32, cmd: Command, sn: u32, una: u32, data: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN + data.len()];
    SegmentRepr {
        conv,
        cmd,
        frg: 0,
        wnd: 32,
        ts: 5,
        sn,
        una,
        len: data.len() as u32,
    }
    .emit(&mut d)
    .unwrap();
    d[HEADER_LEN..].copy_from_slice(data);
    d
}

/// Drains everything the endpoint sends; returns (destination, datagram) pairs.
fn drain<A: PeerAddr>(ep: &mut Endpoint<A>, now: Millis) -> Vec<(A, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some((to, n)) = ep.poll_transmit(now, &mut buf) {
        out.push((to, buf[..n].to_vec()));
    }
    out
}

fn events<A: PeerAddr>(ep: &mut Endpoint<A>) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

/// Runs the endpoint's timers alone (no peer answers) for `ms`, 10 ms at a time.
fn idle<A: PeerAddr>(ep: &mut Endpoint<A>, now: &mut Millis, ms: u32) -> Vec<Event> {
    let mut ev = Vec::new();
    for _ in 0..ms / 10 {
        *now += 10;
        ep.handle_timeout(*now);
        drain(ep, *now);
        ev.extend(events(ep));
    }
    ev
}

/// A tiny xorshift so the flood is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_datagrams_never_create_a_session() {
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(server_cfg()).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let now = Millis(1);
    let mut d = [0u8; 1500];
    for i in 0..200_000u32 {
        let len = (rng.next() % 1400) as usize;
        for b in d[..len].iter_mut() {
            *b = rng.next() as u8;
        }
        let from = addr((i % 250) as u8, (rng.next() % 60_000) as u16 + 1);
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
