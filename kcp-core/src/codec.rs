//! The packet-layer boundary: codecs that wrap the engine's datagrams (FEC, crypto).
//!
//! A [`Codec`] transforms packets in place between the KCP engine and the socket. kcp-go stacks
//! them as KCP, then FEC, then crypto on send, and the reverse on receive; every layer reserves
//! a fixed number of header bytes in front of the packet it wraps (and, for AEAD, trailer bytes
//! after it), so the engine leaves that much room and no layer ever copies the payload.
//!
//! # Buffer convention
//!
//! On **seal**, the layer receives a buffer whose first [`Codec::header_len`] bytes are free
//! room for its own header, followed by the inner packet (`buf[header_len..len]`), and at least
//! [`Codec::trailer_len`] spare bytes after `len`. It writes its header, transforms the packet
//! and returns the sealed length. A layer that produces extra packets (FEC parity) hands them
//! out through [`Codec::poll_extra`], each written with the same convention as a sealed packet
//! (room for the *outer* layers is the caller's business: the caller passes the sub-slice that
//! starts at this layer's header).
//!
//! On **open**, the layer receives one received packet and returns where its inner packet lies,
//! or `None` when the packet was consumed without delivering anything (an FEC parity shard).
//! Packets rebuilt from redundancy are handed out by [`Codec::poll_recovered`]; the engine must
//! treat them as *not regular* (no window update, no RTT sample), as kcp-go does.
//!
//! Layers are `no_std`; any randomness (nonces) comes from state the caller supplied when it
//! built the layer, and time comes in as an argument.

use core::fmt;
use core::ops::Range;

use crate::time::Millis;

/// Why a codec rejected a packet. Every rejection is also counted by the layer's own stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The packet is shorter than this layer's header (plus trailer).
    Truncated,
    /// The integrity check failed: CRC mismatch (CFB modes) or authentication tag (AEAD).
    Integrity,
    /// The packet was seen before, or is older than the replay window allows.
    Replay,
    /// A header field holds a value this layer cannot accept (unknown type, bad size field,
    /// sequence number out of range).
    Malformed,
    /// The buffer handed to `seal` or `poll_extra` cannot hold the result.
    BufferTooSmall,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecError::Truncated => "packet shorter than the codec header",
            CodecError::Integrity => "integrity check failed",
            CodecError::Replay => "replayed or too old packet",
            CodecError::Malformed => "malformed codec header",
            CodecError::BufferTooSmall => "buffer too small for the sealed packet",
        })
    }
}

impl core::error::Error for CodecError {}

/// Where an [`Endpoint`](crate::endpoint::Endpoint) finds the session a packet belongs to,
/// as a layer tells it through [`Codec::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// The packet wraps an inner packet at this range (the next inner layer's packet, or the
    /// KCP datagram): the endpoint looks there for the conversation id.
    Inner(Range<usize>),
    /// The packet carries no conversation id (FEC parity): it belongs to the only session on
    /// the same address that received packets through this layer, or, with several, to the
    /// one whose latest packet's group ([`Codec::group`]) is near this packet's.
    Attach,
}

/// A packet layer between the KCP engine and the socket.
///
/// See the [module documentation](self) for the buffer convention. Implementations must never
/// panic on any input and must bound the memory they hold whatever a peer sends.
///
/// # Layers on an endpoint
///
/// An endpoint demultiplexes many sessions on one socket and never learns a layer's packet
/// format. The outermost `demux_layers` (encryption) are opened by the endpoint's own
/// instance with [`demux_open`](Self::demux_open) before the conversation id is visible; the
/// session's own instance of each of those layers then sees the opened packet through
/// [`accept_demuxed`](Self::accept_demuxed) (where per-peer state such as a replay window
/// lives). The remaining layers are asked, on the endpoint's instance, where their inner packet
/// is ([`route`](Self::route)), without changing state, and are opened by the session.
pub trait Codec {
    /// Bytes this layer writes in front of the packet it wraps.
    fn header_len(&self) -> usize;

    /// Bytes this layer appends after the packet it wraps (an AEAD tag). Zero by default.
    fn trailer_len(&self) -> usize {
        0
    }

    /// Seals one outgoing packet in place.
    ///
    /// `buf[..header_len()]` is room for this layer's header, `buf[header_len()..len]` is the
    /// inner packet, and `buf.len() >= len + trailer_len()` must hold. Returns the sealed length.
    fn seal(&mut self, buf: &mut [u8], len: usize, now: Millis) -> Result<usize, CodecError>;

