//! The two TEA-family ciphers kcp-go uses, in Go's `x/crypto` byte order.
//!
//! * [`Tea16`] is written here by hand: no maintained crate offers TEA with a configurable
//!   round count, and kcp-go uses `tea.NewCipherWithRounds(key, 16)` (8 cycles, not the usual
//!   64 rounds).
//! * [`XteaBe`] wraps RustCrypto's `xtea`, which reads block and key words little-endian,
//!   while Go's `x/crypto/xtea` (and the textbook) read them big-endian: the wrapper swaps
//!   the bytes of each 32-bit word on the way in and out.
//!
//! Both implement `cipher`'s block traits so that they run in the same CFB code as every
//! other block cipher. Only encryption is needed: CFB never runs the inverse cipher.

use cipher::consts::{U1, U8};
use cipher::{
    Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, InOut,
    KeyInit, ParBlocksSizeUser,
};
use zeroize::{Zeroize, ZeroizeOnDrop};

const DELTA: u32 = 0x9e37_79b9;

fn be_words<const N: usize>(bytes: &[u8]) -> [u32; N] {
    let mut out = [0u32; N];
    for (w, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    }
    out
}

/// TEA with 16 rounds (8 cycles), big-endian words, as Go's `tea.NewCipherWithRounds(key, 16)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Tea16 {
    k: [u32; 4],
}

impl Tea16 {
    /// Builds the cipher from a 16-byte key.
    pub fn new(key: &[u8; 16]) -> Tea16 {
        Tea16 { k: be_words(key) }
    }
}

impl BlockSizeUser for Tea16 {
    type BlockSize = U8;
}

impl ParBlocksSizeUser for Tea16 {
    type ParBlocksSize = U1;
}

impl BlockCipherEncrypt for Tea16 {
    #[inline]
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        f.call(self)
    }
}

impl BlockCipherEncBackend for Tea16 {
    #[inline]
    fn encrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
        let [mut v0, mut v1] = be_words::<2>(block.get_in());
        let [k0, k1, k2, k3] = self.k;
        let mut sum = 0u32;
        for _ in 0..8 {
            sum = sum.wrapping_add(DELTA);
            v0 = v0.wrapping_add(
                (v1 << 4).wrapping_add(k0) ^ v1.wrapping_add(sum) ^ (v1 >> 5).wrapping_add(k1),
            );
            v1 = v1.wrapping_add(
                (v0 << 4).wrapping_add(k2) ^ v0.wrapping_add(sum) ^ (v0 >> 5).wrapping_add(k3),
            );
        }
        let out = block.get_out();
        out[..4].copy_from_slice(&v0.to_be_bytes());
        out[4..].copy_from_slice(&v1.to_be_bytes());
    }
}

/// XTEA with big-endian block and key words (Go's `x/crypto/xtea`), over RustCrypto's `xtea`.
pub(crate) struct XteaBe(xtea::Xtea);

impl XteaBe {
    /// Builds the cipher from a 16-byte key.
    pub fn new(key: &[u8; 16]) -> XteaBe {
        let mut swapped = *key;
        for w in swapped.chunks_exact_mut(4) {
            w.reverse();
        }
        let inner = xtea::Xtea::new(&swapped.into());
        swapped.zeroize();
        XteaBe(inner)
    }
}

impl BlockSizeUser for XteaBe {
    type BlockSize = U8;
}

impl ParBlocksSizeUser for XteaBe {
    type ParBlocksSize = U1;
}

impl BlockCipherEncrypt for XteaBe {
    #[inline]
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        f.call(self)
    }
}

impl BlockCipherEncBackend for XteaBe {
    #[inline]
    fn encrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
        let mut b = block.clone_in();
        b[..4].reverse();
        b[4..].reverse();
        BlockCipherEncrypt::encrypt_block(&self.0, &mut b);
        b[..4].reverse();
        b[4..].reverse();
        *block.get_out() = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 16] {
        core::array::from_fn(|i| 0x30 + i as u8)
    }

    #[test]
    fn tea16_matches_kcp_go_vector() {
        let mut b: Block<Tea16> = [0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87].into();
        BlockCipherEncrypt::encrypt_block(&Tea16::new(&key()), &mut b);
        assert_eq!(
            b.as_slice(),
            [0xaa, 0xcb, 0x41, 0xa5, 0xef, 0x25, 0x16, 0x43]
        );
    }

    #[test]
    fn xtea_big_endian_matches_kcp_go_vector() {
        let mut b: Block<XteaBe> = [0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87].into();
        BlockCipherEncrypt::encrypt_block(&XteaBe::new(&key()), &mut b);
        assert_eq!(
            b.as_slice(),
            [0xdc, 0x1a, 0x79, 0x42, 0x40, 0xe5, 0x43, 0xa3]
        );
    }
}
