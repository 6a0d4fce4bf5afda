//! The FEC layer fed arbitrary packets: no panic, bounded output, rebuilt packets fit.
#![no_main]

use kcp_core::{Codec, Millis};
use kcp_fec::Fec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fec = Fec::new(3, 2).unwrap();
    let mut now = Millis(u32::MAX - 100);
    let mut out = [0u8; 2048];
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize * 8).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        let mut buf = pkt.to_vec();
        if let Ok(Some(r)) = fec.open(&mut buf, now) {
            assert!(r.end <= buf.len());
        }
        let mut n = 0;
        while fec.poll_recovered(&mut out).is_some() {
            n += 1;
            assert!(n < 1000);
        }
        now += 7;
    }
});
