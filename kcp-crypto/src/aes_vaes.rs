//! AES-128 and AES-256 CFB decryption, and the CTR mode of AES-128-GCM, with VAES (AVX-512):
//! sixteen keystream blocks per loop, four per instruction.
//!
//! CFB decryption needs `E(C[i-1])` for every block, all known up front, so it parallelises
//! fully. The `aes` crate's VAES backend is tuned for long inputs; for kcp-go's ~1400-byte
//! packets its per-call overhead dominated (measured 2.4x kcp-go's decryption speed, against the
//! project's target of 3x; `docs/benchmarks.md`, "Packet crypto").
//! This loop expands the key once into registers-ready round keys and decrypts a packet in
//! place, back to front: block `i` is overwritten only after the blocks that use it as their
//! keystream input (block `i + 1` and later) are done. Used only when the CPU has AES-NI,
//! AVX-512F and VAES; otherwise `cfb-mode` runs. Checked against `cfb-mode` by the tests.

use core::arch::x86_64::*;

cpufeatures::new!(vaes_cpu, "aes", "avx512f", "vaes");

/// AES round keys for the VAES CFB decryptor (11 for AES-128, 15 for AES-256).
#[derive(Clone)]
pub(crate) struct AesVaes {
    rk: [[u8; 16]; 15],
    rounds: usize,
}

impl Drop for AesVaes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self.rk.as_flattened_mut());
    }
}

impl AesVaes {
    /// AES-128; `None` when the CPU lacks AES-NI, AVX-512F or VAES.
    pub(crate) fn new128(key: &[u8; 16]) -> Option<AesVaes> {
        if !vaes_cpu::get() {
            return None;
        }
        let mut rk = [[0u8; 16]; 15];
        // SAFETY: the CPU has AES-NI (checked above).
        let k = unsafe { expand128(key) };
        rk[..11].copy_from_slice(&k);
        Some(AesVaes { rk, rounds: 10 })
    }

    /// AES-256; `None` when the CPU lacks AES-NI, AVX-512F or VAES.
    pub(crate) fn new256(key: &[u8; 32]) -> Option<AesVaes> {
        if !vaes_cpu::get() {
            return None;
        }
        // SAFETY: the CPU has AES-NI (checked above).
        let rk = unsafe { expand256(key) };
        Some(AesVaes { rk, rounds: 14 })
    }

    /// One block encrypted (AES-GCM's hash key and tag mask).
    pub(crate) fn encrypt_block(&self, block: &[u8; 16]) -> [u8; 16] {
        // SAFETY: constructed only when the CPU has AES-NI, AVX-512F and VAES.
        unsafe { encrypt_block(&self.rk, self.rounds, block) }
    }

    /// CTR mode with a 32-bit big-endian counter (GCM's `inc32`): XORs into `data` the
    /// encryptions of `prefix || be32(first)`, `prefix || be32(first + 1)`, ...
    pub(crate) fn ctr32_xor(&self, prefix: &[u8; 12], first: u32, data: &mut [u8]) {
        // SAFETY: constructed only when the CPU has AES-NI, AVX-512F and VAES.
        unsafe { ctr32_xor_skip(&self.rk, self.rounds, prefix, first, data, None) }
    }

    /// GCM's CTR with a 96-bit nonce: XORs the keystream from counter 2 into `data` and
    /// returns block 1's (the tag mask `E(J0)`), computed in the same batch.
    pub(crate) fn ctr32_xor_gcm(&self, nonce: &[u8; 12], data: &mut [u8]) -> [u8; 16] {
        let mut mask = [0u8; 16];
        // SAFETY: constructed only when the CPU has AES-NI, AVX-512F and VAES.
        unsafe { ctr32_xor_skip(&self.rk, self.rounds, nonce, 1, data, Some(&mut mask)) };
        mask
    }

    /// CFB-128 decryption of `data` in place with initial vector `iv`.
    pub(crate) fn cfb_decrypt(&self, iv: &[u8; 16], data: &mut [u8]) {
        // SAFETY: constructed only when the CPU has AES-NI, AVX-512F and VAES.
        unsafe { cfb_decrypt(&self.rk, self.rounds, iv, data) }
    }
}

