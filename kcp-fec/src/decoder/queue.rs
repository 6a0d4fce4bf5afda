//! The receive queue: duplicate drop and ordered insert, the work credit a shard earns, and
//! the queue's limits (shard count, bytes, expiry).

use kcp_core::Millis;

use super::{Entry, FecDecoder};
use crate::budget;
use crate::grow::reserve_deque_within;
use crate::wire::{FEC_EXPIRE_MS, SHARD_HEADER_LEN};

impl FecDecoder {
    pub(super) fn decode(&mut self, packet: &[u8], seqid: u32, is_data: bool, now: Millis) {
        self.maybe_autotune(seqid, is_data, now);

        if self.done.contains(&Some(self.group_begin(seqid))) {
            self.stats.late_shards = self.stats.late_shards.wrapping_add(1);
            return;
        }

        // Duplicate drop and ordered insert, scanning from the newest end.
        let mut insert_idx = 0;
        for (i, e) in self.rx.iter().enumerate().rev() {
            if e.seqid == seqid {
                self.stats.duplicates = self.stats.duplicates.wrapping_add(1);
                return;
            }
            if (seqid.wrapping_sub(e.seqid) as i32) > 0 {
                insert_idx = i + 1;
                break;
            }
        }
        // Only a shard that joins the queue earns work credit (a duplicate buys nothing).
        self.budget.earn(
            budget::earned(self.ds, packet.len() - SHARD_HEADER_LEN),
            self.budget_cap,
        );
        let mut buf = self.take(packet.len());
        buf.extend_from_slice(packet);
        self.queued_bytes += buf.capacity();
        reserve_deque_within(&mut self.rx, 1, self.rxlimit + 1);
        self.rx.insert(
            insert_idx,
            Entry {
                seqid,
                is_data,
                ts: now,
                buf,
            },
        );

        self.try_group(seqid, insert_idx);

        // Queue limit: one eviction per packet, as kcp-go.
        if self.rx.len() > self.rxlimit {
            self.evict_front(false);
        }
        // Byte budget: oldest first, as many as needed.
        while self.queued_bytes > self.config.queue_bytes && !self.rx.is_empty() {
            self.evict_front(true);
        }
        // Expiry of leading entries.
        while self
            .rx
            .front()
            .is_some_and(|e| now.since(e.ts) > FEC_EXPIRE_MS as i32)
        {
            if let Some(e) = self.remove(0) {
                self.stats.expired = self.stats.expired.wrapping_add(1);
                self.give(e.buf);
            }
        }
    }

    fn evict_front(&mut self, for_bytes: bool) {
        if let Some(e) = self.remove(0) {
            if e.is_data {
                self.stats.short_shards = self.stats.short_shards.wrapping_add(1);
            }
            if for_bytes {
                self.stats.evicted_for_bytes = self.stats.evicted_for_bytes.wrapping_add(1);
            }
            self.give(e.buf);
        }
    }
}
