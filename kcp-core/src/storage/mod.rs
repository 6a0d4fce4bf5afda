//! Storage for the engine: one algorithm over borrowed or owned memory.
//!
//! Every buffer the engine uses is a [`Managed`] slice: either borrowed from the caller (a
//! `static` array on a microcontroller, sized at compile time, see
//! [`StaticBuffers`](crate::StaticBuffers)) or, with the `alloc` feature, an owned `Vec` that
//! grows with the data in flight up to a bound derived from the configured windows, and is
//! then reused without further allocation.
//!
//! * `ring.rs`, `SeqRing`: a ring indexed by wrapping sequence number, used for the send
//!   window (queued and in-flight segments), the receive window, the ACK list and the
//!   transmit queue. Lookups by sequence number are O(1); pushing at the back and popping at
//!   the front are O(1).
//! * `pool.rs`, `Pool`: fixed-size payload chunks (one segment's payload each) handed out and
//!   returned by id, so payload memory follows the segments that exist, not the configured
//!   windows.
//! * `chunk.rs`: the heap chunks ([`Chunk`] of [`HEAP_CHUNK`] bytes for full segments,
//!   [`SmallChunk`] of [`SMALL_CHUNK`] bytes for segments that fit one) and the
//!   [`ChunkCache`] an endpoint's sessions share.

mod chunk;
mod pool;
mod ring;

pub(crate) use chunk::ChunkId;
#[cfg(feature = "alloc")]
pub use chunk::{Chunk, ChunkCache, SmallChunk, HEAP_CHUNK, SMALL_CHUNK};
pub(crate) use pool::Pool;
pub(crate) use ring::SeqRing;
#[cfg(feature = "alloc")]
pub(crate) use ring::MIN_RING;

#[cfg(feature = "alloc")]
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

/// A slice that is either borrowed from the caller or (with `alloc`) owned and growable.
#[derive(Debug)]
pub enum Managed<'a, T> {
    /// Caller-provided storage of fixed capacity.
    Borrowed(&'a mut [T]),
    /// Heap storage that may grow up to a bound.
    #[cfg(feature = "alloc")]
    Owned(Vec<T>),
}

impl<T> Managed<'_, T> {
    /// Whether the storage is the caller's (fixed capacity).
    pub fn is_borrowed(&self) -> bool {
        match self {
            Managed::Borrowed(_) => true,
            #[cfg(feature = "alloc")]
            Managed::Owned(_) => false,
        }
    }
}

impl<T> Deref for Managed<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Managed::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Managed::Owned(v) => v,
        }
    }
}

impl<T> DerefMut for Managed<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Managed::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Managed::Owned(v) => v,
        }
    }
}

impl<'a, T> From<&'a mut [T]> for Managed<'a, T> {
    fn from(s: &'a mut [T]) -> Self {
        Managed::Borrowed(s)
    }
}

#[cfg(feature = "alloc")]
impl<T> From<Vec<T>> for Managed<'_, T> {
    fn from(v: Vec<T>) -> Self {
        Managed::Owned(v)
    }
}

#[cfg(test)]
mod tests {
    use super::pool::Pool;
    use super::*;

