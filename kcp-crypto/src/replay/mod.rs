//! This crate's replay-protected AEAD layer (an extension: no kcp-go version speaks it).
//!
//! Layout: `sender id (8) || sequence number (8, LE) || ciphertext || tag (16)`.
//!
//! * Every layer picks a random 8-byte sender id when it is built and numbers its packets
//!   from a random start below 2^62, one up per packet. The AEAD key of a sender is derived
//!   from the shared key and its id (`PBKDF2-HMAC-SHA1(key, "kcp-rs replay v1" || id, 1,
//!   key_len)`), and the AEAD nonce is `0u32 || seq (LE)`, so nonces never repeat under one
//!   key even though every peer of a kcptun deployment shares the same password, and both
//!   directions of a session use different keys. (The random start only matters if two
//!   senders ever drew the same id: their sequence ranges then still almost surely do not
//!   overlap.)
//! * The receiver pins the first sender id that it accepts and drops packets of any other id,
//!   and of its own id (a reflected packet); a sliding window of [`ReplayWindow::SIZE`]
//!   sequence numbers (RFC 6479, as WireGuard and DTLS do) drops duplicates and packets older
//!   than the window.
//!
//! Packets are authenticated with the 16-byte header as associated data.
//!
//! # On an endpoint
//!
//! A listener opens every datagram with one shared instance before it knows the session
//! ([`Codec::demux_open`]): that instance authenticates a packet of *any* sender id, with the
//! sender's derived key taken from a bounded cache ([`ReplayKey::with_demux_cache`], least
//! recently used entry evicted; only authenticated senders enter it, and every derivation is
//! counted in [`CryptoStats::key_cache_misses`]), and keeps no per-peer state. The session's
//! own instance then sees the opened packet ([`Codec::accept_demuxed`]): it pins its peer's
//! sender id on first use and checks and advances its own replay window. Each session's
//! window is its own; what an attacker can still do is in `docs/security.md`.
//!
//! # Memory
//!
//! The master key ([`ReplayKey`]) can be shared between sessions. A layer keeps its peer's
//! id, its sequence number and the 272-byte window; the derived AEAD keys it seals (and, point
//! to point, opens) with are built on first use and, with the `alloc` feature, held on the
//! heap and given back by [`Codec::trim`], so an idle session holds no key schedule.

#[cfg(feature = "alloc")]
mod demux_cache;
mod key;
mod window;

pub use key::{ReplayKey, DEFAULT_DEMUX_CACHE};
pub use window::ReplayWindow;

use core::borrow::Borrow;
use core::fmt;
use core::ops::Range;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;

#[cfg(feature = "alloc")]
use demux_cache::DemuxCache;
use kcp_core::{Codec, CodecError, LayerCounters, Millis};
use key::KeySlot;
use rand_core::CryptoRng;

use crate::aead::{split_sealed, AeadKind, AEAD_NONCE_LEN, TAG_LEN};
use crate::{CryptoError, CryptoStats, Pass};

/// Bytes of the replay-protected header: sender id and sequence number.
pub const REPLAY_HEADER_LEN: usize = 16;

/// Replay-protected AEAD layer, a [`Codec`] (this crate's extension, see the module docs).
///
/// Header [`REPLAY_HEADER_LEN`] bytes, trailer [`TAG_LEN`] bytes. Each instance is one
/// direction-pair of one session: it seals with its own random sender id and accepts packets
/// of exactly one peer sender id (the first it accepts). Rejected packets are counted in
/// [`CryptoStats::replays`] (duplicates, too old, from another sender id or reflected) or
/// [`CryptoStats::integrity_errors`].
///
/// * Point to point, [`Codec::open`] authenticates, pins and checks the window.
/// * On an endpoint, the endpoint's instance [`demux_open`](Codec::demux_open)s packets of
///   any sender (cached sender keys) and the session's instance
///   [`accept_demuxed`](Codec::accept_demuxed)s them (pin and window). Build every instance
///   from one shared [`ReplayKey`] with [`ReplayAeadCrypt::with_key`].
///
/// `K` holds the [`ReplayKey`]: owned (the default, [`ReplayAeadCrypt::new`]) or shared
/// (`Arc<ReplayKey>`, `&'static ReplayKey`).
pub struct ReplayAeadCrypt<K = ReplayKey> {
    key: K,
    sender: [u8; 8],
    next_seq: u64,
    /// Our own sender key, for sealing.
    tx: KeySlot,
    peer: Option<[u8; 8]>,
    /// The pinned peer's key, for point-to-point `open`.
    rx: KeySlot,
    window: ReplayWindow,
    #[cfg(feature = "alloc")]
    demux: Option<Box<DemuxCache>>,
    stats: CryptoStats,
}

