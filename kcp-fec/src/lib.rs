//! kcp-go compatible Reed-Solomon forward error correction, as a [`kcp_core::Codec`] layer.
//!
//! On long lossy paths a lost packet costs KCP a round trip; FEC repairs it without one. After
//! every `ds` data packets the sender emits `ps` parity packets of a Reed-Solomon code, and the
//! receiver rebuilds up to `ps` missing packets of each group. The bytes on the wire are those
//! of kcp-go v5.6.1 (`fec.go`): an 8-byte header (seqid, type 0xF1/0xF2, size) in front of each
//! KCP datagram, parity over zero-padded shards with klauspost's matrix over GF(2^8), seqids
//! wrapping at a multiple of `ds + ps`.
//!
//! [`Fec`] is the codec the session stacks between the KCP engine and crypto; [`FecEncoder`]
//! and [`FecDecoder`] are its two halves for callers that drive them directly.
//!
//! # Driving it
//!
//! * Sending: [`Codec::seal`] every datagram the engine flushes (ACK-only ones included), then
//!   drain [`Codec::poll_extra`]: after each `ds`-th datagram it yields the group's `ps` parity
//!   packets, to be sent right away.
//! * Receiving: [`Codec::open`] every datagram, then drain [`Codec::poll_recovered`]. `open`
//!   returns the KCP datagram's range for data packets and for plain KCP packets (which pass
//!   through unchanged, so an FEC receiver accepts a non-FEC peer), and `None` for parity.
//!   Rebuilt datagrams must be fed to the engine as *not regular* (no RTT sample, no window
//!   update), as kcp-go does. Time is the caller's: it drives the 60 s expiry of incomplete
//!   groups and the autotune rate limit.
//!
//! The layer never panics on input and holds a bounded amount of memory and does bounded work
//! whatever a peer sends (see "Limits"); it allocates nothing per packet while traffic flows.
//!
//! # Memory follows data
//!
//! A layer allocates only for what it carries, and [`Codec::trim`] (called by the session
//! when it goes idle, nothing in flight) gives back everything else:
//!
//! * no decoder exists until the first FEC packet arrives ([`Fec::receive_only`] holds no heap
//!   at all until then, as kcp-go builds its decoder only then), and its autotune ring only
//!   once a shard contradicts its parameters;
//! * the encoder keeps a partial group as the packets' own bytes (three 60-byte datagrams hold
//!   186 bytes) and computes parity over zero-padded shards without copying them;
//! * the decoder keeps no copy of a received shard either: each incomplete group is folded
//!   into `ps` sums as long as its longest shard (the dual of the encoder, see
//!   [`FecDecoder`]), in buffers of three row sizes (122, 250 and 1494 bytes) that are pooled,
//!   so a warm layer allocates nothing per packet;
//! * the late shards of a group already complete (the parity that follows a group received
//!   whole) are not queued, as they could rebuild nothing ([`FecStats::late_shards`]; kcp-go
//!   queues them until its queue limit pushes them out), so a lossless stream's queue holds
//!   only the group in progress;
//! * `trim` frees the pools, the inverse cache, the queue and the encoder's buffers, and ends
//!   the current groups (everything sent was acknowledged, so their parity could only rebuild
//!   packets the peer already has): see [`FecEncoder::trim`] and [`FecDecoder::trim`];
//! * the Reed-Solomon matrix of a (ds, ps) is a [`FecCode`], built once and shared by every
//!   session that clones it ([`Fec::with_code`]); the GF(2^8) tables are `static`.
//!
//! [`Codec::heap_bytes`] reports what a layer holds (its share of a shared code included), and
//! [`Fec::heap_bound`] the most it can hold whatever a peer sends.
//!
//! # Limits
//!
//! [`FecConfig`] bounds what a peer can make the decoder hold and do:
//!
//! * `max_shards` (default 32): the largest group autotune adopts. kcptun uses 10/3; kcp-go
//!   allows 255. Matrix work grows with the cube of the group size, so the default keeps an
//!   inversion under 60,000 multiply-accumulates; up to 256 is allowed by configuration.
//! * `queue_bytes` (default 64 KiB): the heap the incomplete groups' sums may hold (`ps`
//!   rows of the longest shard's size class per group), counted in real buffer bytes (spare
//!   pooled buffers may hold half as much again). kcp-go's own limit of `3 * (ds + ps)`
//!   shards still applies; 64 KiB holds the sums of 14 incomplete groups of 10/3 at 1500
//!   bytes, where a peer's stream has a few at once, so such a peer decodes as with kcp-go.
//!   Past the budget the oldest groups go first ([`FecStats::evicted_for_bytes`]).
//! * the work budget: every FEC shard of `len` bytes that joins the queue earns `ds * len + 2 * ds^2`
//!   GF(2^8) multiply-accumulates of credit, and a reconstruction runs only if the credit covers
//!   it (`e * e * L` for `e` lost shards of `L` bytes, plus `2 * e^3` when the inverse for
//!   the erasure pattern is not cached). A legitimate group always pays for itself; crafted
//!   parity cannot buy more work per packet than the worst legitimate group costs. Refusals
//!   are counted in [`FecStats::work_refused`], work in [`FecStats::decode_work`].
//! * `autotune_interval_ms` (default 1000): at most one codec rebuild per interval.
//!
//! `docs/tuning.md` gives the cost of each and the measurements.
//!
//! # Platform
//!
//! `no_std` with `alloc`. The Reed-Solomon arithmetic picks its GF(2^8) kernel at run time
//! without `std` ([`gf::kernel`]): GFNI with AVX-512 or AVX2 split-nibble tables on x86, a
//! portable table elsewhere; all produce the same bytes. The crate needs Rust 1.89 (stable
//! AVX-512/GFNI intrinsics). `reed-solomon-erasure` 6 builds the same matrix and is the test
//! oracle; it is not used at run time (its SIMD needs a C compiler, `std`, and Haswell).
//!
//! # Example
//!
//! ```
//! use kcp_core::{Codec, Millis};
//! use kcp_fec::{Fec, FecCode, FecConfig};
//!
//! // One code per listener, cloned into every session's layer.
//! let code = FecCode::new(3, 2).unwrap();
//! let mut tx = Fec::with_code(code.clone(), FecConfig::default());
//! let mut rx = Fec::with_code(code, FecConfig::default());
//! let now = Millis(0);
//! let mut wire = Vec::new();
//! for i in 0..3u8 {
//!     // 8 bytes of room for the FEC header, then the KCP datagram.
//!     let mut buf = [0u8; 1500];
//!     buf[8..32].fill(i);
//!     let n = tx.seal(&mut buf, 32, now).unwrap();
//!     wire.push(buf[..n].to_vec());
//!     while let Some(p) = tx.poll_extra(&mut buf, now) {
//!         wire.push(buf[..p.unwrap()].to_vec());
//!     }
//! }
//! assert_eq!(wire.len(), 5); // 3 data + 2 parity
//!
//! // Lose data packet 1; the parity packets bring it back.
//! let mut out = [0u8; 1500];
//! let mut rebuilt = Vec::new();
//! for (i, pkt) in wire.iter_mut().enumerate() {
//!     if i == 1 {
//!         continue;
//!     }
//!     let _inner = rx.open(pkt, now).unwrap();
//!     while let Some(n) = rx.poll_recovered(&mut out) {
//!         rebuilt.push(out[..n].to_vec());
//!     }
//! }
//! assert_eq!(rebuilt, vec![vec![1u8; 24]]);
//! assert_eq!(rx.stats().recovered, 1);
//!
//! // Idle: give back what only speeds things up; the layer stays within its bound.
//! rx.trim();
//! assert!(rx.heap_bytes() <= rx.heap_bound());
//! ```
#![no_std]
#![deny(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels the items that need a cargo feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

