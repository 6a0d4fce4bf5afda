//! Receiver behaviours, one test per rule: kcp-go v5.6.1's decoder plus this crate's bounds.

mod common;

use common::{datagrams, fec_packet, open_all, seal_all, sorted};
use kcp_core::{Codec, CodecError, Millis};
use kcp_fec::{Fec, FecConfig, FecDecoder, FecEncoder, PacketKind, FEC_EXPIRE_MS};

const T0: Millis = Millis(u32::MAX - 1000);

#[test]
fn malformed_packets_are_typed_errors_and_counted() {
    let mut fec = Fec::new(3, 2).unwrap();
    let cases: [(Vec<u8>, CodecError); 4] = [
        (vec![0, 0, 0, 0, 0xf1, 0, 2], CodecError::Truncated),
        (fec_packet(0, 0xf1, 1501), CodecError::Malformed),
        (
            {
                let mut p = fec_packet(0, 0xf1, 40);
                p[6] = 39;
                p
            },
            CodecError::Malformed,
        ),
        (fec_packet(0, 0xf3, 40), CodecError::Malformed),
    ];
    for (mut p, e) in cases {
        assert_eq!(fec.open(&mut p, T0), Err(e));
    }
    let s = fec.stats();
    assert_eq!(
        (s.truncated, s.oversized, s.bad_size, s.unknown_type),
        (1, 1, 1, 1)
    );
    assert!(
        fec.decoder().is_none(),
        "malformed packets build no decoder"
    );
}

#[test]
fn duplicates_are_dropped_but_data_is_still_delivered() {
    let mut fec = Fec::new(3, 2).unwrap();
    let mut p = fec_packet(0, 0xf1, 40);
    assert_eq!(fec.open(&mut p.clone(), T0), Ok(Some(8..40)));
    assert_eq!(fec.open(&mut p, T0), Ok(Some(8..40)));
    assert_eq!(fec.stats().duplicates, 1);
    assert_eq!(fec.decoder().unwrap().queued(), 1);
}

#[test]
fn incomplete_groups_expire_after_60_s_of_the_callers_clock_across_the_wrap() {
    let mut dec = FecDecoder::new(3, 2, FecConfig::default()).unwrap();
    dec.handle_packet(&fec_packet(0, 0xf1, 40), T0).unwrap();
    dec.handle_packet(&fec_packet(5, 0xf1, 40), T0 + FEC_EXPIRE_MS)
        .unwrap();
    assert_eq!(dec.queued(), 2, "exactly 60 s is not expired yet");
    dec.handle_packet(&fec_packet(10, 0xf1, 40), T0 + FEC_EXPIRE_MS + 1)
        .unwrap();
    assert_eq!(dec.queued(), 2);
    assert_eq!(dec.stats().expired, 1);
}

#[test]
fn queue_keeps_three_groups_and_counts_evicted_data_as_short_shards() {
    let mut dec = FecDecoder::new(3, 2, FecConfig::default()).unwrap();
    // One data shard per group: nothing can complete.
    for g in 0..20u32 {
        dec.handle_packet(&fec_packet(g * 5, 0xf1, 40), T0).unwrap();
        assert!(dec.queued() <= 15);
    }
    assert_eq!(dec.queued(), 15);
    assert_eq!(dec.stats().short_shards, 5);
}

