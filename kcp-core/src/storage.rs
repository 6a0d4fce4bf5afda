//! Storage for the engine: one algorithm over borrowed or owned memory.
//!
//! Every buffer the engine uses is a [`Managed`] slice: either borrowed from the caller (a
//! `static` array on a microcontroller, sized at compile time, see [`StaticBuffers`]) or, with
//! the `alloc` feature, an owned `Vec` that grows with the data in flight up to a bound derived
//! from the configured windows, and is then reused without further allocation.
//!
//! * [`SeqRing`]: a ring indexed by wrapping sequence number, used for the send window (queued
//!   and in-flight segments), the receive window, the ACK list and the transmit queue. Lookups by
//!   sequence number are O(1); pushing at the back and popping at the front are O(1).
//! * [`Pool`]: fixed-size payload chunks (one segment's payload each) handed out and returned by
//!   id, so payload memory follows the segments that exist, not the configured windows.

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

/// Smallest owned ring: rings start here and shrink back here when they drain.
#[cfg(feature = "alloc")]
pub(crate) const MIN_RING: usize = 4;

/// A ring of `T` indexed by wrapping `u32` sequence number, starting at `base`.
///
/// Logical entries are `base .. base + len`. Owned storage grows (doubling, up to `max`) when
/// full; borrowed storage refuses to grow.
#[derive(Debug)]
pub(crate) struct SeqRing<'a, T> {
    slots: Managed<'a, T>,
    // u32 indices: rings never exceed 2 * MAX_WINDOW + MAX_FRAGMENTS entries, and a session
    // is smaller with them (memory per session is a target).
    head: u32,
    len: u32,
    base: u32,
    max: u32,
}

impl<'a, T: Copy + Default> SeqRing<'a, T> {
    pub(crate) fn new(slots: Managed<'a, T>, base: u32, max: usize) -> Self {
        let max = match &slots {
            #[cfg(feature = "alloc")]
            Managed::Owned(_) => max,
            borrowed => {
                let _ = max;
                borrowed.len()
            }
        };
        SeqRing {
            slots,
            head: 0,
            len: 0,
            base,
            max: max.min(u32::MAX as usize) as u32,
        }
    }

    #[inline]
    pub(crate) fn base(&self) -> u32 {
        self.base
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sequence number one past the last entry.
    #[inline]
    pub(crate) fn end(&self) -> u32 {
        self.base.wrapping_add(self.len)
    }

    /// The most entries this ring can ever hold.
    #[inline]
    pub(crate) fn max_len(&self) -> usize {
        self.max as usize
    }

    #[inline]
    fn phys(&self, offset: usize) -> usize {
        let cap = self.slots.len();
        let i = self.head as usize + offset;
        if i >= cap {
            i - cap
        } else {
            i
        }
    }

    /// The entry for sequence number `sn`, if it is in the ring.
    #[inline]
    pub(crate) fn get(&self, sn: u32) -> Option<&T> {
        let off = sn.wrapping_sub(self.base) as usize;
        if off < self.len as usize {
            let p = self.phys(off);
            self.slots.get(p)
        } else {
            None
        }
    }

    /// Mutable entry for sequence number `sn`, if it is in the ring.
    #[inline]
    pub(crate) fn get_mut(&mut self, sn: u32) -> Option<&mut T> {
        let off = sn.wrapping_sub(self.base) as usize;
        if off < self.len as usize {
            let p = self.phys(off);
            self.slots.get_mut(p)
        } else {
            None
        }
    }

    /// The entry at logical offset `off` from the front.
    #[inline]
    pub(crate) fn at(&self, off: usize) -> Option<&T> {
        if off < self.len as usize {
            self.slots.get(self.phys(off))
        } else {
            None
        }
    }

    /// Appends `value` as entry `end()`. Fails when the ring is at its bound.
    pub(crate) fn push_back(&mut self, value: T) -> Result<(), T> {
        if self.len as usize == self.slots.len() && !self.grow() {
            return Err(value);
        }
        let p = self.phys(self.len as usize);
        match self.slots.get_mut(p) {
            Some(slot) => {
                *slot = value;
                self.len += 1;
                Ok(())
            }
            None => Err(value),
        }
    }

    /// Removes the front entry (sequence number `base()`), advancing `base`.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let v = self.slots.get(self.head as usize).copied();
        self.head = self.phys(1) as u32;
        self.len -= 1;
        self.base = self.base.wrapping_add(1);
        if self.len == 0 {
            self.head = 0;
        }
        v
    }