extern crate alloc;

mod autotune;
mod budget;
mod code;
mod decoder;
mod encoder;
// GF(2^8) kernels: internal. The `bench-internals` feature exposes them, unstable and
// outside semver, for the crate's own kernel benchmark.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod gf;
#[cfg(not(feature = "bench-internals"))]
mod gf;
mod grow;
mod rs;
mod stats;
mod wire;

use alloc::boxed::Box;
use core::fmt;
use core::mem::size_of;
use core::ops::Range;

use kcp_core::{Codec, CodecError, LayerCounters, Millis, Route};

pub use code::{FecCode, MAX_TOTAL_SHARDS};
pub use decoder::FecDecoder;
pub use encoder::FecEncoder;
pub use stats::FecStats;
pub use wire::{
    PacketKind, FEC_EXPIRE_MS, HEADER_LEN, MAX_PACKET_LEN, SHARD_HEADER_LEN, TYPE_DATA, TYPE_PARITY,
};

use stats::Screened;

/// Why FEC parameters were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `ds` or `ps` is zero, or `ds + ps` is above [`MAX_TOTAL_SHARDS`] (kcp-go turns FEC off
    /// silently in that case).
    InvalidShards,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FEC needs ds >= 1, ps >= 1 and ds + ps <= 256")
    }
}