#[test]
fn absurd_seqid_jumps_are_rejected_but_a_real_jump_resyncs() {
    let mut dec = FecDecoder::new(3, 2, FecConfig::default()).unwrap();
    dec.handle_packet(&fec_packet(100, 0xf1, 40), T0).unwrap();
    assert_eq!(
        dec.handle_packet(&fec_packet(0x8000_0000, 0xf1, 40), T0),
        Err(CodecError::Malformed)
    );
    assert_eq!(
        dec.handle_packet(&fec_packet(7, 0xf2, 40), T0),
        Ok(PacketKind::Parity { seqid: 7 })
    );
    assert_eq!(dec.stats().seqid_jumps, 1);
    assert!(dec
        .handle_packet(&fec_packet(7u32.wrapping_add(1 << 31), 0xf1, 40), T0)
        .is_err());
    assert!(dec
        .handle_packet(&fec_packet(7u32.wrapping_sub(1 << 25), 0xf1, 40), T0)
        .is_err());
    assert_eq!(dec.stats().seqid_jumps, 3);
    // The stream really moved: the second far packet, close to the first, re-anchors (a
    // data shard at a data position of its group, so that it is queued).
    let far = 100 + (1 << 25);
    assert!(dec.handle_packet(&fec_packet(far, 0xf1, 40), T0).is_err());
    assert_eq!(
        dec.handle_packet(&fec_packet(far + 3, 0xf1, 40), T0),
        Ok(PacketKind::Data { seqid: far + 3 })
    );
    assert_eq!(dec.queued(), 1, "the old epoch's shards are dropped");
    // After 60 s of silence anything is accepted.
    let t = T0 + FEC_EXPIRE_MS + 1;
    assert!(dec
        .handle_packet(&fec_packet(far.wrapping_add(1 << 31), 0xf1, 40), t)
        .is_ok());
}

#[test]
fn autotune_follows_the_peers_parameters() {
    let mut tx = Fec::new(10, 3).unwrap();
    let mut rx = Fec::new(3, 2).unwrap();
    let kcps = datagrams(130, 1);
    let mut pkts = seal_all(&mut tx, &kcps, T0);
    // Lose the first data packet of the last two groups.
    pkts.remove(13 * 9);
    pkts.remove(13 * 8);
    let (direct, rebuilt) = open_all(&mut rx, &pkts, T0);
    assert_eq!(rx.decoder().unwrap().shards(), (10, 3));
    assert_eq!(rx.stats().autotune_rebuilds, 1);
    assert_eq!(
        sorted(rebuilt),
        sorted(vec![kcps[80].clone(), kcps[90].clone()])
    );
    assert_eq!(direct.len(), 128);
}

#[test]
fn autotune_rebuilds_are_rate_limited_and_capped() {
    let mut cfg = FecConfig::default();
    cfg.max_shards = 16;
    cfg.autotune_interval_ms = 1000;
    let mut rx = Fec::with_config(3, 2, cfg).unwrap();
    let mut now = T0;
    // A peer switching between (10,3) and (4,4) every 60 packets, 1 ms apart.
    let mut seq = 0u32;
    for round in 0..20 {
        let (ds, ps) = if round % 2 == 0 {
            (10u32, 3u32)
        } else {
            (4, 4)
        };
        let start = seq - seq % (ds + ps) + ds + ps;
        for s in start..start + 60 {
            let ty = if s % (ds + ps) < ds { 0xf1 } else { 0xf2 };
            let _ = rx.open(&mut fec_packet(s, ty, 40), now);
            now += 1;
            seq = s;
        }
    }
    let s = rx.stats();
    assert!(
        s.autotune_rebuilds <= 2,
        "{} rebuilds in 1.2 s",
        s.autotune_rebuilds
    );
    assert!(s.autotune_suppressed > 0);
    // (20, 20) exceeds max_shards = 16 and is never adopted.
    let mut rx = Fec::with_config(3, 2, cfg).unwrap();
    for s in 0..400u32 {
        let ty = if s % 40 < 20 { 0xf1 } else { 0xf2 };
        let _ = rx.open(&mut fec_packet(s, ty, 40), T0);
    }
    assert_eq!(rx.decoder().unwrap().shards(), (3, 2));
}

#[test]
fn a_receive_only_layer_sends_plain_kcp_and_decodes_a_fec_peer() {
    let mut tx = Fec::new(10, 3).unwrap();
    let mut rx = Fec::receive_only(FecConfig::default()).unwrap();
    assert_eq!(rx.header_len(), 0);
    let mut buf = [7u8; 64];
    assert_eq!(rx.seal(&mut buf, 24, T0), Ok(24));
    assert_eq!(rx.poll_extra(&mut buf, T0), None);
    let kcps = datagrams(52, 2);
    let mut pkts = seal_all(&mut tx, &kcps, T0);
    pkts.remove(13 * 3 + 4);
    let (direct, rebuilt) = open_all(&mut rx, &pkts, T0);
    assert_eq!(
        rebuilt,
        vec![kcps[34].clone()],
        "{:?} {:?}",
        rx.stats(),
        rx.decoder().map(|d| d.shards())
    );
    assert_eq!(direct.len(), 51);
}

