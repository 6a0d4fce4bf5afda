//! AES-128-GCM (96-bit nonces) with VAES for the CTR part and VPCLMULQDQ for GHASH, sixteen
//! blocks per loop. Used when the CPU has AES-NI, AVX-512F/BW, VAES and VPCLMULQDQ
//! (detected at run time); otherwise `aes-gcm`, which is also this file's test oracle.
//!
//! Why: `aes-gcm` runs its CTR through the `aes` crate's VAES backend, whose per-call setup
//! dominated on ~1400-byte packets (the cost `aes_vaes.rs` already removed for CFB), and its
//! GHASH (`ghash` over `polyval`) reverses every block in scalar code and hashes four blocks
//! per reduction with 128-bit PCLMULQDQ: together 0.5x Go's AES-GCM.
//!
//! GHASH is computed as POLYVAL (RFC 8452, appendix A): GHASH(H, X) =
//! rev(POLYVAL(mulX(rev(H)), rev(X_1), ..., rev(X_n))), `rev` reversing the bytes of each
//! block. POLYVAL's product `a * b * x^-128` needs no bit reflection on PCLMULQDQ. Sixteen
//! blocks are multiplied by H^16 .. H^1 (four per 512-bit register), the products XORed
//! and reduced once.
//!
//! `unsafe`: every `unsafe fn` here is unsafe only through its `#[target_feature]` (the caller
//! must have detected those features; the public entry points check them once, at key setup
//! or per call); raw loads and stores stay within arrays or slices whose lengths are checked
//! or fixed by their types, as the comments at each one say.

use core::arch::x86_64::*;

use zeroize::Zeroize;

use crate::aes_vaes::AesVaes;

cpufeatures::new!(clmul_cpu, "pclmulqdq", "avx512f", "avx512bw", "vpclmulqdq");

/// A keyed AES-128-GCM for the VAES path: round keys and the POLYVAL powers of the hash key
/// (both wiped on drop).
#[derive(Clone)]
pub(crate) struct GcmVaes {
    aes: AesVaes,
    /// `pows[j]` = H'^(16 - j) for POLYVAL's key H', little-endian.
    pows: [[u8; 16]; 16],
}

impl Drop for GcmVaes {
    fn drop(&mut self) {
        self.pows.as_flattened_mut().zeroize();
    }
}

impl GcmVaes {
    /// `None` when the CPU lacks AES-NI, AVX-512F/BW, VAES or VPCLMULQDQ.
    pub(crate) fn new(key: &[u8; 16]) -> Option<GcmVaes> {
        if !clmul_cpu::get() {
            return None;
        }
        let aes = AesVaes::new128(key)?;
        let mut h = aes.encrypt_block(&[0; 16]);
        // mulX_POLYVAL(rev(H)).
        let x = u128::from_be_bytes(h);
        let mut hp = (x << 1) ^ if x >> 127 == 1 { 0xc2 << 120 | 1 } else { 0 };
        let mut pows = [[0u8; 16]; 16];
        pows[15] = hp.to_le_bytes();
        for j in (0..15).rev() {
            // SAFETY: the CPU has PCLMULQDQ (checked above).
            pows[j] = unsafe { dot_bytes(&pows[j + 1], &pows[15]) };
        }
        h.zeroize();
        hp.zeroize();
        Some(GcmVaes { aes, pows })
    }

    fn tag(&self, mask: &[u8; 16], ad: &[u8], ct: &[u8]) -> [u8; 16] {
        let mut acc = [0u8; 16];
        // AD: whole blocks, then the last one zero-padded.
        let whole = ad.len() / 16 * 16;
        self.absorb(&mut acc, &ad[..whole]);
        if whole < ad.len() {
            let mut b = [0u8; 16];
            b[..ad.len() - whole].copy_from_slice(&ad[whole..]);
            self.absorb(&mut acc, &b);
        }
        // Ciphertext: sixteen-block chunks straight from the buffer; the rest, zero-padded,
        // with the lengths block.
        let direct = ct.len() / 256 * 256;
        self.absorb(&mut acc, &ct[..direct]);
        let rest = &ct[direct..];
        let mut tail = [0u8; 272];
        tail[..rest.len()].copy_from_slice(rest);
        let padded = rest.len().div_ceil(16) * 16;
        tail[padded..padded + 8].copy_from_slice(&((ad.len() as u64) * 8).to_be_bytes());
        tail[padded + 8..padded + 16].copy_from_slice(&((ct.len() as u64) * 8).to_be_bytes());
        self.absorb(&mut acc, &tail[..padded + 16]);
        // rev(POLYVAL) XOR E(J0).
        let mut tag = [0u8; 16];
        for (i, t) in tag.iter_mut().enumerate() {
            *t = acc[15 - i] ^ mask[i];
        }
        tag
    }

