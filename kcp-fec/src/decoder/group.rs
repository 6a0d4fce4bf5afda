//! Group assembly: when a group is complete, and the Reed-Solomon reconstruction of its lost
//! data shards within the work budget.

use alloc::vec::Vec;

use super::FecDecoder;
use crate::code::MAX_TOTAL_SHARDS;
use crate::grow::{reserve_deque_within, reserve_within};
use crate::rs::Inverses;
use crate::wire::SHARD_HEADER_LEN;

impl FecDecoder {
    /// Group assembly around the shard just inserted at `insert_idx`.
    pub(super) fn try_group(&mut self, seqid: u32, insert_idx: usize) {
        let total = self.ds + self.ps;
        let t = total as u32;
        let shard_begin = self.group_begin(seqid);
        let shard_end = shard_begin.wrapping_add(t - 1);
        let search_begin = insert_idx.saturating_sub((seqid % t) as usize);
        let Some(last) = self.rx.len().checked_sub(1) else {
            return;
        };
        let search_end = (search_begin + total - 1).min(last);
        if search_end < search_begin || search_end - search_begin + 1 < self.ds {
            return;
        }
        let (mut num, mut num_data, mut first, mut maxlen) = (0usize, 0usize, 0usize, 0usize);
        let mut present = [false; MAX_TOTAL_SHARDS];
        for (i, e) in self.rx.range(search_begin..=search_end).enumerate() {
            if (e.seqid.wrapping_sub(shard_end) as i32) > 0 {
                break;
            }
            if (e.seqid.wrapping_sub(shard_begin) as i32) >= 0 {
                num += 1;
                if e.is_data {
                    num_data += 1;
                }
                if num == 1 {
                    first = search_begin + i;
                }
                maxlen = maxlen.max(e.buf.len() - SHARD_HEADER_LEN);
                if let Some(p) = present.get_mut(e.seqid.wrapping_sub(shard_begin) as usize) {
                    *p = true;
                }
            }
        }
        let end = (first + num).min(self.rx.len());
        if num_data == self.ds {
            // Nothing lost.
            self.free_range(first, end);
            self.mark_done(shard_begin);
        } else if num >= self.ds && self.reconstruct(first, end, shard_begin, maxlen, &present) {
            self.mark_done(shard_begin);
        }
    }

    /// First seqid of the group `seqid` belongs to (kcp-go's `shardBegin`).
    pub(super) fn group_begin(&self, seqid: u32) -> u32 {
        seqid - seqid % (self.ds + self.ps) as u32
    }

    /// Remembers that the group starting at `shard_begin` is complete (the oldest is forgotten).
    fn mark_done(&mut self, shard_begin: u32) {
        self.done.rotate_right(1);
        if let Some(newest) = self.done.first_mut() {
            *newest = Some(shard_begin);
        }
    }

    fn free_range(&mut self, first: usize, end: usize) {
        for _ in first..end {
            if let Some(e) = self.remove(first) {
                self.give(e.buf);
            }
        }
    }

    /// Rebuilds the group's missing data shards; true if it did (the group is complete).
    fn reconstruct(
        &mut self,
        first: usize,
        end: usize,
        shard_begin: u32,
        maxlen: usize,
        present: &[bool; MAX_TOTAL_SHARDS],
    ) -> bool {
        let total = self.ds + self.ps;
        let present = present.get(..total).unwrap_or(&[]);
        let range = SHARD_HEADER_LEN..SHARD_HEADER_LEN + maxlen;
        let allowance = self.budget.available();
        let inverses = self.scratch.as_ref().map(|s| &s.inverses);
        let work = match inverses {
            Some(inv) => inv.work_for(self.ds, present, range.len()),
            None => Inverses::default().work_for(self.ds, present, range.len()),
        };
        if work.is_ok_and(|w| w > allowance) {
            self.stats.work_refused = self.stats.work_refused.wrapping_add(1);
            return false;
        }
        let mut slots = core::mem::take(&mut self.scratch().slots);
        let need = total.saturating_sub(slots.len());
        reserve_within(&mut slots, need, total);
        slots.resize_with(total, Vec::new);
        // Move the group's shards out of the queue into their slots, as they are: the code
        // reads shorter ones as zero-padded to the longest.
        for _ in first..end {
            let Some(e) = self.remove(first) else {
                break;
            };
            let slot = e.seqid.wrapping_sub(shard_begin) as usize;
            match slots.get_mut(slot) {
                Some(s) if s.capacity() == 0 => *s = e.buf,
                _ => self.give(e.buf),
            }
        }
        for k in 0..self.ds {
            if !present.get(k).copied().unwrap_or(true) {
                let mut b = self.take(range.end);
                b.resize(range.end, 0);
                if let Some(s) = slots.get_mut(k) {
                    *s = b;
                }
            }
        }
        let (ds, ps) = (self.ds, self.ps);
        let code = &self.code;
        let scratch = self.scratch.get_or_insert_with(Default::default);
        let result = scratch
            .inverses
            .reconstruct_data(code, present, &mut slots, range, allowance);
        let ok = match result {
            Ok(work) => {
                self.budget.spend(work);
                self.add_work(work);
                self.stats.reconstructions = self.stats.reconstructions.wrapping_add(1);
                true
            }
            Err(_) => {
                self.stats.reconstruct_failures = self.stats.reconstruct_failures.wrapping_add(1);
                false
            }
        };
        for (k, s) in slots.iter_mut().enumerate() {
            let mut b = core::mem::take(s);
            if b.capacity() == 0 {
                continue;
            }
            let was_present = present.get(k).copied().unwrap_or(true);
            if ok && k < ds && !was_present {
                // Hand out the shard without its FEC header: size field first.
                b.drain(..SHARD_HEADER_LEN);
                let recovered = &mut self.scratch().recovered;
                reserve_deque_within(recovered, 1, ds.min(ps));
                recovered.push_back(b);
            } else {
                self.give(b);
            }
        }
        self.scratch().slots = slots;
        ok
    }
}
