//! The receiving half: kcp-go v5.6.1's `fecDecoder`, with bounds on memory and work.

mod group;
mod pool;
mod queue;
mod retune;
mod seqid_jump;

use group::Group;
use pool::Scratch;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use kcp_core::{CodecError, Millis};

use crate::autotune::AutoTune;
use crate::budget::{self, WorkBudget};
use crate::code::{FecCode, MAX_TOTAL_SHARDS};
use crate::rs::Inverses;
use crate::stats::FecStats;
use crate::wire::{self, PacketKind, Reject, MAX_PACKET_LEN, SHARD_HEADER_LEN};
use crate::{ConfigError, FecConfig};

/// kcp-go keeps `RX_MULTI * (ds + ps)` shards waiting for their group (`rxFECMulti`).
const RX_MULTI: usize = 3;

/// Folds received shards into per-group sums and rebuilds lost data shards from them.
///
/// Follows kcp-go v5.6.1's `fecDecoder::decode` step by step (autotune sample, parameter
/// check, duplicate drop, group assembly, Reed-Solomon reconstruction, queue limit of
/// `3 * (ds + ps)` shards evicting the oldest first, 60 s expiry on the caller's clock), so a
/// group is rebuilt when kcp-go would rebuild it, within the limits below. Additions, each
/// counted in [`FecStats`]:
///
/// * packets are validated first ([`handle_packet`](Self::handle_packet)); malformed ones are typed errors;
/// * a seqid more than 2^24 away from the newest accepted seqid is rejected, unless the last
///   accepted packet is over 60 s old or the previous packet was rejected the same way and this
///   one follows it closely (then the stream is re-anchored), so a real jump costs one packet
///   and random garbage cannot displace the stream;
/// * parameter changes detected by the autotuner are capped (`ds + ps <= max_shards`) and
///   rate-limited (one rebuild per `autotune_interval_ms`);
/// * the groups' sums may hold at most [`FecConfig::queue_bytes`]; past it the oldest groups
///   are dropped first (their shards count in `evicted_for_bytes`);
/// * reconstruction is paid for by received bytes (the work budget, see the crate docs,
///   "Limits"): a group whose rebuild the credit does not cover waits (`work_refused`);
/// * the autotune sample ring is built at the first shard whose type contradicts the
///   parameters, so detection starts one or two groups later than in kcp-go.
///
/// # No copies: what each group keeps
///
/// Reed-Solomon is linear, so no received shard is copied (the dual of [`FecEncoder`]'s
/// folding). Each incomplete group keeps a bitmap of the shards that arrived and, for each
/// parity row `j`, the sum `S_j` of that parity shard (if it arrived) and of `coef(j, k) x d_k`
/// over the data shards `d_k` that arrived, each zero-padded to the group's longest shard as
/// kcp-go pads them. Once `P_j` is in, `S_j` is the same combination of the missing data
/// shards alone; with `e` of them missing, `e` received parity rows and the inverse of their
/// `e x e` sub-matrix over the missing columns give them back (inverses of more than 4 x 4
/// are cached per erasure pattern, smaller ones computed on the stack each time), in any
/// order of arrival. A rebuild costs `e * e * L` products, plus `2 * e^3` for an uncached
/// inverse, for `L` the longest shard. Data shards are still
/// delivered by the caller as they come.
///
/// kcp-go's queue is kept as a count: each group also records which of its shards kcp-go
/// would still hold, and the queue limit takes the oldest of those out of the count (its
/// bytes stay in the sums). Where kcp-go's queue of copies would act otherwise, the decoder
/// can only give a recovery up (ARQ repairs it), never hand out a wrong byte:
///
/// * a group's sums are one unit, so the byte limit drops the oldest group whole, and the
///   60 s expiry drops a group whole once its first shard is 60 s old (kcp-go drops the
///   leading shards only and could rebuild the group from the rest later); counted in
///   `evicted_for_bytes` and `expired`;
/// * a data shard taken out of the count is not handed out again when its group is rebuilt
///   later (kcp-go rebuilds it too: a duplicate of a packet delivered when it came), and one
///   sent again after that rejoins the count without being added to the sums twice;
/// * a shard whose type contradicts its position in the group (the peer's parameters are not
///   detected yet, or the packet is crafted) is not queued: a rebuild could only read it in
///   the wrong role (`misplaced`; kcp-go reads it by position and may rebuild garbage);
/// * when autotune adopts new parameters the groups' sums, laid out for the old ones, are
///   dropped (`expired`), and the newest groups they spoil under the new parameters are
///   remembered as complete, so that their other shards are not held for nothing (kcp-go
///   reinterprets its queued copies and may still rebuild those groups).
///
/// # Memory
///
/// No buffer is allocated before the first shard. A group holds a small header (its bitmaps)
/// and its `ps` sums, each as long as a size class of its longest shard: 122 or 250 bytes for
/// shards that fit, 1494 for the others (3 x 122 bytes for a 10/3 group of 64-byte messages,
/// instead of a buffer per shard), so the sums widen at most twice. Groups are at most the
/// queue's `3 * (ds + ps)` shards (each holds one) and their sums at most
/// [`FecConfig::queue_bytes`], checked before a buffer is allocated; spare buffers are pooled
/// (at most four and half of `queue_bytes`; a buffer too small to hold a group's sums is
/// freed instead), and a rebuilt group's shards take one of them until they are polled. [`trim`](Self::trim) gives the pool, the groups and the inverse
/// cache back. [`heap_bytes`](Self::heap_bytes) reports what is held,
/// [`heap_bound`](Self::heap_bound) the most it can be.
///
/// [`FecEncoder`]: crate::FecEncoder
pub struct FecDecoder {
    ds: usize,
    ps: usize,
    rxlimit: usize,
    code: FecCode,
    /// A caller's code to adopt instead of building one when the peer's parameters match it.
    hint: Option<FecCode>,
    config: FecConfig,
    /// Incomplete groups, oldest first, each with at least one queued shard.
    groups: VecDeque<Group>,
    /// Shards in kcp-go's queue: the groups' queued shards.
    queued: usize,
    /// Capacity of the groups' accumulators.
    queued_bytes: usize,
    /// Pool, rebuilt shards and inverses: built on demand, dropped by `trim`.
    scratch: Option<alloc::boxed::Box<Scratch>>,
    /// `scratch`'s heap bytes as of the last change, kept here so that counting the heap
    /// after each packet (a receive budget does) does not reach into it: at thousands of
    /// sessions its lines are cold, two cache misses per packet.
    scratch_bytes: usize,
    /// `scratch` was (or may have been) changed since `scratch_bytes` was counted: the next
    /// entry point to return counts it again ([`settle`](Self::settle)).
    scratch_dirty: bool,
    /// `scratch` holds a rebuilt group's buffer: until it is polled and recycled, each packet
    /// looks there; otherwise (nearly always) not.
    rec_held: bool,
    /// Built at the first shard whose type contradicts the parameters.
    autotune: Option<AutoTune>,
    budget: WorkBudget,
    /// [`budget::cap`] of the current code.
    budget_cap: u64,
    last_rebuild: Option<Millis>,
    /// Newest accepted seqid and when the last packet was accepted.
    anchor: Option<(u32, Millis)>,
    /// Seqid of the last packet rejected as a jump, if the previous packet was one.
    jump_candidate: Option<u32>,
    /// First seqids of the last groups completed (freed or rebuilt), newest first: their
    /// late shards are not queued.
    done: [Option<u32>; DONE_GROUPS],
    stats: FecStats,
}

