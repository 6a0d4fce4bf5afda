//! The crypto layers on a listener: kcp-core's `Endpoint` opens every datagram with one shared
//! instance (`demux_open`) and hands it to the session's own instance (`accept_demuxed`).
//! Several clients at once, replays captured on the wire, sender ids that look like FEC
//! headers, and FEC inside the replay-protected layer.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use common::TestRng;
use kcp_core::endpoint::{DropReason, Endpoint, EndpointConfig, EndpointError, Event, SessionId};
use kcp_core::{CodecError, Config, Layer, LayerCounters, Millis, SessionError};
use kcp_crypto::{
    AeadCrypt, AeadKey, AeadKind, BlockCrypt, CipherKind, PacketCrypt, PacketKey, Pass,
    ReplayAeadCrypt, ReplayKey,
};

type Addr = u8;
const SERVER: Addr = 0;
const CONV: u32 = 0x1234_5678;

fn pass() -> Pass {
    Pass::derive(b"listener tests")
}

/// A datagram on the wire.
#[derive(Clone, Debug)]
struct Datagram {
    from: Addr,
    to: Addr,
    bytes: Vec<u8>,
}

/// A tiny network: endpoints by address, every datagram delivered 5 ms later (except those
/// `drop_every`-th on the way to the server) and recorded in `log` for replaying.
struct Net {
    now: Millis,
    eps: Vec<(Addr, Endpoint<Addr>)>,
    wire: VecDeque<(Millis, Datagram)>,
    log: Vec<Datagram>,
    drop_every: Option<usize>,
    to_server: usize,
}

impl Net {
    fn new(eps: Vec<(Addr, Endpoint<Addr>)>) -> Net {
        Net {
            now: Millis(1_000),
            eps,
            wire: VecDeque::new(),
            log: Vec::new(),
            drop_every: None,
            to_server: 0,
        }
    }

    fn ep(&mut self, a: Addr) -> &mut Endpoint<Addr> {
        &mut self
            .eps
            .iter_mut()
            .find(|(x, _)| *x == a)
            .expect("endpoint exists")
            .1
    }

    fn drain_transmit(&mut self) {
        let mut buf = [0u8; 1500];
        let now = self.now;
        for (from, ep) in &mut self.eps {
            while let Some((to, n)) = ep.poll_transmit(now, &mut buf) {
                let d = Datagram {
                    from: *from,
                    to,
                    bytes: buf[..n].to_vec(),
                };
                self.log.push(d.clone());
                if to == SERVER {
                    self.to_server += 1;
                    if self
                        .drop_every
                        .is_some_and(|k| self.to_server.is_multiple_of(k))
                    {
                        continue;
                    }
                }
                self.wire.push_back((now + 5, d));
            }
        }
    }

    /// Advances `ms` milliseconds, 1 ms at a time; returns the events.
    fn run(&mut self, ms: u32) -> Vec<(Addr, Event)> {
        let mut events = Vec::new();
        for _ in 0..ms {
            self.drain_transmit();
            let now = self.now;
            while self.wire.front().is_some_and(|(t, _)| now.reached(*t)) {
                let Some((_, mut d)) = self.wire.pop_front() else {
                    break;
                };
                if let Some((_, ep)) = self.eps.iter_mut().find(|(a, _)| *a == d.to) {
                    let _ = ep.handle_datagram(now, d.from, &mut d.bytes);
                }
            }
            for (_, ep) in &mut self.eps {
                if ep.poll_timeout().is_some_and(|t| now.reached(t)) {
                    ep.handle_timeout(now);
                }
            }
            self.drain_transmit();
            for (a, ep) in &mut self.eps {
                while let Some(e) = ep.poll_event() {
                    events.push((*a, e));
                }
            }
            self.now += 1;
        }
        events
    }

    /// Hands `bytes` to `to` as if `from` had sent it now.
    fn inject(&mut self, from: Addr, to: Addr, bytes: &[u8]) -> Result<(), EndpointError> {
        let now = self.now;
        let mut b = bytes.to_vec();
        self.ep(to).handle_datagram(now, from, &mut b)
    }
}

fn read_all(ep: &mut Endpoint<Addr>, id: SessionId) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = ep.recv(id, &mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// The layer counters of one session (`Session::layer_counters`).
fn counters(ep: &Endpoint<Addr>, id: SessionId) -> LayerCounters {
    ep.session(id).expect("session exists").layer_counters()
}

fn payload(client: Addr, dir: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ client.wrapping_mul(17) ^ dir)
        .collect()
}

