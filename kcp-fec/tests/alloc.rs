//! The heap the FEC layer holds, measured by a counting global allocator (live bytes per test
//! thread): a fresh layer, a layer after a few small packets and after a 1 MiB burst once
//! trimmed, layers sharing one code, and a hostile peer's flood. Every measurement is also
//! checked against `Codec::heap_bytes`, so the accounting the session relies on is exact.
//! Run with `--nocapture` to see the numbers.

mod common;

use common::fec_packet;
use kcp_core::{Codec, Millis};
use kcp_fec::{Fec, FecCode, FecConfig, FecDecoder, FecEncoder};
use kcp_testkit::alloc::{self, Counting};
use kcp_testkit::rng::Rng;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap bytes of this thread.
fn live() -> isize {
    alloc::thread_live()
}

/// Asserts that the layers' `heap_bytes` account for exactly the heap allocated since
/// `base` (up to the rounding of a shared code's split between its holders).
fn assert_accounted(what: &str, base: isize, layers: &[&Fec]) -> usize {
    let measured = (live() - base) as usize;
    let reported: usize = layers.iter().map(|l| l.heap_bytes()).sum();
    assert!(
        reported.abs_diff(measured) <= layers.len() * 2,
        "{what}: heap_bytes says {reported}, the allocator {measured}"
    );
    measured
}

/// Seals one datagram of `kcp_len` bytes with `tx` and opens it (and any parity) with `rx`,
/// all in stack buffers, losing the packets for which `lose` says so; returns datagrams rebuilt.
fn transfer(
    tx: &mut Fec,
    rx: &mut Fec,
    kcp_len: usize,
    fill: u8,
    now: Millis,
    mut lose: impl FnMut() -> bool,
) -> usize {
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 1500];
    let hl = tx.header_len();
    buf[hl..hl + kcp_len].fill(fill);
    let mut n = tx.seal(&mut buf, hl + kcp_len, now).unwrap();
    let mut rebuilt = 0;
    loop {
        if !lose() {
            let _ = rx.open(&mut buf[..n], now).unwrap();
            while rx.poll_recovered(&mut out).is_some() {
                rebuilt += 1;
            }
        }
        match tx.poll_extra(&mut buf, now) {
            Some(r) => n = r.unwrap(),
            None => return rebuilt,
        }
    }
}

#[test]
fn a_fresh_receive_only_layer_holds_no_heap() {
    let base = live();
    let fec = Fec::receive_only(FecConfig::default()).unwrap();
    let held = assert_accounted("receive_only", base, &[&fec]);
    println!(
        "fresh Fec::receive_only: {held} heap bytes (size_of::<Fec>() = {})",
        size_of::<Fec>()
    );
    assert_eq!(held, 0);
}

#[test]
fn a_fresh_10_3_layer_holds_its_encoder_and_matrix_only() {
    let base = live();
    let fec = Fec::new(10, 3).unwrap();
    let held = assert_accounted("Fec::new(10, 3)", base, &[&fec]);
    println!(
        "fresh Fec::new(10, 3): {held} heap bytes (encoder box {}, matrix {})",
        size_of::<FecEncoder>(),
        FecCode::new(10, 3).unwrap().heap_bytes()
    );
    assert!(fec.decoder().is_none());
    assert!(held <= 256, "{held}");
}

#[test]
fn layers_built_from_one_code_share_its_matrix() {
    let code = FecCode::new(10, 3).unwrap();
    let base = live();
    let layers: Vec<Fec> = (0..100)
        .map(|_| Fec::with_code(code.clone(), FecConfig::default()))
        .collect();
    let per_layer = ((live() - base) as usize - layers.capacity() * size_of::<Fec>()) / 100;
    println!("Fec::with_code(10, 3): {per_layer} heap bytes per layer, matrix shared");
    assert_eq!(per_layer, size_of::<FecEncoder>());
    let shares: usize = layers.iter().map(|l| l.heap_bytes()).sum();
    assert!(shares.abs_diff(100 * per_layer + code.heap_bytes()) <= 200);
}

