//! The session index: which slot holds the session of an (address, conversation id).
//!
//! Every datagram that carries a conversation id looks its session up here, so at ten
//! thousand sessions, each heard once a second, the lookup is a cache miss on every datagram
//! and its cost is the memory it touches. A map of `((address, conversation), slot)` holds
//! 40-byte entries (a socket address that may be IPv6 is 32 bytes): 640 KiB of table at
//! 10,000 sessions, and a miss on the entry after the miss on the control bytes. This index
//! holds the slot number alone, 4 bytes an entry (80 KiB with its control bytes at 10,000
//! sessions, which a core's second-level cache keeps), hashed from the key under the
//! endpoint's secret as the map was; a candidate's key is compared in its slot, which the
//! datagram reads next anyway.
//!
//! The slots are the keys, so the index must follow every change of a slot's address or
//! conversation: a slot is listed once it holds its key, unlisted (by slot number, not by
//! key) before or after it leaves, and moved by unlisting under the old key and listing
//! under the new one.

use core::hash::BuildHasher;

use alloc::boxed::Box;
use hashbrown::hash_table::{Entry, HashTable};

use super::super::slot::Slot;
use super::super::PeerAddr;
use super::Keyed;

/// Slot numbers by (address, conversation id) of the session they hold.
pub(in crate::endpoint) struct SessionIndex {
    table: HashTable<u32>,
    key: Keyed,
}

/// The slots an index refers to.
type Slots<A> = [Option<Box<Slot<A>>>];

impl SessionIndex {
    /// An empty index, hashing under `key`.
    pub(in crate::endpoint) fn new(key: Keyed) -> Self {
        SessionIndex {
            table: HashTable::new(),
            key,
        }
    }

    fn hash<A: PeerAddr>(&self, addr: &A, conv: u32) -> u64 {
        hash(self.key, addr, conv)
    }

    /// The slot of the session of `addr` and `conv`.
    pub(in crate::endpoint) fn get<A: PeerAddr>(
        &self,
        slots: &Slots<A>,
        addr: &A,
        conv: u32,
    ) -> Option<u32> {
        let is = |i: &u32| match slots.get(*i as usize) {
            Some(Some(s)) => s.conv == conv && s.addr == *addr,
            _ => false,
        };
        self.table.find(self.hash(addr, conv), is).copied()
    }

    /// Whether a session of `addr` and `conv` is listed.
    pub(in crate::endpoint) fn contains<A: PeerAddr>(
        &self,
        slots: &Slots<A>,
        addr: &A,
        conv: u32,
    ) -> bool {
        self.get(slots, addr, conv).is_some()
    }

    /// Lists slot `idx` under the key it holds. A session listed under the same key before
    /// is unlisted (as a map's insert replaces the value), so a key names one slot at most.
    pub(in crate::endpoint) fn insert<A: PeerAddr>(&mut self, slots: &Slots<A>, idx: u32) {
        let Some(Some(s)) = slots.get(idx as usize) else {
            return;
        };
        let (addr, conv) = (s.addr, s.conv);
        let hash = self.hash(&addr, conv);
        let key = self.key;
        let same = |i: &u32| {
            *i == idx
                || matches!(slots.get(*i as usize), Some(Some(s)) if s.conv == conv && s.addr == addr)
        };
        match self.table.entry(hash, same, |i| slot_hash(key, slots, *i)) {
            Entry::Occupied(mut o) => *o.get_mut() = idx,
            Entry::Vacant(v) => {
                v.insert(idx);
            }
        }
    }

    /// Unlists slot `idx`, listed under `addr` and `conv` (its key when it was listed: the
    /// slot itself may hold another address by now, or be gone).
    pub(in crate::endpoint) fn remove<A: PeerAddr>(&mut self, addr: &A, conv: u32, idx: u32) {
        if let Ok(e) = self.table.find_entry(self.hash(addr, conv), |&i| i == idx) {
            e.remove();
        }
    }

    /// Sessions listed.
    pub(in crate::endpoint) fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether none is listed.
    pub(in crate::endpoint) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Heap bytes of the table.
    pub(in crate::endpoint) fn heap_bytes(&self) -> usize {
        self.table.allocation_size()
    }

    /// Gives the memory of a table that has shrunk to a quarter of its capacity or less back
    /// (a burst of sessions that ended leaves no large empty table behind). Every listed slot
    /// must hold the key it is listed under.
    pub(in crate::endpoint) fn shrink<A: PeerAddr>(&mut self, slots: &Slots<A>) {
        if self.table.capacity() > 64 && self.table.len() <= self.table.capacity() / 4 {
            let (n, key) = (self.table.len() * 2, self.key);
            self.table.shrink_to(n, |i| slot_hash(key, slots, *i));
        }
    }
}

/// The hash of a key under the endpoint's secret.
fn hash<A: PeerAddr>(key: Keyed, addr: &A, conv: u32) -> u64 {
    key.hash_one((addr, conv))
}

