//! kcp-go compatible packet encryption, as a [`kcp_core::Codec`] layer.
//!
//! kcp-go encrypts every datagram, KCP and FEC headers included. This crate produces and
//! accepts exactly the bytes kcp-go v5.6.1 does, for every cipher kcptun's `-crypt` offers,
//! and adds authenticated modes on top:
//!
//! * [`PacketCrypt`]: kcp-go's layout (16-byte nonce, CRC-32, whole packet encrypted) with
//!   any [`CipherKind`]: `aes`, `aes-128`, `aes-192`, `salsa20`, `blowfish`, `twofish`, `cast5`,
//!   `3des`, `tea`, `xtea`, `sm4`, `xor`, `none` and `null`.
//! * [`AeadCrypt`]: AES-128-GCM in upstream kcp-go's layout (v5.6.49 and later; **not**
//!   understood by v5.6.1) and ChaCha20-Poly1305 in the same layout.
//! * [`ReplayAeadCrypt`]: this crate's own extension, an AEAD with sequence-number nonces and
//!   a sliding replay window. No kcp-go version speaks it; both peers must use this crate.
//!
//! Keys come from [`Pass::derive`] exactly as kcptun derives them, or raw through
//! [`BlockCrypt::new`]. Adapters that send in batches can seal several packets at once with
//! [`PacketCrypt::seal_many`] (same bytes, interleaved CFB chains, several times faster).
//! Nonces come from a keyed permutation (see [`NonceGen`]) keyed once from a caller-supplied
//! [`rand_core::CryptoRng`], so the crate is `no_std` and needs no allocator; the adapters seed
//! it from the OS. Key material is zeroized on drop. Which mode protects what is explained in
//! the project's `docs/security.md`.
//!
//! # One key, many sessions
//!
//! Key schedules are immutable and shared: an endpoint builds a [`PacketKey`], [`AeadKey`] or
//! [`ReplayKey`] once (the cipher's key schedule, the nonce key) and every session's layer
//! holds a handle to it (`Arc`, or `&'static` without an allocator) plus a few dozen bytes of
//! its own state ([`PacketCrypt::with_key`], [`AeadCrypt::with_key`],
//! [`ReplayAeadCrypt::with_key`]). The layers' plain constructors (`new`, `from_pass`, ...)
//! still build a layer that owns its key.
//!
//! # Features
//!
//! * `alloc` (off by default): [`ReplayAeadCrypt`] keeps its derived key schedules on the heap,
//!   built on first use and given back by `Codec::trim` (an idle session holds none), and an
//!   endpoint's instance caches sender keys. Without it they are inline and nothing is cached.
//! * `std` (off by default, implies `alloc`): runtime CPU detection for CRC-32
//!   (PCLMULQDQ/VPCLMULQDQ): about 9x faster checksums on x86 than the table fallback a
//!   `no_std` build uses (42 against 4.7 GiB/s at 1 KiB on an AVX-512 machine; less on CPUs
//!   with only 128-bit PCLMULQDQ). The ciphers detect their CPU features without it (see
//!   below). Adapters that have `std` should enable it.
//!
//! Which cipher implementations are used: RustCrypto's crates for everything except TEA
//! (16 rounds, which no crate offers), XTEA (RustCrypto's `xtea` behind a byte-order adapter,
//! since kcp-go's XTEA is big-endian) and Twofish (table-driven, because RustCrypto's
//! `twofish` 0.8 runs at about 2 MB/s); these three are internal, reached through
//! [`BlockCrypt`] like every other cipher. On x86-64, hand-written SIMD paths take over where
//! the crates are slow on ~1400-byte packets, each chosen at run time (`no_std` included) and
//! checked byte for byte against its crate: AES-128/256 CFB decryption with VAES; Salsa20 with
//! SSE2 (every x86-64 CPU) or AVX2; AES-128-GCM with VAES and VPCLMULQDQ; ChaCha20-Poly1305
//! with AVX2 or AVX-512. Other CPUs use the crates.
//!
//! # Example
//!
//! ```
//! use kcp_core::{Codec, Millis};
//! use kcp_crypto::{BlockCrypt, CipherKind, Pass, PacketCrypt, HEADER_LEN};
//! # struct Rng(u64);
//! # impl rand_core::TryRng for Rng {
//! #     type Error = core::convert::Infallible;
//! #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
//! #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 += 1; Ok(self.0) }
//! #     fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
//! #         for b in dst { *b = self.try_next_u64()? as u8; } Ok(())
//! #     }
//! # }
//! # impl rand_core::TryCryptoRng for Rng {}
//! # let mut os_rng = Rng(0); // use a real CSPRNG (for example getrandom's) in production
//!
//! // kcptun -crypt aes-128 --key "it's a secrect"
//! let pass = Pass::derive(b"it's a secrect");
//! let mut tx = PacketCrypt::new(BlockCrypt::from_pass(CipherKind::Aes128, &pass), &mut os_rng);
//! let mut rx = PacketCrypt::new(BlockCrypt::from_pass(CipherKind::Aes128, &pass), &mut os_rng);
//!
//! // The inner packet goes after HEADER_LEN bytes of room.
//! let mut buf = [0u8; 1500];
//! buf[HEADER_LEN..HEADER_LEN + 5].copy_from_slice(b"hello");
//! let len = tx.seal(&mut buf, HEADER_LEN + 5, Millis(0)).unwrap();
//!
//! let inner = rx.open(&mut buf[..len], Millis(0)).unwrap().unwrap();
//! assert_eq!(&buf[inner], b"hello");
//!
//! // Any change to the packet is detected (here by the CRC).
//! buf[len - 1] ^= 1;
//! assert!(rx.open(&mut buf[..len], Millis(0)).is_err());
//! assert_eq!(rx.stats().integrity_errors, 1);
//! ```
#![no_std]
#![deny(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels the items that need a cargo feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;

mod aead;
#[cfg(target_arch = "x86_64")]
mod aes_vaes;
mod block;
mod cfb;
#[cfg(target_arch = "x86_64")]
mod chacha_simd;
mod error;
#[cfg(target_arch = "x86_64")]
mod gcm_vaes;
pub mod kdf;
mod kind;
mod nonce;
mod packet;
mod replay;
#[cfg(target_arch = "x86_64")]
mod salsa_simd;
mod stats;
mod tea;
mod twofish_fast;

pub use aead::{AeadCrypt, AeadKey, AeadKind, AEAD_NONCE_LEN, TAG_LEN};
pub use block::{BlockCrypt, INITIAL_VECTOR};
pub use error::CryptoError;
pub use kdf::{Pass, XorTable};
pub use kind::CipherKind;
pub use nonce::NonceGen;
pub use packet::{PacketCrypt, PacketKey, CRC_LEN, HEADER_LEN, NONCE_LEN};
pub use replay::{
    ReplayAeadCrypt, ReplayKey, ReplayWindow, DEFAULT_DEMUX_CACHE, REPLAY_HEADER_LEN,
};
pub use stats::CryptoStats;

pub use kcp_core::{Codec, CodecError, Millis};
