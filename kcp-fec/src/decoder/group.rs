//! Incomplete groups folded into parity-row accumulators, when a group is complete, and the
//! reconstruction of its lost data shards within the work budget.
//!
//! Reed-Solomon is linear: parity row `j` of a group is `P_j = sum_k M[j][k] * d_k` over its
//! data shards `d_k`, each zero-padded to the group's longest. A group keeps, for each parity
//! row, `S_j = P_j (if received) + sum over received data shards k of M[j][k] * d_k`, which is
//! `sum over missing data shards i of M[j][i] * d_i` once `P_j` is in. With `e` data shards
//! missing, `e` received parity rows give `e` equations in them: the `e x e` sub-matrix of
//! those rows over the missing columns, inverted, turns their `S_j` into the missing shards.

use alloc::vec::Vec;

use kcp_core::Millis;

use super::FecDecoder;
use crate::gf;
use crate::rs::Key;

/// Largest `min(ds, ps)`: the most shards one reconstruction rebuilds.
const MAX_MISSING: usize = crate::code::MAX_TOTAL_SHARDS / 2;

/// One incomplete group: which shards arrived, and the parity rows' accumulators.
pub(super) struct Group {
    /// First seqid of the group.
    pub(super) begin: u32,
    /// When its first shard arrived.
    pub(super) ts: Millis,
    /// Longest shard folded in (shards start at the size field).
    pub(super) maxlen: u32,
    /// Positions folded into the accumulators.
    pub(super) arrived: Key,
    /// Positions kcp-go's queue would still hold (arrived, not evicted since).
    pub(super) queued: Key,
    /// `ps` accumulators of `acc.len() / ps` bytes each (a size class of `maxlen`), zero past
    /// `maxlen`.
    pub(super) acc: Vec<u8>,
}

