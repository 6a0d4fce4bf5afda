//! Endpoint: many sessions on one socket, demultiplexed by (address, conv); accept backlog and
//! limits; idle timeout, dead link, shutdown; no phantom sessions; one timer structure.

use std::collections::VecDeque;
use std::ops::Range;

use kcp_core::endpoint::{
    CloseReason, DropReason, Endpoint, EndpointConfig, EndpointError, Event, SessionId,
};
use kcp_core::{Codec, CodecError, Config, Millis};
use proptest::prelude::*;

type Addr = u8;
const SERVER: Addr = 0;

/// A tiny network: endpoints by address, datagrams delivered after `delay` ms, optional loss
/// of everything going to `blackhole`.
struct Net {
    now: Millis,
    eps: Vec<(Addr, Endpoint<Addr>)>,
    wire: VecDeque<(Millis, Addr, Addr, Vec<u8>)>,
    delay: u32,
    blackhole: Option<Addr>,
}

impl Net {
    fn new(eps: Vec<(Addr, Endpoint<Addr>)>) -> Net {
        Net {
            now: Millis(u32::MAX - 2_000),
            eps,
            wire: VecDeque::new(),
            delay: 5,
            blackhole: None,
        }
    }
    fn ep(&mut self, a: Addr) -> &mut Endpoint<Addr> {
        &mut self.eps.iter_mut().find(|(x, _)| *x == a).unwrap().1
    }
    fn transmit(&mut self) {
        let mut buf = [0u8; 1500];
        let now = self.now;
        for (from, ep) in &mut self.eps {
            while let Some((to, n)) = ep.poll_transmit(now, &mut buf) {
                if self.blackhole != Some(to) {
                    self.wire
                        .push_back((now + self.delay, *from, to, buf[..n].to_vec()));
                }
            }
        }
    }
    /// Advances `ms` of time in 1 ms steps, delivering and running timers; returns events.
    fn run(&mut self, ms: u32) -> Vec<(Addr, Event)> {
        let mut events = Vec::new();
        for _ in 0..ms {
            self.transmit();
            let now = self.now;
            while self.wire.front().is_some_and(|(t, ..)| now.reached(*t)) {
                let (_, from, to, mut d) = self.wire.pop_front().unwrap();
                if let Some((_, ep)) = self.eps.iter_mut().find(|(a, _)| *a == to) {
                    let _ = ep.handle_datagram(now, from, &mut d);
                }
            }
            for (a, ep) in &mut self.eps {
                if ep.poll_timeout().is_some_and(|t| now.reached(t)) {
                    ep.handle_timeout(now);
                }
                let mut buf = [0u8; 1500];
                while let Some((to, n)) = ep.poll_transmit(now, &mut buf) {
                    if self.blackhole != Some(to) {
                        self.wire
                            .push_back((now + self.delay, *a, to, buf[..n].to_vec()));
                    }
                }
                while let Some(e) = ep.poll_event() {
                    events.push((*a, e));
                }
            }
            self.now += 1;
        }
        events
    }
}

fn server_cfg() -> EndpointConfig {
    EndpointConfig {
        accept: true,
        ..EndpointConfig::new(Config::fast3())
    }
}

fn client_cfg() -> EndpointConfig {
    EndpointConfig::new(Config::fast3())
}

