//! A session: one engine plus its codec stack, in kcp-go's order (feature `alloc`).
//!
//! On send, the engine's datagram goes through the layers innermost first (FEC, then crypto);
//! on receive, outermost first (crypto, then FEC). Every layer's header room is reserved in
//! front of the engine's datagrams, so the MSS is `mtu - 24 - sum(header_len) -
//! sum(trailer_len)`, exactly kcp-go's arithmetic (1348 with FEC and crypto at MTU 1400), and
//! a session configured like kcptun talks to kcptun's kcp-go.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::codec::{Codec, CodecError, LayerCounters};
use crate::config::{Config, ConfigError};
use crate::engine::{InputError, Kcp};
use crate::time::Millis;
use crate::wire::HEADER_LEN;

/// Largest packet a layer can rebuild: the largest MTU plus slack for codec headers.
const RECOVERED_MAX: usize = crate::config::MAX_MTU as usize + 64;

/// A codec layer as a session holds it.
pub type Layer = Box<dyn Codec + Send>;

/// Why [`Session::handle_datagram`] rejected a datagram. Every rejection is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// A codec layer rejected it (checksum, authentication, malformed header...).
    Codec(CodecError),
    /// The KCP datagram inside is shorter than a segment header (kcp-go drops these).
    Short,
    /// The engine rejected the KCP datagram.
    Kcp(InputError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Codec(e) => write!(f, "codec: {e}"),
            SessionError::Short => write!(f, "datagram shorter than a KCP header"),
            SessionError::Kcp(e) => write!(f, "kcp: {e}"),
        }
    }
}

impl core::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SessionError::Codec(e) => Some(e),
            SessionError::Kcp(e) => Some(e),
            _ => None,
        }
    }
}

/// Per-session packet counters (kcp-go's SNMP packet-level ones); the engine's ARQ counters
/// are in [`Kcp::stats`] and the layers' in [`Session::layer_counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Datagrams handed to `handle_datagram` (`InPkts`).
    pub in_pkts: u64,
    /// Their bytes (`InBytes`).
    pub in_bytes: u64,
    /// Datagrams produced by `poll_transmit` (`OutPkts`).
    pub out_pkts: u64,
    /// Their bytes (`OutBytes`).
    pub out_bytes: u64,
    /// Rejected by a layer's integrity check (`InCsumErrors`).
    pub in_csum_errors: u64,
    /// Rejected by a layer for any other reason.
    pub in_codec_errors: u64,
    /// KCP part shorter than a header.
    pub in_short: u64,
    /// Rejected by the engine, regular or rebuilt (`KCPInErrors`).
    pub kcp_in_errors: u64,
    /// Rebuilt datagrams the engine accepted (`FECRecovered`).
    pub fec_recovered: u64,
    /// Packets a layer failed to seal (never expected; counted, not sent).
    pub seal_errors: u64,
}

/// An engine and its codec stack.
pub struct Session<'a> {
    kcp: Kcp<'a>,
    /// Innermost first: `layers[0]` wraps the KCP datagram.
    layers: Vec<Layer>,
    /// Header room in front of layer `i`'s header, i.e. the sum of the outer layers' headers.
    offsets: Vec<usize>,
    room: usize,
    /// A layer that may have extra packets (FEC parity) to hand out, innermost first.
    extras_from: Option<usize>,
    stats: SessionStats,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("kcp", &self.kcp)
            .field("layers", &self.layers.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Session<'static> {
    /// A heap-backed session. `layers` are innermost first (`[fec, crypto]` as kcp-go);
    /// `config.header_room` and `trailer_room` are set from them.
    pub fn new(
        conv: u32,
        mut config: Config,
        layers: Vec<Layer>,
        now: Millis,
    ) -> Result<Self, ConfigError> {
        config.header_room = layers.iter().map(|l| l.header_len() as u32).sum();
        config.trailer_room = layers.iter().map(|l| l.trailer_len() as u32).sum();
        let kcp = Kcp::new(conv, config, now)?;
        Ok(Session::from_parts(kcp, layers))
    }
}

/// How far [`Session::open_through`] got.
enum Opened {
    /// Every layer opened; the engine's packet is this range.
    Inner(core::ops::Range<usize>),
    /// Layer `.0` kept the packet (an FEC parity shard): nothing for the engine now.
    Held(usize),
    /// Layer `.0` refused it (counted).
    Failed(usize, SessionError),
}

