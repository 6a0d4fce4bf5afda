//! The decoder's buffers: size classes of the accumulators, the pool of spare buffers, the
//! rebuilt shards, and the scratch space that only speeds decoding up.

use alloc::vec::Vec;

use super::FecDecoder;
use crate::rs::Inverses;
use crate::wire::{MAX_PACKET_LEN, SHARD_HEADER_LEN};

/// Accumulator rows for shards up to this long are this long: an ACK or a small message (a
/// 64-byte echo is a 90-byte shard: size field, KCP header, payload).
const SMALL_ROW: usize = 128 - SHARD_HEADER_LEN;
/// Rows for longer shards up to this long are this long (a few ACKs or a short message);
/// longer ones hold the longest shard. Three classes keep the groups of small-message
/// sessions cheap without buffers having to grow at each longer shard.
const MID_ROW: usize = 256 - SHARD_HEADER_LEN;
/// The longest shard.
const MAX_ROW: usize = MAX_PACKET_LEN - SHARD_HEADER_LEN;

/// Most spare buffers the pool keeps: enough for the groups in flight on a lossy link and
/// one group's rebuilt shards, so a warm decoder allocates nothing per packet.
pub(super) const POOL_MAX: usize = 4;

/// The accumulator row length for shards up to `len` bytes.
pub(super) fn row_class(len: usize) -> usize {
    if len <= SMALL_ROW {
        SMALL_ROW
    } else if len <= MID_ROW {
        MID_ROW
    } else {
        len.max(MAX_ROW)
    }
}

/// What only speeds decoding up, given back by [`FecDecoder::trim`], and the rebuilt shards.
#[derive(Default)]
pub(super) struct Scratch {
    /// Spare buffers, and their capacity.
    pub(super) pool: Vec<Vec<u8>>,
    pub(super) pool_bytes: usize,
    /// Rebuilt shards (size field + KCP datagram + zero padding) of the last group rebuilt,
    /// `rec_len` bytes each; the first `rec_next` of `rec_rows` are handed out.
    recovered: Vec<u8>,
    rec_len: usize,
    rec_rows: usize,
    rec_next: usize,
    pub(super) inverses: Inverses,
}

impl Scratch {
    pub(super) fn heap_bytes(&self) -> usize {
        let vec = core::mem::size_of::<Vec<u8>>();
        core::mem::size_of::<Scratch>()
            + self.pool.capacity() * vec
            + self.pool_bytes
            + self.recovered.capacity()
            + self.inverses.heap_bytes()
    }

    /// Rebuilt shards not handed out yet.
    pub(super) fn pending(&self) -> usize {
        self.rec_rows - self.rec_next
    }

    /// Keeps `rows` rebuilt shards of `len` bytes each, to be handed out in order.
    pub(super) fn set_recovered(&mut self, buf: Vec<u8>, len: usize, rows: usize) {
        debug_assert!(self.recovered.capacity() == 0);
        self.recovered = buf;
        self.rec_len = len;
        self.rec_rows = rows;
        self.rec_next = 0;
    }

    /// The next rebuilt shard, if any.
    pub(super) fn next_recovered(&mut self) -> Option<&[u8]> {
        if self.rec_next >= self.rec_rows {
            return None;
        }
        let at = self.rec_next * self.rec_len;
        self.rec_next += 1;
        self.recovered.get(at..at + self.rec_len)
    }
}

impl FecDecoder {
    /// Drops the rebuilt shards not handed out and pools their buffer.
    pub(super) fn recycle_recovered(&mut self) {
        if !self.rec_held {
            return;
        }
        self.rec_held = false;
        self.scratch_dirty = true;
        let Some(s) = self.scratch.as_mut() else {
            return;
        };
        let b = core::mem::take(&mut s.recovered);
        (s.rec_rows, s.rec_next) = (0, 0);
        if b.capacity() > 0 {
            self.give(b);
        }
    }

    /// The scratch space, built if needed; its heap is counted again before the entry point
    /// returns.
    pub(super) fn scratch(&mut self) -> &mut Scratch {
        self.scratch_dirty = true;
        self.scratch.get_or_insert_with(Default::default)
    }

    /// An empty buffer with room for `len` bytes: the smallest pooled one that fits, else a
    /// new one of exactly `len`. Buffers are never grown, so each is allocated once while
    /// traffic flows, and the pool warms up to the buffers in use at once.
    pub(super) fn take(&mut self, len: usize) -> Vec<u8> {
        if self.scratch.is_some() {
            self.scratch_dirty = true;
        }
        let fit = self.scratch.as_mut().and_then(|s| {
            let i = s
                .pool
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)?;
            let b = s.pool.swap_remove(i);
            s.pool_bytes -= b.capacity();
            Some(b)
        });
        match fit {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(len),
        }
    }

    /// Pools a buffer if the pool stays within [`POOL_MAX`] buffers and half of
    /// `queue_bytes`, else frees it. A buffer smaller than a group's sums of the smallest
    /// class (the rebuilt shards of small messages) is freed too: no group could use it, and
    /// a rebuild finds a spare group buffer in the pool whenever groups complete.
    pub(super) fn give(&mut self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap < self.ps * SMALL_ROW {
            // Nothing to keep (a new group's empty sums), or too small to serve as sums.
            return;
        }
        let budget = self.config.queue_bytes / 2;
        let s = self.scratch();
        if s.pool.len() < POOL_MAX && s.pool_bytes + cap <= budget {
            // Room for one spare first (a lossless stream needs no more), then doubling up
            // to POOL_MAX.
            if s.pool.len() == s.pool.capacity() {
                let more = s.pool.capacity().clamp(1, POOL_MAX - s.pool.len());
                s.pool.reserve_exact(more);
            }
            s.pool.push(buf);
            s.pool_bytes += cap;
        }
    }
}
