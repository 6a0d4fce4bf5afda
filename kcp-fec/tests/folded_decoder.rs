//! The decoder keeps no copy of a received shard, only per group which shards arrived and the
//! parity rows' sums. These tests check it against reed-solomon-erasure (any code, lengths,
//! losses, arrival order, duplicates) and pin the few places where it departs from kcp-go's
//! queue of copies: each may only give up a recovery, never deliver a wrong byte.

mod common;

use std::collections::BTreeSet;

use common::{open_all, seal_all};
use kcp_core::{Codec, LayerCounters, Millis};
use kcp_fec::{Fec, FecConfig, FecDecoder};
use kcp_testkit::rng::Rng;
use proptest::prelude::*;

const T0: Millis = Millis(u32::MAX - 1000);

/// A data packet (seqid, type, size field, datagram) and its shard (size field + datagram).
fn data_packet(seqid: u32, kcp: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut shard = ((kcp.len() + 2) as u16).to_le_bytes().to_vec();
    shard.extend_from_slice(kcp);
    let mut p = seqid.to_le_bytes().to_vec();
    p.extend_from_slice(&[0xf1, 0]);
    p.extend_from_slice(&shard);
    (p, shard)
}

fn parity_packet(seqid: u32, shard: &[u8]) -> Vec<u8> {
    let mut p = seqid.to_le_bytes().to_vec();
    p.extend_from_slice(&[0xf2, 0]);
    p.extend_from_slice(shard);
    p
}

/// One group sent by a reed-solomon-erasure encoder: padded data and parity shards, the
/// datagrams, and the packets by position.
struct Sent {
    padded: Vec<Vec<u8>>,
    kcps: Vec<Vec<u8>>,
    packets: Vec<Vec<u8>>,
}

