//! A whole session stack (FEC inside kcp-go's AES packet crypto, then the engine) fed
//! datagrams that a peer sealed with the right key (so the CRC passes and FEC and the engine
//! see arbitrary content), raw datagrams, application writes and time. No panic, bounded
//! memory, `poll_transmit` terminates.
#![no_main]

mod common;

use common::{code, crypt};
use kcp_core::{Codec, Config, Layer, Millis, Session};
use kcp_crypto::HEADER_LEN;
use kcp_fec::{Fec, FecConfig};
use libfuzzer_sys::fuzz_target;

/// Far above what windows of 32 segments and the FEC layer's own bound allow, far below
/// "grows with the input".
const HEAP_LIMIT: usize = 2 << 20;

fuzz_target!(|data: &[u8]| {
    let cfg = Config::fast3().with_windows(32, 32);
    let layers: Vec<Layer> = vec![
        Box::new(Fec::with_code(code().clone(), FecConfig::default())),
        Box::new(crypt(1)),
    ];
    let Ok(mut session) = Session::new(0x1234_5678, cfg, layers, Millis(u32::MAX - 100)) else {
        return;
    };
    let mut peer = crypt(2);
    let mut now = Millis(u32::MAX - 100);
    let mut out = [0u8; 1500];
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        let len =
            (tail.first().copied().unwrap_or(0) as usize * 6).min(tail.len().saturating_sub(1));
        let body = tail.get(1..1 + len).unwrap_or(&[]);
        rest = tail.get(1 + len..).unwrap_or(&[]);
        match op % 4 {
            0 => {
                // The peer seals `body` (an FEC or KCP packet) with the shared key.
                let mut buf = vec![0u8; HEADER_LEN + body.len() + 16];
                buf[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
                if let Ok(n) = peer.seal(&mut buf, HEADER_LEN + body.len(), now) {
                    let _ = session.handle_datagram(now, &mut buf[..n]);
                }
            }
            1 => {
                let mut buf = body.to_vec();
                let _ = session.handle_datagram(now, &mut buf);
            }
            2 => {
                if !body.is_empty() {
                    let _ = session.kcp_mut().send(body);
                }
            }
            _ => {
                now += u32::from(op) * 7;
                session.kcp_mut().handle_timeout(now);
            }
        }
        let mut n = 0;
        while session.poll_transmit(now, &mut out).is_some() {
            n += 1;
            assert!(n < 100_000, "poll_transmit does not terminate");
        }
        let mut sink = [0u8; 4096];
        while session.kcp_mut().recv(&mut sink).is_ok() {}
        assert!(
            session.heap_bytes() <= HEAP_LIMIT,
            "session holds {} bytes",
            session.heap_bytes()
        );
    }
    session.trim();
    assert!(session.heap_bytes() <= HEAP_LIMIT);
});
