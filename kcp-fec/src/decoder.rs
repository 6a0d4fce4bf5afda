//! The receiving half: kcp-go v5.6.1's `fecDecoder`, with bounds on memory and work.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use kcp_core::{CodecError, Millis};

use crate::autotune::AutoTune;
use crate::budget::{self, WorkBudget};
use crate::code::{FecCode, MAX_TOTAL_SHARDS};
use crate::grow::{reserve_deque_within, reserve_within};
use crate::rs::Inverses;
use crate::stats::FecStats;
use crate::wire::{self, PacketKind, Reject, FEC_EXPIRE_MS, MAX_PACKET_LEN, SHARD_HEADER_LEN};
use crate::{ConfigError, FecConfig};

/// kcp-go keeps `RX_MULTI * (ds + ps)` shards waiting for their group (`rxFECMulti`).
const RX_MULTI: usize = 3;
/// A seqid further than this from the newest accepted one is rejected, unless the stream has
/// been silent for 60 s or the next rejected packet confirms the jump (see [`FecDecoder`]).
const MAX_SEQID_JUMP: u32 = 1 << 24;
/// Two consecutive far packets at most this far apart re-anchor the stream.
const RESYNC_WINDOW: u32 = 1024;

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

/// One received shard waiting for its group.
struct Entry {
    seqid: u32,
    is_data: bool,
    ts: Millis,
    /// The whole FEC packet (header included); the shard is `buf[6..]`.
    buf: Vec<u8>,
}

/// What only speeds decoding up, given back by [`FecDecoder::trim`].
#[derive(Default)]
struct Scratch {
    /// Spare shard buffers, and their capacity.
    pool: Vec<Vec<u8>>,
    pool_bytes: usize,
    /// Rebuilt shards (size field + KCP datagram + zero padding) not handed out yet.
    recovered: VecDeque<Vec<u8>>,
    inverses: Inverses,
    /// A group's shards by position during a reconstruction (empty in between).
    slots: Vec<Vec<u8>>,
}

