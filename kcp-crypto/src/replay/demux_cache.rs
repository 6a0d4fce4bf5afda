//! An endpoint instance's bounded cache of authenticated senders' keys (least recently used
//! out).

use alloc::{boxed::Box, vec::Vec};

use crate::aead::Aead;

/// An endpoint instance's cache of sender keys: least recently used out, only authenticated
/// senders in, and only an authenticated packet makes an entry recent. Lookups, refreshes and
/// evictions are O(1): entries are found through an open-addressing table (linear probing, at
/// most half full, so a miss probes a few slots; the ids in it are random values of
/// authenticated senders, so a forger cannot build long probe runs) and kept in a list from
/// most to least recently used.
pub(super) struct DemuxCache {
    entries: Vec<CacheEntry>,
    /// `index + 1` of the entry whose id hashes here (or follows a run that does); 0: free.
    table: Vec<u32>,
    /// Most and least recently used entries (`NIL` when empty).
    head: u32,
    tail: u32,
}

struct CacheEntry {
    id: [u8; 8],
    key: Box<Aead>,
    /// Neighbours in the recency list: `prev` more recent, `next` less.
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

impl DemuxCache {
    pub(super) fn new(capacity: usize) -> DemuxCache {
        DemuxCache {
            // Entries are 24 bytes (the key schedules are boxed, so they never move and
            // leave no copies behind); reserving all of them up front avoids regrowth.
            entries: Vec::with_capacity(capacity),
            table: alloc::vec![0; (2 * capacity).next_power_of_two().max(2)],
            head: NIL,
            tail: NIL,
        }
    }

