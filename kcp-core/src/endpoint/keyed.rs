//! Hash tables keyed by peer address, hashed under the endpoint's secret key.
//!
//! The tables a datagram consults on its way to its session (by address and conversation,
//! and the FEC route by address) are hash tables: one hash of the key and a probe or two,
//! where a B-tree of 10,000 sessions compared socket addresses a dozen times and more per
//! datagram. Peers choose their conversation ids and, spoofing, their source addresses, so
//! the hash is SipHash-1-3 under [`EndpointConfig::hash_key`](super::EndpointConfig::hash_key):
//! without the key nobody can aim a flood of colliding keys at one bucket.

use core::hash::{BuildHasher, Hash};

use siphasher::sip::SipHasher13;

mod index;
pub(super) use index::SessionIndex;

/// SipHash-1-3 under a 128-bit key.
#[derive(Clone, Copy)]
pub(super) struct Keyed([u8; 16]);

impl Keyed {
    pub(super) fn new(key: [u8; 16]) -> Self {
        Keyed(key)
    }
}

impl BuildHasher for Keyed {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_key(&self.0)
    }
}

/// A hash map under the endpoint's key.
pub(super) type KeyedMap<K, V> = hashbrown::HashMap<K, V, Keyed>;

/// An empty map under `key`.
pub(super) fn map<K: Hash + Eq, V>(key: Keyed) -> KeyedMap<K, V> {
    hashbrown::HashMap::with_hasher(key)
}

/// Heap bytes `m`'s table holds.
pub(super) fn map_bytes<K: Hash + Eq, V>(m: &KeyedMap<K, V>) -> usize {
    m.allocation_size()
}

/// Gives a map that has shrunk to a quarter of its table or less its memory back (a burst
/// of sessions that ended leaves no large empty table behind).
pub(super) fn shrink<K: Hash + Eq, V>(m: &mut KeyedMap<K, V>) {
    if m.capacity() > 64 && m.len() <= m.capacity() / 4 {
        m.shrink_to(m.len() * 2);
    }
}