#[target_feature(enable = "aes,sse2")]
unsafe fn expand256(key: &[u8; 32]) -> [[u8; 16]; 15] {
    let mut out = [[0u8; 16]; 15];
    let mut a = _mm_loadu_si128(key.as_ptr().cast());
    let mut b = _mm_loadu_si128(key.as_ptr().add(16).cast());
    _mm_storeu_si128(out[0].as_mut_ptr().cast(), a);
    _mm_storeu_si128(out[1].as_mut_ptr().cast(), b);
    #[inline(always)]
    unsafe fn mix(mut k: __m128i, t: __m128i) -> __m128i {
        k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        _mm_xor_si128(k, t)
    }
    macro_rules! even {
        ($i:expr, $rcon:expr) => {{
            let t = _mm_aeskeygenassist_si128::<$rcon>(b);
            a = mix(a, _mm_shuffle_epi32::<0xff>(t));
            _mm_storeu_si128(out[$i].as_mut_ptr().cast(), a);
        }};
    }
    macro_rules! odd {
        ($i:expr) => {{
            let t = _mm_aeskeygenassist_si128::<0>(a);
            b = mix(b, _mm_shuffle_epi32::<0xaa>(t));
            _mm_storeu_si128(out[$i].as_mut_ptr().cast(), b);
        }};
    }
    even!(2, 0x01);
    odd!(3);
    even!(4, 0x02);
    odd!(5);
    even!(6, 0x04);
    odd!(7);
    even!(8, 0x08);
    odd!(9);
    even!(10, 0x10);
    odd!(11);
    even!(12, 0x20);
    odd!(13);
    even!(14, 0x40);
    out
}

#[target_feature(enable = "aes,sse2")]
unsafe fn expand128(key: &[u8; 16]) -> [[u8; 16]; 11] {
    let mut out = [[0u8; 16]; 11];
    let mut k = _mm_loadu_si128(key.as_ptr().cast());
    _mm_storeu_si128(out[0].as_mut_ptr().cast(), k);
    macro_rules! round {
        ($i:expr, $rcon:expr) => {{
            let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(k));
            k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
            k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
            k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
            k = _mm_xor_si128(k, t);
            _mm_storeu_si128(out[$i].as_mut_ptr().cast(), k);
        }};
    }
    round!(1, 0x01);
    round!(2, 0x02);
    round!(3, 0x04);
    round!(4, 0x08);
    round!(5, 0x10);
    round!(6, 0x20);
    round!(7, 0x40);
    round!(8, 0x80);
    round!(9, 0x1b);
    round!(10, 0x36);
    out
}

#[target_feature(enable = "aes,sse2")]
unsafe fn encrypt1(rk: &[__m128i], block: __m128i) -> __m128i {
    let n = rk.len() - 1;
    let mut b = _mm_xor_si128(block, rk[0]);
    for k in &rk[1..n] {
        b = _mm_aesenc_si128(b, *k);
    }
    _mm_aesenclast_si128(b, rk[n])
}

#[target_feature(enable = "aes,sse2,avx512f,vaes")]
unsafe fn encrypt4(rk: &[__m512i], b: __m512i) -> __m512i {
    let n = rk.len() - 1;
    let mut b = _mm512_xor_si512(b, rk[0]);
    for k in &rk[1..n] {
        b = _mm512_aesenc_epi128(b, *k);
    }
    _mm512_aesenclast_epi128(b, rk[n])
}

#[target_feature(enable = "aes,sse2")]
unsafe fn encrypt_block(keys: &[[u8; 16]; 15], rounds: usize, block: &[u8; 16]) -> [u8; 16] {
    let mut rk = [_mm_setzero_si128(); 15];
    let nk = (rounds + 1).min(15);
    for (r, k) in rk.iter_mut().zip(keys).take(nk) {
        *r = _mm_loadu_si128(k.as_ptr().cast());
    }
    let b = encrypt1(&rk[..nk], _mm_loadu_si128(block.as_ptr().cast()));
    let mut out = [0u8; 16];
    _mm_storeu_si128(out.as_mut_ptr().cast(), b);
    out
}

