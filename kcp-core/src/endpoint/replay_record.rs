//! The endpoint's replay record: fingerprints of the datagrams that opened and confirmed
//! recent sessions, so a copy of one, from any address, neither opens nor confirms another.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

/// A fixed-size record of fingerprints of datagrams that opened or confirmed a session, so
/// a copy of one from any address neither opens nor confirms another. Four-way buckets, the
/// oldest in a bucket replaced; allocated once, with the endpoint.
pub(super) struct ReplayRecord {
    slots: Vec<u64>,
    buckets: usize,
}

impl ReplayRecord {
    /// A record of about `entries` fingerprints (rounded up to a power of two), allocated at
    /// once when `allocate` (a listener), else never used.
    pub(super) fn new(entries: usize, allocate: bool) -> Self {
        let buckets = if entries == 0 || !allocate {
            0
        } else {
            entries.div_ceil(4).next_power_of_two()
        };
        ReplayRecord {
            slots: vec![0; buckets * 4],
            buckets,
        }
    }

    fn bucket(&self, h: u64) -> Range<usize> {
        let b = (h as usize) & (self.buckets - 1);
        b * 4..b * 4 + 4
    }

    pub(super) fn contains(&self, h: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let h = h.max(1);
        self.slots
            .get(self.bucket(h))
            .is_some_and(|b| b.contains(&h))
    }

    pub(super) fn insert(&mut self, h: u64) {
        if self.buckets == 0 {
            return;
        }
        let h = h.max(1);
        let r = self.bucket(h);
        if let Some(b) = self.slots.get_mut(r) {
            if b.contains(&h) {
                return;
            }
            b.rotate_right(1);
            b[0] = h;
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 8
    }
}

/// A 64-bit fingerprint of a whole opened datagram (crypto header and nonce included: every
/// genuine datagram of a mode with a nonce differs, a replayed copy does not).
pub(super) fn fingerprint(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = 0x2545_F491_4F6C_DD1D ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
        h ^= h >> 29;
    }
    let mut w = [0u8; 8];
    let rest = chunks.remainder();
    w[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
    h ^= h >> 32;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_remembers_its_newest_four_per_bucket() {
        let mut r = ReplayRecord::new(4, true);
        assert_eq!(r.heap_bytes(), 32);
        for h in 1..=4u64 {
            r.insert(h);
        }
        assert!((1..=4).all(|h| r.contains(h)));
        r.insert(5);
        assert!(!r.contains(1), "the oldest goes");
        assert!((2..=5).all(|h| r.contains(h)));
        // Inserting a known fingerprint again evicts nothing.
        r.insert(3);
        assert!(r.contains(2));
        // A record of no entries, or of a connecting endpoint, holds nothing.
        let mut none = ReplayRecord::new(0, true);
        none.insert(9);
        assert!(!none.contains(9));
        assert_eq!(ReplayRecord::new(8192, false).heap_bytes(), 0);
        assert_eq!(ReplayRecord::new(8192, true).heap_bytes(), 65_536);
    }

    #[test]
    fn fingerprints_differ_for_any_changed_byte_or_length() {
        let base: Vec<u8> = (0..100u8).collect();
        let f = fingerprint(&base);
        for i in 0..base.len() {
            let mut d = base.clone();
            d[i] ^= 1;
            assert_ne!(fingerprint(&d), f, "byte {i}");
        }
        assert_ne!(fingerprint(&base[..99]), f);
        let mut longer = base.clone();
        longer.push(0);
        assert_ne!(fingerprint(&longer), f);
    }
}
