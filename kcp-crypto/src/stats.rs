//! Counters a crypto layer keeps (kcp-go's checksum-error counters and more).

use kcp_core::LayerCounters;

/// What a crypto layer has done since it was built. Plain counters, no atomics: an adapter
/// that shares them across threads copies them out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CryptoStats {
    /// Packets sealed.
    pub sealed: u64,
    /// Packets opened and delivered upward. On an endpoint, the shared instance counts the
    /// packets it opened and each session's instance those it accepted
    /// ([`Codec::accept_demuxed`](kcp_core::Codec::accept_demuxed)).
    pub opened: u64,
    /// Packets dropped because they were shorter than the header (plus tag). kcp-go drops these
    /// without counting.
    pub truncated: u64,
    /// Packets dropped because the CRC-32 (CFB modes) or the authentication tag (AEAD modes)
    /// did not match: kcp-go's `InCsumErrors`.
    pub integrity_errors: u64,
    /// Packets dropped by the replay check (replay-protected mode only): seen before, older
    /// than the window, from a sender other than the session's peer, or carrying the
    /// receiver's own sender id (reflected).
    pub replays: u64,
    /// `seal` calls refused because the buffer was too small or the sequence space ran out.
    pub seal_errors: u64,
    /// Sender keys derived because they were not in the key cache (replay-protected mode:
    /// every first packet of a sender, on an endpoint every packet of a sender that was
    /// evicted or never authenticated). Each costs a key derivation (one HMAC-SHA1 pass)
    /// and a key schedule.
    pub key_cache_misses: u64,
}

impl CryptoStats {
    /// Adds every counter to its `crypto_*` field of `into`, as the layers'
    /// [`Codec::add_counters`](kcp_core::Codec::add_counters) do.
    pub fn add_counters(&self, into: &mut LayerCounters) {
        for (a, b) in [
            (&mut into.crypto_sealed, self.sealed),
            (&mut into.crypto_opened, self.opened),
            (&mut into.crypto_truncated, self.truncated),
            (&mut into.crypto_integrity_errors, self.integrity_errors),
            (&mut into.crypto_replays, self.replays),
            (&mut into.crypto_seal_errors, self.seal_errors),
            (&mut into.crypto_key_cache_misses, self.key_cache_misses),
        ] {
            *a = a.wrapping_add(b);
        }
    }
}