fn read_all(ep: &mut Endpoint<Addr>, id: SessionId) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = ep.recv(id, &mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn accepts_a_peer_and_exchanges_data() {
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(server_cfg()).unwrap()),
        (1, Endpoint::new(client_cfg()).unwrap()),
    ]);
    let now = net.now;
    let c = net.ep(1).connect(now, SERVER, 77).unwrap();
    net.ep(1).send(c, &[5u8; 100_000]).unwrap();
    let events = net.run(20);
    assert!(events.contains(&(SERVER, Event::Incoming)));
    let s = net.ep(SERVER).accept().expect("accepted");
    assert!(events.contains(&(SERVER, Event::Readable(s))));
    assert_eq!(net.ep(SERVER).session(s).unwrap().kcp().conv(), 77);
    // The receive window (32 segments) fills unless the application reads: read as it comes.
    let mut got = Vec::new();
    for _ in 0..50 {
        got.extend(read_all(net.ep(SERVER), s));
        net.run(5);
    }
    assert_eq!(got.len(), 100_000);
    assert!(got.iter().all(|&b| b == 5));
    net.ep(SERVER).send(s, b"pong").unwrap();
    net.run(50);
    assert_eq!(read_all(net.ep(1), c), b"pong");
    let st = net.ep(SERVER).stats();
    assert_eq!(
        (st.passive_opens, st.curr_estab, st.bytes_received),
        (1, 1, 100_000)
    );
    assert!(net.ep(1).stats().out_pkts > 70);
}

#[test]
fn sessions_from_one_address_are_told_apart_by_conv() {
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(server_cfg()).unwrap()),
        (1, Endpoint::new(client_cfg()).unwrap()),
    ]);
    let now = net.now;
    let a = net.ep(1).connect(now, SERVER, 1).unwrap();
    let b = net.ep(1).connect(now, SERVER, 2).unwrap();
    assert_eq!(
        net.ep(1).connect(now, SERVER, 2),
        Err(EndpointError::Duplicate)
    );
    net.ep(1).send(a, b"first").unwrap();
    net.ep(1).send(b, b"second").unwrap();
    net.run(50);
    let s1 = net.ep(SERVER).accept().unwrap();
    let s2 = net.ep(SERVER).accept().unwrap();
    let mut got = [
        (
            net.ep(SERVER).session(s1).unwrap().kcp().conv(),
            read_all(net.ep(SERVER), s1),
        ),
        (
            net.ep(SERVER).session(s2).unwrap().kcp().conv(),
            read_all(net.ep(SERVER), s2),
        ),
    ];
    got.sort();
    assert_eq!(got, [(1, b"first".to_vec()), (2, b"second".to_vec())]);
}

#[test]
fn backlog_bounds_unaccepted_sessions() {
    let cfg = EndpointConfig {
        backlog: 2,
        ..server_cfg()
    };
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(cfg).unwrap()),
        (1, Endpoint::new(client_cfg()).unwrap()),
    ]);
    let now = net.now;
    let clients: Vec<SessionId> = (1..=3)
        .map(|conv| {
            let id = net.ep(1).connect(now, SERVER, conv).unwrap();
            net.ep(1).send(id, format!("hi {conv}").as_bytes()).unwrap();
            id
        })
        .collect();
    net.run(20);
    // Two sessions fill the backlog; the third peer's answer to its probe waits with its
    // half-open entry: no session, nothing refused.
    let st = net.ep(SERVER).stats();
    assert_eq!(net.ep(SERVER).len(), 2);
    assert_eq!(
        (st.half_open, st.half_open_deferred, st.refused),
        (1, 1, 0),
        "{st:?}"
    );
    // However long nobody accepts (the peer retransmits, answers new probes), it stays so,
    // and the peer is counted once.
    net.run(1_500);
    let st = net.ep(SERVER).stats();
    assert_eq!(net.ep(SERVER).len(), 2);
    assert_eq!(
        (st.half_open, st.refused, st.half_open_deferred),
        (1, 0, 1),
        "{st:?}"
    );
    // Accepting one makes room: the third session exists at once, queued behind the second.
    let a = net.ep(SERVER).accept().unwrap();
    assert_eq!(net.ep(SERVER).len(), 3);
    assert_eq!(net.ep(SERVER).stats().half_open, 0);
    let b = net.ep(SERVER).accept().unwrap();
    let c = net.ep(SERVER).accept().unwrap();
    assert!(net.ep(SERVER).accept().is_none());
    let mut got: Vec<(u32, Vec<u8>)> = [a, b, c]
        .into_iter()
        .map(|id| {
            let conv = net.ep(SERVER).session(id).unwrap().kcp().conv();
            (conv, read_all(net.ep(SERVER), id))
        })
        .collect();
    got.sort();
    let want: Vec<(u32, Vec<u8>)> = (1..=3)
        .map(|c| (c, format!("hi {c}").into_bytes()))
        .collect();
    assert_eq!(got, want);
    net.run(50);
    for id in clients {
        assert!(
            net.ep(1).is_flushed(id),
            "client session {id:?} still unacknowledged"
        );
    }
}

