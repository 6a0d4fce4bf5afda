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

use core::borrow::Borrow;
use core::fmt;
use core::ops::Range;

#[cfg(feature = "alloc")]
use alloc::{boxed::Box, vec::Vec};

use kcp_core::{Codec, CodecError, Millis};
use rand_core::CryptoRng;
use sha1::Sha1;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::aead::{split_sealed, Aead, AeadKind, AEAD_NONCE_LEN, TAG_LEN};
use crate::{CryptoError, CryptoStats, Pass};

/// Bytes of the replay-protected header: sender id and sequence number.
pub const REPLAY_HEADER_LEN: usize = 16;

/// How many sender keys an endpoint's shared instance keeps by default
/// ([`ReplayKey::with_demux_cache`]).
pub const DEFAULT_DEMUX_CACHE: usize = 256;

const KDF_LABEL: &[u8] = b"kcp-rs replay v1";
const WORDS: usize = 32;

/// A sliding anti-replay window over 64-bit sequence numbers (RFC 6479 bitmap ring, 272
/// bytes).
///
/// Semantics, exactly (with `top` the highest sequence number accepted so far):
///
/// * [`check(s)`](Self::check) is `true` iff nothing was accepted yet, or `s > top`, or
///   `top - s < SIZE` and `s` was not accepted before.
/// * [`accept(s)`](Self::accept) records `s` if `check`'s window would still hold it (nothing
///   accepted yet, `s > top`, or `top - s < SIZE`), raising `top` to `s` if it is higher;
///   sequence numbers older than the window are ignored (they could never pass `check`).
///
/// Call `check` before authenticating and `accept` only after the packet authenticated, so
/// that forged packets never move the window.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    top: Option<u64>,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// How far behind the highest accepted sequence number a packet may be and still be
    /// accepted (once): 1984 packets.
    pub const SIZE: u64 = ((WORDS - 1) * 64) as u64;

    /// A window that has seen nothing.
    pub const fn new() -> ReplayWindow {
        ReplayWindow {
            top: None,
            bits: [0; WORDS],
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        (((seq / 64) % WORDS as u64) as usize, 1u64 << (seq % 64))
    }

    /// The highest sequence number accepted so far.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    /// Whether `seq` is new: not seen before and not older than the window.
    pub fn check(&self, seq: u64) -> bool {
        let Some(top) = self.top else { return true };
        if seq > top {
            return true;
        }
        if top - seq >= Self::SIZE {
            return false;
        }
        let (word, bit) = Self::slot(seq);
        self.bits.get(word).is_some_and(|w| w & bit == 0)
    }

    /// Records `seq` as seen, sliding the window forward if it is the newest. A sequence
    /// number older than the window is ignored: its bit would alias a newer one's.
    pub fn accept(&mut self, seq: u64) {
        match self.top {
            Some(top) if seq <= top => {
                if top - seq >= Self::SIZE {
                    return;
                }
            }
            Some(top) => {
                // Clear the words the window slides over (at most the whole ring): they
                // held sequence numbers that are now too old, and hold none of the new ones.
                let steps = (seq / 64 - top / 64).min(WORDS as u64);
                for i in 1..=steps {
                    let (word, _) = Self::slot(top.wrapping_add(i * 64));
                    if let Some(w) = self.bits.get_mut(word) {
                        *w = 0;
                    }
                }
                self.top = Some(seq);
            }
            None => {
                self.bits = [0; WORDS];
                self.top = Some(seq);
            }
        }
        let (word, bit) = Self::slot(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= bit;
        }
    }
}

#[derive(Zeroize, ZeroizeOnDrop)]
struct MasterKey {
    bytes: [u8; 32],
    len: usize,
}