pub(super) fn bit(k: &Key, i: usize) -> bool {
    k.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

pub(super) fn set(k: &mut Key, i: usize) {
    if let Some(w) = k.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

pub(super) fn clear(k: &mut Key, i: usize) {
    if let Some(w) = k.get_mut(i / 64) {
        *w &= !(1 << (i % 64));
    }
}

/// Set bits below `n`.
fn count_below(k: &Key, n: usize) -> usize {
    k.iter()
        .enumerate()
        .map(|(w, bits)| {
            let lo = w * 64;
            if n >= lo + 64 {
                bits.count_ones() as usize
            } else if n > lo {
                (bits & ((1u64 << (n - lo)) - 1)).count_ones() as usize
            } else {
                0
            }
        })
        .sum()
}

/// Lowest set bit.
pub(super) fn lowest(k: &Key) -> Option<usize> {
    k.iter()
        .enumerate()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
}

/// Highest set bit.
pub(super) fn highest(k: &Key) -> Option<usize> {
    k.iter()
        .enumerate()
        .rev()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + 63 - w.leading_zeros() as usize)
}

impl Group {
    pub(super) fn new(begin: u32, ts: Millis) -> Self {
        Group {
            begin,
            ts,
            maxlen: 0,
            arrived: [0; 4],
            queued: [0; 4],
            acc: Vec::new(),
        }
    }

    pub(super) fn queued_count(&self) -> usize {
        count_below(&self.queued, 256)
    }

    /// Queued shards at data positions (below `ds`).
    pub(super) fn queued_data(&self, ds: usize) -> usize {
        count_below(&self.queued, ds)
    }
}

impl FecDecoder {
    /// First seqid of the group `seqid` belongs to (kcp-go's `shardBegin`).
    pub(super) fn group_begin(&self, seqid: u32) -> u32 {
        seqid - seqid % (self.ds + self.ps) as u32
    }

    /// Adds `shard` (position `pos` of group `gi`, already wide enough) to the accumulators.
    pub(super) fn fold(&mut self, gi: usize, pos: usize, shard: &[u8]) {
        let (ds, ps) = (self.ds, self.ps);
        let Some(g) = self.groups.get_mut(gi) else {
            return;
        };
        let stride = g.acc.len() / ps;
        if stride == 0 {
            return;
        }
        let kernel = self.code.kernel();
        for (j, row) in g.acc.chunks_exact_mut(stride).enumerate() {
            let coef = if pos < ds {
                self.code
                    .parity_row(ds + j)
                    .and_then(|r| r.get(pos))
                    .copied()
                    .unwrap_or(0)
            } else {
                u8::from(pos - ds == j)
            };
            gf::mul_with(kernel, coef, shard, row, true);
        }
        set(&mut g.arrived, pos);
    }

    /// Group assembly after a shard joined group `gi`: frees it when every data shard is
    /// queued, rebuilds its missing data shards when kcp-go would (at least `ds` shards
    /// queued).
    pub(super) fn try_group(&mut self, gi: usize) {
        let ds = self.ds;
        let Some(g) = self.groups.get(gi) else {
            return;
        };
        let begin = g.begin;
        if g.queued_data(ds) == ds {
            // Nothing lost.
            self.remove_group(gi);
            self.mark_done(begin);
            return;
        }
        if g.queued_count() < ds {
            return;
        }
        // The data shards that never arrived, and as many received parity rows.
        let mut cols = [0u8; MAX_MISSING];
        let mut rows = [0u8; MAX_MISSING];
        let mut key: Key = [0; 4];
        let mut e = 0;
        for k in (0..ds).filter(|k| !bit(&g.arrived, *k)) {
            if let Some(c) = cols.get_mut(e) {
                *c = k as u8;
                e += 1;
                set(&mut key, k);
            }
        }
        if e == 0 {
            // Every data shard arrived (some were evicted from the count since): kcp-go would
            // hand the evicted ones out again, but they were delivered when they came.
            self.remove_group(gi);
            self.mark_done(begin);
            return;
        }
        let mut r = 0;
        for j in (0..self.ps).filter(|j| bit(&g.arrived, ds + j)).take(e) {
            if let Some(x) = rows.get_mut(r) {
                *x = j as u8;
                r += 1;
                set(&mut key, ds + j);
            }
        }
        if r < e {
            // Cannot happen: `ds` shards arrived, so at least `e` of them are parity.
            return;
        }
        let len = g.maxlen as usize;
        let work = match &self.scratch {
            Some(s) => s.inverses.work_for(&self.code, &key, e, len),
            None => crate::rs::Inverses::default().work_for(&self.code, &key, e, len),
        };
        if work > self.budget.available() {
            self.stats.work_refused = self.stats.work_refused.wrapping_add(1);
            return;
        }
        let mut out = self.take(e * len);
        out.resize(e * len, 0);
        let Some(g) = self.groups.get(gi) else {
            return;
        };
        let stride = g.acc.len() / self.ps;
        let kernel = self.code.kernel();
        self.scratch_dirty = true;
        let scratch = self.scratch.get_or_insert_with(Default::default);
        let mut small = [0u8; crate::rs::SMALL * crate::rs::SMALL];
        let ok = match scratch.inverses.inverse(
            &self.code,
            rows.get(..e).unwrap_or(&[]),
            cols.get(..e).unwrap_or(&[]),
            key,
            &mut small,
        ) {
            Ok(inv) => {
                let mut ins: [&[u8]; MAX_MISSING] = [&[]; MAX_MISSING];
                for (slot, &j) in ins.iter_mut().zip(rows.iter().take(e)) {
                    let at = usize::from(j) * stride;
                    *slot = g.acc.get(at..at + len).unwrap_or(&[]);
                }
                let mut outs: [&mut [u8]; MAX_MISSING] = core::array::from_fn(|_| &mut [][..]);
                for (o, chunk) in outs.iter_mut().zip(out.chunks_exact_mut(len.max(1))) {
                    *o = chunk;
                }
                gf::matmul(
                    kernel,
                    inv,
                    ins.get(..e).unwrap_or(&[]),
                    outs.get_mut(..e).unwrap_or(&mut []),
                );
                true
            }
            Err(_) => false,
        };
        self.remove_group(gi);
        if ok {
            self.budget.spend(work);
            self.add_work(work);
            self.stats.reconstructions = self.stats.reconstructions.wrapping_add(1);
            self.mark_done(begin);
            self.scratch().set_recovered(out, len, e);
            self.rec_held = true;
        } else {
            self.stats.reconstruct_failures = self.stats.reconstruct_failures.wrapping_add(1);
            self.give(out);
        }
    }

    /// Remembers that the group starting at `shard_begin` is complete (the oldest is forgotten).
    pub(super) fn mark_done(&mut self, shard_begin: u32) {
        self.done.rotate_right(1);
        if let Some(newest) = self.done.first_mut() {
            *newest = Some(shard_begin);
        }
    }
}
