//! A new session's first packets are protected by parity. The server endpoint seals its probe
//! to a new peer with the codec stack the session then takes over, and trims that stack while
//! the peer is unconfirmed; the trim ends the probe's FEC group, so the session's first ten
//! data packets make a whole group of their own, parity included, instead of finishing the
//! probe's group without parity.

use kcp_core::endpoint::{Endpoint, EndpointConfig};
use kcp_core::{Config, Layer, Millis};
use kcp_fec::{Fec, FecCode, FecConfig, TYPE_PARITY};

fn endpoint(accept: bool) -> Endpoint<u8> {
    let code = FecCode::new(10, 3).unwrap();
    Endpoint::new(EndpointConfig {
        accept,
        layers: Box::new(move || {
            vec![Box::new(Fec::with_code(code.clone(), FecConfig::default())) as Layer]
        }),
        ..EndpointConfig::new(Config::fast3())
    })
    .unwrap()
}

#[test]
fn the_first_ten_packets_after_the_probe_get_their_parity() {
    let (mut client, mut server) = (endpoint(false), endpoint(true));
    let mut t = 1_000u32;
    let id = client.connect(Millis(t), 0, 0x0102_0304).unwrap();
    let mut accepted = None;
    // (seqid, parity) of every datagram the server sent.
    let mut sent: Vec<(u32, bool)> = Vec::new();
    let mut buf = vec![0u8; 2_000];
    let mut msg = [0u8; 256];
    // A message every 50 ms, echoed: 15 echoes.
    for ms in 0..800u32 {
        t += 1;
        let now = Millis(t);
        if ms % 50 == 0 && ms < 750 {
            client.send(id, &[ms as u8; 64]).unwrap();
        }
        client.handle_timeout(now);
        server.handle_timeout(now);
        while let Some((_, n)) = client.poll_transmit(now, &mut buf) {
            let _ = server.handle_datagram(now, 1, &mut buf[..n]);
        }
        while let Some(sid) = server.accept() {
            accepted = Some(sid);
        }
        if let Some(sid) = accepted {
            while let Ok(n) = server.recv(sid, &mut msg) {
                server.send(sid, &msg[..n]).unwrap();
            }
        }
        while let Some((_, n)) = server.poll_transmit(now, &mut buf) {
            let seqid = u32::from_le_bytes(buf[..4].try_into().unwrap());
            let kind = u16::from_le_bytes(buf[4..6].try_into().unwrap());
            sent.push((seqid, kind == TYPE_PARITY));
            let _ = client.handle_datagram(now, 0, &mut buf[..n]);
        }
        while client.recv(id, &mut msg).is_ok() {}
        while client.poll_event().is_some() {}
        while server.poll_event().is_some() {}
    }
    assert!(accepted.is_some());
    // The probe (seqid 0) ends group 0; the session's datagrams start group 1 at seqid 13.
    assert_eq!(sent.first(), Some(&(0, false)), "{sent:?}");
    let after: Vec<(u32, bool)> = sent[1..].iter().take(13).copied().collect();
    let want: Vec<(u32, bool)> = (13..26).map(|s| (s, s >= 23)).collect();
    assert_eq!(after, want, "the server's datagrams after its probe");
}
