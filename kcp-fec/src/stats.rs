//! Counters of the FEC layer.

/// What the FEC layer has seen and done. All counters only grow (wrapping at `u64::MAX`).
///
/// The first four are kcp-go's SNMP FEC counters. kcp-go counts `FECRecovered` when the
/// session's `Input` accepts a rebuilt packet; this layer cannot see that, so
/// [`recovered`](Self::recovered) counts rebuilt packets handed out by `poll_recovered`, and the
/// session keeps its own acceptance count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FecStats {
    /// Rebuilt data shards handed out (kcp-go `FECRecovered`, see above).
    pub recovered: u64,
    /// Rebuilt data shards whose size field was invalid, dropped (kcp-go `FECErrs`).
    pub errs: u64,
    /// Parity shards received (kcp-go `FECParityShards`).
    pub parity_shards: u64,
    /// Data shards evicted from the receive queue by its length limit before their group could
    /// be completed (kcp-go `FECShortShards`).
    pub short_shards: u64,
    /// Data shards received.
    pub data_shards: u64,
    /// Non-FEC packets passed through unchanged.
    pub plain_packets: u64,
    /// FEC packets shorter than the 8-byte header, rejected.
    pub truncated: u64,
    /// FEC packets longer than [`MAX_PACKET_LEN`](crate::MAX_PACKET_LEN), rejected.
    pub oversized: u64,
    /// Data shards whose size field disagrees with their length, rejected.
    pub bad_size: u64,
    /// Packets with an FEC-range type other than data and parity (0x00F0..=0x00FF), rejected.
    pub unknown_type: u64,
    /// Packets whose seqid is implausibly far from the stream's, rejected.
    pub seqid_jumps: u64,
    /// Shards already in the receive queue, not queued again (a data shard is still delivered).
    pub duplicates: u64,
    /// Shards dropped from the queue after waiting 60 s (a group goes whole once its first
    /// shard is that old), by `trim` (a session gone idle), or because autotune adopted new
    /// parameters (the groups' sums are laid out for the old ones).
    pub expired: u64,
    /// Shards of a group that was already complete (every data shard arrived, or it was
    /// rebuilt), not queued: they could rebuild nothing. Mostly the parity that follows a
    /// group received without loss; kcp-go queues it until the queue's length limit pushes it
    /// out.
    pub late_shards: u64,
    /// Groups with enough shards whose reconstruction failed.
    pub reconstruct_failures: u64,
    /// Rebuilt packets dropped because the caller's buffer was too small.
    pub recovered_dropped: u64,
    /// Decoder rebuilds for parameters detected from the peer's stream.
    pub autotune_rebuilds: u64,
    /// Detected parameter changes refused by the rebuild limits.
    pub autotune_suppressed: u64,
    /// Shards of the groups dropped, oldest first, to keep the groups' sums within
    /// [`FecConfig::queue_bytes`](crate::FecConfig::queue_bytes) (their data shards also
    /// count in `short_shards`).
    pub evicted_for_bytes: u64,
    /// Groups rebuilt from parity (each handing out one or more `recovered` packets).
    pub reconstructions: u64,
    /// Reconstructions deferred because the work they needed was above the credit earned by
    /// the bytes received (see the crate docs, "Limits"); the group's shards stay queued.
    pub work_refused: u64,
    /// Decoding work done, in nominal GF(2^8) multiply-accumulates: matrix inversions,
    /// rebuilt shards' products and code builds for autotuned parameters (not the folding of
    /// each shard into its group's sums as it arrives).
    pub decode_work: u64,
    /// Shards not kept for recovery: parity reaching a trimmed layer before any data shard
    /// (it builds no decoder for it), and every shard while the layer is receive-limited
    /// (data shards are still delivered).
    pub not_kept: u64,
    /// Shards whose type contradicts their position in the group under the decoder's current
    /// parameters (the peer's are not detected yet, or the packet is crafted), not queued: a
    /// rebuild could only read them in the wrong role.
    pub misplaced: u64,
    /// Data shards sealed.
    pub data_sealed: u64,
    /// Parity shards produced.
    pub parity_sealed: u64,
}

