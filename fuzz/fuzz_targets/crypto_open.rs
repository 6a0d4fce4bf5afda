//! Every packet cipher's open on arbitrary bytes: no panic; what opens lies inside the packet.
#![no_main]

use kcp_core::{Codec, Millis};
use kcp_crypto::{BlockCrypt, CipherKind, PacketCrypt, Pass};
use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    let kinds = CipherKind::ALL;
    let kind = kinds[sel as usize % kinds.len()];
    let pass = Pass::derive(b"fuzz");
    let mut c = PacketCrypt::new(
        BlockCrypt::from_pass(kind, &pass),
        &mut rand_core::UnwrapErr(Zero),
    );
    let mut buf = pkt.to_vec();
    if let Ok(Some(r)) = c.open(&mut buf, Millis(0)) {
        assert!(r.start <= r.end && r.end <= buf.len());
    }
});