    #[test]
    fn ring_indexes_by_wrapping_sequence_number() {
        let mut slots = [0u32; 4];
        let mut r = SeqRing::new(Managed::Borrowed(&mut slots), u32::MAX - 1, 4);
        for v in 0..4 {
            assert!(r.push_back(v).is_ok());
        }
        assert!(r.push_back(9).is_err(), "borrowed ring must not grow");
        assert_eq!(r.get(u32::MAX - 1), Some(&0));
        assert_eq!(r.get(1), Some(&3));
        assert_eq!(r.get(2), None);
        assert_eq!(r.pop_front(), Some(0));
        assert!(r.push_back(4).is_ok());
        assert_eq!(r.get(2), Some(&4));
        assert_eq!(r.base(), u32::MAX);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn owned_ring_grows_up_to_its_bound() {
        let mut r = SeqRing::new(Managed::Owned(alloc::vec::Vec::new()), 10, 20);
        for v in 0..20u32 {
            assert!(r.push_back(v).is_ok());
            if v == 5 {
                r.pop_front();
                r.pop_front();
                assert!(r.push_back(100).is_ok());
                assert!(r.push_back(101).is_ok());
            }
        }
        assert!(r.push_back(0).is_err());
        assert_eq!(r.len(), 20);
        assert_eq!(r.get(12), Some(&2));
    }

    #[test]
    fn pool_hands_out_distinct_chunks() {
        let mut arena = [0u8; 40];
        let mut free = [0u32; 4];
        let mut p = Pool::borrowed(&mut arena, &mut free, 10);
        let a = p.take(10).unwrap();
        let b = p.take(10).unwrap();
        assert_ne!(a, b);
        p.chunk_mut(a).fill(1);
        assert!(p.chunk(b).iter().all(|&x| x == 0));
        assert_eq!(p.in_use(), 2);
        p.take(10).unwrap();
        p.take(10).unwrap();
        assert!(p.take(10).is_none());
        p.give(a);
        assert_eq!(p.take(10), Some(a));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn heap_pool_stores_small_payloads_in_small_chunks() {
        let mut p = Pool::heap(8);
        let small = p.take(SMALL_CHUNK).unwrap();
        let full = p.take(SMALL_CHUNK + 1).unwrap();
        let empty = p.take(0).unwrap();
        assert_eq!(p.chunk(small).len(), SMALL_CHUNK);
        assert_eq!(p.chunk(empty).len(), SMALL_CHUNK);
        assert_eq!(p.chunk(full).len(), HEAP_CHUNK);
        let ptr = core::mem::size_of::<usize>();
        assert_eq!(p.chunk_cost(small), SMALL_CHUNK + ptr);
        assert_eq!(p.chunk_cost(full), HEAP_CHUNK + ptr);
        assert_eq!(p.in_use(), 3);
        // Both tables exist now; the chunks are all counted.
        assert_eq!(
            p.heap_bytes(),
            2 * SMALL_CHUNK + HEAP_CHUNK + p.table_bytes()
        );
        p.chunk_mut(small).fill(7);
        p.give(small);
        assert_eq!(p.spare(), 1);
        assert_eq!(p.spare_bytes(), SMALL_CHUNK + ptr);
        // Given back and taken again without an allocation.
        let allocs = p.allocations();
        assert_eq!(p.take(3), Some(small));
        assert_eq!(p.allocations(), allocs);
        assert_eq!(p.spare(), 0);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn a_small_payload_takes_a_spare_full_chunk_rather_than_allocate() {
        let mut p = Pool::heap(8);
        let full = p.take(HEAP_CHUNK).unwrap();
        p.give(full);
        let allocs = p.allocations();
        assert_eq!(p.take(10), Some(full), "the spare full-size chunk is used");
        assert_eq!(p.allocations(), allocs);
        // With a small one spare as well, the small one goes first.
        let small = p.take(10).unwrap();
        assert_eq!(p.chunk(small).len(), SMALL_CHUNK);
        p.give(small);
        p.give(full);
        assert_eq!(p.take(10), Some(small));
        // A full-size payload never takes a small chunk.
        p.give(small);
        let big = p.take(SMALL_CHUNK + 1).unwrap();
        assert_eq!(p.chunk(big).len(), HEAP_CHUNK);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn growing_a_small_chunk_keeps_its_bytes() {
        let mut p = Pool::heap(4);
        let small = p.take(5).unwrap();
        p.chunk_mut(small)[..5].copy_from_slice(b"hello");
        assert_eq!(
            p.grow(small, 5, SMALL_CHUNK),
            Some(small),
            "room enough already"
        );
        let big = p.grow(small, 5, SMALL_CHUNK + 1).unwrap();
        assert_ne!(big, small);
        assert_eq!(p.chunk(big).len(), HEAP_CHUNK);
        assert_eq!(&p.chunk(big)[..5], b"hello");
        assert_eq!(p.in_use(), 1, "the small chunk went back");
        assert_eq!(p.spare(), 1);
        assert_eq!(p.grow(big, 5, HEAP_CHUNK), Some(big));
        assert_eq!(p.grow(big, 5, HEAP_CHUNK + 1), None);
        // No full-size chunk to be had: the small one stays.
        let mut q = Pool::heap(1);
        let a = q.take(HEAP_CHUNK).unwrap();
        let s = q.take(1).unwrap();
        assert_eq!(q.grow(s, 1, 200), None);
        assert_eq!(q.in_use(), 2);
        q.give(a);
        assert!(q.grow(s, 1, 200).is_some());
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn both_sizes_go_through_the_cache_within_one_budget() {
        let ptr = core::mem::size_of::<usize>();
        // Room for one full-size chunk and two small ones, list entries counted.
        let budget = HEAP_CHUNK + 2 * SMALL_CHUNK + 3 * ptr;
        let mut cache = ChunkCache::new(budget);
        let mut p = Pool::heap(8);
        let ids: alloc::vec::Vec<_> = [1, 2, 3, 300, 400]
            .iter()
            .map(|&n| p.take(n).unwrap())
            .collect();
        for &id in &ids {
            p.give(id);
        }
        let released = p.release(&mut cache);
        assert_eq!(released, 3 * SMALL_CHUNK + 2 * HEAP_CHUNK);
        assert_eq!(p.spare(), 0);
        // One full-size chunk fits, then two small ones; the rest was freed.
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.small_len(), 2);
        // Stocking takes each size from its own list; the ids stay, so nothing grows.
        let mut q = Pool::heap(8);
        q.stock(&mut cache, 1, 2);
        assert!(cache.is_empty());
        assert_eq!(q.spare(), 3);
        assert_eq!(q.spare_bytes(), HEAP_CHUNK + 2 * SMALL_CHUNK + 3 * ptr);
        let allocs = q.allocations();
        let a = q.take(1).unwrap();
        let b = q.take(1).unwrap();
        let c = q.take(1000).unwrap();
        assert_eq!(q.allocations(), allocs, "stocked chunks need no allocation");
        assert_eq!(q.chunk(a).len() + q.chunk(b).len(), 2 * SMALL_CHUNK);
        assert_eq!(q.chunk(c).len(), HEAP_CHUNK);
    }
}

/// The heap pool against a model of what it handed out, over random sequences of takes,
/// returns, growths, releases to and stocking from a cache, and shrinks.
#[cfg(all(test, feature = "alloc"))]
mod pool_model {
    use alloc::vec::Vec;

    use proptest::prelude::*;

    use super::chunk::SMALL_ID;
    use super::pool::Pool;
    use super::{ChunkCache, ChunkId, HEAP_CHUNK, SMALL_CHUNK};

    #[derive(Debug, Clone)]
    enum Op {
        Take(usize),
        Give(usize),
        Grow(usize, usize),
        Release,
        Stock(usize, usize),
        Shrink,
    }

    fn len() -> impl Strategy<Value = usize> {
        prop_oneof![
            0..=SMALL_CHUNK,
            SMALL_CHUNK - 2..=SMALL_CHUNK + 2,
            SMALL_CHUNK + 1..=HEAP_CHUNK,
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => len().prop_map(Op::Take),
            3 => any::<usize>().prop_map(Op::Give),
            2 => (any::<usize>(), len()).prop_map(|(i, n)| Op::Grow(i, n)),
            1 => Just(Op::Release),
            1 => (0usize..4, 0usize..4).prop_map(|(f, s)| Op::Stock(f, s)),
            1 => Just(Op::Shrink),
        ]
    }

    fn is_small(id: ChunkId) -> bool {
        id & SMALL_ID != 0
    }

    proptest! {
        #[test]
        fn the_heap_pool_keeps_every_chunk_and_its_bytes(
            ops in proptest::collection::vec(op(), 1..300),
            max in 1usize..8,
        ) {
            let ptr = core::mem::size_of::<usize>();
            let mut pool = Pool::heap(max);
            let mut cache = ChunkCache::new(6 * 1024);
            // What is handed out: id, bytes written, the byte written.
            let mut held: Vec<(ChunkId, usize, u8)> = Vec::new();
            let mut tag = 0u8;
            for op in ops {
                match op {
                    Op::Take(len) => match pool.take(len) {
                        Some(id) => {
                            prop_assert!(pool.chunk(id).len() >= len);
                            prop_assert!(held.iter().all(|h| h.0 != id), "id {id} handed out twice");
                            if len > SMALL_CHUNK {
                                prop_assert!(!is_small(id), "a small chunk for {len} bytes");
                            }
                            tag = tag.wrapping_add(1);
                            pool.chunk_mut(id)[..len].fill(tag);
                            held.push((id, len, tag));
                        }
                        None => {
                            // Refused only when every id of the size it needs is in use.
                            let small = len <= SMALL_CHUNK;
                            let in_class = held.iter().filter(|h| is_small(h.0) == small).count();
                            prop_assert!(in_class >= max, "refused {len} bytes with {in_class} of {max} in use");
                        }
                    },
                    Op::Give(i) => {
                        if !held.is_empty() {
                            let (id, ..) = held.swap_remove(i % held.len());
                            pool.give(id);
                        }
                    }
                    Op::Grow(i, need) => {
                        if !held.is_empty() {
                            let k = i % held.len();
                            let (id, len, _) = held[k];
                            let need = need.max(len);
                            if let Some(new) = pool.grow(id, len, need) {
                                prop_assert!(pool.chunk(new).len() >= need);
                                held[k].0 = new;
                            } else {
                                prop_assert!(pool.chunk(id).len() < need);
                            }
                        }
                    }
                    Op::Release => {
                        pool.release(&mut cache);
                        prop_assert_eq!(pool.spare(), 0);
                    }
                    Op::Stock(full, small) => pool.stock(&mut cache, full, small),
                    Op::Shrink => {
                        pool.shrink();
                    }
                }
                prop_assert_eq!(pool.in_use(), held.len());
                for &(id, len, t) in &held {
                    prop_assert!(pool.chunk(id)[..len].iter().all(|&b| b == t), "chunk {id} lost its bytes");
                }
                // The chunks the pool holds are those handed out and the spare ones.
                let held_bytes: usize = held.iter().map(|h| pool.chunk_cost(h.0) - ptr).sum();
                let spare_bytes = pool.spare_bytes() - pool.spare() * ptr;
                prop_assert_eq!(pool.heap_bytes() - pool.table_bytes(), held_bytes + spare_bytes);
                prop_assert!(cache.heap_bytes() <= 6 * 1024 + 64 * ptr);
            }
        }
    }
}
