//! Counters a crypto layer keeps (kcp-go's checksum-error counters and more).

/// What a crypto layer has done since it was built. Plain counters, no atomics: an adapter
/// that shares them across threads copies them out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CryptoStats {
    /// Packets sealed.
    pub sealed: u64,
    /// Packets opened and delivered upward.
    pub opened: u64,
    /// Packets dropped because they were shorter than the header (plus tag). kcp-go drops these
    /// without counting.
    pub truncated: u64,
    /// Packets dropped because the CRC-32 (CFB modes) or the authentication tag (AEAD modes)
    /// did not match: kcp-go's `InCsumErrors`.
    pub integrity_errors: u64,
    /// Packets dropped by the replay window (replay-protected mode only).
    pub replays: u64,
    /// `seal` calls refused because the buffer was too small or the sequence space ran out.
    pub seal_errors: u64,
}
