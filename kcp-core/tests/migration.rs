//! Session migration (`EndpointConfig::migration`): a client whose source address changes
//! keeps its session when its datagrams authenticate and are fresh; a captured datagram
//! replayed from a third address moves nothing; while the new address has not answered, the
//! server sends there at most three times what it received from there; off by default.
//!
//! The crypto here is a toy keyed tag (the test's attacker only replays or flips bytes of
//! what it captured); the real ciphers are exercised by the adapters' tests.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use kcp_core::endpoint::{
    DropReason, Endpoint, EndpointConfig, EndpointError, Migration, SessionId,
};
use kcp_core::{Codec, CodecError, Config, Layer, Millis};

type Addr = u8;
const SERVER: Addr = 0;
const CLIENT: Addr = 1;
const REBOUND: Addr = 2;
const THIRD: Addr = 3;
const KEY: u32 = 0x5EC2_E7A1;
/// One way, in ms: with windows of 32 a transfer of 600 KB each way takes about half a second.
const DELAY: u32 = 20;

/// A toy authenticating layer: `nonce (4) | tag (4) | packet`, the tag a keyed hash of the
/// nonce and the packet. Every sealed packet has a new nonce. With `window`, a session's
/// instance also drops every nonce not above the highest it accepted (a replay window for
/// an in-order link).
struct Tag {
    next: u32,
    window: bool,
    highest: Option<u32>,
}

fn tag(nonce: u32, data: &[u8]) -> u32 {
    let mut h = (KEY ^ nonce).wrapping_mul(0x9E37_79B9);
    for &b in data {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        h ^= h >> 15;
    }
    h
}

impl Codec for Tag {
    fn header_len(&self) -> usize {
        8
    }
    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        self.next = self.next.wrapping_add(1);
        let t = tag(self.next, &buf[8..len]);
        buf[..4].copy_from_slice(&self.next.to_le_bytes());
        buf[4..8].copy_from_slice(&t.to_le_bytes());
        Ok(len)
    }
    fn open(&mut self, buf: &mut [u8], _now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        if buf.len() < 8 {
            return Err(CodecError::Truncated);
        }
        let nonce = u32::from_le_bytes(buf[..4].try_into().unwrap());
        let t = u32::from_le_bytes(buf[4..8].try_into().unwrap());
        if tag(nonce, &buf[8..]) != t {
            return Err(CodecError::Integrity);
        }
        Ok(Some(8..buf.len()))
    }
    fn accept_demuxed(
        &mut self,
        packet: &[u8],
        _inner: Range<usize>,
        _now: Millis,
    ) -> Result<(), CodecError> {
        let nonce = u32::from_le_bytes(packet[..4].try_into().unwrap());
        if self.window {
            if self.highest.is_some_and(|h| nonce <= h) {
                return Err(CodecError::Replay);
            }
            self.highest = Some(nonce);
        }
        Ok(())
    }
}

fn cfg(accept: bool, migration: Migration, layers: bool) -> EndpointConfig {
    let mut seed = if accept { 1u32 << 24 } else { 2u32 << 24 };
    EndpointConfig {
        accept,
        migration,
        layers: if layers {
            Box::new(move || {
                seed = seed.wrapping_add(1 << 16);
                vec![Box::new(Tag {
                    next: seed,
                    window: migration == Migration::ReplayProtected,
                    highest: None,
                }) as Layer]
            })
        } else {
            Box::new(Vec::new)
        },
        demux_layers: usize::from(layers),
        idle_timeout_ms: Some(60_000),
        keepalive_ms: Some(500),
        ..EndpointConfig::new(Config::fast3().with_windows(32, 32))
    }
}

/// A server and one client behind a NAT whose public address is `nat`: datagrams to any
/// other address are lost (counted per address), datagrams from the client leave from `nat`.
struct Net {
    now: Millis,
    server: Endpoint<Addr>,
    client: Endpoint<Addr>,
    nat: Addr,
    wire: VecDeque<(Millis, Addr, Addr, Vec<u8>)>,
    /// Bytes the server sent to each address.
    sent_to: HashMap<Addr, usize>,
    /// Every datagram the client sent, as sent.
    client_log: Vec<Vec<u8>>,
    /// The client's datagrams are lost on the way (it is cut off).
    mute: bool,
    /// Take the client's next datagram off the wire (an on-path attacker) into `held`.
    hold: bool,
    held: Option<Vec<u8>>,
}

