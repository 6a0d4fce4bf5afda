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
    /// Shards dropped from the queue after waiting 60 s.
    pub expired: u64,
    /// Groups with enough shards whose reconstruction failed.
    pub reconstruct_failures: u64,
    /// Rebuilt packets dropped because the caller's buffer was too small.
    pub recovered_dropped: u64,
    /// Decoder rebuilds for parameters detected from the peer's stream.
    pub autotune_rebuilds: u64,
    /// Detected parameter changes refused by the rebuild limits.
    pub autotune_suppressed: u64,
    /// Data shards sealed.
    pub data_sealed: u64,
    /// Parity shards produced.
    pub parity_sealed: u64,
}
