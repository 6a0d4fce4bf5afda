//! FEC parity carries no conversation id, so an endpoint routes it by address. With several
//! conversations from one address (a client endpoint opening several sessions on one
//! socket), parity must reach the session whose group it belongs to: two such sessions,
//! each with FEC 10/3, run through the simulator over links losing 10 % each way; both
//! deliver every byte, both rebuild lost packets from parity, and no session ever sees
//! another's parity (which its decoder would reject as a seqid jump, or worse, use).

use kcp_core::endpoint::{Endpoint, EndpointConfig, SessionId};
use kcp_core::sim::{LinkConfig, Node, Sim};
use kcp_core::wire::{Command, SegmentRepr, HEADER_LEN};
use kcp_core::{Config, Layer, LayerCounters, Millis};
use kcp_fec::{Fec, FecCode, FecConfig, TYPE_DATA, TYPE_PARITY};

/// An endpoint as a simulator node; all its traffic goes to the other node. The simulator
/// asks for the next deadline through `&self`, so it is refreshed after every call.
struct Peer {
    ep: Endpoint<u8>,
    other: u8,
    next: Option<Millis>,
}

impl Peer {
    fn refresh(&mut self) {
        self.next = self.ep.poll_timeout();
    }
}

impl Node for Peer {
    fn poll_timeout(&self) -> Option<Millis> {
        self.next
    }
    fn handle_timeout(&mut self, now: Millis) {
        self.ep.handle_timeout(now);
    }
    fn poll_transmit(&mut self, now: Millis, buf: &mut [u8]) -> Option<usize> {
        let r = self.ep.poll_transmit(now, buf).map(|(_, n)| n);
        if r.is_none() {
            while self.ep.poll_event().is_some() {}
            self.refresh();
        }
        r
    }
    fn handle_datagram(&mut self, now: Millis, datagram: &mut [u8]) {
        let _ = self.ep.handle_datagram(now, self.other, datagram);
    }
}

fn counters(ep: &Endpoint<u8>, id: SessionId) -> LayerCounters {
    ep.session(id).unwrap().layer_counters()
}

