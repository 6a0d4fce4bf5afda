//! The sliding anti-replay window: which sequence numbers a replay-protected layer still
//! accepts.

const WORDS: usize = 32;

/// A sliding anti-replay window over 64-bit sequence numbers (RFC 6479 bitmap ring, 272
/// bytes).
///
/// Semantics, exactly (with `top` the highest sequence number accepted so far):
///
/// * [`check(s)`](Self::check) is `true` iff nothing was accepted yet, or `s > top`, or
///   `top - s < SIZE` and `s` was not accepted before.
/// * [`accept(s)`](Self::accept) records `s` if `check`'s window would still hold it (nothing
///   accepted yet, `s > top`, or `top - s < SIZE`), raising `top` to `s` if it is higher;
///   sequence numbers older than the window are ignored (they could never pass `check`).
///
/// Call `check` before authenticating and `accept` only after the packet authenticated, so
/// that forged packets never move the window.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    top: Option<u64>,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// How far behind the highest accepted sequence number a packet may be and still be
    /// accepted (once): 1984 packets.
    pub const SIZE: u64 = ((WORDS - 1) * 64) as u64;

    /// A window that has seen nothing.
    pub const fn new() -> ReplayWindow {
        ReplayWindow {
            top: None,
            bits: [0; WORDS],
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        (((seq / 64) % WORDS as u64) as usize, 1u64 << (seq % 64))
    }

    /// The highest sequence number accepted so far.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    /// Whether `seq` is new: not seen before and not older than the window.
    pub fn check(&self, seq: u64) -> bool {
        let Some(top) = self.top else { return true };
        if seq > top {
            return true;
        }
        if top - seq >= Self::SIZE {
            return false;
        }
        let (word, bit) = Self::slot(seq);
        self.bits.get(word).is_some_and(|w| w & bit == 0)
    }

    /// Records `seq` as seen, sliding the window forward if it is the newest. A sequence
    /// number older than the window is ignored: its bit would alias a newer one's.
    pub fn accept(&mut self, seq: u64) {
        match self.top {
            Some(top) if seq <= top => {
                if top - seq >= Self::SIZE {
                    return;
                }
            }
            Some(top) => {
                // Clear the words the window slides over (at most the whole ring): they
                // held sequence numbers that are now too old, and hold none of the new ones.
                let steps = (seq / 64 - top / 64).min(WORDS as u64);
                for i in 1..=steps {
                    let (word, _) = Self::slot(top.wrapping_add(i * 64));
                    if let Some(w) = self.bits.get_mut(word) {
                        *w = 0;
                    }
                }
                self.top = Some(seq);
            }
            None => {
                self.bits = [0; WORDS];
                self.top = Some(seq);
            }
        }
        let (word, bit) = Self::slot(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= bit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReplayWindow;

    #[test]
    fn window_accepts_each_sequence_once() {
        let mut w = ReplayWindow::new();
        for s in [5u64, 3, 4, 10, 6] {
            assert!(w.check(s), "{s} is new");
            w.accept(s);
            assert!(!w.check(s), "{s} is a replay");
        }
        assert!(w.check(0));
    }

    #[test]
    fn window_rejects_too_old_and_keeps_recent() {
        let mut w = ReplayWindow::new();
        w.accept(0);
        w.accept(ReplayWindow::SIZE + 100);
        assert!(!w.check(0));
        assert!(!w.check(99));
        assert!(w.check(101));
        w.accept(200);
        assert!(!w.check(200));
        w.accept(u64::MAX - 1);
        assert!(w.check(u64::MAX));
        assert!(!w.check(200), "far behind the new top");
    }

    #[test]
    fn window_big_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new();
        for s in 0..64 * 40 {
            w.accept(s);
        }
        let top = 64 * 40 - 1;
        w.accept(top + 64 * 40);
        for s in (top + 64 * 40 - ReplayWindow::SIZE + 1)..(top + 64 * 40) {
            assert!(w.check(s), "{s} never seen");
        }
    }

    #[test]
    fn accepting_a_too_old_number_does_not_mark_a_newer_one() {
        // 5000 - 2000 shares its ring bit with 5000 + 48: recording it would make that
        // future number look like a replay.
        let mut w = ReplayWindow::new();
        w.accept(5000);
        w.accept(3000);
        assert!(w.check(5048));
        assert_eq!(w.top(), Some(5000));
    }
}