/// The backlog also makes room when a session nobody accepted times out: the answer that
/// waited gets its session then.
#[test]
fn an_answer_waiting_for_the_backlog_gets_in_when_an_unaccepted_session_times_out() {
    let cfg = EndpointConfig {
        backlog: 1,
        accept_timeout_ms: Some(300),
        ..server_cfg()
    };
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(cfg).unwrap()),
        (1, Endpoint::new(client_cfg()).unwrap()),
    ]);
    let now = net.now;
    for conv in 1..=2 {
        let id = net.ep(1).connect(now, SERVER, conv).unwrap();
        net.ep(1).send(id, format!("hi {conv}").as_bytes()).unwrap();
    }
    net.run(20);
    let st = net.ep(SERVER).stats();
    assert_eq!(
        (net.ep(SERVER).len(), st.half_open_deferred),
        (1, 1),
        "{st:?}"
    );
    let events = net.run(400);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, (SERVER, Event::Closed(_, CloseReason::NotAccepted)))),
        "{events:?}"
    );
    let id = net
        .ep(SERVER)
        .accept()
        .expect("the waiting answer's session");
    assert_eq!(net.ep(SERVER).session(id).unwrap().kcp().conv(), 2);
    assert_eq!(read_all(net.ep(SERVER), id), b"hi 2");
    assert_eq!(net.ep(SERVER).stats().refused, 0);
}

/// A burst of peers answers faster than the application accepts: the answers that find
/// the backlog full open their sessions as the application accepts, with nothing for the
/// peers to retransmit. (Refused, each would wait for a retransmission timeout and a new
/// probe, about 200 ms more.)
#[test]
fn answers_that_find_the_backlog_full_open_their_sessions_as_the_application_accepts() {
    let cfg = EndpointConfig {
        backlog: 4,
        ..server_cfg()
    };
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(cfg).unwrap()),
        (1, Endpoint::new(client_cfg()).unwrap()),
    ]);
    let now = net.now;
    let n = 40u32;
    let clients: Vec<SessionId> = (1..=n)
        .map(|conv| {
            let id = net.ep(1).connect(now, SERVER, conv).unwrap();
            // Requests of different lengths, one or two datagrams' worth.
            let len = 1 + (conv as usize * 97) % 2_000;
            net.ep(1).send(id, &vec![conv as u8; len]).unwrap();
            id
        })
        .collect();
    // The application accepts one session every 2 ms, reading what each brought.
    let mut got = Vec::new();
    let mut step = 0;
    while got.len() < n as usize {
        assert!(
            step < 200,
            "only {} sessions accepted after {step} steps",
            got.len()
        );
        net.run(2);
        step += 1;
        if let Some(id) = net.ep(SERVER).accept() {
            got.push(id);
        }
    }
    net.run(100);
    let st = net.ep(SERVER).stats();
    assert!(st.half_open_deferred > 0, "{st:?}");
    assert_eq!(
        (st.refused, st.half_open, st.passive_opens),
        (0, 0, u64::from(n)),
        "{st:?}"
    );
    for id in got {
        let conv = net.ep(SERVER).session(id).unwrap().kcp().conv();
        let len = 1 + (conv as usize * 97) % 2_000;
        assert_eq!(
            read_all(net.ep(SERVER), id),
            vec![conv as u8; len],
            "conv {conv}"
        );
    }
    for id in clients {
        assert!(net.ep(1).is_flushed(id));
        let st = net.ep(1).session(id).unwrap().kcp().stats();
        assert_eq!(st.retrans_segs, 0, "{st:?}");
    }
}