#[test]
fn two_conversations_on_one_address_each_get_their_own_parity() {
    let code = FecCode::new(10, 3).unwrap();
    let session = Config {
        stream: true,
        ..Config::fast3().with_windows(256, 256)
    };
    let server_code = code.clone();
    let server = Endpoint::new(EndpointConfig {
        accept: true,
        layers: Box::new(move || {
            vec![Box::new(Fec::with_code(server_code.clone(), FecConfig::default())) as Layer]
        }),
        ..EndpointConfig::new(session)
    })
    .unwrap();
    // The client's sessions number their FEC groups from far-apart points, as a client
    // stack does with random starting points.
    let mut start = 0u32;
    let client = Endpoint::new(EndpointConfig {
        layers: Box::new(move || {
            let mut f = Fec::with_code(code.clone(), FecConfig::default());
            f.set_next_seqid(start);
            start = start.wrapping_add(1 << 24);
            vec![Box::new(f) as Layer]
        }),
        ..EndpointConfig::new(session)
    })
    .unwrap();
    let lossy = LinkConfig {
        loss: 0.10,
        delay_ms: 15,
        jitter_ms: 2,
        ..LinkConfig::default()
    };
    let mut sim = Sim::new(
        Peer {
            ep: client,
            other: 0,
            next: None,
        },
        Peer {
            ep: server,
            other: 1,
            next: None,
        },
        lossy,
        lossy,
        0x05ee_d16b,
        Millis(1_000),
    );
    sim.max_step_ms = 10;
    let now = sim.now();
    let convs = [0x0101_0101u32, 0x0202_0202];
    // The endpoint's own instance was built first; the sessions get starts 1<<24, 2<<24.
    let ids: Vec<SessionId> = convs
        .iter()
        .map(|&c| sim.a.ep.connect(now, 0, c).unwrap())
        .collect();
    const LEN: usize = 300_000;
    let data: Vec<Vec<u8>> = (0..2)
        .map(|k| {
            (0..LEN)
                .map(|i| (i as u8).wrapping_mul(7 + k as u8))
                .collect()
        })
        .collect();
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); 2];
    let mut accepted: Vec<(u32, SessionId)> = Vec::new();
    // The sessions open first: a short first message each, which the server's endpoint
    // answers with a window probe, and accepts once the client's session answers. Until then
    // it keeps only the first flight and drops the rest unacknowledged, so a transfer started
    // at once would go through the server's sessions mostly as retransmissions after the
    // handshake, not as the FEC-protected stream this test is about.
    const HELLO: usize = 100;
    for k in 0..2 {
        assert_eq!(sim.a.ep.send(ids[k], &data[k][..HELLO]), Ok(HELLO));
    }
    let opened = sim.run_until(10_000, |sim| {
        while let Some(id) = sim.b.ep.accept() {
            let conv = sim.b.ep.session(id).unwrap().kcp().conv();
            accepted.push((conv, id));
        }
        sim.a.refresh();
        sim.b.refresh();
        (accepted.len() == 2).then_some(())
    });
    assert!(opened.is_some(), "both sessions accepted: {accepted:?}");
    let mut sent = [HELLO; 2];
    let mut buf = vec![0u8; 1 << 16];
    let done = sim.run_until(120_000, |sim| {
        for k in 0..2 {
            while sent[k] < LEN {
                match sim
                    .a
                    .ep
                    .send(ids[k], &data[k][sent[k]..(sent[k] + 8192).min(LEN)])
                {
                    Ok(n) => sent[k] += n,
                    Err(_) => break,
                }
            }
        }
        while let Some(id) = sim.b.ep.accept() {
            let conv = sim.b.ep.session(id).unwrap().kcp().conv();
            accepted.push((conv, id));
        }
        for &(conv, id) in &accepted {
            let k = convs.iter().position(|&c| c == conv).unwrap();
            while let Ok(n) = sim.b.ep.recv(id, &mut buf) {
                got[k].extend_from_slice(&buf[..n]);
            }
        }
        sim.a.refresh();
        sim.b.refresh();
        (got[0].len() == LEN && got[1].len() == LEN).then_some(())
    });
    assert!(
        done.is_some(),
        "delivered {} and {} of {LEN} bytes",
        got[0].len(),
        got[1].len()
    );
    assert!(got[0] == data[0] && got[1] == data[1], "data intact");
    let stats = sim.b.ep.stats();
    for &(conv, id) in &accepted {
        let recovered = sim.b.ep.session(id).unwrap().stats().fec_recovered;
        let jumps = counters(&sim.b.ep, id).fec_seqid_jumps;
        let failures = sim.b.ep.session(id).unwrap().stats().kcp_in_errors;
        println!(
            "conv {conv:#x}: {recovered} rebuilt packets accepted, {jumps} foreign shards, \
             {failures} rejected datagrams"
        );
        assert!(recovered > 20, "conv {conv:#x} recovered only {recovered}");
        assert_eq!(jumps, 0, "conv {conv:#x} got another session's parity");
        assert_eq!(failures, 0, "conv {conv:#x} rejected datagrams");
    }
    println!("parity unrouted: {}", stats.parity_unrouted);
    assert_eq!(stats.parity_unrouted, 0);
}

/// A data shard of FEC seqid `seqid` carrying one segment of `conv`.
fn data_shard(seqid: u32, conv: u32, cmd: Command, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 8 + HEADER_LEN + payload.len()];
    d[..4].copy_from_slice(&seqid.to_le_bytes());
    d[4..6].copy_from_slice(&TYPE_DATA.to_le_bytes());
    let size = (d.len() - 6) as u16;
    d[6..8].copy_from_slice(&size.to_le_bytes());
    SegmentRepr {
        conv,
        cmd,
        frg: 0,
        wnd: 128,
        ts: 0,
        sn: 0,
        una: 0,
        len: payload.len() as u32,
    }
    .emit(&mut d[8..])
    .unwrap();
    d[8 + HEADER_LEN..].copy_from_slice(payload);
    d
}

/// A listening endpoint whose sessions run FEC 10/3.
fn fec_server() -> Endpoint<u8> {
    let code = FecCode::new(10, 3).unwrap();
    Endpoint::new(EndpointConfig {
        accept: true,
        layers: Box::new(move || {
            vec![Box::new(Fec::with_code(code.clone(), FecConfig::default())) as Layer]
        }),
        ..EndpointConfig::new(Config::fast3())
    })
    .unwrap()
}

fn parity_shard(seqid: u32) -> Vec<u8> {
    let mut d = vec![0x5au8; 8 + HEADER_LEN + 1];
    d[..4].copy_from_slice(&seqid.to_le_bytes());
    d[4..6].copy_from_slice(&TYPE_PARITY.to_le_bytes());
    d
}

