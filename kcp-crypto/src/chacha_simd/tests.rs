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