#[test]
fn a_receive_only_layer_builds_its_decoder_on_the_first_fec_packet() {
    let mut tx = Fec::new(10, 3).unwrap();
    let mut data = [7u8; 68];
    let n = tx.seal(&mut data, 68, Millis(0)).unwrap();
    let base = live();
    let mut rx = Fec::receive_only(FecConfig::default()).unwrap();
    // Plain KCP (an ACK: cmd 82) builds nothing.
    let mut ack = [0x44, 0x33, 0x22, 0x11, 0x52, 0x00, 0x20, 0x00];
    rx.open(&mut ack, Millis(0)).unwrap();
    assert!(rx.decoder().is_none());
    assert_eq!(live(), base);
    rx.open(&mut data[..n], Millis(0)).unwrap();
    let held = assert_accounted("receive_only, one FEC packet", base, &[&rx]);
    assert!(rx.decoder().is_some());
    rx.trim();
    let idle = assert_accounted("receive_only, one FEC packet, trimmed", base, &[&rx]);
    println!("receive_only after one FEC packet: {held} heap bytes, {idle} after trim");
    assert!(held <= 2048, "{held}");
    // The decoder's box, the autotune ring (the flood contradicted (1,1)) and the (1,1) code.
    assert!(idle <= 1024, "{idle}");
}

#[test]
fn a_few_small_packets_each_way_leave_a_small_layer_after_trim() {
    let base = live();
    let mut a = Fec::new(10, 3).unwrap();
    let mut b = Fec::new(10, 3).unwrap();
    for i in 0..3 {
        transfer(&mut a, &mut b, 60, i, Millis(10 * i as u32), || false);
        transfer(&mut b, &mut a, 60, i, Millis(10 * i as u32 + 5), || false);
    }
    let busy = assert_accounted("3 x 60 bytes each way", base, &[&a, &b]);
    let enc = a.encoder().unwrap();
    let shard_data = enc.heap_bytes() - enc.code().heap_bytes() / 2;
    a.trim();
    b.trim();
    let idle = assert_accounted("after trim", base, &[&a, &b]);
    println!(
        "after three 60-byte datagrams each way: {} heap bytes per layer, of which the \
         encoder's partial group {shard_data}; after trim {} (size_of FecEncoder {}, \
         FecDecoder {})",
        busy / 2,
        idle / 2,
        size_of::<FecEncoder>(),
        size_of::<FecDecoder>()
    );
    // Three shards of 62 bytes (size field + datagram), grown by doubling: 248 at most.
    assert!(shard_data <= 4 * 62, "{shard_data}");
    // Encoder and decoder boxes and the matrix: no buffer survives the trim.
    let floor = size_of::<FecEncoder>() + size_of::<FecDecoder>() + 128;
    assert!(idle / 2 <= floor, "{} > {floor}", idle / 2);
}

#[test]
fn a_1_mib_burst_leaves_no_high_water_mark_after_trim() {
    let base = live();
    let mut tx = Fec::new(10, 3).unwrap();
    let mut rx = Fec::new(10, 3).unwrap();
    alloc::reset_thread_peak();
    let mut sent = 0usize;
    let mut i = 0u32;
    let mut rebuilt = 0;
    while sent < 1 << 20 {
        let mut k = 0u32;
        rebuilt += transfer(&mut tx, &mut rx, 1392, i as u8, Millis(i), || {
            k += 1;
            (i * 7 + k).is_multiple_of(13)
        });
        sent += 1392;
        i += 1;
    }
    assert!(rebuilt > 40, "the burst must exercise recovery: {rebuilt}");
    let busy = assert_accounted("1 MiB burst", base, &[&tx, &rx]);
    let high = (alloc::thread_peak() - base) as usize;
    tx.trim();
    rx.trim();
    let idle = assert_accounted("1 MiB burst, trimmed", base, &[&tx, &rx]);
    let (tx_idle, rx_idle) = (tx.heap_bytes(), rx.heap_bytes());
    println!(
        "1 MiB burst at (10,3), 1 loss in 13: peak {high}, before trim {busy}, after trim \
         {idle} heap bytes for sender and receiver together ({tx_idle} + {rx_idle})"
    );
    assert!(high <= tx.heap_bound() + rx.heap_bound());
    let floor = 2 * (size_of::<FecEncoder>() + 128) + size_of::<FecDecoder>();
    assert!(idle <= floor, "{idle} > {floor}");
}

