//! kcp-go v5.6.1's FEC parameter detector (`autotune.go`), ported with a compact ring.
//!
//! The decoder samples every shard's type into a ring of 258 slots indexed by `seqid % 258`;
//! when a shard's type contradicts the current (ds, ps), the lengths of the runs of data and of
//! parity seqids in that ring are taken as the peer's parameters. The decoder bounds what this
//! may trigger (see [`crate::FecConfig`]).
//!
//! kcp-go stores each slot's full seqid (8 bytes a slot, 2 KiB). The only use of it is the test
//! "the seqid of slot `i` is one more than that of slot `i - 1`", and slot `i` only ever holds
//! seqids `258 * lap + i`, so a slot needs just its lap: here 14 bits of it, with the type bit
//! and a written bit, in 2 bytes (516 bytes a ring). The answers are kcp-go's for every seqid
//! below 258 * 2^14 (about 4.2 million); beyond, two slots whose laps differ by a multiple of
//! 2^14 would pass the test, which needs a slot left unwritten for 4.2 million seqids while its
//! neighbour was written: not something a sender that numbers its packets consecutively does.
//!
//! The decoder builds the ring at the first shard whose type contradicts its parameters (a
//! decoder that agrees with its peer never needs one), so the first samples are missing. kcp-go
//! reads an unwritten slot as a parity shard with seqid 0, which seqid 1 would continue; here an
//! unwritten slot continues nothing, so the missing history cannot fake a period.

use alloc::boxed::Box;

/// Samples kept (kcp-go's `maxAutoTuneSamples`).
const SAMPLES: usize = 258;
/// A written slot.
const WRITTEN: u16 = 1 << 15;
/// The sample's type: data.
const DATA: u16 = 1 << 14;
/// The lap bits.
const LAP: u16 = DATA - 1;

/// The sample ring.
pub(crate) struct AutoTune {
    slots: Box<[u16; SAMPLES]>,
}

impl AutoTune {
    pub(crate) fn new() -> Self {
        AutoTune {
            slots: Box::new([0; SAMPLES]),
        }
    }

    /// Heap bytes of the ring.
    pub(crate) const HEAP_BYTES: usize = SAMPLES * 2;

    /// Records that shard `seq` was a data shard (`bit`) or a parity shard.
    pub(crate) fn sample(&mut self, bit: bool, seq: u32) {
        let lap = (seq / SAMPLES as u32) as u16 & LAP;
        if let Some(s) = self.slots.get_mut(seq as usize % SAMPLES) {
            *s = WRITTEN | if bit { DATA } else { 0 } | lap;
        }
    }

    /// Slot `idx` as kcp-go's pulse: (bit, seqid), with the seqid's lap reduced to 14 bits.
    /// An unwritten slot reads as a seqid no other slot continues or is continued by.
    fn pulse(&self, idx: usize) -> (bool, u64) {
        let s = self.slots.get(idx).copied().unwrap_or(0);
        if s & WRITTEN == 0 {
            // Far from every real (lap, idx) pair: never within one of them.
            return (false, u64::MAX / 2 + idx as u64 * 2);
        }
        (
            s & DATA != 0,
            u64::from(s & LAP) * SAMPLES as u64 + idx as u64,
        )
    }

    /// Length of the run of consecutive seqids of kind `bit`, or -1 if the samples are not
    /// contiguous (kcp-go's `FindPeriod`, quirks included).
    pub(crate) fn find_period(&self, bit: bool) -> i32 {
        let mut last = self.pulse(0);
        let mut left = 0usize;
        for idx in 1..SAMPLES {
            let cur = self.pulse(idx);
            if last.0 != bit && cur.0 == bit && last.1 + 1 == cur.1 {
                left = idx;
                break;
            }
            last = cur;
        }
        let mut right = 0usize;
        let mut last = self.pulse(left);
        for idx in left + 1..SAMPLES {
            let cur = self.pulse(idx);
            if last.1 + 1 == cur.1 {
                if last.0 == bit && cur.0 != bit {
                    right = idx;
                    break;
                }
            } else {
                return -1;
            }
            last = cur;
        }
        right as i32 - left as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_periods_of_a_regular_stream() {
        for (ds, ps) in [(3u32, 2u32), (10, 3), (1, 1), (20, 10), (30, 2)] {
            for start in [0u32, 1_000_000, 0xFFFF_0000] {
                let mut t = AutoTune::new();
                for seq in start..start + 600 {
                    t.sample(seq % (ds + ps) < ds, seq);
                }
                assert_eq!(
                    t.find_period(true),
                    ds as i32,
                    "ds of ({ds},{ps}) at {start}"
                );
                assert_eq!(
                    t.find_period(false),
                    ps as i32,
                    "ps of ({ds},{ps}) at {start}"
                );
            }
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

    #[test]
    fn unwritten_slots_continue_nothing() {
        // Sampling started at seqid 1 (the ring is built at the first contradiction): slot 0
        // must not pass for a parity shard 0 that would make 1..=9 a run of 9.
        let mut t = AutoTune::new();
        for seq in 1..60u32 {
            t.sample(seq % 13 < 10, seq);
        }
        assert_eq!(t.find_period(true), 10);
        assert_eq!(t.find_period(false), 3);
    }
}
