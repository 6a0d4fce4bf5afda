//! When the decoder adopts the (data, parity) counts autotune detects in the peer's stream:
//! capped, rate-limited, reusing the configured code when it matches.

use kcp_core::Millis;

use super::group::{highest, lowest};
use super::{FecDecoder, DONE_GROUPS, RX_MULTI};
use crate::autotune::AutoTune;
use crate::budget;
use crate::code::FecCode;

impl FecDecoder {
    pub(super) fn maybe_autotune(&mut self, seqid: u32, is_data: bool, now: Millis) {
        let total = (self.ds + self.ps) as u32;
        let expect_data = ((seqid % total) as usize) < self.ds;
        if expect_data != is_data && self.autotune.is_none() {
            self.autotune = Some(AutoTune::new());
        }
        let Some(tune) = &mut self.autotune else {
            return;
        };
        tune.sample(is_data, seqid);
        if expect_data == is_data {
            return;
        }
        let ads = tune.find_period(true);
        let aps = tune.find_period(false);
        if !(ads > 0 && aps > 0 && ads < 256 && aps < 256) {
            return;
        }
        let (ads, aps) = (ads as usize, aps as usize);
        if ads == self.ds && aps == self.ps {
            return;
        }
        let too_soon = self.last_rebuild.is_some_and(|t| {
            now.since(t) < self.config.autotune_interval_ms as i32 && now.since(t) >= 0
        });
        if too_soon || ads + aps > self.config.max_shards {
            self.stats.autotune_suppressed = self.stats.autotune_suppressed.wrapping_add(1);
            return;
        }
        let code = match &self.hint {
            Some(h) if h.is(ads, aps) => h.clone(),
            _ => {
                // The old code's cached inverses are useless; free them before building.
                self.scratch_dirty = true;
                if let Some(s) = &mut self.scratch {
                    s.inverses.trim();
                }
                match FecCode::new(ads, aps) {
                    Ok(c) => {
                        self.add_work(FecCode::build_work(ads, aps));
                        c
                    }
                    Err(_) => {
                        self.stats.autotune_suppressed =
                            self.stats.autotune_suppressed.wrapping_add(1);
                        return;
                    }
                }
            }
        };
        // The groups' sums are laid out for the old parameters: they can rebuild nothing now,
        // and the new groups that hold shards seen before (queued, or in groups completed)
        // have lost them. The newest of those are remembered as complete, so that their other
        // shards are not held for a rebuild that may never come (ARQ repairs what they miss):
        // the group of this shard unless it starts there, then the groups of the shards
        // queued, then those of the groups completed.
        let new_total = (ads + aps) as u32;
        let old_total = total;
        let mut seen = [0u32; 2 * DONE_GROUPS + 1];
        let mut n = 0;
        let mut note = |seq: u32| {
            if let Some(slot) = seen.get_mut(n) {
                *slot = seq;
                n += 1;
            }
        };
        if !seqid.is_multiple_of(new_total) {
            note(seqid);
        }
        for g in self.groups.iter().rev() {
            note(
                g.begin
                    .wrapping_add(highest(&g.arrived).unwrap_or(0) as u32),
            );
            note(g.begin.wrapping_add(lowest(&g.arrived).unwrap_or(0) as u32));
        }
        for begin in self.done.iter().flatten() {
            note(begin.wrapping_add(old_total - 1));
            note(*begin);
        }
        let dropped = self.drop_groups();
        self.stats.expired = self.stats.expired.wrapping_add(dropped as u64);
        self.code = code;
        self.ds = ads;
        self.ps = aps;
        self.rxlimit = RX_MULTI * (ads + aps);
        // Group boundaries moved: the completed groups no longer name the same seqids.
        self.done = [None; DONE_GROUPS];
        let mut spoilt = [0u32; DONE_GROUPS];
        let mut m = 0;
        for &seq in seen.iter().take(n) {
            let begin = self.group_begin(seq);
            if m < DONE_GROUPS && !spoilt[..m].contains(&begin) {
                spoilt[m] = begin;
                m += 1;
            }
        }
        // Oldest first, so that the newest ends up first.
        for &begin in spoilt[..m].iter().rev() {
            self.mark_done(begin);
        }
        self.last_rebuild = Some(now);
        self.budget_cap = budget::cap(ads, aps);
        self.budget.clamp(self.budget_cap);
        self.scratch_dirty = true;
        if let Some(s) = &mut self.scratch {
            s.inverses.clear();
        }
        self.stats.autotune_rebuilds = self.stats.autotune_rebuilds.wrapping_add(1);
    }
}
