//! One timer structure for all sessions of an endpoint: a min-heap of deadlines with lazy
//! deletion, compacted when stale entries pile up. A session without a deadline has no entry.
//!
//! A deadline that moves later (the common case: every datagram pushes a session's
//! keepalive and idle deadlines out, an acknowledgement replaces a retransmission timer by
//! a later one) is not pushed: the session's entry stays where it was, and when it comes to
//! the top of the heap it is pushed again at the session's deadline of that moment. Many
//! later moves between two visits cost one push instead of a push and a stale pop each; a
//! deadline that moves earlier is pushed at once.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

/// A session's deadline and its entry in the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Current {
    /// The deadline (ms since the endpoint's start).
    at: u64,
    /// When the session's live heap entry is due (at or before `at`).
    queued: u64,
    /// The live entry's version (older entries of the session are stale).
    version: u32,
}

#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Per session index.
    current: Vec<Option<Current>>,
    live: usize,
    version: u32,
}

/// What the heap's top entry is.
enum Top {
    Empty,
    /// Session `idx` is due at `at`.
    Due {
        at: u64,
        idx: u32,
    },
    /// Stale or moved later: handled, look again.
    Again,
}

impl Timers {
    /// Sets session `idx`'s deadline (ms since the endpoint's start).
    pub(super) fn set(&mut self, idx: u32, at: u64) {
        let i = idx as usize;
        if self.current.len() <= i {
            self.current.resize(i + 1, None);
        }
        match &mut self.current[i] {
            Some(c) if c.queued <= at => {
                // Its entry comes first: it is pushed again at `at` when it reaches the top.
                c.at = at;
                return;
            }
            Some(_) => {}
            None => self.live += 1,
        }
        self.version = self.version.wrapping_add(1);
        self.current[i] = Some(Current {
            at,
            queued: at,
            version: self.version,
        });
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

    /// Looks at the top entry: drops it if stale, pushes it again at its session's deadline
    /// if that moved later, else reports it.
    fn top(&mut self) -> Top {
        let Some(&Reverse((at, idx, version))) = self.heap.peek() else {
            return Top::Empty;
        };
        match self.current.get_mut(idx as usize) {
            Some(Some(c)) if c.version == version && c.queued == at => {
                if c.at == at {
                    return Top::Due { at, idx };
                }
                c.queued = c.at;
                let later = c.at;
                self.heap.pop();
                self.heap.push(Reverse((later, idx, version)));
            }
            _ => {
                self.heap.pop();
            }
        }
        Top::Again
    }

    /// The earliest deadline.
    pub(super) fn next(&mut self) -> Option<u64> {
        loop {
            match self.top() {
                Top::Empty => return None,
                Top::Due { at, .. } => return Some(at),
                Top::Again => {}
            }
        }
    }

    /// A session whose deadline is at or before `now`, removing that deadline.
    pub(super) fn pop_due(&mut self, now: u64) -> Option<u32> {
        loop {
            match self.top() {
                Top::Empty => return None,
                Top::Due { at, .. } if at > now => return None,
                Top::Due { idx, .. } => {
                    self.heap.pop();
                    self.cancel(idx);
                    return Some(idx);
                }
                Top::Again => {}
            }
        }
    }

    fn compact(&mut self) {
        let mut entries = Vec::with_capacity(self.live);
        for (i, c) in self.current.iter_mut().enumerate() {
            if let Some(c) = c {
                c.queued = c.at;
                entries.push(Reverse((c.at, i as u32, c.version)));
            }
        }
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

    #[test]
    fn a_deadline_moved_later_fires_at_its_new_time_only() {
        let mut t = Timers::default();
        t.set(1, 10);
        t.set(2, 30);
        t.set(1, 50);
        t.set(1, 40);
        assert_eq!(t.heap.len(), 2, "later moves push nothing");
        assert_eq!(t.next(), Some(30));
        assert_eq!(t.pop_due(35), Some(2));
        assert_eq!(t.pop_due(35), None);
        assert_eq!(t.next(), Some(40));
        // Earlier again: pushed at once.
        t.set(1, 20);
        assert_eq!(t.next(), Some(20));
        assert_eq!(t.pop_due(20), Some(1));
        assert_eq!(t.next(), None);
        assert_eq!(t.pop_due(u64::MAX), None);
    }

    /// Against a plain map of deadlines: any sequence of sets, cancels and pops gives the
    /// same earliest deadline and the same due sessions.
    #[test]
    fn matches_a_plain_map_of_deadlines() {
        let mut t = Timers::default();
        let mut model: alloc::collections::BTreeMap<u32, u64> = Default::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut now = 0u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let idx = (x % 64) as u32;
            match (x >> 8) % 8 {
                0..=4 => {
                    let at = now + (x >> 16) % 100;
                    t.set(idx, at);
                    model.insert(idx, at);
                }
                5 => {
                    t.cancel(idx);
                    model.remove(&idx);
                }
                _ => {
                    now += (x >> 20) % 20;
                    let mut due = Vec::new();
                    while let Some(i) = t.pop_due(now) {
                        due.push(i);
                    }
                    let mut want: Vec<u32> = model
                        .iter()
                        .filter(|&(_, &at)| at <= now)
                        .map(|(&i, _)| i)
                        .collect();
                    model.retain(|_, at| *at > now);
                    due.sort_unstable();
                    want.sort_unstable();
                    assert_eq!(due, want, "due at {now}");
                }
            }
            assert_eq!(t.next(), model.values().min().copied());
            assert!(t.heap.len() <= 2 * t.live + 64 + 1);
        }
    }
}
