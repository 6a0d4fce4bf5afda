//! The receiving half: kcp-go v5.6.1's `fecDecoder`, with bounds.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use kcp_core::{CodecError, Millis};

use crate::autotune::AutoTune;
use crate::rs::ReedSolomon;
use crate::stats::FecStats;
use crate::wire::{self, PacketKind, Reject, FEC_EXPIRE_MS, FEC_HEADER_LEN, MAX_PACKET_LEN};
use crate::{ConfigError, FecConfig};

/// kcp-go keeps `RX_MULTI * (ds + ps)` shards waiting for their group (`rxFECMulti`).
const RX_MULTI: usize = 3;
/// A seqid further than this from the newest accepted one is rejected, unless the stream has
/// been silent for 60 s or the next rejected packet confirms the jump (see [`FecDecoder`]).
const MAX_SEQID_JUMP: u32 = 1 << 24;
/// Two consecutive far packets at most this far apart re-anchor the stream.
const RESYNC_WINDOW: u32 = 1024;

/// One received shard waiting for its group.
struct Entry {
    seqid: u32,
    is_data: bool,
    ts: Millis,
    /// The whole FEC packet (header included); the shard is `buf[6..]`.
    buf: Vec<u8>,
}

/// Collects received shards per group and rebuilds lost data shards from parity.
///
/// Follows kcp-go v5.6.1's `fecDecoder::decode` step by step (autotune sample, parameter
/// check, duplicate drop and ordered insert, group assembly, Reed-Solomon reconstruction, queue
/// limit of `3 * (ds + ps)` shards, 60 s expiry on the caller's clock), so a group is rebuilt
/// exactly when kcp-go would rebuild it. Additions, each counted in [`FecStats`]:
///
/// * packets are validated first ([`input`](Self::input)); malformed ones are typed errors;
/// * a seqid more than 2^24 away from the newest accepted seqid is rejected, unless the last
///   accepted packet is over 60 s old or the previous packet was rejected the same way and this
///   one follows it closely (then the stream is re-anchored), so a real jump costs one packet
///   and random garbage cannot displace the stream;
/// * parameter changes detected by the autotuner are capped (`ds + ps <= max_shards`) and
///   rate-limited (one rebuild per `autotune_interval_ms`).
///
/// Memory is bounded: at most `3 * max_shards + 1` queued shards plus one group's worth of
/// rebuilt shards, each at most [`MAX_PACKET_LEN`] bytes, all from a pool that is reused.
pub struct FecDecoder {
    ds: usize,
    ps: usize,
    rxlimit: usize,
    rx: VecDeque<Entry>,
    pool: Vec<Vec<u8>>,
    /// Per-group scratch: shard buffers by `seqid % (ds + ps)` and which are present.
    slots: Vec<Vec<u8>>,
    present: Vec<bool>,
    /// Rebuilt shards (size field + KCP datagram + zero padding) not handed out yet.
    recovered: VecDeque<Vec<u8>>,
    rs: ReedSolomon,
    autotune: AutoTune,
    config: FecConfig,
    last_rebuild: Option<Millis>,
    /// Newest accepted seqid and when the last packet was accepted.
    anchor: Option<(u32, Millis)>,
    /// Seqid of the last packet rejected as a jump, if the previous packet was one.
    jump_candidate: Option<u32>,
    stats: FecStats,
}

impl core::fmt::Debug for FecDecoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FecDecoder")
            .field("ds", &self.ds)
            .field("ps", &self.ps)
            .field("queued", &self.rx.len())
            .field("recovered_pending", &self.recovered.len())
            .field("config", &self.config)
            .finish()
    }
}

