//! Fixed-size payload chunks handed out by id, over a caller's arena or the heap.

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

use super::chunk::ChunkId;
#[cfg(feature = "alloc")]
use super::chunk::{chunk_cost, new_chunk, ChunkCache, HEAP_CHUNK, SMALL_CHUNK, SMALL_ID};
#[cfg(feature = "alloc")]
use super::ring::MIN_RING;
#[cfg(feature = "alloc")]
use alloc::boxed::Box;

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

/// Heap chunks by id, in two sizes: small payloads take a [`SMALL_CHUNK`] chunk, others a
/// [`HEAP_CHUNK`] one. Each size is a [`Class`] of its own; small ids carry [`SMALL_ID`].
#[cfg(feature = "alloc")]
#[derive(Debug)]
pub(crate) struct HeapPool {
    full: Class<HEAP_CHUNK>,
    small: Class<SMALL_CHUNK>,
    /// Most chunks of each size.
    max: u32,
    /// Heap allocations this pool made: new chunks and id-table growth (wraps).
    allocs: u32,
}

/// Heap chunks of one size by index. An index keeps its number while in use; a free one may
/// have given its storage back (`None`), and gets a chunk again when it is taken.
#[cfg(feature = "alloc")]
#[derive(Debug)]
struct Class<const N: usize> {
    slots: Vec<Option<Box<[u8; N]>>>,
    /// Indices not in use; those whose slot holds a chunk are the last `spare` of the list
    /// (`give` and `stock` add them at the end, `take` pops from it), so they are taken first.
    free: Vec<ChunkId>,
    /// Free indices whose slot holds a chunk (idle memory, counted by an endpoint's budget).
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

    /// An empty heap pool of at most `max` chunks of each size.
    #[cfg(feature = "alloc")]
    pub(crate) fn heap(max: usize) -> Self {
        Pool::Owned(HeapPool {
            full: Class::new(),
            small: Class::new(),
            max: max.min(MAX_INDEX) as u32,
            allocs: 0,
        })
    }

    /// Bytes per chunk: the largest segment payload this pool can hold.
    #[inline]
    pub(crate) fn chunk_len(&self) -> usize {
        match self {
            Pool::Borrowed(p) => p.chunk,
            #[cfg(feature = "alloc")]
            Pool::Owned(_) => HEAP_CHUNK,
        }
    }

    /// Chunks currently handed out.
    #[inline]
    pub(crate) fn in_use(&self) -> usize {
        match self {
            Pool::Borrowed(p) => p.total - p.nfree,
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => p.full.in_use() + p.small.in_use(),
        }
    }

    /// Chunks held but not in use (freed, or stocked by an endpoint), until they are
    /// released; 0 for a borrowed arena.
    #[inline]
    pub(crate) fn spare(&self) -> usize {
        match self {
            Pool::Borrowed(_) => 0,
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => p.full.spare as usize + p.small.spare as usize,
        }
    }

