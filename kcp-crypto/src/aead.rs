//! Authenticated modes: upstream kcp-go's AEAD layout (AES-128-GCM, ChaCha20-Poly1305).

use core::borrow::Borrow;
use core::fmt;
use core::ops::Range;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes128Gcm;
use chacha20poly1305::ChaCha20Poly1305;
use kcp_core::{Codec, CodecError, LayerCounters, Millis};
use rand_core::CryptoRng;

use crate::nonce::{NonceKey, NonceStream};
use crate::{CryptoError, CryptoStats, Pass};

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
    /// AES-128-GCM with VAES (x86-64 CPUs that have it; `gcm_vaes.rs`).
    #[cfg(target_arch = "x86_64")]
    GcmVaes(crate::gcm_vaes::GcmVaes),
    /// ChaCha20-Poly1305 on the AVX2 path (x86-64 CPUs that have it; `chacha_simd.rs`).
    #[cfg(target_arch = "x86_64")]
    ChaChaAvx2(crate::chacha_simd::ChaChaAvx2),
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
            AeadKind::Aes128Gcm => {
                #[cfg(target_arch = "x86_64")]
                if let Some(g) = <&[u8; 16]>::try_from(key)
                    .ok()
                    .and_then(crate::gcm_vaes::GcmVaes::new)
                {
                    return Ok(Aead::GcmVaes(g));
                }
                Aead::Gcm(Aes128Gcm::new_from_slice(key).map_err(|_| bad)?)
            }
            AeadKind::ChaCha20Poly1305 => {
                #[cfg(target_arch = "x86_64")]
                if let Some(c) = <&[u8; 32]>::try_from(key)
                    .ok()
                    .and_then(crate::chacha_simd::ChaChaAvx2::new)
                {
                    return Ok(Aead::ChaChaAvx2(c));
                }
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
            #[cfg(target_arch = "x86_64")]
            Aead::GcmVaes(g) => {
                // GCM's limit: 2^32 - 2 blocks of plaintext.
                if buf.len() as u64 > (u64::from(u32::MAX) - 1) * 16 {
                    return Err(CodecError::BufferTooSmall);
                }
                return Ok(g.seal(nonce, ad, buf));
            }
            #[cfg(target_arch = "x86_64")]
            Aead::ChaChaAvx2(c) => {
                // RFC 8439's limit: the 32-bit block counter must not wrap.
                if buf.len() as u64 > (u64::from(u32::MAX) - 1) * 64 {
                    return Err(CodecError::BufferTooSmall);
                }
                return Ok(c.seal(nonce, ad, buf));
            }
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
            #[cfg(target_arch = "x86_64")]
            Aead::GcmVaes(g) => {
                let fits = buf.len() as u64 <= (u64::from(u32::MAX) - 1) * 16;
                return if fits && g.open(nonce, ad, buf, tag) {
                    Ok(())
                } else {
                    Err(CodecError::Integrity)
                };
            }
            #[cfg(target_arch = "x86_64")]
            Aead::ChaChaAvx2(c) => {
                let fits = buf.len() as u64 <= (u64::from(u32::MAX) - 1) * 64;
                return if fits && c.open(nonce, ad, buf, tag) {
                    Ok(())
                } else {
                    Err(CodecError::Integrity)
                };
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

/// The immutable part of an [`AeadCrypt`], built once and shared by every session of an
/// endpoint: the keyed AEAD (an AES-128-GCM key schedule is about 500 bytes) and the key of
/// the nonce generator. Each session's [`AeadCrypt::with_key`] then holds a handle to it (an
/// `Arc`, or a `&'static` reference without an allocator) and 144 bytes of state (nonce
/// position, four nonces computed ahead, counters).
///
/// ```
/// use std::sync::Arc;
/// use kcp_core::{Codec, Millis};
/// use kcp_crypto::{AeadCrypt, AeadKey, AeadKind, Pass, AEAD_NONCE_LEN, TAG_LEN};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng {
/// #     type Error = core::convert::Infallible;
/// #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 += 1; Ok(self.0) }
/// #     fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
/// #         for b in dst { *b = self.try_next_u64()? as u8; } Ok(())
/// #     }
/// # }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut os_rng = Rng(0); // use a real CSPRNG (for example getrandom's) in production
///
/// // Once per endpoint (kcptun: -crypt aes-128-gcm --key ...).
/// let pass = Pass::derive(b"it's a secrect");
/// let shared = Arc::new(AeadKey::from_pass(AeadKind::Aes128Gcm, &pass, &mut os_rng));
///
/// // Once per session.
/// let mut a = AeadCrypt::with_key(Arc::clone(&shared));
/// let mut b = AeadCrypt::with_key(Arc::clone(&shared));
///
/// let mut buf = [0u8; 64];
/// buf[AEAD_NONCE_LEN..AEAD_NONCE_LEN + 2].copy_from_slice(b"hi");
/// let n = a.seal(&mut buf, AEAD_NONCE_LEN + 2, Millis(0)).unwrap();
/// assert_eq!(n, AEAD_NONCE_LEN + 2 + TAG_LEN);
/// let inner = b.open(&mut buf[..n], Millis(0)).unwrap().unwrap();
/// assert_eq!(&buf[inner], b"hi");
/// ```
pub struct AeadKey {
    kind: AeadKind,
    aead: Aead,
    nonces: NonceKey,
}

impl AeadKey {
    /// Keys the AEAD with a raw key ([`AeadKind::key_len`] bytes); `rng` (a CSPRNG) keys the
    /// nonce generator.
    pub fn new<R: CryptoRng + ?Sized>(
        kind: AeadKind,
        key: &[u8],
        rng: &mut R,
    ) -> Result<AeadKey, CryptoError> {
        Ok(AeadKey {
            kind,
            aead: Aead::new(kind, key)?,
            nonces: NonceKey::new(rng),
        })
    }

    /// Keys the AEAD with kcptun's derived key, taking `pass[..key_len]`.
    pub fn from_pass<R: CryptoRng + ?Sized>(kind: AeadKind, pass: &Pass, rng: &mut R) -> AeadKey {
        let key = pass.as_bytes();
        let aead = match key.get(..kind.key_len()).map(|k| Aead::new(kind, k)) {
            Some(Ok(a)) => a,
            // Unreachable (both key lengths fit in 32 bytes); avoid a panic path anyway.
            _ => Aead::ChaCha(ChaCha20Poly1305::new(key.into())),
        };
        AeadKey {
            kind,
            aead,
            nonces: NonceKey::new(rng),
        }
    }

    /// Which AEAD this is.
    pub fn kind(&self) -> AeadKind {
        self.kind
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadKey")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Upstream kcp-go's authenticated layout, a [`Codec`]: `nonce (12, random) || ciphertext ||
/// tag (16)`, no CRC, no associated data.
///
/// Header [`AEAD_NONCE_LEN`] bytes, trailer [`TAG_LEN`] bytes. Wire-compatible with upstream
/// kcp-go's `NewAESGCMCrypt(pass[:16])` (kcptun `-crypt aes-128-gcm`), **not** with v5.6.1,
/// which has no AEAD mode. Authenticates every byte but, like kcp-go, does not detect replays:
/// see [`crate::ReplayAeadCrypt`] for that. The nonce is the first 12 bytes of the
/// generator's output (see [`crate::NonceGen`]).
///
/// `K` holds the [`AeadKey`]: owned (the default, [`AeadCrypt::new`]), or shared between
/// sessions (`Arc<AeadKey>`, `&'static AeadKey`; [`AeadCrypt::with_key`]), in which case the
/// layer is 152 bytes and holds no heap. It has no per-peer state, so on an endpoint the
/// shared instance opens every packet (the [`Codec`] defaults).
pub struct AeadCrypt<K = AeadKey> {
    key: K,
    nonces: NonceStream,
    stats: CryptoStats,
}

impl AeadCrypt {
    /// Builds a layer of its own from a raw key ([`AeadKind::key_len`] bytes). A stack
    /// builder should build an [`AeadKey`] once and call [`AeadCrypt::with_key`] per session.
    pub fn new<R: CryptoRng + ?Sized>(
        kind: AeadKind,
        key: &[u8],
        rng: &mut R,
    ) -> Result<AeadCrypt, CryptoError> {
        Ok(AeadCrypt::build(AeadKey::new(kind, key, rng)?))
    }

    /// Builds a layer of its own from kcptun's derived key, taking `pass[..key_len]`.
    pub fn from_pass<R: CryptoRng + ?Sized>(kind: AeadKind, pass: &Pass, rng: &mut R) -> AeadCrypt {
        AeadCrypt::build(AeadKey::from_pass(kind, pass, rng))
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
}

impl<K: Borrow<AeadKey>> AeadCrypt<K> {
    /// A session's layer over a shared key: a nonce stream of its own, nothing copied.
    ///
    /// Only on targets with atomics (32-bit ones are enough), which hand out the nonce streams.
    #[cfg(target_has_atomic = "32")]
    pub fn with_key(key: K) -> AeadCrypt<K> {
        AeadCrypt::build(key)
    }

    fn build(key: K) -> AeadCrypt<K> {
        let nonces = NonceStream::new(&key.borrow().nonces);
        AeadCrypt {
            key,
            nonces,
            stats: CryptoStats::default(),
        }
    }

    /// Which AEAD this is.
    pub fn kind(&self) -> AeadKind {
        self.key.borrow().kind
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
        let r = seal_into(&self.key.borrow().aead, buf, len, nonce);
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

impl<K: Borrow<AeadKey>> Codec for AeadCrypt<K> {
    fn header_len(&self) -> usize {
        AEAD_NONCE_LEN
    }

    fn trailer_len(&self) -> usize {
        TAG_LEN
    }

    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        let mut nonce = [0u8; AEAD_NONCE_LEN];
        let full = self.nonces.next(&self.key.borrow().nonces);
        nonce.copy_from_slice(&full[..AEAD_NONCE_LEN]);
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
        if let Err(e) = self.key.borrow().aead.open(&nonce, &[], body, &tag) {
            self.stats.integrity_errors += 1;
            return Err(e);
        }
        self.stats.opened += 1;
        Ok(Some(AEAD_NONCE_LEN..len - TAG_LEN))
    }

    /// No heap of its own: an owned key lives inside the layer, a shared one is counted once
    /// by whoever owns it.
    fn heap_bytes(&self) -> usize {
        0
    }

    fn add_counters(&self, into: &mut LayerCounters) {
        self.stats.add_counters(into);
    }
}

impl<K: Borrow<AeadKey>> fmt::Debug for AeadCrypt<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadCrypt")
            .field("kind", &self.kind())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
