//! The kcp-go v5.6.1 packet layer: 16-byte nonce, CRC-32, whole packet encrypted.

use core::ops::Range;

use kcp_core::{Codec, CodecError, Millis};
use rand_core::CryptoRng;

use crate::{BlockCrypt, CipherKind, CryptoError, CryptoStats, NonceGen, Pass};

/// Bytes of kcp-go's crypto header: a 16-byte nonce and a little-endian CRC-32.
pub const HEADER_LEN: usize = NONCE_LEN + CRC_LEN;
/// Bytes of the random nonce at the start of every packet.
pub const NONCE_LEN: usize = 16;
/// Bytes of the CRC-32 field after the nonce.
pub const CRC_LEN: usize = 4;

/// kcp-go compatible crypto layer, a [`Codec`] with [`HEADER_LEN`] header bytes.
///
/// Sealing writes a fresh nonce into bytes `0..16`, CRC-32/IEEE of bytes `20..len` as a
/// little-endian `u32` into `16..20`, then encrypts the whole packet in place. Opening decrypts
/// in place, checks the CRC and returns `20..len`. With [`CipherKind::Null`] the layer has no
/// header and passes packets through unchanged, as kcp-go does with no `BlockCrypt`.
///
/// What this protects and what it does not (it is malleable and has no replay protection) is
/// explained in `docs/security.md`; [`crate::AeadCrypt`] is the authenticated alternative.
#[derive(Debug)]
pub struct PacketCrypt {
    cipher: BlockCrypt,
    nonces: NonceGen,
    stats: CryptoStats,
}

impl PacketCrypt {
    /// Wraps a keyed cipher; `rng` seeds the per-packet nonce generator once.
    pub fn new<R: CryptoRng + ?Sized>(cipher: BlockCrypt, rng: &mut R) -> PacketCrypt {
        PacketCrypt {
            cipher,
            nonces: NonceGen::new(rng),
            stats: CryptoStats::default(),
        }
    }

    /// Builds the layer kcptun builds for `-crypt name --key password`: derives
    /// [`Pass`] (PBKDF2, a few milliseconds) and takes the cipher's slice of it.
    pub fn from_password<R: CryptoRng + ?Sized>(
        name: &str,
        password: &[u8],
        rng: &mut R,
    ) -> Result<PacketCrypt, CryptoError> {
        let kind = CipherKind::from_name(name)?;
        Ok(PacketCrypt::new(
            BlockCrypt::from_pass(kind, &Pass::derive(password)),
            rng,
        ))
    }

    /// The cipher in use.
    pub fn cipher(&self) -> &BlockCrypt {
        &self.cipher
    }

    /// Counters since construction.
    pub fn stats(&self) -> &CryptoStats {
        &self.stats
    }

    fn has_header(&self) -> bool {
        self.cipher.kind() != CipherKind::Null
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
            self.cipher.encrypt(packet);
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
        for p in packets.iter_mut() {
            let nonce = self.nonces.next_nonce();
            if let Some((head, body)) = p.split_at_mut_checked(HEADER_LEN) {
                let crc = crc32fast::hash(body);
                let (nonce_field, crc_field) = head.split_at_mut(NONCE_LEN);
                nonce_field.copy_from_slice(&nonce);
                crc_field.copy_from_slice(&crc.to_le_bytes());
            }
        }
        self.cipher.encrypt_many(packets);
        self.stats.sealed += packets.len() as u64;
        Ok(())
    }
}

impl Codec for PacketCrypt {
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
        self.cipher.kind().header_len()
    }

    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        let nonce = if self.has_header() {
            self.nonces.next_nonce()
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
        self.cipher.decrypt(buf);
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
}