impl FecDecoder {
    /// A decoder expecting `ds` data and `ps` parity shards per group (it adapts to what the
    /// peer sends, see [`FecConfig`]).
    pub fn new(ds: usize, ps: usize, config: FecConfig) -> Result<Self, ConfigError> {
        crate::check_shards(ds, ps)?;
        let rs = ReedSolomon::new(ds, ps).map_err(|_| ConfigError::InvalidShards)?;
        let total = ds + ps;
        let mut dec = FecDecoder {
            ds,
            ps,
            rxlimit: RX_MULTI * total,
            rx: VecDeque::with_capacity(RX_MULTI * total + 1),
            pool: Vec::with_capacity(RX_MULTI * total + 2 * total + 1),
            slots: Vec::new(),
            present: Vec::new(),
            recovered: VecDeque::with_capacity(total),
            rs,
            autotune: AutoTune::new(),
            config,
            last_rebuild: None,
            anchor: None,
            jump_candidate: None,
            stats: FecStats::default(),
        };
        dec.size_scratch();
        Ok(dec)
    }

    fn size_scratch(&mut self) {
        let total = self.ds + self.ps;
        self.slots.resize_with(total, Vec::new);
        self.slots.truncate(total);
        self.present.resize(total, false);
        self.present.truncate(total);
        let want = RX_MULTI * total + 1;
        self.rx.reserve(want.saturating_sub(self.rx.len()));
        self.recovered
            .reserve(total.saturating_sub(self.recovered.len()));
        self.pool
            .reserve((want + 2 * total).saturating_sub(self.pool.len()));
    }

    /// Current (data, parity) shard counts (they follow the peer when autotune adapts them).
    pub fn shards(&self) -> (usize, usize) {
        (self.ds, self.ps)
    }

    /// Shards waiting in the receive queue.
    pub fn queued(&self) -> usize {
        self.rx.len()
    }

    /// Counters so far (the encoder fields stay zero here).
    pub fn stats(&self) -> FecStats {
        self.stats
    }

    /// Takes one received packet (FEC-relative: starting at the FEC header).
    ///
    /// Returns what it was; for [`PacketKind::Data`] the KCP datagram is `packet[8..]` and must
    /// be delivered as a regular packet. Rebuilt packets are then available from
    /// [`poll_recovered`](Self::poll_recovered); any not taken before the next `input` are
    /// dropped. Plain (non-FEC) packets are only counted.
    pub fn input(&mut self, packet: &[u8], now: Millis) -> Result<PacketKind, CodecError> {
        self.recycle_recovered();
        let kind = match wire::classify(packet) {
            Ok(kind) => kind,
            Err(r) => {
                let c = match r {
                    Reject::Truncated => &mut self.stats.truncated,
                    Reject::Oversized => &mut self.stats.oversized,
                    Reject::BadSize => &mut self.stats.bad_size,
                    Reject::UnknownType => &mut self.stats.unknown_type,
                };
                *c = c.wrapping_add(1);
                return Err(r.into());
            }
        };
        let (seqid, is_data) = match kind {
            PacketKind::Plain => {
                self.stats.plain_packets = self.stats.plain_packets.wrapping_add(1);
                return Ok(kind);
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
        Ok(kind)
    }

    /// Copies the next rebuilt KCP datagram into `buf` and returns its length; `None` when
    /// there is none. Rebuilt packets are not regular: the engine must not take RTT samples
    /// or window updates from them. A rebuilt shard with an invalid size field is dropped
    /// (`errs`), as is one longer than `buf` (`recovered_dropped`).
    pub fn poll_recovered(&mut self, buf: &mut [u8]) -> Option<usize> {
        while let Some(shard) = self.recovered.pop_front() {
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
        while let Some(b) = self.recovered.pop_front() {
            self.give(b);
        }
    }

    /// A pooled buffer (allocates only while the pool is still growing to its bound).
    fn take(&mut self) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        if b.capacity() < MAX_PACKET_LEN {
            b.reserve_exact(MAX_PACKET_LEN);
        }
        b
    }

    fn give(&mut self, buf: Vec<u8>) {
        let total = self.ds + self.ps;
        if self.pool.len() < RX_MULTI * total + 2 * total + 1 && buf.capacity() > 0 {
            self.pool.push(buf);
        }
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
            while let Some(e) = self.rx.pop_front() {
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
        self.autotune.sample(is_data, seqid);
        let total = (self.ds + self.ps) as u32;
        let expect_data = ((seqid % total) as usize) < self.ds;
        if expect_data == is_data {
            return;
        }
        let ads = self.autotune.find_period(true);
        let aps = self.autotune.find_period(false);
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
        if self.rs.rebuild(ads, aps).is_err() {
            // Keep the old parameters; rebuild leaves the code valid only on success, so
            // restore it.
            let _ = self.rs.rebuild(self.ds, self.ps);
            self.stats.autotune_suppressed = self.stats.autotune_suppressed.wrapping_add(1);
            return;
        }
        self.ds = ads;
        self.ps = aps;
        self.rxlimit = RX_MULTI * (ads + aps);
        self.last_rebuild = Some(now);
        self.size_scratch();
        self.stats.autotune_rebuilds = self.stats.autotune_rebuilds.wrapping_add(1);
    }

    fn decode(&mut self, packet: &[u8], seqid: u32, is_data: bool, now: Millis) {
        self.maybe_autotune(seqid, is_data, now);

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
        let mut buf = self.take();
        buf.extend_from_slice(packet);
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
            if let Some(e) = self.rx.pop_front() {
                if e.is_data {
                    self.stats.short_shards = self.stats.short_shards.wrapping_add(1);
                }
                self.give(e.buf);
            }
        }
        // Expiry of leading entries.
        while self
            .rx
            .front()
            .is_some_and(|e| now.since(e.ts) > FEC_EXPIRE_MS as i32)
        {
            if let Some(e) = self.rx.pop_front() {
                self.stats.expired = self.stats.expired.wrapping_add(1);
                self.give(e.buf);
            }
        }
    }

    /// Group assembly around the shard just inserted at `insert_idx`.
    fn try_group(&mut self, seqid: u32, insert_idx: usize) {
        let total = self.ds + self.ps;
        let t = total as u32;
        let shard_begin = seqid - seqid % t;
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
                maxlen = maxlen.max(e.buf.len() - FEC_HEADER_LEN);
            }
        }
        let end = (first + num).min(self.rx.len());
        if num_data == self.ds {
            // Nothing lost.
            self.free_range(first, end);
        } else if num >= self.ds {
            self.reconstruct(first, end, shard_begin, maxlen);
        }
    }