    /// Removes every entry and restarts at `base`.
    pub(crate) fn reset(&mut self, base: u32) {
        self.head = 0;
        self.len = 0;
        self.base = base;
    }

    /// Makes sure at least `n` more entries fit without failing.
    pub(crate) fn reserve(&mut self, n: usize) -> bool {
        while self.slots.len() - (self.len as usize) < n {
            if !self.grow() {
                return false;
            }
        }
        true
    }

    /// Changes the bound (owned storage only; borrowed storage keeps its capacity). Never
    /// below the entries held. Returns whether the requested bound is in force.
    pub(crate) fn set_max(&mut self, max: usize) -> bool {
        if self.slots.is_borrowed() {
            return max <= self.slots.len();
        }
        let max = max.min(u32::MAX as usize) as u32;
        self.max = max.max(self.len);
        self.max == max
    }

    /// Free entries before the bound is reached.
    pub(crate) fn spare(&self) -> usize {
        self.max.saturating_sub(self.len) as usize
    }

    #[cfg(feature = "alloc")]
    fn grow(&mut self) -> bool {
        let cap = self.slots.len();
        if cap >= self.max as usize {
            return false;
        }
        // Doubling from a small start, never past the bound (`max` may be below the start).
        let new_cap = cap.saturating_mul(2).max(MIN_RING).min(self.max as usize);
        let Managed::Owned(v) = &mut self.slots else {
            return false;
        };
        // Linearise the ring so the grown part is contiguous after the last entry.
        v.rotate_left(self.head as usize);
        self.head = 0;
        v.reserve_exact(new_cap - cap);
        v.resize(new_cap, T::default());
        true
    }

    /// Gives owned storage back down to `keep` slots once the ring is empty (borrowed storage
    /// is the caller's and stays). Returns the bytes freed.
    #[cfg(feature = "alloc")]
    pub(crate) fn shrink(&mut self, keep: usize) -> usize {
        if self.len != 0 {
            return 0;
        }
        let Managed::Owned(v) = &mut self.slots else {
            return 0;
        };
        let before = v.capacity();
        if before <= keep {
            return 0;
        }
        self.head = 0;
        v.truncate(keep);
        v.shrink_to_fit();
        (before - v.capacity()) * core::mem::size_of::<T>()
    }

    /// Heap bytes held (owned storage; 0 when borrowed).
    #[cfg(feature = "alloc")]
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.slots {
            Managed::Owned(v) => v.capacity() * core::mem::size_of::<T>(),
            Managed::Borrowed(_) => 0,
        }
    }

    #[cfg(not(feature = "alloc"))]
    fn grow(&mut self) -> bool {
        false
    }
}

/// Identifies one payload chunk of a [`Pool`].
pub(crate) type ChunkId = u32;

/// One heap payload chunk: the largest segment payload a 1500-byte MTU allows.
#[cfg(feature = "alloc")]
pub type Chunk = alloc::boxed::Box<[u8; crate::engine::HEAP_CHUNK]>;

/// A fresh zeroed heap chunk.
#[cfg(feature = "alloc")]
fn new_chunk() -> Chunk {
    alloc::boxed::Box::new([0u8; crate::engine::HEAP_CHUNK])
}

/// Payload chunks for many engines to share (feature `alloc`): an endpoint keeps the chunks
/// its sessions give back when they drain and hands them to sessions that need them, so an
/// idle session holds no payload memory and a busy one does not allocate per packet.
///
/// Bounded by a byte budget: chunks given back beyond it are freed.
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
pub struct ChunkCache {
    chunks: Vec<Chunk>,
    max_chunks: usize,
}

