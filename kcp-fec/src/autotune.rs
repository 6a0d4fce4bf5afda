//! kcp-go v5.6.1's FEC parameter detector (`autotune.go`), ported as is.
//!
//! The decoder samples every shard's type into a ring of 258 slots indexed by `seqid % 258`;
//! when a shard's type contradicts the current (ds, ps), the lengths of the runs of data and of
//! parity seqids in that ring are taken as the peer's parameters. The decoder bounds what this
//! may trigger (see [`crate::FecConfig`]).

/// Samples kept (kcp-go's `maxAutoTuneSamples`).
const SAMPLES: usize = 258;

#[derive(Clone, Copy, Default)]
struct Pulse {
    bit: bool,
    seq: u32,
}

/// The sample ring.
pub(crate) struct AutoTune {
    pulses: [Pulse; SAMPLES],
}

impl AutoTune {
    pub(crate) fn new() -> Self {
        AutoTune {
            pulses: [Pulse::default(); SAMPLES],
        }
    }

    /// Records that shard `seq` was a data shard (`bit`) or a parity shard.
    pub(crate) fn sample(&mut self, bit: bool, seq: u32) {
        if let Some(p) = self.pulses.get_mut(seq as usize % SAMPLES) {
            *p = Pulse { bit, seq };
        }
    }

    /// Length of the run of consecutive seqids of kind `bit`, or -1 if the samples are not
    /// contiguous (kcp-go's `FindPeriod`, quirks included).
    pub(crate) fn find_period(&self, bit: bool) -> i32 {
        let p = &self.pulses;
        let mut last = p[0];
        let mut left = 0usize;
        for (idx, cur) in p.iter().enumerate().skip(1) {
            if last.bit != bit && cur.bit == bit && last.seq.wrapping_add(1) == cur.seq {
                left = idx;
                break;
            }
            last = *cur;
        }
        let mut right = 0usize;
        let mut last = p[left];
        for (idx, cur) in p.iter().enumerate().skip(left + 1) {
            if last.seq.wrapping_add(1) == cur.seq {
                if last.bit == bit && cur.bit != bit {
                    right = idx;
                    break;
                }
            } else {
                return -1;
            }
            last = *cur;
        }
        right as i32 - left as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_periods_of_a_regular_stream() {
        for (ds, ps) in [(3u32, 2u32), (10, 3), (1, 1), (20, 10)] {
            let mut t = AutoTune::new();
            for seq in 0..600u32 {
                t.sample(seq % (ds + ps) < ds, seq);
            }
            assert_eq!(t.find_period(true), ds as i32, "ds of ({ds},{ps})");
            assert_eq!(t.find_period(false), ps as i32, "ps of ({ds},{ps})");
        }
    }

    #[test]
    fn gaps_give_no_period() {
        let mut t = AutoTune::new();
        for seq in (0..600u32).step_by(2) {
            t.sample(seq % 5 < 3, seq);
        }
        assert_eq!(t.find_period(true), -1);
    }
}
