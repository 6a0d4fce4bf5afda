//! Arithmetic in GF(2^8) with klauspost's (and Backblaze's) field: generator polynomial
//! x^8+x^4+x^3+x^2+1 (0x11D), primitive element 2.
//!
//! The hot loop is `out (^)= c * input` byte-wise; it runs the fastest [`Kernel`] the CPU has,
//! chosen at run time (GFNI with AVX-512, AVX2 split-nibble tables, or a portable 256-entry
//! table), and every kernel gives identical bytes. [`kernel`] tells which one is in use.

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86;

/// The field's generator polynomial without the x^8 term (0x11D).
const POLY: u16 = 0x11D;

const fn gen_exp_log() -> ([u8; 512], [u8; 256]) {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    (exp, log)
}

const EXP_LOG: ([u8; 512], [u8; 256]) = gen_exp_log();
static EXP: [u8; 512] = EXP_LOG.0;
static LOG: [u8; 256] = EXP_LOG.1;

#[cfg_attr(
    not(any(target_arch = "x86", target_arch = "x86_64")),
    allow(dead_code)
)]
/// `a * b`, usable in constant evaluation (builds the kernels' tables at compile time).
pub(crate) const fn mul_const(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    EXP_LOG.0[EXP_LOG.1[a as usize] as usize + EXP_LOG.1[b as usize] as usize]
}

/// `a * b` in the field.
#[inline]
pub(crate) fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    let s = LOG[a as usize] as usize + LOG[b as usize] as usize;
    EXP[s]
}

/// The multiplicative inverse of `a`, `None` for zero.
#[inline]
pub(crate) fn inv(a: u8) -> Option<u8> {
    if a == 0 {
        return None;
    }
    Some(EXP[255 - LOG[a as usize] as usize])
}

/// `base^exp` in the field, with `0^0 = 1` (klauspost's `galExp`).
pub(crate) fn pow(base: u8, exp: usize) -> u8 {
    if exp == 0 {
        return 1;
    }
    if base == 0 {
        return 0;
    }
    let e = (LOG[base as usize] as usize * exp) % 255;
    EXP[e]
}

/// The 256 products `c * x` for every `x`.
#[inline]
pub(crate) fn mul_row(c: u8) -> [u8; 256] {
    let mut row = [0u8; 256];
    for (x, r) in row.iter_mut().enumerate() {
        *r = mul(c, x as u8);
    }
    row
}

/// A GF(2^8) multiply(-accumulate) kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// The SIMD variants exist on x86 only.
#[cfg_attr(
    not(any(target_arch = "x86", target_arch = "x86_64")),
    allow(dead_code)
)]
pub enum Kernel {
    /// Portable 256-entry table per coefficient.
    Table,
    /// AVX2 split-nibble tables (`vpshufb`), 32 bytes per step.
    Avx2,
    /// GFNI affine transform with AVX-512, 64 bytes per step.
    Gfni512,
}

/// The fastest kernel this CPU supports (detected once, without `std`).
pub fn kernel() -> Kernel {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        x86::best()
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        Kernel::Table
    }
}

/// `out[i] = c * input[i]` (or `out[i] ^= c * input[i]` when `add`) over the common length,
/// with kernel `k`; a kernel the CPU lacks falls back to [`Kernel::Table`]. Exposed so that
/// benchmarks and tests can compare the kernels; the codec picks [`kernel`] itself.
pub fn mul_with(k: Kernel, c: u8, input: &[u8], out: &mut [u8], add: bool) {
    let n = input.len().min(out.len());
    let (input, out) = (&input[..n], &mut out[..n]);
    if c == 0 {
        if !add {
            out.fill(0);
        }
        return;
    }
    if c == 1 {
        if add {
            for (o, i) in out.iter_mut().zip(input) {
                *o ^= *i;
            }
        } else {
            out.copy_from_slice(input);
        }
        return;
    }
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if x86::run(k, c, input, out, add) {
            return;
        }
    }
    let _ = k;
    mul_table(c, input, out, add);
}

/// Most outputs one pass of [`matmul`] computes (the accumulators stay in registers).
pub const MAX_OUTS: usize = 4;

