//! x86 kernels for `out (^)= c * input`: GFNI + AVX-512 and AVX2 split-nibble tables.
//!
//! Both are selected at run time (CPUID through `cpufeatures`, which works without `std`) and
//! checked byte for byte against the portable table kernel in the tests.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86")]
use core::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use super::Kernel;

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
const fn affine_matrix(c: u8) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < 8 {
        let mut row = 0u8;
        let mut j = 0;
        while j < 8 {
            if (super::mul_const(c, 1 << j) >> i) & 1 == 1 {
                row |= 1 << j;
            }
            j += 1;
        }
        m |= (row as u64) << (8 * (7 - i));
        i += 1;
    }
    m
}

const fn gen_affine() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = affine_matrix(c as u8);
        c += 1;
    }
    t
}

/// Split-nibble tables: `[c * x for x < 16]` then `[c * (x << 4) for x < 16]`.
const fn gen_nibbles() -> [[u8; 32]; 256] {
    let mut t = [[0u8; 32]; 256];
    let mut c = 0;
    while c < 256 {
        let mut x = 0;
        while x < 16 {
            t[c][x] = super::mul_const(c as u8, x as u8);
            t[c][16 + x] = super::mul_const(c as u8, (x as u8) << 4);
            x += 1;
        }
        c += 1;
    }
    t
}

static AFFINE: [u64; 256] = gen_affine();
static NIBBLES: [[u8; 32]; 256] = gen_nibbles();

#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn mul_gfni512(c: u8, input: &[u8], out: &mut [u8], add: bool) {
    let n = input.len().min(out.len());
    let m = _mm512_set1_epi64(AFFINE[c as usize] as i64);
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
    let rest = n - chunks * 64;
    if rest > 0 {
        let k = (1u64 << rest) - 1;
        // SAFETY: masked loads and stores touch only the `rest` bytes left in both slices.
        unsafe {
            let at = chunks * 64;
            let v = _mm512_maskz_loadu_epi8(k, ip.add(at) as *const i8);
            let mut p = _mm512_gf2p8affine_epi64_epi8::<0>(v, m);
            if add {
                p = _mm512_xor_si512(p, _mm512_maskz_loadu_epi8(k, op.add(at) as *const i8));
            }
            _mm512_mask_storeu_epi8(op.add(at) as *mut i8, k, p);
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn mul_avx2(c: u8, input: &[u8], out: &mut [u8], add: bool) {
    let n = input.len().min(out.len());
    let t = &NIBBLES[c as usize];
    // SAFETY: two 16-byte unaligned loads from a 32-byte array.
    let (tlo, thi) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr() as *const __m128i)),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr().add(16) as *const __m128i)),
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
    if done < n {
        // The tail through a 32-byte stack block, so it costs one vector step too.
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        let rest = n - done;
        a[..rest].copy_from_slice(&input[done..n]);
        b[..rest].copy_from_slice(&out[done..n]);
        // SAFETY: loads and stores on 32-byte stack arrays.
        unsafe {
            let v = _mm256_loadu_si256(a.as_ptr() as *const __m256i);
            let l = _mm256_and_si256(v, mask);
            let h = _mm256_and_si256(_mm256_srli_epi64::<4>(v), mask);
            let mut p = _mm256_xor_si256(_mm256_shuffle_epi8(tlo, l), _mm256_shuffle_epi8(thi, h));
            if add {
                p = _mm256_xor_si256(p, _mm256_loadu_si256(b.as_ptr() as *const __m256i));
            }
            _mm256_storeu_si256(b.as_mut_ptr() as *mut __m256i, p);
        }
        out[done..n].copy_from_slice(&b[..rest]);
    }
}

/// Multi-output kernel (GFNI only): `outs[j] = sum_i coefs[j * ins.len() + i] * ins[i]` over `len` bytes,
/// for `outs.len() <= MAX_OUTS`. Returns `false` (and does nothing) when kernel `k` is not
/// available or the arguments do not fit; the caller then falls back on pairwise products.
pub(super) fn matmul(
    k: Kernel,
    coefs: &[u8],
    ins: &[&[u8]],
    outs: &mut [&mut [u8]],
    len: usize,
) -> bool {
    let n_in = ins.len();
    if coefs.len() < outs.len() * n_in
        || ins.iter().any(|s| s.len() < len)
        || outs.iter().any(|s| s.len() < len)
    {
        return false;
    }
    macro_rules! dispatch {
        ($f:ident) => {
            // SAFETY: the CPU features of `$f` were checked by the caller's match arm; every
            // input and output holds at least `len` bytes and `coefs` enough coefficients
            // (checked above).
            unsafe {
                match outs.len() {
                    1 => $f::<1>(coefs, ins, outs, len),
                    2 => $f::<2>(coefs, ins, outs, len),
                    3 => $f::<3>(coefs, ins, outs, len),
                    4 => $f::<4>(coefs, ins, outs, len),
                    _ => return false,
                }
            }
        };
    }
    match k {
        Kernel::Gfni512 if has_gfni512::get() => dispatch!(matmul_gfni512),
        // AVX2 has too few registers to keep the split-nibble tables of a whole matrix; its
        // pairwise kernel measured faster, so the caller falls back on it.
        _ => return false,
    }
    true
}

/// # Safety
/// avx512f, avx512bw and gfni available; `ins` and `outs` at least `len` bytes each;
/// `coefs.len() >= N * ins.len()`; `outs.len() == N`.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn matmul_gfni512<const N: usize>(
    coefs: &[u8],
    ins: &[&[u8]],
    outs: &mut [&mut [u8]],
    len: usize,
) {
    let n_in = ins.len();
    let mut off = 0;
    while off < len {
        let rest = len - off;
        let mask: u64 = if rest >= 64 {
            u64::MAX
        } else {
            (1u64 << rest) - 1
        };
        let mut acc = [_mm512_setzero_si512(); N];
        for (i, input) in ins.iter().enumerate() {
            // SAFETY: the mask limits the load to bytes `off..len` of `input`.
            let v = unsafe { _mm512_maskz_loadu_epi8(mask, input.as_ptr().add(off) as *const i8) };
            for (j, a) in acc.iter_mut().enumerate() {
                let m = _mm512_set1_epi64(AFFINE[coefs[j * n_in + i] as usize] as i64);
                *a = _mm512_xor_si512(*a, _mm512_gf2p8affine_epi64_epi8::<0>(v, m));
            }
        }
        for (a, out) in acc.iter().zip(outs.iter_mut()) {
            // SAFETY: the mask limits the store to bytes `off..len` of `out`.
            unsafe { _mm512_mask_storeu_epi8(out.as_mut_ptr().add(off) as *mut i8, mask, *a) };
        }
        off += 64;
    }
}