#[target_feature(enable = "aes,sse2,avx512f,vaes")]
/// CTR32 from counter `first`; with `skip`, the first keystream block goes there instead of
/// into `data`.
unsafe fn ctr32_xor_skip(
    keys: &[[u8; 16]; 15],
    rounds: usize,
    prefix: &[u8; 12],
    first: u32,
    data: &mut [u8],
    mut skip: Option<&mut [u8; 16]>,
) {
    let mut rk4_all = [_mm512_setzero_si512(); 15];
    let nk = (rounds + 1).min(15);
    let rk4 = &mut rk4_all[..nk];
    for i in 0..nk {
        rk4[i] = _mm512_broadcast_i32x4(_mm_loadu_si128(keys[i].as_ptr().cast()));
    }
    // Sixteen counter blocks; only their last four bytes change from batch to batch.
    let mut ctr = [0u8; 256];
    for blk in ctr.chunks_exact_mut(16) {
        blk[..12].copy_from_slice(prefix);
    }
    let mut ks = [0u8; 256];
    let mut next = first;
    let mut rest = data;
    while !rest.is_empty() || skip.is_some() {
        for blk in ctr.chunks_exact_mut(16) {
            blk[12..].copy_from_slice(&next.to_be_bytes());
            next = next.wrapping_add(1);
        }
        let p = ctr.as_ptr();
        let mut b0 = _mm512_xor_si512(_mm512_loadu_si512(p.cast()), rk4[0]);
        let mut b1 = _mm512_xor_si512(_mm512_loadu_si512(p.add(64).cast()), rk4[0]);
        let mut b2 = _mm512_xor_si512(_mm512_loadu_si512(p.add(128).cast()), rk4[0]);
        let mut b3 = _mm512_xor_si512(_mm512_loadu_si512(p.add(192).cast()), rk4[0]);
        for k in &rk4[1..nk - 1] {
            b0 = _mm512_aesenc_epi128(b0, *k);
            b1 = _mm512_aesenc_epi128(b1, *k);
            b2 = _mm512_aesenc_epi128(b2, *k);
            b3 = _mm512_aesenc_epi128(b3, *k);
        }
        let q = ks.as_mut_ptr();
        _mm512_storeu_si512(q.cast(), _mm512_aesenclast_epi128(b0, rk4[nk - 1]));
        _mm512_storeu_si512(q.add(64).cast(), _mm512_aesenclast_epi128(b1, rk4[nk - 1]));
        _mm512_storeu_si512(q.add(128).cast(), _mm512_aesenclast_epi128(b2, rk4[nk - 1]));
        _mm512_storeu_si512(q.add(192).cast(), _mm512_aesenclast_epi128(b3, rk4[nk - 1]));
        let ks = match skip.take() {
            Some(m) => {
                m.copy_from_slice(&ks[..16]);
                &ks[16..]
            }
            None => &ks[..],
        };
        let n = rest.len().min(ks.len());
        let (chunk, tail) = rest.split_at_mut(n);
        for (d, k) in chunk.iter_mut().zip(ks) {
            *d ^= *k;
        }
        rest = tail;
    }
}