impl core::error::Error for ConfigError {}

pub(crate) fn check_shards(ds: usize, ps: usize) -> Result<(), ConfigError> {
    if ds == 0 || ps == 0 || ds + ps > MAX_TOTAL_SHARDS {
        return Err(ConfigError::InvalidShards);
    }
    Ok(())
}

/// What a peer may make the receiving half hold and do (see the crate docs, "Limits").
///
/// kcp-go v5.6.1 re-detects the peer's (ds, ps) from the pattern of data and parity seqids
/// whenever a shard's type contradicts the current parameters, and rebuilds its codec for
/// whatever it finds, as often as packets arrive. Here a rebuild needs `ds + ps <= max_shards`
/// and at least `autotune_interval_ms` since the previous one (the first one is immediate), so
/// a peer alternating patterns costs at most one matrix build per interval. Refusals are
/// counted in [`FecStats::autotune_suppressed`]. The parameters a layer is built with are
/// used whatever `max_shards` says: the limit is on what a peer can impose.
///
/// Build it from [`FecConfig::default`] and set the fields to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FecConfig {
    /// Largest `ds + ps` the decoder adopts (default 32; at most 256 takes effect). It bounds
    /// the matrix work of a reconstruction (`2 * ds^3` for an uncached inverse) and the size of
    /// the queue (`3 * max_shards` shards).
    pub max_shards: usize,
    /// Least time between two autotune rebuilds, in ms (default 1000).
    pub autotune_interval_ms: u32,
    /// Heap the incomplete groups' sums (`ps` rows of the longest shard's size class per
    /// group) may hold, in bytes (default 64 KiB); spare buffers kept for reuse may hold half
    /// as much again. The oldest groups are dropped first past it, their shards counted in
    /// [`FecStats::evicted_for_bytes`]. Below one group's sums (`ps` x 1494 bytes for full-size
    /// packets), no such group can complete.
    pub queue_bytes: usize,
}

/// Default [`FecConfig::max_shards`].
pub const DEFAULT_MAX_SHARDS: usize = 32;
/// Default [`FecConfig::queue_bytes`].
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024;

