//! Known-answer vectors produced by kcp-go v5.6.1 (every cipher, kcptun's key derivation, and a
//! complete KCP + FEC + AES-128 datagram); `docs/protocol.md`, "Known-answer vectors".

use kcp_core::{Codec, Millis};
use kcp_crypto::{BlockCrypt, CipherKind, PacketCrypt, Pass, XorTable, HEADER_LEN};

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("valid hex in test vector")
}

const PASS: &str = "25d7d7bd51050742d8d791f2b653c6c8b2366b7e25a124cf7a2e12eaf4ffa444";
const PLAIN: &str = "000102030405060708090a0b0c0d0e0f0370f9ac443322115200200004030201050000000600000000000000a0a1a2a3a4a5a6a7a8a9aaabac";

const SEALED: [(CipherKind, &str); 13] = [
    (CipherKind::Aes256, "86834343335b168ca911bf584a05f9901d7d84657ca41e9e54af331259020977680edd5f1f619cf62f55952a5eed2b23ac76726f509ba7dad2"),
    (CipherKind::Aes128, "ddd7e0a7981ba3e2a7f6d51f2a266318565003fbae2beac29c44cb40508247bd7ff93674006fdc10f47e44a14705c78052ce755d2fa0561dc9"),
    (CipherKind::Aes192, "b9db59f7dd1bce4922855fb7f8f8e261b7f297b22346009d6e9e2c9ff365d65c2a7b8c33d217aec00200f839ca351c17b8d2cab4f175b9ce10"),
    (CipherKind::Blowfish, "186797305116055ece6531b898c4b2353fa6ae9c51ee774cb27bf5331b5c79d1bf725922eccaf61451f397f9b243e16286c8e82c22a2d88f82"),
    (CipherKind::Twofish, "79a0668add94e7387471af7514bb1065111baf9a859b56dd61bf7fd3afea03f673a37f2d00c39725805b0957a59b7d50436a0bf6827ecbc5a7"),
    (CipherKind::Cast5, "bb8f8d2209e0131c7d027b3e28d6b4579bd82c278c7d11fa75cafd602d8e5166fd930a7df1d696df47211292e776ea03b13f0c7434f1125d46"),
    (CipherKind::TripleDes, "5dca5d4fac8f6accf083365ae9eb528a37a76c2086fcda1438968fdc884494568e7db7e3f1997c51d20ca06b5823bb3f4f31dc5589ca48fc90"),
    (CipherKind::Tea, "fc9c4eb4a8e9502bde3d3c8b0679084d855a2d009a46af1ddb5a99821ff5fcfce639e65190463ecc3c165b67ecce9e4921331536cc7d1a91fa"),
    (CipherKind::Xtea, "09256989438dfb5af0f2a323dfd1ac2c8996aa73c4e9b7f8095b8bb1590bf0ca6bac6fd383a8484c5e0b439aaef435fece4b53251e5af71c59"),
    (CipherKind::Sm4, "0340e44fd923bb2259e375a7ab6ee54dfadd4bdcfc0e6db2f5c9609162c490e052afcff021f7bb10236c69567143922fa3365ec0209d61c78a"),
    (CipherKind::Salsa20, "00010203040506079aaa6e7faf75365c53c59da55c5dd04220937b047afb89546fe920fe8c2a13c16d777caad64dc8e91507b1df547187f677"),
    (CipherKind::Xor, "0fff8b84a99173765c7011c3f60cb82368bef8aaf6a662029f521fbc1b79ae8df5af663f419b134e25a0d0f73e8e98a14b1a78e45ba78a0b55"),
    (CipherKind::None, PLAIN),
];

struct NoRng;
impl rand_core::TryRng for NoRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(7)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(7)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(7);
        Ok(())
    }
}
impl rand_core::TryCryptoRng for NoRng {}

#[test]
fn kcptun_key_derivation_matches_default_password() {
    assert_eq!(
        Pass::derive(b"it's a secrect").as_bytes()[..],
        unhex(PASS)[..]
    );
}

#[test]
fn xor_table_matches_kcp_go() {
    let table = XorTable::derive(&unhex(PASS));
    let t = table.as_bytes();
    assert_eq!(t.len(), 1500);
    assert_eq!(
        t[..32],
        unhex("0ffe8987ad94757154791bc8fa01b62c6bce0106b2954013cd523fbc1f7aac8c")[..]
    );
    assert_eq!(t[1496..], unhex("6a160114")[..]);
}

#[test]
fn every_cipher_encrypts_the_spec_packet_like_kcp_go() {
    let pass = Pass::derive(b"it's a secrect");
    for (kind, expected) in SEALED {
        let c = BlockCrypt::from_pass(kind, &pass);
        let mut p = unhex(PLAIN);
        c.encrypt(&mut p);
        assert_eq!(hex::encode(&p), expected, "encrypt {kind}");
        c.decrypt(&mut p);
        assert_eq!(hex::encode(&p), PLAIN, "decrypt {kind}");
    }
}

#[test]
fn every_cipher_seals_with_the_spec_nonce_and_crc() {
    let pass = Pass::derive(b"it's a secrect");
    let plain = unhex(PLAIN);
    let nonce: [u8; 16] = plain[..16].try_into().unwrap();
    for (kind, expected) in SEALED {
        let mut codec = PacketCrypt::new(BlockCrypt::from_pass(kind, &pass), &mut NoRng);
        let mut buf = plain.clone();
        buf[..HEADER_LEN].fill(0xee); // header room: the codec writes nonce and CRC itself
        let len = codec
            .seal_with_nonce(&mut buf, plain.len(), &nonce)
            .unwrap();
        assert_eq!(hex::encode(&buf[..len]), expected, "seal {kind}");
        let inner = codec.open(&mut buf, Millis(0)).unwrap().unwrap();
        assert_eq!(&buf[inner], &plain[HEADER_LEN..], "open {kind}");
    }
}

#[test]
fn complete_datagram_kcp_fec_crc_aes128() {
    let plain = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeffbdb3c4b500000000f1001f004433221151008000e803000000000000000000000500000068656c6c6f");
    let expected = "2d27105768eb5312570625efdad693e8d4e4a25f59451074af059225ee7438b9323b662fad7ff5f985451b5a0561699b1107a4d82b13d621b1";
    let pass = Pass::derive(b"it's a secrect");
    let mut codec = PacketCrypt::new(BlockCrypt::from_pass(CipherKind::Aes128, &pass), &mut NoRng);
    let mut buf = plain.clone();
    buf[16..20].fill(0);
    let nonce: [u8; 16] = plain[..16].try_into().unwrap();
    let len = codec
        .seal_with_nonce(&mut buf, plain.len(), &nonce)
        .unwrap();
    assert_eq!(hex::encode(&buf[..len]), expected);
    let inner = codec.open(&mut buf, Millis(0)).unwrap().unwrap();
    assert_eq!(&buf[inner], &plain[HEADER_LEN..]);
}

#[test]
fn null_has_no_header_and_passes_packets_through() {
    let pass = Pass::derive(b"it's a secrect");
    let mut codec = PacketCrypt::new(BlockCrypt::from_pass(CipherKind::Null, &pass), &mut NoRng);
    assert_eq!(codec.header_len(), 0);
    let mut buf = *b"plain kcp";
    assert_eq!(codec.seal(&mut buf, 9, Millis(0)), Ok(9));
    assert_eq!(&buf, b"plain kcp");
    assert_eq!(codec.open(&mut buf, Millis(0)), Ok(Some(0..9)));
}