#[target_feature(enable = "aes,sse2,avx512f,vaes")]
unsafe fn cfb_decrypt(keys: &[[u8; 16]; 15], rounds: usize, iv: &[u8; 16], data: &mut [u8]) {
    let mut rk_all = [_mm_setzero_si128(); 15];
    let mut rk4_all = [_mm512_setzero_si512(); 15];
    let nk = (rounds + 1).min(15);
    let rk = &mut rk_all[..nk];
    let rk4 = &mut rk4_all[..nk];
    for i in 0..nk {
        rk[i] = _mm_loadu_si128(keys[i].as_ptr().cast());
        rk4[i] = _mm512_broadcast_i32x4(rk[i]);
    }
    let len = data.len();
    let full = len / 16;
    let p = data.as_mut_ptr();
    let ivv = _mm_loadu_si128(iv.as_ptr().cast());
    // Keystream input of block i: ciphertext block i - 1, or the IV for block 0.
    let input = |i: usize| -> __m128i {
        if i == 0 {
            ivv
        } else {
            // SAFETY: i - 1 < full, a whole block inside `data`.
            unsafe { _mm_loadu_si128(p.add((i - 1) * 16).cast()) }
        }
    };
    // The partial tail block first (its input, the last full block, is still ciphertext).
    let tail = len % 16;
    if tail > 0 {
        let ks = encrypt1(rk, input(full));
        let mut k = [0u8; 16];
        _mm_storeu_si128(k.as_mut_ptr().cast(), ks);
        for (j, kb) in k.iter().enumerate().take(tail) {
            *p.add(full * 16 + j) ^= kb;
        }
    }
    // Full blocks back to front: 16 at a time (4 x 4 lanes), then 4, then 1.
    let mut end = full; // blocks [end, full) are done
    while end >= 17 {
        let s = end - 16;
        // Inputs are blocks s-1 .. s+15, contiguous in memory.
        let base = p.add((s - 1) * 16);
        let i0 = _mm512_loadu_si512(base.cast());
        let i1 = _mm512_loadu_si512(base.add(64).cast());
        let i2 = _mm512_loadu_si512(base.add(128).cast());
        let i3 = _mm512_loadu_si512(base.add(192).cast());
        let mut b0 = _mm512_xor_si512(i0, rk4[0]);
        let mut b1 = _mm512_xor_si512(i1, rk4[0]);
        let mut b2 = _mm512_xor_si512(i2, rk4[0]);
        let mut b3 = _mm512_xor_si512(i3, rk4[0]);
        for k in &rk4[1..nk - 1] {
            b0 = _mm512_aesenc_epi128(b0, *k);
            b1 = _mm512_aesenc_epi128(b1, *k);
            b2 = _mm512_aesenc_epi128(b2, *k);
            b3 = _mm512_aesenc_epi128(b3, *k);
        }
        b0 = _mm512_aesenclast_epi128(b0, rk4[nk - 1]);
        b1 = _mm512_aesenclast_epi128(b1, rk4[nk - 1]);
        b2 = _mm512_aesenclast_epi128(b2, rk4[nk - 1]);
        b3 = _mm512_aesenclast_epi128(b3, rk4[nk - 1]);
        let out = p.add(s * 16);
        let c0 = _mm512_loadu_si512(out.cast());
        let c1 = _mm512_loadu_si512(out.add(64).cast());
        let c2 = _mm512_loadu_si512(out.add(128).cast());
        let c3 = _mm512_loadu_si512(out.add(192).cast());
        _mm512_storeu_si512(out.cast(), _mm512_xor_si512(c0, b0));
        _mm512_storeu_si512(out.add(64).cast(), _mm512_xor_si512(c1, b1));
        _mm512_storeu_si512(out.add(128).cast(), _mm512_xor_si512(c2, b2));
        _mm512_storeu_si512(out.add(192).cast(), _mm512_xor_si512(c3, b3));
        end = s;
    }
    while end >= 5 {
        let s = end - 4;
        let ks = encrypt4(rk4, _mm512_loadu_si512(p.add((s - 1) * 16).cast()));
        let out = p.add(s * 16);
        _mm512_storeu_si512(
            out.cast(),
            _mm512_xor_si512(_mm512_loadu_si512(out.cast()), ks),
        );
        end = s;
    }
    while end > 0 {
        let i = end - 1;
        let ks = encrypt1(rk, input(i));
        let out = p.add(i * 16);
        _mm_storeu_si128(out.cast(), _mm_xor_si128(_mm_loadu_si128(out.cast()), ks));
        end = i;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use cipher::{InnerIvInit, KeyInit};

    #[test]
    fn matches_cfb_mode_for_every_length() {
        let key = [7u8; 16];
        let has = std::is_x86_feature_detected!("aes")
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("vaes");
        let v = AesVaes::new128(&key);
        assert_eq!(v.is_some(), has, "VAES detection disagrees with the CPU");
        // Without VAES the crate uses cfb-mode, which other tests check.
        let Some(v) = v else { return };
        let iv = crate::INITIAL_VECTOR;
        let aes = aes::Aes128Enc::new(&key.into());
        for len in 0..700 {
            let plain: std::vec::Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let mut ct = plain.clone();
            cfb_mode::Encryptor::<&aes::Aes128Enc>::inner_iv_init(&aes, &iv.into())
                .encrypt(&mut ct);
            let mut out = ct.clone();
            v.cfb_decrypt(&iv, &mut out);
            assert_eq!(out, plain, "length {len}");
        }
        let key256 = [9u8; 32];
        let v = AesVaes::new256(&key256).expect("VAES present");
        let aes = aes::Aes256Enc::new(&key256.into());
        for len in 0..700 {
            let plain: std::vec::Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
            let mut ct = plain.clone();
            cfb_mode::Encryptor::<&aes::Aes256Enc>::inner_iv_init(&aes, &iv.into())
                .encrypt(&mut ct);
            let mut out = ct.clone();
            v.cfb_decrypt(&iv, &mut out);
            assert_eq!(out, plain, "AES-256, length {len}");
        }
    }
}