    /// Seals several packets in one call, for layers that go faster on batches (interleaved
    /// CFB chains). Packet `i` occupies `buf[i * stride..]`, laid out as for
    /// [`seal`](Self::seal), with inner length `lens[i]`; on return `lens[i]` is its sealed
    /// length. Layers that produce extra packets ([`produces_extra`](Self::produces_extra))
    /// are never called this way. The default seals one packet at a time.
    fn seal_strided(
        &mut self,
        buf: &mut [u8],
        stride: usize,
        lens: &mut [usize],
        now: Millis,
    ) -> Result<(), CodecError> {
        for (i, len) in lens.iter_mut().enumerate() {
            let packet = buf
                .get_mut(i * stride..(i + 1) * stride)
                .ok_or(CodecError::BufferTooSmall)?;
            *len = self.seal(packet, *len, now)?;
        }
        Ok(())
    }

    /// Whether `seal` can queue extra packets for [`poll_extra`](Self::poll_extra) (FEC
    /// parity). Such a layer seals one packet at a time so that its extras follow the packet
    /// that produced them. `false` by default.
    fn produces_extra(&self) -> bool {
        false
    }

    /// Writes the next extra packet produced by the last `seal` (FEC parity) into `buf` with the
    /// same convention as a sealed packet, and returns its length; `None` when there is none.
    /// Callers drain this after every `seal`.
    fn poll_extra(&mut self, _buf: &mut [u8], _now: Millis) -> Option<Result<usize, CodecError>> {
        None
    }

    /// Opens one received packet in place. Returns the range of the inner packet within `buf`,
    /// or `Ok(None)` when the packet was consumed without delivering anything upward.
    fn open(&mut self, buf: &mut [u8], now: Millis) -> Result<Option<Range<usize>>, CodecError>;

    /// Copies the next packet rebuilt by the last `open` (FEC recovery) into `buf` and returns its
    /// length; `None` when there is none. Callers drain this after every `open`. Recovered
    /// packets are not regular: the engine must not take RTT samples or window updates from them.
    fn poll_recovered(&mut self, _buf: &mut [u8]) -> Option<usize> {
        None
    }

    /// Where the inner packet of `packet` lies, so an endpoint can read the conversation id
    /// before choosing the session whose instance will [`open`](Self::open) it. Must not
    /// change state (the endpoint asks its own instance, which never opens these packets);
    /// errors are for packets `open` would refuse on sight (truncated, unknown type). The
    /// default says the packet is its own inner packet (a layer without a header).
    fn route(&self, packet: &[u8]) -> Result<Route, CodecError> {
        Ok(Route::Inner(0..packet.len()))
    }

    /// The redundancy group `packet` belongs to (FEC data and parity shards), asked on an
    /// endpoint's instance like [`route`](Self::route): packets without a conversation id
    /// ([`Route::Attach`]) go to the session on the same address whose latest data is of a
    /// nearby group. Must not change state. The default: no groups.
    fn group(&self, _packet: &[u8]) -> Option<u32> {
        None
    }

    /// Told, on a session's own instance, whether the owner's receive-memory budget is spent
    /// (see [`Kcp::set_receive_limited`](crate::Kcp::set_receive_limited)): while `true`, keep
    /// no new receive-side state (an FEC layer queues no shard for recovery; data still
    /// passes). The default ignores it.
    fn set_receive_limited(&mut self, _limited: bool) {}

    /// Opens a packet on an endpoint's shared instance, before demultiplexing: it must accept
    /// a packet of any peer. A layer that keeps per-peer state (a pinned sender, a replay
    /// window) authenticates here without touching that state, and checks and advances it in
    /// the session's instance through [`accept_demuxed`](Self::accept_demuxed). The default
    /// is [`open`](Self::open).
    fn demux_open(
        &mut self,
        buf: &mut [u8],
        now: Millis,
    ) -> Result<Option<Range<usize>>, CodecError> {
        self.open(buf, now)
    }

    /// Told, on a session's own instance, about a packet the endpoint opened with
    /// [`demux_open`](Self::demux_open): `packet` is that opened packet (this layer's header
    /// still in place) and `inner` where its inner packet lies. An error drops the packet
    /// (counted as this layer's rejection). The default accepts every packet.
    fn accept_demuxed(
        &mut self,
        _packet: &[u8],
        _inner: Range<usize>,
        _now: Millis,
    ) -> Result<(), CodecError> {
        Ok(())
    }

    /// Heap bytes this instance holds now (buffers, tables, queued packets), for memory
    /// accounting; an estimate is fine. The default reports none.
    fn heap_bytes(&self) -> usize {
        0
    }

    /// The part of [`heap_bytes`](Self::heap_bytes) that grows with what peers send (received
    /// packets queued or kept, receive-side tables), which an endpoint counts against its
    /// receive budget after every datagram a session takes in: keep it cheap, and leave out
    /// what only sending holds. The default is all of `heap_bytes`.
    fn receive_heap_bytes(&self) -> usize {
        self.heap_bytes()
    }

