//! Property tests: recovery under any erasure of at most `ps` per group, and arbitrary input
//! to the decoder (no panic, bounded memory).

mod common;

use common::{open_all, sorted};
use kcp_core::{Codec, Millis};
use kcp_fec::{Fec, FecConfig, FecEncoder};
use kcp_testkit::rng::Rng;
use proptest::prelude::*;

fn kcp_datagrams(max: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..=1392), 1..=max)
}

proptest! {
    // 64 cases keep `cargo test` fast; PROPTEST_CASES=N runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_erasure_of_at_most_ps_per_group_is_recovered(
        ds in 1usize..=12,
        ps in 1usize..=4,
        near_wrap in any::<bool>(),
        reorder in any::<bool>(),
        kcps in kcp_datagrams(40),
        erasure_seed in any::<u64>(),
        start in any::<u32>(),
    ) {
        let total = ds + ps;
        let mut enc = FecEncoder::new(ds, ps).unwrap();
        let first = if near_wrap { enc.paws() - (total as u32) * 2 } else { start };
        enc.set_next_seqid(first);
        let first = enc.next_seqid();
        // Encode with numbering from `first` (anywhere, or just before the wrap).
        let pkts = {
            let mut out = Vec::new();
            let mut buf = vec![0u8; 1500];
            for k in &kcps {
                buf[8..8 + k.len()].copy_from_slice(k);
                let n = enc.seal(&mut buf, 8 + k.len()).unwrap();
                out.push(buf[..n].to_vec());
                while let Some(r) = enc.poll_parity(&mut buf) {
                    out.push(buf[..r.unwrap()].to_vec());
                }
            }
            out
        };
        // Erase at most ps packets of every complete group (the trailing partial group has no
        // parity and keeps all its packets).
        let complete = kcps.len() / ds;
        let mut rng = Rng::new(erasure_seed);
        let mut kept = Vec::new();
        for (g, chunk) in pkts.chunks(total).enumerate() {
            let mut erased = 0u64;
            if g < complete {
                let n = rng.below(ps as u64 + 1) as usize;
                for _ in 0..n {
                    erased |= 1 << rng.below(total as u64);
                }
            }
            for (i, p) in chunk.iter().enumerate() {
                if erased & (1 << i) == 0 {
                    kept.push(p.clone());
                }
            }
        }
        // Mild reordering: swap neighbours now and then, across group boundaries too.
        if reorder {
            for i in 1..kept.len() {
                if rng.below(4) == 0 {
                    kept.swap(i - 1, i);
                }
            }
        }
        let mut rx = Fec::new(ds, ps).unwrap();
        let (direct, rebuilt) = open_all(&mut rx, &kept, Millis(first));
        let mut got = direct;
        got.extend(rebuilt);
        // As in kcp-go, a group whose data all arrived can be "rebuilt" again from later parity
        // when ps >= ds (the session drops the duplicate), so compare distinct datagrams.
        let mut got = sorted(got);
        got.dedup();
        let mut want = sorted(kcps.clone());
        want.dedup();
        prop_assert!(got == want, "delivered {} distinct datagrams, sent {}", got.len(), want.len());
        prop_assert_eq!(rx.stats().seqid_jumps, 0);
    }

    #[test]
    fn parity_equals_a_whole_group_encode_by_reed_solomon_erasure(
        ds in 1usize..=12,
        ps in 1usize..=5,
        // Lengths that grow and shrink within a group: small messages, ACKs, full packets.
        lens in prop::collection::vec(
            prop_oneof![1usize..=40, 41usize..=200, 1300usize..=1392],
            1..=60,
        ),
        seed in any::<u64>(),
    ) {
        // The encoder folds each data shard into the parity as it is sealed; the oracle
        // encodes each complete group at its end, every shard zero-padded to the longest.
        let oracle = reed_solomon_erasure::galois_8::ReedSolomon::new(ds, ps).unwrap();
        let mut enc = FecEncoder::new(ds, ps).unwrap();
        let mut rng = Rng::new(seed);
        let mut buf = vec![0u8; 1500];
        let mut group: Vec<Vec<u8>> = Vec::new();
        let mut groups = 0;
        for len in lens {
            let kcp: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
            buf[8..8 + len].copy_from_slice(&kcp);
            enc.seal(&mut buf, 8 + len).unwrap();
            group.push(buf[6..8 + len].to_vec());
            let mut parity = Vec::new();
            while let Some(r) = enc.poll_parity(&mut buf) {
                parity.push(buf[..r.unwrap()].to_vec());
            }
            if group.len() < ds {
                prop_assert!(parity.is_empty());
                continue;
            }
            let max = group.iter().map(Vec::len).max().unwrap();
            let mut shards: Vec<Vec<u8>> = group
                .drain(..)
                .map(|mut s| {
                    s.resize(max, 0);
                    s
                })
                .chain((0..ps).map(|_| vec![0u8; max]))
                .collect();
            oracle.encode(&mut shards).unwrap();
            prop_assert_eq!(parity.len(), ps);
            for (p, want) in parity.iter().zip(&shards[ds..]) {
                prop_assert_eq!(p.len(), 6 + max);
                prop_assert_eq!(&p[4..6], &[0xf2u8, 0][..]);
                prop_assert_eq!(&p[6..], &want[..]);
            }
            groups += 1;
        }
        prop_assert_eq!(enc.next_seqid() as usize, groups * (ds + ps) + group.len());
    }

    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(
        ds in 1usize..=10,
        ps in 1usize..=4,
        max_shards in 2usize..=40,
        packets in prop::collection::vec(
            (any::<u32>(), 0u8..6, any::<u16>(), 0usize..1600, any::<u8>(), 0u32..70_000),
            1..300,
        ),
    ) {
        let mut cfg = FecConfig::default();
        cfg.max_shards = max_shards;
        let mut fec = Fec::with_config(ds, ps, cfg).unwrap();
        let mut now = Millis(u32::MAX - 100_000);
        let mut base = 0u32;
        let mut out = [0u8; 1500];
        let mut small = [0u8; 16];
        for (i, (seq, kind, size, len, fill, dt)) in packets.into_iter().enumerate() {
            now += dt % 3 * dt;
            let mut p = vec![fill; len];
            // Mostly plausible seqids near a moving base, sometimes anything.
            let seqid = if seq % 4 == 0 { seq } else { base.wrapping_add(seq % 64) };
            base = base.wrapping_add(seq % 5);
            if len >= 4 {
                p[..4].copy_from_slice(&seqid.to_le_bytes());
            }
            if len >= 6 {
                p[4] = [0xf1, 0xf2, 0xf3, 0x51, fill, 0xf1][kind as usize];
                p[5] = if kind == 4 { fill } else { 0 };
            }
            if len >= 8 {
                let sz = if size % 2 == 0 { (len - 6) as u16 } else { size };
                p[6..8].copy_from_slice(&sz.to_le_bytes());
            }
            let res = fec.open(&mut p, now);
            if let Ok(Some(r)) = res {
                prop_assert!(r.end <= len);
            }
            let buf: &mut [u8] = if i % 7 == 0 { &mut small } else { &mut out };
            while let Some(n) = fec.poll_recovered(buf) {
                prop_assert!(n <= buf.len());
            }
            if let Some(dec) = fec.decoder() {
                prop_assert!(dec.queued() <= 3 * max_shards.max(ds + ps) + 1);
                prop_assert!(dec.queued_bytes() <= cfg.queue_bytes);
                let (d, p) = dec.shards();
                prop_assert!(d + p <= max_shards.max(ds + ps));
            }
            prop_assert!(fec.heap_bytes() <= fec.heap_bound());
            if i % 50 == 49 {
                fec.trim();
                prop_assert!(fec.heap_bytes() <= fec.heap_bound());
            }
        }
    }
}