#[test]
fn seal_rejects_buffers_that_cannot_hold_a_packet() {
    let mut enc = FecEncoder::new(3, 2).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(enc.seal(&mut buf, 7), Err(CodecError::BufferTooSmall));
    assert_eq!(enc.seal(&mut buf, 17), Err(CodecError::BufferTooSmall));
    let mut big = vec![0u8; 1600];
    assert_eq!(enc.seal(&mut big, 1501), Err(CodecError::BufferTooSmall));
    assert_eq!(enc.next_seqid(), 0);
}

#[test]
fn a_rebuilt_shard_with_a_bad_size_field_counts_as_fec_err() {
    // Data shards whose size fields are consistent on the wire but whose parity was computed
    // over other bytes rebuild into garbage; kcp-go drops those with FECErrs.
    let mut tx = Fec::new(2, 1).unwrap();
    let kcps = vec![vec![1u8; 30], vec![2u8; 30]];
    let mut pkts = seal_all(&mut tx, &kcps, T0);
    for b in pkts[2][6..8].iter_mut() {
        *b = 0xff; // parity bytes covering the size field
    }
    let mut rx = Fec::new(2, 1).unwrap();
    let (_, rebuilt) = open_all(&mut rx, &[pkts[0].clone(), pkts[2].clone()], T0);
    assert!(rebuilt.is_empty());
    assert_eq!(rx.stats().errs, 1);
}

#[test]
fn the_byte_budget_evicts_the_oldest_shards_first_and_counts_them() {
    let mut cfg = FecConfig::default();
    // Room for six groups' sums: two parity rows of the longest shard (1494 bytes) each.
    cfg.queue_bytes = 6 * 2 * 1494;
    let mut tx = Fec::new(3, 2).unwrap();
    let kcps: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 1392]).collect();
    let pkts = seal_all(&mut tx, &kcps, T0);
    let mut rx = Fec::with_config(3, 2, cfg).unwrap();
    // The first data shard of each of 10 groups: nothing can complete.
    for g in 0..10 {
        rx.open(&mut pkts[g * 5].clone(), T0).unwrap();
    }
    let dec = rx.decoder().unwrap();
    assert_eq!(dec.queued(), 6);
    assert!(dec.queued_bytes() <= cfg.queue_bytes);
    assert_eq!(rx.stats().evicted_for_bytes, 4);
    assert_eq!(rx.stats().short_shards, 4);
    // The oldest group lost its shard: its parity rebuilds nothing.
    let (_, rebuilt) = open_all(&mut rx, &pkts[3..5], T0);
    assert!(rebuilt.is_empty());
    // The newest kept its shard: its parity rebuilds the two missing ones.
    let (_, rebuilt) = open_all(&mut rx, &pkts[48..50], T0);
    assert_eq!(sorted(rebuilt), vec![kcps[28].clone(), kcps[29].clone()]);
}

#[test]
fn trim_drops_incomplete_groups_and_decoding_goes_on() {
    let mut tx = Fec::new(3, 2).unwrap();
    let kcps = datagrams(6, 3);
    let pkts = seal_all(&mut tx, &kcps, T0);
    let mut rx = Fec::new(3, 2).unwrap();
    open_all(&mut rx, &pkts[..2], T0);
    assert_eq!(rx.decoder().unwrap().queued(), 2);
    rx.trim();
    // Nothing left queued: the decoder goes (an idle session holds none), its counters stay.
    assert!(rx.decoder().is_none());
    assert_eq!(rx.stats().expired, 2);
    assert_eq!(rx.stats().data_shards, 2);
    // Group 0's dropped shards count as lost: its two parity shards alone rebuild nothing.
    // Group 1 loses one data shard and rebuilds it.
    let mut rest: Vec<Vec<u8>> = pkts[3..].to_vec();
    rest.remove(6 - 3);
    let (_, rebuilt) = open_all(&mut rx, &rest, T0);
    assert_eq!(rebuilt, vec![kcps[4].clone()]);
}

