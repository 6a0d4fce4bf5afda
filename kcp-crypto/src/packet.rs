//! The kcp-go v5.6.1 packet layer: 16-byte nonce, CRC-32, whole packet encrypted.

use core::borrow::Borrow;
use core::fmt;
use core::ops::Range;

use kcp_core::{Codec, CodecError, LayerCounters, Millis};
use rand_core::CryptoRng;

use crate::nonce::{NonceKey, NonceStream};
use crate::{BlockCrypt, CipherKind, CryptoError, CryptoStats, Pass};

/// Bytes of kcp-go's crypto header: a 16-byte nonce and a little-endian CRC-32.
pub const HEADER_LEN: usize = NONCE_LEN + CRC_LEN;
/// Bytes of the random nonce at the start of every packet.
pub const NONCE_LEN: usize = 16;
/// Bytes of the CRC-32 field after the nonce.
pub const CRC_LEN: usize = 4;

/// The immutable part of a [`PacketCrypt`], built once and shared by every session of an
/// endpoint: the keyed cipher (up to 4.5 KiB of key schedule and tables: Blowfish and Twofish
/// keep key-dependent S-boxes, `xor` a 1500-byte table) and the key of the nonce
/// generator. Each session's [`PacketCrypt::with_key`] then holds only a handle to it (an
/// `Arc`, or a `&'static` reference without an allocator) and 144 bytes of state (nonce
/// position, four nonces computed ahead, counters).
///
/// Immutable and `Sync`: sessions on any thread use it at once without locking.
///
/// ```
/// use std::sync::Arc;
/// use kcp_core::{Codec, Millis};
/// use kcp_crypto::{BlockCrypt, CipherKind, PacketCrypt, PacketKey, Pass, HEADER_LEN};
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
/// // Once per endpoint (kcptun: -crypt twofish --key ...): the expensive part.
/// let pass = Pass::derive(b"it's a secrect");
/// let shared = Arc::new(PacketKey::new(
///     BlockCrypt::from_pass(CipherKind::Twofish, &pass),
///     &mut os_rng,
/// ));
///
/// // Once per session, in the layer factory: a handle and a nonce position.
/// let mut a = PacketCrypt::with_key(Arc::clone(&shared));
/// let mut b = PacketCrypt::with_key(Arc::clone(&shared));
/// assert!(core::mem::size_of_val(&a) <= 160);
///
/// let mut buf = [0u8; 64];
/// buf[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(b"hi");
/// let n = a.seal(&mut buf, HEADER_LEN + 2, Millis(0)).unwrap();
/// let inner = b.open(&mut buf[..n], Millis(0)).unwrap().unwrap();
/// assert_eq!(&buf[inner], b"hi");
/// ```
pub struct PacketKey {
    cipher: BlockCrypt,
    nonces: NonceKey,
}

impl PacketKey {
    /// Wraps a keyed cipher; `rng` (a CSPRNG) keys the nonce generator (16 bytes are drawn).
    pub fn new<R: CryptoRng + ?Sized>(cipher: BlockCrypt, rng: &mut R) -> PacketKey {
        PacketKey {
            cipher,
            nonces: NonceKey::new(rng),
        }
    }

    /// Derives kcptun's key from `password` (PBKDF2, a few milliseconds) and keys the cipher
    /// named `name` with it, as kcptun's `-crypt name --key password` does.
    pub fn from_password<R: CryptoRng + ?Sized>(
        name: &str,
        password: &[u8],
        rng: &mut R,
    ) -> Result<PacketKey, CryptoError> {
        let kind = CipherKind::from_name(name)?;
        Ok(PacketKey::new(
            BlockCrypt::from_pass(kind, &Pass::derive(password)),
            rng,
        ))
    }

    /// The keyed cipher.
    pub fn cipher(&self) -> &BlockCrypt {
        &self.cipher
    }
}

