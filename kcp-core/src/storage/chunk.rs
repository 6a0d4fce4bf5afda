//! Payload chunks: their id, the heap chunks of both sizes and the cache an endpoint's
//! sessions share.

#[cfg(feature = "alloc")]
use alloc::boxed::Box;
#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// Largest segment payload the heap-backed engine stores: a 1500-byte MTU minus the header, so
/// segments from any kcp-go peer fit whatever MTU it was configured with.
#[cfg(feature = "alloc")]
pub const HEAP_CHUNK: usize = crate::config::MAX_MTU as usize - crate::wire::HEADER_LEN;

/// Payload of the small heap chunk: segments of at most this many bytes (a game's input, a
/// small request or its answer, a multiplexer's control frame) are stored in a chunk of this
/// size instead of a [`HEAP_CHUNK`] one, so a session holding small messages holds about a
/// tenth of the memory.
#[cfg(feature = "alloc")]
pub const SMALL_CHUNK: usize = 128;

/// Identifies one payload chunk of a [`Pool`](super::Pool). Heap pools mark the ids of small
/// chunks with [`SMALL_ID`].
pub(crate) type ChunkId = u32;

/// The bit that marks a heap pool's small chunk ids.
#[cfg(feature = "alloc")]
pub(crate) const SMALL_ID: ChunkId = 1 << 31;

/// One heap payload chunk: the largest segment payload a 1500-byte MTU allows.
#[cfg(feature = "alloc")]
pub type Chunk = Box<[u8; HEAP_CHUNK]>;

/// One small heap payload chunk ([`SMALL_CHUNK`] bytes).
#[cfg(feature = "alloc")]
pub type SmallChunk = Box<[u8; SMALL_CHUNK]>;

/// What one heap chunk of `N` bytes costs where it is kept: the chunk and its pointer.
#[cfg(feature = "alloc")]
pub(super) const fn chunk_cost<const N: usize>() -> usize {
    N + core::mem::size_of::<Box<[u8; N]>>()
}

/// A fresh zeroed heap chunk of `N` bytes.
#[cfg(feature = "alloc")]
pub(super) fn new_chunk<const N: usize>() -> Box<[u8; N]> {
    Box::new([0u8; N])
}

/// Payload chunks for many engines to share (feature `alloc`): an endpoint keeps the chunks
/// its sessions give back when they drain and hands them to sessions that need them, so an
/// idle session holds no payload memory and a busy one does not allocate per packet.
///
/// Keeps both sizes ([`HEAP_CHUNK`] and [`SMALL_CHUNK`]) within one byte budget: chunks
/// given back beyond it are freed.
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
pub struct ChunkCache {
    full: Kept<HEAP_CHUNK>,
    small: Kept<SMALL_CHUNK>,
    budget: usize,
}

/// The cached chunks of one size.
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
struct Kept<const N: usize> {
    chunks: Vec<Box<[u8; N]>>,
    /// Most chunks of this size the budget allows, were there no other.
    max: usize,
}

#[cfg(feature = "alloc")]
impl<const N: usize> Kept<N> {
    fn heap_bytes(&self) -> usize {
        self.chunks.len() * N + self.chunks.capacity() * core::mem::size_of::<Box<[u8; N]>>()
    }

    fn take(&mut self) -> Option<Box<[u8; N]>> {
        self.chunks.pop()
    }

    fn give(&mut self, chunk: Box<[u8; N]>, room: bool) {
        if room && self.chunks.len() < self.max {
            if self.chunks.len() == self.chunks.capacity() {
                // Doubling within the budget: a handful of reallocations over the endpoint's
                // life, each at a new high-water mark of chunks given back at once.
                let left = self.max - self.chunks.len();
                self.chunks
                    .reserve_exact(self.chunks.len().max(16).min(left));
            }
            self.chunks.push(chunk);
        }
    }
}

#[cfg(feature = "alloc")]
impl ChunkCache {
    /// A cache that keeps at most `budget_bytes` of chunks (and the lists of them).
    pub fn new(budget_bytes: usize) -> ChunkCache {
        ChunkCache {
            full: Kept {
                chunks: Vec::new(),
                max: budget_bytes / chunk_cost::<HEAP_CHUNK>(),
            },
            small: Kept {
                chunks: Vec::new(),
                max: budget_bytes / chunk_cost::<SMALL_CHUNK>(),
            },
            budget: budget_bytes,
        }
    }

    /// Chunks held, of both sizes.
    pub fn len(&self) -> usize {
        self.full.chunks.len() + self.small.chunks.len()
    }

    /// Small chunks held.
    pub fn small_len(&self) -> usize {
        self.small.chunks.len()
    }

    /// Whether it holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (chunks and the lists of them).
    pub fn heap_bytes(&self) -> usize {
        self.full.heap_bytes() + self.small.heap_bytes()
    }

    /// Whether one more chunk of `cost` bytes stays within the budget.
    fn room(&self, cost: usize) -> bool {
        self.full.chunks.len() * chunk_cost::<HEAP_CHUNK>()
            + self.small.chunks.len() * chunk_cost::<SMALL_CHUNK>()
            + cost
            <= self.budget
    }

    /// Takes a [`HEAP_CHUNK`] chunk, if one is kept.
    pub fn take(&mut self) -> Option<Chunk> {
        self.full.take()
    }

    /// Takes a [`SMALL_CHUNK`] chunk, if one is kept.
    pub fn take_small(&mut self) -> Option<SmallChunk> {
        self.small.take()
    }

    /// Keeps `chunk` for reuse, or frees it when the budget is reached.
    pub fn give(&mut self, chunk: Chunk) {
        let room = self.room(chunk_cost::<HEAP_CHUNK>());
        self.full.give(chunk, room);
    }

    /// Keeps a small `chunk` for reuse, or frees it when the budget is reached.
    pub fn give_small(&mut self, chunk: SmallChunk) {
        let room = self.room(chunk_cost::<SMALL_CHUNK>());
        self.small.give(chunk, room);
    }
}