/// Runs `groups` groups of (10,3) through sender and receiver, losing up to 3 packets of each
/// group at moving positions; returns how many datagrams were rebuilt.
fn run(tx: &mut Fec, rx: &mut Fec, kcps: &[Vec<u8>], groups: usize, now: &mut Millis) -> usize {
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 1500];
    let mut rebuilt = 0;
    let mut sent = 0usize;
    for g in 0..groups {
        for i in 0..10 {
            let k = &kcps[(g * 10 + i) % kcps.len()];
            buf[8..8 + k.len()].copy_from_slice(k);
            let mut n = tx.seal(&mut buf, 8 + k.len(), *now).unwrap();
            loop {
                let lost = (sent + g) % 13 < (g % 4) && (sent + g) % 13 != 12;
                sent += 1;
                if !lost {
                    let _ = rx.open(&mut buf[..n], *now).unwrap();
                    while let Some(m) = rx.poll_recovered(&mut out) {
                        rebuilt += m.min(1);
                    }
                }
                match tx.poll_extra(&mut buf, *now) {
                    Some(r) => n = r.unwrap(),
                    None => break,
                }
            }
            *now += 3;
        }
    }
    rebuilt
}

#[test]
fn steady_state_encode_decode_and_recovery_allocate_nothing() {
    let kcps = common::datagrams(97, 7);
    let mut tx = Fec::new(10, 3).unwrap();
    let mut rx = Fec::new(10, 3).unwrap();
    let mut now = Millis(u32::MAX - 5000);
    // Warm up: pools and the inverse cache fill.
    assert!(run(&mut tx, &mut rx, &kcps, 200, &mut now) > 0);
    let before = alloc::thread_allocs();
    let rebuilt = run(&mut tx, &mut rx, &kcps, 1000, &mut now);
    let allocs = alloc::thread_allocs() - before;
    assert!(
        rebuilt > 500,
        "the run must exercise recovery, rebuilt {rebuilt}"
    );
    assert_eq!(allocs, 0, "allocations in steady state");
}

/// Seqids `258 * lap ..= 258 * lap + 257` typed so that kcp-go's detector reads (255, 1):
/// parity at ring slots 0 and 256, data elsewhere (a regular (255,1) stream does not fit
/// the 258-slot ring in a way it recognises).
fn tune_to_255_1(lap: u32, len: usize) -> Vec<Vec<u8>> {
    (0..258u32)
        .map(|k| {
            let ty = if k == 0 || k == 256 { 0xf2 } else { 0xf1 };
            fec_packet(258 * lap + k, ty, len)
        })
        .collect()
}

/// What the work budget lets `packets` earn at a (ds, _) code: `ds * len + 2 * ds^2` each,
/// with `len` the shard length (packet minus the 6-byte seqid and type).
fn earned(ds: u64, packets: &[Vec<u8>]) -> u64 {
    packets
        .iter()
        .map(|p| ds * (p.len() as u64 - 6) + 2 * ds * ds)
        .sum()
}

#[test]
fn a_peer_cannot_retune_the_default_decoder_past_32_shards() {
    let packets = tune_to_255_1(1, 1400);
    let mut buf = [0u8; 1500];
    let base = live();
    let mut rx = Fec::receive_only(FecConfig::default()).unwrap();
    alloc::reset_thread_peak();
    for (i, p) in packets.iter().enumerate() {
        buf[..p.len()].copy_from_slice(p);
        let _ = rx.open(&mut buf[..p.len()], Millis(i as u32));
    }
    let high = (alloc::thread_peak() - base) as usize;
    let s = rx.stats();
    let (ds, ps) = rx.decoder().unwrap().shards();
    println!(
        "(255,1) pattern into a default receive-only layer: decoder at ({ds},{ps}), \
         {} retunes refused, peak {high} heap bytes",
        s.autotune_suppressed
    );
    assert!(ds + ps <= 32);
    assert!(s.autotune_suppressed > 0);
    assert!(high <= rx.heap_bound());
}