impl Net {
    fn new(migration: Migration, layers: bool) -> Net {
        Net {
            now: Millis(1_000),
            server: Endpoint::new(cfg(true, migration, layers)).unwrap(),
            client: Endpoint::new(cfg(false, migration, layers)).unwrap(),
            nat: CLIENT,
            wire: VecDeque::new(),
            sent_to: HashMap::new(),
            client_log: Vec::new(),
            mute: false,
            hold: false,
            held: None,
        }
    }

    fn transmit(&mut self) {
        let mut buf = [0u8; 1500];
        let now = self.now;
        while let Some((to, n)) = self.server.poll_transmit(now, &mut buf) {
            *self.sent_to.entry(to).or_default() += n;
            self.wire
                .push_back((now + DELAY, SERVER, to, buf[..n].to_vec()));
        }
        while let Some((_, n)) = self.client.poll_transmit(now, &mut buf) {
            let d = buf[..n].to_vec();
            self.client_log.push(d.clone());
            if self.hold && self.held.is_none() {
                self.hold = false;
                self.held = Some(d);
            } else if !self.mute {
                self.wire.push_back((now + DELAY, self.nat, SERVER, d));
            }
        }
    }

    /// `ms` milliseconds in 1 ms steps.
    fn run(&mut self, ms: u32) {
        for _ in 0..ms {
            self.transmit();
            let now = self.now;
            while self.wire.front().is_some_and(|(t, ..)| now.reached(*t)) {
                let (_, from, to, mut d) = self.wire.pop_front().unwrap();
                if to == SERVER {
                    let _ = self.server.handle_datagram(now, from, &mut d);
                } else if to == self.nat {
                    let _ = self.client.handle_datagram(now, SERVER, &mut d);
                }
            }
            for ep in [&mut self.server, &mut self.client] {
                if ep.poll_timeout().is_some_and(|t| now.reached(t)) {
                    ep.handle_timeout(now);
                }
            }
            self.transmit();
            self.now += 1;
        }
    }
}