/// Completed groups remembered. A group's parity follows its last data shard at once, so the
/// last few cover reordering; a late shard of an older group is queued and ages out as before.
const DONE_GROUPS: usize = 4;

impl core::fmt::Debug for FecDecoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FecDecoder")
            .field("ds", &self.ds)
            .field("ps", &self.ps)
            .field("groups", &self.groups.len())
            .field("queued", &self.queued)
            .field("queued_bytes", &self.queued_bytes)
            .field(
                "recovered_pending",
                &self.scratch.as_ref().map_or(0, |s| s.pending()),
            )
            .field("config", &self.config)
            .finish()
    }
}

impl FecDecoder {
    /// A decoder expecting `ds` data and `ps` parity shards per group (it adapts to what the
    /// peer sends, see [`FecConfig`]).
    pub fn new(ds: usize, ps: usize, config: FecConfig) -> Result<Self, ConfigError> {
        Ok(Self::with_code(FecCode::new(ds, ps)?, config))
    }

    /// A decoder that starts with `code`'s parameters and shares its matrix; it returns to
    /// `code` without building anything if autotune leaves it and the peer comes back.
    pub fn with_code(code: FecCode, config: FecConfig) -> Self {
        let (ds, ps) = code.shards();
        FecDecoder {
            ds,
            ps,
            rxlimit: RX_MULTI * (ds + ps),
            hint: Some(code.clone()),
            code,
            config,
            groups: VecDeque::new(),
            queued: 0,
            queued_bytes: 0,
            scratch: None,
            scratch_bytes: 0,
            scratch_dirty: false,
            rec_held: false,
            autotune: None,
            budget: WorkBudget::default(),
            budget_cap: budget::cap(ds, ps),
            last_rebuild: None,
            anchor: None,
            jump_candidate: None,
            done: [None; DONE_GROUPS],
            stats: FecStats::default(),
        }
    }