impl fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketKey")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// kcp-go compatible crypto layer, a [`Codec`] with [`HEADER_LEN`] header bytes.
///
/// Sealing writes a fresh nonce into bytes `0..16`, CRC-32/IEEE of bytes `20..len` as a
/// little-endian `u32` into `16..20`, then encrypts the whole packet in place. Opening decrypts
/// in place, checks the CRC and returns `20..len`. With [`CipherKind::Null`] the layer has no
/// header and passes packets through unchanged, as kcp-go does with no `BlockCrypt`.
///
/// `K` holds the [`PacketKey`]: owned (the default, [`PacketCrypt::new`], no allocator
/// needed), or shared between sessions (`Arc<PacketKey>` or `&'static PacketKey`, built with
/// [`PacketCrypt::with_key`]), in which case the layer itself is 152 bytes and holds no heap.
/// The layer has no per-peer state, so on an endpoint its shared instance opens every
/// packet and the session's instance accepts them (the [`Codec`] defaults).
///
/// What this protects and what it does not (it is malleable and has no replay protection) is
/// explained in `docs/security.md`; [`crate::AeadCrypt`] is the authenticated alternative.
pub struct PacketCrypt<K = PacketKey> {
    key: K,
    nonces: NonceStream,
    stats: CryptoStats,
}

impl PacketCrypt {
    /// Wraps a keyed cipher in a layer of its own; `rng` keys the nonce generator once.
    ///
    /// A stack builder that makes one layer per session should build a [`PacketKey`] once
    /// and call [`PacketCrypt::with_key`] per session instead: this copies the cipher's key
    /// schedule (up to 4.5 KiB) into every layer.
    pub fn new<R: CryptoRng + ?Sized>(cipher: BlockCrypt, rng: &mut R) -> PacketCrypt {
        PacketCrypt::build(PacketKey::new(cipher, rng))
    }

    /// Builds the layer kcptun builds for `-crypt name --key password`: derives
    /// [`Pass`] (PBKDF2, a few milliseconds) and takes the cipher's slice of it.
    pub fn from_password<R: CryptoRng + ?Sized>(
        name: &str,
        password: &[u8],
        rng: &mut R,
    ) -> Result<PacketCrypt, CryptoError> {
        Ok(PacketCrypt::build(PacketKey::from_password(
            name, password, rng,
        )?))
    }
}

impl<K: Borrow<PacketKey>> PacketCrypt<K> {
    /// A session's layer over a shared key: takes a stream of nonces of its own from the key
    /// (never the same as another layer's, see `NonceGen`), copies nothing.
    ///
    /// Only on targets with atomics (32-bit ones are enough), which hand out the streams.
    #[cfg(target_has_atomic = "32")]
    pub fn with_key(key: K) -> PacketCrypt<K> {
        PacketCrypt::build(key)
    }

    fn build(key: K) -> PacketCrypt<K> {
        let nonces = NonceStream::new(&key.borrow().nonces);
        PacketCrypt {
            key,
            nonces,
            stats: CryptoStats::default(),
        }
    }

    /// The cipher in use.
    pub fn cipher(&self) -> &BlockCrypt {
        &self.key.borrow().cipher
    }

    /// Counters since construction.
    pub fn stats(&self) -> &CryptoStats {
        &self.stats
    }

    fn has_header(&self) -> bool {
        self.cipher().kind() != CipherKind::Null
    }