impl ReplayAeadCrypt {
    /// Builds a layer of its own from a raw shared key ([`AeadKind::key_len`] bytes); `rng`
    /// draws the sender id and first sequence number.
    pub fn new<R: CryptoRng + ?Sized>(
        kind: AeadKind,
        key: &[u8],
        rng: &mut R,
    ) -> Result<ReplayAeadCrypt, CryptoError> {
        Ok(ReplayAeadCrypt::with_key(ReplayKey::new(kind, key)?, rng))
    }

    /// Builds a layer of its own from kcptun's derived key, taking `pass[..key_len]`.
    pub fn from_pass<R: CryptoRng + ?Sized>(
        kind: AeadKind,
        pass: &Pass,
        rng: &mut R,
    ) -> Result<ReplayAeadCrypt, CryptoError> {
        Ok(ReplayAeadCrypt::with_key(
            ReplayKey::from_pass(kind, pass),
            rng,
        ))
    }
}

impl<K: Borrow<ReplayKey>> ReplayAeadCrypt<K> {
    /// A layer over a (shared) key; `rng` (a CSPRNG) draws the sender id and the first
    /// sequence number. Cheap: no key derivation happens until the first packet.
    pub fn with_key<R: CryptoRng + ?Sized>(key: K, rng: &mut R) -> ReplayAeadCrypt<K> {
        let mut sender = [0u8; 8];
        rng.fill_bytes(&mut sender);
        // Below 2^62, so that at least 2^62 packets can follow before the space runs out.
        let next_seq = rng.next_u64() >> 2;
        ReplayAeadCrypt {
            key,
            sender,
            next_seq,
            tx: KeySlot::default(),
            peer: None,
            rx: KeySlot::default(),
            window: ReplayWindow::new(),
            #[cfg(feature = "alloc")]
            demux: None,
            stats: CryptoStats::default(),
        }
    }

    /// Which AEAD this is.
    pub fn kind(&self) -> AeadKind {
        self.key.borrow().kind
    }

    /// This layer's random sender id.
    pub fn sender_id(&self) -> [u8; 8] {
        self.sender
    }

    /// The peer sender id this layer pinned, if it accepted a packet yet.
    pub fn peer_id(&self) -> Option<[u8; 8]> {
        self.peer
    }

    /// Counters since construction.
    pub fn stats(&self) -> &CryptoStats {
        &self.stats
    }

    fn nonce(seq: u64) -> [u8; AEAD_NONCE_LEN] {
        let mut n = [0u8; AEAD_NONCE_LEN];
        n[4..].copy_from_slice(&seq.to_le_bytes());
        n
    }

    fn parse(head: &[u8]) -> ([u8; 8], u64) {
        let mut sender = [0u8; 8];
        let mut seq = [0u8; 8];
        for (d, s) in sender.iter_mut().chain(seq.iter_mut()).zip(head) {
            *d = *s;
        }
        (sender, u64::from_le_bytes(seq))
    }

    /// The per-peer checks: our peer (or none pinned yet), not ourselves, inside the window.
    fn admissible(&mut self, sender: [u8; 8], seq: u64) -> Result<(), CodecError> {
        let foreign = sender == self.sender || self.peer.is_some_and(|p| p != sender);
        if foreign || !self.window.check(seq) {
            self.stats.replays += 1;
            return Err(CodecError::Replay);
        }
        Ok(())
    }