impl<'a> Session<'a> {
    /// Wraps an existing engine, whose `header_room`/`trailer_room` must already cover the
    /// layers (checked).
    pub fn with_engine(kcp: Kcp<'a>, layers: Vec<Layer>) -> Result<Self, ConfigError> {
        let head: usize = layers.iter().map(|l| l.header_len()).sum();
        let tail: usize = layers.iter().map(|l| l.trailer_len()).sum();
        let cfg = kcp.config();
        if (cfg.header_room as usize) < head || (cfg.trailer_room as usize) < tail {
            return Err(ConfigError::Storage(
                "engine header room smaller than the layers",
            ));
        }
        Ok(Session::from_parts(kcp, layers))
    }

    fn from_parts(kcp: Kcp<'a>, layers: Vec<Layer>) -> Self {
        let room = kcp.config().header_room as usize;
        let mut offsets = vec![0; layers.len()];
        let mut outer = 0;
        for i in (0..layers.len()).rev() {
            offsets[i] = outer;
            outer += layers[i].header_len();
        }
        // Engine datagrams start at `room`; with_engine may reserve more than the layers use.
        let shift = room.saturating_sub(outer);
        for o in &mut offsets {
            *o += shift;
        }
        Session {
            kcp,
            layers,
            offsets,
            room,
            extras_from: None,
            stats: SessionStats::default(),
        }
    }

