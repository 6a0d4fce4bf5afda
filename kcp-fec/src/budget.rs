//! The decoder's work budget: reconstruction is paid for by the bytes received.
//!
//! Work is counted in nominal GF(2^8) multiply-accumulates: rebuilding `e` data shards of a
//! group whose longest shard is `L` bytes from the sums of `e` parity rows costs `e * e * L`,
//! plus `2 * e^3` when the inverse for that erasure pattern is not cached. (Folding each shard
//! into the sums as it arrives costs `ps * len` for a data shard and `len` for a parity shard:
//! a fixed price per received byte, like the encoder's, not paid from this credit.)
//!
//! Every FEC shard of `len` bytes that joins the receive queue (not a duplicate) earns `ds * len + 2 * ds^2`; a reconstruction runs
//! only if the credit covers it, and is deferred otherwise (the shards stay queued, the refusal
//! is counted). That is exactly what the worst legitimate group costs per packet: a group that
//! loses `e` data shards delivers at least `e` parity shards of its full length `L` (and `ds`
//! shards in all), so its own shards earn at least `e * ds * L + 2 * ds^3`, more than its
//! rebuild costs, and it is never refused. A
//! crafted stream (short data shards beside one long parity shard, a new erasure pattern each
//! group) earns no more per packet than a legitimate one, so it cannot buy more work per packet
//! either. Credit is capped at a few worst-case groups, so saving up buys one burst at most.
//!
//! Codec rebuilds for autotuned parameters are not paid from this credit (a legitimate peer's
//! first group must not be refused because the decoder adapted to it); they are bounded by the
//! autotune rate limit and by `max_shards` instead, and counted in the same unit.

/// How many worst-case groups the credit may hold.
const BURST_GROUPS: u64 = 4;

/// Credit in multiply-accumulates.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WorkBudget {
    credit: u64,
}

/// What one received shard of `len` bytes earns for a (ds, _) code.
pub(crate) fn earned(ds: usize, len: usize) -> u64 {
    (ds * len) as u64 + 2 * (ds * ds) as u64
}

/// The credit cap for a (ds, ps) code: [`BURST_GROUPS`] groups that each rebuild
/// `min(ds, ps)` full-size shards with an uncached inverse.
pub(crate) fn cap(ds: usize, ps: usize) -> u64 {
    let shard = (crate::MAX_PACKET_LEN - crate::SHARD_HEADER_LEN) as u64;
    let group = (ds * ds.min(ps)) as u64 * shard + crate::rs::inversion_work(ds);
    BURST_GROUPS * group
}

impl WorkBudget {
    /// Credits one received shard.
    pub(crate) fn earn(&mut self, amount: u64, cap: u64) {
        self.credit = self.credit.saturating_add(amount).min(cap);
    }

    /// What may be spent now.
    pub(crate) fn available(&self) -> u64 {
        self.credit
    }

    /// Debits work done (never more than [`available`](Self::available)).
    pub(crate) fn spend(&mut self, amount: u64) {
        self.credit = self.credit.saturating_sub(amount);
    }

    /// Keeps the credit under a new cap (the code changed).
    pub(crate) fn clamp(&mut self, cap: u64) {
        self.credit = self.credit.min(cap);
    }
}
