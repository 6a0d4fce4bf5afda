//! A listener answers a first flight with a window probe sealed by the half-open entry's own
//! codec stack (FEC seqids from the entry's random starting point, its own cipher nonce); the
//! session exists once the peer answers. A client endpoint built from the same settings must
//! open that first probe at once (no codec error, no seqid jump) and its answer must open the
//! session, for each stack: null, FEC, aes, aes + FEC, salsa20 + FEC. (kcp-go clients are
//! checked against a kcp-mio server, FEC on and off, by the `kcpgo_interop` tests.)

use kcp_core::endpoint::Endpoint;
use kcp_core::{Config, Millis};
use kcp_mio::KcpConfig;

fn one_round_trip(name: &str, config: KcpConfig) {
    let mut server = Endpoint::new(config.endpoint_config(true).unwrap()).unwrap();
    let mut client = Endpoint::new(config.endpoint_config(false).unwrap()).unwrap();
    let now = Millis(1_000);
    let mut buf = vec![0u8; 1500];
    let (c_addr, s_addr) = (1u32, 2u32);
    let id = client.connect(now, s_addr, 0x1234_5678).unwrap();
    client.send(id, b"hello").unwrap();
    // Client's first flight (and FEC parity, if any) to the server.
    let mut to_server = Vec::new();
    while let Some((to, n)) = client.poll_transmit(now, &mut buf) {
        assert_eq!(to, s_addr);
        to_server.push(buf[..n].to_vec());
    }
    assert!(!to_server.is_empty(), "{name}: a first flight");
    for mut d in to_server {
        let _ = server.handle_datagram(now, c_addr, &mut d);
    }
    assert!(
        server.accept().is_none(),
        "{name}: no session before the answer"
    );
    assert_eq!(server.stats().half_open, 1, "{name}");
    // The server's probes (one) to the client, which must open every one.
    let mut probes = 0;
    while let Some((to, n)) = server.poll_transmit(now, &mut buf) {
        assert_eq!(to, c_addr);
        probes += 1;
        let mut d = buf[..n].to_vec();
        let r = client.handle_datagram(now, s_addr, &mut d);
        assert!(
            r.is_ok(),
            "{name}: the client refused probe {probes}: {r:?}"
        );
    }
    assert_eq!(probes, 1, "{name}: one probe per first flight");
    let stats = client.stats();
    assert_eq!(
        (stats.in_errs, stats.in_csum_errors),
        (0, 0),
        "{name}: {stats:?}"
    );
    // The client's answer (WINS, at its next flush) opens the session, which delivers the
    // first flight.
    let now = Millis(1_050);
    client.handle_timeout(now);
    let mut to_server = Vec::new();
    while let Some((_, n)) = client.poll_transmit(now, &mut buf) {
        to_server.push(buf[..n].to_vec());
    }
    assert!(
        !to_server.is_empty(),
        "{name}: the client answers the probe"
    );
    for mut d in to_server {
        let _ = server.handle_datagram(now, c_addr, &mut d);
    }
    let sid = server
        .accept()
        .unwrap_or_else(|| panic!("{name}: the answer opens the session: {:?}", server.stats()));
    let mut got = [0u8; 16];
    assert_eq!(server.recv(sid, &mut got), Ok(5), "{name}");
    assert_eq!(&got[..5], b"hello");
}

#[test]
fn a_client_opens_the_first_probe_of_every_stack() {
    let base = KcpConfig::new(Config::fast3());
    one_round_trip("null", base.clone());
    one_round_trip("fec 10/3", base.clone().fec(10, 3));
    one_round_trip("aes", base.clone().crypt("aes", "probe").unwrap());
    one_round_trip(
        "aes + fec 10/3",
        base.clone().fec(10, 3).crypt("aes", "probe").unwrap(),
    );
    one_round_trip(
        "salsa20 + fec 10/3",
        base.fec(10, 3).crypt("salsa20", "probe").unwrap(),
    );
}