impl Default for FecConfig {
    fn default() -> Self {
        FecConfig {
            max_shards: DEFAULT_MAX_SHARDS,
            autotune_interval_ms: 1000,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

/// The FEC codec layer: an [`FecEncoder`] for what this side sends and an [`FecDecoder`] for
/// what it receives.
///
/// Each direction's setting is independent, as in kcp-go: the encoder follows local settings,
/// the decoder adapts to the peer's (ds, ps). The decoder is built on the first FEC packet.
#[derive(Debug)]
pub struct Fec {
    encoder: Option<Box<FecEncoder>>,
    decoder: Option<Box<FecDecoder>>,
    /// The configured code: the decoder starts with it (for a sending layer) and returns to it
    /// without building anything.
    code: Option<FecCode>,
    /// Whether the decoder starts with `code` rather than kcp-go's receive-only (1, 1).
    sends: bool,
    config: FecConfig,
    screened: Screened,
    /// Counters of decoders `trim` dropped (boxed: most layers never need it).
    retired: Option<Box<FecStats>>,
    /// Receive-limited (the endpoint's memory budget is spent): keep no shard.
    limited: bool,
}

impl Fec {
    /// A layer sending groups of `ds` data and `ps` parity shards (kcptun's default is 10, 3),
    /// with its own [`FecCode`]. Servers should build the code once and use
    /// [`Fec::with_code`].
    pub fn new(ds: usize, ps: usize) -> Result<Self, ConfigError> {
        Self::with_config(ds, ps, FecConfig::default())
    }

    /// [`Fec::new`] with explicit limits.
    pub fn with_config(ds: usize, ps: usize, config: FecConfig) -> Result<Self, ConfigError> {
        Ok(Self::with_code(FecCode::new(ds, ps)?, config))
    }

    /// A layer sending groups of `code`'s parameters, sharing its matrix with every other
    /// holder of `code` (one matrix per listener instead of one per session).
    pub fn with_code(code: FecCode, config: FecConfig) -> Self {
        Fec {
            encoder: Some(Box::new(FecEncoder::with_code(code.clone()))),
            decoder: None,
            code: Some(code),
            sends: true,
            config,
            screened: Screened::default(),
            retired: None,
            limited: false,
        }
    }

    /// A layer that sends plain KCP (no header, no parity) but decodes FEC from a peer that
    /// uses it: what a kcp-go session with FEC off does on its first FEC packet (a (1, 1)
    /// decoder that autotune adapts). It holds no heap until that packet. Never fails (the
    /// `Result` is kept for compatibility).
    pub fn receive_only(config: FecConfig) -> Result<Self, ConfigError> {
        Ok(Fec {
            encoder: None,
            decoder: None,
            code: None,
            sends: false,
            config,
            screened: Screened::default(),
            retired: None,
            limited: false,
        })
    }

    /// [`Fec::receive_only`] whose decoder adopts `code` (shared, not rebuilt) when autotune
    /// detects its parameters: for a server whose peers use one known (ds, ps).
    pub fn receive_only_with_code(code: FecCode, config: FecConfig) -> Self {
        Fec {
            encoder: None,
            decoder: None,
            code: Some(code),
            sends: false,
            config,
            screened: Screened::default(),
            retired: None,
            limited: false,
        }
    }

    /// Numbers this layer's next data shard `seqid` (rounded down to a group boundary; see
    /// [`FecEncoder::set_next_seqid`]). Sessions that share a socket and start at different
    /// points (random ones) keep apart the groups a receiving endpoint routes parity by.
    /// Does nothing on a receive-only layer.
    pub fn set_next_seqid(&mut self, seqid: u32) {
        if let Some(e) = &mut self.encoder {
            e.set_next_seqid(seqid);
        }
    }

    /// The sending half, `None` for [`Fec::receive_only`].
    pub fn encoder(&self) -> Option<&FecEncoder> {
        self.encoder.as_deref()
    }

    /// The receiving half, `None` until the first FEC packet arrives.
    pub fn decoder(&self) -> Option<&FecDecoder> {
        self.decoder.as_deref()
    }

    /// Counters of both halves.
    pub fn stats(&self) -> FecStats {
        let mut s = self.decoder.as_ref().map(|d| d.stats()).unwrap_or_default();
        if let Some(r) = &self.retired {
            s.add(r);
        }
        self.screened.add_to(&mut s);
        if let Some(e) = &self.encoder {
            (s.data_sealed, s.parity_sealed) = e.counts();
        }
        s
    }

    /// The most [`Codec::heap_bytes`] can report for this layer, whatever a peer sends:
    /// a full encoder group, `queue_bytes` of groups' sums, one group of rebuilt shards, and
    /// scratch and tables for the largest group `max_shards` lets the decoder adopt.
    pub fn heap_bound(&self) -> usize {
        let (ds, ps) = self.code.as_ref().map_or((1, 1), FecCode::shards);
        let enc = if self.encoder.is_some() {
            size_of::<FecEncoder>() + FecEncoder::heap_bound(ds, ps)
        } else {
            0
        };
        let own = self.code.as_ref().map_or(0, FecCode::heap_bytes);
        enc + size_of::<FecDecoder>()
            + FecDecoder::heap_bound(&self.config, ds, ps)
            + own
            + size_of::<FecStats>()
    }

    fn decoder_mut(&mut self) -> &mut FecDecoder {
        let config = self.config;
        let (code, sends) = (&self.code, self.sends);
        self.decoder.get_or_insert_with(|| {
            let dec = match code {
                Some(c) if sends => FecDecoder::with_code(c.clone(), config),
                _ => {
                    let mut d = FecDecoder::with_code(FecCode::one_one(), config);
                    if let Some(c) = code {
                        d.set_hint(c.clone());
                    }
                    d
                }
            };
            Box::new(dec)
        })
    }
}

impl Codec for Fec {
    fn header_len(&self) -> usize {
        if self.encoder.is_some() {
            HEADER_LEN
        } else {
            0
        }
    }

    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        match &mut self.encoder {
            Some(e) => e.seal(buf, len),
            None if len <= buf.len() => Ok(len),
            None => Err(CodecError::BufferTooSmall),
        }
    }

    fn produces_extra(&self) -> bool {
        self.encoder.is_some()
    }

    fn poll_extra(&mut self, buf: &mut [u8], _now: Millis) -> Option<Result<usize, CodecError>> {
        self.encoder.as_mut()?.poll_parity(buf)
    }

    /// Data shards wrap the KCP datagram at [`HEADER_LEN`]; parity shards carry no
    /// conversation id and go with the session on their address whose data is of a nearby
    /// group ([`Codec::group`]); plain KCP packets are their own inner packet.
    fn route(&self, packet: &[u8]) -> Result<Route, CodecError> {
        Ok(match wire::classify(packet)? {
            PacketKind::Plain => Route::Inner(0..packet.len()),
            PacketKind::Data { .. } => Route::Inner(HEADER_LEN..packet.len()),
            PacketKind::Parity { .. } => Route::Attach,
        })
    }

    /// The group of a data or parity shard: its seqid rounded down to a multiple of this
    /// layer's `ds + ps` (the code it was built with; a receive-only layer without one has no
    /// groups).
    fn group(&self, packet: &[u8]) -> Option<u32> {
        let total = self.code.as_ref().map(|c| {
            let (ds, ps) = c.shards();
            (ds + ps) as u32
        })?;
        match wire::classify(packet).ok()? {
            PacketKind::Data { seqid } | PacketKind::Parity { seqid } => {
                Some(seqid - seqid % total.max(1))
            }
            PacketKind::Plain => None,
        }
    }

    fn set_receive_limited(&mut self, limited: bool) {
        self.limited = limited;
    }

    fn open(&mut self, buf: &mut [u8], now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        let kind = match wire::classify(buf) {
            Ok(kind) => kind,
            Err(r) => {
                self.screened.reject(r);
                return Err(r.into());
            }
        };
        if kind == PacketKind::Plain {
            // Plain KCP never builds a decoder.
            self.screened.plain();
            return Ok(Some(0..buf.len()));
        }
        // A trimmed layer (its decoder dropped, `retired` holds its counters) builds no
        // decoder for parity: no data of that group is held, so parity alone keeps nothing
        // worth its memory, and parity-only traffic cannot undo the trim; the next data shard
        // builds one. While receive-limited nothing is kept (data shards still pass).
        let parity = matches!(kind, PacketKind::Parity { .. });
        if self.limited || (parity && self.decoder.is_none() && self.retired.is_some()) {
            self.screened.not_kept();
            return Ok((!parity).then_some(HEADER_LEN..buf.len()));
        }
        self.decoder_mut().input_classified(buf, kind, now)?;
        Ok(match kind {
            PacketKind::Data { .. } => Some(HEADER_LEN..buf.len()),
            _ => None,
        })
    }

    /// Rebuilt KCP datagrams; they are not regular (no RTT sample, no window update).
    fn poll_recovered(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.decoder.as_mut()?.poll_recovered(buf)
    }

    /// Both halves' buffers (boxes included) and this layer's share of its codes' matrices;
    /// not `size_of::<Fec>()` itself, which lives wherever the caller keeps the layer.
    fn heap_bytes(&self) -> usize {
        let enc = self
            .encoder
            .as_ref()
            .map_or(0, |e| size_of::<FecEncoder>() + e.heap_bytes());
        let dec = self
            .decoder
            .as_ref()
            .map_or(0, |d| size_of::<FecDecoder>() + d.heap_bytes());
        let retired = self.retired.as_ref().map_or(0, |_| size_of::<FecStats>());
        enc + dec + retired + self.code.as_ref().map_or(0, FecCode::share_bytes)
    }

    /// The decoder's part of [`heap_bytes`](Self::heap_bytes): the encoder's parity buffers
    /// follow what this side sends. Counted after every datagram, this leaves the encoder
    /// (a cache miss per datagram at 10,000 sessions) alone.
    fn receive_heap_bytes(&self) -> usize {
        self.decoder
            .as_ref()
            .map_or(0, |d| size_of::<FecDecoder>() + d.heap_bytes())
    }

    /// Gives back both halves' pools, scratch and slack (see [`FecEncoder::trim`] and
    /// [`FecDecoder::trim`]); what is kept is data (a partial group, groups' sums) and the
    /// decoder's small state.
    ///
    /// A decoder left with nothing queued is dropped altogether (its counters kept): it is
    /// rebuilt when FEC packets come again, so an idle session holds no decoder, as one that
    /// never received FEC. What it knew of the peer's parameters (autotune) is learnt again.
    fn trim(&mut self) {
        if let Some(e) = &mut self.encoder {
            e.trim();
        }
        if let Some(d) = &mut self.decoder {
            d.trim();
            if d.is_empty() {
                let st = d.stats();
                match &mut self.retired {
                    Some(r) => r.add(&st),
                    None => self.retired = Some(Box::new(st)),
                }
                self.decoder = None;
            }
        }
    }

    /// kcp-go's FEC counters (`fec_recovered_shards`, `fec_errs`, `fec_parity_shards`,
    /// `fec_short_shards`), plus the malformed-input and limit ones.
    fn add_counters(&self, into: &mut LayerCounters) {
        let s = self.stats();
        for (a, b) in [
            (&mut into.fec_recovered_shards, s.recovered),
            (&mut into.fec_errs, s.errs),
            (&mut into.fec_parity_shards, s.parity_shards),
            (&mut into.fec_short_shards, s.short_shards),
            (&mut into.fec_truncated, s.truncated),
            (&mut into.fec_oversized, s.oversized),
            (&mut into.fec_bad_size, s.bad_size),
            (&mut into.fec_unknown_type, s.unknown_type),
            (&mut into.fec_seqid_jumps, s.seqid_jumps),
            (&mut into.fec_evicted_for_bytes, s.evicted_for_bytes),
            (&mut into.fec_work_refused, s.work_refused),
            (&mut into.fec_decode_work, s.decode_work),
            (&mut into.fec_autotune_suppressed, s.autotune_suppressed),
            (&mut into.fec_misplaced, s.misplaced),
        ] {
            *a = a.wrapping_add(b);
        }
    }
}