/// An RNG whose 8-byte draws (sender ids) carry `bytes` at offsets 4 and 5: on the wire they
/// are a datagram's bytes 4..6, where kcp-go's FEC header keeps its type (0xF1 data,
/// 0xF2 parity).
struct FecLookalike {
    inner: TestRng,
    bytes: [u8; 2],
}

impl rand_core::TryRng for FecLookalike {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.inner.try_next_u32()
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.inner.try_next_u64()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.try_fill_bytes(dst)?;
        if dst.len() == 8 {
            dst[4..6].copy_from_slice(&self.bytes);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for FecLookalike {}

/// Which stack the endpoints run.
#[derive(Clone, Copy, Debug)]
enum Stack {
    Replay(AeadKind),
    /// `[Fec(10, 3), ReplayAeadCrypt]`: FEC inside the crypto layer, as kcp-go stacks them.
    FecReplay,
    Aead(AeadKind),
    Packet(CipherKind),
}

/// An endpoint config whose factory builds every layer from one shared key, drawing sender
/// ids from `rng`.
fn endpoint_cfg<R>(stack: Stack, accept: bool, mut rng: R) -> EndpointConfig
where
    R: rand_core::CryptoRng + Send + 'static,
{
    let p = pass();
    let factory: Box<dyn FnMut() -> Vec<Layer> + Send> = match stack {
        Stack::Replay(kind) => {
            let key = Arc::new(ReplayKey::from_pass(kind, &p));
            Box::new(move || {
                vec![Box::new(ReplayAeadCrypt::with_key(Arc::clone(&key), &mut rng)) as Layer]
            })
        }
        Stack::FecReplay => {
            let key = Arc::new(ReplayKey::from_pass(AeadKind::Aes128Gcm, &p));
            Box::new(move || {
                vec![
                    Box::new(kcp_fec::Fec::new(10, 3).expect("fec")) as Layer,
                    Box::new(ReplayAeadCrypt::with_key(Arc::clone(&key), &mut rng)) as Layer,
                ]
            })
        }
        Stack::Aead(kind) => {
            let key = Arc::new(AeadKey::from_pass(kind, &p, &mut rng));
            Box::new(move || vec![Box::new(AeadCrypt::with_key(Arc::clone(&key))) as Layer])
        }
        Stack::Packet(kind) => {
            let key = Arc::new(PacketKey::new(BlockCrypt::from_pass(kind, &p), &mut rng));
            Box::new(move || vec![Box::new(PacketCrypt::with_key(Arc::clone(&key))) as Layer])
        }
    };
    EndpointConfig {
        accept,
        demux_layers: 1,
        layers: factory,
        ..EndpointConfig::new(Config::fast3())
    }
}

/// A server and `clients` clients (addresses 1..=clients), each client with its own RNG.
fn network(stack: Stack, clients: u8) -> Net {
    let mut eps = vec![(
        SERVER,
        Endpoint::new(endpoint_cfg(stack, true, TestRng(1000))).expect("server"),
    )];
    for c in 1..=clients {
        eps.push((
            c,
            Endpoint::new(endpoint_cfg(stack, false, TestRng(c as u64))).expect("client"),
        ));
    }
    Net::new(eps)
}

/// Every client sends `len` bytes to the server and the server answers each with `len`
/// bytes of its own; both sides check every byte. Returns client session ids and the server's
/// session id per client address.
fn exchange(net: &mut Net, clients: u8, len: usize) -> (Vec<SessionId>, BTreeMap<Addr, SessionId>) {
    let now = net.now;
    let mut cids = Vec::new();
    for c in 1..=clients {
        let id = net.ep(c).connect(now, SERVER, CONV).expect("connect");
        net.ep(c).send(id, &payload(c, 0, len)).expect("send");
        cids.push(id);
    }
    let mut server_ids = BTreeMap::new();
    let mut got: BTreeMap<Addr, Vec<u8>> = BTreeMap::new();
    for _ in 0..400 {
        net.run(5);
        while let Some(s) = net.ep(SERVER).accept() {
            let from = net.ep(SERVER).remote(s).expect("remote");
            assert!(
                server_ids.insert(from, s).is_none(),
                "one session per client"
            );
        }
        for (&from, &s) in &server_ids {
            let data = read_all(net.ep(SERVER), s);
            got.entry(from).or_default().extend(data);
        }
        if got.len() == clients as usize && got.values().all(|v| v.len() >= len) {
            break;
        }
    }
    for c in 1..=clients {
        assert_eq!(
            got.get(&c),
            Some(&payload(c, 0, len)),
            "client {c} to server"
        );
    }
    for (&c, &s) in &server_ids {
        net.ep(SERVER).send(s, &payload(c, 1, len)).expect("reply");
    }
    let mut back: Vec<Vec<u8>> = vec![Vec::new(); clients as usize];
    for _ in 0..400 {
        net.run(5);
        for (i, c) in (1..=clients).enumerate() {
            let data = read_all(net.ep(c), cids[i]);
            back[i].extend(data);
        }
        if back.iter().all(|v| v.len() >= len) {
            break;
        }
    }
    for (i, c) in (1..=clients).enumerate() {
        assert_eq!(back[i], payload(c, 1, len), "server to client {c}");
    }
    (cids, server_ids)
}

#[test]
fn replay_protected_listener_serves_several_clients_at_once() {
    for kind in [AeadKind::Aes128Gcm, AeadKind::ChaCha20Poly1305] {
        let mut net = network(Stack::Replay(kind), 4);
        let (_, server_ids) = exchange(&mut net, 4, 30_000);
        assert_eq!(server_ids.len(), 4, "{kind}");
        for &s in server_ids.values() {
            let ep = net.ep(SERVER);
            assert!(counters(ep, s).crypto_opened > 20, "{kind}");
            assert_eq!(counters(ep, s).crypto_replays, 0, "{kind}");
        }
        assert_eq!(net.ep(SERVER).stats().in_csum_errors, 0);
    }
}

#[test]
fn shared_key_layers_without_per_peer_state_serve_several_clients() {
    for stack in [
        Stack::Aead(AeadKind::Aes128Gcm),
        Stack::Packet(CipherKind::Aes128),
        Stack::Packet(CipherKind::Salsa20),
        Stack::Packet(CipherKind::Twofish),
    ] {
        let mut net = network(stack, 3);
        let (_, server_ids) = exchange(&mut net, 3, 20_000);
        assert_eq!(server_ids.len(), 3, "{stack:?}");
    }
}

#[test]
fn captured_datagrams_replayed_to_their_session_are_dropped_and_counted() {
    let mut net = network(Stack::Replay(AeadKind::Aes128Gcm), 3);
    let (_, server_ids) = exchange(&mut net, 3, 20_000);
    net.run(200);
    let captured: Vec<Datagram> = net.log.iter().filter(|d| d.to == SERVER).cloned().collect();
    assert!(captured.len() > 30);
    let before: BTreeMap<Addr, u64> = server_ids
        .iter()
        .map(|(&c, &s)| (c, counters(net.ep(SERVER), s).crypto_replays))
        .collect();
    let mut sent: BTreeMap<Addr, u64> = BTreeMap::new();
    for d in &captured {
        let r = net.inject(d.from, SERVER, &d.bytes);
        assert_eq!(
            r,
            Err(EndpointError::Rejected(DropReason::Session(
                SessionError::Codec(CodecError::Replay)
            ))),
            "a replay from client {} got through",
            d.from
        );
        *sent.entry(d.from).or_default() += 1;
    }
    net.run(100);
    for (&c, &s) in &server_ids {
        let ep = net.ep(SERVER);
        assert_eq!(
            counters(ep, s).crypto_replays - before[&c],
            sent[&c],
            "client {c}: every replay counted in its own session"
        );
        assert!(
            read_all(ep, s).is_empty(),
            "client {c}: nothing delivered twice"
        );
    }
    assert_eq!(net.ep(SERVER).len(), 3, "no new session");
}

#[test]
fn datagrams_replayed_into_another_clients_session_are_dropped_and_counted() {
    // Every client uses the same conversation id, so a datagram captured from client 1 and
    // re-sent from client 2's address lands in client 2's session.
    let mut net = network(Stack::Replay(AeadKind::ChaCha20Poly1305), 3);
    let (cids, server_ids) = exchange(&mut net, 3, 10_000);
    net.run(200);
    let from_1: Vec<Vec<u8>> = net
        .log
        .iter()
        .filter(|d| d.from == 1 && d.to == SERVER)
        .map(|d| d.bytes.clone())
        .collect();
    let s2 = server_ids[&2];
    let replays_before = counters(net.ep(SERVER), s2).crypto_replays;
    let errors_before = net
        .ep(SERVER)
        .session(s2)
        .expect("session")
        .stats()
        .in_codec_errors;
    for bytes in &from_1 {
        assert_eq!(
            net.inject(2, SERVER, bytes),
            Err(EndpointError::Rejected(DropReason::Session(
                SessionError::Codec(CodecError::Replay)
            )))
        );
    }
    let n = from_1.len() as u64;
    let ep = net.ep(SERVER);
    assert_eq!(counters(ep, s2).crypto_replays - replays_before, n);
    assert_eq!(
        ep.session(s2).expect("session").stats().in_codec_errors - errors_before,
        n
    );
    assert!(read_all(ep, s2).is_empty());
    assert_eq!(counters(ep, server_ids[&1]).crypto_replays, 0);
    // Both sessions still work afterwards.
    let (s1, s2) = (server_ids[&1], server_ids[&2]);
    net.ep(SERVER).send(s1, b"still one").expect("send");
    net.ep(SERVER).send(s2, b"still two").expect("send");
    net.run(100);
    assert_eq!(read_all(net.ep(1), cids[0]), b"still one");
    assert_eq!(read_all(net.ep(2), cids[1]), b"still two");
}

#[test]
fn a_captured_first_and_second_datagram_replayed_from_another_address_open_no_session() {
    // kcp-go's packet crypt (a random nonce per datagram, no authentication), the
    // replay-protected AEAD, and FEC inside it.
    for stack in [
        Stack::Packet(CipherKind::Aes256),
        Stack::Replay(AeadKind::Aes128Gcm),
        Stack::FecReplay,
    ] {
        let mut net = network(stack, 1);
        exchange(&mut net, 1, 2_000);
        let captured: Vec<Vec<u8>> = net
            .log
            .iter()
            .filter(|d| d.from == 1 && d.to == SERVER)
            .take(2)
            .map(|d| d.bytes.clone())
            .collect();
        assert_eq!(captured.len(), 2);
        let before = net.ep(SERVER).stats();
        for spoofed in [99u8, 100] {
            for _ in 0..3 {
                for d in &captured {
                    assert_eq!(
                        net.inject(spoofed, SERVER, d),
                        Err(EndpointError::Rejected(DropReason::Replayed)),
                        "{stack:?}: a replay from {spoofed} was taken"
                    );
                }
            }
        }
        // Whatever the server sends meanwhile, and for longer than the half-open timeout.
        let events = net.run(6_000);
        let st = net.ep(SERVER).stats();
        assert!(
            !events.contains(&(SERVER, Event::Incoming)),
            "{stack:?}: {events:?}"
        );
        assert!(net.ep(SERVER).accept().is_none(), "{stack:?}");
        assert_eq!(net.ep(SERVER).len(), 1, "{stack:?}: only the real session");
        assert_eq!(st.passive_opens, before.passive_opens, "{stack:?}");
        assert_eq!(
            st.replayed - before.replayed,
            12,
            "{stack:?}: every copy counted"
        );
        assert_eq!(st.half_open, 0, "{stack:?}");
    }
}

#[test]
fn a_replay_from_the_original_address_after_its_session_ended_opens_no_session() {
    for stack in [
        Stack::Packet(CipherKind::Aes256),
        Stack::Replay(AeadKind::Aes128Gcm),
    ] {
        let mut net = network(stack, 1);
        let (_, server_ids) = exchange(&mut net, 1, 2_000);
        let captured: Vec<Vec<u8>> = net
            .log
            .iter()
            .filter(|d| d.from == 1 && d.to == SERVER)
            .take(2)
            .map(|d| d.bytes.clone())
            .collect();
        // The session ends on the server; its linger runs out.
        net.ep(SERVER).close(server_ids[&1]).expect("close");
        let linger = net.ep(SERVER).config().closed_linger_ms;
        let client = net.ep(1).sessions()[0];
        net.ep(1).close(client).expect("close client");
        net.run(linger + 100);
        assert_eq!(net.ep(SERVER).len(), 0);
        let before = net.ep(SERVER).stats();
        for d in &captured {
            assert_eq!(
                net.inject(1, SERVER, d),
                Err(EndpointError::Rejected(DropReason::Replayed)),
                "{stack:?}"
            );
        }
        let events = net.run(6_000);
        assert!(!events.contains(&(SERVER, Event::Incoming)), "{stack:?}");
        let st = net.ep(SERVER).stats();
        assert_eq!(st.passive_opens, before.passive_opens, "{stack:?}");
        assert_eq!(st.replayed - before.replayed, 2, "{stack:?}");
    }
}

#[test]
fn sender_ids_that_look_like_fec_headers_are_routed_by_their_session() {
    for stack in [Stack::Replay(AeadKind::Aes128Gcm), Stack::FecReplay] {
        for bytes in [[0xf1, 0x00], [0xf2, 0x00]] {
            let rng = |seed| FecLookalike {
                inner: TestRng(seed),
                bytes,
            };
            let mut eps = vec![(
                SERVER,
                Endpoint::new(endpoint_cfg(stack, true, rng(500))).expect("server"),
            )];
            for c in 1..=3u8 {
                eps.push((
                    c,
                    Endpoint::new(endpoint_cfg(stack, false, rng(c as u64))).expect("client"),
                ));
            }
            let mut net = Net::new(eps);
            let (_, server_ids) = exchange(&mut net, 3, 15_000);
            assert_eq!(server_ids.len(), 3);
            // Every datagram on the wire (both ways) shows the look-alike type bytes.
            assert!(net.log.len() > 30);
            assert!(
                net.log.iter().all(|d| d.bytes[4..6] == bytes),
                "{stack:?} {bytes:x?}"
            );
        }
    }
}

#[test]
fn fec_inside_the_replay_protected_layer_recovers_losses_through_the_endpoint() {
    let mut net = network(Stack::FecReplay, 3);
    // Lose every 9th datagram to the server: FEC (10 data, 3 parity) rebuilds them.
    net.drop_every = Some(9);
    let (_, server_ids) = exchange(&mut net, 3, 60_000);
    let mut recovered = 0;
    for &s in server_ids.values() {
        let ep = net.ep(SERVER);
        recovered += ep.session(s).expect("session").stats().fec_recovered;
        assert_eq!(counters(ep, s).crypto_replays, 0);
        assert!(counters(ep, s).fec_parity_shards > 0);
    }
    assert!(recovered > 0, "FEC rebuilt lost datagrams");
}

#[test]
fn forged_datagrams_on_a_listener_are_counted_and_open_no_session() {
    let mut net = network(Stack::Replay(AeadKind::Aes128Gcm), 1);
    exchange(&mut net, 1, 1_000);
    let genuine = net
        .log
        .iter()
        .find(|d| d.from == 1 && d.to == SERVER)
        .expect("captured")
        .bytes
        .clone();
    let before = net.ep(SERVER).stats().in_csum_errors;
    for i in 0..genuine.len() {
        let mut forged = genuine.clone();
        forged[i] ^= 0x20;
        assert_eq!(
            net.inject(7, SERVER, &forged),
            Err(EndpointError::Rejected(DropReason::Codec(
                CodecError::Integrity
            ))),
            "byte {i}"
        );
    }
    assert_eq!(
        net.inject(7, SERVER, &genuine[..20]),
        Err(EndpointError::Rejected(DropReason::Codec(
            CodecError::Truncated
        )))
    );
    assert_eq!(
        net.ep(SERVER).stats().in_csum_errors - before,
        genuine.len() as u64
    );
    assert_eq!(net.ep(SERVER).len(), 1, "no session for forgeries");
}

#[test]
fn once_the_record_forgot_a_session_its_replay_opens_a_phantom() {
    // The documented bound: the record keeps the fingerprints of recent sessions only. With a
    // record of four fingerprints, two later sessions push the first one's out, and copies
    // of its first datagrams from a spoofed address then open a session that reaches
    // `accept` carrying the stale data.
    let mut net = network(Stack::Packet(CipherKind::Aes256), 3);
    let server_cfg = EndpointConfig {
        replay_record: 4,
        ..endpoint_cfg(Stack::Packet(CipherKind::Aes256), true, TestRng(1000))
    };
    net.eps[0].1 = Endpoint::new(server_cfg).expect("server");
    exchange(&mut net, 3, 2_000);
    let from_1: Vec<Vec<u8>> = net
        .log
        .iter()
        .filter(|d| d.from == 1 && d.to == SERVER)
        .take(6)
        .map(|d| d.bytes.clone())
        .collect();
    let before = net.ep(SERVER).stats();
    for d in &from_1 {
        let _ = net.inject(99, SERVER, d);
    }
    let events = net.run(100);
    let st = net.ep(SERVER).stats();
    assert!(events.contains(&(SERVER, Event::Incoming)), "{st:?}");
    assert_eq!(st.passive_opens, before.passive_opens + 1);
    let phantom = net.ep(SERVER).accept().expect("the phantom");
    assert_eq!(net.ep(SERVER).remote(phantom), Some(99));
    // It carries the captured, stale data of client 1.
    let stale = read_all(net.ep(SERVER), phantom);
    assert!(!stale.is_empty());
    assert!(payload(1, 0, 2_000).starts_with(&stale));
}