impl FecStats {
    /// Adds another set of counters (a decoder retired by `trim` and its successor).
    pub(crate) fn add(&mut self, o: &FecStats) {
        let FecStats {
            recovered,
            errs,
            parity_shards,
            short_shards,
            data_shards,
            plain_packets,
            truncated,
            oversized,
            bad_size,
            unknown_type,
            seqid_jumps,
            duplicates,
            late_shards,
            expired,
            reconstruct_failures,
            recovered_dropped,
            autotune_rebuilds,
            autotune_suppressed,
            evicted_for_bytes,
            reconstructions,
            work_refused,
            decode_work,
            not_kept,
            misplaced,
            data_sealed,
            parity_sealed,
        } = *o;
        for (a, b) in [
            (&mut self.recovered, recovered),
            (&mut self.errs, errs),
            (&mut self.parity_shards, parity_shards),
            (&mut self.short_shards, short_shards),
            (&mut self.data_shards, data_shards),
            (&mut self.plain_packets, plain_packets),
            (&mut self.truncated, truncated),
            (&mut self.oversized, oversized),
            (&mut self.bad_size, bad_size),
            (&mut self.unknown_type, unknown_type),
            (&mut self.seqid_jumps, seqid_jumps),
            (&mut self.duplicates, duplicates),
            (&mut self.late_shards, late_shards),
            (&mut self.expired, expired),
            (&mut self.reconstruct_failures, reconstruct_failures),
            (&mut self.recovered_dropped, recovered_dropped),
            (&mut self.autotune_rebuilds, autotune_rebuilds),
            (&mut self.autotune_suppressed, autotune_suppressed),
            (&mut self.evicted_for_bytes, evicted_for_bytes),
            (&mut self.reconstructions, reconstructions),
            (&mut self.work_refused, work_refused),
            (&mut self.decode_work, decode_work),
            (&mut self.not_kept, not_kept),
            (&mut self.misplaced, misplaced),
            (&mut self.data_sealed, data_sealed),
            (&mut self.parity_sealed, parity_sealed),
        ] {
            *a = a.wrapping_add(b);
        }
    }
}

/// Counts of the packets a layer screened before any decoder saw them (plain KCP and
/// malformed FEC), kept apart so a layer without a decoder stays small.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Screened {
    plain: u64,
    truncated: u64,
    oversized: u64,
    bad_size: u64,
    unknown_type: u64,
    not_kept: u64,
}

impl Screened {
    /// A shard not given to a decoder (see [`FecStats::not_kept`]).
    pub(crate) fn not_kept(&mut self) {
        self.not_kept = self.not_kept.wrapping_add(1);
    }

    pub(crate) fn plain(&mut self) {
        self.plain = self.plain.wrapping_add(1);
    }

    pub(crate) fn reject(&mut self, r: crate::wire::Reject) {
        use crate::wire::Reject;
        let c = match r {
            Reject::Truncated => &mut self.truncated,
            Reject::Oversized => &mut self.oversized,
            Reject::BadSize => &mut self.bad_size,
            Reject::UnknownType => &mut self.unknown_type,
        };
        *c = c.wrapping_add(1);
    }

    /// Adds these counts to `s`.
    pub(crate) fn add_to(&self, s: &mut FecStats) {
        s.plain_packets = s.plain_packets.wrapping_add(self.plain);
        s.truncated = s.truncated.wrapping_add(self.truncated);
        s.oversized = s.oversized.wrapping_add(self.oversized);
        s.bad_size = s.bad_size.wrapping_add(self.bad_size);
        s.unknown_type = s.unknown_type.wrapping_add(self.unknown_type);
        s.not_kept = s.not_kept.wrapping_add(self.not_kept);
    }
}
