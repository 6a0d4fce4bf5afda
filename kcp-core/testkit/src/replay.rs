//! The documented semantics of a sliding replay window, literally, as the model the window's
//! tests and fuzz target compare it with: a sequence number is fresh if it is above the highest
//! accepted one, or less than `size` below it and not accepted before.

use std::collections::BTreeSet;

/// The model: the accepted numbers within reach and the highest one.
#[derive(Debug, Clone)]
pub struct Model {
    size: u64,
    seen: BTreeSet<u64>,
    /// The highest accepted sequence number.
    pub top: Option<u64>,
}

impl Model {
    /// An empty window of `size` sequence numbers.
    pub fn new(size: u64) -> Model {
        Model {
            size,
            seen: BTreeSet::new(),
            top: None,
        }
    }

    /// Whether `s` would be accepted.
    pub fn check(&self, s: u64) -> bool {
        match self.top {
            None => true,
            Some(top) => s > top || (top - s < self.size && !self.seen.contains(&s)),
        }
    }

    /// Records `s` as accepted (a number already out of reach changes nothing).
    pub fn accept(&mut self, s: u64) {
        match self.top {
            Some(top) if s <= top && top - s >= self.size => {}
            Some(top) if s <= top => {
                self.seen.insert(s);
            }
            _ => {
                self.seen.insert(s);
                self.top = Some(s);
            }
        }
        // Forget what can never matter again, so the model stays as small as the window.
        if let Some(top) = self.top {
            let floor = top.saturating_sub(self.size);
            self.seen = self.seen.split_off(&floor);
        }
    }
}

/// A sequence number for the next operation, from two fuzzed values: near the current `top`
/// (ahead, behind by up to a little more than `size`, far ahead), near `u64::MAX`, 2^32 steps
/// ahead, or a small absolute number: where the interesting cases are.
pub fn pick(top: Option<u64>, how: u8, delta: u16, size: u64) -> u64 {
    let top = top.unwrap_or(0);
    let d = delta as u64;
    match how % 6 {
        0 => top.saturating_add(d % 200),
        1 => top.saturating_sub(d % (size + 100)),
        2 => top.saturating_add(d * 64),
        3 => u64::MAX - d % 300,
        4 => top.wrapping_add(d << 32),
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::Model;

    #[test]
    fn fresh_above_and_within_reach_once() {
        let mut m = Model::new(4);
        assert!(m.check(10));
        m.accept(10);
        assert!(!m.check(10) && m.check(11) && m.check(7));
        m.accept(7);
        assert!(!m.check(7) && !m.check(6) && m.check(9));
        m.accept(20);
        assert_eq!(m.top, Some(20));
        assert!(!m.check(16) && m.check(17));
    }
}