    /// The engine: send, recv, stats, timers.
    pub fn kcp(&self) -> &Kcp<'a> {
        &self.kcp
    }

    /// The engine, mutably.
    pub fn kcp_mut(&mut self) -> &mut Kcp<'a> {
        &mut self.kcp
    }

    /// Packet-level counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Every layer's counters, summed (see [`Codec::add_counters`]).
    pub fn layer_counters(&self) -> LayerCounters {
        let mut c = LayerCounters::default();
        for l in &self.layers {
            l.add_counters(&mut c);
        }
        c
    }

    /// Heap bytes this session holds beyond its own struct: the engine's storage, the codec
    /// layers (their structs and what they report through [`Codec::heap_bytes`]) and the
    /// session's tables. For memory accounting.
    pub fn heap_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| core::mem::size_of_val(&**l) + l.heap_bytes())
            .sum();
        self.kcp.heap_bytes()
            + layers
            + self.layers.capacity() * core::mem::size_of::<Layer>()
            + self.offsets.capacity() * core::mem::size_of::<usize>()
    }

    /// Heap bytes held on the receive side: the engine's received segments and receive ring
    /// ([`Kcp::receive_heap_bytes`]) and the codec layers' receive-side state
    /// ([`Codec::receive_heap_bytes`]), for an endpoint's receive budget.
    pub fn receive_heap_bytes(&self) -> usize {
        self.kcp.receive_heap_bytes()
            + self
                .layers
                .iter()
                .map(|l| l.receive_heap_bytes())
                .sum::<usize>()
    }

    /// Refuses (`true`) or accepts again new receive-side state in the engine and every
    /// layer (see [`Kcp::set_receive_limited`] and [`Codec::set_receive_limited`]).
    pub fn set_receive_limited(&mut self, limited: bool) {
        if self.kcp.is_receive_limited() == limited {
            return;
        }
        self.kcp.set_receive_limited(limited);
        for l in &mut self.layers {
            l.set_receive_limited(limited);
        }
    }

    /// Gives back memory kept only for speed: the codec layers' ([`Codec::trim`]) and, when
    /// the engine holds no data, its rings and tables ([`Kcp::shrink_storage`]). The endpoint
    /// calls it when the session has held no data for a while.
    pub fn trim(&mut self) {
        for l in &mut self.layers {
            l.trim();
        }
        self.kcp.shrink_storage();
    }

    /// Largest datagram `poll_transmit` produces: the MTU.
    pub fn max_datagram(&self) -> usize {
        self.kcp.config().mtu as usize
    }

    /// Processes one received datagram, decoding it in place through the layers.
    #[doc(alias = "input")]
    pub fn handle_datagram(
        &mut self,
        now: Millis,
        datagram: &mut [u8],
    ) -> Result<(), SessionError> {
        self.stats.in_pkts += 1;
        self.stats.in_bytes += datagram.len() as u64;
        self.input_layers(now, datagram, self.layers.len())
    }

    /// Tells layer `layer` (innermost is 0) about a packet the caller opened with its own
    /// instance ([`Codec::demux_open`]), so per-peer state (a replay window) is checked and
    /// advanced here; see [`Codec::accept_demuxed`]. Rejections are counted.
    pub fn accept_demuxed(
        &mut self,
        layer: usize,
        packet: &[u8],
        inner: core::ops::Range<usize>,
        now: Millis,
    ) -> Result<(), SessionError> {
        let Some(l) = self.layers.get_mut(layer) else {
            return Ok(());
        };
        match l.accept_demuxed(packet, inner, now) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.in_pkts += 1;
                self.stats.in_bytes += packet.len() as u64;
                Err(self.codec_error(e))
            }
        }
    }

    /// Processes a datagram whose `opened` outermost layers were already opened by the caller
    /// (an [`Endpoint`](crate::endpoint::Endpoint) decrypts before it demultiplexes); `inner`
    /// is what those layers delivered.
    #[doc(alias = "input_opened")]
    pub fn handle_opened(
        &mut self,
        now: Millis,
        inner: &mut [u8],
        opened: usize,
    ) -> Result<(), SessionError> {
        self.stats.in_pkts += 1;
        self.stats.in_bytes += inner.len() as u64;
        let remaining = self.layers.len().saturating_sub(opened);
        self.input_layers(now, inner, remaining)
    }

    /// Opens `datagram` through layers `count-1 ..= 0` and feeds the engine.
    fn input_layers(
        &mut self,
        now: Millis,
        datagram: &mut [u8],
        count: usize,
    ) -> Result<(), SessionError> {
        let (result, opened_to) = match self.open_through(now, datagram, count) {
            Opened::Inner(range) => {
                let kcp_part = datagram.get(range).unwrap_or(&[]);
                (self.feed(now, kcp_part, true), 0)
            }
            Opened::Held(i) => (Ok(()), i),
            Opened::Failed(i, e) => (Err(e), i),
        };
        // Rebuilt packets of every layer that was reached, opened through the inner layers.
        for i in opened_to..count {
            self.drain_recovered(i, now);
        }
        result
    }

    /// Opens `packet` in place through layers `count-1 ..= 0` (outermost first): the one copy
    /// of the rule for received datagrams and for packets a layer rebuilt. Failures are
    /// counted.
    fn open_through(&mut self, now: Millis, packet: &mut [u8], count: usize) -> Opened {
        let mut range = 0..packet.len();
        for i in (0..count).rev() {
            let Some(part) = packet.get_mut(range.clone()) else {
                return Opened::Failed(i, self.codec_error(CodecError::Malformed));
            };
            match self.layers[i].open(part, now) {
                Ok(Some(inner)) => range = range.start + inner.start..range.start + inner.end,
                Ok(None) => return Opened::Held(i),
                Err(e) => return Opened::Failed(i, self.codec_error(e)),
            }
        }
        Opened::Inner(range)
    }

    /// Number of codec layers.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    fn codec_error(&mut self, e: CodecError) -> SessionError {
        if e == CodecError::Integrity {
            self.stats.in_csum_errors += 1;
        } else {
            self.stats.in_codec_errors += 1;
        }
        SessionError::Codec(e)
    }

    fn feed(&mut self, now: Millis, kcp_part: &[u8], regular: bool) -> Result<(), SessionError> {
        if kcp_part.len() < HEADER_LEN {
            self.stats.in_short += 1;
            return Err(SessionError::Short);
        }
        let r = if regular {
            self.kcp.handle_datagram(now, kcp_part)
        } else {
            self.kcp.handle_recovered(now, kcp_part)
        };
        match r {
            Ok(()) => {
                if !regular {
                    self.stats.fec_recovered += 1;
                }
                Ok(())
            }
            Err(e) => {
                self.stats.kcp_in_errors += 1;
                Err(SessionError::Kcp(e))
            }
        }
    }

    fn drain_recovered(&mut self, layer: usize, now: Millis) {
        // Rebuilt packets are at most the largest MTU; no buffer is kept per session.
        let mut scratch = [0u8; RECOVERED_MAX];
        while let Some(n) = self.layers[layer].poll_recovered(&mut scratch) {
            let n = n.min(scratch.len());
            if let Opened::Inner(range) = self.open_through(now, &mut scratch[..n], layer) {
                let part = scratch.get(range).unwrap_or(&[]);
                let _ = self.feed(now, part, false);
            }
        }
    }

    /// Writes the next datagram to send (all layers applied) into `buf`, which must hold
    /// [`max_datagram`](Self::max_datagram) bytes. Drain it after every call that changes the
    /// session, as with [`Kcp::poll_transmit`].
    pub fn poll_transmit(&mut self, now: Millis, buf: &mut [u8]) -> Option<usize> {
        let n = self.poll_sealed_upto(now, buf, self.layers.len())?;
        Some(self.count_out(n))
    }

    /// Writes up to `lens.len()` datagrams at once: datagram `i` into
    /// `buf[i * stride..(i + 1) * stride]` (each `stride` bytes must hold the MTU), its length
    /// into `lens[i]`; returns how many. The outermost layer seals them all in one
    /// [`Codec::seal_strided`] call (eight interleaved CFB chains go about four times faster
    /// than one), unless it produces extra packets (then one at a time, as `poll_transmit`).
    pub fn poll_transmit_strided(
        &mut self,
        now: Millis,
        buf: &mut [u8],
        stride: usize,
        lens: &mut [usize],
    ) -> usize {
        let l = self.layers.len();
        let batch_outer = l > 0 && !self.layers[l - 1].produces_extra();
        let upto = if batch_outer { l - 1 } else { l };
        let mut n = 0;
        while n < lens.len() {
            let Some(slot) = buf.get_mut(n * stride..(n + 1) * stride) else {
                break;
            };
            match self.poll_sealed_upto(now, slot, upto) {
                Some(len) => {
                    lens[n] = len;
                    n += 1;
                }
                None => break,
            }
        }
        if batch_outer && n > 0 {
            let off = self.offsets[l - 1];
            for len in lens[..n].iter_mut() {
                *len -= off;
            }
            let region = buf.get_mut(off..).unwrap_or(&mut []);
            if self.layers[l - 1]
                .seal_strided(region, stride, &mut lens[..n], now)
                .is_err()
            {
                // Never expected (slots hold the MTU); the datagrams are lost, KCP resends.
                self.stats.seal_errors += n as u64;
                return 0;
            }
            for len in lens[..n].iter_mut() {
                *len += off;
            }
        }
        for &len in &lens[..n] {
            self.count_out(len);
        }
        n
    }

    /// The next datagram sealed through layers `..upto` (not counted).
    fn poll_sealed_upto(&mut self, now: Millis, buf: &mut [u8], upto: usize) -> Option<usize> {
        loop {
            // Extra packets (FEC parity) come right after the packet that produced them.
            while let Some(i) = self.extras_from {
                let off = self.offsets[i];
                let Some(region) = buf.get_mut(off..) else {
                    self.extras_from = None;
                    break;
                };
                match self.layers[i].poll_extra(region, now) {
                    Some(Ok(len)) => match self.seal_from(i + 1, upto, buf, off + len, now) {
                        Some(n) => return Some(n),
                        None => continue,
                    },
                    Some(Err(_)) => self.stats.seal_errors += 1,
                    None => self.extras_from = if i == 0 { None } else { Some(i - 1) },
                }
            }
            let room = self.room;
            let tail = self.kcp.config().trailer_room as usize;
            let end = buf.len().saturating_sub(tail);
            let region = buf.get_mut(room..end)?;
            let n = self.kcp.poll_transmit(now, region)?;
            if let Some(sealed) = self.seal_from(0, upto, buf, room + n, now) {
                // Outermost layers first would reorder parity; poll inner to outer.
                self.extras_from = self.layers.len().checked_sub(1);
                return Some(sealed);
            }
        }
    }

    /// Seals a packet that ends at `end` through layers `first..upto`; returns its length.
    fn seal_from(
        &mut self,
        first: usize,
        upto: usize,
        buf: &mut [u8],
        mut end: usize,
        now: Millis,
    ) -> Option<usize> {
        for i in first..upto.min(self.layers.len()) {
            let off = self.offsets[i];
            let region = buf.get_mut(off..)?;
            match self.layers[i].seal(region, end - off, now) {
                Ok(len) => end = off + len,
                Err(_) => {
                    self.stats.seal_errors += 1;
                    return None;
                }
            }
        }
        Some(end)
    }

    fn count_out(&mut self, n: usize) -> usize {
        self.stats.out_pkts += 1;
        self.stats.out_bytes += n as u64;
        n
    }
}