    /// Gives back memory that only speeds things up (buffer pools, scratch space), called when
    /// the session goes idle. The default keeps everything.
    fn trim(&mut self) {}

    /// Adds this layer's counters to `into`, each to the [`LayerCounters`] field that names
    /// it, so a session or endpoint can aggregate them without knowing the layer's type
    /// ([`Session::layer_counters`](crate::Session::layer_counters)). The default adds none.
    fn add_counters(&self, _into: &mut LayerCounters) {}
}

/// The counters codec layers report ([`Codec::add_counters`]), one field each, summed over
/// a session's layers ([`Session::layer_counters`](crate::Session::layer_counters)) or an
/// endpoint's sessions. A field no layer of the stack reports stays 0. Every counter only
/// grows (wrapping at `u64::MAX`).
///
/// The `fec_*` fields are the FEC layer's (kcp-fec), the first four kcp-go's SNMP FEC
/// counters; the `crypto_*` fields are the crypto layers' (kcp-crypto: kcp-go's CFB layout,
/// the AEAD and the replay-protected modes). A custom layer adds to whichever field means
/// what it counts. New fields may be added: build one with `LayerCounters::default()`.
///
/// ```
/// use kcp_core::LayerCounters;
///
/// let mut a = LayerCounters::default();
/// a.fec_parity_shards = 3;
/// let mut b = LayerCounters::default();
/// b.fec_parity_shards = 2;
/// b.crypto_replays = 1;
/// a.add(&b);
/// assert_eq!((a.fec_parity_shards, a.crypto_replays), (5, 1));
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerCounters {
    /// Data shards rebuilt from parity and handed out (kcp-go's `FECRecovered` counts those
    /// the session then accepted:
    /// [`SessionStats::fec_recovered`](crate::SessionStats::fec_recovered)).
    pub fec_recovered_shards: u64,
    /// Rebuilt data shards whose size field was invalid, dropped (kcp-go `FECErrs`).
    pub fec_errs: u64,
    /// Parity shards received (kcp-go `FECParityShards`).
    pub fec_parity_shards: u64,
    /// Data shards evicted from the receive queue before their group could be completed
    /// (kcp-go `FECShortShards`).
    pub fec_short_shards: u64,
    /// FEC packets shorter than the FEC header, rejected.
    pub fec_truncated: u64,
    /// FEC packets longer than the largest packet the layer takes, rejected.
    pub fec_oversized: u64,
    /// Data shards whose size field disagrees with their length, rejected.
    pub fec_bad_size: u64,
    /// Packets with an FEC-range type other than data and parity, rejected.
    pub fec_unknown_type: u64,
    /// Packets whose FEC sequence number is implausibly far from the stream's, rejected.
    pub fec_seqid_jumps: u64,
    /// Shards evicted, oldest first, to keep the receive queue within its byte budget.
    pub fec_evicted_for_bytes: u64,
    /// Reconstructions deferred because they needed more work than the received bytes had
    /// earned.
    pub fec_work_refused: u64,
    /// Decoding work done, in nominal GF(2^8) multiply-accumulates.
    pub fec_decode_work: u64,
    /// Changes of the peer's FEC parameters detected but refused by the rebuild limits.
    pub fec_autotune_suppressed: u64,
    /// Shards whose type (data or parity) contradicts their position in their group under
    /// the decoder's parameters, not kept.
    pub fec_misplaced: u64,
    /// Packets sealed by a crypto layer.
    pub crypto_sealed: u64,
    /// Packets a crypto layer opened (or, on an endpoint's session, accepted) and delivered
    /// upward.
    pub crypto_opened: u64,
    /// Packets shorter than the crypto header (plus tag), dropped.
    pub crypto_truncated: u64,
    /// Packets whose CRC-32 or authentication tag did not match, dropped (kcp-go
    /// `InCsumErrors`).
    pub crypto_integrity_errors: u64,
    /// Packets the replay check dropped: seen before, older than the window, from a sender
    /// other than the session's peer, or reflected.
    pub crypto_replays: u64,
    /// `seal` calls refused (buffer too small, sequence space exhausted).
    pub crypto_seal_errors: u64,
    /// Sender keys derived because they were not cached (replay-protected mode).
    pub crypto_key_cache_misses: u64,
}

