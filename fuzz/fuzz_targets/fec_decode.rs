//! The FEC layer fed arbitrary packets: no panic, bounded output, rebuilt packets fit, and the
//! heap it holds stays within its documented bound after every packet (and after `trim`).
#![no_main]

use kcp_core::{Codec, Millis};
use kcp_fec::{Fec, FecConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    // The first byte picks the layer: a sending (3,2) layer with the defaults, a receive-only
    // one, or one that lets a peer retune up to 256 shards with a small queue budget.
    let mut cfg = FecConfig::default();
    let mut fec = match mode % 3 {
        0 => Fec::new(3, 2).unwrap(),
        1 => Fec::receive_only(cfg).unwrap(),
        _ => {
            cfg.max_shards = 256;
            cfg.queue_bytes = 16 * 1024;
            Fec::with_config(10, 3, cfg).unwrap()
        }
    };
    let bound = fec.heap_bound();
    let mut now = Millis(u32::MAX - 100);
    let mut out = [0u8; 2048];
    // Each packet: a length byte (x8) whose low bit also asks for a trim afterwards.
    while let Some((&len, tail)) = rest.split_first() {
        let trim = len & 1 == 1;
        let len = (len as usize * 8).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        let mut buf = pkt.to_vec();
        if let Ok(Some(r)) = fec.open(&mut buf, now) {
            assert!(r.end <= buf.len());
        }
        let mut n = 0;
        while let Some(m) = fec.poll_recovered(&mut out) {
            assert!(m <= out.len());
            n += 1;
            assert!(n < 1000);
        }
        let held = fec.heap_bytes();
        assert!(held <= bound, "{held} heap bytes, bound {bound}");
        if let Some(d) = fec.decoder() {
            assert!(d.queued_bytes() <= cfg.queue_bytes);
        }
        if trim {
            fec.trim();
            let held = fec.heap_bytes();
            assert!(held <= bound, "{held} heap bytes after trim, bound {bound}");
            if let Some(d) = fec.decoder() {
                assert_eq!(d.queued(), 0);
            }
        }
        now += 7;
    }
});
