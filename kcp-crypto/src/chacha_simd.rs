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

const M26: u64 = 0x3ff_ffff;

/// Poly1305 in radix 2^26: `h` the accumulator, `r` the clamped key, `s` the final addend.
struct Poly1305 {
    h: [u64; 5],
    r: [u64; 5],
    s: [u8; 16],
}

impl Drop for Poly1305 {
    fn drop(&mut self) {
        self.h.zeroize();
        self.r.zeroize();
        self.s.zeroize();
    }
}

fn le32(b: &[u8], i: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]))
}

/// The five 26-bit limbs of a 16-byte little-endian block, plus `hibit` at bit 128.
fn limbs(b: &[u8; 16], hibit: u64) -> [u64; 5] {
    [
        le32(b, 0) & M26,
        (le32(b, 3) >> 2) & M26,
        (le32(b, 6) >> 4) & M26,
        (le32(b, 9) >> 6) & M26,
        (le32(b, 12) >> 8) | hibit,
    ]
}

/// `h * r mod 2^130 - 5`, partly carried: limbs below 2^26 except limb 1 (below 2^26 + 2^6).
/// Inputs: limbs below 2^28 (products below 2^57, five of them summed below 2^60).
fn mul(h: &[u64; 5], r: &[u64; 5]) -> [u64; 5] {
    let s = [0, r[1] * 5, r[2] * 5, r[3] * 5, r[4] * 5];
    let d0 = h[0] * r[0] + h[1] * s[4] + h[2] * s[3] + h[3] * s[2] + h[4] * s[1];
    let d1 = h[0] * r[1] + h[1] * r[0] + h[2] * s[4] + h[3] * s[3] + h[4] * s[2];
    let d2 = h[0] * r[2] + h[1] * r[1] + h[2] * r[0] + h[3] * s[4] + h[4] * s[3];
    let d3 = h[0] * r[3] + h[1] * r[2] + h[2] * r[1] + h[3] * r[0] + h[4] * s[4];
    let d4 = h[0] * r[4] + h[1] * r[3] + h[2] * r[2] + h[3] * r[1] + h[4] * r[0];
    carry([d0, d1, d2, d3, d4])
}

fn carry(d: [u64; 5]) -> [u64; 5] {
    let [mut d0, mut d1, mut d2, mut d3, mut d4] = d;
    d1 += d0 >> 26;
    d0 &= M26;
    d2 += d1 >> 26;
    d1 &= M26;
    d3 += d2 >> 26;
    d2 &= M26;
    d4 += d3 >> 26;
    d3 &= M26;
    d0 += (d4 >> 26) * 5;
    d4 &= M26;
    d1 += d0 >> 26;
    d0 &= M26;
    [d0, d1, d2, d3, d4]
}

impl Poly1305 {
    fn new(key: &[u8; 32]) -> Poly1305 {
        let mut s = [0u8; 16];
        s.copy_from_slice(&key[16..]);
        Poly1305 {
            h: [0; 5],
            r: [
                le32(key, 0) & 0x3ff_ffff,
                (le32(key, 3) >> 2) & 0x3ff_ff03,
                (le32(key, 6) >> 4) & 0x3ff_c0ff,
                (le32(key, 9) >> 6) & 0x3f0_3fff,
                (le32(key, 12) >> 8) & 0x00f_ffff,
            ],
            s,
        }
    }

    fn block(&mut self, b: &[u8; 16]) {
        let m = limbs(b, 1 << 24);
        let mut h = self.h;
        for (x, y) in h.iter_mut().zip(m) {
            *x += y;
        }
        self.h = mul(&h, &self.r);
    }

    /// Whole 16-byte blocks of `data`, the last one zero-padded (RFC 8439's `pad16`).
    fn update_padded(&mut self, data: &[u8]) {
        let mut rest = data;
        if rest.len() >= 16 * 16 && use_avx512() {
            let n = rest.len() / 128 * 128;
            // SAFETY: checked just above.
            unsafe { self.blocks8_avx512(&rest[..n], &[]) };
            rest = &rest[n..];
        }
        if rest.len() >= 16 * 8 {
            let n = rest.len() / 64 * 64;
            // SAFETY: `Poly1305` is used only from the AVX2 functions above.
            unsafe { self.blocks4_avx2(&rest[..n]) };
            rest = &rest[n..];
        }
        let mut chunks = rest.chunks_exact(16);
        for c in &mut chunks {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            self.block(&b);
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut b = [0u8; 16];
            b[..tail.len()].copy_from_slice(tail);
            self.block(&b);
        }
    }

