//! Helpers shared by the integration tests.
#![allow(dead_code)]

use kcp_core::{Codec, CodecError, Millis};

/// A deterministic stand-in for an OS RNG. Tests only: it is not a CSPRNG.
pub use kcp_testkit::rng::Rng as TestRng;

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("valid hex")
}

/// Seals `payload` with `codec` at time 0, returning the sealed bytes.
pub fn seal(codec: &mut dyn Codec, payload: &[u8]) -> Vec<u8> {
    let h = codec.header_len();
    let mut buf = vec![0u8; h + payload.len() + codec.trailer_len()];
    buf[h..h + payload.len()].copy_from_slice(payload);
    let n = codec
        .seal(&mut buf, h + payload.len(), Millis(0))
        .expect("seal");
    buf.truncate(n);
    buf
}

/// Opens `sealed` with `codec` at time 0, returning the payload (crypto layers always deliver
/// what they open).
pub fn open(codec: &mut dyn Codec, sealed: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut buf = sealed.to_vec();
    let r = codec
        .open(&mut buf, Millis(0))?
        .expect("crypto layers always deliver");
    Ok(buf[r].to_vec())
}