    /// Hashes whole blocks (`data.len()` a multiple of 16) into the POLYVAL accumulator.
    fn absorb(&self, acc: &mut [u8; 16], data: &[u8]) {
        let mut chunks = data.chunks_exact(256);
        for c in &mut chunks {
            // SAFETY: a `GcmVaes` exists only when the CPU has the features `chunk16` needs.
            *acc = unsafe { chunk16(acc, c, &self.pows) };
        }
        let rem = chunks.remainder();
        if !rem.is_empty() {
            // The last n blocks of a zero chunk: zero blocks add nothing, block j of the n
            // is multiplied by H^(n - j), and the accumulator enters with the first of them.
            let pos = 256 - rem.len();
            let mut buf = [0u8; 256];
            buf[pos..].copy_from_slice(rem);
            for (i, b) in buf[pos..pos + 16].iter_mut().enumerate() {
                *b ^= acc[15 - i];
            }
            // SAFETY: as above.
            *acc = unsafe { chunk16(&[0; 16], &buf, &self.pows) };
        }
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        let mask = self.aes.ctr32_xor_gcm(nonce, buf);
        self.tag(&mask, ad, buf)
    }

    /// Checks `tag`, then decrypts `buf` in place; on a bad tag `buf` is left as it was and
    /// `false` is returned.
    pub(crate) fn open(&self, nonce: &[u8; 12], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        let mut j0 = [0u8; 16];
        j0[..12].copy_from_slice(nonce);
        j0[15] = 1;
        let mask = self.aes.encrypt_block(&j0);
        let got = self.tag(&mask, ad, buf);
        let diff = got.iter().zip(tag).fold(0u8, |d, (a, b)| d | (a ^ b));
        if core::hint::black_box(diff) != 0 {
            return false;
        }
        self.aes.ctr32_xor(nonce, 2, buf);
        true
    }
}

/// POLYVAL's product `a * b * x^-128` of two reduced field elements (the AES-GCM-SIV
/// reference `gfmul`: Karatsuba-free schoolbook product, two folding steps by
/// x^127 + x^126 + x^121 + 1).
#[target_feature(enable = "pclmulqdq,sse2")]
unsafe fn dot(a: __m128i, b: __m128i) -> __m128i {
    let lo = _mm_clmulepi64_si128::<0x00>(a, b);
    let hi = _mm_clmulepi64_si128::<0x11>(a, b);
    let mid = _mm_xor_si128(
        _mm_clmulepi64_si128::<0x10>(a, b),
        _mm_clmulepi64_si128::<0x01>(a, b),
    );
    reduce(
        _mm_xor_si128(lo, _mm_slli_si128::<8>(mid)),
        _mm_xor_si128(hi, _mm_srli_si128::<8>(mid)),
    )
}

/// Reduces the 256-bit product `hi:lo` to `hi:lo * x^-128` modulo POLYVAL's polynomial.
#[target_feature(enable = "pclmulqdq,sse2")]
unsafe fn reduce(lo: __m128i, hi: __m128i) -> __m128i {
    let poly = _mm_set_epi64x(0xc200_0000_0000_0000_u64 as i64, 1);
    let t = _mm_clmulepi64_si128::<0x10>(lo, poly);
    let lo = _mm_xor_si128(_mm_shuffle_epi32::<0x4e>(lo), t);
    let t = _mm_clmulepi64_si128::<0x10>(lo, poly);
    let lo = _mm_xor_si128(_mm_shuffle_epi32::<0x4e>(lo), t);
    _mm_xor_si128(lo, hi)
}

#[target_feature(enable = "pclmulqdq,sse2")]
unsafe fn dot_bytes(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    let r = dot(
        _mm_loadu_si128(a.as_ptr().cast()),
        _mm_loadu_si128(b.as_ptr().cast()),
    );
    let mut out = [0u8; 16];
    _mm_storeu_si128(out.as_mut_ptr().cast(), r);
    out
}