    /// Heap bytes of the chunks held but not in use ([`spare`](Self::spare)), each counted
    /// with its pointer; 0 for a borrowed arena.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn spare_bytes(&self) -> usize {
        match self {
            Pool::Borrowed(_) => 0,
            Pool::Owned(p) => {
                p.full.spare as usize * chunk_cost::<HEAP_CHUNK>()
                    + p.small.spare as usize * chunk_cost::<SMALL_CHUNK>()
            }
        }
    }

    /// Heap bytes chunk `id` costs (the chunk and its pointer); 0 for a borrowed arena.
    #[inline]
    pub(crate) fn chunk_cost(&self, id: ChunkId) -> usize {
        match self {
            Pool::Borrowed(_) => {
                let _ = id;
                0
            }
            #[cfg(feature = "alloc")]
            Pool::Owned(_) if id & SMALL_ID != 0 => chunk_cost::<SMALL_CHUNK>(),
            #[cfg(feature = "alloc")]
            Pool::Owned(_) => chunk_cost::<HEAP_CHUNK>(),
        }
    }

    /// Chunks of either size that can still be handed out.
    #[inline]
    pub(crate) fn available(&self) -> usize {
        match self {
            Pool::Borrowed(p) => p.nfree,
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => p.full.available(p.max).min(p.small.available(p.max)),
        }
    }

    /// Changes the bound in chunks of each size (heap pools only), never below the ids that
    /// exist.
    pub(crate) fn set_max(&mut self, max: usize) -> bool {
        match self {
            Pool::Borrowed(p) => max <= p.total,
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => {
                p.max = max
                    .max(p.full.slots.len())
                    .max(p.small.slots.len())
                    .min(MAX_INDEX) as u32;
                true
            }
        }
    }

    /// Takes a chunk that holds at least `len` bytes. `None` when exhausted.
    ///
    /// A heap pool hands out a small chunk for `len` up to [`SMALL_CHUNK`], unless it has
    /// none spare and a full-size one is: then that one, which costs no allocation.
    pub(crate) fn take(&mut self, len: usize) -> Option<ChunkId> {
        match self {
            Pool::Borrowed(p) => {
                let _ = len;
                if p.nfree == 0 {
                    return None;
                }
                p.nfree -= 1;
                p.free.get(p.nfree).copied()
            }
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => {
                if len <= SMALL_CHUNK && (p.small.spare > 0 || p.full.spare == 0) {
                    p.small.take(p.max, &mut p.allocs).map(|i| i | SMALL_ID)
                } else {
                    p.full.take(p.max, &mut p.allocs)
                }
            }
        }
    }

    /// Makes room for `need` bytes in chunk `id`, whose first `have` bytes are in use: a
    /// small chunk is swapped for a full-size one holding the same bytes. Returns the id to
    /// use from now on: `id` itself when it already has room, `None` (and `id` unchanged)
    /// when no full-size chunk can be had.
    pub(crate) fn grow(&mut self, id: ChunkId, have: usize, need: usize) -> Option<ChunkId> {
        if need <= self.chunk(id).len() {
            return Some(id);
        }
        match self {
            Pool::Borrowed(_) => {
                let _ = have;
                None
            }
            #[cfg(feature = "alloc")]
            Pool::Owned(p) => {
                if id & SMALL_ID == 0 || need > HEAP_CHUNK {
                    return None;
                }
                let new = p.full.take(p.max, &mut p.allocs)?;
                let small = id & !SMALL_ID;
                if let (Some(dst), Some(src)) = (
                    p.full.get_mut(new).get_mut(..have),
                    p.small.get(small).get(..have),
                ) {
                    dst.copy_from_slice(src);
                }
                p.small.give(small);
                Some(new)
            }
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
            Pool::Owned(p) => {
                if id & SMALL_ID != 0 {
                    p.small.give(id & !SMALL_ID);
                } else {
                    p.full.give(id);
                }
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
            Pool::Owned(p) => {
                if id & SMALL_ID != 0 {
                    p.small.get(id & !SMALL_ID)
                } else {
                    p.full.get(id)
                }
            }
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
            Pool::Owned(p) => {
                if id & SMALL_ID != 0 {
                    p.small.get_mut(id & !SMALL_ID)
                } else {
                    p.full.get_mut(id)
                }
            }
        }
    }

    /// Moves up to `full` full-size and `small` small chunks from `cache` into this pool's
    /// stock (heap pools only), so the next takes do not allocate.
    #[cfg(feature = "alloc")]
    pub(crate) fn stock(&mut self, cache: &mut ChunkCache, full: usize, small: usize) {
        if let Pool::Owned(p) = self {
            if full > 0 {
                p.full.stock(p.max, full, &mut p.allocs, || cache.take());
            }
            if small > 0 {
                p.small
                    .stock(p.max, small, &mut p.allocs, || cache.take_small());
            }
        }
    }

    /// Gives every chunk not in use to `cache` (their ids stay, empty, so nothing is
    /// reallocated when data comes back). Returns the heap bytes this pool no longer holds.
    #[cfg(feature = "alloc")]
    pub(crate) fn release(&mut self, cache: &mut ChunkCache) -> usize {
        let Pool::Owned(p) = self else {
            return 0;
        };
        p.full.release(|c| cache.give(c)) + p.small.release(|c| cache.give_small(c))
    }

    /// With nothing in use, shrinks the id tables to a few entries (they grow again with
    /// data). Returns the heap bytes freed.
    #[cfg(feature = "alloc")]
    pub(crate) fn shrink(&mut self) -> usize {
        let Pool::Owned(p) = self else {
            return 0;
        };
        p.full.shrink() + p.small.shrink()
    }

    /// Heap bytes of the id tables alone (0 for a borrowed arena). O(1).
    #[cfg(feature = "alloc")]
    pub(crate) fn table_bytes(&self) -> usize {
        match self {
            Pool::Borrowed(_) => 0,
            Pool::Owned(p) => p.full.tables() + p.small.tables(),
        }
    }

    /// Heap allocations the pool made so far: new chunks and id-table growth (0 for a
    /// borrowed arena; wraps).
    #[cfg(feature = "alloc")]
    pub(crate) fn allocations(&self) -> u32 {
        match self {
            Pool::Borrowed(_) => 0,
            Pool::Owned(p) => p.allocs,
        }
    }

    /// Heap bytes held: chunks and tables (0 for a borrowed arena).
    #[cfg(feature = "alloc")]
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Pool::Borrowed(_) => 0,
            Pool::Owned(p) => p.full.heap_bytes() + p.small.heap_bytes(),
        }
    }
}

/// Most chunks of one size a heap pool numbers: below [`SMALL_ID`], and below the `NO_CHUNK`
/// marker either way.
#[cfg(feature = "alloc")]
const MAX_INDEX: usize = SMALL_ID as usize - 1;

