//! Helpers shared by the integration tests.
#![allow(dead_code)]

use kcp_core::{Codec, Millis};
use kcp_fec::Fec;
use kcp_testkit::rng::Rng;

/// Seals each KCP datagram with `fec`; returns every packet in wire order (data, then parity
/// after each group's last data packet).
pub fn seal_all(fec: &mut Fec, kcps: &[Vec<u8>], now: Millis) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1500];
    for k in kcps {
        buf[8..8 + k.len()].copy_from_slice(k);
        let n = fec.seal(&mut buf, 8 + k.len(), now).unwrap();
        out.push(buf[..n].to_vec());
        while let Some(r) = fec.poll_extra(&mut buf, now) {
            out.push(buf[..r.unwrap()].to_vec());
        }
    }
    out
}

/// Opens each packet with `fec`; returns the KCP datagrams delivered directly and rebuilt.
pub fn open_all(fec: &mut Fec, pkts: &[Vec<u8>], now: Millis) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut direct, mut rebuilt) = (Vec::new(), Vec::new());
    let mut out = [0u8; 1500];
    for p in pkts {
        let mut p = p.clone();
        if let Ok(Some(r)) = fec.open(&mut p, now) {
            direct.push(p[r].to_vec());
        }
        while let Some(n) = fec.poll_recovered(&mut out) {
            rebuilt.push(out[..n].to_vec());
        }
    }
    (direct, rebuilt)
}

/// `n` KCP-sized datagrams of varied lengths (24..=1392 bytes), deterministic in `seed`.
pub fn datagrams(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = 24 + rng.below(1369) as usize;
            rng.bytes(len)
        })
        .collect()
}

pub fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// An FEC packet as any sender may write it: `seqid`, type byte `ty` (0xf1 data, 0xf2
/// parity), `len` bytes in all, a data shard's size field consistent with its length.
pub fn fec_packet(seqid: u32, ty: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[..4].copy_from_slice(&seqid.to_le_bytes());
    p[4] = ty;
    if ty == 0xf1 {
        p[6..8].copy_from_slice(&((len - 6) as u16).to_le_bytes());
    }
    p
}
