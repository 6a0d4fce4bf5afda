//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// A deterministic stand-in for an OS RNG. Tests only: it is not a CSPRNG.
pub use kcp_testkit::rng::Rng as TestRng;

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("valid hex")
}