impl Scratch {
    fn heap_bytes(&self) -> usize {
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

/// Collects received shards per group and rebuilds lost data shards from parity.
///
/// Follows kcp-go v5.6.1's `fecDecoder::decode` step by step (autotune sample, parameter
/// check, duplicate drop and ordered insert, group assembly, Reed-Solomon reconstruction, queue
/// limit of `3 * (ds + ps)` shards, 60 s expiry on the caller's clock), so a group is rebuilt
/// exactly when kcp-go would rebuild it, within the limits below. Additions, each counted in
/// [`FecStats`]:
///
/// * packets are validated first ([`handle_packet`](Self::handle_packet)); malformed ones are typed errors;
/// * a seqid more than 2^24 away from the newest accepted seqid is rejected, unless the last
///   accepted packet is over 60 s old or the previous packet was rejected the same way and this
///   one follows it closely (then the stream is re-anchored), so a real jump costs one packet
///   and random garbage cannot displace the stream;
/// * parameter changes detected by the autotuner are capped (`ds + ps <= max_shards`) and
///   rate-limited (one rebuild per `autotune_interval_ms`);
/// * the queued shards' buffers may hold at most [`FecConfig::queue_bytes`]; past it the
///   oldest shards are evicted first (`evicted_for_bytes`);
/// * reconstruction is paid for by received bytes (the work budget, see the crate docs,
///   "Limits"): a group whose rebuild the credit does not cover waits (`work_refused`);
/// * the autotune sample ring is built at the first shard whose type contradicts the
///   parameters, so detection starts one or two groups later than in kcp-go.
///
/// # Memory
///
/// No buffer is allocated before the first shard. Queued shards are held in buffers of three
/// sizes, 128 or 256 bytes for packets that fit and 1500 for the others, so that buffers are
/// reused without ever growing; spare buffers are pooled, at most two groups' worth and half of
/// `queue_bytes`. [`FecConfig::queue_bytes`] counts these buffers' real size.
/// [`trim`](Self::trim) gives the pool, the queue and the inverse cache back.
/// [`heap_bytes`](Self::heap_bytes) reports what is held, [`heap_bound`](Self::heap_bound)
/// the most it can be.
pub struct FecDecoder {
    ds: usize,
    ps: usize,
    rxlimit: usize,
    code: FecCode,
    /// A caller's code to adopt instead of building one when the peer's parameters match it.
    hint: Option<FecCode>,
    config: FecConfig,
    rx: VecDeque<Entry>,
    /// Capacity of the queued shards' buffers.
    queued_bytes: usize,
    /// Pool, rebuilt shards and inverses: built on demand, dropped by `trim`.
    scratch: Option<alloc::boxed::Box<Scratch>>,
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
            .field("queued", &self.rx.len())
            .field("queued_bytes", &self.queued_bytes)
            .field(
                "recovered_pending",
                &self.scratch.as_ref().map_or(0, |s| s.recovered.len()),
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
            rx: VecDeque::new(),
            queued_bytes: 0,
            scratch: None,
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
        self.rx.len()
    }

    /// Whether it holds nothing but counters and parameters: no queued shard, no rebuilt
    /// packet waiting (it can then be dropped and rebuilt when FEC packets come again).
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty() && self.scratch.as_ref().is_none_or(|s| s.recovered.is_empty())
    }

    /// Heap bytes of the queued shards' buffers (what [`FecConfig::queue_bytes`] bounds).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Counters so far (the encoder fields stay zero here).
    pub fn stats(&self) -> FecStats {
        self.stats
    }

    /// Heap bytes held now: queue, pool, rebuilt shards, scratch, the autotune ring, and this
    /// decoder's share of its codes' matrices. Not `size_of::<FecDecoder>()` itself.
    pub fn heap_bytes(&self) -> usize {
        self.rx.capacity() * core::mem::size_of::<Entry>()
            + self.queued_bytes
            + self.scratch.as_ref().map_or(0, |s| s.heap_bytes())
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
        let rx_entries = RX_MULTI * total + 1;
        rx_entries * core::mem::size_of::<Entry>()
            + config.queue_bytes
            // The pool: half the queue's budget, in at most 2 * total + 1 buffers.
            + config.queue_bytes / 2
            + core::mem::size_of::<Scratch>()
            + (2 * total + 1) * vec
            // Rebuilt shards' queue and the group's slots.
            + 2 * total * vec
            + total / 2 * MAX_PACKET_LEN
            // Inverse cache and elimination matrix, or the scratch of a code build.
            + Inverses::heap_bound(total - 1)
            + AutoTune::HEAP_BYTES
            // The current code, a hint and a code being built, each at most (total/2, total/2).
            + 3 * crate::code::matrix_bytes(total / 2, total.div_ceil(2))
    }

    /// Gives back everything but the decoder's small state, for a session gone idle: the
    /// buffer pool, the inverse cache, the queue, and the shards of incomplete groups (counted
    /// in `expired`: a group that straddles an idle period gets no FEC, ARQ repairs it).
    /// Rebuilt packets not polled yet, the autotune samples (parameter detection needs their
    /// history across sparse traffic) and the codes stay.
    pub fn trim(&mut self) {
        while let Some(e) = self.remove(0) {
            self.stats.expired = self.stats.expired.wrapping_add(1);
            drop(e);
        }
        self.rx = VecDeque::new();
        if self
            .scratch
            .as_ref()
            .is_some_and(|s| s.recovered.is_empty())
        {
            self.scratch = None;
        }
        if let Some(s) = &mut self.scratch {
            // Rebuilt packets not polled yet stay; the rest goes.
            s.pool = Vec::new();
            s.pool_bytes = 0;
            s.slots = Vec::new();
            s.inverses.trim();
        }
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
        while let Some(shard) = self.scratch.as_mut()?.recovered.pop_front() {
            let size = wire::shard_size_field(&shard).map(usize::from).unwrap_or(0);
            let result = if size < 2 || size > shard.len() {
                self.stats.errs = self.stats.errs.wrapping_add(1);
                None
            } else {
                let inner = shard.get(2..size).unwrap_or(&[]);
                match buf.get_mut(..inner.len()) {
                    Some(out) => {
                        out.copy_from_slice(inner);
                        self.stats.recovered = self.stats.recovered.wrapping_add(1);
                        Some(inner.len())
                    }
                    None => {
                        self.stats.recovered_dropped = self.stats.recovered_dropped.wrapping_add(1);
                        None
                    }
                }
            };
            self.give(shard);
            if result.is_some() {
                return result;
            }
        }
        None
    }

    fn recycle_recovered(&mut self) {
        while let Some(b) = self.scratch.as_mut().and_then(|s| s.recovered.pop_front()) {
            self.give(b);
        }
    }

    /// Most buffers the pool keeps: two groups' worth (the queue's churn).
    fn pool_max(&self) -> usize {
        2 * (self.ds + self.ps) + 1
    }

    fn scratch(&mut self) -> &mut Scratch {
        self.scratch.get_or_insert_with(Default::default)
    }

    /// A buffer with room for `len` bytes: the smallest pooled one that fits, else a new one
    /// of `len`'s size class. Buffers are never grown, so each is allocated once while traffic
    /// flows, and the pool warms up to the largest number of each class in use at once.
    fn take(&mut self, len: usize) -> Vec<u8> {
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
    fn give(&mut self, buf: Vec<u8>) {
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

    /// Removes entry `i` from the queue, keeping `queued_bytes` right.
    fn remove(&mut self, i: usize) -> Option<Entry> {
        let e = self.rx.remove(i)?;
        self.queued_bytes -= e.buf.capacity();
        Some(e)
    }

    fn check_jump(&mut self, seqid: u32, now: Millis) -> Result<(), CodecError> {
        let accept = match self.anchor {
            None => true,
            Some((newest, at)) => {
                (seqid.wrapping_sub(newest) as i32).unsigned_abs() <= MAX_SEQID_JUMP
                    || now.since(at) > FEC_EXPIRE_MS as i32
            }
        };
        let accept_far = !accept
            && self
                .jump_candidate
                .is_some_and(|c| (1..=RESYNC_WINDOW).contains(&seqid.wrapping_sub(c)));
        if !accept && !accept_far {
            self.jump_candidate = Some(seqid);
            self.stats.seqid_jumps = self.stats.seqid_jumps.wrapping_add(1);
            return Err(CodecError::Malformed);
        }
        self.jump_candidate = None;
        if accept_far {
            // A new epoch: what is queued belongs to groups that can no longer complete.
            while let Some(e) = self.remove(0) {
                self.give(e.buf);
            }
        }
        let newest = match self.anchor {
            Some((n, _)) if !accept_far && (seqid.wrapping_sub(n) as i32) < 0 => n,
            _ => seqid,
        };
        self.anchor = Some((newest, now));
        Ok(())
    }

    fn maybe_autotune(&mut self, seqid: u32, is_data: bool, now: Millis) {
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

    fn add_work(&mut self, work: u64) {
        self.stats.decode_work = self.stats.decode_work.wrapping_add(work);
    }

    fn decode(&mut self, packet: &[u8], seqid: u32, is_data: bool, now: Millis) {
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

    /// Group assembly around the shard just inserted at `insert_idx`.
    fn try_group(&mut self, seqid: u32, insert_idx: usize) {
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
    fn group_begin(&self, seqid: u32) -> u32 {
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