#[cfg(feature = "alloc")]
impl ChunkCache {
    /// A cache that keeps at most `budget_bytes` of chunks.
    pub fn new(budget_bytes: usize) -> ChunkCache {
        ChunkCache {
            chunks: Vec::new(),
            // The list of chunks counts against the budget too.
            max_chunks: budget_bytes / (crate::engine::HEAP_CHUNK + core::mem::size_of::<Chunk>()),
        }
    }

    /// Chunks held.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether it holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes held (chunks and the list of them).
    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * crate::engine::HEAP_CHUNK
            + self.chunks.capacity() * core::mem::size_of::<Chunk>()
    }

    /// Takes a chunk, if one is kept.
    pub fn take(&mut self) -> Option<Chunk> {
        self.chunks.pop()
    }

    /// Keeps `chunk` for reuse, or frees it when the budget is reached.
    pub fn give(&mut self, chunk: Chunk) {
        if self.chunks.len() < self.max_chunks {
            if self.chunks.len() == self.chunks.capacity() {
                // Doubling within the budget: a handful of reallocations over the endpoint's
                // life, each at a new high-water mark of chunks given back at once.
                let room = self.max_chunks - self.chunks.len();
                self.chunks
                    .reserve_exact(self.chunks.len().max(16).min(room));
            }
            self.chunks.push(chunk);
        }
    }
}

/// Fixed-size payload chunks, handed out by id: over a caller's arena (no allocator), or
/// (feature `alloc`) heap chunks that are given back when the engine drains.
#[derive(Debug)]
pub(crate) enum Pool<'a> {
    /// Caller-provided arena cut into chunks.
    Borrowed(ArenaPool<'a>),
    /// Heap chunks, one allocation each, reusable across engines through a [`ChunkCache`].
    #[cfg(feature = "alloc")]
    Owned(HeapPool),
}

/// Chunks of a borrowed arena.
#[derive(Debug)]
pub(crate) struct ArenaPool<'a> {
    arena: &'a mut [u8],
    free: &'a mut [ChunkId],
    nfree: usize,
    chunk: usize,
    total: usize,
}

/// Heap chunks by id. An id keeps its number while in use; a free id may have given its
/// storage back (`None`), and gets a chunk again when it is taken.
#[cfg(feature = "alloc")]
#[derive(Debug)]
pub(crate) struct HeapPool {
    slots: Vec<Option<Chunk>>,
    /// Ids not in use; those whose slot holds a chunk are taken first (the stock an endpoint
    /// hands in with [`Pool::stock`] becomes such ids).
    free: Vec<ChunkId>,
    max: u32,
    /// Free ids whose slot holds a chunk (idle memory, counted by an endpoint's budget).
    spare: u32,
}

impl<'a> Pool<'a> {
    /// A pool over a caller's `arena`, cut into chunks of `chunk` bytes; `free` must have room
    /// for one id per chunk.
    pub(crate) fn borrowed(arena: &'a mut [u8], free: &'a mut [ChunkId], chunk: usize) -> Self {
        let chunk = chunk.max(1);
        let total = (arena.len() / chunk).min(free.len());
        let mut nfree = 0;
        for id in (0..total).rev() {
            if let Some(slot) = free.get_mut(nfree) {
                *slot = id as ChunkId;
                nfree += 1;
            }
        }
        Pool::Borrowed(ArenaPool {
            arena,
            free,
            nfree,
            chunk,
            total,
        })
    }

    /// An empty heap pool of at most `max` chunks of [`HEAP_CHUNK`](crate::HEAP_CHUNK) bytes.
    #[cfg(feature = "alloc")]
    pub(crate) fn heap(max: usize) -> Self {
        Pool::Owned(HeapPool {
            slots: Vec::new(),
            free: Vec::new(),
            max: max.min(u32::MAX as usize) as u32,
            spare: 0,
        })
    }

    /// Bytes per chunk: the largest segment payload this pool can hold.
    #[inline]
    pub(crate) fn chunk_len(&self) -> usize {
        match self {
            Pool::Borrowed(p) => p.chunk,
            #[cfg(feature = "alloc")]
            Pool::Owned(_) => crate::engine::HEAP_CHUNK,
        }
    }

