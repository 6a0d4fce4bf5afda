//! Behaviour of every crypto layer through kcp-core's `Codec` boundary: round trips, tamper
//! detection, replay rejection, and no panics on arbitrary input.

mod common;

use common::{open, seal, TestRng};
use kcp_core::{Codec, CodecError, Millis};
use kcp_crypto::{AeadCrypt, AeadKind, BlockCrypt, CipherKind, PacketCrypt, Pass, ReplayAeadCrypt};
use proptest::prelude::*;

const NOW: Millis = Millis(0);

fn pass() -> Pass {
    Pass::from_bytes(core::array::from_fn(|i| {
        (i as u8).wrapping_mul(37).wrapping_add(11)
    }))
}

fn packet_pair(kind: CipherKind, seed: u64) -> (PacketCrypt, PacketCrypt) {
    let p = pass();
    (
        PacketCrypt::new(BlockCrypt::from_pass(kind, &p), &mut TestRng(seed)),
        PacketCrypt::new(BlockCrypt::from_pass(kind, &p), &mut TestRng(seed ^ 0xffff)),
    )
}

/// A named sender and receiver of one authenticated layer.
type Pair = (&'static str, Box<dyn Codec>, Box<dyn Codec>);

fn all_aead(seed: u64) -> Vec<Pair> {
    let p = pass();
    let mut out: Vec<Pair> = Vec::new();
    for kind in [AeadKind::Aes128Gcm, AeadKind::ChaCha20Poly1305] {
        out.push((
            kind.name(),
            Box::new(AeadCrypt::from_pass(kind, &p, &mut TestRng(seed))),
            Box::new(AeadCrypt::from_pass(kind, &p, &mut TestRng(seed + 1))),
        ));
        out.push((
            if kind == AeadKind::Aes128Gcm {
                "replay aes-128-gcm"
            } else {
                "replay chacha"
            },
            Box::new(ReplayAeadCrypt::from_pass(kind, &p, &mut TestRng(seed)).unwrap()),
            Box::new(ReplayAeadCrypt::from_pass(kind, &p, &mut TestRng(seed + 1)).unwrap()),
        ));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_cipher_round_trips_every_length(
        len in 0usize..=1500,
        seed in any::<u64>(),
        fill in any::<u8>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(fill | 1) ^ fill).collect();
        for kind in CipherKind::ALL {
            let (mut tx, mut rx) = packet_pair(kind, seed);
            let sealed = seal(&mut tx, &payload);
            prop_assert_eq!(sealed.len(), kind.header_len() + len);
            prop_assert_eq!(open(&mut rx, &sealed), Ok(payload.clone()), "{}", kind);
        }
        for (name, mut tx, mut rx) in all_aead(seed) {
            let sealed = seal(tx.as_mut(), &payload);
            prop_assert_eq!(sealed.len(), tx.header_len() + len + 16);
            prop_assert_eq!(open(rx.as_mut(), &sealed), Ok(payload.clone()), "{}", name);
        }
    }

    #[test]
    fn opening_arbitrary_bytes_never_panics_nor_delivers_garbage(
        data in proptest::collection::vec(any::<u8>(), 0..1600),
    ) {
        for kind in CipherKind::ALL {
            let (_, mut rx) = packet_pair(kind, 1);
            let mut buf = data.clone();
            if let Ok(Some(r)) = rx.open(&mut buf, NOW) {
                prop_assert!(r.end <= data.len());
            }
        }
        for (_, _, mut rx) in all_aead(1) {
            let mut buf = data.clone();
            // A random packet authenticates with probability 2^-128.
            prop_assert!(rx.open(&mut buf, NOW).is_err());
        }
    }
}

#[test]
fn every_bit_flip_after_the_nonce_is_rejected_by_the_crc() {
    let payload: Vec<u8> = (0..77u8).collect();
    for kind in CipherKind::ALL
        .into_iter()
        .filter(|k| *k != CipherKind::Null)
    {
        let (mut tx, mut rx) = packet_pair(kind, 42);
        let sealed = seal(&mut tx, &payload);
        for bit in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            match open(&mut rx, &bad) {
                Err(e) => assert_eq!(e, CodecError::Integrity, "{kind} bit {bit}"),
                // kcp-go's CRC does not cover the nonce: a flip that only changes nonce bytes
                // delivers exactly the original payload, never a modified one.
                Ok(inner) => {
                    assert!(bit < 16 * 8, "{kind}: flip of bit {bit} accepted");
                    assert_eq!(
                        inner, payload,
                        "{kind}: flip of bit {bit} changed the payload"
                    );
                }
            }
        }
        assert!(rx.stats().integrity_errors > 0);
    }
}

#[test]
fn every_bit_flip_is_rejected_by_the_aead_tag() {
    let payload: Vec<u8> = (0..77u8).collect();
    for (name, mut tx, mut rx) in all_aead(9) {
        let sealed = seal(tx.as_mut(), &payload);
        for bit in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let r = open(rx.as_mut(), &bad);
            assert!(r.is_err(), "{name}: flip of bit {bit} accepted");
        }
        assert_eq!(
            open(rx.as_mut(), &sealed).as_deref(),
            Ok(&payload[..]),
            "{name}"
        );
    }
}

