//! Poly1305 in radix 2^26 for the AVX2 ChaCha20-Poly1305: four blocks per step in 64-bit
//! lanes, the remaining blocks in scalar code with the same limbs.

use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::use_avx512;

const M26: u64 = 0x3ff_ffff;

/// Poly1305 in radix 2^26: `h` the accumulator, `r` the clamped key, `s` the final addend.
pub(super) struct Poly1305 {
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
    pub(super) fn new(key: &[u8; 32]) -> Poly1305 {
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
    pub(super) fn update_padded(&mut self, data: &[u8]) {
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
    pub(super) fn message_and_lengths(&mut self, ct: &[u8], ad_len: usize) {
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

    pub(super) fn finish(&mut self) -> [u8; 16] {
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