/// One sixteen-block step: `acc' = (acc + X_0) * H^16 + X_1 * H^15 + ... + X_15 * H`, with
/// the blocks `X_j` given in GHASH's byte order (reversed here).
#[target_feature(enable = "pclmulqdq,sse2,avx512f,avx512bw,vpclmulqdq")]
unsafe fn chunk16(acc: &[u8; 16], blocks: &[u8], pows: &[[u8; 16]; 16]) -> [u8; 16] {
    let blocks = &blocks[..256];
    let rev = _mm512_broadcast_i32x4(_mm_set_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let p = blocks.as_ptr();
    let k = pows.as_flattened().as_ptr();
    let mut lo = _mm512_setzero_si512();
    let mut hi = _mm512_setzero_si512();
    let mut mid = _mm512_setzero_si512();
    for i in 0..4 {
        // In bounds: `blocks` and `pows` are 256 bytes, i < 4.
        let mut x = _mm512_shuffle_epi8(_mm512_loadu_si512(p.add(64 * i).cast()), rev);
        if i == 0 {
            let a = _mm512_zextsi128_si512(_mm_loadu_si128(acc.as_ptr().cast()));
            x = _mm512_xor_si512(x, a);
        }
        let h = _mm512_loadu_si512(k.add(64 * i).cast());
        lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128::<0x00>(x, h));
        hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128::<0x11>(x, h));
        mid = _mm512_xor_si512(mid, _mm512_clmulepi64_epi128::<0x10>(x, h));
        mid = _mm512_xor_si512(mid, _mm512_clmulepi64_epi128::<0x01>(x, h));
    }
    let fold = |v: __m512i| -> __m128i {
        _mm_xor_si128(
            _mm_xor_si128(
                _mm512_extracti32x4_epi32::<0>(v),
                _mm512_extracti32x4_epi32::<1>(v),
            ),
            _mm_xor_si128(
                _mm512_extracti32x4_epi32::<2>(v),
                _mm512_extracti32x4_epi32::<3>(v),
            ),
        )
    };
    let (lo, hi, mid) = (fold(lo), fold(hi), fold(mid));
    let r = reduce(
        _mm_xor_si128(lo, _mm_slli_si128::<8>(mid)),
        _mm_xor_si128(hi, _mm_srli_si128::<8>(mid)),
    );
    let mut out = [0u8; 16];
    _mm_storeu_si128(out.as_mut_ptr().cast(), r);
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::Aes128Gcm;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn has_vaes() -> bool {
        std::is_x86_feature_detected!("aes")
            && std::is_x86_feature_detected!("pclmulqdq")
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("vaes")
            && std::is_x86_feature_detected!("vpclmulqdq")
    }

    fn check(key: &[u8; 16], nonce: &[u8; 12], ad: &[u8], plain: &[u8]) {
        let Some(g) = GcmVaes::new(key) else {
            assert!(!has_vaes(), "VAES present but not used");
            return;
        };
        let a = Aes128Gcm::new(&(*key).into());
        let mut want = plain.to_vec();
        let want_tag = a
            .encrypt_inout_detached(&(*nonce).into(), ad, want.as_mut_slice().into())
            .expect("seal");
        let mut got = plain.to_vec();
        let tag = g.seal(nonce, ad, &mut got);
        assert_eq!(got, want, "ciphertext, length {}", plain.len());
        assert_eq!(tag[..], want_tag[..], "tag, length {}", plain.len());
        assert!(g.open(nonce, ad, &mut got, &tag));
        assert_eq!(got, plain);
        if !plain.is_empty() {
            let mut ct = want.clone();
            ct[plain.len() / 3] ^= 0x80;
            let before = ct.clone();
            assert!(!g.open(nonce, ad, &mut ct, &tag));
            assert_eq!(ct, before);
        }
        let mut bad = tag;
        bad[0] ^= 1;
        assert!(!g.open(nonce, ad, &mut want.clone(), &bad));
    }

    #[test]
    fn detection_agrees_with_std() {
        assert_eq!(GcmVaes::new(&[0; 16]).is_some(), has_vaes());
    }

    /// The GCM specification's test case 4 (AES-128, 60-byte plaintext, 20 bytes of AD).
    #[test]
    fn gcm_spec_test_case_4() {
        let key = hex::decode("feffe9928665731c6d6a8f9467308308").unwrap();
        let nonce = hex::decode("cafebabefacedbaddecaf888").unwrap();
        let ad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let plain = hex::decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
        let Some(g) = GcmVaes::new(&key[..].try_into().unwrap()) else {
            assert!(!has_vaes());
            return;
        };
        let mut buf = plain.clone();
        let tag = g.seal(&nonce[..].try_into().unwrap(), &ad, &mut buf);
        assert_eq!(hex::encode(&buf), "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091");
        assert_eq!(hex::encode(tag), "5bc94fbc3221a5db94fae95ae7121a47");
    }

    #[test]
    fn every_length_matches_the_crate() {
        let key: [u8; 16] = core::array::from_fn(|i| (i * 17 + 5) as u8);
        let nonce: [u8; 12] = core::array::from_fn(|i| (i * 5 + 1) as u8);
        for len in 0..1600 {
            let plain: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            check(&key, &nonce, &[], &plain);
        }
        check(&key, &nonce, b"associated", &[9; 1400]);
    }

    proptest! {
        #[test]
        fn random_keys_nonces_and_lengths(
            key in any::<[u8; 16]>(),
            nonce in any::<[u8; 12]>(),
            ad in proptest::collection::vec(any::<u8>(), 0..40),
            plain in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            check(&key, &nonce, &ad, &plain);
        }
    }
}
