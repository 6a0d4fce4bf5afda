//! Memory that follows data: what the engine's buffers hold, the endpoint-wide chunk cache
//! they draw from and give back to, and the receive budget's limit.

use super::*;

impl Kcp<'_> {
    /// Refuses (`true`) or accepts again (`false`) out-of-order data, for an owner whose
    /// receive-memory budget is spent (an [`Endpoint`](crate::endpoint::Endpoint) does this
    /// for all its sessions). While limited, a PUSH is stored only if it is the next segment
    /// in order and the application has nothing to read yet (so every session still
    /// progresses); others are dropped unacknowledged, so the peer sends them again, and
    /// counted in [`Stats::in_over_budget`]. Data already stored stays.
    pub fn set_receive_limited(&mut self, limited: bool) {
        self.recv_limited = limited;
    }

    /// Whether out-of-order data is refused ([`set_receive_limited`](Self::set_receive_limited)).
    pub fn is_receive_limited(&self) -> bool {
        self.recv_limited
    }

    /// Heap bytes held on the receive side: received segments' payload chunks (queued or out
    /// of order), spare chunks not yet given back ([`release_storage`](Self::release_storage))
    /// and the receive ring; 0 on caller-provided buffers. O(1).
    #[cfg(feature = "alloc")]
    pub fn receive_heap_bytes(&self) -> usize {
        self.rcv.heap_bytes()
            + self.pool.table_bytes()
            + self.rcv_chunk_bytes as usize
            + self.pool.spare_bytes()
    }

    /// Gives back what the receive side holds while it holds no segment: the receive ring
    /// shrinks to a few entries, and the payload tables too when no chunk is in use (call
    /// [`release_storage`](Self::release_storage) first). For an owner short of memory; the
    /// next burst grows them again. Returns the heap bytes freed.
    #[cfg(feature = "alloc")]
    pub fn shrink_receive_storage(&mut self) -> usize {
        let mut freed = 0;
        if self.rcv.is_empty() {
            freed += self.rcv.shrink(MIN_RING);
        }
        if self.pool.in_use() == 0 {
            freed += self.pool.shrink();
        }
        freed
    }

    /// Spare payload chunks the engine holds (freed by `recv` or acknowledged sends, or
    /// stocked), until [`release_storage`](Self::release_storage) gives them back.
    pub fn spare_chunks(&self) -> usize {
        self.pool.spare()
    }

    /// Payload chunks held (send and receive), a measure of memory in use.
    pub fn buffered_segments(&self) -> usize {
        self.pool.in_use()
    }

    /// Whether the engine holds no data at all: nothing queued, in flight, received but
    /// unread, or waiting to be acknowledged. Then [`release_storage`](Self::release_storage)
    /// can give back everything but a few bytes.
    pub fn is_drained(&self) -> bool {
        self.snd.is_empty() && self.rcv.is_empty() && self.acks.is_empty() && self.txq.is_empty()
    }

    /// Heap bytes the engine holds beyond its own struct: rings and payload chunks (0 on
    /// caller-provided buffers).
    #[cfg(feature = "alloc")]
    pub fn heap_bytes(&self) -> usize {
        self.snd.heap_bytes()
            + self.rcv.heap_bytes()
            + self.acks.heap_bytes()
            + self.txq.heap_bytes()
            + self.pool.heap_bytes()
    }

    /// Heap allocations of the engine's payload pool so far: chunks it had to allocate (none
    /// was spare and the endpoint's cache had none to give) and growth of its id tables
    /// (wraps; 0 on caller-provided buffers). For allocation accounting in tests and
    /// benchmarks: a steady stream allocates here only when more payload is in flight at
    /// once than ever before.
    #[cfg(feature = "alloc")]
    pub fn pool_allocations(&self) -> u32 {
        self.pool.allocations()
    }

    /// Moves up to `full` payload chunks of [`HEAP_CHUNK`] bytes and `small` ones of
    /// [`SMALL_CHUNK`] bytes from `cache` into the engine, so the segments
    /// it is about to store (a datagram's PUSH segments, a `send`) need no allocation: a
    /// segment of up to `SMALL_CHUNK` payload bytes takes a small chunk, a larger one a full
    /// one. Heap-backed engines only; a no-op on caller-provided buffers.
    #[cfg(feature = "alloc")]
    pub fn stock_storage(&mut self, cache: &mut ChunkCache, full: usize, small: usize) {
        self.pool.stock(cache, full, small);
    }

    /// Moves into the engine the chunks from `cache` that a [`send`](Self::send) of `len`
    /// bytes would take (see [`stock_storage`](Self::stock_storage)), at most 256 of each size.
    #[cfg(feature = "alloc")]
    pub fn stock_for_send(&mut self, cache: &mut ChunkCache, len: usize) {
        let mss = (self.mss as usize).max(1);
        let mut len = len;
        // Full-size and small chunks.
        let mut need = [0usize; 2];
        let mut tally = |piece: usize, n: usize| {
            if piece > SMALL_CHUNK {
                need[0] += n;
            } else if piece > 0 {
                need[1] += n;
            }
        };
        // Stream mode first tops up the last queued segment, which may outgrow a small chunk.
        let tail = self.cfg.stream.then(|| self.stream_tail(mss)).flatten();
        if let Some(seg) = tail.and_then(|sn| self.snd.get(sn)) {
            let have = seg.len as usize;
            let take = (mss - have).min(len);
            if have + take > self.pool.chunk(seg.chunk).len() {
                tally(HEAP_CHUNK, 1);
            }
            len -= take;
        }
        tally(mss, (len / mss).min(256));
        tally(len % mss, 1);
        self.pool.stock(cache, need[0].min(256), need[1].min(256));
    }

    /// Gives the payload chunks the engine does not use to `cache` (no allocation: the
    /// engine's tables keep their size, so data coming back costs none either). Returns the
    /// heap bytes the engine no longer holds. Heap-backed engines only.
    #[cfg(feature = "alloc")]
    pub fn release_storage(&mut self, cache: &mut ChunkCache) -> usize {
        self.pool.release(cache)
    }

    /// When the engine is [drained](Self::is_drained), shrinks its rings and tables to a few
    /// entries, so memory follows the data held rather than the high-water mark of the last
    /// burst; they grow again (allocating) with the next burst, so call it when the session
    /// has been quiet for a while, not after every exchange. Give the chunks back first
    /// ([`release_storage`](Self::release_storage)). Returns the heap bytes freed.
    #[cfg(feature = "alloc")]
    pub fn shrink_storage(&mut self) -> usize {
        if !self.is_drained() {
            return 0;
        }
        self.pool.shrink()
            + self.snd.shrink(MIN_RING)
            + self.rcv.shrink(MIN_RING)
            + self.acks.shrink(MIN_RING)
            + self.txq.shrink(MIN_RING)
    }
}
