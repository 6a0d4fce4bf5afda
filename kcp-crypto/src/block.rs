//! kcp-go's `BlockCrypt`: one cipher transforming a whole packet in place.
//!
//! For block ciphers this is standard full-block CFB (CFB-128 or CFB-64) over the whole packet
//! with kcp-go's fixed IV, ciphertext as long as plaintext (the last partial block is XORed with
//! a truncated keystream block). The random nonce in the packet's first 16 bytes is what makes
//! every packet's keystream different. CFB decryption runs the cipher on ciphertext only, so
//! its keystream blocks are independent and computed in parallel: by `cfb-mode` for AES
//! (AES-NI/VAES batches), and by the `cfb` module's loop for the other block ciphers.

use core::fmt;

use aes::{Aes128Enc, Aes192Enc, Aes256Enc};
use blowfish::Blowfish;
use cast5::Cast5;
use cipher::{Block, BlockCipherEncrypt, InnerIvInit, KeyInit};
#[cfg(not(target_arch = "x86_64"))]
use cipher::{KeyIvInit, StreamCipher};
use des::TdesEde3;
#[cfg(not(target_arch = "x86_64"))]
use salsa20::Salsa20;
use sm4::Sm4;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::kdf::{Pass, XorTable};
use crate::tea::{Tea16, XteaBe};
use crate::twofish_fast::TwofishTables;
use crate::{CipherKind, CryptoError};

/// kcp-go's fixed CFB IV (`initialVector`); 8-byte-block ciphers use its first 8 bytes.
pub const INITIAL_VECTOR: [u8; 16] = [
    167, 115, 79, 156, 18, 172, 27, 1, 164, 21, 242, 193, 252, 120, 230, 107,
];

/// Salsa20 key, zero-padded to 32 bytes as kcp-go does.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct SalsaKey([u8; 32]);

// Variants differ a lot in size (Blowfish and Twofish keep 4 KiB key-dependent tables, the XOR
// table is 1500 bytes); boxing would need an allocator, which this crate must not require.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Aes128(Aes128Enc),
    Aes192(Aes192Enc),
    Aes256(Aes256Enc),
    Salsa20(SalsaKey),
    Blowfish(Blowfish),
    Twofish(TwofishTables),
    Cast5(Cast5),
    TripleDes(TdesEde3),
    Tea(Tea16),
    Xtea(XteaBe),
    Sm4(Sm4),
    Xor(XorTable),
    Identity,
}

/// One kcp-go packet cipher, keyed (`BlockCrypt` in kcp-go).
///
/// [`BlockCrypt::encrypt`] and [`BlockCrypt::decrypt`] transform a whole packet in place,
/// nonce and CRC included, exactly as kcp-go's `Encrypt`/`Decrypt` do; they do not add or check
/// the header (that is [`crate::PacketCrypt`]'s job). Key material is zeroized on drop.
pub struct BlockCrypt {
    kind: CipherKind,
    inner: Inner,
    /// AES-128/256 CFB decryption with VAES, when the CPU has it (see `aes_vaes.rs`).
    #[cfg(target_arch = "x86_64")]
    vaes: Option<crate::aes_vaes::AesVaes>,
}

fn check_len(key: &[u8], min: usize, max: usize) -> Result<(), CryptoError> {
    if key.len() < min || key.len() > max {
        return Err(CryptoError::BadKeyLength {
            min,
            max,
            got: key.len(),
        });
    }
    Ok(())
}

fn init<C: KeyInit>(key: &[u8], len: usize) -> Result<C, CryptoError> {
    check_len(key, len, len)?;
    C::new_from_slice(key).map_err(|_| CryptoError::BadKeyLength {
        min: len,
        max: len,
        got: key.len(),
    })
}

