//! One timer structure for all sessions of an endpoint: a min-heap of deadlines with lazy
//! deletion, compacted when stale entries pile up. A session without a deadline has no entry.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Current (deadline, version) per session index.
    current: Vec<Option<(u64, u32)>>,
    live: usize,
    version: u32,
}

impl Timers {
    /// Sets session `idx`'s deadline (ms since the endpoint's start).
    pub(super) fn set(&mut self, idx: u32, at: u64) {
        let i = idx as usize;
        if self.current.len() <= i {
            self.current.resize(i + 1, None);
        }
        if let Some((cur, _)) = self.current[i] {
            if cur == at {
                return;
            }
        } else {
            self.live += 1;
        }
        self.version = self.version.wrapping_add(1);
        self.current[i] = Some((at, self.version));
        self.heap.push(Reverse((at, idx, self.version)));
        if self.heap.len() > 2 * self.live + 64 {
            self.compact();
        }
    }

    /// Removes session `idx`'s deadline.
    pub(super) fn cancel(&mut self, idx: u32) {
        if let Some(slot) = self.current.get_mut(idx as usize) {
            if slot.take().is_some() {
                self.live -= 1;
            }
        }
    }

    fn is_current(&self, e: &(u64, u32, u32)) -> bool {
        self.current.get(e.1 as usize).copied().flatten() == Some((e.0, e.2))
    }

    /// The earliest deadline.
    pub(super) fn next(&mut self) -> Option<u64> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.is_current(top) {
                return Some(top.0);
            }
            self.heap.pop();
        }
        None
    }

    /// A session whose deadline is at or before `now`, removing that deadline.
    pub(super) fn pop_due(&mut self, now: u64) -> Option<u32> {
        while let Some(Reverse(top)) = self.heap.peek().copied() {
            if !self.is_current(&top) {
                self.heap.pop();
                continue;
            }
            if top.0 > now {
                return None;
            }
            self.heap.pop();
            self.cancel(top.1);
            return Some(top.1);
        }
        None
    }

    fn compact(&mut self) {
        let entries: Vec<_> = self
            .current
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.map(|(at, v)| Reverse((at, i as u32, v))))
            .collect();
        self.heap = BinaryHeap::from(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_rescheduling_replaces() {
        let mut t = Timers::default();
        t.set(1, 50);
        t.set(2, 20);
        t.set(1, 10);
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.pop_due(15), Some(1));
        assert_eq!(t.pop_due(15), None);
        t.cancel(2);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn stale_entries_are_compacted() {
        let mut t = Timers::default();
        for at in 0..10_000 {
            t.set(7, 100_000 + at);
        }
        assert!(t.heap.len() <= 2 * t.live + 64 + 1);
        assert_eq!(t.next(), Some(109_999));
    }
}