#[test]
fn a_peer_retuning_to_255_1_with_crafted_groups_gets_bounded_memory_and_work() {
    // A server that allows kcp-go's largest groups by configuration.
    let mut cfg = FecConfig::default();
    cfg.max_shards = 256;
    // Room for a few groups of small shards (128-byte buffers).
    cfg.queue_bytes = 256 * 1024;
    let tune = tune_to_255_1(1, 8);
    // Crafted groups: 254 empty data shards and one full-size parity shard each, the missing
    // data shard moving every group so that every inversion misses the cache.
    let mut flood = Vec::new();
    for g in 4..44u32 {
        for k in 0..256u32 {
            let seq = g * 256 + k;
            if k == 255 {
                flood.push(fec_packet(seq, 0xf2, 1500));
            } else if k != g % 255 {
                flood.push(fec_packet(seq, 0xf1, 8));
            }
        }
    }
    let mut buf = [0u8; 1500];
    let base = live();
    let mut rx = Fec::receive_only(cfg).unwrap();
    alloc::reset_thread_peak();
    let mut now = Millis(0);
    for p in &tune {
        now += 1;
        buf[..p.len()].copy_from_slice(p);
        let _ = rx.open(&mut buf[..p.len()], now);
    }
    assert_eq!(rx.decoder().unwrap().shards(), (255, 1), "{:?}", rx.stats());
    let before = rx.stats();
    for p in &flood {
        now += 1;
        buf[..p.len()].copy_from_slice(p);
        let _ = rx.open(&mut buf[..p.len()], now);
        while rx.poll_recovered(&mut [0u8; 1500]).is_some() {}
        assert!(rx.heap_bytes() <= rx.heap_bound());
    }
    let s = rx.stats();
    let work = s.decode_work - before.decode_work;
    let packets = flood.len() as u64;
    // The worst legitimate (255,1) group: one full-size shard lost, inverse not cached, paid
    // over the 255 packets that arrive.
    let legit_per_packet = (255 * 1494 + 2 * 255u64.pow(3)) / 255;
    let high = (alloc::thread_peak() - base) as usize;
    let bound = rx.heap_bound();
    let reconstructions = s.reconstructions - before.reconstructions;
    let refused = s.work_refused - before.work_refused;
    rx.trim();
    let idle = assert_accounted("after the flood, trimmed", base, &[&rx]);
    println!(
        "(255,1) crafted flood, {packets} packets: {reconstructions} reconstructions, {refused} \
         refused, {} work per packet (worst legitimate group: {legit_per_packet}), peak {high} \
         heap bytes (bound {bound}), {idle} after trim",
        work / packets,
    );
    assert!(reconstructions >= 30, "{reconstructions}");
    assert!(work <= earned(255, &flood), "work {work}");
    assert!(work / packets <= legit_per_packet);
    assert!(high <= bound, "peak {high}");
}

#[test]
fn crafted_parity_that_would_rebuild_whole_groups_from_short_shards_is_refused() {
    // A (16,16) decoder; each crafted group loses all 16 data shards and brings one full-size
    // parity shard and 15 minimal ones, so rebuilding it costs 16 x 16 x 1494 products for
    // about 1.6 KB received.
    let mut flood = Vec::new();
    for g in 0..200u32 {
        for k in 16..32u32 {
            let len = if k == 16 { 1500 } else { 8 };
            flood.push(fec_packet(g * 32 + k, 0xf2, len));
        }
    }
    let mut buf = [0u8; 1500];
    let base = live();
    let mut rx = Fec::new(16, 16).unwrap();
    alloc::reset_thread_peak();
    for (i, p) in flood.iter().enumerate() {
        buf[..p.len()].copy_from_slice(p);
        let _ = rx.open(&mut buf[..p.len()], Millis(i as u32));
        while rx.poll_recovered(&mut [0u8; 1500]).is_some() {}
    }
    let s = rx.stats();
    let unbudgeted = 200 * (16 * 16 * 1494 + 2 * 16u64.pow(3));
    let high = (alloc::thread_peak() - base) as usize;
    println!(
        "(16,16) groups of one long and 15 short parity shards: {} reconstructions, {} \
         refused, {} work in all (without the budget: {unbudgeted}), peak {high} heap bytes",
        s.reconstructions, s.work_refused, s.decode_work
    );
    assert!(s.work_refused > 0);
    assert!(s.decode_work <= earned(16, &flood));
    assert!(s.decode_work * 5 < unbudgeted);
    assert!(high <= rx.heap_bound());
}