impl BlockCrypt {
    /// Builds a cipher from a raw key, as kcp-go's `New*BlockCrypt(key)` constructors do.
    ///
    /// Accepted key lengths: AES-128/192/256 16/24/32 bytes; Salsa20 1 to 32 (zero-padded);
    /// Blowfish 4 to 56; Twofish 16, 24 or 32; CAST5, TEA, XTEA and SM4 16; 3DES 24; `xor`,
    /// `none` and `null` any length.
    pub fn new(kind: CipherKind, key: &[u8]) -> Result<BlockCrypt, CryptoError> {
        let inner = match kind {
            CipherKind::Aes128 => Inner::Aes128(init(key, 16)?),
            CipherKind::Aes192 => Inner::Aes192(init(key, 24)?),
            CipherKind::Aes256 => Inner::Aes256(init(key, 32)?),
            CipherKind::Salsa20 => {
                check_len(key, 1, 32)?;
                let mut k = SalsaKey([0; 32]);
                for (d, s) in k.0.iter_mut().zip(key) {
                    *d = *s;
                }
                Inner::Salsa20(k)
            }
            CipherKind::Blowfish => {
                check_len(key, 4, 56)?;
                Inner::Blowfish(Blowfish::new_from_slice(key).map_err(|_| {
                    CryptoError::BadKeyLength {
                        min: 4,
                        max: 56,
                        got: key.len(),
                    }
                })?)
            }
            CipherKind::Twofish => {
                if !matches!(key.len(), 16 | 24 | 32) {
                    return Err(CryptoError::BadKeyLength {
                        min: 16,
                        max: 32,
                        got: key.len(),
                    });
                }
                let bad = CryptoError::BadKeyLength {
                    min: 16,
                    max: 32,
                    got: key.len(),
                };
                Inner::Twofish(TwofishTables::new(key).ok_or(bad)?)
            }
            CipherKind::Cast5 => Inner::Cast5(init(key, 16)?),
            CipherKind::TripleDes => Inner::TripleDes(init(key, 24)?),
            CipherKind::Tea => Inner::Tea(Tea16::new(&key16(key)?)),
            CipherKind::Xtea => Inner::Xtea(XteaBe::new(&key16(key)?)),
            CipherKind::Sm4 => Inner::Sm4(init(key, 16)?),
            CipherKind::Xor => Inner::Xor(XorTable::derive(key)),
            CipherKind::None | CipherKind::Null => Inner::Identity,
        };
        #[cfg(target_arch = "x86_64")]
        let vaes = match kind {
            CipherKind::Aes128 => crate::aes_vaes::AesVaes::new128(&key16(key)?),
            CipherKind::Aes256 => <&[u8; 32]>::try_from(key)
                .ok()
                .and_then(crate::aes_vaes::AesVaes::new256),
            _ => None,
        };
        Ok(BlockCrypt {
            kind,
            inner,
            #[cfg(target_arch = "x86_64")]
            vaes,
        })
    }

    /// Builds a cipher from kcptun's derived key, taking the slice kcptun takes
    /// ([`CipherKind::kcptun_key_len`]). Never fails: every slice has a valid length.
    pub fn from_pass(kind: CipherKind, pass: &Pass) -> BlockCrypt {
        let key = pass.as_bytes();
        let n = kind.kcptun_key_len().min(key.len());
        match BlockCrypt::new(kind, key.get(..n).unwrap_or(key)) {
            Ok(c) => c,
            // Unreachable: kcptun's slice lengths are all valid. Never degrade to plaintext:
            // fall back to AES-256 keyed with the whole `pass` (infallible for 32 bytes).
            Err(_) => BlockCrypt {
                kind: CipherKind::Aes256,
                inner: Inner::Aes256(Aes256Enc::new(key.into())),
                #[cfg(target_arch = "x86_64")]
                vaes: None,
            },
        }
    }

    /// Which cipher this is.
    pub fn kind(&self) -> CipherKind {
        self.kind
    }

    /// Encrypts a whole packet in place, as kcp-go's `Encrypt(dst, src)` with `dst == src`.
    ///
    /// Salsa20 leaves the first 8 bytes (its nonce) in clear; a packet shorter than 8 bytes is
    /// left unchanged for Salsa20 (kcp-go never passes one). XOR touches at most 1500 bytes.
    pub fn encrypt(&self, packet: &mut [u8]) {
        match &self.inner {
            Inner::Aes128(c) => cfb_encrypt(c, packet),
            Inner::Aes192(c) => cfb_encrypt(c, packet),
            Inner::Aes256(c) => cfb_encrypt(c, packet),
            Inner::Blowfish(c) => cfb_encrypt(c, packet),
            Inner::Twofish(c) => cfb_encrypt(c, packet),
            Inner::Cast5(c) => cfb_encrypt(c, packet),
            Inner::TripleDes(c) => cfb_encrypt(c, packet),
            Inner::Tea(c) => cfb_encrypt(c, packet),
            Inner::Xtea(c) => cfb_encrypt(c, packet),
            Inner::Sm4(c) => cfb_encrypt(c, packet),
            Inner::Salsa20(k) => salsa20(k, packet),
            Inner::Xor(t) => t.apply(packet),
            Inner::Identity => {}
        }
    }

