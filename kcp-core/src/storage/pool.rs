//! Fixed-size payload chunks handed out by id, over a caller's arena or the heap.

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

use super::chunk::ChunkId;
#[cfg(feature = "alloc")]
use super::chunk::{new_chunk, Chunk, ChunkCache, HEAP_CHUNK};
#[cfg(feature = "alloc")]
use super::ring::MIN_RING;

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
    /// Heap allocations this pool made: new chunks and id-table growth (wraps).
    allocs: u32,
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
            Pool::Owned(p) => {
                let chunks = p.slots.iter().filter(|c| c.is_some()).count();
                chunks * HEAP_CHUNK + p.heap_tables()
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
            self.allocs = self.allocs.wrapping_add(1);
        }
        let need = self.slots.capacity().saturating_sub(self.free.len());
        if self.free.capacity() < need {
            self.free.reserve_exact(need);
            self.allocs = self.allocs.wrapping_add(1);
        }
    }

    fn take(&mut self) -> Option<ChunkId> {
        if let Some(id) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(id as usize) {
                if slot.is_none() {
                    *slot = Some(new_chunk());
                    self.allocs = self.allocs.wrapping_add(1);
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
        self.allocs = self.allocs.wrapping_add(1);
        Some((self.slots.len() - 1) as ChunkId)
    }
}
