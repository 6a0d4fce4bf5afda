//! AES-128-GCM (96-bit nonces) with the CTR part on VAES (`aes_vaes.rs`) and GHASH from
//! RustCrypto's `ghash` (PCLMULQDQ, detected at run time). Used when the CPU has AES-NI,
//! AVX-512F and VAES; otherwise `aes-gcm`, which is also this file's test oracle.
//!
//! Why: `aes-gcm` runs its CTR through the `aes` crate's VAES backend, whose per-call setup
//! dominated on ~1400-byte packets (the same cost `aes_vaes.rs` removes for CFB); the hash
//! is the same crate either way.

use ghash::universal_hash::UniversalHash;
use ghash::GHash;
use zeroize::Zeroize;

use crate::aes_vaes::AesVaes;

/// A keyed AES-128-GCM for the VAES path: round keys and the GHASH key schedule (both wiped
/// on drop).
#[derive(Clone)]
pub(crate) struct GcmVaes {
    aes: AesVaes,
    ghash: GHash,
}

impl GcmVaes {
    /// `None` when the CPU lacks AES-NI, AVX-512F or VAES.
    pub(crate) fn new(key: &[u8; 16]) -> Option<GcmVaes> {
        let aes = AesVaes::new128(key)?;
        let mut h = aes.encrypt_block(&[0; 16]);
        let ghash = GHash::new(&h.into());
        h.zeroize();
        Some(GcmVaes { aes, ghash })
    }

    fn j0(nonce: &[u8; 12]) -> [u8; 16] {
        let mut j0 = [0u8; 16];
        j0[..12].copy_from_slice(nonce);
        j0[15] = 1;
        j0
    }

    fn tag(&self, nonce: &[u8; 12], ad: &[u8], ct: &[u8]) -> [u8; 16] {
        let mut g = self.ghash.clone();
        g.update_padded(ad);
        g.update_padded(ct);
        let mut lens = [0u8; 16];
        lens[..8].copy_from_slice(&((ad.len() as u64) * 8).to_be_bytes());
        lens[8..].copy_from_slice(&((ct.len() as u64) * 8).to_be_bytes());
        g.update(&[lens.into()]);
        let s = g.finalize();
        let mask = self.aes.encrypt_block(&Self::j0(nonce));
        let mut tag = [0u8; 16];
        for ((t, a), b) in tag.iter_mut().zip(s.iter()).zip(&mask) {
            *t = a ^ b;
        }
        tag
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        self.aes.ctr32_xor(nonce, 2, buf);
        self.tag(nonce, ad, buf)
    }

    /// Checks `tag`, then decrypts `buf` in place; on a bad tag `buf` is left as it was and
    /// `false` is returned.
    pub(crate) fn open(&self, nonce: &[u8; 12], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        let got = self.tag(nonce, ad, buf);
        let diff = got.iter().zip(tag).fold(0u8, |d, (a, b)| d | (a ^ b));
        if core::hint::black_box(diff) != 0 {
            return false;
        }
        self.aes.ctr32_xor(nonce, 2, buf);
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use aes_gcm::aead::{AeadInOut, KeyInit as _};
    use aes_gcm::Aes128Gcm;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn has_vaes() -> bool {
        std::is_x86_feature_detected!("aes")
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("vaes")
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