#[test]
fn short_packets_are_truncated_errors() {
    for kind in CipherKind::ALL
        .into_iter()
        .filter(|k| *k != CipherKind::Null)
    {
        let (_, mut rx) = packet_pair(kind, 3);
        for len in 0..20 {
            let mut buf = vec![0u8; len];
            assert_eq!(
                rx.open(&mut buf, NOW),
                Err(CodecError::Truncated),
                "{kind} {len}"
            );
        }
        assert_eq!(rx.stats().truncated, 20);
    }
    for (name, _, mut rx) in all_aead(3) {
        let min = rx.header_len() + 16;
        for len in 0..min {
            let mut buf = vec![0u8; len];
            assert_eq!(
                rx.open(&mut buf, NOW),
                Err(CodecError::Truncated),
                "{name} {len}"
            );
        }
    }
}

#[test]
fn seal_refuses_buffers_without_room() {
    let (mut tx, _) = packet_pair(CipherKind::Aes128, 1);
    let mut buf = [0u8; 30];
    assert_eq!(
        tx.seal(&mut buf, 10, NOW),
        Err(CodecError::BufferTooSmall),
        "no header room"
    );
    assert_eq!(
        tx.seal(&mut buf, 31, NOW),
        Err(CodecError::BufferTooSmall),
        "len past buffer"
    );
    assert_eq!(tx.stats().seal_errors, 2);
    for (name, mut tx, _) in all_aead(1) {
        let mut buf = [0u8; 40];
        assert_eq!(
            tx.seal(&mut buf, 30, NOW),
            Err(CodecError::BufferTooSmall),
            "{name} tag room"
        );
    }
}

#[test]
fn nonces_differ_between_packets() {
    let (mut tx, _) = packet_pair(CipherKind::None, 5);
    let a = seal(&mut tx, b"same");
    let b = seal(&mut tx, b"same");
    assert_ne!(a[..16], b[..16]);
    assert_eq!(a[16..], b[16..]);
}

#[test]
fn replay_window_rejects_duplicates_and_accepts_reordering() {
    for kind in [AeadKind::Aes128Gcm, AeadKind::ChaCha20Poly1305] {
        let p = pass();
        let mut tx = ReplayAeadCrypt::from_pass(kind, &p, &mut TestRng(1)).unwrap();
        let mut rx = ReplayAeadCrypt::from_pass(kind, &p, &mut TestRng(2)).unwrap();
        let packets: Vec<Vec<u8>> = (0..10u8).map(|i| seal(&mut tx, &[i; 33])).collect();
        for i in [0usize, 3, 1, 2, 9, 4] {
            assert_eq!(
                open(&mut rx, &packets[i]),
                Ok(vec![i as u8; 33]),
                "{kind} packet {i}"
            );
        }
        for i in [0usize, 3, 9] {
            assert_eq!(
                open(&mut rx, &packets[i]),
                Err(CodecError::Replay),
                "{kind} replay {i}"
            );
        }
        assert_eq!(rx.stats().replays, 3);
        assert_eq!(open(&mut rx, &packets[5]), Ok(vec![5; 33]));
    }
}

#[test]
fn replay_layer_pins_its_first_peer_and_keeps_directions_apart() {
    let p = pass();
    let kind = AeadKind::Aes128Gcm;
    let mut a = ReplayAeadCrypt::from_pass(kind, &p, &mut TestRng(1)).unwrap();
    let mut b = ReplayAeadCrypt::from_pass(kind, &p, &mut TestRng(2)).unwrap();
    let mut other = ReplayAeadCrypt::from_pass(kind, &p, &mut TestRng(3)).unwrap();
    assert_ne!(a.sender_id(), b.sender_id());

    let a0 = seal(&mut a, b"from a");
    let b0 = seal(&mut b, b"from b");
    // Same sequence number, same shared key, different sender: different keystream.
    assert_ne!(a0[16..22], b0[16..22]);
    assert_eq!(open(&mut b, &a0).as_deref(), Ok(&b"from a"[..]));
    assert_eq!(open(&mut a, &b0).as_deref(), Ok(&b"from b"[..]));

    // b has pinned a; a packet from another session (valid for the key) is refused.
    let o0 = seal(&mut other, b"other");
    assert_eq!(open(&mut b, &o0), Err(CodecError::Replay));
    // A packet a sealed is never accepted back by a itself (its own id is not its peer's).
    let a1 = seal(&mut a, b"again");
    assert_eq!(open(&mut a, &a1), Err(CodecError::Replay));
}