#[test]
fn idle_sessions_time_out_and_late_datagrams_make_no_phantom() {
    let cfg = EndpointConfig {
        idle_timeout_ms: Some(1_000),
        ..server_cfg()
    };
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(cfg).unwrap()),
        (
            1,
            Endpoint::new(EndpointConfig {
                idle_timeout_ms: None,
                ..client_cfg()
            })
            .unwrap(),
        ),
    ]);
    let now = net.now;
    let c = net.ep(1).connect(now, SERVER, 9).unwrap();
    net.ep(1).send(c, b"hello").unwrap();
    net.run(100);
    let s = net.ep(SERVER).accept().unwrap();
    let events = net.run(1_100);
    assert!(
        events.contains(&(SERVER, Event::Closed(s, CloseReason::IdleTimeout))),
        "{events:?}"
    );
    assert!(net.ep(SERVER).is_empty());
    // A late datagram of the closed conversation does not open a phantom session.
    net.ep(1).send(c, b"late").unwrap();
    net.run(100);
    assert!(net.ep(SERVER).is_empty());
    assert!(net.ep(SERVER).accept().is_none());
}

#[test]
fn dead_link_is_reported() {
    let cfg = EndpointConfig {
        idle_timeout_ms: None,
        ..client_cfg()
    };
    let mut net = Net::new(vec![(1, Endpoint::new(cfg).unwrap())]);
    let now = net.now;
    let c = net.ep(1).connect(now, SERVER, 3).unwrap();
    net.ep(1).send(c, b"into the void").unwrap();
    let events = net.run(40_000);
    assert!(events.contains(&(1, Event::Closed(c, CloseReason::DeadLink))));
    assert_eq!(net.ep(1).send(c, b"x"), Err(EndpointError::UnknownSession));
}

#[test]
fn shutdown_waits_for_acknowledgement_and_is_bounded() {
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(server_cfg()).unwrap()),
        (1, Endpoint::new(client_cfg()).unwrap()),
    ]);
    let now = net.now;
    let c = net.ep(1).connect(now, SERVER, 4).unwrap();
    net.ep(1).send(c, &[1u8; 50_000]).unwrap();
    net.ep(1).close_after_flush(now, c, 5_000).unwrap();
    let mut events = net.run(20);
    let s = net.ep(SERVER).accept().unwrap();
    let mut got = 0;
    for _ in 0..50 {
        got += read_all(net.ep(SERVER), s).len();
        events.extend(net.run(10));
    }
    assert_eq!(got, 50_000);
    assert!(
        events.contains(&(1, Event::Closed(c, CloseReason::Shutdown))),
        "{events:?}"
    );

    // With the peer unreachable, shutdown gives up at its deadline.
    let mut net = Net::new(vec![(1, Endpoint::new(client_cfg()).unwrap())]);
    let now = net.now;
    let c = net.ep(1).connect(now, SERVER, 5).unwrap();
    net.ep(1).send(c, b"unacknowledged").unwrap();
    net.ep(1).close_after_flush(now, c, 300).unwrap();
    let events = net.run(400);
    assert!(events.contains(&(1, Event::Closed(c, CloseReason::ShutdownTimeout))));
}

#[test]
fn idle_endpoint_needs_no_timer() {
    // Without an idle timeout or a keepalive, nothing is due while sessions are quiet.
    let cfg = EndpointConfig {
        idle_timeout_ms: None,
        keepalive_ms: None,
        ..server_cfg()
    };
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(cfg).unwrap()),
        (
            1,
            Endpoint::new(EndpointConfig {
                idle_timeout_ms: None,
                keepalive_ms: None,
                ..client_cfg()
            })
            .unwrap(),
        ),
    ]);
    let now = net.now;
    for conv in 0..50 {
        let c = net.ep(1).connect(now, SERVER, conv).unwrap();
        net.ep(1).send(c, b"x").unwrap();
    }
    net.run(300);
    assert_eq!(net.ep(SERVER).len(), 50);
    while net.ep(SERVER).accept().is_some() {}
    // Drained sessions trim their codec layers once, TRIM_AFTER_MS later; then nothing.
    net.run(kcp_core::endpoint::TRIM_AFTER_MS as u32 + 100);
    assert_eq!(net.ep(SERVER).len(), 50);
    assert_eq!(
        net.ep(SERVER).poll_timeout(),
        None,
        "idle sessions must not keep timers"
    );
    assert_eq!(net.ep(1).poll_timeout(), None);
}

