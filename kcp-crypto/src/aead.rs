//! Authenticated modes: upstream kcp-go's AEAD layout (AES-128-GCM, ChaCha20-Poly1305).

use core::fmt;
use core::ops::Range;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes128Gcm;
use chacha20poly1305::ChaCha20Poly1305;
use kcp_core::{Codec, CodecError, Millis};
use rand_core::CryptoRng;

use crate::{CryptoError, CryptoStats, NonceGen, Pass};

/// Bytes of an AEAD authentication tag (both supported AEADs).
pub const TAG_LEN: usize = 16;
/// Bytes of an AEAD nonce (both supported AEADs).
pub const AEAD_NONCE_LEN: usize = 12;

/// Which AEAD an authenticated layer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadKind {
    /// `aes-128-gcm`: AES-128-GCM keyed with kcptun's `pass[0..16]`, as upstream kcp-go
    /// (v5.6.49 and later) and kcptun (2025 and later) do.
    Aes128Gcm,
    /// `chacha20-poly1305`: ChaCha20-Poly1305 keyed with `pass[0..32]`. Upstream kcp-go's
    /// `NewAEADCrypt` accepts any AEAD, so a kcp-go peer built with
    /// `NewAEADCrypt(chacha20poly1305.New(pass))` speaks this layout; kcptun has no flag for it.
    ChaCha20Poly1305,
}

impl AeadKind {
    /// Parses `"aes-128-gcm"` or `"chacha20-poly1305"`.
    pub fn from_name(name: &str) -> Result<AeadKind, CryptoError> {
        match name {
            "aes-128-gcm" => Ok(AeadKind::Aes128Gcm),
            "chacha20-poly1305" => Ok(AeadKind::ChaCha20Poly1305),
            _ => Err(CryptoError::UnknownCipher),
        }
    }

