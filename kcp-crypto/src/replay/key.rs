//! Replay-protected keys: the shared master key, the derivation of each sender's AEAD key
//! from it, and the slot a layer keeps a derived key in.

use core::fmt;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use kcp_core::CodecError;
use sha1::Sha1;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::aead::{Aead, AeadKind};
use crate::{CryptoError, Pass};

/// How many sender keys an endpoint's shared instance keeps by default
/// ([`ReplayKey::with_demux_cache`]).
pub const DEFAULT_DEMUX_CACHE: usize = 256;

const KDF_LABEL: &[u8] = b"kcp-rs replay v1";

#[derive(Zeroize, ZeroizeOnDrop)]
struct MasterKey {
    bytes: [u8; 32],
    len: usize,
}

/// The immutable part of a [`ReplayAeadCrypt`](crate::ReplayAeadCrypt), shared by every
/// session of an endpoint: the AEAD kind, the master key every sender's key is derived from,
/// and how many sender keys the endpoint's shared instance caches. 48 bytes; key material is
/// zeroized on drop.
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
    pub(super) kind: AeadKind,
    master: MasterKey,
    pub(super) cache: usize,
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
    pub(super) fn derive(&self, sender: &[u8; 8]) -> Result<Aead, CodecError> {
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

/// A derived AEAD key built on first use: on the heap with `alloc` (so
/// [`Codec::trim`](kcp_core::Codec::trim) can give it back and an idle layer stays small),
/// inline without.
#[derive(Default)]
pub(super) struct KeySlot {
    #[cfg(feature = "alloc")]
    key: Option<Box<Aead>>,
    #[cfg(not(feature = "alloc"))]
    key: Option<Aead>,
}

impl KeySlot {
    pub(super) fn get(&self) -> Option<&Aead> {
        #[cfg(feature = "alloc")]
        {
            self.key.as_deref()
        }
        #[cfg(not(feature = "alloc"))]
        {
            self.key.as_ref()
        }
    }

    pub(super) fn set(&mut self, aead: Aead) {
        #[cfg(feature = "alloc")]
        {
            self.key = Some(Box::new(aead));
        }
        #[cfg(not(feature = "alloc"))]
        {
            self.key = Some(aead);
        }
    }

    pub(super) fn clear(&mut self) {
        self.key = None;
    }

    pub(super) fn heap_bytes(&self) -> usize {
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
