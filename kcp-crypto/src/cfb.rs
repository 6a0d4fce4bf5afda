//! Hand-written CFB loops where `cfb-mode` leaves speed on the table.
//!
//! * [`decrypt`]: decryption with independent keystream blocks, for ciphers without a
//!   parallel backend (the 8-byte-block ciphers and Twofish).
//! * [`encrypt_many`]: encryption of several packets at once with their chains interleaved.
//!   Each packet's CFB chain is inherently serial (every keystream block is the encryption of
//!   the previous ciphertext block), so one packet runs at the cipher's latency, not its
//!   throughput; eight independent chains keep the pipeline full.
//!
//! CFB decryption knows every ciphertext block up front, so the keystream inputs of a whole
//! group of blocks can be gathered and encrypted without waiting on each other. `cfb-mode`
//! carries the feedback block from one block to the next through memory when the cipher has
//! no parallel backend (Blowfish, CAST5, 3DES, TEA, XTEA, Twofish), which serialises the cipher calls;
//! this loop lets the CPU overlap them (measured: TEA decryption about 1.4x faster, Blowfish
//! about 1.3x). For AES, which has AES-NI/VAES parallel backends, `cfb-mode`'s own parallel
//! decryption measured faster on our machine and is used instead (see `block.rs`).

use core::marker::PhantomData;

use cipher::array::ArraySize;
use cipher::{
    Array, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser,
};

/// Blocks whose keystream is computed per group (independent cipher calls the CPU overlaps).
const GROUP: usize = 16;

use crate::INITIAL_VECTOR;

fn iv<BS: ArraySize>() -> Array<u8, BS> {
    let mut iv = Array::<u8, BS>::default();
    for (d, s) in iv.iter_mut().zip(INITIAL_VECTOR.iter()) {
        *d = *s;
    }
    iv
}

#[inline(always)]
fn xor_into(dst: &mut [u8], keystream: &[u8]) {
    for (d, k) in dst.iter_mut().zip(keystream) {
        *d ^= *k;
    }
}

struct Decrypt<'a, BS: ArraySize> {
    data: &'a mut [u8],
    _bs: PhantomData<BS>,
}

impl<BS: ArraySize> BlockSizeUser for Decrypt<'_, BS> {
    type BlockSize = BS;
}

impl<BS: ArraySize> BlockCipherEncClosure for Decrypt<'_, BS> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = BS>>(self, backend: &B) {
        let bs = BS::USIZE;
        let mut prev = iv::<BS>();
        let mut inputs: [Array<u8, BS>; GROUP] = Default::default();
        for chunk in self.data.chunks_mut(bs * GROUP) {
            let n = chunk.len().div_ceil(bs);
            // Keystream input of block i is ciphertext block i - 1 (the IV for block 0).
            let mut slots = inputs.iter_mut();
            if let Some(first) = slots.next() {
                first.clone_from(&prev);
            }
            for (slot, c) in slots.zip(chunk.chunks(bs)).take(n.saturating_sub(1)) {
                slot.copy_from_slice(c);
            }
            // A following chunk exists only if this one is full, so its last block is whole.
            if let Some(last) = chunk.chunks_exact(bs).next_back() {
                prev.copy_from_slice(last);
            }
            for slot in inputs.iter_mut().take(n) {
                backend.encrypt_block(slot.into());
            }
            for (block, ks) in chunk.chunks_mut(bs).zip(inputs.iter()) {
                xor_into(block, ks);
            }
        }
    }
}

/// CFB-decrypts `data` in place with kcp-go's IV, keystream blocks computed independently.
pub(crate) fn decrypt<C: BlockCipherEncrypt>(cipher: &C, data: &mut [u8]) {
    cipher.encrypt_with_backend(Decrypt::<C::BlockSize> {
        data,
        _bs: PhantomData,
    });
}

/// Packets whose CFB chains [`encrypt_many`] interleaves.
const LANES: usize = 8;

struct EncryptMany<'a, 'b, BS: ArraySize> {
    packets: &'a mut [&'b mut [u8]],
    _bs: PhantomData<BS>,
}

impl<BS: ArraySize> BlockSizeUser for EncryptMany<'_, '_, BS> {
    type BlockSize = BS;
}

impl<BS: ArraySize> BlockCipherEncClosure for EncryptMany<'_, '_, BS> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = BS>>(self, backend: &B) {
        let bs = BS::USIZE;
        for group in self.packets.chunks_mut(LANES) {
            let mut feedback: [Array<u8, BS>; LANES] = core::array::from_fn(|_| iv::<BS>());
            let steps = group
                .iter()
                .map(|p| p.len().div_ceil(bs))
                .max()
                .unwrap_or(0);
            for step in 0..steps {
                let start = step * bs;
                // One block of every chain still running: independent cipher calls that the
                // CPU overlaps, instead of one latency-bound chain at a time.
                for (fb, p) in feedback.iter_mut().zip(group.iter()) {
                    if p.len() > start {
                        backend.encrypt_block(fb.into());
                    }
                }
                for (fb, p) in feedback.iter_mut().zip(group.iter_mut()) {
                    let end = (start + bs).min(p.len());
                    if let Some(block) = p.get_mut(start..end) {
                        for (f, b) in fb.iter_mut().zip(block.iter_mut()) {
                            *f ^= *b;
                            *b = *f;
                        }
                    }
                }
            }
        }
    }
}

/// CFB-encrypts every packet in place with kcp-go's IV, interleaving up to eight chains.
/// Same bytes as [`cfb_mode`] on each packet alone.
pub(crate) fn encrypt_many<C: BlockCipherEncrypt>(cipher: &C, packets: &mut [&mut [u8]]) {
    cipher.encrypt_with_backend(EncryptMany::<C::BlockSize> {
        packets,
        _bs: PhantomData,
    });
}