    /// Chunks currently handed out.
    #[inline]
    pub(crate) fn in_use(&self) -> usize {
        match self {
            Pool::Borrowed(p) => p.total - p.nfree,
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => p.slots.len() - p.free.len(),
        }
    }

    /// Chunks held but not in use (freed, or stocked by an endpoint), until they are
    /// released; 0 for a borrowed arena.
    #[inline]
    pub(crate) fn spare(&self) -> usize {
        match self {
            Pool::Borrowed(_) => 0,
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => p.spare as usize,
        }
    }

    /// Chunks that can still be handed out.
    #[inline]
    pub(crate) fn available(&self) -> usize {
        match self {
            Pool::Borrowed(p) => p.nfree,
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => p.free.len() + (p.max as usize).saturating_sub(p.slots.len()),
        }
    }

    /// Changes the bound in chunks (heap pools only), never below the ids that exist.
    pub(crate) fn set_max(&mut self, max: usize) -> bool {
        match self {
            Pool::Borrowed(p) => max <= p.total,
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => {
                p.max = max.max(p.slots.len()).min(u32::MAX as usize) as u32;
                true
            }
        }
    }

    /// Takes a chunk. `None` when exhausted.
    pub(crate) fn take(&mut self) -> Option<ChunkId> {
        match self {
            Pool::Borrowed(p) => {
                if p.nfree == 0 {
                    return None;
                }
                p.nfree -= 1;
                p.free.get(p.nfree).copied()
            }
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => p.take(),
        }
    }

    /// Returns a chunk to the pool.
    pub(crate) fn give(&mut self, id: ChunkId) {
        match self {
            Pool::Borrowed(p) => {
                if let Some(slot) = p.free.get_mut(p.nfree) {
                    *slot = id;
                    p.nfree += 1;
                }
            }
            #[cfg(feature = "alloc")]
            // `reserve_one` keeps the free list as long as the id table: no allocation here.
            Pool::Owned(p) => {
                p.free.push(id);
                p.spare += 1;
            }
        }
    }

    #[inline]
    pub(crate) fn chunk(&self, id: ChunkId) -> &[u8] {
        match self {
            Pool::Borrowed(p) => {
                let start = id as usize * p.chunk;
                p.arena.get(start..start + p.chunk).unwrap_or(&[])
            }
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => match p.slots.get(id as usize) {
                Some(Some(c)) => &c[..],
                _ => &[],
            },
        }
    }

    #[inline]
    pub(crate) fn chunk_mut(&mut self, id: ChunkId) -> &mut [u8] {
        match self {
            Pool::Borrowed(p) => {
                let start = id as usize * p.chunk;
                p.arena.get_mut(start..start + p.chunk).unwrap_or(&mut [])
            }
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => match p.slots.get_mut(id as usize) {
                Some(Some(c)) => &mut c[..],
                _ => &mut [],
            },
        }
    }

    /// Moves up to `n` chunks from `cache` into this pool's stock (heap pools only), so the
    /// next takes do not allocate.
    #[cfg(feature = "alloc")]
    pub(crate) fn stock(&mut self, cache: &mut ChunkCache, n: usize) {
        if let Pool::Owned(p) = self {
            // Free ids that hold a chunk are stock already; empty free ids get one first, in
            // the order `take` pops them (from the end).
            let mut have = 0;
            for &id in p.free.iter().rev() {
                if have >= n {
                    return;
                }
                match p.slots.get_mut(id as usize) {
                    Some(slot @ None) => match cache.take() {
                        Some(c) => {
                            *slot = Some(c);
                            p.spare += 1;
                        }
                        None => return,
                    },
                    Some(Some(_)) => {}
                    None => continue,
                }
                have += 1;
            }
            while have < n && p.slots.len() < p.max as usize {
                let Some(c) = cache.take() else {
                    return;
                };
                p.reserve_one();
                p.free.push(p.slots.len() as ChunkId);
                p.slots.push(Some(c));
                p.spare += 1;
                have += 1;
            }
        }
    }