/// Outer layer for demultiplexing tests: XOR with a byte, 1-byte header holding a check value.
struct Xor(u8);
impl Codec for Xor {
    fn header_len(&self) -> usize {
        1
    }
    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        buf[0] = 0xA5;
        buf[..len].iter_mut().for_each(|b| *b ^= self.0);
        Ok(len)
    }
    fn open(&mut self, buf: &mut [u8], _now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        buf.iter_mut().for_each(|b| *b ^= self.0);
        if buf.first() != Some(&0xA5) {
            return Err(CodecError::Integrity);
        }
        Ok(Some(1..buf.len()))
    }
}

#[test]
fn demultiplexes_after_the_endpoint_opens_outer_layers() {
    let mk = |accept| EndpointConfig {
        layers: Box::new(|| vec![Box::new(Xor(0x3C)) as kcp_core::Layer]),
        demux_layers: 1,
        accept,
        ..EndpointConfig::new(Config::fast3())
    };
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(mk(true)).unwrap()),
        (1, Endpoint::new(mk(false)).unwrap()),
    ]);
    let now = net.now;
    let c = net.ep(1).connect(now, SERVER, 0xABCD).unwrap();
    net.ep(1).send(c, b"secret").unwrap();
    net.run(50);
    let s = net.ep(SERVER).accept().unwrap();
    assert_eq!(net.ep(SERVER).session(s).unwrap().kcp().conv(), 0xABCD);
    assert_eq!(read_all(net.ep(SERVER), s), b"secret");
    let mut junk = [0u8; 40];
    let r = net.ep(SERVER).handle_datagram(now, 9, &mut junk);
    assert_eq!(
        r,
        Err(EndpointError::Rejected(DropReason::Codec(
            CodecError::Integrity
        )))
    );
    assert_eq!(net.ep(SERVER).stats().in_csum_errors, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn hostile_datagrams_open_bounded_sessions(
        datagrams in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..120)), 1..200)
    ) {
        let cfg = EndpointConfig { backlog: 8, max_sessions: 16, ..server_cfg() };
        let mut ep: Endpoint<u8> = Endpoint::new(cfg).unwrap();
        let mut now = Millis(0);
        let mut buf = [0u8; 1500];
        for (from, mut d) in datagrams {
            let _ = ep.handle_datagram(now, from, &mut d);
            ep.handle_timeout(now);
            while ep.poll_transmit(now, &mut buf).is_some() {}
            while ep.poll_event().is_some() {}
            prop_assert!(ep.len() <= 8);
            now += 3;
        }
    }
}

#[test]
fn a_graceful_close_still_sends_the_acks_it_owes() {
    let mut server: Endpoint<Addr> = Endpoint::new(server_cfg()).unwrap();
    let mut client: Endpoint<Addr> = Endpoint::new(client_cfg()).unwrap();
    let now = Millis(1_000);
    let c = client.connect(now, SERVER, 21).unwrap();
    client.send(c, b"last words").unwrap();
    let mut buf = [0u8; 1500];
    let mut to_server = Vec::new();
    while let Some((_, n)) = client.poll_transmit(now, &mut buf) {
        to_server.push(buf[..n].to_vec());
    }
    // The server takes the data, but its ACK waits for the server's next timer tick.
    let later = now + 3;
    for mut d in to_server {
        server.handle_datagram(later, 1, &mut d).unwrap();
    }
    // The server probes the new peer; the client's answer (at its next flush) confirms it.
    while let Some((_, n)) = server.poll_transmit(later, &mut buf) {
        client
            .handle_datagram(later, SERVER, &mut buf[..n])
            .unwrap();
    }
    let answer_at = client
        .poll_timeout()
        .expect("the client flushes its answer");
    client.handle_timeout(answer_at);
    let later = answer_at;
    while let Some((_, n)) = client.poll_transmit(later, &mut buf) {
        let _ = server.handle_datagram(later, 1, &mut buf[..n]);
    }
    let s = server.accept().expect("accepted");
    assert_eq!(read_all(&mut server, s), b"last words");
    // Nothing in flight: the graceful close finishes at once, but the ACK is owed.
    server.close_after_flush(later, s, 1_000).unwrap();
    let mut acked = false;
    while let Some((to, n)) = server.poll_transmit(later, &mut buf) {
        assert_eq!(to, 1);
        let _ = client.handle_datagram(later, SERVER, &mut buf[..n]);
        acked = true;
    }
    let events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
    assert!(
        events.contains(&Event::Closed(s, CloseReason::Shutdown)),
        "{events:?}"
    );
    assert!(
        acked,
        "the server sent what it owed before its session went"
    );
    assert!(client.is_flushed(c), "the client's data is acknowledged");
}

