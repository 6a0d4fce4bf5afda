//! Payload chunks: their id, the heap chunk and the cache an endpoint's sessions share.

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// Largest segment payload the heap-backed engine stores: a 1500-byte MTU minus the header, so
/// segments from any kcp-go peer fit whatever MTU it was configured with.
#[cfg(feature = "alloc")]
pub const HEAP_CHUNK: usize = crate::config::MAX_MTU as usize - crate::wire::HEADER_LEN;

/// Identifies one payload chunk of a [`Pool`].
pub(crate) type ChunkId = u32;

/// One heap payload chunk: the largest segment payload a 1500-byte MTU allows.
#[cfg(feature = "alloc")]
pub type Chunk = alloc::boxed::Box<[u8; HEAP_CHUNK]>;

/// A fresh zeroed heap chunk.
#[cfg(feature = "alloc")]
pub(super) fn new_chunk() -> Chunk {
    alloc::boxed::Box::new([0u8; HEAP_CHUNK])
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
            max_chunks: budget_bytes / (HEAP_CHUNK + core::mem::size_of::<Chunk>()),
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
        self.chunks.len() * HEAP_CHUNK + self.chunks.capacity() * core::mem::size_of::<Chunk>()
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