    /// Encrypts several whole packets in place; each gets exactly the bytes
    /// [`BlockCrypt::encrypt`] would give it.
    ///
    /// CFB encryption of one packet is a serial chain bounded by the cipher's latency; this
    /// interleaves up to eight packets' chains so that the cipher runs at its throughput
    /// instead (about 3x for AES on the bench machine). Adapters that send in batches
    /// (`sendmmsg`) should seal through [`crate::PacketCrypt::seal_many`].
    pub fn encrypt_many(&self, packets: &mut [&mut [u8]]) {
        match &self.inner {
            Inner::Aes128(c) => crate::cfb::encrypt_many(c, packets),
            Inner::Aes192(c) => crate::cfb::encrypt_many(c, packets),
            Inner::Aes256(c) => crate::cfb::encrypt_many(c, packets),
            Inner::Blowfish(c) => crate::cfb::encrypt_many(c, packets),
            Inner::Twofish(c) => crate::cfb::encrypt_many(c, packets),
            Inner::Cast5(c) => crate::cfb::encrypt_many(c, packets),
            Inner::TripleDes(c) => crate::cfb::encrypt_many(c, packets),
            Inner::Tea(c) => crate::cfb::encrypt_many(c, packets),
            Inner::Xtea(c) => crate::cfb::encrypt_many(c, packets),
            Inner::Sm4(c) => crate::cfb::encrypt_many(c, packets),
            Inner::Salsa20(_) | Inner::Xor(_) | Inner::Identity => {
                for p in packets.iter_mut() {
                    self.encrypt(p);
                }
            }
        }
    }

    /// Decrypts a whole packet in place, as kcp-go's `Decrypt(dst, src)` with `dst == src`.
    pub fn decrypt(&self, packet: &mut [u8]) {
        match &self.inner {
            Inner::Aes128(c) => {
                #[cfg(target_arch = "x86_64")]
                if let Some(v) = &self.vaes {
                    v.cfb_decrypt(&INITIAL_VECTOR, packet);
                    return;
                }
                cfb_decrypt(c, packet)
            }
            Inner::Aes192(c) => cfb_decrypt(c, packet),
            Inner::Aes256(c) => {
                #[cfg(target_arch = "x86_64")]
                if let Some(v) = &self.vaes {
                    v.cfb_decrypt(&INITIAL_VECTOR, packet);
                    return;
                }
                cfb_decrypt(c, packet)
            }
            Inner::Blowfish(c) => cfb_decrypt_narrow(c, packet),
            Inner::Twofish(c) => cfb_decrypt_narrow(c, packet),
            Inner::Cast5(c) => cfb_decrypt_narrow(c, packet),
            Inner::TripleDes(c) => cfb_decrypt_narrow(c, packet),
            Inner::Tea(c) => cfb_decrypt_narrow(c, packet),
            Inner::Xtea(c) => cfb_decrypt_narrow(c, packet),
            Inner::Sm4(c) => cfb_decrypt(c, packet),
            Inner::Salsa20(k) => salsa20(k, packet),
            Inner::Xor(t) => t.apply(packet),
            Inner::Identity => {}
        }
    }
}

impl fmt::Debug for BlockCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCrypt")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn key16(key: &[u8]) -> Result<[u8; 16], CryptoError> {
    key.try_into().map_err(|_| CryptoError::BadKeyLength {
        min: 16,
        max: 16,
        got: key.len(),
    })
}

fn iv<C: BlockCipherEncrypt>() -> Block<C> {
    let mut iv = Block::<C>::default();
    for (d, s) in iv.iter_mut().zip(INITIAL_VECTOR.iter()) {
        *d = *s;
    }
    iv
}

fn cfb_encrypt<C: BlockCipherEncrypt>(cipher: &C, packet: &mut [u8]) {
    cfb_mode::Encryptor::<&C>::inner_iv_init(cipher, &iv::<C>()).encrypt(packet);
}

/// `cfb-mode`'s decryption: parallel in whole groups of the backend's width (AES-NI, VAES).
fn cfb_decrypt<C: BlockCipherEncrypt>(cipher: &C, packet: &mut [u8]) {
    cfb_mode::Decryptor::<&C>::inner_iv_init(cipher, &iv::<C>()).decrypt(packet);
}

/// Decryption with independent keystream blocks, for ciphers without a parallel backend.
fn cfb_decrypt_narrow<C: BlockCipherEncrypt>(cipher: &C, packet: &mut [u8]) {
    crate::cfb::decrypt(cipher, packet);
}

fn salsa20(key: &SalsaKey, packet: &mut [u8]) {
    if packet.len() < 8 {
        return;
    }
    let (nonce, rest) = packet.split_at_mut(8);
    let mut nonce8 = [0u8; 8];
    nonce8.copy_from_slice(nonce);
    #[cfg(target_arch = "x86_64")]
    crate::salsa_simd::xor_keystream(&key.0, &nonce8, rest);
    #[cfg(not(target_arch = "x86_64"))]
    Salsa20::new(&key.0.into(), &nonce8.into()).apply_keystream(rest);
}
