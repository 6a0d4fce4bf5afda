//! The decoder's shard buffers: size classes, the pool of spare buffers, and the scratch
//! space that only speeds decoding up.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::FecDecoder;
use crate::grow::reserve_within;
use crate::rs::Inverses;
use crate::wire::MAX_PACKET_LEN;

/// Buffers for packets up to this long are this long: an ACK or a small message (a 64-byte
/// echo with its KCP and FEC headers is 96 bytes).
const SMALL_BUF: usize = 128;
/// Buffers for longer packets up to this long are this long (a few ACKs or a short message);
/// longer ones are [`MAX_PACKET_LEN`]. Three classes keep the shards of small-message sessions
/// cheap (a 10/3 session holds about a group of them) without buffers ever having to grow.
const MID_BUF: usize = 256;

fn size_class(len: usize) -> usize {
    if len <= SMALL_BUF {
        SMALL_BUF
    } else if len <= MID_BUF {
        MID_BUF
    } else {
        len.max(MAX_PACKET_LEN)
    }
}

/// What only speeds decoding up, given back by [`FecDecoder::trim`].
#[derive(Default)]
pub(super) struct Scratch {
    /// Spare shard buffers, and their capacity.
    pub(super) pool: Vec<Vec<u8>>,
    pub(super) pool_bytes: usize,
    /// Rebuilt shards (size field + KCP datagram + zero padding) not handed out yet.
    pub(super) recovered: VecDeque<Vec<u8>>,
    pub(super) inverses: Inverses,
    /// A group's shards by position during a reconstruction (empty in between).
    pub(super) slots: Vec<Vec<u8>>,
}

impl Scratch {
    pub(super) fn heap_bytes(&self) -> usize {
        let vec = core::mem::size_of::<Vec<u8>>();
        core::mem::size_of::<Scratch>()
            + self.pool.capacity() * vec
            + self.pool_bytes
            + self.recovered.capacity() * vec
            + self.recovered.iter().map(Vec::capacity).sum::<usize>()
            + self.inverses.heap_bytes()
            + self.slots.capacity() * vec
    }
}

impl FecDecoder {
    pub(super) fn recycle_recovered(&mut self) {
        while let Some(b) = self.scratch.as_mut().and_then(|s| s.recovered.pop_front()) {
            self.give(b);
        }
    }

    /// Most buffers the pool keeps: two groups' worth (the queue's churn).
    pub(super) fn pool_max(&self) -> usize {
        2 * (self.ds + self.ps) + 1
    }

    pub(super) fn scratch(&mut self) -> &mut Scratch {
        self.scratch.get_or_insert_with(Default::default)
    }

    /// A buffer with room for `len` bytes: the smallest pooled one that fits, else a new one
    /// of `len`'s size class. Buffers are never grown, so each is allocated once while traffic
    /// flows, and the pool warms up to the largest number of each class in use at once.
    pub(super) fn take(&mut self, len: usize) -> Vec<u8> {
        let fit = self.scratch.as_mut().and_then(|s| {
            // Uniform traffic: the last buffer given back is the right size.
            let last_fits = s
                .pool
                .last()
                .is_some_and(|b| b.capacity() >= len && b.capacity() <= size_class(len));
            let i = if last_fits {
                s.pool.len() - 1
            } else {
                s.pool
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.capacity() >= len)
                    .min_by_key(|(_, b)| b.capacity())
                    .map(|(i, _)| i)?
            };
            let b = s.pool.swap_remove(i);
            s.pool_bytes -= b.capacity();
            Some(b)
        });
        match fit {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(size_class(len)),
        }
    }

    /// Pools a buffer if the pool stays within [`FecDecoder::pool_max`] buffers and half of
    /// `queue_bytes`, else frees it.
    pub(super) fn give(&mut self, buf: Vec<u8>) {
        let cap = buf.capacity();
        let max = self.pool_max();
        let budget = self.config.queue_bytes / 2;
        let s = self.scratch();
        if cap > 0 && s.pool.len() < max && s.pool_bytes + cap <= budget {
            reserve_within(&mut s.pool, 1, max);
            s.pool.push(buf);
            s.pool_bytes += cap;
        }
    }
}