    /// The name [`AeadKind::from_name`] accepts.
    pub const fn name(self) -> &'static str {
        match self {
            AeadKind::Aes128Gcm => "aes-128-gcm",
            AeadKind::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Key length in bytes (the slice of kcptun's `pass` it takes).
    pub const fn key_len(self) -> usize {
        match self {
            AeadKind::Aes128Gcm => 16,
            AeadKind::ChaCha20Poly1305 => 32,
        }
    }
}

impl fmt::Display for AeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A keyed AEAD; both RustCrypto types zeroize their keys on drop.
// Boxing the larger GCM state would need an allocator, which this crate must not require.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Aead {
    Gcm(Aes128Gcm),
    ChaCha(ChaCha20Poly1305),
}

impl Aead {
    pub(crate) fn new(kind: AeadKind, key: &[u8]) -> Result<Aead, CryptoError> {
        let n = kind.key_len();
        let bad = CryptoError::BadKeyLength {
            min: n,
            max: n,
            got: key.len(),
        };
        if key.len() != n {
            return Err(bad);
        }
        Ok(match kind {
            AeadKind::Aes128Gcm => Aead::Gcm(Aes128Gcm::new_from_slice(key).map_err(|_| bad)?),
            AeadKind::ChaCha20Poly1305 => {
                Aead::ChaCha(ChaCha20Poly1305::new_from_slice(key).map_err(|_| bad)?)
            }
        })
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; AEAD_NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CodecError> {
        let tag = match self {
            Aead::Gcm(a) => a.encrypt_inout_detached(&(*nonce).into(), ad, buf.into()),
            Aead::ChaCha(a) => a.encrypt_inout_detached(&(*nonce).into(), ad, buf.into()),
        }
        .map_err(|_| CodecError::BufferTooSmall)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts `buf` in place if `tag` authenticates it; on failure `buf` is unspecified.
    pub(crate) fn open(
        &self,
        nonce: &[u8; AEAD_NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CodecError> {
        match self {
            Aead::Gcm(a) => {
                a.decrypt_inout_detached(&(*nonce).into(), ad, buf.into(), &(*tag).into())
            }
            Aead::ChaCha(a) => {
                a.decrypt_inout_detached(&(*nonce).into(), ad, buf.into(), &(*tag).into())
            }
        }
        .map_err(|_| CodecError::Integrity)
    }
}

/// Splits a sealed packet into header, body and tag, or `None` if it is too short.
pub(crate) fn split_sealed(
    buf: &mut [u8],
    header_len: usize,
) -> Option<(&mut [u8], &mut [u8], [u8; TAG_LEN])> {
    let body_end = buf.len().checked_sub(TAG_LEN)?;
    let (rest, tag) = buf.split_at_mut_checked(body_end)?;
    let (head, body) = rest.split_at_mut_checked(header_len)?;
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag);
    Some((head, body, t))
}

/// Upstream kcp-go's authenticated layout, a [`Codec`]: `nonce (12, random) || ciphertext ||
/// tag (16)`, no CRC, no associated data.
///
/// Header [`AEAD_NONCE_LEN`] bytes, trailer [`TAG_LEN`] bytes. Wire-compatible with upstream
/// kcp-go's `NewAESGCMCrypt(pass[:16])` (kcptun `-crypt aes-128-gcm`), **not** with v5.6.1,
/// which has no AEAD mode. Authenticates every byte but, like kcp-go, does not detect replays:
/// see [`crate::ReplayAeadCrypt`] for that.
pub struct AeadCrypt {
    kind: AeadKind,
    aead: Aead,
    nonces: NonceGen,
    stats: CryptoStats,
}

impl AeadCrypt {
    /// Builds the layer from a raw key ([`AeadKind::key_len`] bytes).
    pub fn new<R: CryptoRng + ?Sized>(
        kind: AeadKind,
        key: &[u8],
        rng: &mut R,
    ) -> Result<AeadCrypt, CryptoError> {
        Ok(AeadCrypt {
            kind,
            aead: Aead::new(kind, key)?,
            nonces: NonceGen::new(rng),
            stats: CryptoStats::default(),
        })
    }

    /// Builds the layer from kcptun's derived key, taking `pass[..key_len]`.
    pub fn from_pass<R: CryptoRng + ?Sized>(kind: AeadKind, pass: &Pass, rng: &mut R) -> AeadCrypt {
        let key = pass.as_bytes();
        let aead = match key.get(..kind.key_len()).map(|k| Aead::new(kind, k)) {
            Some(Ok(a)) => a,
            // Unreachable (both key lengths fit in 32 bytes); avoid a panic path anyway.
            _ => Aead::ChaCha(ChaCha20Poly1305::new(key.into())),
        };
        AeadCrypt {
            kind,
            aead,
            nonces: NonceGen::new(rng),
            stats: CryptoStats::default(),
        }
    }

    /// Derives kcptun's key from `password` and builds the layer named `name`.
    pub fn from_password<R: CryptoRng + ?Sized>(
        name: &str,
        password: &[u8],
        rng: &mut R,
    ) -> Result<AeadCrypt, CryptoError> {
        let kind = AeadKind::from_name(name)?;
        Ok(AeadCrypt::from_pass(kind, &Pass::derive(password), rng))
    }

    /// Which AEAD this is.
    pub fn kind(&self) -> AeadKind {
        self.kind
    }

    /// Counters since construction.
    pub fn stats(&self) -> &CryptoStats {
        &self.stats
    }

    /// Seals like [`Codec::seal`] with a caller-chosen nonce (known-answer tests only: reusing
    /// a nonce under one key breaks both confidentiality and authenticity).
    pub fn seal_with_nonce(
        &mut self,
        buf: &mut [u8],
        len: usize,
        nonce: &[u8; AEAD_NONCE_LEN],
    ) -> Result<usize, CodecError> {
        let r = seal_into(&self.aead, buf, len, nonce);
        match r {
            Ok(_) => self.stats.sealed += 1,
            Err(_) => self.stats.seal_errors += 1,
        }
        r
    }
}

fn seal_into(
    aead: &Aead,
    buf: &mut [u8],
    len: usize,
    nonce: &[u8; AEAD_NONCE_LEN],
) -> Result<usize, CodecError> {
    let total = len.checked_add(TAG_LEN).ok_or(CodecError::BufferTooSmall)?;
    let packet = buf.get_mut(..total).ok_or(CodecError::BufferTooSmall)?;
    let (rest, tag_field) = packet.split_at_mut(len);
    let (head, body) = rest
        .split_at_mut_checked(AEAD_NONCE_LEN)
        .ok_or(CodecError::BufferTooSmall)?;
    head.copy_from_slice(nonce);
    let tag = aead.seal(nonce, &[], body)?;
    tag_field.copy_from_slice(&tag);
    Ok(total)
}

impl Codec for AeadCrypt {
    fn header_len(&self) -> usize {
        AEAD_NONCE_LEN
    }

    fn trailer_len(&self) -> usize {
        TAG_LEN
    }

    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        let mut nonce = [0u8; AEAD_NONCE_LEN];
        nonce.copy_from_slice(&self.nonces.next_nonce()[..AEAD_NONCE_LEN]);
        self.seal_with_nonce(buf, len, &nonce)
    }

    fn open(&mut self, buf: &mut [u8], _now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        let len = buf.len();
        let Some((head, body, tag)) = split_sealed(buf, AEAD_NONCE_LEN) else {
            self.stats.truncated += 1;
            return Err(CodecError::Truncated);
        };
        let mut nonce = [0u8; AEAD_NONCE_LEN];
        nonce.copy_from_slice(head);
        if let Err(e) = self.aead.open(&nonce, &[], body, &tag) {
            self.stats.integrity_errors += 1;
            return Err(e);
        }
        self.stats.opened += 1;
        Ok(Some(AEAD_NONCE_LEN..len - TAG_LEN))
    }
}

impl fmt::Debug for AeadCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadCrypt")
            .field("kind", &self.kind)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