/// A server and a client with these idle timeouts and keepalives, a session between them
/// that exchanged one message and then stays quiet.
fn quiet_pair(
    server: (Option<u32>, Option<u32>),
    client: (Option<u32>, Option<u32>),
) -> (Net, SessionId, SessionId) {
    let mk = |base: EndpointConfig, (idle, ka): (Option<u32>, Option<u32>)| {
        Endpoint::new(EndpointConfig {
            idle_timeout_ms: idle,
            keepalive_ms: ka,
            ..base
        })
        .unwrap()
    };
    let mut net = Net::new(vec![
        (SERVER, mk(server_cfg(), server)),
        (1, mk(client_cfg(), client)),
    ]);
    let now = net.now;
    let c = net.ep(1).connect(now, SERVER, 21).unwrap();
    net.ep(1).send(c, b"hello").unwrap();
    net.run(100);
    let s = net.ep(SERVER).accept().unwrap();
    assert_eq!(read_all(net.ep(SERVER), s), b"hello");
    (net, c, s)
}

fn closed(events: &[(Addr, Event)]) -> Vec<(Addr, CloseReason)> {
    events
        .iter()
        .filter_map(|(a, e)| match e {
            Event::Closed(_, r) => Some((*a, *r)),
            _ => None,
        })
        .collect()
}

#[test]
fn keepalive_keeps_a_quiet_session_past_the_idle_timeout_from_either_side() {
    let (idle, ka) = (Some(2_000), Some(500));
    // Both sides time out after 2 s of silence; the keepalive is on one side at a time (the
    // other side only answers), then on both.
    for (server_ka, client_ka) in [(ka, None), (None, ka), (ka, ka)] {
        let (mut net, c, s) = quiet_pair((idle, server_ka), (idle, client_ka));
        let events = net.run(10_000);
        assert_eq!(closed(&events), [], "keepalive {server_ka:?}/{client_ka:?}");
        let probes = net.ep(SERVER).stats().keepalives + net.ep(1).stats().keepalives;
        // One probe per quiet half second, from the side with the keepalive (both sides:
        // at most one each).
        assert!((10..=40).contains(&probes), "{probes} probes");
        // The session still carries data both ways.
        net.ep(1).send(c, b"still here").unwrap();
        net.ep(SERVER).send(s, b"me too").unwrap();
        net.run(100);
        assert_eq!(read_all(net.ep(SERVER), s), b"still here");
        assert_eq!(read_all(net.ep(1), c), b"me too");
    }
}

#[test]
fn without_keepalive_a_quiet_session_ends_at_the_idle_timeout() {
    let (mut net, c, s) = quiet_pair((Some(2_000), None), (Some(2_000), None));
    let events = net.run(2_100);
    let mut ends = closed(&events);
    ends.sort_by_key(|e| e.0);
    assert_eq!(
        ends,
        [
            (SERVER, CloseReason::IdleTimeout),
            (1, CloseReason::IdleTimeout)
        ]
    );
    assert!(events.contains(&(SERVER, Event::Closed(s, CloseReason::IdleTimeout))));
    assert!(events.contains(&(1, Event::Closed(c, CloseReason::IdleTimeout))));
    assert_eq!(net.ep(SERVER).stats().keepalives, 0);
}

