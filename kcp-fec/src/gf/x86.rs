//! x86 kernels for `out (^)= c * input`: GFNI + AVX-512 and AVX2 split-nibble tables.
//!
//! Both are selected at run time (CPUID through `cpufeatures`, which works without `std`) and
//! checked byte for byte against the portable table kernel in the tests.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86")]
use core::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use super::{mul, Kernel};

cpufeatures::new!(has_avx2, "avx2");
cpufeatures::new!(has_gfni512, "avx512f", "avx512bw", "gfni");

/// The fastest kernel available on this CPU.
pub(super) fn best() -> Kernel {
    if has_gfni512::get() {
        Kernel::Gfni512
    } else if has_avx2::get() {
        Kernel::Avx2
    } else {
        Kernel::Table
    }
}

/// Runs kernel `k` when the CPU has it; returns `false` (and does nothing) otherwise.
pub(super) fn run(k: Kernel, c: u8, input: &[u8], out: &mut [u8], add: bool) -> bool {
    debug_assert_eq!(input.len(), out.len());
    match k {
        Kernel::Gfni512 if has_gfni512::get() => {
            // SAFETY: the CPU supports avx512f, avx512bw and gfni (checked just above).
            unsafe { mul_gfni512(c, input, out, add) };
            true
        }
        Kernel::Avx2 if has_avx2::get() => {
            // SAFETY: the CPU supports avx2 (checked just above).
            unsafe { mul_avx2(c, input, out, add) };
            true
        }
        _ => false,
    }
}

/// The 8x8 bit matrix of "multiply by `c`" in the layout of `vgf2p8affineqb`: byte `7 - i` of
/// the qword holds the input bits that contribute to output bit `i`.
fn affine_matrix(c: u8) -> u64 {
    let mut m = 0u64;
    for i in 0..8 {
        let mut row = 0u8;
        for j in 0..8 {
            if (mul(c, 1 << j) >> i) & 1 == 1 {
                row |= 1 << j;
            }
        }
        m |= (row as u64) << (8 * (7 - i));
    }
    m
}

fn tail(c: u8, input: &[u8], out: &mut [u8], add: bool) {
    for (o, i) in out.iter_mut().zip(input) {
        let p = mul(c, *i);
        *o = if add { *o ^ p } else { p };
    }
}

#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn mul_gfni512(c: u8, input: &[u8], out: &mut [u8], add: bool) {
    let n = input.len().min(out.len());
    let m = _mm512_set1_epi64(affine_matrix(c) as i64);
    let chunks = n / 64;
    let ip = input.as_ptr();
    let op = out.as_mut_ptr();
    for k in 0..chunks {
        // SAFETY: k * 64 + 64 <= n <= len of both slices; unaligned loads and stores.
        unsafe {
            let v = _mm512_loadu_si512(ip.add(k * 64) as *const _);
            let mut p = _mm512_gf2p8affine_epi64_epi8::<0>(v, m);
            if add {
                p = _mm512_xor_si512(p, _mm512_loadu_si512(op.add(k * 64) as *const _));
            }
            _mm512_storeu_si512(op.add(k * 64) as *mut _, p);
        }
    }
    let done = chunks * 64;
    tail(c, &input[done..n], &mut out[done..n], add);
}

#[target_feature(enable = "avx2")]
unsafe fn mul_avx2(c: u8, input: &[u8], out: &mut [u8], add: bool) {
    let n = input.len().min(out.len());
    let mut lo = [0u8; 16];
    let mut hi = [0u8; 16];
    for x in 0..16u8 {
        lo[x as usize] = mul(c, x);
        hi[x as usize] = mul(c, x << 4);
    }
    // SAFETY: 16-byte unaligned loads from 16-byte arrays.
    let (tlo, thi) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(lo.as_ptr() as *const __m128i)),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(hi.as_ptr() as *const __m128i)),
        )
    };
    let mask = _mm256_set1_epi8(0x0f);
    let chunks = n / 32;
    let ip = input.as_ptr();
    let op = out.as_mut_ptr();
    for k in 0..chunks {
        // SAFETY: k * 32 + 32 <= n <= len of both slices; unaligned loads and stores.
        unsafe {
            let v = _mm256_loadu_si256(ip.add(k * 32) as *const __m256i);
            let l = _mm256_and_si256(v, mask);
            let h = _mm256_and_si256(_mm256_srli_epi64::<4>(v), mask);
            let mut p = _mm256_xor_si256(_mm256_shuffle_epi8(tlo, l), _mm256_shuffle_epi8(thi, h));
            if add {
                p = _mm256_xor_si256(p, _mm256_loadu_si256(op.add(k * 32) as *const __m256i));
            }
            _mm256_storeu_si256(op.add(k * 32) as *mut __m256i, p);
        }
    }
    let done = chunks * 32;
    tail(c, &input[done..n], &mut out[done..n], add);
}
