//! A listening endpoint with a crypto demux layer and FEC routing (kcp-go's stack, AES-128,
//! FEC 10/3), fed datagrams from arbitrary small-numbered addresses: sealed by a peer with the
//! right key (so routing, admission, FEC and the engines see arbitrary content), or raw. No
//! panic, sessions within the caps, memory bounded, `poll_transmit` terminates.
#![no_main]

mod common;

use common::{code, crypt};
use kcp_core::endpoint::{Endpoint, EndpointConfig};
use kcp_core::{Codec, Config, Layer, Millis};
use kcp_crypto::HEADER_LEN;
use kcp_fec::{Fec, FecConfig};
use libfuzzer_sys::fuzz_target;

const MAX_SESSIONS: usize = 8;
/// Per session: windows of 32 segments and the FEC layer's bound, generously rounded up.
const HEAP_PER_SESSION: usize = 2 << 20;

fuzz_target!(|data: &[u8]| {
    let mut seed = 10;
    let cfg = EndpointConfig {
        session: Config::fast3().with_windows(32, 32),
        layers: Box::new(move || {
            seed += 1;
            vec![
                Box::new(Fec::with_code(code().clone(), FecConfig::default())) as Layer,
                Box::new(crypt(seed)) as Layer,
            ]
        }),
        demux_layers: 1,
        accept: true,
        backlog: 4,
        max_sessions: MAX_SESSIONS,
        max_half_open: 6,
        max_half_open_per_host: 3,
        ..EndpointConfig::new(Config::fast3())
    };
    let Ok(mut ep) = Endpoint::<u8>::new(cfg) else {
        return;
    };
    let mut peer = crypt(2);
    let mut now = Millis(u32::MAX - 10);
    let mut out = [0u8; 1500];
    let mut rest = data;
    while rest.len() >= 3 {
        let (op, from, len) = (rest[0], rest[1] % 16, rest[2] as usize * 6);
        let len = len.min(rest.len() - 3);
        let body = &rest[3..3 + len];
        rest = &rest[3 + len..];
        match op % 4 {
            0 | 1 => {
                let mut buf = vec![0u8; HEADER_LEN + body.len()];
                buf[HEADER_LEN..].copy_from_slice(body);
                if let Ok(n) = peer.seal(&mut buf, HEADER_LEN + body.len(), now) {
                    let _ = ep.handle_datagram(now, from, &mut buf[..n]);
                }
            }
            2 => {
                let mut buf = body.to_vec();
                let _ = ep.handle_datagram(now, from, &mut buf);
            }
            _ => {
                now += u32::from(op) * 31;
                ep.handle_timeout(now);
                if let Some(id) = ep.accept() {
                    let _ = ep.send(id, body);
                }
            }
        }
        let mut n = 0;
        while ep.poll_transmit(now, &mut out).is_some() {
            n += 1;
            assert!(n < 100_000, "poll_transmit does not terminate");
        }
        while ep.poll_event().is_some() {}
        assert!(ep.len() <= MAX_SESSIONS);
        assert!(ep.stats().half_open <= 6);
        let (sessions, pooled) = ep.heap_bytes();
        assert!(
            sessions <= MAX_SESSIONS * HEAP_PER_SESSION,
            "{sessions} bytes in sessions"
        );
        assert!(pooled <= EndpointConfig::new(Config::fast3()).pool_bytes);
    }
});
