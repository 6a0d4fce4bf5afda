//! A server session's first datagrams go through its own FEC layer, with encryption opened by
//! the endpoint (the stack kcp-mio builds: crypto as the demux layer, FEC inside it).
//!
//! A new peer's first flight waits in the endpoint's half-open entry until the peer answers
//! the probe; the entry keeps the datagrams as the crypto layer opened them and the new
//! session's FEC layer opens them at confirmation. So on a loss-free path the session
//! rebuilds nothing when the first group's parity comes, and a shard lost in the first group
//! is rebuilt from that parity. Driven by hand between two endpoints built from one
//! [`KcpConfig`] (kcp-go's CFB layout and a replay-protected AEAD mode).

use kcp_core::endpoint::{Endpoint, SessionId};
use kcp_core::{Config, Millis};
use kcp_mio::KcpConfig;

const CONV: u32 = 0x0f0f_0f0f;
const LATER: usize = 30;

fn drain(ep: &mut Endpoint<u8>, now: Millis) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some((_, n)) = ep.poll_transmit(now, &mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

#[derive(Debug)]
struct Outcome {
    rebuilt: u64,
    session_recovered: u64,
    decode_work: u64,
    client_retrans: u64,
    dropped: u64,
}

/// Sends `first` (before the client can hear the server), with the client's first batch of
/// datagrams rewritten by `mangle`, then `LATER` 64-byte messages a millisecond apart once
/// the session exists; returns what the server's session did once it has every byte, in
/// order.
fn run(crypt: &str, first: &[u8], mangle: impl FnOnce(Vec<Vec<u8>>) -> Vec<Vec<u8>>) -> Outcome {
    let cfg = KcpConfig::new(Config::fast3().with_windows(256, 256))
        .fec(10, 3)
        .crypt(crypt, "first flight")
        .unwrap();
    let mut server = Endpoint::new(cfg.endpoint_config(true).unwrap()).unwrap();
    let mut client = Endpoint::new(cfg.endpoint_config(false).unwrap()).unwrap();
    let start = Millis(1_000);
    let mut now = start;
    let c = client.connect(now, 0, CONV).unwrap();
    assert_eq!(client.send(c, first), Ok(first.len()));
    let later: Vec<Vec<u8>> = (0..LATER).map(|i| vec![i as u8; 64]).collect();
    let want = [first.to_vec(), later.concat()].concat();
    for mut d in mangle(drain(&mut client, now)) {
        let _ = server.handle_datagram(now, 1, &mut d);
    }
    let mut id: Option<SessionId> = None;
    let (mut got, mut sent) = (Vec::new(), 0);
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..3_000 {
        let mut moved = true;
        while moved {
            moved = false;
            for mut d in drain(&mut client, now) {
                let _ = server.handle_datagram(now, 1, &mut d);
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
                let _ = client.handle_datagram(now, 0, &mut d);
                moved = true;
            }
            while client.poll_event().is_some() {}
        }
        if got.len() >= want.len() {
            break;
        }
        if id.is_some() && sent < LATER {
            assert_eq!(client.send(c, &later[sent]), Ok(64));
            sent += 1;
        }
        now += 1;
        client.handle_timeout(now);
        server.handle_timeout(now);
    }
    assert!(
        got == want,
        "{crypt}: every byte once, in order ({} of {})",
        got.len(),
        want.len()
    );
    let s = server.session(id.unwrap()).unwrap();
    let st = server.stats();
    Outcome {
        rebuilt: s.layer_counters().fec_recovered_shards,
        session_recovered: s.stats().fec_recovered,
        decode_work: s.layer_counters().fec_decode_work,
        client_retrans: client.session(c).unwrap().kcp().stats().retrans_segs,
        dropped: st.in_errs + st.in_csum_errors + st.half_open_dropped,
    }
}

const CRYPTS: [&str; 2] = ["aes", "aes-128-gcm-replay"];

#[test]
fn encrypted_first_flights_without_loss_rebuild_nothing() {
    for crypt in CRYPTS {
        // A 64-byte request (kcp-perf's echo), and 14 full datagrams (a whole group and its
        // parity before the client can hear the probe).
        for first in [vec![7u8; 64], (0..14 * 1300).map(|i| i as u8).collect()] {
            let o = run(crypt, &first, |d| d);
            assert_eq!(o.dropped, 0, "{crypt}: {o:?}");
            assert_eq!(
                (o.rebuilt, o.session_recovered, o.decode_work),
                (0, 0, 0),
                "{crypt}: nothing lost, nothing rebuilt: {o:?}"
            );
            assert_eq!(o.client_retrans, 0, "{crypt}: {o:?}");
        }
    }
}

#[test]
fn an_encrypted_first_group_rebuilds_its_lost_shard_at_confirmation() {
    for crypt in CRYPTS {
        // 12 full datagrams: shards 0-9, the group's 3 parity shards, shards 10-11 (sealed,
        // so told apart by position only). Shard 4 is lost.
        let first: Vec<u8> = (0..12 * 1300).map(|i| (i / 7) as u8).collect();
        let o = run(crypt, &first, |mut d| {
            assert!(d.len() >= 15, "{} datagrams", d.len());
            d.remove(4);
            d
        });
        assert_eq!(o.rebuilt, 1, "{crypt}: {o:?}");
        assert_eq!(o.session_recovered, 1, "{crypt}: {o:?}");
        assert_eq!(
            o.client_retrans, 0,
            "{crypt}: FEC repaired it, not ARQ: {o:?}"
        );
    }
}
