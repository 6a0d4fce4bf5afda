//! A bounded latency histogram (log-linear buckets, as HdrHistogram lays them out): what
//! kcp-perf keeps of its round-trip times, so a run of any length holds the same memory.

use std::collections::BTreeMap;

/// Sub-buckets per power of two: values are kept to within 1/32 (about 3 %); below 32 they
/// are exact.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;

/// Most buckets a histogram can hold, whatever it records: 32 exact values, then 32 per power
/// of two up to 2^64.
pub const MAX_BUCKETS: usize = (SUB as usize) * (65 - SUB_BITS as usize);

/// Counts of values (round trips in microseconds) in log-linear buckets. Memory grows with the
/// number of distinct buckets hit, at most [`MAX_BUCKETS`] entries, never with the number of
/// values recorded. Percentiles are accurate to a bucket's width (1/32 of the value); the
/// minimum and maximum are exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RttHistogram {
    buckets: BTreeMap<u16, u64>,
    count: u64,
    min: u64,
    max: u64,
}

/// The bucket of `v`.
fn index(v: u64) -> u16 {
    if v < SUB {
        return v as u16;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
    ((e - SUB_BITS + 1) as u64 * SUB + sub) as u16
}

/// The smallest value and the width of bucket `i`.
fn bounds(i: u16) -> (u64, u64) {
    let i = u64::from(i);
    if i < SUB {
        return (i, 1);
    }
    let e = i / SUB - 1 + u64::from(SUB_BITS);
    let sub = i % SUB;
    let width = 1u64 << (e - u64::from(SUB_BITS));
    ((SUB + sub) << (e - u64::from(SUB_BITS)), width)
}

impl RttHistogram {
    /// An empty histogram.
    pub fn new() -> RttHistogram {
        RttHistogram::default()
    }

    /// A histogram of `values`.
    pub fn from_values(values: impl IntoIterator<Item = u64>) -> RttHistogram {
        let mut h = RttHistogram::new();
        for v in values {
            h.record(v);
        }
        h
    }

    /// Counts one value.
    pub fn record(&mut self, v: u64) {
        *self.buckets.entry(index(v)).or_insert(0) += 1;
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.count += 1;
    }

    /// Adds every value of `other` (the sessions of a run into its summary).
    pub fn merge(&mut self, other: &RttHistogram) {
        if other.count == 0 {
            return;
        }
        for (&i, &n) in &other.buckets {
            *self.buckets.entry(i).or_insert(0) += n;
        }
        self.min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.count += other.count;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The largest value recorded (0 when empty), exact.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The smallest value recorded (0 when empty), exact.
    pub fn min(&self) -> u64 {
        self.min
    }

    /// Buckets in use (what the memory follows).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// The `p` quantile (0.0..=1.0), nearest rank: the value of rank `round((count - 1) * p)`
    /// in ascending order, as the middle of its bucket, within the recorded minimum and
    /// maximum. 0 when empty.
    pub fn quantile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count - 1) as f64 * p.clamp(0.0, 1.0)).round() as u64;
        let mut seen = 0u64;
        for (&i, &n) in &self.buckets {
            seen += n;
            if seen > rank {
                let (lo, width) = bounds(i);
                return (lo + (width - 1) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0u16;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i >= last, "{v}");
            assert!((i as usize) < MAX_BUCKETS, "{v}");
            let (lo, width) = bounds(i);
            assert!(lo <= v && v - lo < width, "{v}: bucket {i} = {lo}+{width}");
            assert!(v < 32 || width * 32 <= lo, "{v}: width within 1/32");
            last = i;
        }
    }

    #[test]
    fn quantiles_match_the_sorted_values_within_a_bucket() {
        let values: Vec<u64> = (1..=10_000u64).map(|i| i * 37 % 9_973 + 100).collect();
        let h = RttHistogram::from_values(values.iter().copied());
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for p in [0.0, 0.01, 0.5, 0.9, 0.99, 1.0] {
            let exact = sorted[((sorted.len() - 1) as f64 * p).round() as usize];
            let got = h.quantile(p);
            assert!(got.abs_diff(exact) * 32 <= exact, "p{p}: {got} vs {exact}");
        }
        assert_eq!(
            (h.min(), h.max(), h.count()),
            (sorted[0], sorted[9_999], 10_000)
        );
        assert_eq!(RttHistogram::new().quantile(0.5), 0);
        let small = RttHistogram::from_values([10, 20, 30]);
        assert_eq!(
            (
                small.quantile(0.0),
                small.quantile(0.5),
                small.quantile(1.0)
            ),
            (10, 20, 30)
        );
    }

    #[test]
    fn memory_stays_flat_however_many_values() {
        let mut h = RttHistogram::new();
        let mut x = 1u64;
        for _ in 0..2_000_000 {
            // Round trips between 50 us and about 1 s.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record(50 + (x >> 44));
        }
        let buckets = h.buckets();
        for _ in 0..2_000_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record(50 + (x >> 44));
        }
        assert_eq!(h.count(), 4_000_000);
        assert!(
            buckets <= 32 * 16,
            "{buckets} buckets for values below 2^20"
        );
        assert!(h.buckets() <= buckets + 2, "no growth with more values");
        let mut all = RttHistogram::new();
        all.merge(&h);
        all.merge(&h);
        assert_eq!(all.count(), 8_000_000);
        assert_eq!(all.buckets(), h.buckets());
        assert_eq!(all.quantile(0.5), h.quantile(0.5));
    }
}