    /// Gives every chunk not in use to `cache` (their ids stay, empty, so nothing is
    /// reallocated when data comes back). Returns the heap bytes this pool no longer holds.
    #[cfg(feature = "alloc")]
    pub(crate) fn release(&mut self, cache: &mut ChunkCache) -> usize {
        let before = self.heap_bytes();
        let Pool::Owned(p) = self else {
            return 0;
        };
        // Free ids that hold a chunk are the last `spare` of the free list (`give` and
        // `stock` add them at the end, `take` pops from it), so this costs what it gives back.
        let from = p.free.len().saturating_sub(p.spare as usize);
        for &id in p.free.get(from..).unwrap_or(&[]) {
            if let Some(slot) = p.slots.get_mut(id as usize) {
                if let Some(c) = slot.take() {
                    cache.give(c);
                }
            }
        }
        p.spare = 0;
        before.saturating_sub(self.heap_bytes())
    }

    /// With nothing in use, shrinks the id tables to a few entries (they grow again with
    /// data). Returns the heap bytes freed.
    #[cfg(feature = "alloc")]
    pub(crate) fn shrink(&mut self) -> usize {
        let before = self.heap_bytes();
        let Pool::Owned(p) = self else {
            return 0;
        };
        if p.slots.len() == p.free.len() && p.slots.iter().all(Option::is_none) {
            p.slots.clear();
            p.free.clear();
            p.slots.shrink_to(MIN_RING);
            p.free.shrink_to(MIN_RING);
        }
        before.saturating_sub(self.heap_bytes())
    }

    /// Heap bytes of the id tables alone (0 for a borrowed arena). O(1).
    #[cfg(feature = "alloc")]
    pub(crate) fn table_bytes(&self) -> usize {
        match self {
            Pool::Borrowed(_) => 0,
            Pool::Owned(p) => p.heap_tables(),
        }
    }

    /// Heap bytes held: chunks and tables (0 for a borrowed arena).
    #[cfg(feature = "alloc")]
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Pool::Borrowed(_) => 0,
            Pool::Owned(p) => {
                let chunks = p.slots.iter().filter(|c| c.is_some()).count();
                chunks * crate::engine::HEAP_CHUNK + p.heap_tables()
            }
        }
    }
}

#[cfg(feature = "alloc")]
impl HeapPool {
    fn heap_tables(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Option<Chunk>>()
            + self.free.capacity() * core::mem::size_of::<ChunkId>()
    }

    /// Room for one more id, growing in small steps within the bound (not by doubling past
    /// it); the free list gets the same room so `give` never allocates.
    fn reserve_one(&mut self) {
        if self.slots.len() == self.slots.capacity() {
            let room = (self.max as usize).saturating_sub(self.slots.len()).max(1);
            let want = self.slots.len().clamp(MIN_RING, 64).min(room);
            self.slots.reserve_exact(want);
        }
        let need = self.slots.capacity().saturating_sub(self.free.len());
        self.free.reserve_exact(need);
    }

    fn take(&mut self) -> Option<ChunkId> {
        if let Some(id) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(id as usize) {
                if slot.is_none() {
                    *slot = Some(new_chunk());
                } else {
                    self.spare = self.spare.saturating_sub(1);
                }
                return Some(id);
            }
            return None;
        }
        if self.slots.len() >= self.max as usize {
            return None;
        }
        self.reserve_one();
        self.slots.push(Some(new_chunk()));
        Some((self.slots.len() - 1) as ChunkId)
    }
}

#[cfg(test)]
mod tests {
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
        let a = p.take().unwrap();
        let b = p.take().unwrap();
        assert_ne!(a, b);
        p.chunk_mut(a).fill(1);
        assert!(p.chunk(b).iter().all(|&x| x == 0));
        assert_eq!(p.in_use(), 2);
        p.take().unwrap();
        p.take().unwrap();
        assert!(p.take().is_none());
        p.give(a);
        assert_eq!(p.take(), Some(a));
    }
}
