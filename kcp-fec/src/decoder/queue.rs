//! The receive queue, folded: duplicate drop, the group a shard joins, the work credit it
//! earns, and the queue's limits (shard count, bytes, expiry).

use kcp_core::Millis;

use super::group::{bit, clear, lowest, set, Group};
use super::pool::row_class;
use super::FecDecoder;
use crate::budget;
use crate::grow::reserve_deque_within;
use crate::wire::{FEC_EXPIRE_MS, SHARD_HEADER_LEN};

impl FecDecoder {
    pub(super) fn decode(&mut self, packet: &[u8], seqid: u32, is_data: bool, now: Millis) {
        self.maybe_autotune(seqid, is_data, now);

        let begin = self.group_begin(seqid);
        if self.done.contains(&Some(begin)) {
            self.stats.late_shards = self.stats.late_shards.wrapping_add(1);
            return;
        }
        // A shard's role is its position in the group, as kcp-go's reconstruction reads it;
        // one whose type says otherwise could only be read in the wrong role.
        let pos = seqid.wrapping_sub(begin) as usize;
        if (pos < self.ds) != is_data {
            self.stats.misplaced = self.stats.misplaced.wrapping_add(1);
            return;
        }
        let shard = packet.get(SHARD_HEADER_LEN..).unwrap_or(&[]);

        // The group, found or inserted in order from the newest end.
        let mut gi = 0;
        let mut found = false;
        for (i, g) in self.groups.iter().enumerate().rev() {
            if g.begin == begin {
                (gi, found) = (i, true);
                break;
            }
            if (begin.wrapping_sub(g.begin) as i32) > 0 {
                gi = i + 1;
                break;
            }
        }
        if found {
            if self.groups.get(gi).is_some_and(|g| bit(&g.queued, pos)) {
                self.stats.duplicates = self.stats.duplicates.wrapping_add(1);
                return;
            }
        } else {
            // One group at a time is the common case (a lossless stream, small messages):
            // start with room for one, then double up to the bound.
            if self.groups.capacity() == 0 {
                self.groups.reserve_exact(1);
            }
            reserve_deque_within(&mut self.groups, 1, self.rxlimit + 1);
            self.groups.insert(gi, Group::new(begin, now));
        }
        // Only a shard that joins the queue earns work credit (a duplicate buys nothing).
        self.budget
            .earn(budget::earned(self.ds, shard.len()), self.budget_cap);
        let refold = self.groups.get(gi).is_some_and(|g| !bit(&g.arrived, pos));
        if refold {
            // A shard evicted from the count and sent again is in the sums already.
            match self.widen(gi, shard.len(), is_data) {
                Some(i) => gi = i,
                None => return,
            }
            self.fold(gi, pos, shard);
        }
        if let Some(g) = self.groups.get_mut(gi) {
            set(&mut g.queued, pos);
            self.queued += 1;
        }

        self.try_group(gi);

        // Queue limit: one eviction per packet, as kcp-go.
        if self.queued > self.rxlimit {
            self.evict_front();
        }
        // Byte budget (a pooled buffer may be larger than asked): oldest groups first.
        while self.queued_bytes > self.config.queue_bytes && !self.groups.is_empty() {
            self.drop_front_for_bytes();
        }
        // Expiry of leading groups.
        while self
            .groups
            .front()
            .is_some_and(|g| now.since(g.ts) > FEC_EXPIRE_MS as i32)
        {
            if let Some((n, _)) = self.remove_group(0) {
                self.stats.expired = self.stats.expired.wrapping_add(n as u64);
            }
        }
    }

    /// Makes group `gi`'s accumulators wide enough for a shard of `len` bytes, evicting the
    /// oldest groups first if the new buffer would not fit in `queue_bytes`. Returns the
    /// group's index then, or `None` if even alone it does not fit (the group is dropped, the
    /// arriving shard counted as evicted with it).
    fn widen(&mut self, gi: usize, len: usize, is_data: bool) -> Option<usize> {
        let ps = self.ps;
        let g = self.groups.get_mut(gi)?;
        let maxlen = (g.maxlen as usize).max(len);
        let row = row_class(maxlen);
        let old_row = g.acc.len() / ps;
        if row <= old_row {
            g.maxlen = maxlen as u32;
            return Some(gi);
        }
        let need = ps * row;
        // A new buffer (the old one goes back to the pool, where a group of the old class
        // finds it). The old one is of a smaller class (at most half the new size) or a pooled
        // buffer (at most half of `queue_bytes`), so while both exist the heap stays within
        // `heap_bound` (which counts a rebuilt group's buffer, not in use during decode).
        let mut gi = gi;
        loop {
            let old_cap = self.groups.get(gi).map_or(0, |g| g.acc.capacity());
            if self.queued_bytes - old_cap + need <= self.config.queue_bytes {
                break;
            }
            if gi == 0 {
                // Oldest of all and too big alone: it goes, with the arriving shard.
                self.drop_front_for_bytes();
                self.count_evicted(is_data, true);
                return None;
            }
            self.drop_front_for_bytes();
            gi -= 1;
        }
        let mut buf = self.take(need);
        buf.resize(need, 0);
        let g = self.groups.get_mut(gi)?;
        let old_len = g.maxlen as usize;
        for (j, dst) in buf.chunks_exact_mut(row).enumerate() {
            if let (Some(src), Some(d)) = (
                g.acc.get(j * old_row..j * old_row + old_len),
                dst.get_mut(..old_len),
            ) {
                d.copy_from_slice(src);
            }
        }
        g.maxlen = maxlen as u32;
        let new_cap = buf.capacity();
        let old = core::mem::replace(&mut g.acc, buf);
        self.queued_bytes = self.queued_bytes - old.capacity() + new_cap;
        self.give(old);
        Some(gi)
    }

    fn count_evicted(&mut self, is_data: bool, for_bytes: bool) {
        if is_data {
            self.stats.short_shards = self.stats.short_shards.wrapping_add(1);
        }
        if for_bytes {
            self.stats.evicted_for_bytes = self.stats.evicted_for_bytes.wrapping_add(1);
        }
    }

    /// kcp-go's eviction of its queue's oldest shard: the front group's first queued shard
    /// leaves the count (its bytes stay in the sums); a group left with none goes.
    fn evict_front(&mut self) {
        let ds = self.ds;
        let Some(g) = self.groups.front_mut() else {
            return;
        };
        let Some(pos) = lowest(&g.queued) else {
            return;
        };
        clear(&mut g.queued, pos);
        let empty = lowest(&g.queued).is_none();
        self.queued -= 1;
        self.count_evicted(pos < ds, false);
        if empty {
            self.remove_group(0);
        }
    }

    /// Drops the oldest group whole (its accumulators are what holds bytes).
    fn drop_front_for_bytes(&mut self) {
        if let Some((n, data)) = self.remove_group(0) {
            let s = &mut self.stats;
            s.evicted_for_bytes = s.evicted_for_bytes.wrapping_add(n as u64);
            s.short_shards = s.short_shards.wrapping_add(data as u64);
        }
    }
}