    /// The ciphertext (zero-padded) and the lengths block: with AVX-512, all of it in eight-lane
    /// steps, the last step taking the padded tail and the lengths block.
    fn message_and_lengths(&mut self, ct: &[u8], ad_len: usize) {
        if ct.len() < 128 || !use_avx512() {
            self.update_padded(ct);
            self.lengths(ad_len, ct.len());
            return;
        }
        let direct = ct.len() / 128 * 128;
        let rest = &ct[direct..];
        let mut tail = [0u8; 144];
        tail[..rest.len()].copy_from_slice(rest);
        let padded = rest.len().div_ceil(16) * 16;
        tail[padded..padded + 8].copy_from_slice(&(ad_len as u64).to_le_bytes());
        tail[padded + 8..padded + 16].copy_from_slice(&(ct.len() as u64).to_le_bytes());
        // SAFETY: checked just above.
        unsafe { self.blocks8_avx512(&ct[..direct], &tail[..padded + 16]) };
    }

    fn lengths(&mut self, ad: usize, ct: usize) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(ad as u64).to_le_bytes());
        b[8..].copy_from_slice(&(ct as u64).to_le_bytes());
        self.block(&b);
    }

    fn finish(&mut self) -> [u8; 16] {
        // Full carry, then reduce below p = 2^130 - 5.
        let mut h = carry(self.h);
        h[2] += h[1] >> 26;
        h[1] &= M26;
        h[3] += h[2] >> 26;
        h[2] &= M26;
        h[4] += h[3] >> 26;
        h[3] &= M26;
        h[0] += (h[4] >> 26) * 5;
        h[4] &= M26;
        h[1] += h[0] >> 26;
        h[0] &= M26;
        // g = h + 5 - 2^130; keep it if it does not borrow (h >= p).
        let mut g = [0u64; 5];
        let mut c = 5u64;
        for i in 0..5 {
            let t = h[i] + c;
            c = t >> 26;
            g[i] = t & M26;
        }
        // c is the carry out of bit 130: h + 5 >= 2^130, i.e. h >= p, so h - p = g mod 2^130.
        let use_g = c.wrapping_neg();
        for i in 0..5 {
            h[i] = (h[i] & !use_g) | (g[i] & use_g);
        }
        // h mod 2^128 + s.
        let h0 = h[0] | (h[1] << 26) | (h[2] << 52);
        let h1 = (h[2] >> 12) | (h[3] << 14) | (h[4] << 40);
        let lo = u128::from(h0) | (u128::from(h1) << 64);
        let out = lo.wrapping_add(u128::from_le_bytes(self.s));
        out.to_le_bytes()
    }

    /// Blocks of `data` (a multiple of 128 bytes, at least 128), then of `tail` (whole blocks,
    /// at most 144 bytes) eight at a time: the four-lane scheme below on 512-bit registers.
    /// A last step of n < 8 blocks puts them in lanes 8 - n .. 8 of a zero chunk without the
    /// 2^128 bit in the empty lanes (so those add nothing) and multiplies the running lanes by
    /// r^n instead of r^8.
    #[target_feature(enable = "avx512f")]
    unsafe fn blocks8_avx512(&mut self, data: &[u8], tail: &[u8]) {
        let mut pw = [[0u64; 5]; 9];
        pw[1] = self.r;
        for k in 2..9 {
            pw[k] = mul(&pw[k - 1], &self.r);
        }
        let v = |k: usize, i: usize| pw[k][i] as i64;
        let mut m8 = [_mm512_setzero_si512(); 5];
        let mut m8s = [_mm512_setzero_si512(); 5];
        // The loads put blocks 0, 4, 1, 5, 2, 6, 3, 7 in lanes 0..8; block j's last step
        // multiplies by r^(8 - j).
        let mut last = [_mm512_setzero_si512(); 5];
        let mut lasts = [_mm512_setzero_si512(); 5];
        for i in 0..5 {
            m8[i] = _mm512_set1_epi64(v(8, i));
            m8s[i] = _mm512_set1_epi64(v(8, i) * 5);
            last[i] = _mm512_set_epi64(
                v(1, i),
                v(5, i),
                v(2, i),
                v(6, i),
                v(3, i),
                v(7, i),
                v(4, i),
                v(8, i),
            );
            lasts[i] = _mm512_set_epi64(
                v(1, i) * 5,
                v(5, i) * 5,
                v(2, i) * 5,
                v(6, i) * 5,
                v(3, i) * 5,
                v(7, i) * 5,
                v(4, i) * 5,
                v(8, i) * 5,
            );
        }
        let mask = _mm512_set1_epi64(M26 as i64);
        let hibit = _mm512_set1_epi64(1 << 24);
        let load = |p: &[u8], hibit: __m512i| -> [__m512i; 5] {
            // SAFETY: `p` holds 128 bytes (the chunks below); unaligned loads.
            let (a, b) = unsafe {
                (
                    _mm512_loadu_si512(p.as_ptr().cast()),
                    _mm512_loadu_si512(p[64..128].as_ptr().cast()),
                )
            };
            let lo = _mm512_unpacklo_epi64(a, b);
            let hi = _mm512_unpackhi_epi64(a, b);
            [
                _mm512_and_si512(lo, mask),
                _mm512_and_si512(_mm512_srli_epi64::<26>(lo), mask),
                _mm512_and_si512(
                    _mm512_or_si512(_mm512_srli_epi64::<52>(lo), _mm512_slli_epi64::<12>(hi)),
                    mask,
                ),
                _mm512_and_si512(_mm512_srli_epi64::<14>(hi), mask),
                _mm512_or_si512(_mm512_srli_epi64::<40>(hi), hibit),
            ]
        };
        let mulv = |h: &[__m512i; 5], r: &[__m512i; 5], s: &[__m512i; 5]| -> [__m512i; 5] {
            let m = |a, b| _mm512_mul_epu32(a, b);
            let add = |a, b| _mm512_add_epi64(a, b);
            let d0 = add(
                add(m(h[0], r[0]), m(h[1], s[4])),
                add(add(m(h[2], s[3]), m(h[3], s[2])), m(h[4], s[1])),
            );
            let d1 = add(
                add(m(h[0], r[1]), m(h[1], r[0])),
                add(add(m(h[2], s[4]), m(h[3], s[3])), m(h[4], s[2])),
            );
            let d2 = add(
                add(m(h[0], r[2]), m(h[1], r[1])),
                add(add(m(h[2], r[0]), m(h[3], s[4])), m(h[4], s[3])),
            );
            let d3 = add(
                add(m(h[0], r[3]), m(h[1], r[2])),
                add(add(m(h[2], r[1]), m(h[3], r[0])), m(h[4], s[4])),
            );
            let d4 = add(
                add(m(h[0], r[4]), m(h[1], r[3])),
                add(add(m(h[2], r[2]), m(h[3], r[1])), m(h[4], r[0])),
            );
            let (mut d0, mut d1, mut d2, mut d3, mut d4) = (d0, d1, d2, d3, d4);
            let sr = |a| _mm512_srli_epi64::<26>(a);
            // Two carry chains side by side (0 -> 1 -> 2 -> 3 and 3 -> 4 -> 0 -> 1): limbs
            // end below 2^26 except 1 and 4 (below 2^26 + 2^12).
            let and = |a| _mm512_and_si512(a, mask);
            let (c0, c3) = (sr(d0), sr(d3));
            d0 = and(d0);
            d3 = and(d3);
            d1 = add(d1, c0);
            d4 = add(d4, c3);
            let (c1, c4) = (sr(d1), sr(d4));
            d1 = and(d1);
            d4 = and(d4);
            d2 = add(d2, c1);
            d0 = add(d0, add(c4, _mm512_slli_epi64::<2>(c4)));
            let (c2, c0) = (sr(d2), sr(d0));
            d2 = and(d2);
            d0 = and(d0);
            d3 = add(d3, c2);
            d1 = add(d1, c0);
            let c3 = sr(d3);
            d3 = and(d3);
            d4 = add(d4, c3);
            [d0, d1, d2, d3, d4]
        };
        let mut chunks = data.chunks_exact(128);
        let Some(first) = chunks.next() else {
            return;
        };
        let mut acc = load(first, hibit);
        // The running accumulator enters with block 0 (lane 0).
        for (a, h) in acc.iter_mut().zip(self.h) {
            let hv = _mm512_set_epi64(0, 0, 0, 0, 0, 0, 0, h as i64);
            *a = _mm512_add_epi64(*a, hv);
        }
        let mut tail_chunks = tail.chunks_exact(128);
        for c in chunks.chain(&mut tail_chunks) {
            let m = load(c, hibit);
            let p = mulv(&acc, &m8, &m8s);
            for i in 0..5 {
                acc[i] = _mm512_add_epi64(p[i], m[i]);
            }
        }
        let rem = tail_chunks.remainder();
        let n = rem.len() / 16;
        if n > 0 {
            let mut buf = [0u8; 128];
            buf[128 - 16 * n..].copy_from_slice(&rem[..16 * n]);
            // Lane l holds block (l / 2) + 4 * (l % 2); blocks 8 - n .. 8 are real.
            let bit = |l: i64| -> i64 {
                if (l / 2) + 4 * (l % 2) >= 8 - n as i64 {
                    1 << 24
                } else {
                    0
                }
            };
            let hb = _mm512_set_epi64(
                bit(7),
                bit(6),
                bit(5),
                bit(4),
                bit(3),
                bit(2),
                bit(1),
                bit(0),
            );
            let m = load(&buf, hb);
            let mut rn = [_mm512_setzero_si512(); 5];
            let mut rns = [_mm512_setzero_si512(); 5];
            for i in 0..5 {
                rn[i] = _mm512_set1_epi64(v(n, i));
                rns[i] = _mm512_set1_epi64(v(n, i) * 5);
            }
            let p = mulv(&acc, &rn, &rns);
            for i in 0..5 {
                acc[i] = _mm512_add_epi64(p[i], m[i]);
            }
        }
        pw.as_flattened_mut().zeroize();
        let p = mulv(&acc, &last, &lasts);
        let mut h = [0u64; 5];
        for i in 0..5 {
            let mut lanes = [0u64; 8];
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), p[i]);
            h[i] = lanes.iter().sum();
        }
        self.h = carry(h);
    }

    /// Blocks of `data` (a multiple of 64 bytes, at least 64) four at a time.
    #[target_feature(enable = "avx2")]
    unsafe fn blocks4_avx2(&mut self, data: &[u8]) {
        let r1 = self.r;
        let r2 = mul(&r1, &r1);
        let r3 = mul(&r2, &r1);
        let r4 = mul(&r2, &r2);
        let v = |a: &[u64; 5], i: usize| a[i] as i64;
        // Every lane multiplies by r^4 while blocks remain...
        let mut m4 = [_mm256_setzero_si256(); 5];
        let mut m4s = [_mm256_setzero_si256(); 5];
        // ...and the last step multiplies lane (block) j by r^(4 - j). The loads below put
        // blocks 0, 2, 1, 3 in lanes 0..4.
        let mut last = [_mm256_setzero_si256(); 5];
        let mut lasts = [_mm256_setzero_si256(); 5];
        for i in 0..5 {
            m4[i] = _mm256_set1_epi64x(v(&r4, i));
            m4s[i] = _mm256_set1_epi64x(v(&r4, i) * 5);
            last[i] = _mm256_set_epi64x(v(&r1, i), v(&r3, i), v(&r2, i), v(&r4, i));
            lasts[i] =
                _mm256_set_epi64x(v(&r1, i) * 5, v(&r3, i) * 5, v(&r2, i) * 5, v(&r4, i) * 5);
        }
        let mask = _mm256_set1_epi64x(M26 as i64);
        let hibit = _mm256_set1_epi64x(1 << 24);
        let load = |p: &[u8]| -> [__m256i; 5] {
            // SAFETY: `p` holds 64 bytes (the chunks below); unaligned loads.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_si256(p.as_ptr().cast()),
                    _mm256_loadu_si256(p[32..64].as_ptr().cast()),
                )
            };
            let lo = _mm256_unpacklo_epi64(a, b);
            let hi = _mm256_unpackhi_epi64(a, b);
            [
                _mm256_and_si256(lo, mask),
                _mm256_and_si256(_mm256_srli_epi64::<26>(lo), mask),
                _mm256_and_si256(
                    _mm256_or_si256(_mm256_srli_epi64::<52>(lo), _mm256_slli_epi64::<12>(hi)),
                    mask,
                ),
                _mm256_and_si256(_mm256_srli_epi64::<14>(hi), mask),
                _mm256_or_si256(_mm256_srli_epi64::<40>(hi), hibit),
            ]
        };
        let mulv = |h: &[__m256i; 5], r: &[__m256i; 5], s: &[__m256i; 5]| -> [__m256i; 5] {
            let m = |a, b| _mm256_mul_epu32(a, b);
            let add = |a, b| _mm256_add_epi64(a, b);
            let d0 = add(
                add(m(h[0], r[0]), m(h[1], s[4])),
                add(add(m(h[2], s[3]), m(h[3], s[2])), m(h[4], s[1])),
            );
            let d1 = add(
                add(m(h[0], r[1]), m(h[1], r[0])),
                add(add(m(h[2], s[4]), m(h[3], s[3])), m(h[4], s[2])),
            );
            let d2 = add(
                add(m(h[0], r[2]), m(h[1], r[1])),
                add(add(m(h[2], r[0]), m(h[3], s[4])), m(h[4], s[3])),
            );
            let d3 = add(
                add(m(h[0], r[3]), m(h[1], r[2])),
                add(add(m(h[2], r[1]), m(h[3], r[0])), m(h[4], s[4])),
            );
            let d4 = add(
                add(m(h[0], r[4]), m(h[1], r[3])),
                add(add(m(h[2], r[2]), m(h[3], r[1])), m(h[4], r[0])),
            );
            let (mut d0, mut d1, mut d2, mut d3, mut d4) = (d0, d1, d2, d3, d4);
            let sr = |a| _mm256_srli_epi64::<26>(a);
            // Two carry chains side by side (0 -> 1 -> 2 -> 3 and 3 -> 4 -> 0 -> 1): limbs
            // end below 2^26 except 1 and 4 (below 2^26 + 2^12).
            let and = |a| _mm256_and_si256(a, mask);
            let (c0, c3) = (sr(d0), sr(d3));
            d0 = and(d0);
            d3 = and(d3);
            d1 = add(d1, c0);
            d4 = add(d4, c3);
            let (c1, c4) = (sr(d1), sr(d4));
            d1 = and(d1);
            d4 = and(d4);
            d2 = add(d2, c1);
            d0 = add(d0, add(c4, _mm256_slli_epi64::<2>(c4)));
            let (c2, c0) = (sr(d2), sr(d0));
            d2 = and(d2);
            d0 = and(d0);
            d3 = add(d3, c2);
            d1 = add(d1, c0);
            let c3 = sr(d3);
            d3 = and(d3);
            d4 = add(d4, c3);
            [d0, d1, d2, d3, d4]
        };
        let mut chunks = data.chunks_exact(64);
        let Some(first) = chunks.next() else {
            return;
        };
        let mut acc = load(first);
        // The running accumulator enters with block 0 (lane 0).
        for (a, h) in acc.iter_mut().zip(self.h) {
            let hv = _mm256_set_epi64x(0, 0, 0, h as i64);
            *a = _mm256_add_epi64(*a, hv);
        }
        for c in chunks {
            let m = load(c);
            let p = mulv(&acc, &m4, &m4s);
            for i in 0..5 {
                acc[i] = _mm256_add_epi64(p[i], m[i]);
            }
        }
        let p = mulv(&acc, &last, &lasts);
        let mut h = [0u64; 5];
        for i in 0..5 {
            let mut lanes = [0u64; 4];
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), p[i]);
            h[i] = lanes.iter().sum();
        }
        self.h = carry(h);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use chacha20poly1305::aead::{AeadInOut, KeyInit};
    use chacha20poly1305::ChaCha20Poly1305;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn reference_seal(key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        let a = ChaCha20Poly1305::new(&(*key).into());
        let tag = a
            .encrypt_inout_detached(&(*nonce).into(), ad, buf.into())
            .expect("seal");
        let mut t = [0u8; 16];
        t.copy_from_slice(&tag);
        t
    }

    fn check(key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], plain: &[u8]) {
        let Some(c) = ChaChaAvx2::new(key) else {
            return;
        };
        let mut want = plain.to_vec();
        let want_tag = reference_seal(key, nonce, ad, &mut want);
        let mut got = plain.to_vec();
        let tag = c.seal(nonce, ad, &mut got);
        assert_eq!(got, want, "ciphertext, length {}", plain.len());
        assert_eq!(tag, want_tag, "tag, length {}", plain.len());
        assert!(
            c.open(nonce, ad, &mut got, &tag),
            "open, length {}",
            plain.len()
        );
        assert_eq!(got, plain, "round trip, length {}", plain.len());
        // Any flipped bit of ciphertext or tag is rejected and leaves the buffer alone.
        if !plain.is_empty() {
            let mut ct = want.clone();
            ct[plain.len() / 2] ^= 0x10;
            let before = ct.clone();
            assert!(!c.open(nonce, ad, &mut ct, &tag));
            assert_eq!(ct, before);
        }
        let mut bad = tag;
        bad[15] ^= 1;
        let mut ct = want.clone();
        assert!(!c.open(nonce, ad, &mut ct, &bad));
    }

    std::thread_local! {
        pub(super) static NO_AVX512: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    }

    /// The AVX2-only batches (CPUs without AVX-512), on this thread.
    #[test]
    fn every_length_matches_the_crate_without_avx512() {
        NO_AVX512.with(|c| c.set(true));
        let key: [u8; 32] = core::array::from_fn(|i| (i * 13 + 7) as u8);
        let nonce: [u8; 12] = core::array::from_fn(|i| (i * 7 + 5) as u8);
        for len in 0..1600 {
            let plain: Vec<u8> = (0..len).map(|i| (i * 19 + 1) as u8).collect();
            check(&key, &nonce, &[], &plain);
        }
        NO_AVX512.with(|c| c.set(false));
    }

    #[test]
    fn detection_agrees_with_std() {
        assert_eq!(
            ChaChaAvx2::new(&[0; 32]).is_some(),
            std::is_x86_feature_detected!("avx2")
        );
    }

    /// RFC 8439, 2.8.2.
    #[test]
    fn rfc8439_vector() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [
            0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let ad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let Some(c) = ChaChaAvx2::new(&key) else {
            return;
        };
        let mut buf = plain.to_vec();
        let tag = c.seal(&nonce, &ad, &mut buf);
        assert_eq!(
            tag,
            [
                0x1a, 0xe1, 0x0b, 0x59, 0x4f, 0x09, 0xe2, 0x6a, 0x7e, 0x90, 0x2e, 0xcb, 0xd0, 0x60,
                0x06, 0x91
            ]
        );
        assert_eq!(buf[..4], [0xd3, 0x1a, 0x8d, 0x34]);
        assert_eq!(buf[buf.len() - 2..], [0x61, 0x16]);
    }

    #[test]
    fn every_length_matches_the_crate() {
        let key: [u8; 32] = core::array::from_fn(|i| (i * 11 + 1) as u8);
        let nonce: [u8; 12] = core::array::from_fn(|i| (i * 3 + 2) as u8);
        for len in 0..1600 {
            let plain: Vec<u8> = (0..len).map(|i| (i * 29 + 3) as u8).collect();
            check(&key, &nonce, &[], &plain);
        }
        check(&key, &nonce, b"associated data", &[1, 2, 3]);
        check(&key, &nonce, &[0xaa; 200], &[5; 1400]);
    }

    /// Limbs at their largest: all-ones keys, plaintext whose ciphertext is all ones, so
    /// every block added to the accumulator is 2^129 - 1 (the reductions' worst case).
    #[test]
    fn extreme_values_match_the_crate() {
        let key = [0xff; 32];
        let nonce = [0xff; 12];
        for len in [0, 15, 16, 64, 127, 128, 129, 1024, 1400, 4096] {
            let mut plain = std::vec![0xffu8; len];
            // Ciphertext = keystream XOR plain; choose plain so the ciphertext is all 0xff.
            let mut ks = std::vec![0u8; len];
            reference_seal(&key, &nonce, &[], &mut ks);
            for (p, k) in plain.iter_mut().zip(&ks) {
                *p = 0xff ^ *k;
            }
            check(&key, &nonce, &[], &plain);
        }
    }

    proptest! {
        #[test]
        fn random_keys_nonces_and_lengths(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            ad in proptest::collection::vec(any::<u8>(), 0..40),
            plain in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            check(&key, &nonce, &ad, &plain);
        }
    }
}