/// The hash of the key slot `i` holds (0 for an empty slot, which the index never lists).
fn slot_hash<A: PeerAddr>(key: Keyed, slots: &Slots<A>, i: u32) -> u64 {
    match slots.get(i as usize) {
        Some(Some(s)) => hash(key, &s.addr, s.conv),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Millis, Session};
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn slot(addr: u16, conv: u32) -> Option<Box<Slot<u16>>> {
        let session = Session::new(conv, Config::default(), Vec::new(), Millis(0)).unwrap();
        Some(Box::new(Slot::new(session, addr, conv, 1, 0)))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Open(u16, u32),
        Close(usize),
        Move(usize, u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u16..48, 0u32..4).prop_map(|(a, c)| Op::Open(a, c)),
            2 => any::<usize>().prop_map(Op::Close),
            1 => (any::<usize>(), 0u16..48).prop_map(|(k, a)| Op::Move(k, a)),
        ]
    }

    proptest! {
        /// Opening, closing and moving sessions as the endpoint does, in any order: the index
        /// names exactly the slot a map by key would, for every key, and shrinks as slots go.
        #[test]
        fn agrees_with_a_map_by_key(ops in proptest::collection::vec(op(), 1..400)) {
            let mut slots: Vec<Option<Box<Slot<u16>>>> = Vec::new();
            let mut free: Vec<u32> = Vec::new();
            let mut model: BTreeMap<(u16, u32), u32> = BTreeMap::new();
            let mut index = SessionIndex::new(Keyed::new([7; 16]));
            let live = |model: &BTreeMap<(u16, u32), u32>, k: usize| {
                (!model.is_empty()).then(|| *model.values().nth(k % model.len()).unwrap())
            };
            for op in ops {
                match op {
                    Op::Open(a, c) if !model.contains_key(&(a, c)) => {
                        let idx = match free.pop() {
                            Some(i) => {
                                slots[i as usize] = slot(a, c);
                                i
                            }
                            None => {
                                slots.push(slot(a, c));
                                (slots.len() - 1) as u32
                            }
                        };
                        index.insert(&slots, idx);
                        model.insert((a, c), idx);
                    }
                    Op::Open(..) => {}
                    Op::Close(k) => {
                        if let Some(idx) = live(&model, k) {
                            let s = slots[idx as usize].take().unwrap();
                            index.remove(&s.addr, s.conv, idx);
                            index.shrink(&slots);
                            model.remove(&(s.addr, s.conv));
                            free.push(idx);
                        }
                    }
                    Op::Move(k, to) => {
                        if let Some(idx) = live(&model, k) {
                            let s = slots[idx as usize].as_mut().unwrap();
                            let (old, conv) = (s.addr, s.conv);
                            if !model.contains_key(&(to, conv)) {
                                s.addr = to;
                                index.remove(&old, conv, idx);
                                index.insert(&slots, idx);
                                model.remove(&(old, conv));
                                model.insert((to, conv), idx);
                            }
                        }
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert_eq!(index.is_empty(), model.is_empty());
            }
            for a in 0..48u16 {
                for c in 0..4u32 {
                    prop_assert_eq!(index.get(&slots, &a, c), model.get(&(a, c)).copied());
                    prop_assert_eq!(index.contains(&slots, &a, c), model.contains_key(&(a, c)));
                }
            }
            if model.len() * 8 < index.table.capacity() {
                prop_assert!(index.table.capacity() <= 64, "{} of {}", model.len(), index.table.capacity());
            }
        }
    }

    /// A second slot listed under a key takes it over; unlisting the first later leaves the
    /// second listed (a map keyed by address would have lost it).
    #[test]
    fn a_key_names_one_slot() {
        let mut index = SessionIndex::new(Keyed::new([1; 16]));
        let slots = alloc::vec![slot(5, 9), slot(5, 9), slot(6, 9)];
        index.insert(&slots, 0);
        index.insert(&slots, 2);
        assert_eq!(index.get(&slots, &5u16, 9), Some(0));
        index.insert(&slots, 1);
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(&slots, &5u16, 9), Some(1));
        index.remove(&5u16, 9, 0);
        assert_eq!(index.get(&slots, &5u16, 9), Some(1));
        assert_eq!(index.get(&slots, &6u16, 9), Some(2));
        assert_eq!(index.get(&slots, &6u16, 8), None);
        index.remove(&5u16, 9, 1);
        assert_eq!(index.get(&slots, &5u16, 9), None);
        assert_eq!(index.len(), 1);
        assert!(index.heap_bytes() > 0);
    }

    /// An entry costs the table 4 bytes and a control byte, where a map by socket address and
    /// conversation id held 40 and a control byte.
    #[test]
    fn entries_are_slot_numbers() {
        let mut index = SessionIndex::new(Keyed::new([1; 16]));
        let slots: Vec<_> = (0..1000u16).map(|a| slot(a, 1)).collect();
        for i in 0..1000 {
            index.insert(&slots, i);
        }
        let per_entry = index.heap_bytes() as f64 / index.table.capacity() as f64;
        assert!(per_entry < 6.0, "{per_entry} bytes per entry");
    }

    /// A table that empties gives its memory back and still finds what is left.
    #[test]
    fn shrinks_and_still_finds() {
        let mut index = SessionIndex::new(Keyed::new([3; 16]));
        let mut slots: Vec<_> = (0..300u16).map(|a| slot(a, 2)).collect();
        for i in 0..300 {
            index.insert(&slots, i);
        }
        let full = index.heap_bytes();
        for i in 0..290u32 {
            let s = slots[i as usize].take().unwrap();
            index.remove(&s.addr, s.conv, i);
            index.shrink(&slots);
        }
        assert!(
            index.heap_bytes() * 4 <= full,
            "{} of {full}",
            index.heap_bytes()
        );
        for a in 0..300u16 {
            let want = (a >= 290).then_some(u32::from(a));
            assert_eq!(index.get(&slots, &a, 2), want, "address {a}");
        }
    }
}
