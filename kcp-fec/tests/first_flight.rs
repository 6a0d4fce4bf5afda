//! A server session's first datagrams go through its own FEC layer.
//!
//! An endpoint keeps a new peer's first flight in a half-open entry until the peer answers
//! its probe, then creates the session and hands it what it kept. The session's FEC decoder
//! must learn those datagrams' shards as if it had seen them arrive: otherwise the parity
//! that follows the first group makes it "rebuild" shards that were never lost (a
//! Reed-Solomon rebuild per new session on a loss-free path, and duplicates for the engine).
//!
//! Each scenario plays a client endpoint (FEC 10/3) against a server endpoint (FEC 10/3,
//! accepting) by hand, mangles the client's first datagrams (loss, reordering, duplicates,
//! retransmissions while half-open), and checks that the server delivers every byte exactly
//! once, in order, and that its session's decoder rebuilt exactly what a decoder that had
//! received the same datagrams in the same order rebuilds (the reference): none without loss.

use kcp_core::endpoint::{DropReason, Endpoint, EndpointConfig, EndpointError, SessionId};
use kcp_core::{Codec, Config, Layer, Millis};
use kcp_fec::{Fec, FecCode, FecConfig};

const CONV: u32 = 0x1234_5678;
/// Small messages the client sends once the session exists.
const LATER: usize = 30;

fn endpoints() -> (Endpoint<u8>, Endpoint<u8>) {
    let code = FecCode::new(10, 3).unwrap();
    let session = Config::fast3().with_windows(256, 256);
    let server_code = code.clone();
    let server = Endpoint::new(EndpointConfig {
        accept: true,
        layers: Box::new(move || {
            vec![Box::new(Fec::with_code(server_code.clone(), FecConfig::default())) as Layer]
        }),
        ..EndpointConfig::new(session)
    })
    .unwrap();
    let client = Endpoint::new(EndpointConfig {
        layers: Box::new(move || {
            vec![Box::new(Fec::with_code(code.clone(), FecConfig::default())) as Layer]
        }),
        ..EndpointConfig::new(session)
    })
    .unwrap();
    (client, server)
}

