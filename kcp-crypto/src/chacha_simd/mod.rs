//! ChaCha20-Poly1305 (RFC 8439) with AVX2 on x86-64, used when the CPU has AVX2 (detected at
//! run time); other CPUs keep RustCrypto's `chacha20poly1305`, which is also this file's
//! test oracle.
//!
//! Why not the crate here: `poly1305` 0.9's AVX2 backend calls its vector helpers through
//! trait methods that are not compiled with AVX2 enabled, so every intrinsic becomes a
//! function call (about 1 GB/s), and the AEAD derives the Poly1305 key with a separate
//! ChaCha20 call. Measured on 1400-byte packets it ran at 0.3x Go's AEAD
//! (`docs/benchmarks.md`, "Packet crypto").
//!
//! * ChaCha20: one state word of eight (AVX2) or four (SSE2, for short tails) consecutive
//!   blocks per register, as in `salsa_simd.rs`. The first batch starts at block 0, whose
//!   first 32 bytes are the Poly1305 key; the rest of the batch already encrypts data.
//! * Poly1305: radix 2^26, four blocks per step in 64-bit lanes (each lane a Horner chain
//!   with r^4, the lanes' last step with r^4, r^3, r^2, r), the remaining blocks in scalar
//!   code with the same limbs.
//!
//! Keystream batches live in stack buffers that are not wiped (a volatile wipe of 1 KiB per
//! packet cost more than the Poly1305 pass); the key, the Poly1305 key and state are.
//!
//! `unsafe`: every `unsafe fn` here is unsafe only through its `#[target_feature]` (the caller
//! must have detected those features; the public entry points check them once, at key setup
//! or per call); raw loads and stores stay within arrays or slices whose lengths are checked
//! or fixed by their types, as the comments at each one say.

use core::arch::x86_64::*;

use zeroize::{Zeroize, ZeroizeOnDrop};

mod poly1305;

use poly1305::Poly1305;

cpufeatures::new!(avx2_cpu, "avx2");
cpufeatures::new!(avx512_cpu, "avx512f");

/// Whether to take the AVX-512 batches (the tests can turn them off per thread to cover the
/// AVX2 path on an AVX-512 machine).
fn use_avx512() -> bool {
    #[cfg(test)]
    if tests::NO_AVX512.with(|c| c.get()) {
        return false;
    }
    avx512_cpu::get()
}

/// "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// A ChaCha20-Poly1305 key for the AVX2 path, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChaChaAvx2 {
    key: [u8; 32],
}

impl ChaChaAvx2 {
    /// `None` when the CPU lacks AVX2 (the caller then uses the crate).
    pub(crate) fn new(key: &[u8; 32]) -> Option<ChaChaAvx2> {
        avx2_cpu::get().then_some(ChaChaAvx2 { key: *key })
    }

    /// Encrypts `buf` in place (no associated data in this crate's layouts: `ad` is
    /// authenticated all the same) and returns the tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        // SAFETY: a `ChaChaAvx2` exists only when the CPU has AVX2 (`new`).
        unsafe { seal_avx2(&self.key, nonce, ad, buf) }
    }

    /// Checks `tag` over `ad` and the ciphertext `buf`, then decrypts `buf` in place; on a bad
    /// tag `buf` is left as it was and `false` is returned.
    pub(crate) fn open(&self, nonce: &[u8; 12], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        // SAFETY: a `ChaChaAvx2` exists only when the CPU has AVX2 (`new`).
        unsafe { open_avx2(&self.key, nonce, ad, buf, tag) }
    }
}

fn state(key: &[u8; 32], nonce: &[u8; 12]) -> [u32; 16] {
    let w = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    [
        SIGMA[0],
        SIGMA[1],
        SIGMA[2],
        SIGMA[3],
        w(key, 0),
        w(key, 4),
        w(key, 8),
        w(key, 12),
        w(key, 16),
        w(key, 20),
        w(key, 24),
        w(key, 28),
        0,
        w(nonce, 0),
        w(nonce, 4),
        w(nonce, 8),
    ]
}

#[target_feature(enable = "avx2")]
unsafe fn seal_avx2(key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
    let st = state(key, nonce);
    let mut ks = [0u8; 1024];
    let (blocks, mut mac) = first_batch(&st, buf.len(), &mut ks);
    let (head, rest) = buf.split_at_mut(buf.len().min(blocks as usize * 64 - 64));
    xor_into(head, &ks[64..]);
    keystream_from(&st, blocks, rest);
    mac.update_padded(ad);
    mac.message_and_lengths(buf, ad.len());
    mac.finish()
}