    fn seal_inner(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CodecError> {
        let total = len.checked_add(TAG_LEN).ok_or(CodecError::BufferTooSmall)?;
        let packet = buf.get_mut(..total).ok_or(CodecError::BufferTooSmall)?;
        let (rest, tag_field) = packet.split_at_mut(len);
        let (head, body) = rest
            .split_at_mut_checked(REPLAY_HEADER_LEN)
            .ok_or(CodecError::BufferTooSmall)?;
        // Sequence space exhausted: refuse rather than reuse a nonce.
        let seq = self.next_seq;
        let next = seq.checked_add(1).ok_or(CodecError::Malformed)?;
        if self.tx.get().is_none() {
            self.stats.key_cache_misses += 1;
            self.tx.set(self.key.borrow().derive(&self.sender)?);
        }
        let tx = self.tx.get().ok_or(CodecError::Malformed)?;
        let (id, seq_field) = head.split_at_mut(8);
        id.copy_from_slice(&self.sender);
        seq_field.copy_from_slice(&seq.to_le_bytes());
        let tag = tx.seal(&Self::nonce(seq), head, body)?;
        tag_field.copy_from_slice(&tag);
        self.next_seq = next;
        Ok(total)
    }

    fn open_inner(&mut self, buf: &mut [u8]) -> Result<Range<usize>, CodecError> {
        let len = buf.len();
        let Some((head, body, tag)) = split_sealed(buf, REPLAY_HEADER_LEN) else {
            self.stats.truncated += 1;
            return Err(CodecError::Truncated);
        };
        let (sender, seq) = Self::parse(head);
        self.admissible(sender, seq)?;
        let nonce = Self::nonce(seq);
        let key = self.key.borrow();
        let verified = match self.peer {
            Some(peer) => {
                if self.rx.get().is_none() {
                    self.stats.key_cache_misses += 1;
                    self.rx.set(key.derive(&peer)?);
                }
                match self.rx.get() {
                    Some(aead) => aead.open(&nonce, head, body, &tag),
                    None => Err(CodecError::Malformed),
                }
            }
            None => {
                self.stats.key_cache_misses += 1;
                let aead = key.derive(&sender)?;
                let r = aead.open(&nonce, head, body, &tag);
                if r.is_ok() {
                    // First authenticated packet: pin its sender for the life of this layer.
                    self.peer = Some(sender);
                    self.rx.set(aead);
                }
                r
            }
        };
        if let Err(e) = verified {
            self.stats.integrity_errors += 1;
            return Err(e);
        }
        self.window.accept(seq);
        self.stats.opened += 1;
        Ok(REPLAY_HEADER_LEN..len - TAG_LEN)
    }

    fn demux_open_inner(&mut self, buf: &mut [u8]) -> Result<Range<usize>, CodecError> {
        let len = buf.len();
        let Some((head, body, tag)) = split_sealed(buf, REPLAY_HEADER_LEN) else {
            self.stats.truncated += 1;
            return Err(CodecError::Truncated);
        };
        let (sender, seq) = Self::parse(head);
        let nonce = Self::nonce(seq);
        let key = self.key.borrow();
        #[cfg(feature = "alloc")]
        let capacity = key.cache;
        #[cfg(feature = "alloc")]
        let cached = if capacity > 0 {
            let cache = self
                .demux
                .get_or_insert_with(|| Box::new(DemuxCache::new(capacity)));
            let found = cache
                .find(&sender)
                .map(|(idx, aead)| (idx, aead.open(&nonce, head, body, &tag)));
            // Only an authenticated packet makes its sender recent: forged packets under a
            // cached id must not keep that entry from being evicted.
            if let Some((idx, Ok(()))) = found {
                cache.touch(idx);
            }
            found.map(|(_, r)| r)
        } else {
            None
        };
        #[cfg(not(feature = "alloc"))]
        let cached: Option<Result<(), CodecError>> = None;
        let verified = match cached {
            Some(r) => r,
            None => {
                self.stats.key_cache_misses += 1;
                let aead = key.derive(&sender)?;
                let r = aead.open(&nonce, head, body, &tag);
                #[cfg(feature = "alloc")]
                if r.is_ok() {
                    if let Some(cache) = self.demux.as_mut() {
                        cache.insert(sender, aead, capacity);
                    }
                }
                r
            }
        };
        if let Err(e) = verified {
            self.stats.integrity_errors += 1;
            return Err(e);
        }
        self.stats.opened += 1;
        Ok(REPLAY_HEADER_LEN..len - TAG_LEN)
    }
}

impl<K: Borrow<ReplayKey>> Codec for ReplayAeadCrypt<K> {
    fn header_len(&self) -> usize {
        REPLAY_HEADER_LEN
    }

