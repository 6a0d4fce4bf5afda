//! When the decoder adopts the (data, parity) counts autotune detects in the peer's stream:
//! capped, rate-limited, reusing the configured code when it matches.

use kcp_core::Millis;

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
        self.code = code;
        self.ds = ads;
        self.ps = aps;
        self.rxlimit = RX_MULTI * (ads + aps);
        // Group boundaries moved: the completed groups no longer name the same seqids.
        self.done = [None; DONE_GROUPS];
        self.last_rebuild = Some(now);
        self.budget_cap = budget::cap(ads, aps);
        self.budget.clamp(self.budget_cap);
        let max = self.pool_max();
        if let Some(s) = &mut self.scratch {
            s.inverses.clear();
            while s.pool.len() > max {
                if let Some(b) = s.pool.pop() {
                    s.pool_bytes -= b.capacity();
                }
            }
        }
        self.stats.autotune_rebuilds = self.stats.autotune_rebuilds.wrapping_add(1);
    }
}