/// The immutable part of a [`ReplayAeadCrypt`], shared by every session of an endpoint: the
/// AEAD kind, the master key every sender's key is derived from, and how many sender keys
/// the endpoint's shared instance caches. 48 bytes; key material is zeroized on drop.
///
/// ```
/// use std::sync::Arc;
/// use kcp_core::{Codec, Millis};
/// use kcp_crypto::{AeadKind, Pass, ReplayAeadCrypt, ReplayKey, REPLAY_HEADER_LEN, TAG_LEN};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng {
/// #     type Error = core::convert::Infallible;
/// #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
/// #         self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15); Ok(self.0)
/// #     }
/// #     fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
/// #         for b in dst { *b = (self.try_next_u64()? >> 56) as u8; } Ok(())
/// #     }
/// # }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut os_rng = Rng(0); // use a real CSPRNG (for example getrandom's) in production
///
/// // Once per endpoint.
/// let pass = Pass::derive(b"it's a secrect");
/// let shared = Arc::new(ReplayKey::from_pass(AeadKind::Aes128Gcm, &pass).with_demux_cache(64));
///
/// // Once per session (and once for the endpoint's own, shared instance): a random sender id.
/// let mut client = ReplayAeadCrypt::with_key(Arc::clone(&shared), &mut os_rng);
/// let mut endpoint = ReplayAeadCrypt::with_key(Arc::clone(&shared), &mut os_rng);
/// let mut session = ReplayAeadCrypt::with_key(Arc::clone(&shared), &mut os_rng);
///
/// let mut buf = [0u8; 64];
/// let h = REPLAY_HEADER_LEN;
/// buf[h..h + 2].copy_from_slice(b"hi");
/// let n = client.seal(&mut buf, h + 2, Millis(0)).unwrap();
/// let captured = buf;
///
/// // The endpoint authenticates any sender; the session checks its peer and window.
/// let inner = endpoint.demux_open(&mut buf[..n], Millis(0)).unwrap().unwrap();
/// assert_eq!(&buf[inner.clone()], b"hi");
/// session.accept_demuxed(&buf[..n], inner, Millis(0)).unwrap();
///
/// // The same datagram again authenticates, but the session's window refuses it.
/// let mut again = captured;
/// let inner = endpoint.demux_open(&mut again[..n], Millis(0)).unwrap().unwrap();
/// assert!(session.accept_demuxed(&again[..n], inner, Millis(0)).is_err());
/// assert_eq!(session.stats().replays, 1);
/// ```
pub struct ReplayKey {
    kind: AeadKind,
    master: MasterKey,
    cache: usize,
}

impl ReplayKey {
    /// A shared key from a raw key ([`AeadKind::key_len`] bytes).
    pub fn new(kind: AeadKind, key: &[u8]) -> Result<ReplayKey, CryptoError> {
        let n = kind.key_len();
        if key.len() != n {
            return Err(CryptoError::BadKeyLength {
                min: n,
                max: n,
                got: key.len(),
            });
        }
        let mut master = MasterKey {
            bytes: [0; 32],
            len: n,
        };
        for (d, s) in master.bytes.iter_mut().zip(key) {
            *d = *s;
        }
        Ok(ReplayKey {
            kind,
            master,
            cache: DEFAULT_DEMUX_CACHE,
        })
    }

    /// A shared key from kcptun's derived key, taking `pass[..key_len]`.
    pub fn from_pass(kind: AeadKind, pass: &Pass) -> ReplayKey {
        let bytes = pass.as_bytes();
        let n = kind.key_len().min(bytes.len());
        let mut master = MasterKey {
            bytes: [0; 32],
            len: n,
        };
        for (d, s) in master.bytes.iter_mut().zip(bytes.iter().take(n)) {
            *d = *s;
        }
        ReplayKey {
            kind,
            master,
            cache: DEFAULT_DEMUX_CACHE,
        }
    }

    /// Sets how many sender keys an endpoint's shared instance keeps (default
    /// [`DEFAULT_DEMUX_CACHE`]); 0 derives the key for every packet. Each entry holds one
    /// key schedule (about 540 bytes), allocated as senders appear. Size it to the number of
    /// peers that send at once: beyond that, packets of evicted senders each cost a
    /// derivation (one HMAC-SHA1 pass and a key schedule; measured about 0.5 µs on top of the
    /// 0.4 µs a 100-byte packet takes with a cached key, bench `replay-demux-open`). Needs the
    /// `alloc` feature; without it every packet is derived.
    pub fn with_demux_cache(mut self, entries: usize) -> ReplayKey {
        self.cache = entries;
        self
    }

    /// Which AEAD this is.
    pub fn kind(&self) -> AeadKind {
        self.kind
    }

