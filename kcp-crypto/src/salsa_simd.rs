//! Salsa20/20 with SIMD on x86-64: four blocks at a time with SSE2 (part of the x86-64
//! baseline, always there) and eight at a time with AVX2 (detected at run time).
//!
//! Each vector register holds one of the sixteen state words of four (eight) consecutive
//! blocks, so a round is the scalar round applied lane-wise; the blocks differ only in their
//! counter words. After the rounds the words are transposed back into per-block order and the
//! keystream is written to a stack buffer, which the caller XORs into the data in safe code.
//! Other CPUs, and this file's own tests as the oracle, use RustCrypto's `salsa20` (portable).
//!
//! `unsafe`: every `unsafe fn` here is unsafe only through its `#[target_feature]` (the caller
//! must have detected those features; the public entry points check them once, at key setup
//! or per call); raw loads and stores stay within arrays or slices whose lengths are checked
//! or fixed by their types, as the comments at each one say.

use core::arch::x86_64::*;

cpufeatures::new!(avx2_cpu, "avx2");

/// "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// The sixteen input words of block 0 (counter words 8 and 9 are set per lane later).
fn state(key: &[u8; 32], nonce: &[u8; 8]) -> [u32; 16] {
    let k = |i: usize| u32::from_le_bytes([key[i], key[i + 1], key[i + 2], key[i + 3]]);
    let n = |i: usize| u32::from_le_bytes([nonce[i], nonce[i + 1], nonce[i + 2], nonce[i + 3]]);
    [
        SIGMA[0],
        k(0),
        k(4),
        k(8),
        k(12),
        SIGMA[1],
        n(0),
        n(4),
        0,
        0,
        SIGMA[2],
        k(16),
        k(20),
        k(24),
        k(28),
        SIGMA[3],
    ]
}

/// XORs the Salsa20/20 keystream for `key` and `nonce` (block counter from 0) into `data`.
pub(crate) fn xor_keystream(key: &[u8; 32], nonce: &[u8; 8], data: &mut [u8]) {
    if avx2_cpu::get() {
        xor_with(key, nonce, data, true);
    } else {
        xor_with(key, nonce, data, false);
    }
}

/// The loop behind [`xor_keystream`]: eight-block AVX2 chunks while more than four blocks
/// remain (when `avx2`), four-block SSE2 chunks for the rest.
fn xor_with(key: &[u8; 32], nonce: &[u8; 8], data: &mut [u8], avx2: bool) {
    let st = state(key, nonce);
    let mut counter = 0u64;
    let mut rest = data;
    if avx2 {
        let mut ks = [0u8; 512];
        while rest.len() > 256 {
            // SAFETY: `avx2` is true only when the CPU has AVX2 (`xor_keystream`'s check, or
            // the tests' own detection).
            unsafe { blocks8_avx2(&st, counter, &mut ks) };
            let n = rest.len().min(512);
            let (chunk, tail) = rest.split_at_mut(n);
            xor_into(chunk, &ks);
            rest = tail;
            counter = counter.wrapping_add(8);
        }
    }
    let mut ks = [0u8; 256];
    while !rest.is_empty() {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { blocks4_sse2(&st, counter, &mut ks) };
        let n = rest.len().min(256);
        let (chunk, tail) = rest.split_at_mut(n);
        xor_into(chunk, &ks);
        rest = tail;
        counter = counter.wrapping_add(4);
    }
}

fn xor_into(data: &mut [u8], ks: &[u8]) {
    for (d, k) in data.iter_mut().zip(ks) {
        *d ^= *k;
    }
}

/// One Salsa20 step: `x[t] ^= rotl(x[a] + x[b], k)`.
macro_rules! step {
    ($x:ident, $add:ident, $xor:ident, $rot:ident; $t:literal, $a:literal, $b:literal, $k:literal) => {
        $x[$t] = $xor($x[$t], $rot!($add($x[$a], $x[$b]), $k));
    };
}