#[test]
fn forged_packets_do_not_move_the_replay_window() {
    let p = pass();
    let mut tx =
        ReplayAeadCrypt::from_pass(AeadKind::ChaCha20Poly1305, &p, &mut TestRng(1)).unwrap();
    let mut rx =
        ReplayAeadCrypt::from_pass(AeadKind::ChaCha20Poly1305, &p, &mut TestRng(2)).unwrap();
    let first = seal(&mut tx, b"x");
    assert!(open(&mut rx, &first).is_ok());
    // A forged packet claiming a huge sequence number fails authentication...
    let mut forged = seal(&mut tx, b"y");
    forged[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(open(&mut rx, &forged), Err(CodecError::Integrity));
    // ...and does not push genuine packets out of the window.
    let second = seal(&mut tx, b"z");
    assert_eq!(open(&mut rx, &second).as_deref(), Ok(&b"z"[..]));
}

#[test]
fn names_select_ciphers_like_kcptun() {
    for kind in CipherKind::ALL {
        assert_eq!(CipherKind::from_name(kind.name()), Ok(kind));
        assert_eq!(kind.name().parse::<CipherKind>(), Ok(kind));
    }
    assert!(CipherKind::from_name("aes-256").is_err());
    assert_eq!(AeadKind::from_name("aes-128-gcm"), Ok(AeadKind::Aes128Gcm));
    assert!(PacketCrypt::from_password("rot13", b"k", &mut TestRng(0)).is_err());
    let c = PacketCrypt::from_password("sm4", b"it's a secrect", &mut TestRng(0)).unwrap();
    assert_eq!(c.cipher().kind(), CipherKind::Sm4);
}

#[test]
fn raw_keys_are_length_checked() {
    use kcp_crypto::CryptoError;
    assert!(matches!(
        BlockCrypt::new(CipherKind::Aes128, &[0; 15]),
        Err(CryptoError::BadKeyLength {
            min: 16,
            max: 16,
            got: 15
        })
    ));
    assert!(BlockCrypt::new(CipherKind::Aes256, &[0; 32]).is_ok());
    assert!(BlockCrypt::new(CipherKind::Blowfish, &[0; 3]).is_err());
    assert!(BlockCrypt::new(CipherKind::Twofish, &[0; 20]).is_err());
    assert!(BlockCrypt::new(CipherKind::Salsa20, &[1; 10]).is_ok());
    assert!(BlockCrypt::new(CipherKind::Xor, &[]).is_ok());
    assert!(AeadCrypt::new(AeadKind::ChaCha20Poly1305, &[0; 16], &mut TestRng(0)).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn batch_sealing_gives_the_same_bytes_as_one_by_one(
        lens in proptest::collection::vec(20usize..1520, 0..20),
        seed in any::<u64>(),
    ) {
        for kind in CipherKind::ALL {
            let (mut one, _) = packet_pair(kind, seed);
            let (mut many, mut rx) = packet_pair(kind, seed);
            let mut singles: Vec<Vec<u8>> = lens
                .iter()
                .map(|&n| (0..n).map(|i| (i as u8) ^ (n as u8)).collect())
                .collect();
            let mut batch = singles.clone();
            for p in singles.iter_mut() {
                let n = p.len();
                one.seal(p, n, NOW).unwrap();
            }
            let mut refs: Vec<&mut [u8]> = batch.iter_mut().map(|p| p.as_mut_slice()).collect();
            many.seal_many(&mut refs).unwrap();
            prop_assert_eq!(&batch, &singles, "{}", kind);
            for p in batch.iter_mut() {
                prop_assert!(rx.open(p, NOW).is_ok(), "{}", kind);
            }
        }
    }
}

#[test]
fn strided_sealing_opens_like_single_sealing() {
    for name in ["aes-128", "aes", "blowfish", "salsa20", "none", "null"] {
        let mut sealer = PacketCrypt::from_password(name, b"k", &mut TestRng(1)).unwrap();
        let mut opener = PacketCrypt::from_password(name, b"k", &mut TestRng(2)).unwrap();
        let hl = sealer.header_len();
        let stride = 1500;
        let count = 11; // more than one group of eight
        let mut buf = vec![0u8; count * stride];
        let mut lens = vec![0usize; count];
        for i in 0..count {
            let payload = 100 + i * 97;
            for (k, b) in buf[i * stride + hl..i * stride + hl + payload]
                .iter_mut()
                .enumerate()
            {
                *b = (k * 3 + i) as u8;
            }
            lens[i] = hl + payload;
        }
        sealer
            .seal_strided(&mut buf, stride, &mut lens, Millis(0))
            .unwrap();
        for i in 0..count {
            let pkt = &mut buf[i * stride..i * stride + lens[i]];
            let inner = opener.open(pkt, Millis(0)).unwrap().unwrap();
            let payload = &pkt[inner];
            assert_eq!(payload.len(), 100 + i * 97, "{name}");
            assert!(
                payload
                    .iter()
                    .enumerate()
                    .all(|(k, &b)| b == (k * 3 + i) as u8),
                "{name} packet {i}"
            );
        }
    }
}