/// While one conversation of an address has a session and another is still half-open (its
/// first flight answered by a probe, the answer not yet in), the second one's parity must
/// not reach the first one's session, though that session is the only one on the address:
/// the half-open entry keeps it for its own session.
#[test]
fn parity_of_a_half_open_conversation_does_not_reach_its_neighbour() {
    let mut ep = fec_server();
    let now = Millis(1_000);
    let mut out = vec![0u8; 1500];
    let mut input = |ep: &mut Endpoint<u8>, mut d: Vec<u8>| {
        let _ = ep.handle_datagram(now, 9, &mut d);
        while ep.poll_transmit(now, &mut out).is_some() {}
    };
    let (a, b) = (0x0a0a_0a0au32, 0x0b0b_0b0bu32);
    // Conversation a: first flight, probe, answer; its groups start at 0.
    input(&mut ep, data_shard(0, a, Command::Push, b"a"));
    input(&mut ep, data_shard(1, a, Command::WindowTell, b""));
    let ida = ep.accept().expect("a accepted");
    // Conversation b from the same address numbers its groups from far away; its first
    // flight makes a half-open entry.
    let far = 1u32 << 24;
    input(&mut ep, data_shard(far, b, Command::Push, b"b"));
    assert!(ep.accept().is_none());
    assert_eq!(ep.stats().half_open, 1);
    // Parity of b's first group, then of a's.
    let held = ep.stats().half_open_held;
    input(&mut ep, parity_shard(far + 10));
    assert_eq!(
        counters(&ep, ida).fec_parity_shards,
        0,
        "b's parity reached a"
    );
    assert_eq!(counters(&ep, ida).fec_seqid_jumps, 0);
    assert_eq!(
        ep.stats().half_open_held,
        held + 1,
        "kept with b's first flight"
    );
    assert_eq!(ep.stats().parity_unrouted, 0);
    input(&mut ep, parity_shard(10));
    assert_eq!(
        counters(&ep, ida).fec_parity_shards,
        1,
        "a's parity reaches a"
    );
    // b answers its probe; from then on each gets its own parity.
    input(&mut ep, data_shard(far + 1, b, Command::WindowTell, b""));
    let idb = ep.accept().expect("b accepted");
    input(&mut ep, parity_shard(far + 11));
    input(&mut ep, parity_shard(11));
    assert_eq!(counters(&ep, ida).fec_parity_shards, 2);
    // b's session got the parity its entry kept, then the next.
    assert_eq!(counters(&ep, idb).fec_parity_shards, 2);
    for id in [ida, idb] {
        assert_eq!(counters(&ep, id).fec_seqid_jumps, 0);
    }
    assert_eq!(ep.stats().parity_unrouted, 0);
}

/// Hundreds of conversations from one address (a client multiplexing its sessions over a few
/// sockets): each one's parity still reaches it, found by its group whatever the number of
/// neighbours, including groups near either end of the 32-bit numbering (the reach wraps);
/// parity within reach of two sessions' groups goes to neither, and a closed session's
/// parity to nobody.
#[test]
fn parity_finds_its_session_among_hundreds_on_one_address() {
    let mut ep = fec_server();
    let now = Millis(1_000);
    let mut out = vec![0u8; 1500];
    // Drains before and after, so that a close takes effect before the next datagram.
    let mut input = |ep: &mut Endpoint<u8>, mut d: Vec<u8>| {
        while ep.poll_transmit(now, &mut out).is_some() {}
        let _ = ep.handle_datagram(now, 7, &mut d);
        while ep.poll_transmit(now, &mut out).is_some() {}
    };
    // Where each conversation numbers its groups from: far apart, one just above 0 and one
    // just below 2^32 (80,001 apart across the wrap: out of each other's reach).
    let mut starts: Vec<u32> = (1..=200u32).map(|i| i << 22).collect();
    starts.push(40_000);
    starts.push(u32::MAX - 40_000);
    let mut ids = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let conv = 0x1000 + i as u32;
        input(&mut ep, data_shard(s, conv, Command::Push, b"x"));
        input(&mut ep, data_shard(s + 1, conv, Command::WindowTell, b""));
        ids.push(ep.accept().expect("accepted"));
    }
    for (&s, &id) in starts.iter().zip(&ids).rev() {
        input(&mut ep, parity_shard(s + 11));
        assert_eq!(counters(&ep, id).fec_parity_shards, 1, "start {s}");
    }
    for &id in &ids {
        assert_eq!(counters(&ep, id).fec_parity_shards, 1);
        assert_eq!(counters(&ep, id).fec_seqid_jumps, 0);
    }
    assert_eq!(ep.stats().parity_unrouted, 0);
    // A conversation whose groups are within reach of the first one's: parity near both is
    // nobody's.
    let near = starts[0] + 1_000;
    input(&mut ep, data_shard(near, 0x9999, Command::Push, b"x"));
    input(
        &mut ep,
        data_shard(near + 1, 0x9999, Command::WindowTell, b""),
    );
    let idn = ep.accept().expect("accepted");
    input(&mut ep, parity_shard(starts[0] + 500));
    assert_eq!(counters(&ep, ids[0]).fec_parity_shards, 1);
    assert_eq!(counters(&ep, idn).fec_parity_shards, 0);
    assert_eq!(ep.stats().parity_unrouted, 1);
    // A closed session's parity reaches nobody; its neighbours' still reach them.
    ep.close(ids[1]).unwrap();
    input(&mut ep, parity_shard(starts[1] + 12));
    assert_eq!(ep.stats().parity_unrouted, 2);
    input(&mut ep, parity_shard(starts[2] + 13 * 100 + 11));
    assert_eq!(counters(&ep, ids[2]).fec_parity_shards, 2);
    assert_eq!(ep.stats().parity_unrouted, 2);
}