fn pattern(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// Queues what fits of `data[*sent..]` on session `id`.
fn pump(ep: &mut Endpoint<Addr>, id: SessionId, data: &[u8], sent: &mut usize) {
    while *sent < data.len() && ep.is_writable(id) {
        let end = (*sent + 4096).min(data.len());
        match ep.send(id, &data[*sent..end]) {
            Ok(n) => *sent += n,
            Err(_) => break,
        }
    }
}

fn drain(ep: &mut Endpoint<Addr>, id: SessionId, out: &mut Vec<u8>) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = ep.recv(id, &mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
}

/// Both sides send `len` bytes to each other; `during(net, ms)` runs after each 10 ms.
/// Returns the server's session, after checking every byte both ways.
fn exchange(net: &mut Net, len: usize, mut during: impl FnMut(&mut Net, u32)) -> SessionId {
    let up = pattern(0x11, len);
    let down = pattern(0x77, len);
    let now = net.now;
    let c = net.client.connect(now, SERVER, 0xC0DE).unwrap();
    let (mut c_sent, mut s_sent) = (0, 0);
    let (mut c_got, mut s_got) = (Vec::new(), Vec::new());
    let mut s = None;
    let mut ms = 0;
    while ms < 20_000 && (c_got.len() < len || s_got.len() < len) {
        pump(&mut net.client, c, &up, &mut c_sent);
        if s.is_none() {
            s = net.server.accept();
        }
        if let Some(s) = s {
            pump(&mut net.server, s, &down, &mut s_sent);
            drain(&mut net.server, s, &mut s_got);
        }
        drain(&mut net.client, c, &mut c_got);
        net.run(10);
        ms += 10;
        during(net, ms);
    }
    assert!(
        s_got == up,
        "the server got every byte ({} of {len})",
        s_got.len()
    );
    assert!(
        c_got == down,
        "the client got every byte ({} of {len})",
        c_got.len()
    );
    s.unwrap()
}

#[test]
fn a_client_that_rebinds_mid_transfer_keeps_its_session() {
    let mut net = Net::new(Migration::Fresh, true);
    let s = exchange(&mut net, 600_000, |net, ms| {
        if ms == 200 {
            // The NAT gives the client a new public address; replies to the old one are lost.
            net.nat = REBOUND;
        }
    });
    let st = net.server.stats();
    assert_eq!(net.server.remote(s), Some(REBOUND));
    assert_eq!(st.migrations, 1, "{st:?}");
    assert_eq!(st.passive_opens, 1);
    assert!(!net.server.is_migrating(s), "the new address answered");
    assert!(net.sent_to.get(&REBOUND).copied().unwrap_or(0) > 200_000);
}

#[test]
fn a_captured_datagram_replayed_from_a_third_address_moves_nothing() {
    let mut net = Net::new(Migration::Fresh, true);
    let mut replies = Vec::new();
    let mut recent = 0;
    let s = exchange(&mut net, 600_000, |net, ms| {
        if ms == 270 {
            recent = net.client_log.len() - 1;
        }
        if ms == 300 {
            let server = &mut net.server;
            let s = server.sessions()[0];
            // Copies of datagrams the server took long ago, and of the latest one.
            for d in [70, 100, recent] {
                let mut copy = net.client_log[d].clone();
                replies.push(server.handle_datagram(net.now, THIRD, &mut copy));
            }
            // A copy with one byte changed fails the tag.
            let mut forged = net.client_log[50].clone();
            let last = forged.len() - 1;
            forged[last] ^= 1;
            replies.push(server.handle_datagram(net.now, THIRD, &mut forged));
            assert_eq!(server.remote(s), Some(CLIENT));
        }
    });
    let not_moved = Err(EndpointError::Rejected(DropReason::NotMigrated));
    // (The recent one was sent 30 ms before its copy, so it had arrived: a copy that gets
    // there first is the datagram's first delivery, and fresh.)
    assert_eq!(&replies[..3], &[not_moved, not_moved, not_moved]);
    assert_eq!(
        replies[3],
        Err(EndpointError::Rejected(DropReason::Codec(
            CodecError::Integrity
        )))
    );
    let st = net.server.stats();
    assert_eq!(net.server.remote(s), Some(CLIENT));
    assert_eq!((st.migrations, st.migrations_refused), (0, 3), "{st:?}");
    assert_eq!(
        net.sent_to.get(&THIRD),
        None,
        "nothing went to the third address"
    );
}

#[test]
fn until_the_new_address_answers_the_server_sends_there_at_most_three_times_what_it_got() {
    let mut net = Net::new(Migration::Fresh, true);
    let mut moved_at = None;
    let mut from_third = 0;
    let s = exchange(&mut net, 600_000, |net, ms| {
        if ms == 200 {
            // An on-path attacker takes the client's next datagram off the wire, and the
            // client is cut off for a while.
            net.hold = true;
            net.mute = true;
        }
        if moved_at.is_none() && net.held.is_some() {
            // The attacker sends it from its own address before the client is heard again:
            // it is fresh, so the session moves there...
            let mut d = net.held.take().unwrap();
            from_third = d.len();
            let s = net.server.sessions()[0];
            assert_eq!(net.server.handle_datagram(net.now, THIRD, &mut d), Ok(()));
            assert_eq!(net.server.remote(s), Some(THIRD));
            assert!(net.server.is_migrating(s));
            moved_at = Some((ms, net.stats_limited()));
        }
        if let Some((at, limited)) = moved_at {
            if ms == at + 400 {
                // ...and what went there in 400 ms stays within three times what came
                // from it.
                let to_third = net.sent_to.get(&THIRD).copied().unwrap_or(0);
                eprintln!(
                    "sent to the unconfirmed address: {to_third} bytes, received {from_third}"
                );
                assert!(to_third <= 3 * from_third, "{to_third} > 3 x {from_third}");
                assert!(net.stats_limited() > limited, "datagrams were held back");
                // The client is heard again from its own address: the session moves back.
                net.mute = false;
            }
        }
    });
    let st = net.server.stats();
    assert_eq!(net.server.remote(s), Some(CLIENT));
    assert!(!net.server.is_migrating(s));
    assert_eq!(st.migrations, 2, "to the third address and back: {st:?}");
}

impl Net {
    fn stats_limited(&self) -> u64 {
        self.server.stats().amplification_limited
    }
}

#[test]
fn off_by_default_a_rebound_client_is_a_stranger() {
    assert_eq!(
        EndpointConfig::new(Config::fast3()).migration,
        Migration::Off
    );
    let mut net = Net::new(Migration::Off, true);
    let now = net.now;
    let c = net.client.connect(now, SERVER, 0xC0DE).unwrap();
    net.client.send(c, &pattern(1, 20_000)).unwrap();
    net.run(200);
    let s = net.server.accept().unwrap();
    net.server.send(s, &pattern(3, 20_000)).unwrap();
    net.run(200);
    net.nat = REBOUND;
    net.client.send(c, &pattern(2, 20_000)).unwrap();
    net.run(300);
    let st = net.server.stats();
    assert_eq!(net.server.remote(s), Some(CLIENT));
    assert_eq!((st.migrations, st.migrations_refused), (0, 0));
    assert!(
        st.not_first_flight > 0,
        "its datagrams are refused as before: {st:?}"
    );
    assert_eq!(st.passive_opens, 1);
}

#[test]
fn without_an_authenticating_layer_nothing_moves() {
    let mut net = Net::new(Migration::Fresh, false);
    let now = net.now;
    let c = net.client.connect(now, SERVER, 0xC0DE).unwrap();
    net.client.send(c, &pattern(1, 20_000)).unwrap();
    net.run(200);
    let s = net.server.accept().unwrap();
    net.server.send(s, &pattern(3, 20_000)).unwrap();
    net.run(200);
    net.nat = REBOUND;
    net.client.send(c, &pattern(2, 20_000)).unwrap();
    net.run(300);
    let st = net.server.stats();
    assert_eq!(net.server.remote(s), Some(CLIENT));
    assert_eq!(st.migrations, 0);
    assert_eq!(st.passive_opens, 1);
    assert!(st.migrations_refused > 0, "{st:?}");
}

/// A short exchange, then silence: the client's NAT rebinds while nothing is sent, and the
/// client's next datagrams are its keepalive probes.
fn rebind_while_quiet(migration: Migration) -> (Net, SessionId) {
    let mut net = Net::new(migration, true);
    let now = net.now;
    let c = net.client.connect(now, SERVER, 0xC0DE).unwrap();
    net.client.send(c, &pattern(1, 5_000)).unwrap();
    net.run(200);
    let s = net.server.accept().unwrap();
    net.server.send(s, &pattern(2, 5_000)).unwrap();
    net.run(300);
    let mut got = Vec::new();
    drain(&mut net.client, c, &mut got);
    assert_eq!(got, pattern(2, 5_000));
    net.nat = REBOUND;
    net.run(2_000);
    (net, s)
}

#[test]
fn with_a_replay_window_a_quiet_clients_keepalive_moves_its_session() {
    let (mut net, s) = rebind_while_quiet(Migration::ReplayProtected);
    let st = net.server.stats();
    assert_eq!(net.server.remote(s), Some(REBOUND), "{st:?}");
    assert_eq!(st.migrations, 1);
    // The server's keepalive answers reached the client there, and data flows.
    let c = net.client.sessions()[0];
    net.server.send(s, &pattern(3, 20_000)).unwrap();
    net.run(300);
    let mut got = Vec::new();
    drain(&mut net.client, c, &mut got);
    assert_eq!(got, pattern(3, 20_000));
    assert!(!net.server.is_migrating(s));
}

#[test]
fn without_one_a_quiet_clients_keepalive_does_not_move_it() {
    // A copy of a window probe looks like a new one: nothing fresh, nothing moves (the
    // documented limit of `Migration::Fresh`).
    let (net, s) = rebind_while_quiet(Migration::Fresh);
    let st = net.server.stats();
    assert_eq!(net.server.remote(s), Some(CLIENT));
    assert_eq!(st.migrations, 0);
    assert!(st.migrations_refused > 0, "{st:?}");
}

#[test]
fn with_a_replay_window_a_copy_from_a_third_address_is_dropped_by_it() {
    let (mut net, s) = rebind_while_quiet(Migration::ReplayProtected);
    // Its last keepalive probes and answers, sent from the new address.
    for i in [net.client_log.len() - 1, net.client_log.len() - 4] {
        let mut copy = net.client_log[i].clone();
        let now = net.now;
        assert_eq!(
            net.server.handle_datagram(now, THIRD, &mut copy),
            Err(EndpointError::Rejected(DropReason::Session(
                kcp_core::SessionError::Codec(CodecError::Replay)
            )))
        );
    }
    let st = net.server.stats();
    assert_eq!(net.server.remote(s), Some(REBOUND));
    assert_eq!((st.migrations, st.migrations_refused), (1, 2), "{st:?}");
}