    fn home(&self, id: &[u8; 8]) -> usize {
        let h = u64::from_le_bytes(*id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & (self.table.len() - 1)
    }

    /// The table position holding `id`'s entry, if cached.
    fn position(&self, id: &[u8; 8]) -> Option<usize> {
        let mask = self.table.len() - 1;
        let mut i = self.home(id);
        // The table is at most half full: a free slot ends every probe.
        for _ in 0..self.table.len() {
            let t = *self.table.get(i)?;
            if t == 0 {
                return None;
            }
            if self
                .entries
                .get(t as usize - 1)
                .is_some_and(|e| e.id == *id)
            {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The entry of `id`, without making it recent (see [`touch`](Self::touch)).
    pub(super) fn find(&self, id: &[u8; 8]) -> Option<(usize, &Aead)> {
        let pos = self.position(id)?;
        let idx = *self.table.get(pos)? as usize - 1;
        Some((idx, &self.entries.get(idx)?.key))
    }

    fn unlink(&mut self, idx: u32) {
        let Some(e) = self.entries.get(idx as usize) else {
            return;
        };
        let (prev, next) = (e.prev, e.next);
        match self.entries.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.entries.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, idx: u32) {
        let old = self.head;
        if let Some(e) = self.entries.get_mut(idx as usize) {
            e.prev = NIL;
            e.next = old;
        }
        match self.entries.get_mut(old as usize) {
            Some(o) => o.prev = idx,
            None => self.tail = idx,
        }
        self.head = idx;
    }

    /// Makes entry `idx` the most recently used: call it once its packet authenticated.
    pub(super) fn touch(&mut self, idx: usize) {
        if self.head != idx as u32 {
            self.unlink(idx as u32);
            self.push_front(idx as u32);
        }
    }

    fn table_insert(&mut self, id: &[u8; 8], idx: usize) {
        let mask = self.table.len() - 1;
        let mut i = self.home(id);
        for _ in 0..self.table.len() {
            match self.table.get_mut(i) {
                Some(t) if *t == 0 => {
                    *t = idx as u32 + 1;
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Frees table position `pos`, moving later entries of its probe run back (linear
    /// probing's deletion without tombstones).
    fn table_remove(&mut self, mut pos: usize) {
        let mask = self.table.len() - 1;
        if let Some(t) = self.table.get_mut(pos) {
            *t = 0;
        }
        let mut j = pos;
        loop {
            j = (j + 1) & mask;
            let t = self.table.get(j).copied().unwrap_or(0);
            if t == 0 {
                return;
            }
            let Some(home) = self.entries.get(t as usize - 1).map(|e| self.home(&e.id)) else {
                return;
            };
            // The entry at `j` stays if its home lies cyclically in (pos, j].
            let stays = if pos <= j {
                pos < home && home <= j
            } else {
                pos < home || home <= j
            };
            if !stays {
                if let Some(p) = self.table.get_mut(pos) {
                    *p = t;
                }
                if let Some(q) = self.table.get_mut(j) {
                    *q = 0;
                }
                pos = j;
            }
        }
    }

    /// Adds an authenticated sender's key as the most recently used, evicting the least
    /// recently used entry when full.
    pub(super) fn insert(&mut self, id: [u8; 8], key: Aead, capacity: usize) {
        let entry = CacheEntry {
            id,
            key: Box::new(key),
            prev: NIL,
            next: NIL,
        };
        let idx = if self.entries.len() < capacity {
            self.entries.push(entry);
            self.entries.len() - 1
        } else {
            let victim = self.tail as usize;
            let Some(old_id) = self.entries.get(victim).map(|e| e.id) else {
                return;
            };
            if let Some(pos) = self.position(&old_id) {
                self.table_remove(pos);
            }
            self.unlink(victim as u32);
            if let Some(e) = self.entries.get_mut(victim) {
                *e = entry;
            }
            victim
        };
        self.table_insert(&id, idx);
        self.push_front(idx as u32);
    }

    pub(super) fn heap_bytes(&self) -> usize {
        core::mem::size_of::<DemuxCache>()
            + self.entries.capacity() * core::mem::size_of::<CacheEntry>()
            + self.table.capacity() * core::mem::size_of::<u32>()
            + self.entries.len() * core::mem::size_of::<Aead>()
    }
}

#[cfg(test)]
mod tests {
    use super::DemuxCache;
    use crate::aead::AeadKind;
    use crate::ReplayKey;
    use alloc::vec::Vec;

    fn id(n: u64) -> [u8; 8] {
        // Spread like random ids, with some sharing a home slot.
        (n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (n << 7)).to_le_bytes()
    }

    /// The cache against a plain list kept in recency order: same contents, same
    /// evictions, through thousands of inserts, lookups and refreshes.
    #[test]
    fn matches_a_reference_lru_and_finds_every_entry() {
        let key = ReplayKey::new(AeadKind::Aes128Gcm, &[7u8; 16]).unwrap();
        for cap in [1usize, 2, 3, 16, 64] {
            let mut c = DemuxCache::new(cap);
            let mut model: Vec<[u8; 8]> = Vec::new(); // most recent first
            let mut x = 1u64;
            for step in 0..4_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = x % (3 * cap as u64 + 2);
                let i = id(n);
                let found = c.find(&i).map(|(idx, _)| idx);
                assert_eq!(found.is_some(), model.contains(&i), "cap {cap} step {step}");
                match found {
                    // Refresh only some hits (an authenticated packet), not all.
                    Some(idx) if step % 3 != 0 => {
                        c.touch(idx);
                        model.retain(|m| *m != i);
                        model.insert(0, i);
                    }
                    Some(_) => {}
                    None => {
                        c.insert(i, key.derive(&[1; 8]).unwrap(), cap);
                        model.insert(0, i);
                        model.truncate(cap);
                    }
                }
                for m in &model {
                    assert!(c.find(m).is_some(), "cap {cap} step {step}: lost an entry");
                }
                assert_eq!(c.entries.len(), model.len());
            }
        }
    }

    /// A lookup that is not followed by `touch` (a forged packet under a cached id) leaves
    /// the entry the least recently used: it is the one evicted.
    #[test]
    fn a_lookup_alone_does_not_make_an_entry_recent() {
        let key = ReplayKey::new(AeadKind::Aes128Gcm, &[7u8; 16]).unwrap();
        let mut c = DemuxCache::new(2);
        c.insert(id(1), key.derive(&[1; 8]).unwrap(), 2);
        c.insert(id(2), key.derive(&[1; 8]).unwrap(), 2);
        assert!(c.find(&id(1)).is_some());
        c.insert(id(3), key.derive(&[1; 8]).unwrap(), 2);
        assert!(
            c.find(&id(1)).is_none(),
            "the looked-up but unauthenticated entry goes"
        );
        assert!(c.find(&id(2)).is_some() && c.find(&id(3)).is_some());
    }
}