#[target_feature(enable = "avx2")]
unsafe fn open_avx2(
    key: &[u8; 32],
    nonce: &[u8; 12],
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> bool {
    let st = state(key, nonce);
    // The first batch is kept: the ciphertext must be authenticated before it is decrypted
    // in place.
    let mut ks = [0u8; 1024];
    let (blocks, mut mac) = first_batch(&st, buf.len(), &mut ks);
    mac.update_padded(ad);
    mac.message_and_lengths(buf, ad.len());
    let got = mac.finish();
    // Constant-time comparison.
    let diff = got.iter().zip(tag).fold(0u8, |d, (a, b)| d | (a ^ b));
    if core::hint::black_box(diff) != 0 {
        return false;
    }
    let (head, rest) = buf.split_at_mut(buf.len().min(blocks as usize * 64 - 64));
    xor_into(head, &ks[64..]);
    keystream_from(&st, blocks, rest);
    true
}

/// The first keystream batch from block 0, sized for a message of `len` bytes (16, 8 or 4
/// blocks), into `ks`; returns its block count and the Poly1305 instance keyed with the
/// first 32 bytes of block 0. The rest of the batch encrypts the message's first bytes.
#[target_feature(enable = "avx2")]
unsafe fn first_batch(st: &[u32; 16], len: usize, ks: &mut [u8; 1024]) -> (u32, Poly1305) {
    let blocks = if len > 448 && use_avx512() {
        blocks16_avx512(st, 0, ks);
        16
    } else if let (true, Some(k)) = (len > 192, ks.first_chunk_mut::<512>()) {
        blocks8_avx2(st, 0, k);
        8
    } else {
        let mut k = [0u8; 256];
        blocks4_sse2(st, 0, &mut k);
        ks[..256].copy_from_slice(&k);
        4
    };
    let mut poly_key = [0u8; 32];
    poly_key.copy_from_slice(&ks[..32]);
    let mac = Poly1305::new(&poly_key);
    poly_key.zeroize();
    (blocks, mac)
}

/// XORs the keystream from block `counter` into `data`: eight blocks at a time while more
/// than four remain, then four.
#[target_feature(enable = "avx2")]
unsafe fn keystream_from(st: &[u32; 16], mut counter: u32, data: &mut [u8]) {
    let mut rest = data;
    // With AVX-512 a sixteen-block batch costs less than an eight-block AVX2 one (native
    // rotations), so it also serves tails of five to eight blocks.
    if rest.len() > 256 && use_avx512() {
        let mut ks16 = [0u8; 1024];
        while rest.len() > 256 {
            blocks16_avx512(st, counter, &mut ks16);
            let n = rest.len().min(1024);
            let (chunk, tail) = rest.split_at_mut(n);
            xor_into(chunk, &ks16);
            rest = tail;
            counter = counter.wrapping_add(16);
        }
    }
    let mut ks8 = [0u8; 512];
    while rest.len() > 256 {
        blocks8_avx2(st, counter, &mut ks8);
        let n = rest.len().min(512);
        let (chunk, tail) = rest.split_at_mut(n);
        xor_into(chunk, &ks8);
        rest = tail;
        counter = counter.wrapping_add(8);
    }
    let mut ks4 = [0u8; 256];
    while !rest.is_empty() {
        blocks4_sse2(st, counter, &mut ks4);
        let n = rest.len().min(256);
        let (chunk, tail) = rest.split_at_mut(n);
        xor_into(chunk, &ks4);
        rest = tail;
        counter = counter.wrapping_add(4);
    }
}

#[inline(always)]
fn xor_into(data: &mut [u8], ks: &[u8]) {
    for (d, k) in data.iter_mut().zip(ks) {
        *d ^= *k;
    }
}

/// One ChaCha quarter round on the lane-wise state `x`.
macro_rules! quarter {
    ($x:ident, $add:ident, $xor:ident, $rot:ident; $a:literal, $b:literal, $c:literal, $d:literal) => {
        $x[$a] = $add($x[$a], $x[$b]);
        $x[$d] = $rot!($xor($x[$d], $x[$a]), 16);
        $x[$c] = $add($x[$c], $x[$d]);
        $x[$b] = $rot!($xor($x[$b], $x[$c]), 12);
        $x[$a] = $add($x[$a], $x[$b]);
        $x[$d] = $rot!($xor($x[$d], $x[$a]), 8);
        $x[$c] = $add($x[$c], $x[$d]);
        $x[$b] = $rot!($xor($x[$b], $x[$c]), 7);
    };
}

/// Ten double rounds (columns, diagonals).
macro_rules! chacha20_rounds {
    ($x:ident, $add:ident, $xor:ident, $rot:ident) => {
        for _ in 0..10 {
            quarter!($x, $add, $xor, $rot; 0, 4, 8, 12);
            quarter!($x, $add, $xor, $rot; 1, 5, 9, 13);
            quarter!($x, $add, $xor, $rot; 2, 6, 10, 14);
            quarter!($x, $add, $xor, $rot; 3, 7, 11, 15);
            quarter!($x, $add, $xor, $rot; 0, 5, 10, 15);
            quarter!($x, $add, $xor, $rot; 1, 6, 11, 12);
            quarter!($x, $add, $xor, $rot; 2, 7, 8, 13);
            quarter!($x, $add, $xor, $rot; 3, 4, 9, 14);
        }
    };
}

macro_rules! rot128 {
    ($v:expr, $k:literal) => {{
        let v = $v;
        _mm_or_si128(_mm_slli_epi32::<$k>(v), _mm_srli_epi32::<{ 32 - $k }>(v))
    }};
}

macro_rules! rot256 {
    ($v:expr, 16) => {
        _mm256_shuffle_epi8(
            $v,
            _mm256_set_epi8(
                13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2, 13, 12, 15, 14, 9, 8, 11, 10,
                5, 4, 7, 6, 1, 0, 3, 2,
            ),
        )
    };
    ($v:expr, 8) => {
        _mm256_shuffle_epi8(
            $v,
            _mm256_set_epi8(
                14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3, 14, 13, 12, 15, 10, 9, 8, 11,
                6, 5, 4, 7, 2, 1, 0, 3,
            ),
        )
    };
    ($v:expr, $k:literal) => {{
        let v = $v;
        _mm256_or_si256(
            _mm256_slli_epi32::<$k>(v),
            _mm256_srli_epi32::<{ 32 - $k }>(v),
        )
    }};
}

macro_rules! rot512 {
    ($v:expr, $k:literal) => {
        _mm512_rol_epi32::<$k>($v)
    };
}

/// Keystream blocks `counter .. counter + 16` into `out` (64 bytes each, in order).
#[target_feature(enable = "avx512f")]
unsafe fn blocks16_avx512(st: &[u32; 16], counter: u32, out: &mut [u8; 1024]) {
    let mut input = [_mm512_setzero_si512(); 16];
    for (v, w) in input.iter_mut().zip(st) {
        *v = _mm512_set1_epi32(*w as i32);
    }
    let c = |i: u32| counter.wrapping_add(i) as i32;
    input[12] = _mm512_set_epi32(
        c(15),
        c(14),
        c(13),
        c(12),
        c(11),
        c(10),
        c(9),
        c(8),
        c(7),
        c(6),
        c(5),
        c(4),
        c(3),
        c(2),
        c(1),
        c(0),
    );
    let mut x = input;
    chacha20_rounds!(x, _mm512_add_epi32, _mm512_xor_si512, rot512);
    for (v, i) in x.iter_mut().zip(&input) {
        *v = _mm512_add_epi32(*v, *i);
    }
    // As in the AVX2 version, per 128-bit lane q: the lane holds blocks 4q..4q+4.
    for g in 0..4 {
        let t0 = _mm512_unpacklo_epi32(x[4 * g], x[4 * g + 1]);
        let t1 = _mm512_unpacklo_epi32(x[4 * g + 2], x[4 * g + 3]);
        let t2 = _mm512_unpackhi_epi32(x[4 * g], x[4 * g + 1]);
        let t3 = _mm512_unpackhi_epi32(x[4 * g + 2], x[4 * g + 3]);
        let rows = [
            _mm512_unpacklo_epi64(t0, t1),
            _mm512_unpackhi_epi64(t0, t1),
            _mm512_unpacklo_epi64(t2, t3),
            _mm512_unpackhi_epi64(t2, t3),
        ];
        for (b, r) in rows.iter().enumerate() {
            let lanes = [
                _mm512_extracti32x4_epi32::<0>(*r),
                _mm512_extracti32x4_epi32::<1>(*r),
                _mm512_extracti32x4_epi32::<2>(*r),
                _mm512_extracti32x4_epi32::<3>(*r),
            ];
            for (q, l) in lanes.iter().enumerate() {
                let off = (4 * q + b) * 64 + g * 16;
                // `off + 16 <= 1024`: q, b, g < 4.
                _mm_storeu_si128(out[off..off + 16].as_mut_ptr().cast(), *l);
            }
        }
    }
}

/// Keystream blocks `counter .. counter + 4` into `out` (64 bytes each, in order).
#[target_feature(enable = "sse2")]
unsafe fn blocks4_sse2(st: &[u32; 16], counter: u32, out: &mut [u8; 256]) {
    let mut input = [_mm_setzero_si128(); 16];
    for (v, w) in input.iter_mut().zip(st) {
        *v = _mm_set1_epi32(*w as i32);
    }
    let c = |i: u32| counter.wrapping_add(i) as i32;
    input[12] = _mm_set_epi32(c(3), c(2), c(1), c(0));
    let mut x = input;
    chacha20_rounds!(x, _mm_add_epi32, _mm_xor_si128, rot128);
    for (v, i) in x.iter_mut().zip(&input) {
        *v = _mm_add_epi32(*v, *i);
    }
    for g in 0..4 {
        let t0 = _mm_unpacklo_epi32(x[4 * g], x[4 * g + 1]);
        let t1 = _mm_unpacklo_epi32(x[4 * g + 2], x[4 * g + 3]);
        let t2 = _mm_unpackhi_epi32(x[4 * g], x[4 * g + 1]);
        let t3 = _mm_unpackhi_epi32(x[4 * g + 2], x[4 * g + 3]);
        let rows = [
            _mm_unpacklo_epi64(t0, t1),
            _mm_unpackhi_epi64(t0, t1),
            _mm_unpacklo_epi64(t2, t3),
            _mm_unpackhi_epi64(t2, t3),
        ];
        for (b, r) in rows.iter().enumerate() {
            let off = b * 64 + g * 16;
            // `off + 16 <= 256`: b, g < 4.
            _mm_storeu_si128(out[off..off + 16].as_mut_ptr().cast(), *r);
        }
    }
}

/// Keystream blocks `counter .. counter + 8` into `out` (64 bytes each, in order).
#[target_feature(enable = "avx2")]
unsafe fn blocks8_avx2(st: &[u32; 16], counter: u32, out: &mut [u8; 512]) {
    let mut input = [_mm256_setzero_si256(); 16];
    for (v, w) in input.iter_mut().zip(st) {
        *v = _mm256_set1_epi32(*w as i32);
    }
    let c = |i: u32| counter.wrapping_add(i) as i32;
    input[12] = _mm256_set_epi32(c(7), c(6), c(5), c(4), c(3), c(2), c(1), c(0));
    let mut x = input;
    chacha20_rounds!(x, _mm256_add_epi32, _mm256_xor_si256, rot256);
    for (v, i) in x.iter_mut().zip(&input) {
        *v = _mm256_add_epi32(*v, *i);
    }
    for g in 0..4 {
        let t0 = _mm256_unpacklo_epi32(x[4 * g], x[4 * g + 1]);
        let t1 = _mm256_unpacklo_epi32(x[4 * g + 2], x[4 * g + 3]);
        let t2 = _mm256_unpackhi_epi32(x[4 * g], x[4 * g + 1]);
        let t3 = _mm256_unpackhi_epi32(x[4 * g + 2], x[4 * g + 3]);
        let rows = [
            _mm256_unpacklo_epi64(t0, t1),
            _mm256_unpackhi_epi64(t0, t1),
            _mm256_unpacklo_epi64(t2, t3),
            _mm256_unpackhi_epi64(t2, t3),
        ];
        for (b, r) in rows.iter().enumerate() {
            let lo = b * 64 + g * 16;
            let hi = (b + 4) * 64 + g * 16;
            // `hi + 16 <= 512`: b, g < 4.
            _mm_storeu_si128(
                out[lo..lo + 16].as_mut_ptr().cast(),
                _mm256_castsi256_si128(*r),
            );
            _mm_storeu_si128(
                out[hi..hi + 16].as_mut_ptr().cast(),
                _mm256_extracti128_si256::<1>(*r),
            );
        }
    }
}

#[cfg(test)]
mod tests;
