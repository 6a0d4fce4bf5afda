//! This crate's replay-protected AEAD layer (an extension: no kcp-go version speaks it).
//!
//! Layout: `sender id (8) || sequence number (8, LE) || ciphertext || tag (16)`.
//!
//! * Every layer picks a random 8-byte sender id when it is built and numbers its packets
//!   0, 1, 2, ... The AEAD key of a sender is derived from the shared key and its id
//!   (`PBKDF2-HMAC-SHA1(key, "kcp-rs replay v1" || id, 1, key_len)`), and the AEAD nonce is
//!   `0u32 || seq (LE)`, so nonces never repeat under one key even though every peer of a
//!   kcptun deployment shares the same password, and both directions of a session use
//!   different keys.
//! * The receiver pins the first sender id that authenticates and drops packets of any other
//!   id; a sliding window of [`ReplayWindow::SIZE`] sequence numbers (RFC 6479, as WireGuard
//!   and DTLS do) drops duplicates and packets older than the window.
//!
//! Packets are authenticated with the 16-byte header as associated data.
//!
//! Until a peer is pinned, every packet with an unseen sender id costs one key derivation
//! (a few HMAC-SHA1 blocks, about a microsecond) before it can be rejected; once pinned, packets
//! of other ids are dropped without any cryptography.

use core::fmt;
use core::ops::Range;

use kcp_core::{Codec, CodecError, Millis};
use rand_core::CryptoRng;
use sha1::Sha1;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::aead::{split_sealed, Aead, AeadKind, AEAD_NONCE_LEN, TAG_LEN};
use crate::{CryptoError, CryptoStats, Pass};

/// Bytes of the replay-protected header: sender id and sequence number.
pub const REPLAY_HEADER_LEN: usize = 16;

const KDF_LABEL: &[u8] = b"kcp-rs replay v1";
const WORDS: usize = 32;

/// A sliding anti-replay window over 64-bit sequence numbers (RFC 6479 bitmap ring).
///
/// [`ReplayWindow::check`] before authenticating, [`ReplayWindow::accept`] only after the
/// packet authenticated, so forged packets never move the window.
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

    /// Records `seq` as seen, sliding the window forward if it is the newest.
    pub fn accept(&mut self, seq: u64) {
        match self.top {
            Some(top) if seq <= top => {}
            Some(top) => {
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

impl MasterKey {
    fn derive(&self, kind: AeadKind, sender: &[u8; 8]) -> Result<Aead, CryptoError> {
        let mut salt = [0u8; KDF_LABEL.len() + 8];
        let (label, id) = salt.split_at_mut(KDF_LABEL.len());
        label.copy_from_slice(KDF_LABEL);
        id.copy_from_slice(sender);
        let mut sub = [0u8; 32];
        let n = kind.key_len();
        let key = self.bytes.get(..self.len).unwrap_or(&self.bytes);
        let out = sub.get_mut(..n).ok_or(CryptoError::Unsupported)?;
        pbkdf2::pbkdf2_hmac::<Sha1>(key, &salt, 1, out);
        let aead = Aead::new(kind, out);
        sub.zeroize();
        aead
    }
}

/// Replay-protected AEAD layer, a [`Codec`] (this crate's extension, see the module docs).
///
/// Header [`REPLAY_HEADER_LEN`] bytes, trailer [`TAG_LEN`] bytes. Each instance is one
/// direction-pair of one session: it seals with its own random sender id and opens packets of
/// exactly one peer sender id (the first that authenticates). Rejected packets are counted in
/// [`CryptoStats::replays`] (duplicates, too old, or from another sender id) or
/// [`CryptoStats::integrity_errors`].
pub struct ReplayAeadCrypt {
    kind: AeadKind,
    master: MasterKey,
    sender: [u8; 8],
    tx: Aead,
    next_seq: u64,
    peer: Option<([u8; 8], Aead)>,
    window: ReplayWindow,
    stats: CryptoStats,
}

impl ReplayAeadCrypt {
    /// Builds the layer from a raw shared key ([`AeadKind::key_len`] bytes); `rng` draws the
    /// sender id.
    pub fn new<R: CryptoRng + ?Sized>(
        kind: AeadKind,
        key: &[u8],
        rng: &mut R,
    ) -> Result<ReplayAeadCrypt, CryptoError> {
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
        let mut sender = [0u8; 8];
        rng.fill_bytes(&mut sender);
        let tx = master.derive(kind, &sender)?;
        Ok(ReplayAeadCrypt {
            kind,
            master,
            sender,
            tx,
            next_seq: 0,
            peer: None,
            window: ReplayWindow::new(),
            stats: CryptoStats::default(),
        })
    }

    /// Builds the layer from kcptun's derived key, taking `pass[..key_len]`.
    pub fn from_pass<R: CryptoRng + ?Sized>(
        kind: AeadKind,
        pass: &Pass,
        rng: &mut R,
    ) -> Result<ReplayAeadCrypt, CryptoError> {
        let key = pass.as_bytes();
        ReplayAeadCrypt::new(kind, key.get(..kind.key_len()).unwrap_or(key), rng)
    }

    /// Which AEAD this is.
    pub fn kind(&self) -> AeadKind {
        self.kind
    }

    /// This layer's random sender id.
    pub fn sender_id(&self) -> [u8; 8] {
        self.sender
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

    fn seal_inner(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CodecError> {
        let total = len.checked_add(TAG_LEN).ok_or(CodecError::BufferTooSmall)?;
        let packet = buf.get_mut(..total).ok_or(CodecError::BufferTooSmall)?;
        let (rest, tag_field) = packet.split_at_mut(len);
        let (head, body) = rest
            .split_at_mut_checked(REPLAY_HEADER_LEN)
            .ok_or(CodecError::BufferTooSmall)?;
        // Sequence space exhausted after 2^64 - 1 packets: refuse rather than reuse a nonce.
        let seq = self.next_seq;
        let next = seq.checked_add(1).ok_or(CodecError::Malformed)?;
        let (id, seq_field) = head.split_at_mut(8);
        id.copy_from_slice(&self.sender);
        seq_field.copy_from_slice(&seq.to_le_bytes());
        let tag = self.tx.seal(&Self::nonce(seq), head, body)?;
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
        let mut sender = [0u8; 8];
        let mut seq = [0u8; 8];
        let (id, seq_field) = head.split_at(8);
        sender.copy_from_slice(id);
        seq.copy_from_slice(seq_field);
        let seq = u64::from_le_bytes(seq);
        if !self.window.check(seq) || self.peer.as_ref().is_some_and(|(p, _)| *p != sender) {
            self.stats.replays += 1;
            return Err(CodecError::Replay);
        }
        let nonce = Self::nonce(seq);
        let verified = match &self.peer {
            Some((_, aead)) => aead.open(&nonce, head, body, &tag),
            None => {
                let aead = self
                    .master
                    .derive(self.kind, &sender)
                    .map_err(|_| CodecError::Malformed)?;
                let r = aead.open(&nonce, head, body, &tag);
                if r.is_ok() {
                    // First authenticated packet: pin its sender for the life of this layer.
                    self.peer = Some((sender, aead));
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
}

impl Codec for ReplayAeadCrypt {
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

    fn open(&mut self, buf: &mut [u8], _now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        self.open_inner(buf).map(Some)
    }
}

impl fmt::Debug for ReplayAeadCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayAeadCrypt")
            .field("kind", &self.kind)
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
}