fn drain(ep: &mut Endpoint<u8>, now: Millis) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some((_, n)) = ep.poll_transmit(now, &mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// Whether an FEC packet is a parity shard (type 0xF2 at offset 4).
fn is_parity(p: &[u8]) -> bool {
    p.get(4..6) == Some(&[0xF2, 0x00][..])
}

/// What a scenario saw.
#[derive(Debug)]
struct Outcome {
    /// Data shards the server session's FEC layer rebuilt.
    rebuilt: u64,
    /// Rebuilt packets the session's engine took (what kcp-perf prints as "fec recovered").
    session_recovered: u64,
    /// Decoding work the session's FEC layer did.
    decode_work: u64,
    /// What a decoder given the same datagrams in the same order rebuilt.
    reference_rebuilt: u64,
    /// Datagrams the server kept while the session was half-open.
    held: u64,
    /// Segments the client sent again.
    client_retrans: u64,
}

/// Sends `messages` from a new client session, then [`LATER`] small ones; `mangle` rewrites the client's first batch
/// of datagrams (everything it sends before it can hear the server); the server's first
/// `hold_ms` of datagrams are lost (its probe too), so the client retransmits while the
/// server's entry is half-open. Returns what happened once the server has every byte.
fn scenario(
    messages: &[Vec<u8>],
    mangle: impl FnOnce(Vec<Vec<u8>>) -> Vec<Vec<u8>>,
    hold_ms: u32,
) -> Outcome {
    let (mut client, mut server) = endpoints();
    let start = Millis(1_000);
    let mut now = start;
    let c = client.connect(now, 0, CONV).unwrap();
    for m in messages {
        assert_eq!(client.send(c, m), Ok(m.len()));
    }
    // After confirmation the client goes on, one small message a millisecond (each its own
    // datagram), so that the first groups complete and their parity comes.
    let later = self::messages(LATER, 64);
    let mut later_sent = 0;
    let want: Vec<u8> = [messages.concat(), later.concat()].concat();
    // The datagrams the server took (kept or delivered), in order, for the reference.
    let mut taken: Vec<Vec<u8>> = Vec::new();
    let mut deliver = |server: &mut Endpoint<u8>, now: Millis, d: Vec<u8>| {
        let mut copy = d.clone();
        match server.handle_datagram(now, 1, &mut copy) {
            Ok(()) | Err(EndpointError::Rejected(DropReason::Session(_))) => taken.push(d),
            Err(_) => {}
        }
    };
    let first = mangle(drain(&mut client, now));
    for d in first {
        deliver(&mut server, now, d);
    }
    let mut id: Option<SessionId> = None;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..3_000 {
        let mut moved = true;
        while moved {
            moved = false;
            for d in drain(&mut client, now) {
                deliver(&mut server, now, d);
                moved = true;
            }
            if id.is_none() {
                id = server.accept();
            }
            while server.poll_event().is_some() {}
            if let Some(s) = id {
                while let Ok(n) = server.recv(s, &mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
            }
            for mut d in drain(&mut server, now) {
                if now.0 - start.0 < hold_ms {
                    continue;
                }
                let _ = client.handle_datagram(now, 0, &mut d);
                moved = true;
            }
            while client.poll_event().is_some() {}
        }
        if got.len() >= want.len() {
            break;
        }
        if id.is_some() && later_sent < LATER {
            assert_eq!(client.send(c, &later[later_sent]), Ok(64));
            later_sent += 1;
        }
        now += 1;
        client.handle_timeout(now);
        server.handle_timeout(now);
    }
    assert!(
        got == want,
        "every byte once, in order: {} of {}",
        got.len(),
        want.len()
    );
    let s = server.session(id.expect("accepted")).unwrap();
    let counters = s.layer_counters();
    let mut reference = Fec::with_code(FecCode::new(10, 3).unwrap(), FecConfig::default());
    let mut out = [0u8; 1500];
    for mut d in taken {
        let _ = reference.open(&mut d, start);
        while reference.poll_recovered(&mut out).is_some() {}
    }
    Outcome {
        rebuilt: counters.fec_recovered_shards,
        session_recovered: s.stats().fec_recovered,
        decode_work: counters.fec_decode_work,
        reference_rebuilt: reference.stats().recovered,
        held: server.stats().half_open_held,
        client_retrans: client.session(c).unwrap().kcp().stats().retrans_segs,
    }
}

/// `n` messages of `len` bytes, each a different pattern.
fn messages(n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| (0..len).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect()
}

fn no_loss(messages: &[Vec<u8>]) -> Outcome {
    let o = scenario(messages, |d| d, 0);
    assert_eq!(o.reference_rebuilt, 0, "{o:?}");
    assert_eq!(o.rebuilt, 0, "no shard was lost: {o:?}");
    assert_eq!(o.session_recovered, 0, "{o:?}");
    assert_eq!(o.decode_work, 0, "no rebuild: {o:?}");
    o
}

#[test]
fn a_small_first_message_without_loss_rebuilds_nothing() {
    // kcp-perf's echo: one 64-byte message, then the next ones after confirmation.
    no_loss(&messages(1, 64));
}

#[test]
fn first_flights_of_several_datagrams_and_groups_without_loss_rebuild_nothing() {
    // Four datagrams (a 4 KiB message at MTU 1400), then one group and a half (15 full
    // datagrams: a whole group and its parity before the client can hear the probe), then
    // two groups and more of small messages.
    no_loss(&messages(1, 4096));
    let o = no_loss(&messages(15, 1368));
    assert!(
        o.held >= 14,
        "the first flight and the datagrams after it kept: {o:?}"
    );
    no_loss(&messages(25, 100));
}

#[test]
fn a_data_shard_lost_in_the_first_group_is_rebuilt_from_its_parity() {
    // 12 datagrams: group 0 (shards 0..9) and its parity all reach the server before the
    // session exists, but for shard 3; the session's decoder rebuilds it at confirmation,
    // so the client never retransmits it.
    let o = scenario(
        &messages(12, 1368),
        |mut d| {
            assert!(!is_parity(&d[3]));
            d.remove(3);
            d
        },
        0,
    );
    assert_eq!(o.reference_rebuilt, 1, "{o:?}");
    assert_eq!(o.rebuilt, 1, "{o:?}");
    assert_eq!(o.session_recovered, 1, "{o:?}");
    assert_eq!(o.client_retrans, 0, "FEC repaired it, not ARQ: {o:?}");
}

#[test]
fn a_lost_shard_that_parity_cannot_rebuild_is_repaired_by_arq() {
    // Five data shards of group 0 lost, only three parity shards: no rebuild, the client
    // retransmits, and nothing wrong reaches the application.
    let o = scenario(
        &messages(12, 1368),
        |d| {
            d.into_iter()
                .enumerate()
                .filter(|(i, _)| !(2..7).contains(i))
                .map(|(_, p)| p)
                .collect()
        },
        0,
    );
    assert_eq!(o.rebuilt, o.reference_rebuilt, "{o:?}");
    assert_eq!(o.rebuilt, 0, "{o:?}");
    assert!(o.client_retrans >= 5, "{o:?}");
}

#[test]
fn reordered_and_duplicated_first_datagrams_rebuild_nothing() {
    // The first flight backwards, every datagram twice.
    let o = scenario(
        &messages(15, 1000),
        |d| {
            let mut d: Vec<Vec<u8>> = d.into_iter().filter(|p| !is_parity(p)).collect();
            d.reverse();
            d.iter().flat_map(|p| [p.clone(), p.clone()]).collect()
        },
        0,
    );
    assert_eq!(o.reference_rebuilt, 0, "{o:?}");
    assert_eq!(
        (o.rebuilt, o.session_recovered, o.decode_work),
        (0, 0, 0),
        "{o:?}"
    );
}

#[test]
fn retransmissions_while_half_open_rebuild_nothing() {
    // The server's probes are lost for 700 ms: the client sends its first flight again
    // (new FEC shards carrying the same segments) before it can answer.
    let o = scenario(&messages(3, 200), |d| d, 700);
    assert!(o.client_retrans >= 3, "the client retransmitted: {o:?}");
    assert_eq!(o.reference_rebuilt, 0, "{o:?}");
    assert_eq!(
        (o.rebuilt, o.session_recovered, o.decode_work),
        (0, 0, 0),
        "{o:?}"
    );
    // And with a first flight spanning a group and its parity.
    let o = scenario(&messages(11, 1368), |d| d, 700);
    assert!(o.client_retrans >= 11, "{o:?}");
    assert_eq!(
        (o.rebuilt, o.session_recovered, o.decode_work),
        (0, 0, 0),
        "{o:?}"
    );
}

#[test]
fn parity_before_its_data_is_decoded_as_a_session_from_the_start_would() {
    // Group 0's parity overtakes its last four data shards: a decoder holding ten shards of
    // the group rebuilds the missing ones before they come (as kcp-go's does); the session
    // rebuilds exactly as many as such a decoder, and the application gets each byte once.
    let o = scenario(
        &messages(12, 1368),
        |d| {
            let (parity, data): (Vec<_>, Vec<_>) = d.into_iter().partition(|p| is_parity(p));
            let mut out: Vec<Vec<u8>> = data[..6].to_vec();
            out.extend(parity);
            out.extend_from_slice(&data[6..]);
            out
        },
        0,
    );
    assert_eq!(o.rebuilt, o.reference_rebuilt, "{o:?}");
    assert!(o.rebuilt >= 1, "{o:?}");
    // Loss and parity first: shard 8 never comes, parity comes before shard 7.
    let o = scenario(
        &messages(12, 1368),
        |d| {
            let (parity, data): (Vec<_>, Vec<_>) = d.into_iter().partition(|p| is_parity(p));
            let mut out: Vec<Vec<u8>> = data[..7].to_vec();
            out.extend(parity);
            out.push(data[7].clone());
            out.extend_from_slice(&data[9..]);
            out
        },
        0,
    );
    assert_eq!(o.rebuilt, o.reference_rebuilt, "{o:?}");
    assert_eq!(o.client_retrans, 0, "{o:?}");
}
