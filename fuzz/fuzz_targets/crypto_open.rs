//! Every packet cipher's open on arbitrary bytes: no panic; what opens lies inside the packet
//! and seals back to exactly the same bytes (kcp-go's layout is deterministic given its
//! nonce).
//!
//! Input: `selector (cipher index mod 14) || packet`. The key is kcptun's derivation of
//! `"kcp-rs live vectors"` (the password of interop/crypto-vectors, so its packets are valid
//! seeds), derived once for the whole run.
#![no_main]

use std::sync::OnceLock;

use kcp_core::{Codec, Millis};
use kcp_crypto::{BlockCrypt, CipherKind, PacketCrypt, PacketKey, Pass, HEADER_LEN, NONCE_LEN};
use libfuzzer_sys::fuzz_target;

/// The fuzz targets' password (also interop/crypto-vectors').
const PASSWORD: &[u8] = b"kcp-rs live vectors";

struct Zero;
impl rand_core::TryRng for Zero {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(0)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(0);
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Zero {}

/// One shared key per cipher, derived on the first input (PBKDF2 with 4096 iterations would
/// otherwise dominate every execution).
fn keys() -> &'static [PacketKey] {
    static KEYS: OnceLock<Vec<PacketKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pass = Pass::derive(PASSWORD);
        CipherKind::ALL
            .iter()
            .map(|&k| {
                PacketKey::new(
                    BlockCrypt::from_pass(k, &pass),
                    &mut rand_core::UnwrapErr(Zero),
                )
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    let keys = keys();
    let key = &keys[sel as usize % keys.len()];
    let mut c = PacketCrypt::with_key(key);
    let mut buf = pkt.to_vec();
    if let Ok(Some(r)) = c.open(&mut buf, Millis(0)) {
        assert!(r.start <= r.end && r.end <= buf.len());
        // Opened: sealing the plaintext again with its own nonce gives the packet back.
        let mut nonce = [0u8; NONCE_LEN];
        if key.cipher().kind() != CipherKind::Null {
            assert_eq!(r.start, HEADER_LEN);
            nonce.copy_from_slice(&buf[..NONCE_LEN]);
        }
        let len = buf.len();
        let n = c.seal_with_nonce(&mut buf, len, &nonce).expect("reseal");
        assert_eq!(&buf[..n], pkt);
    }
});
