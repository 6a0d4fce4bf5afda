//! What the stack targets share: kcp-go's AES packet crypto and FEC 10/3, each built once.
#![allow(dead_code)]

use std::sync::OnceLock;

use kcp_crypto::{BlockCrypt, CipherKind, PacketCrypt, Pass};
use kcp_fec::FecCode;
use kcp_testkit::rng::Rng;

/// Derived once: PBKDF2 per input would dominate the run.
pub fn pass() -> &'static Pass {
    static PASS: OnceLock<Pass> = OnceLock::new();
    PASS.get_or_init(|| Pass::derive(b"fuzz"))
}

/// The FEC 10/3 code, built once.
pub fn code() -> &'static FecCode {
    static CODE: OnceLock<FecCode> = OnceLock::new();
    CODE.get_or_init(|| FecCode::new(10, 3).expect("valid shards"))
}

/// AES-128 packet crypto under [`pass`], its nonces from the seeded generator.
pub fn crypt(seed: u64) -> PacketCrypt {
    PacketCrypt::new(
        BlockCrypt::from_pass(CipherKind::Aes128, pass()),
        &mut rand_core::UnwrapErr(Rng::new(seed)),
    )
}