#[cfg(feature = "alloc")]
impl<const N: usize> Class<N> {
    const fn new() -> Self {
        Class {
            slots: Vec::new(),
            free: Vec::new(),
            spare: 0,
        }
    }

    fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn available(&self, max: u32) -> usize {
        self.free.len() + (max as usize).saturating_sub(self.slots.len())
    }

    #[inline]
    fn get(&self, i: ChunkId) -> &[u8] {
        match self.slots.get(i as usize) {
            Some(Some(c)) => &c[..],
            _ => &[],
        }
    }

    #[inline]
    fn get_mut(&mut self, i: ChunkId) -> &mut [u8] {
        match self.slots.get_mut(i as usize) {
            Some(Some(c)) => &mut c[..],
            _ => &mut [],
        }
    }

    /// `reserve_one` keeps the free list as long as the id table: no allocation here.
    fn give(&mut self, i: ChunkId) {
        self.free.push(i);
        self.spare += 1;
    }

    fn tables(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Option<Box<[u8; N]>>>()
            + self.free.capacity() * core::mem::size_of::<ChunkId>()
    }

    fn heap_bytes(&self) -> usize {
        let chunks = self.slots.iter().filter(|c| c.is_some()).count();
        chunks * N + self.tables()
    }

    /// Room for one more index, growing in small steps within the bound (not by doubling
    /// past it); the free list gets the same room so `give` never allocates.
    fn reserve_one(&mut self, max: u32, allocs: &mut u32) {
        if self.slots.len() == self.slots.capacity() {
            let room = (max as usize).saturating_sub(self.slots.len()).max(1);
            let want = self.slots.len().clamp(MIN_RING, 64).min(room);
            self.slots.reserve_exact(want);
            *allocs = allocs.wrapping_add(1);
        }
        let need = self.slots.capacity().saturating_sub(self.free.len());
        if self.free.capacity() < need {
            self.free.reserve_exact(need);
            *allocs = allocs.wrapping_add(1);
        }
    }

    fn take(&mut self, max: u32, allocs: &mut u32) -> Option<ChunkId> {
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(i as usize) {
                if slot.is_none() {
                    *slot = Some(new_chunk());
                    *allocs = allocs.wrapping_add(1);
                } else {
                    self.spare = self.spare.saturating_sub(1);
                }
                return Some(i);
            }
            return None;
        }
        if self.slots.len() >= max as usize {
            return None;
        }
        self.reserve_one(max, allocs);
        self.slots.push(Some(new_chunk()));
        *allocs = allocs.wrapping_add(1);
        Some((self.slots.len() - 1) as ChunkId)
    }

    /// Puts up to `n` chunks from `from` into free indices, so the next takes do not
    /// allocate.
    fn stock(
        &mut self,
        max: u32,
        n: usize,
        allocs: &mut u32,
        mut from: impl FnMut() -> Option<Box<[u8; N]>>,
    ) {
        // Free indices that hold a chunk are stock already; empty free ones get one first,
        // in the order `take` pops them (from the end).
        let mut have = 0;
        for &i in self.free.iter().rev() {
            if have >= n {
                return;
            }
            match self.slots.get_mut(i as usize) {
                Some(slot @ None) => match from() {
                    Some(c) => {
                        *slot = Some(c);
                        self.spare += 1;
                    }
                    None => return,
                },
                Some(Some(_)) => {}
                None => continue,
            }
            have += 1;
        }
        while have < n && self.slots.len() < max as usize {
            let Some(c) = from() else {
                return;
            };
            self.reserve_one(max, allocs);
            self.free.push(self.slots.len() as ChunkId);
            self.slots.push(Some(c));
            self.spare += 1;
            have += 1;
        }
    }

    /// Hands every chunk not in use to `to`. Returns the heap bytes no longer held.
    fn release(&mut self, mut to: impl FnMut(Box<[u8; N]>)) -> usize {
        if self.spare == 0 {
            return 0;
        }
        let from = self.free.len().saturating_sub(self.spare as usize);
        let mut n = 0;
        for &i in self.free.get(from..).unwrap_or(&[]) {
            if let Some(slot) = self.slots.get_mut(i as usize) {
                if let Some(c) = slot.take() {
                    to(c);
                    n += 1;
                }
            }
        }
        self.spare = 0;
        n * N
    }

    /// With nothing in use, shrinks the tables to a few entries. Returns the bytes freed.
    fn shrink(&mut self) -> usize {
        if self.slots.len() != self.free.len() || self.slots.iter().any(Option::is_some) {
            return 0;
        }
        let before = self.tables();
        self.slots.clear();
        self.free.clear();
        self.slots.shrink_to(MIN_RING);
        self.free.shrink_to(MIN_RING);
        before.saturating_sub(self.tables())
    }
}