    fn free_range(&mut self, first: usize, end: usize) {
        if first >= end {
            return;
        }
        for _ in first..end {
            if let Some(e) = self.rx.remove(first) {
                self.give(e.buf);
            }
        }
    }

    fn reconstruct(&mut self, first: usize, end: usize, shard_begin: u32, maxlen: usize) {
        let total = self.ds + self.ps;
        self.present.iter_mut().for_each(|p| *p = false);
        // Move the group's shards out of the queue into their slots.
        for _ in first..end {
            let Some(mut e) = self.rx.remove(first) else {
                break;
            };
            let slot = e.seqid.wrapping_sub(shard_begin) as usize;
            match (self.slots.get_mut(slot), self.present.get_mut(slot)) {
                (Some(s), Some(p)) if !*p && slot < total => {
                    // Zero padding to the longest present shard.
                    e.buf.resize(FEC_HEADER_LEN + maxlen, 0);
                    *s = e.buf;
                    *p = true;
                }
                _ => self.give(e.buf),
            }
        }
        for k in 0..self.ds {
            if !self.present.get(k).copied().unwrap_or(true) {
                let mut b = self.take();
                b.resize(FEC_HEADER_LEN + maxlen, 0);
                if let Some(s) = self.slots.get_mut(k) {
                    *s = b;
                }
            }
        }
        let ok = self
            .rs
            .reconstruct_data(
                &self.present,
                &mut self.slots,
                FEC_HEADER_LEN..FEC_HEADER_LEN + maxlen,
            )
            .is_ok();
        if !ok {
            self.stats.reconstruct_failures = self.stats.reconstruct_failures.wrapping_add(1);
        }
        for k in 0..total {
            let Some(s) = self.slots.get_mut(k) else {
                continue;
            };
            let mut b = core::mem::take(s);
            if b.capacity() == 0 {
                continue;
            }
            let was_present = self.present.get(k).copied().unwrap_or(true);
            if ok && k < self.ds && !was_present {
                // Hand out the shard without its FEC header: size field first.
                b.drain(..FEC_HEADER_LEN);
                self.recovered.push_back(b);
            } else {
                self.give(b);
            }
        }
    }
}