    /// Sets the code to adopt when autotune detects its parameters.
    pub(crate) fn set_hint(&mut self, code: FecCode) {
        self.hint = Some(code);
    }

    /// Current (data, parity) shard counts (they follow the peer when autotune adapts them).
    pub fn shards(&self) -> (usize, usize) {
        (self.ds, self.ps)
    }

    /// Shards waiting in the receive queue.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Whether it holds nothing but counters and parameters: no queued shard, no rebuilt
    /// packet waiting (it can then be dropped and rebuilt when FEC packets come again).
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.scratch.as_ref().is_none_or(|s| s.pending() == 0)
    }

    /// Heap bytes of the incomplete groups' accumulators (what [`FecConfig::queue_bytes`]
    /// bounds).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Counters so far (the encoder fields stay zero here).
    pub fn stats(&self) -> FecStats {
        self.stats
    }

    /// Heap bytes held now: the groups and their accumulators, pool, rebuilt shards, scratch,
    /// the autotune ring, and this decoder's share of its codes' matrices. Not
    /// `size_of::<FecDecoder>()` itself.
    pub fn heap_bytes(&self) -> usize {
        self.groups.capacity() * core::mem::size_of::<Group>()
            + self.queued_bytes
            + self.scratch_heap_bytes()
            + self.autotune.as_ref().map_or(0, |_| AutoTune::HEAP_BYTES)
            + self.code.share_bytes()
            + self.hint.as_ref().map_or(0, FecCode::share_bytes)
    }

    /// The most [`heap_bytes`](Self::heap_bytes) can reach, whatever a peer sends, for a
    /// decoder with `config` that starts with `ds + ps` shards: `queue_bytes` plus rebuilt
    /// shards, scratch and tables sized for the largest group it may adopt.
    pub fn heap_bound(config: &FecConfig, ds: usize, ps: usize) -> usize {
        let total = config.max_shards.min(MAX_TOTAL_SHARDS).max(ds + ps);
        let vec = core::mem::size_of::<Vec<u8>>();
        // Each group holds a queued shard: at most the queue's length plus the one arriving.
        let groups = RX_MULTI * total + 1;
        groups * core::mem::size_of::<Group>()
            + config.queue_bytes
            // The pool: half the queue's budget, in at most POOL_MAX buffers.
            + config.queue_bytes / 2
            + core::mem::size_of::<Scratch>()
            + pool::POOL_MAX * vec
            // Rebuilt shards of one group: at most min(ds, ps) of them (or a pooled buffer).
            + (total / 2 * (MAX_PACKET_LEN - SHARD_HEADER_LEN)).max(config.queue_bytes / 2)
            // Inverse cache and elimination matrix, or the scratch of a code build.
            + Inverses::heap_bound(total / 2)
                .max(2 * total * total)
            + AutoTune::HEAP_BYTES
            // The current code, a hint and a code being built, each at most (total/2, total/2).
            + 3 * crate::code::matrix_bytes(total / 2, total.div_ceil(2))
    }

    /// Gives back everything but the decoder's small state, for a session gone idle: the
    /// buffer pool, the inverse cache, and the incomplete groups (their shards counted in
    /// `expired`: a group that straddles an idle period gets no FEC, ARQ repairs it).
    /// Rebuilt packets not polled yet, the autotune samples (parameter detection needs their
    /// history across sparse traffic) and the codes stay.
    pub fn trim(&mut self) {
        let dropped = self.drop_groups();
        self.stats.expired = self.stats.expired.wrapping_add(dropped as u64);
        self.groups = VecDeque::new();
        self.scratch_dirty = true;
        if self.scratch.as_ref().is_some_and(|s| s.pending() == 0) {
            self.scratch = None;
            self.rec_held = false;
        }
        if let Some(s) = &mut self.scratch {
            // Rebuilt packets not polled yet stay; the rest goes.
            s.pool = Vec::new();
            s.pool_bytes = 0;
            s.inverses.trim();
        }
        self.settle();
    }

    /// Counts `scratch`'s heap again if it changed. Every entry point that may change it
    /// calls this before it returns.
    fn settle(&mut self) {
        if self.scratch_dirty {
            self.scratch_bytes = self.scratch.as_ref().map_or(0, |s| s.heap_bytes());
            self.scratch_dirty = false;
        }
    }

    /// `scratch`'s heap bytes: the count kept, or counted now if a change is not settled.
    fn scratch_heap_bytes(&self) -> usize {
        let live = || self.scratch.as_ref().map_or(0, |s| s.heap_bytes());
        if self.scratch_dirty {
            return live();
        }
        debug_assert_eq!(self.scratch_bytes, live(), "scratch changed unseen");
        self.scratch_bytes
    }

    /// Takes one received packet (FEC-relative: starting at the FEC header).
    ///
    /// Returns what it was; for [`PacketKind::Data`] the KCP datagram is `packet[8..]` and must
    /// be delivered as a regular packet. Rebuilt packets are then available from
    /// [`poll_recovered`](Self::poll_recovered); any not taken before the next `handle_packet` are
    /// dropped. Plain (non-FEC) packets are only counted.
    #[doc(alias = "input")]
    pub fn handle_packet(&mut self, packet: &[u8], now: Millis) -> Result<PacketKind, CodecError> {
        let kind = match wire::classify(packet) {
            Ok(kind) => kind,
            Err(r) => {
                self.recycle_recovered();
                self.settle();
                count_reject(&mut self.stats, r);
                return Err(r.into());
            }
        };
        self.input_classified(packet, kind, now)?;
        Ok(kind)
    }

    /// [`handle_packet`](Self::handle_packet) for a packet [`wire::classify`] already accepted.
    pub(crate) fn input_classified(
        &mut self,
        packet: &[u8],
        kind: PacketKind,
        now: Millis,
    ) -> Result<(), CodecError> {
        let r = self.input_settled(packet, kind, now);
        self.settle();
        r
    }

    fn input_settled(
        &mut self,
        packet: &[u8],
        kind: PacketKind,
        now: Millis,
    ) -> Result<(), CodecError> {
        self.recycle_recovered();
        let (seqid, is_data) = match kind {
            PacketKind::Plain => {
                self.stats.plain_packets = self.stats.plain_packets.wrapping_add(1);
                return Ok(());
            }
            PacketKind::Data { seqid } => (seqid, true),
            PacketKind::Parity { seqid } => (seqid, false),
        };
        self.check_jump(seqid, now)?;
        if is_data {
            self.stats.data_shards = self.stats.data_shards.wrapping_add(1);
        } else {
            self.stats.parity_shards = self.stats.parity_shards.wrapping_add(1);
        }
        self.decode(packet, seqid, is_data, now);
        Ok(())
    }

    /// Copies the next rebuilt KCP datagram into `buf` and returns its length; `None` when
    /// there is none. Rebuilt packets are not regular: the engine must not take RTT samples
    /// or window updates from them. A rebuilt shard with an invalid size field is dropped
    /// (`errs`), as is one longer than `buf` (`recovered_dropped`).
    pub fn poll_recovered(&mut self, buf: &mut [u8]) -> Option<usize> {
        if !self.rec_held {
            return None;
        }
        let r = self.poll_held(buf);
        self.settle();
        r
    }

    fn poll_held(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let s = self.scratch.as_mut()?;
            let Some(shard) = s.next_recovered() else {
                // All handed out: the buffer goes back to the pool.
                self.recycle_recovered();
                return None;
            };
            let size = wire::shard_size_field(shard).map(usize::from).unwrap_or(0);
            if size < 2 || size > shard.len() {
                self.stats.errs = self.stats.errs.wrapping_add(1);
                continue;
            }
            let inner = shard.get(2..size).unwrap_or(&[]);
            match buf.get_mut(..inner.len()) {
                Some(out) => {
                    out.copy_from_slice(inner);
                    self.stats.recovered = self.stats.recovered.wrapping_add(1);
                    return Some(inner.len());
                }
                None => {
                    self.stats.recovered_dropped = self.stats.recovered_dropped.wrapping_add(1);
                }
            }
        }
    }

    fn add_work(&mut self, work: u64) {
        self.stats.decode_work = self.stats.decode_work.wrapping_add(work);
    }

    /// Removes group `i`, keeping the shard count and `queued_bytes` right; its accumulators
    /// go back to the pool. Returns its queued shards and how many of them are data.
    fn remove_group(&mut self, i: usize) -> Option<(usize, usize)> {
        let g = self.groups.remove(i)?;
        let (n, data) = (g.queued_count(), g.queued_data(self.ds));
        self.queued -= n;
        self.queued_bytes -= g.acc.capacity();
        self.give(g.acc);
        Some((n, data))
    }

    /// Drops every incomplete group; returns how many queued shards they held.
    fn drop_groups(&mut self) -> usize {
        let mut dropped = 0;
        while let Some((n, _)) = self.remove_group(0) {
            dropped += n;
        }
        dropped
    }
}

/// Counts a packet [`wire::classify`] refused.
pub(crate) fn count_reject(stats: &mut FecStats, r: Reject) {
    let c = match r {
        Reject::Truncated => &mut stats.truncated,
        Reject::Oversized => &mut stats.oversized,
        Reject::BadSize => &mut stats.bad_size,
        Reject::UnknownType => &mut stats.unknown_type,
    };
    *c = c.wrapping_add(1);
}