#[test]
fn a_group_ended_by_the_senders_trim_reaches_the_receiver_as_lost_packets() {
    let mut tx = Fec::new(3, 2).unwrap();
    let kcps = datagrams(6, 4);
    let mut pkts = seal_all(&mut tx, &kcps[..1], T0);
    tx.trim();
    pkts.extend(seal_all(&mut tx, &kcps[1..], T0));
    // Group 0 ends at seqid 0 (1..=4 skipped); the packets after the trim make group 1 (5..=7,
    // parity 8 and 9) and begin group 2.
    let seqids: Vec<u32> = pkts
        .iter()
        .map(|p| u32::from_le_bytes(p[..4].try_into().unwrap()))
        .collect();
    assert_eq!(seqids, [0, 5, 6, 7, 8, 9, 10, 11]);
    let mut rx = Fec::new(3, 2).unwrap();
    pkts.remove(2);
    let (direct, rebuilt) = open_all(&mut rx, &pkts, T0);
    assert_eq!(direct.len(), 5);
    assert_eq!(rebuilt, vec![kcps[2].clone()]);
    let s = rx.stats();
    assert_eq!((s.seqid_jumps, s.autotune_rebuilds), (0, 0));
}

#[test]
fn duplicate_shards_earn_no_reconstruction_credit() {
    // One long and 15 short parity shards of a (16,16) group: rebuilding its 16 data shards
    // costs 16 x 16 x 1494 products, which these bytes do not earn, however often the long
    // one is repeated.
    let mut rx = Fec::new(16, 16).unwrap();
    let long = fec_packet(16, 0xf2, 1500);
    for _ in 0..1000 {
        rx.open(&mut long.clone(), T0).unwrap();
    }
    for k in 17..32 {
        rx.open(&mut fec_packet(k, 0xf2, 8), T0).unwrap();
    }
    let s = rx.stats();
    assert_eq!(s.duplicates, 999);
    assert_eq!(s.reconstructions, 0);
    assert!(s.work_refused > 0);
    assert_eq!(s.decode_work, 0);
}

#[test]
fn late_shards_of_a_complete_group_are_not_queued() {
    let mut dec = FecDecoder::new(3, 2, FecConfig::default()).unwrap();
    // Group 0 arrives whole: its three data shards complete it, its parity comes after.
    for s in 0..3 {
        dec.handle_packet(&fec_packet(s, 0xf1, 40), T0).unwrap();
    }
    assert_eq!(dec.queued(), 0);
    dec.handle_packet(&fec_packet(3, 0xf2, 40), T0).unwrap();
    dec.handle_packet(&fec_packet(4, 0xf2, 40), T0).unwrap();
    assert_eq!(
        dec.queued(),
        0,
        "parity of a complete group could rebuild nothing"
    );
    assert_eq!(dec.stats().late_shards, 2);
    // Group 1 loses a data shard: its parity is queued and rebuilds it.
    dec.handle_packet(&fec_packet(5, 0xf1, 40), T0).unwrap();
    dec.handle_packet(&fec_packet(7, 0xf1, 40), T0).unwrap();
    dec.handle_packet(&fec_packet(8, 0xf2, 40), T0).unwrap();
    assert_eq!(dec.stats().reconstructions, 1);
    // The lost shard, only late, and the group's second parity add nothing either.
    dec.handle_packet(&fec_packet(6, 0xf1, 40), T0).unwrap();
    dec.handle_packet(&fec_packet(9, 0xf2, 40), T0).unwrap();
    assert_eq!(dec.queued(), 0);
    assert_eq!(dec.stats().late_shards, 4);
}

#[test]
fn a_lossless_stream_keeps_the_queue_short() {
    // kcp-go queues the parity of every group received whole until its length limit (three
    // groups) pushes it out; here the queue holds at most one group in progress.
    let mut tx = Fec::new(10, 3).unwrap();
    let mut rx = Fec::new(10, 3).unwrap();
    let pkts = seal_all(&mut tx, &datagrams(1000, 7), T0);
    let mut most = 0;
    for p in &pkts {
        open_all(&mut rx, std::slice::from_ref(p), T0);
        most = most.max(rx.decoder().unwrap().queued());
    }
    assert!(most <= 10, "{most}");
    assert_eq!(rx.stats().late_shards, 300);
}