    /// Seals like [`Codec::seal`] but with a caller-chosen nonce instead of a generated one.
    ///
    /// Meant for known-answer tests and vector generation. Never reuse a nonce for real
    /// traffic: with kcp-go's fixed IV, two packets with the same nonce leak the XOR of their
    /// first differing plaintext blocks.
    pub fn seal_with_nonce(
        &mut self,
        buf: &mut [u8],
        len: usize,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<usize, CodecError> {
        if len > buf.len() || (self.has_header() && len < HEADER_LEN) {
            self.stats.seal_errors += 1;
            return Err(CodecError::BufferTooSmall);
        }
        let packet = buf.get_mut(..len).ok_or(CodecError::BufferTooSmall)?;
        if self.has_header() {
            let (head, body) = packet
                .split_at_mut_checked(HEADER_LEN)
                .ok_or(CodecError::BufferTooSmall)?;
            let crc = crc32fast::hash(body);
            let (nonce_field, crc_field) = head.split_at_mut(NONCE_LEN);
            nonce_field.copy_from_slice(nonce);
            crc_field.copy_from_slice(&crc.to_le_bytes());
            self.key.borrow().cipher.encrypt(packet);
        }
        self.stats.sealed += 1;
        Ok(len)
    }

    /// Seals several packets at once: each slice is one whole packet, its first
    /// [`HEADER_LEN`] bytes room for the header and the rest the inner packet (so the sealed
    /// length is the slice length). Same bytes as [`Codec::seal`] on each in turn, faster for
    /// the CFB ciphers (see [`BlockCrypt::encrypt_many`]).
    ///
    /// Fails without sealing anything if any slice is shorter than the header.
    pub fn seal_many(&mut self, packets: &mut [&mut [u8]]) -> Result<(), CodecError> {
        if !self.has_header() {
            self.stats.sealed += packets.len() as u64;
            return Ok(());
        }
        if packets.iter().any(|p| p.len() < HEADER_LEN) {
            self.stats.seal_errors += 1;
            return Err(CodecError::BufferTooSmall);
        }
        let key = self.key.borrow();
        let mut nonces = [[0u8; NONCE_LEN]; 8];
        for group in packets.chunks_mut(nonces.len()) {
            let nonces = &mut nonces[..group.len()];
            self.nonces.fill(&key.nonces, nonces);
            for (p, nonce) in group.iter_mut().zip(nonces.iter()) {
                if let Some((head, body)) = p.split_at_mut_checked(HEADER_LEN) {
                    let crc = crc32fast::hash(body);
                    let (nonce_field, crc_field) = head.split_at_mut(NONCE_LEN);
                    nonce_field.copy_from_slice(nonce);
                    crc_field.copy_from_slice(&crc.to_le_bytes());
                }
            }
        }
        key.cipher.encrypt_many(packets);
        self.stats.sealed += packets.len() as u64;
        Ok(())
    }
}

impl<K> fmt::Debug for PacketCrypt<K>
where
    K: Borrow<PacketKey>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketCrypt")
            .field("cipher", self.cipher())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<K: Borrow<PacketKey>> Codec for PacketCrypt<K> {
    /// Seals up to eight packets per cipher call with interleaved CFB chains
    /// ([`PacketCrypt::seal_many`]): a lone packet's CFB chain runs at the cipher's latency,
    /// eight run at its throughput.
    fn seal_strided(
        &mut self,
        buf: &mut [u8],
        stride: usize,
        lens: &mut [usize],
        _now: Millis,
    ) -> Result<(), CodecError> {
        const GROUP: usize = 8;
        let hl = self.header_len();
        if buf.len() < lens.len() * stride || lens.iter().any(|&l| l < hl || l > stride) {
            self.stats.seal_errors += 1;
            return Err(CodecError::BufferTooSmall);
        }
        for (g, group_lens) in lens.chunks(GROUP).enumerate() {
            let base = g * GROUP * stride;
            let region = &mut buf[base..base + group_lens.len() * stride];
            let mut chunks = region.chunks_mut(stride);
            let mut packets: [&mut [u8]; GROUP] = core::array::from_fn(|i| match chunks.next() {
                Some(c) => {
                    let l = group_lens.get(i).copied().unwrap_or(0).min(c.len());
                    &mut c[..l]
                }
                None => &mut [],
            });
            self.seal_many(&mut packets[..group_lens.len()])?;
        }
        Ok(())
    }

    fn header_len(&self) -> usize {
        self.cipher().kind().header_len()
    }

    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        let nonce = if self.has_header() {
            self.nonces.next(&self.key.borrow().nonces)
        } else {
            [0; NONCE_LEN]
        };
        self.seal_with_nonce(buf, len, &nonce)
    }

    fn open(&mut self, buf: &mut [u8], _now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        if !self.has_header() {
            self.stats.opened += 1;
            return Ok(Some(0..buf.len()));
        }
        if buf.len() < HEADER_LEN {
            self.stats.truncated += 1;
            return Err(CodecError::Truncated);
        }
        self.key.borrow().cipher.decrypt(buf);
        let Some((head, body)) = buf.split_at_checked(HEADER_LEN) else {
            self.stats.truncated += 1;
            return Err(CodecError::Truncated);
        };
        let mut field = [0u8; CRC_LEN];
        field.copy_from_slice(head.get(NONCE_LEN..).unwrap_or(&[0; CRC_LEN]));
        if u32::from_le_bytes(field) != crc32fast::hash(body) {
            self.stats.integrity_errors += 1;
            return Err(CodecError::Integrity);
        }
        self.stats.opened += 1;
        Ok(Some(HEADER_LEN..buf.len()))
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
