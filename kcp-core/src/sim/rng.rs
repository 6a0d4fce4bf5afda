//! The workspace's one deterministic generator (SplitMix64), with no dependency on the rest
//! of the crate: the simulator's link model and scenarios draw from it, and the test kit
//! (`kcp-core/testkit`) compiles this same file for every crate's tests, benches and fuzz
//! targets (adding its own helpers and, behind a feature, rand_core's traits), so there is
//! one copy of the algorithm and a seed gives the same numbers everywhere.

/// A small, fast, seedable generator (SplitMix64): the one the link model, the scenarios and
/// the workspace's tests, examples and benches draw from. Not for secrets; good enough for
/// impairments and test data, and the same stream for a seed on every platform.
///
/// The field is the generator's state: `Rng(seed)` and [`Rng::new`] are the same.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A generator from a seed.
    pub const fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// The low 32 bits of [`next_u64`](Self::next_u64).
    pub fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    /// Fills `dst` with [`next_u64`](Self::next_u64) values in little-endian order, eight bytes
    /// each (the last one cut short).
    pub fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
    /// Uniform in `0..=max`.
    pub fn below_incl(&mut self, max: u32) -> u32 {
        if max == 0 {
            0
        } else {
            (self.next_u64() % (max as u64 + 1)) as u32
        }
    }
}