    /// How many sender keys an endpoint's shared instance keeps.
    pub fn demux_cache(&self) -> usize {
        self.cache
    }

    /// The AEAD key of `sender`.
    fn derive(&self, sender: &[u8; 8]) -> Result<Aead, CodecError> {
        let mut salt = [0u8; KDF_LABEL.len() + 8];
        let (label, id) = salt.split_at_mut(KDF_LABEL.len());
        label.copy_from_slice(KDF_LABEL);
        id.copy_from_slice(sender);
        let mut sub = [0u8; 32];
        let n = self.kind.key_len();
        let key = self
            .master
            .bytes
            .get(..self.master.len)
            .unwrap_or(&self.master.bytes);
        let out = sub.get_mut(..n).ok_or(CodecError::Malformed)?;
        pbkdf2::pbkdf2_hmac::<Sha1>(key, &salt, 1, out);
        let aead = Aead::new(self.kind, out);
        sub.zeroize();
        aead.map_err(|_| CodecError::Malformed)
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayKey")
            .field("kind", &self.kind)
            .field("demux_cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// A derived AEAD key built on first use: on the heap with `alloc` (so [`Codec::trim`] can
/// give it back and an idle layer stays small), inline without.
#[derive(Default)]
struct KeySlot {
    #[cfg(feature = "alloc")]
    key: Option<Box<Aead>>,
    #[cfg(not(feature = "alloc"))]
    key: Option<Aead>,
}

impl KeySlot {
    fn get(&self) -> Option<&Aead> {
        #[cfg(feature = "alloc")]
        {
            self.key.as_deref()
        }
        #[cfg(not(feature = "alloc"))]
        {
            self.key.as_ref()
        }
    }

    fn set(&mut self, aead: Aead) {
        #[cfg(feature = "alloc")]
        {
            self.key = Some(Box::new(aead));
        }
        #[cfg(not(feature = "alloc"))]
        {
            self.key = Some(aead);
        }
    }

    fn clear(&mut self) {
        self.key = None;
    }

    fn heap_bytes(&self) -> usize {
        #[cfg(feature = "alloc")]
        {
            self.key
                .as_ref()
                .map_or(0, |_| core::mem::size_of::<Aead>())
        }
        #[cfg(not(feature = "alloc"))]
        {
            0
        }
    }
}

/// An endpoint instance's cache of sender keys: least recently used out, only authenticated
/// senders in, and only an authenticated packet makes an entry recent. Lookups, refreshes and
/// evictions are O(1): entries are found through an open-addressing table (linear probing, at
/// most half full, so a miss probes a few slots; the ids in it are random values of
/// authenticated senders, so a forger cannot build long probe runs) and kept in a list from
/// most to least recently used.
#[cfg(feature = "alloc")]
struct DemuxCache {
    entries: Vec<CacheEntry>,
    /// `index + 1` of the entry whose id hashes here (or follows a run that does); 0: free.
    table: Vec<u32>,
    /// Most and least recently used entries (`NIL` when empty).
    head: u32,
    tail: u32,
}

#[cfg(feature = "alloc")]
struct CacheEntry {
    id: [u8; 8],
    key: Box<Aead>,
    /// Neighbours in the recency list: `prev` more recent, `next` less.
    prev: u32,
    next: u32,
}

#[cfg(feature = "alloc")]
const NIL: u32 = u32::MAX;

#[cfg(feature = "alloc")]
impl DemuxCache {
    fn new(capacity: usize) -> DemuxCache {
        DemuxCache {
            // Entries are 24 bytes (the key schedules are boxed, so they never move and
            // leave no copies behind); reserving all of them up front avoids regrowth.
            entries: Vec::with_capacity(capacity),
            table: alloc::vec![0; (2 * capacity).next_power_of_two().max(2)],
            head: NIL,
            tail: NIL,
        }
    }

    fn home(&self, id: &[u8; 8]) -> usize {
        let h = u64::from_le_bytes(*id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & (self.table.len() - 1)
    }

    /// The table position holding `id`'s entry, if cached.
    fn position(&self, id: &[u8; 8]) -> Option<usize> {
        let mask = self.table.len() - 1;
        let mut i = self.home(id);
        // The table is at most half full: a free slot ends every probe.
        for _ in 0..self.table.len() {
            let t = *self.table.get(i)?;
            if t == 0 {
                return None;
            }
            if self
                .entries
                .get(t as usize - 1)
                .is_some_and(|e| e.id == *id)
            {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The entry of `id`, without making it recent (see [`touch`](Self::touch)).
    fn find(&self, id: &[u8; 8]) -> Option<(usize, &Aead)> {
        let pos = self.position(id)?;
        let idx = *self.table.get(pos)? as usize - 1;
        Some((idx, &self.entries.get(idx)?.key))
    }

    fn unlink(&mut self, idx: u32) {
        let Some(e) = self.entries.get(idx as usize) else {
            return;
        };
        let (prev, next) = (e.prev, e.next);
        match self.entries.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.entries.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, idx: u32) {
        let old = self.head;
        if let Some(e) = self.entries.get_mut(idx as usize) {
            e.prev = NIL;
            e.next = old;
        }
        match self.entries.get_mut(old as usize) {
            Some(o) => o.prev = idx,
            None => self.tail = idx,
        }
        self.head = idx;
    }

    /// Makes entry `idx` the most recently used: call it once its packet authenticated.
    fn touch(&mut self, idx: usize) {
        if self.head != idx as u32 {
            self.unlink(idx as u32);
            self.push_front(idx as u32);
        }
    }

    fn table_insert(&mut self, id: &[u8; 8], idx: usize) {
        let mask = self.table.len() - 1;
        let mut i = self.home(id);
        for _ in 0..self.table.len() {
            match self.table.get_mut(i) {
                Some(t) if *t == 0 => {
                    *t = idx as u32 + 1;
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Frees table position `pos`, moving later entries of its probe run back (linear
    /// probing's deletion without tombstones).
    fn table_remove(&mut self, mut pos: usize) {
        let mask = self.table.len() - 1;
        if let Some(t) = self.table.get_mut(pos) {
            *t = 0;
        }
        let mut j = pos;
        loop {
            j = (j + 1) & mask;
            let t = self.table.get(j).copied().unwrap_or(0);
            if t == 0 {
                return;
            }
            let Some(home) = self.entries.get(t as usize - 1).map(|e| self.home(&e.id)) else {
                return;
            };
            // The entry at `j` stays if its home lies cyclically in (pos, j].
            let stays = if pos <= j {
                pos < home && home <= j
            } else {
                pos < home || home <= j
            };
            if !stays {
                if let Some(p) = self.table.get_mut(pos) {
                    *p = t;
                }
                if let Some(q) = self.table.get_mut(j) {
                    *q = 0;
                }
                pos = j;
            }
        }
    }

    /// Adds an authenticated sender's key as the most recently used, evicting the least
    /// recently used entry when full.
    fn insert(&mut self, id: [u8; 8], key: Aead, capacity: usize) {
        let entry = CacheEntry {
            id,
            key: Box::new(key),
            prev: NIL,
            next: NIL,
        };
        let idx = if self.entries.len() < capacity {
            self.entries.push(entry);
            self.entries.len() - 1
        } else {
            let victim = self.tail as usize;
            let Some(old_id) = self.entries.get(victim).map(|e| e.id) else {
                return;
            };
            if let Some(pos) = self.position(&old_id) {
                self.table_remove(pos);
            }
            self.unlink(victim as u32);
            if let Some(e) = self.entries.get_mut(victim) {
                *e = entry;
            }
            victim
        };
        self.table_insert(&id, idx);
        self.push_front(idx as u32);
    }

    fn heap_bytes(&self) -> usize {
        core::mem::size_of::<DemuxCache>()
            + self.entries.capacity() * core::mem::size_of::<CacheEntry>()
            + self.table.capacity() * core::mem::size_of::<u32>()
            + self.entries.len() * core::mem::size_of::<Aead>()
    }
}

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

    fn visit_counters(&self, visit: &mut dyn FnMut(&'static str, u64)) {
        self.stats.visit(visit);
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

#[cfg(test)]
mod tests {
    use super::ReplayWindow;

    #[test]
    fn window_accepts_each_sequence_once() {
        let mut w = ReplayWindow::new();
        for s in [5u64, 3, 4, 10, 6] {
            assert!(w.check(s), "{s} is new");
            w.accept(s);
            assert!(!w.check(s), "{s} is a replay");
        }
        assert!(w.check(0));
    }

    #[test]
    fn window_rejects_too_old_and_keeps_recent() {
        let mut w = ReplayWindow::new();
        w.accept(0);
        w.accept(ReplayWindow::SIZE + 100);
        assert!(!w.check(0));
        assert!(!w.check(99));
        assert!(w.check(101));
        w.accept(200);
        assert!(!w.check(200));
        w.accept(u64::MAX - 1);
        assert!(w.check(u64::MAX));
        assert!(!w.check(200), "far behind the new top");
    }

    #[test]
    fn window_big_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new();
        for s in 0..64 * 40 {
            w.accept(s);
        }
        let top = 64 * 40 - 1;
        w.accept(top + 64 * 40);
        for s in (top + 64 * 40 - ReplayWindow::SIZE + 1)..(top + 64 * 40) {
            assert!(w.check(s), "{s} never seen");
        }
    }

    #[test]
    fn accepting_a_too_old_number_does_not_mark_a_newer_one() {
        // 5000 - 2000 shares its ring bit with 5000 + 48: recording it would make that
        // future number look like a replay.
        let mut w = ReplayWindow::new();
        w.accept(5000);
        w.accept(3000);
        assert!(w.check(5048));
        assert_eq!(w.top(), Some(5000));
    }

    #[cfg(feature = "alloc")]
    mod demux_cache {
        use super::super::{AeadKind, DemuxCache, ReplayKey};
        use alloc::vec::Vec;

        fn id(n: u64) -> [u8; 8] {
            // Spread like random ids, with some sharing a home slot.
            (n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (n << 7)).to_le_bytes()
        }

        /// The cache against a plain list kept in recency order: same contents, same
        /// evictions, through thousands of inserts, lookups and refreshes.
        #[test]
        fn matches_a_reference_lru_and_finds_every_entry() {
            let key = ReplayKey::new(AeadKind::Aes128Gcm, &[7u8; 16]).unwrap();
            for cap in [1usize, 2, 3, 16, 64] {
                let mut c = DemuxCache::new(cap);
                let mut model: Vec<[u8; 8]> = Vec::new(); // most recent first
                let mut x = 1u64;
                for step in 0..4_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let n = x % (3 * cap as u64 + 2);
                    let i = id(n);
                    let found = c.find(&i).map(|(idx, _)| idx);
                    assert_eq!(found.is_some(), model.contains(&i), "cap {cap} step {step}");
                    match found {
                        // Refresh only some hits (an authenticated packet), not all.
                        Some(idx) if step % 3 != 0 => {
                            c.touch(idx);
                            model.retain(|m| *m != i);
                            model.insert(0, i);
                        }
                        Some(_) => {}
                        None => {
                            c.insert(i, key.derive(&[1; 8]).unwrap(), cap);
                            model.insert(0, i);
                            model.truncate(cap);
                        }
                    }
                    for m in &model {
                        assert!(c.find(m).is_some(), "cap {cap} step {step}: lost an entry");
                    }
                    assert_eq!(c.entries.len(), model.len());
                }
            }
        }

        /// A lookup that is not followed by `touch` (a forged packet under a cached id) leaves
        /// the entry the least recently used: it is the one evicted.
        #[test]
        fn a_lookup_alone_does_not_make_an_entry_recent() {
            let key = ReplayKey::new(AeadKind::Aes128Gcm, &[7u8; 16]).unwrap();
            let mut c = DemuxCache::new(2);
            c.insert(id(1), key.derive(&[1; 8]).unwrap(), 2);
            c.insert(id(2), key.derive(&[1; 8]).unwrap(), 2);
            assert!(c.find(&id(1)).is_some());
            c.insert(id(3), key.derive(&[1; 8]).unwrap(), 2);
            assert!(
                c.find(&id(1)).is_none(),
                "the looked-up but unauthenticated entry goes"
            );
            assert!(c.find(&id(2)).is_some() && c.find(&id(3)).is_some());
        }
    }
}