#[test]
fn keepalive_does_not_keep_a_vanished_peers_session() {
    let (mut net, _c, s) = quiet_pair((Some(2_000), Some(500)), (None, None));
    // The client vanishes: nothing answers the server's probes.
    net.eps.retain(|(a, _)| *a == SERVER);
    let events = net.run(2_100);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.1, Event::Closed(..)))
            .collect::<Vec<_>>(),
        [&(SERVER, Event::Closed(s, CloseReason::IdleTimeout))]
    );
    assert!(net.ep(SERVER).stats().keepalives >= 3);
    assert!(net.ep(SERVER).is_empty());
}

#[test]
fn session_indexes_are_dense_and_a_reused_slot_gets_a_new_id() {
    let mut ep: Endpoint<Addr> = Endpoint::new(client_cfg()).unwrap();
    let now = Millis(1_000);
    let ids: Vec<SessionId> = (0..3)
        .map(|k| ep.connect(now, SERVER, 10 + k).unwrap())
        .collect();
    assert_eq!(
        ids.iter().map(|id| id.index()).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    // Closing sends what it owes, then the slot is free.
    ep.close(ids[1]).unwrap();
    let mut buf = [0u8; 1500];
    while ep.poll_transmit(now, &mut buf).is_some() {}
    assert!(ep.session(ids[1]).is_none());
    let again = ep.connect(now, SERVER, 20).unwrap();
    assert_eq!(again.index(), 1);
    assert_ne!(again, ids[1]);
    assert!(ep.session(ids[1]).is_none() && ep.session(again).is_some());
}

#[test]
fn readable_reports_without_reading_and_rearms_the_event() {
    let mut net = Net::new(vec![
        (SERVER, Endpoint::new(server_cfg()).unwrap()),
        (1, Endpoint::new(client_cfg()).unwrap()),
    ]);
    let now = net.now;
    let c = net.ep(1).connect(now, SERVER, 78).unwrap();
    net.ep(1).send(c, b"first").unwrap();
    net.run(20);
    let s = net.ep(SERVER).accept().expect("accepted");
    assert_eq!(net.ep(SERVER).readable(s), Ok(true));
    assert_eq!(net.ep(SERVER).readable(s), Ok(true), "asking reads nothing");
    // A read of exactly what is there: `recv` never found the queue empty.
    let mut buf = [0u8; 5];
    assert_eq!(net.ep(SERVER).recv(s, &mut buf), Ok(5));
    assert_eq!(&buf, b"first");
    assert_eq!(net.ep(SERVER).readable(s), Ok(false));
    // Asking found nothing, so the next data raises the event again, even when it comes
    // before the server drains anything (a drain would recheck readiness by itself).
    while net.ep(SERVER).poll_event().is_some() {}
    net.ep(1).send(c, b"second").unwrap();
    let now = net.now;
    let mut out = Vec::new();
    let mut b = [0u8; 1500];
    while let Some((to, n)) = net.ep(1).poll_transmit(now, &mut b) {
        assert_eq!(to, SERVER);
        out.push(b[..n].to_vec());
    }
    assert!(!out.is_empty());
    for mut d in out {
        let _ = net.ep(SERVER).handle_datagram(now, 1, &mut d);
    }
    let mut events = Vec::new();
    while let Some(e) = net.ep(SERVER).poll_event() {
        events.push(e);
    }
    assert!(events.contains(&Event::Readable(s)), "{events:?}");
    assert_eq!(net.ep(SERVER).readable(s), Ok(true));
    assert_eq!(read_all(net.ep(SERVER), s), b"second");
    net.ep(SERVER).close(s).unwrap();
    net.run(5);
    assert_eq!(
        net.ep(SERVER).readable(s),
        Err(EndpointError::UnknownSession)
    );
}