fn send_group(
    rs: &reed_solomon_erasure::galois_8::ReedSolomon,
    ds: usize,
    ps: usize,
    begin: u32,
    lens: &[usize],
    rng: &mut Rng,
) -> Sent {
    let kcps: Vec<Vec<u8>> = lens.iter().map(|&l| rng.bytes(l)).collect();
    let mut packets = Vec::new();
    let mut padded = Vec::new();
    for (k, kcp) in kcps.iter().enumerate() {
        let (p, shard) = data_packet(begin + k as u32, kcp);
        packets.push(p);
        padded.push(shard);
    }
    let max = padded.iter().map(Vec::len).max().unwrap();
    for s in &mut padded {
        s.resize(max, 0);
    }
    padded.extend((0..ps).map(|_| vec![0u8; max]));
    rs.encode(&mut padded).unwrap();
    for j in 0..ps {
        packets.push(parity_packet(begin + (ds + j) as u32, &padded[ds + j]));
    }
    Sent {
        padded,
        kcps,
        packets,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn folded_recovery_equals_reed_solomon_erasure_reconstruct(
        ds in 1usize..=12,
        ps in 1usize..=6,
        groups in 1usize..=3,
        // Lengths within a group: ACKs, small messages, full packets.
        lens in prop::collection::vec(
            prop_oneof![0usize..=40, 41usize..=250, 1200usize..=1392],
            36,
        ),
        loss_pct in 0u64..=60,
        dup_pct in 0u64..=30,
        first_group in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let total = ds + ps;
        let rs = reed_solomon_erasure::galois_8::ReedSolomon::new(ds, ps).unwrap();
        let mut rng = Rng::new(seed);
        // Group-aligned seqids anywhere in the space (the wrap itself is kcp-go's `paws`,
        // tested elsewhere).
        let start = (first_group % (u32::MAX / total as u32 - 4)) * total as u32;
        let sent: Vec<Sent> = (0..groups)
            .map(|g| {
                let begin = start + (g * total) as u32;
                let l = &lens[(g * 12) % 36..(g * 12) % 36 + ds];
                send_group(&rs, ds, ps, begin, l, &mut rng)
            })
            .collect();
        // Loss, duplicates, and any arrival order (groups, data and parity interleaved).
        let mut arrivals: Vec<(usize, usize)> = Vec::new();
        for g in 0..groups {
            for pos in 0..total {
                if rng.below(100) >= loss_pct {
                    arrivals.push((g, pos));
                    if rng.below(100) < dup_pct {
                        arrivals.push((g, pos));
                    }
                }
            }
        }
        for i in (1..arrivals.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            arrivals.swap(i, j);
        }
        let mut dec = FecDecoder::new(ds, ps, FecConfig::default()).unwrap();
        let mut seen: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); groups];
        let mut done = vec![false; groups];
        let mut out = [0u8; 1500];
        let mut rebuilt_groups = 0;
        for &(g, pos) in &arrivals {
            dec.handle_packet(&sent[g].packets[pos], T0).unwrap();
            let mut got = Vec::new();
            while let Some(n) = dec.poll_recovered(&mut out) {
                got.push(out[..n].to_vec());
            }
            // What kcp-go's decoder does with the same arrivals.
            let mut want = Vec::new();
            if !done[g] && seen[g].insert(pos) {
                let data = seen[g].iter().filter(|&&p| p < ds).count();
                if data == ds {
                    done[g] = true;
                } else if seen[g].len() >= ds {
                    done[g] = true;
                    rebuilt_groups += 1;
                    // reed-solomon-erasure's reconstruction from the shards that arrived.
                    let mut shards: Vec<Option<Vec<u8>>> = (0..total)
                        .map(|p| seen[g].contains(&p).then(|| sent[g].padded[p].clone()))
                        .collect();
                    rs.reconstruct_data(&mut shards).unwrap();
                    for k in (0..ds).filter(|k| !seen[g].contains(k)) {
                        let shard = shards[k].as_ref().unwrap();
                        let size = u16::from_le_bytes([shard[0], shard[1]]) as usize;
                        prop_assert_eq!(&shard[2..size], &sent[g].kcps[k][..]);
                        want.push(shard[2..size].to_vec());
                    }
                }
            }
            prop_assert_eq!(got, want, "group {} position {}", g, pos);
        }
        let s = dec.stats();
        prop_assert_eq!(s.reconstructions, rebuilt_groups);
        prop_assert_eq!(s.work_refused, 0);
        prop_assert_eq!(s.errs, 0);
        prop_assert_eq!(s.misplaced, 0);
        prop_assert!(dec.heap_bytes() <= FecDecoder::heap_bound(&FecConfig::default(), ds, ps));
    }

    #[test]
    fn under_eviction_expiry_and_duplicates_no_wrong_byte_is_handed_out(
        ds in 1usize..=8,
        ps in 1usize..=4,
        groups in 2usize..=12,
        lens in prop::collection::vec(
            prop_oneof![0usize..=40, 41usize..=250, 1200usize..=1392],
            48,
        ),
        queue_kib in 1usize..=24,
        loss_pct in 0u64..=40,
        dup_pct in 0u64..=40,
        spread in 1usize..=60,
        seed in any::<u64>(),
    ) {
        // A small byte budget, the count limit, 60 s expiry and reordering over a window of
        // `spread` packets: groups are evicted whole, shards leave the count and come again.
        // Whatever is rebuilt must be a datagram of that group that did not arrive in it.
        let total = ds + ps;
        let rs = reed_solomon_erasure::galois_8::ReedSolomon::new(ds, ps).unwrap();
        let mut rng = Rng::new(seed);
        let sent: Vec<Sent> = (0..groups)
            .map(|g| {
                let l = &lens[(g * 5) % 40..(g * 5) % 40 + ds];
                send_group(&rs, ds, ps, (g * total) as u32, l, &mut rng)
            })
            .collect();
        let mut arrivals: Vec<(usize, usize)> = Vec::new();
        for g in 0..groups {
            for pos in 0..total {
                if rng.below(100) >= loss_pct {
                    arrivals.push((g, pos));
                }
                if rng.below(100) < dup_pct {
                    arrivals.push((g, pos));
                }
            }
        }
        // Each packet moves up to `spread` places later.
        for i in (0..arrivals.len()).rev() {
            let j = (i + rng.below(spread as u64) as usize).min(arrivals.len() - 1);
            let x = arrivals.remove(i);
            arrivals.insert(j, x);
        }
        let mut cfg = FecConfig::default();
        cfg.queue_bytes = queue_kib * 1024;
        let mut dec = FecDecoder::new(ds, ps, cfg).unwrap();
        let bound = FecDecoder::heap_bound(&cfg, ds, ps);
        let mut now = T0;
        let mut out = [0u8; 1500];
        for &(g, pos) in &arrivals {
            now += rng.below(4) as u32 * 7_000;
            dec.handle_packet(&sent[g].packets[pos], now).unwrap();
            while let Some(n) = dec.poll_recovered(&mut out) {
                let got = &out[..n];
                prop_assert!(
                    sent[g].kcps.iter().any(|k| k[..] == *got),
                    "group {} rebuilt a datagram it never sent", g
                );
            }
            prop_assert!(dec.queued() <= 3 * total);
            prop_assert!(dec.queued_bytes() <= cfg.queue_bytes);
            prop_assert!(dec.heap_bytes() <= bound);
        }
        prop_assert_eq!(dec.stats().errs, 0);
    }
}

