//! The one deterministic generator of the workspace's tests, benches, examples and fuzz
//! targets: SplitMix64, the same stream for a seed on every platform.
//!
//! It is the algorithm of `kcp_core::sim::Rng` (the simulator's link model, library code), so a
//! seed gives the same numbers in both. Not a CSPRNG: with the `rand_core` feature it stands in
//! for the OS random source that the crypto constructors ask for, in tests only.

// The algorithm itself is kcp-core's (`kcp_core::sim::Rng`), compiled here from the same
// file: the kit depends on no crate of the workspace (kcp-core's own tests use it), so it
// includes the file instead of the crate.
#[path = "../../src/sim/rng.rs"]
mod splitmix;

pub use splitmix::Rng;

impl Rng {
    /// A number in `0..n` (`0` when `n` is 0; the modulo bias does not matter for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// [`fill_bytes`](Self::fill_bytes) under the name the tests use.
    pub fn fill(&mut self, dst: &mut [u8]) {
        self.fill_bytes(dst);
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

#[cfg(feature = "rand_core")]
impl rand_core::TryRng for Rng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.fill(dst);
        Ok(())
    }
}

/// Tests only: the stream is predictable from the seed.
#[cfg(feature = "rand_core")]
impl rand_core::TryCryptoRng for Rng {}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn is_splitmix64() {
        // SplitMix64's reference outputs for seed 0.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn fill_is_next_u64_little_endian_and_below_stays_below() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        let v = a.bytes(11);
        assert_eq!(v[..8], b.next_u64().to_le_bytes());
        assert_eq!(v[8..], b.next_u64().to_le_bytes()[..3]);
        assert!((0..1000).all(|_| a.below(13) < 13));
        assert_eq!(a.below(0), 0);
        assert!((0..100).all(|_| !a.chance(0.0) && a.chance(1.0)));
    }
}
