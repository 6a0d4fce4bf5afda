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
//! The layer never panics on input, holds a bounded amount of memory whatever a peer sends
//! (see [`FecDecoder`]), and allocates nothing per packet once its buffer pools are warm.
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
//! use kcp_fec::Fec;
//!
//! let mut tx = Fec::new(3, 2).unwrap();
//! let mut rx = Fec::new(3, 2).unwrap();
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
//! ```
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

extern crate alloc;

mod autotune;
mod decoder;
mod encoder;
pub mod gf;
mod rs;
mod stats;
mod wire;

use core::fmt;
use core::ops::Range;

use kcp_core::{Codec, CodecError, Millis, Route};

pub use decoder::FecDecoder;
pub use encoder::FecEncoder;
pub use rs::MAX_TOTAL_SHARDS;
pub use stats::FecStats;
pub use wire::{
    PacketKind, FEC_EXPIRE_MS, FEC_HEADER_LEN, HEADER_LEN, MAX_PACKET_LEN, TYPE_DATA, TYPE_PARITY,
};

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

/// Limits of the receiver's parameter autotune.
///
/// kcp-go v5.6.1 re-detects the peer's (ds, ps) from the pattern of data and parity seqids
/// whenever a shard's type contradicts the current parameters, and rebuilds its codec for
/// whatever it finds, as often as packets arrive. Here a rebuild needs `ds + ps <= max_shards`
/// and at least `autotune_interval_ms` since the previous one (the first one is immediate), so
/// a peer alternating patterns costs at most one matrix build per interval. Refusals are
/// counted in [`FecStats::autotune_suppressed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecConfig {
    /// Largest `ds + ps` the decoder adopts (default 256, kcp-go's own limit). It also bounds
    /// the receive queue: `3 * max_shards` shards of at most 1500 bytes.
    pub max_shards: usize,
    /// Least time between two autotune rebuilds, in ms (default 1000).
    pub autotune_interval_ms: u32,
}

impl Default for FecConfig {
    fn default() -> Self {
        FecConfig {
            max_shards: MAX_TOTAL_SHARDS,
            autotune_interval_ms: 1000,
        }
    }
}

/// The FEC codec layer: an [`FecEncoder`] for what this side sends and an [`FecDecoder`] for
/// what it receives.
///
/// Each direction's setting is independent, as in kcp-go: the encoder follows local settings,
/// the decoder adapts to the peer's (ds, ps).
#[derive(Debug)]
pub struct Fec {
    encoder: Option<FecEncoder>,
    decoder: FecDecoder,
}

impl Fec {
    /// A layer sending groups of `ds` data and `ps` parity shards (kcptun's default is 10, 3).
    pub fn new(ds: usize, ps: usize) -> Result<Self, ConfigError> {
        Self::with_config(ds, ps, FecConfig::default())
    }

    /// [`Fec::new`] with explicit autotune limits.
    pub fn with_config(ds: usize, ps: usize, config: FecConfig) -> Result<Self, ConfigError> {
        Ok(Fec {
            encoder: Some(FecEncoder::new(ds, ps)?),
            decoder: FecDecoder::new(ds, ps, config)?,
        })
    }

    /// A layer that sends plain KCP (no header, no parity) but decodes FEC from a peer that
    /// uses it: what a kcp-go session with FEC off does on its first FEC packet (a (1, 1)
    /// decoder that autotune adapts).
    pub fn receive_only(config: FecConfig) -> Result<Self, ConfigError> {
        Ok(Fec {
            encoder: None,
            decoder: FecDecoder::new(1, 1, config)?,
        })
    }

    /// The sending half, `None` for [`Fec::receive_only`].
    pub fn encoder(&self) -> Option<&FecEncoder> {
        self.encoder.as_ref()
    }

    /// The receiving half.
    pub fn decoder(&self) -> &FecDecoder {
        &self.decoder
    }

    /// Counters of both halves.
    pub fn stats(&self) -> FecStats {
        let mut s = self.decoder.stats();
        if let Some(e) = &self.encoder {
            (s.data_sealed, s.parity_sealed) = e.counts();
        }
        s
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
    /// conversation id and go with the session that last received data from their address;
    /// plain KCP packets are their own inner packet.
    fn route(&self, packet: &[u8]) -> Result<Route, CodecError> {
        Ok(match wire::classify(packet)? {
            PacketKind::Plain => Route::Inner(0..packet.len()),
            PacketKind::Data { .. } => Route::Inner(HEADER_LEN..packet.len()),
            PacketKind::Parity { .. } => Route::Attach,
        })
    }

    fn open(&mut self, buf: &mut [u8], now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        Ok(match self.decoder.input(buf, now)? {
            PacketKind::Plain => Some(0..buf.len()),
            PacketKind::Data { .. } => Some(HEADER_LEN..buf.len()),
            PacketKind::Parity { .. } => None,
        })
    }

    /// Rebuilt KCP datagrams; they are not regular (no RTT sample, no window update).
    fn poll_recovered(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.decoder.poll_recovered(buf)
    }

    /// kcp-go's FEC counters under their SNMP names, plus the malformed-input ones.
    fn visit_counters(&self, visit: &mut dyn FnMut(&'static str, u64)) {
        let s = self.stats();
        visit("fec_recovered_shards", s.recovered);
        visit("fec_errs", s.errs);
        visit("fec_parity_shards", s.parity_shards);
        visit("fec_short_shards", s.short_shards);
        visit("fec_truncated", s.truncated);
        visit("fec_oversized", s.oversized);
        visit("fec_bad_size", s.bad_size);
        visit("fec_unknown_type", s.unknown_type);
        visit("fec_seqid_jumps", s.seqid_jumps);
    }
}