/// Packets of `groups` (3,2) groups from a real sender, and their datagrams.
fn stream(groups: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut tx = Fec::new(3, 2).unwrap();
    let kcps = common::datagrams(3 * groups, 11);
    let pkts = seal_all(&mut tx, &kcps, T0);
    (pkts, kcps)
}

#[test]
fn a_data_shard_evicted_from_the_count_is_not_handed_out_again() {
    // kcp-go evicts its queue's oldest shard past 3 * (ds + ps) = 15; when the group then
    // gathers three queued shards it rebuilds every data shard not queued, the evicted one
    // too (a duplicate: it was delivered when it came). The folded decoder only has the sums,
    // which already hold the evicted shard: it rebuilds the lost one alone.
    let (pkts, kcps) = stream(14);
    let mut rx = Fec::new(3, 2).unwrap();
    let at = |g: usize, i: usize| pkts[5 * g + i].clone();
    // Group 0: data 0 and 1 (2 is lost); group 1: two data shards; groups 2..=12: one each.
    let mut first = vec![at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
    first.extend((2..=12).map(|g| at(g, 0)));
    let (_, rebuilt) = open_all(&mut rx, &first, T0);
    assert!(rebuilt.is_empty());
    assert_eq!(rx.decoder().unwrap().queued(), 15);
    // The 16th queued shard pushes group 0's data 0 out of the count.
    open_all(&mut rx, &[at(13, 0)], T0);
    assert_eq!(rx.decoder().unwrap().queued(), 15);
    assert_eq!(rx.stats().short_shards, 1);
    // Group 1 completes (the count falls to 13), then group 0's parity arrives: three queued
    // shards (data 1, parity 0 and 1), as in kcp-go, which rebuilds here.
    open_all(&mut rx, &[at(1, 2)], T0);
    let (_, rebuilt) = open_all(&mut rx, &[at(0, 3), at(0, 4)], T0);
    assert_eq!(
        rebuilt,
        vec![kcps[2].clone()],
        "data 2 only, not data 0 again"
    );
    let s = rx.stats();
    assert_eq!((s.reconstructions, s.recovered), (1, 1));
}

#[test]
fn a_shard_evicted_and_sent_again_is_queued_but_not_added_twice() {
    // Same start: group 0's data 0 leaves the count. It comes again (a retransmission by the
    // sender's ARQ): kcp-go queues it again; the sums already hold it, so adding it again
    // would take it out and rebuild garbage.
    let (pkts, kcps) = stream(14);
    let mut rx = Fec::new(3, 2).unwrap();
    let at = |g: usize, i: usize| pkts[5 * g + i].clone();
    let mut first = vec![at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
    first.extend((2..=13).map(|g| at(g, 0)));
    open_all(&mut rx, &first, T0);
    assert_eq!(rx.stats().short_shards, 1);
    // Group 1 completes; data 0 of group 0 comes again and joins the count, not a duplicate.
    open_all(&mut rx, &[at(1, 2), at(0, 0)], T0);
    assert_eq!(rx.stats().duplicates, 0);
    assert_eq!(rx.decoder().unwrap().queued(), 14);
    let (_, rebuilt) = open_all(&mut rx, &[at(0, 3)], T0);
    assert_eq!(rebuilt, vec![kcps[2].clone()]);
}

#[test]
fn a_group_whose_first_shard_expires_goes_whole() {
    // kcp-go drops only the queue's leading shards older than 60 s and could still rebuild
    // the group from the rest; a group is one set of sums here, dropped whole when its first
    // shard is 60 s old (counted in `expired`). ARQ repairs what it would have rebuilt.
    let (pkts, _) = stream(3);
    let mut rx = Fec::new(3, 2).unwrap();
    open_all(&mut rx, &pkts[0..1], T0);
    open_all(&mut rx, &pkts[1..2], T0 + 59_000);
    // Any packet 60 s after group 0's first shard expires the group.
    open_all(&mut rx, &pkts[5..6], T0 + 60_001);
    assert_eq!(rx.stats().expired, 2);
    assert_eq!(rx.decoder().unwrap().queued(), 1);
    // Its parity alone (two of three shards) rebuilds nothing; kcp-go, still holding data 1,
    // would have rebuilt data 0 (delivered long ago) and data 2.
    let (_, rebuilt) = open_all(&mut rx, &pkts[3..5], T0 + 60_002);
    assert!(rebuilt.is_empty());
    assert_eq!(rx.stats().reconstructions, 0);
}

#[test]
fn a_shard_whose_type_contradicts_its_position_is_not_queued() {
    // A data shard at a parity position (seqid 3 of a (3,2) group) would be read as parity by
    // the reconstruction; it is delivered (it is a data packet) but not kept.
    let mut dec = FecDecoder::new(3, 2, FecConfig::default()).unwrap();
    let (p, _) = data_packet(3, &[1u8; 30]);
    assert!(dec.handle_packet(&p, T0).is_ok());
    assert_eq!(dec.queued(), 0);
    assert_eq!(dec.stats().misplaced, 1);
    assert_eq!(dec.stats().data_shards, 1);
    // A layer reports it with its other counters (an endpoint's session stats).
    let mut layer = Fec::new(3, 2).unwrap();
    let mut q = p.clone();
    assert!(layer.open(&mut q, T0).is_ok());
    let mut c = LayerCounters::default();
    layer.add_counters(&mut c);
    assert_eq!(c.fec_misplaced, 1);
}

#[test]
fn the_queue_budget_counts_the_sums_and_no_input_grows_past_it() {
    // Every group holds ps rows of its longest shard's size class; a stream of groups that
    // never complete (one full-size shard each) stays within queue_bytes.
    let mut cfg = FecConfig::default();
    cfg.queue_bytes = 9 * 1024;
    let mut dec = FecDecoder::new(10, 3, cfg).unwrap();
    for g in 0..200u32 {
        let (p, _) = data_packet(g * 13, &[g as u8; 1392]);
        dec.handle_packet(&p, T0).unwrap();
        assert!(dec.queued_bytes() <= cfg.queue_bytes);
        assert!(dec.heap_bytes() <= FecDecoder::heap_bound(&cfg, 10, 3));
    }
    // 3 x 1494 bytes per group: two groups fit in 9 KiB.
    assert_eq!(dec.queued(), 2);
    assert_eq!(dec.queued_bytes(), 2 * 3 * 1494);
    assert_eq!(dec.stats().evicted_for_bytes, 198);
}

#[test]
fn sums_widened_through_the_classes_rebuild_right() {
    // Group 0 (full-size shards) completes and leaves its 2 x 1494-byte buffer in the pool;
    // groups 1 and 2 start with a small shard (in that pooled buffer), widen through the
    // classes, and lose their last data shard.
    let mut tx = Fec::new(3, 2).unwrap();
    let mut rng = Rng::new(5);
    let kcps: Vec<Vec<u8>> = [1392, 1392, 1392, 28, 198, 98, 28, 198, 1300]
        .iter()
        .map(|&l| rng.bytes(l))
        .collect();
    let pkts = seal_all(&mut tx, &kcps, T0);
    let mut rx = Fec::new(3, 2).unwrap();
    let (_, rebuilt) = open_all(&mut rx, &pkts[..5], T0);
    assert!(rebuilt.is_empty());
    let (_, rebuilt) = open_all(
        &mut rx,
        &[pkts[5].clone(), pkts[6].clone(), pkts[8].clone()],
        T0,
    );
    assert_eq!(rebuilt, vec![kcps[5].clone()]);
    let (_, rebuilt) = open_all(
        &mut rx,
        &[pkts[10].clone(), pkts[11].clone(), pkts[14].clone()],
        T0,
    );
    assert_eq!(rebuilt, vec![kcps[8].clone()]);
    assert_eq!(rx.stats().reconstructions, 2);
}