#[test]
fn a_parity_flood_into_a_receive_only_layer_stays_within_its_bound() {
    let base = live();
    let mut rx = Fec::receive_only(FecConfig::default()).unwrap();
    alloc::reset_thread_peak();
    let mut rng = Rng::new(1);
    let mut out = [0u8; 1500];
    for i in 0..20_000u32 {
        let len = 8 + rng.below(1493) as usize;
        let mut p = fec_packet(i.wrapping_add(rng.below(64) as u32), 0xf2, len);
        let _ = rx.open(&mut p, Millis(i));
        while rx.poll_recovered(&mut out).is_some() {}
    }
    let st = rx.stats();
    let high = (alloc::thread_peak() - base) as usize;
    let bound = rx.heap_bound();
    rx.trim();
    let idle = assert_accounted("parity flood, trimmed", base, &[&rx]);
    println!(
        "20,000 random parity shards into receive_only: {} reconstructions, {} work, peak \
         {high} heap bytes (bound {bound}), {idle} after trim",
        st.reconstructions, st.decode_work
    );
    assert!(high <= bound);
    // The decoder's box, the autotune ring (the flood contradicted (1,1)) and the (1,1) code.
    assert!(idle <= 1024, "{idle}");
}

#[test]
fn small_message_sessions_hold_their_shards_in_small_buffers() {
    // An echo session's traffic: 64-byte messages (88-byte KCP datagrams, 96 with the FEC
    // header) and lone ACKs (24 bytes), many groups of 10/3 without loss.
    let mut a = Fec::new(10, 3).unwrap();
    let mut b = Fec::receive_only(FecConfig::default()).unwrap();
    let mut now = Millis(0);
    transfer(&mut a, &mut b, 88, 0, now, || false);
    b.trim();
    let start = b.heap_bytes();
    for i in 0..200u32 {
        let len = if i % 2 == 0 { 88 } else { 24 };
        transfer(&mut a, &mut b, len, i as u8, now, || false);
        now += 7;
    }
    let buffers = b.heap_bytes() - start;
    println!("receive side of an echo session: {start} heap bytes trimmed, {buffers} more busy");
    // One group in progress (late parity of whole groups is not queued), folded into three
    // rows of the smallest class (122 bytes), beside a spare buffer, the group table, the
    // code and the autotune ring (the layer is receive-only): about 2.0 KiB. A copy of each
    // queued shard in a 128-byte buffer made it 3.8 KiB, queuing late parity as kcp-go does
    // 8.2 KiB, and 256-byte buffers 13.2 KiB.
    assert!(buffers <= 2304, "{buffers}");
}

/// Seals one `kcp_len`-byte datagram with `tx`: the packet and any parity it completes.
fn sealed(tx: &mut Fec, kcp_len: usize, fill: u8, now: Millis) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 1500];
    let hl = tx.header_len();
    buf[hl..hl + kcp_len].fill(fill);
    let mut n = tx.seal(&mut buf, hl + kcp_len, now).unwrap();
    let mut out = Vec::new();
    loop {
        out.push(buf[..n].to_vec());
        match tx.poll_extra(&mut buf, now) {
            Some(r) => n = r.unwrap(),
            None => return out,
        }
    }
}