/// A session alone on its address is found without the index by group; it joins the index
/// when a second session attaches there and leaves it when the other goes. Its group must
/// be current at each step: it moves on (far beyond the reach) while alone, a neighbour
/// comes, goes and another comes, and its parity finds it every time.
#[test]
fn a_session_joins_and_leaves_its_address_index_with_its_current_group() {
    let mut ep = fec_server();
    let now = Millis(1_000);
    let mut out = vec![0u8; 1500];
    let mut input = |ep: &mut Endpoint<u8>, mut d: Vec<u8>| {
        while ep.poll_transmit(now, &mut out).is_some() {}
        let _ = ep.handle_datagram(now, 5, &mut d);
        while ep.poll_transmit(now, &mut out).is_some() {}
    };
    let open = |input: &mut dyn FnMut(&mut Endpoint<u8>, Vec<u8>),
                ep: &mut Endpoint<u8>,
                start: u32,
                conv: u32| {
        input(ep, data_shard(start, conv, Command::Push, b"x"));
        input(ep, data_shard(start + 1, conv, Command::WindowTell, b""));
        ep.accept().expect("accepted")
    };
    // Far beyond the reach (1 << 16) at every step, far from the others.
    let step = 1u32 << 20;
    let a0 = 0x4000_0000u32;
    let a = open(&mut input, &mut ep, a0, 0xa);
    // Alone: A's groups move on twice; its parity follows.
    let mut at = a0;
    for _ in 0..2 {
        at += step;
        input(&mut ep, data_shard(at, 0xa, Command::WindowTell, b""));
        input(&mut ep, parity_shard(at + 11));
    }
    assert_eq!(counters(&ep, a).fec_parity_shards, 2);
    // B comes: A joins the index with its current group, not the one it started with.
    let b = open(&mut input, &mut ep, 0x9000_0000, 0xb);
    input(&mut ep, parity_shard(at + 12));
    assert_eq!(
        counters(&ep, a).fec_parity_shards,
        3,
        "A found by its group"
    );
    input(&mut ep, parity_shard(0x9000_0000 + 11));
    assert_eq!(
        counters(&ep, b).fec_parity_shards,
        1,
        "B found by its group"
    );
    // Parity of A's first group is nobody's now (B is there too).
    input(&mut ep, parity_shard(a0 + 11));
    assert_eq!(ep.stats().parity_unrouted, 1);
    // While both are there, A moves on again; the index follows it.
    at += step;
    input(&mut ep, data_shard(at, 0xa, Command::WindowTell, b""));
    input(&mut ep, parity_shard(at + 11));
    assert_eq!(counters(&ep, a).fec_parity_shards, 4);
    // B goes: A is alone again and takes parity near its group; it moves on alone.
    ep.close(b).unwrap();
    input(&mut ep, parity_shard(at + 12));
    assert_eq!(counters(&ep, a).fec_parity_shards, 5);
    at += step;
    input(&mut ep, data_shard(at, 0xa, Command::WindowTell, b""));
    // C comes: A rejoins with the group it reached alone.
    let c = open(&mut input, &mut ep, 0xc000_0000, 0xc);
    input(&mut ep, parity_shard(at + 11));
    assert_eq!(counters(&ep, a).fec_parity_shards, 6, "A rejoined current");
    input(&mut ep, parity_shard(0xc000_0000 + 11));
    assert_eq!(counters(&ep, c).fec_parity_shards, 1);
    // A goes first this time: C, alone, still gets its parity.
    ep.close(a).unwrap();
    input(&mut ep, parity_shard(0xc000_0000 + 12));
    assert_eq!(counters(&ep, c).fec_parity_shards, 2);
    assert_eq!(ep.stats().parity_unrouted, 1);
    assert_eq!(counters(&ep, c).fec_seqid_jumps, 0);
}