/// Ten double rounds (column round, row round) on the lane-wise state `x`.
macro_rules! salsa20_rounds {
    ($x:ident, $add:ident, $xor:ident, $rot:ident) => {
        for _ in 0..10 {
            step!($x, $add, $xor, $rot; 4, 0, 12, 7);
            step!($x, $add, $xor, $rot; 8, 4, 0, 9);
            step!($x, $add, $xor, $rot; 12, 8, 4, 13);
            step!($x, $add, $xor, $rot; 0, 12, 8, 18);
            step!($x, $add, $xor, $rot; 9, 5, 1, 7);
            step!($x, $add, $xor, $rot; 13, 9, 5, 9);
            step!($x, $add, $xor, $rot; 1, 13, 9, 13);
            step!($x, $add, $xor, $rot; 5, 1, 13, 18);
            step!($x, $add, $xor, $rot; 14, 10, 6, 7);
            step!($x, $add, $xor, $rot; 2, 14, 10, 9);
            step!($x, $add, $xor, $rot; 6, 2, 14, 13);
            step!($x, $add, $xor, $rot; 10, 6, 2, 18);
            step!($x, $add, $xor, $rot; 3, 15, 11, 7);
            step!($x, $add, $xor, $rot; 7, 3, 15, 9);
            step!($x, $add, $xor, $rot; 11, 7, 3, 13);
            step!($x, $add, $xor, $rot; 15, 11, 7, 18);

            step!($x, $add, $xor, $rot; 1, 0, 3, 7);
            step!($x, $add, $xor, $rot; 2, 1, 0, 9);
            step!($x, $add, $xor, $rot; 3, 2, 1, 13);
            step!($x, $add, $xor, $rot; 0, 3, 2, 18);
            step!($x, $add, $xor, $rot; 6, 5, 4, 7);
            step!($x, $add, $xor, $rot; 7, 6, 5, 9);
            step!($x, $add, $xor, $rot; 4, 7, 6, 13);
            step!($x, $add, $xor, $rot; 5, 4, 7, 18);
            step!($x, $add, $xor, $rot; 11, 10, 9, 7);
            step!($x, $add, $xor, $rot; 8, 11, 10, 9);
            step!($x, $add, $xor, $rot; 9, 8, 11, 13);
            step!($x, $add, $xor, $rot; 10, 9, 8, 18);
            step!($x, $add, $xor, $rot; 12, 15, 14, 7);
            step!($x, $add, $xor, $rot; 13, 12, 15, 9);
            step!($x, $add, $xor, $rot; 14, 13, 12, 13);
            step!($x, $add, $xor, $rot; 15, 14, 13, 18);
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
    ($v:expr, $k:literal) => {{
        let v = $v;
        _mm256_or_si256(
            _mm256_slli_epi32::<$k>(v),
            _mm256_srli_epi32::<{ 32 - $k }>(v),
        )
    }};
}

/// Keystream blocks `counter .. counter + 4` into `out` (64 bytes each, in order).
///
/// # Safety
/// The CPU must have SSE2 (every x86-64 CPU does).
#[target_feature(enable = "sse2")]
unsafe fn blocks4_sse2(st: &[u32; 16], counter: u64, out: &mut [u8; 256]) {
    let mut input = [_mm_setzero_si128(); 16];
    for (v, w) in input.iter_mut().zip(st) {
        *v = _mm_set1_epi32(*w as i32);
    }
    let c = |i: u64| counter.wrapping_add(i);
    input[8] = _mm_set_epi32(c(3) as i32, c(2) as i32, c(1) as i32, c(0) as i32);
    input[9] = _mm_set_epi32(
        (c(3) >> 32) as i32,
        (c(2) >> 32) as i32,
        (c(1) >> 32) as i32,
        (c(0) >> 32) as i32,
    );
    let mut x = input;
    salsa20_rounds!(x, _mm_add_epi32, _mm_xor_si128, rot128);
    for (v, i) in x.iter_mut().zip(&input) {
        *v = _mm_add_epi32(*v, *i);
    }
    // Transpose each group of four words: lane b of x[4g..4g+4] is bytes 16g..16g+16 of
    // block b.
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
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
unsafe fn blocks8_avx2(st: &[u32; 16], counter: u64, out: &mut [u8; 512]) {
    let mut input = [_mm256_setzero_si256(); 16];
    for (v, w) in input.iter_mut().zip(st) {
        *v = _mm256_set1_epi32(*w as i32);
    }
    let c = |i: u64| counter.wrapping_add(i);
    input[8] = _mm256_set_epi32(
        c(7) as i32,
        c(6) as i32,
        c(5) as i32,
        c(4) as i32,
        c(3) as i32,
        c(2) as i32,
        c(1) as i32,
        c(0) as i32,
    );
    input[9] = _mm256_set_epi32(
        (c(7) >> 32) as i32,
        (c(6) >> 32) as i32,
        (c(5) >> 32) as i32,
        (c(4) >> 32) as i32,
        (c(3) >> 32) as i32,
        (c(2) >> 32) as i32,
        (c(1) >> 32) as i32,
        (c(0) >> 32) as i32,
    );
    let mut x = input;
    salsa20_rounds!(x, _mm256_add_epi32, _mm256_xor_si256, rot256);
    for (v, i) in x.iter_mut().zip(&input) {
        *v = _mm256_add_epi32(*v, *i);
    }
    // The unpacks work within each 128-bit half: the low half holds blocks 0..4, the high
    // half blocks 4..8, each transposed as in the SSE2 version.
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
mod tests {
    extern crate std;
    use super::*;
    use cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    use proptest::prelude::*;
    use std::vec::Vec;

    fn reference(key: &[u8; 32], nonce: &[u8; 8], data: &mut [u8], start_block: u64) {
        let mut s = salsa20::Salsa20::new(&(*key).into(), &(*nonce).into());
        s.seek(start_block * 64);
        s.apply_keystream(data);
    }

    fn has_avx2() -> bool {
        std::is_x86_feature_detected!("avx2")
    }

    #[test]
    fn detection_agrees_with_std() {
        assert_eq!(avx2_cpu::get(), has_avx2());
    }

    #[test]
    fn every_length_matches_the_portable_cipher() {
        let key: [u8; 32] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        let nonce = [9u8, 8, 7, 6, 5, 4, 3, 2];
        for len in 0..1600 {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 + 5) as u8).collect();
            let mut want = plain.clone();
            reference(&key, &nonce, &mut want, 0);
            let mut sse = plain.clone();
            xor_with(&key, &nonce, &mut sse, false);
            assert_eq!(sse, want, "SSE2, length {len}");
            if has_avx2() {
                let mut avx = plain.clone();
                xor_with(&key, &nonce, &mut avx, true);
                assert_eq!(avx, want, "AVX2, length {len}");
            }
            let mut auto = plain;
            xor_keystream(&key, &nonce, &mut auto);
            assert_eq!(auto, want, "detected backend, length {len}");
        }
    }

    /// Lanes whose low counter word wraps within one batch carry into word 9.
    #[test]
    fn counter_carries_into_the_high_word() {
        let key = [0x42u8; 32];
        let nonce = [1u8; 8];
        let st = state(&key, &nonce);
        let start = (1u64 << 32) - 3;
        let mut want = [0u8; 512];
        reference(&key, &nonce, &mut want, start);
        let mut sse = [0u8; 256];
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { blocks4_sse2(&st, start, &mut sse) };
        assert_eq!(sse[..], want[..256]);
        if has_avx2() {
            let mut avx = [0u8; 512];
            // SAFETY: AVX2 detected above.
            unsafe { blocks8_avx2(&st, start, &mut avx) };
            assert_eq!(avx[..], want[..]);
        }
    }

    proptest! {
        #[test]
        fn random_keys_nonces_and_lengths(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 8]>(),
            plain in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let mut want = plain.clone();
            reference(&key, &nonce, &mut want, 0);
            let mut sse = plain.clone();
            xor_with(&key, &nonce, &mut sse, false);
            prop_assert_eq!(&sse, &want);
            if has_avx2() {
                let mut avx = plain;
                xor_with(&key, &nonce, &mut avx, true);
                prop_assert_eq!(&avx, &want);
            }
        }
    }
}