#[test]
fn a_server_echo_session_keeps_nothing_of_its_one_rebuild() {
    // The server side of a 10/3 echo session as an endpoint builds it (the code shared with
    // the other sessions) and drives it: one 64-byte message a second each way (88-byte KCP
    // datagrams; the answer carries the ACK, 112 bytes), the client's ACK of the answer
    // (24 bytes) after it. The client's first datagram never reaches this layer (lost, or,
    // as before the endpoint's half-open entries passed what they kept through the
    // session's layers, delivered around it), so when its group's parity comes the decoder
    // rebuilds it: the session rebuilds once, and what a rebuild leaves (the inverse cache,
    // the scratch, a spare buffer) must not stay in its steady state.
    let code = FecCode::new(10, 3).unwrap();
    // The client's packets of 60 s, sealed first, so that everything allocated below is the
    // server layer's.
    let mut client = Fec::with_code(code.clone(), FecConfig::default());
    let mut now = Millis(1000);
    let mut inbound = Vec::new();
    for s in 0..60u32 {
        inbound.push((
            now,
            sealed(&mut client, 88, s as u8, now),
            sealed(&mut client, 24, s as u8, now + 2),
        ));
        now += 1000;
    }
    drop(client);
    let matrix = code.heap_bytes();
    let base = live();
    let blocks = alloc::thread_live_blocks();
    let foot = alloc::thread_footprint();
    alloc::reset_thread_peak();
    let mut server = Fec::with_code(code, FecConfig::default());
    let (mut buf, mut out) = ([0u8; 1500], [0u8; 1500]);
    let mut rebuilt = 0;
    for (i, (t, msg, ack)) in inbound.iter_mut().enumerate() {
        for (k, p) in msg.iter_mut().chain(ack.iter_mut()).enumerate() {
            if i == 0 && k == 0 {
                continue;
            }
            let _ = server.open(p, *t).unwrap();
            while server.poll_recovered(&mut out).is_some() {
                rebuilt += 1;
            }
        }
        // The answer: sealed, sent, forgotten.
        let hl = server.header_len();
        let mut n = server.seal(&mut buf, hl + 112, *t + 1).unwrap();
        while n > 0 {
            n = match server.poll_extra(&mut buf, *t + 1) {
                Some(r) => r.unwrap(),
                None => 0,
            };
        }
    }
    assert_eq!(rebuilt, 1, "the first group's missing shard");
    let held = (live() - base) as usize;
    // Exact up to the rounding of the matrix's split between the layer's holders of it.
    let reported = server.heap_bytes();
    assert!(
        (held + matrix).abs_diff(reported) <= 4,
        "heap_bytes says {reported}, the allocator {held} + the matrix {matrix}"
    );
    let peak = (alloc::thread_peak() - base) as usize;
    let blocks = alloc::thread_live_blocks() - blocks;
    let foot = alloc::thread_footprint() - foot;
    let dec = server.decoder().unwrap().heap_bytes();
    let enc = server.encoder().unwrap().heap_bytes();
    // The receive budget's share: the decoder and its box; the encoder follows what the
    // server sends.
    let receive = server.receive_heap_bytes();
    assert_eq!(receive, size_of::<FecDecoder>() + dec);
    assert!(receive + size_of::<FecEncoder>() + enc <= reported);
    println!(
        "server side of a 10/3 echo session after 60 s: {held} heap bytes (decoder {dec} with \
         its box {}, encoder {enc} with its box {}, both with the shared matrix {matrix}), \
         peak {peak}, {blocks} blocks, {foot} bytes as glibc's chunks",
        size_of::<FecDecoder>(),
        size_of::<FecEncoder>(),
    );
    // 1,558 bytes in 7 blocks: the decoder's box (416), one group's three 122-byte rows and
    // its header in the group table, the scratch's box and a pool table of one; the encoder's
    // box and three parity packets of the longest message. The rebuild leaves nothing else:
    // its 3 x 3 inverse is computed on the stack, and its 98-byte output buffer, too small
    // for a group's sums, is freed once polled. With the whole inverse cache (32 entries)
    // allocated at the first rebuild, the output buffer pooled and a pool table of four it
    // was 3,050 bytes in 11 blocks.
    assert!(held <= 1600, "{held}");
    assert!(foot <= 1700, "{foot}");
    assert!(blocks <= 7, "{blocks}");
}