    fn trailer_len(&self) -> usize {
        TAG_LEN
    }

    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        let r = self.seal_inner(buf, len);
        match r {
            Ok(_) => self.stats.sealed += 1,
            Err(_) => self.stats.seal_errors += 1,
        }
        r
    }

    /// Point to point: authenticates, pins the first sender that authenticates, checks and
    /// advances the window.
    fn open(&mut self, buf: &mut [u8], _now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        self.open_inner(buf).map(Some)
    }

    /// On an endpoint's shared instance: authenticates a packet of any sender id with that
    /// sender's key (from the bounded cache, or derived and, once it authenticated, cached),
    /// without pinning anything or touching a window.
    fn demux_open(
        &mut self,
        buf: &mut [u8],
        _now: Millis,
    ) -> Result<Option<Range<usize>>, CodecError> {
        self.demux_open_inner(buf).map(Some)
    }

    /// On a session's instance, for a packet the endpoint's instance authenticated: drops it
    /// ([`CodecError::Replay`], counted) if it is from a sender other than the pinned peer,
    /// carries this layer's own sender id, or is a duplicate or older than the window;
    /// otherwise pins its sender (first packet) and records its sequence number.
    fn accept_demuxed(
        &mut self,
        packet: &[u8],
        _inner: Range<usize>,
        _now: Millis,
    ) -> Result<(), CodecError> {
        let Some(head) = packet
            .get(..REPLAY_HEADER_LEN)
            .filter(|_| packet.len() >= REPLAY_HEADER_LEN + TAG_LEN)
        else {
            self.stats.truncated += 1;
            return Err(CodecError::Truncated);
        };
        let (sender, seq) = Self::parse(head);
        self.admissible(sender, seq)?;
        self.peer.get_or_insert(sender);
        self.window.accept(seq);
        self.stats.opened += 1;
        Ok(())
    }

    /// The derived key schedules built on first use (with `alloc`) and, on an endpoint's
    /// instance, the sender-key cache; not the layer itself nor a shared [`ReplayKey`].
    fn heap_bytes(&self) -> usize {
        #[cfg(feature = "alloc")]
        let cache = self.demux.as_ref().map_or(0, |c| c.heap_bytes());
        #[cfg(not(feature = "alloc"))]
        let cache = 0;
        self.tx.heap_bytes() + self.rx.heap_bytes() + cache
    }

    /// Drops the derived key schedules and the sender-key cache; they are rebuilt on demand
    /// (one key derivation each, counted in [`CryptoStats::key_cache_misses`]). The pinned
    /// peer and the window stay.
    fn trim(&mut self) {
        self.tx.clear();
        self.rx.clear();
        #[cfg(feature = "alloc")]
        {
            self.demux = None;
        }
    }

    fn add_counters(&self, into: &mut LayerCounters) {
        self.stats.add_counters(into);
    }
}

impl<K: Borrow<ReplayKey>> fmt::Debug for ReplayAeadCrypt<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayAeadCrypt")
            .field("kind", &self.kind())
            .field("next_seq", &self.next_seq)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