impl LayerCounters {
    /// Adds every counter of `o` to this one's (wrapping).
    pub fn add(&mut self, o: &LayerCounters) {
        // Destructured, so that a new field cannot be left out.
        let LayerCounters {
            fec_recovered_shards,
            fec_errs,
            fec_parity_shards,
            fec_short_shards,
            fec_truncated,
            fec_oversized,
            fec_bad_size,
            fec_unknown_type,
            fec_seqid_jumps,
            fec_evicted_for_bytes,
            fec_work_refused,
            fec_decode_work,
            fec_autotune_suppressed,
            fec_misplaced,
            crypto_sealed,
            crypto_opened,
            crypto_truncated,
            crypto_integrity_errors,
            crypto_replays,
            crypto_seal_errors,
            crypto_key_cache_misses,
        } = *o;
        for (a, b) in [
            (&mut self.fec_recovered_shards, fec_recovered_shards),
            (&mut self.fec_errs, fec_errs),
            (&mut self.fec_parity_shards, fec_parity_shards),
            (&mut self.fec_short_shards, fec_short_shards),
            (&mut self.fec_truncated, fec_truncated),
            (&mut self.fec_oversized, fec_oversized),
            (&mut self.fec_bad_size, fec_bad_size),
            (&mut self.fec_unknown_type, fec_unknown_type),
            (&mut self.fec_seqid_jumps, fec_seqid_jumps),
            (&mut self.fec_evicted_for_bytes, fec_evicted_for_bytes),
            (&mut self.fec_work_refused, fec_work_refused),
            (&mut self.fec_decode_work, fec_decode_work),
            (&mut self.fec_autotune_suppressed, fec_autotune_suppressed),
            (&mut self.fec_misplaced, fec_misplaced),
            (&mut self.crypto_sealed, crypto_sealed),
            (&mut self.crypto_opened, crypto_opened),
            (&mut self.crypto_truncated, crypto_truncated),
            (&mut self.crypto_integrity_errors, crypto_integrity_errors),
            (&mut self.crypto_replays, crypto_replays),
            (&mut self.crypto_seal_errors, crypto_seal_errors),
            (&mut self.crypto_key_cache_misses, crypto_key_cache_misses),
        ] {
            *a = a.wrapping_add(b);
        }
    }
}

/// Room for a layer that runs outside the endpoint: an adapter that seals datagrams after
/// they leave an [`Endpoint`](crate::endpoint::Endpoint) and opens them before they enter it
/// (kcp-tokio encrypts outside the lock its streams share, a whole batch at once).
///
/// On seal it leaves `header` bytes in front of the packet and `trailer` spare bytes after it
/// for the outside layer, and returns the length unchanged: the outside layer then seals the
/// datagram exactly as if it were this layer (its header room in front, its trailer room
/// spare). On open it expects a datagram the outside layer has already checked and opened in
/// place, left whole, and strips the room: the inner packet is `header..len - trailer`. Place
/// it outermost in a session's stack and count it among the endpoint's `demux_layers`, as
/// the layer it stands for would be; datagrams the outside layer rejects are counted with
/// [`Endpoint::handle_rejected`](crate::endpoint::Endpoint::handle_rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    header: usize,
    trailer: usize,
}

impl Reserve {
    /// Reserves `header` bytes in front of each datagram and `trailer` bytes after it.
    pub fn new(header: usize, trailer: usize) -> Reserve {
        Reserve { header, trailer }
    }
}

impl Codec for Reserve {
    fn header_len(&self) -> usize {
        self.header
    }

    fn trailer_len(&self) -> usize {
        self.trailer
    }

    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        let room = len
            .checked_add(self.trailer)
            .ok_or(CodecError::BufferTooSmall)?;
        if len < self.header || room > buf.len() {
            return Err(CodecError::BufferTooSmall);
        }
        Ok(len)
    }

    fn open(&mut self, buf: &mut [u8], _now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        match buf.len().checked_sub(self.trailer) {
            Some(end) if end >= self.header => Ok(Some(self.header..end)),
            _ => Err(CodecError::Truncated),
        }
    }
}

#[cfg(test)]
mod reserve_tests {
    use super::*;

    #[test]
    fn reserve_leaves_room_and_passes_opened_packets_through() {
        let mut r = Reserve::new(20, 4);
        let mut buf = [7u8; 64];
        // 20 bytes of room, 30 bytes of packet, 4 spare: the length is the outside layer's.
        assert_eq!(r.seal(&mut buf, 50, Millis(0)), Ok(50));
        assert_eq!(buf, [7u8; 64], "the room is left for the outside layer");
        assert_eq!(
            r.seal(&mut buf, 61, Millis(0)),
            Err(CodecError::BufferTooSmall)
        );
        assert_eq!(
            r.seal(&mut buf, 10, Millis(0)),
            Err(CodecError::BufferTooSmall)
        );
        assert_eq!(r.open(&mut buf[..33], Millis(0)), Ok(Some(20..29)));
        assert_eq!(r.open(&mut buf[..24], Millis(0)), Ok(Some(20..20)));
        assert_eq!(
            r.open(&mut buf[..23], Millis(0)),
            Err(CodecError::Truncated)
        );
    }
}