/// Matrix times shards: `outs[j] = sum_i coefs[j * ins.len() + i] * ins[i]`, byte-wise over
/// the shortest length of all slices, with kernel `k` (falling back like [`mul_with`]). Each
/// input is read once per [`MAX_OUTS`] outputs. `coefs` must hold `outs.len() * ins.len()`
/// coefficients, row-major; missing ones count as zero.
pub fn matmul(k: Kernel, coefs: &[u8], ins: &[&[u8]], outs: &mut [&mut [u8]]) {
    let n_in = ins.len();
    let len = ins
        .iter()
        .map(|s| s.len())
        .chain(outs.iter().map(|s| s.len()))
        .min()
        .unwrap_or(0);
    for (c, chunk) in outs.chunks_mut(MAX_OUTS).enumerate() {
        let rows = coefs.get(c * MAX_OUTS * n_in..).unwrap_or(&[]);
        if rows.len() >= chunk.len() * n_in && n_in > 0 {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            {
                if x86::matmul(k, rows, ins, chunk, len) {
                    continue;
                }
            }
        }
        for (j, out) in chunk.iter_mut().enumerate() {
            let out = &mut out[..len];
            if n_in == 0 {
                out.fill(0);
            }
            for (i, input) in ins.iter().enumerate() {
                let c = rows.get(j * n_in + i).copied().unwrap_or(0);
                mul_with(k, c, &input[..len], out, i > 0);
            }
        }
    }
}

/// Portable kernel: one 256-entry row per coefficient.
pub(crate) fn mul_table(c: u8, input: &[u8], out: &mut [u8], add: bool) {
    let row = mul_row(c);
    if add {
        for (o, i) in out.iter_mut().zip(input) {
            *o ^= row[*i as usize];
        }
    } else {
        for (o, i) in out.iter_mut().zip(input) {
            *o = row[*i as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_matches_klauspost_tables() {
        // galois.go: logTable[2] = 1, expTable[8] = 29 (0x1d), 2*128 = 0x1d.
        assert_eq!(mul(2, 128), 0x1d);
        assert_eq!(EXP[8], 0x1d);
        for a in 1..=255u8 {
            let ia = inv(a).unwrap();
            assert_eq!(mul(a, ia), 1);
        }
        assert_eq!(pow(0, 0), 1);
        assert_eq!(pow(3, 2), mul(3, 3));
    }

    #[test]
    fn matmul_agrees_with_pairwise_table_products() {
        let ins_data: [[u8; 200]; 7] =
            core::array::from_fn(|i| core::array::from_fn(|j| (i * 53 + j * 29 + 1) as u8));
        let ins: [&[u8]; 7] = core::array::from_fn(|i| &ins_data[i][..]);
        for k in [Kernel::Table, Kernel::Avx2, Kernel::Gfni512] {
            for n_out in [1usize, 2, 3, 4, 5, 9] {
                for len in [0usize, 1, 31, 32, 63, 64, 65, 127, 200] {
                    let coefs: [u8; 63] = core::array::from_fn(|x| (x * 37 + n_out) as u8);
                    let mut outs_data = [[0xaau8; 200]; 9];
                    let mut want = [[0u8; 200]; 9];
                    for j in 0..n_out {
                        for i in 0..7 {
                            mul_table(coefs[j * 7 + i], &ins[i][..len], &mut want[j][..len], i > 0);
                        }
                    }
                    let mut outs: [&mut [u8]; 9] = Default::default();
                    for (o, d) in outs.iter_mut().zip(outs_data.iter_mut()) {
                        *o = &mut d[..len];
                    }
                    let short: [&[u8]; 7] = core::array::from_fn(|i| &ins[i][..len]);
                    matmul(k, &coefs[..n_out * 7], &short, &mut outs[..n_out]);
                    for j in 0..n_out {
                        assert_eq!(
                            outs_data[j][..len],
                            want[j][..len],
                            "{k:?} n_out={n_out} len={len}"
                        );
                        assert!(outs_data[j][len..].iter().all(|b| *b == 0xaa));
                    }
                }
            }
        }
    }

    #[test]
    fn every_kernel_agrees_with_the_table() {
        let input: [u8; 333] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        for k in [Kernel::Table, Kernel::Avx2, Kernel::Gfni512] {
            for c in [0u8, 1, 2, 3, 0x1d, 0x8e, 0xff] {
                for len in [0usize, 1, 31, 32, 33, 63, 64, 65, 200, 333] {
                    let mut want = [0x5au8; 333];
                    let mut got = want;
                    mul_table(c, &input[..len], &mut want[..len], true);
                    mul_with(k, c, &input[..len], &mut got[..len], true);
                    assert_eq!(want[..], got[..], "{k:?} c={c} len={len} add");
                    mul_table(c, &input[..len], &mut want[..len], false);
                    mul_with(k, c, &input[..len], &mut got[..len], false);
                    assert_eq!(want[..], got[..], "{k:?} c={c} len={len}");
                }
            }
        }
    }
}
