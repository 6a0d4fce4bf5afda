//! One timer structure for all sessions of an endpoint: a hierarchical timing wheel of
//! millisecond deadlines whose slots are lists threaded through the sessions' own entries. A
//! session without a deadline is in no list.
//!
//! Six levels of 64 slots: level 0 holds the deadlines of the current 64 ms, one slot per
//! millisecond; a slot of level `l` is `64^l` ms wide and holds deadlines further out (the top
//! level reaches about two years; a deadline beyond that waits apart until it comes within
//! reach). A deadline is placed by the highest bit in which it differs from the wheel's time,
//! so within a level every occupied slot lies ahead of the wheel's own, and the first occupied
//! slot of the lowest occupied level holds the earliest deadlines. Setting, moving and
//! cancelling a deadline cost O(1) (an unlink and a link, no allocation); a slot of a higher
//! level is spread over the lower ones when the wheel's time reaches it. A server with 10,000
//! sessions whose deadlines move every few milliseconds paid a binary heap's O(log n) cache
//! misses on each move; the wheel touches the session's entry and one slot head.
//!
//! A deadline that moves later beyond the next 64 ms (the common case: every datagram pushes a
//! session's keepalive and idle deadlines out) stays where it is: when its slot comes up it is
//! placed again at the session's deadline of that moment. Other moves relink at once, so a
//! level-0 slot holds the deadlines of its own millisecond only and the earliest deadline is
//! known without looking at the entries. While level 0 is empty the first slot of a higher
//! level is walked once and then a bound on its deadlines kept (see `wheel_next`).

use alloc::vec::Vec;

/// Bits of a deadline per level.
const BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << BITS;
/// Levels.
const LEVELS: usize = 6;
/// Span of the top level (about 2.2 years).
const SPAN: u64 = 1 << (BITS * LEVELS as u32);
/// Deadlines at least this far ahead of the wheel's time wait in the far list until the
/// wheel's time comes within reach: one top slot less than the top level's span, so that a
/// deadline in the top level's next turn never shares a slot with the wheel's own time. An
/// endpoint's deadlines lie within weeks (its timeouts are `u32` milliseconds); the far list
/// is there for correctness, not speed.
const REACH: u64 = SPAN - (SPAN >> BITS);
/// The list of deadlines beyond reach (after the wheel's slots).
const FAR: u16 = (LEVELS * SLOTS) as u16;
/// No list / no neighbour.
const NONE: u32 = u32::MAX;

/// A session's deadline and its place in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    /// The deadline (ms since the endpoint's start).
    at: u64,
    /// When the slot the entry is in comes up (at or before `at`).
    queued: u64,
    /// The list the entry is in: `level * SLOTS + slot`, or `FAR`.
    list: u16,
    prev: u32,
    next: u32,
}

#[derive(Debug, Clone)]
pub(super) struct Timers {
    /// Per list (`level * SLOTS + slot`, then `FAR`): its first session, or `NONE`.
    heads: [u32; LEVELS * SLOTS + 1],
    /// Per level, a bit per non-empty slot.
    occupied: [u64; LEVELS],
    /// The wheel's time: a deadline before it goes to its own slot (due at once). Only moves
    /// forward, never past a caller's `now`, never past a slot that is not empty.
    elapsed: u64,
    /// At or before the earliest deadline in the far list (`u64::MAX` when empty).
    far_min: u64,
    /// Entries in the wheel's own level-0 slot whose deadline had passed when they were
    /// placed (the slot's other entries are due at its start).
    past: u32,
    /// The earliest deadline in the wheel's slots (the far list apart), while known.
    earliest: Option<u64>,
    /// Per level above 0 (index 0 unused): a list of that level and a time at or before
    /// each of its deadlines: the last list of the level [`wheel_next`](Self::wheel_next) had
    /// to look into (the first slot of the lowest level while level 0 is empty), exact when
    /// it looked, kept a lower bound as entries come and go. Such a slot holds every deadline
    /// of its 64 ms or more, and its earliest moves with almost every acknowledgement (the
    /// session due first is the one whose ACK comes first); a server with 10,000 sessions
    /// walked hundreds of entries, a cache miss each, on most calls. One per level, because
    /// the first slot goes back and forth between levels: a level-1 slot taken and left by a
    /// session or two while a level-2 slot holds thousands, whose bound a single kept list
    /// lost each time (a 10,000-session server looked through 4,500 entries 50 times a
    /// second). Forgotten when the list empties or is spread.
    slot_min: [Option<(u16, u64)>; LEVELS],
    /// Entries `wheel_next` looked through (tests).
    #[cfg(test)]
    scanned: u64,
    /// Per session index: its entry, if it has a deadline.
    nodes: Vec<Option<Node>>,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            heads: [NONE; LEVELS * SLOTS + 1],
            occupied: [0; LEVELS],
            elapsed: 0,
            far_min: u64::MAX,
            past: 0,
            earliest: None,
            slot_min: [None; LEVELS],
            #[cfg(test)]
            scanned: 0,
            nodes: Vec::new(),
        }
    }
}

/// The slot of time `t` on `level`.
fn digit(t: u64, level: usize) -> usize {
    ((t >> (BITS * level as u32)) as usize) & (SLOTS - 1)
}

/// When slot `slot` of `level` comes up for a wheel at time `elapsed`. Every occupied slot
/// lies ahead of the wheel's own slot on its level; on the top level a slot behind it belongs
/// to the level's next turn.
fn slot_start(elapsed: u64, level: usize, slot: usize) -> u64 {
    let shift = BITS * level as u32;
    let span = 1u64 << (shift + BITS);
    let start = (elapsed & !(span - 1)) + ((slot as u64) << shift);
    if slot < digit(elapsed, level) {
        start + span
    } else {
        start
    }
}

impl Timers {
    /// Sets session `idx`'s deadline (ms since the endpoint's start).
    pub(super) fn set(&mut self, idx: u32, at: u64) {
        let i = idx as usize;
        if self.nodes.len() <= i {
            self.nodes.resize(i + 1, None);
        }
        match self.nodes.get_mut(i) {
            Some(Some(n)) if n.at == at => return,
            Some(Some(n)) if n.queued <= at && n.list as usize >= SLOTS => {
                // A later deadline beyond the next 64 ms: its slot comes up first, and it is
                // placed again at `at` then. (On level 0 it is moved now, so that a level-0
                // slot holds only deadlines of its own millisecond: see `next`.)
                if self.earliest == Some(n.at) && n.list != FAR {
                    self.earliest = None;
                }
                // The list's lower bound stays one; a sole entry keeps it exact, so that an
                // endpoint with a session or two does not wake before its deadline.
                if let Some(Some((l, m))) = self.slot_min.get_mut(n.list as usize / SLOTS) {
                    if *l == n.list && n.prev == NONE && n.next == NONE {
                        *m = at;
                    }
                }
                n.at = at;
                return;
            }
            Some(Some(_)) => self.unlink(idx),
            _ => {}
        }
        self.link(idx, at);
    }

    /// Removes session `idx`'s deadline.
    pub(super) fn cancel(&mut self, idx: u32) {
        if matches!(self.nodes.get(idx as usize), Some(Some(_))) {
            self.unlink(idx);
            if let Some(n) = self.nodes.get_mut(idx as usize) {
                *n = None;
            }
        }
    }

    /// The list for a deadline `at`.
    fn list_for(&self, at: u64) -> u16 {
        if at >= self.elapsed.saturating_add(REACH) {
            return FAR;
        }
        let at = at.max(self.elapsed);
        // The highest bit in which they differ (bit 0 if none) picks the level.
        let high = 63 - ((self.elapsed ^ at) | 1).leading_zeros();
        let level = ((high / BITS) as usize).min(LEVELS - 1);
        (level * SLOTS + digit(at, level)) as u16
    }

    /// Puts session `idx` (in no list) at the head of the list for `at`, its deadline.
    fn link(&mut self, idx: u32, at: u64) {
        let list = self.list_for(at);
        let head = self.heads.get(list as usize).copied().unwrap_or(NONE);
        if let Some(h) = self.nodes.get_mut(head as usize).and_then(Option::as_mut) {
            h.prev = idx;
        }
        if let Some(n) = self.nodes.get_mut(idx as usize) {
            *n = Some(Node {
                at,
                queued: at,
                list,
                prev: NONE,
                next: head,
            });
        }
        if let Some(h) = self.heads.get_mut(list as usize) {
            *h = idx;
        }
        if at < self.elapsed {
            self.past += 1;
        }
        if let Some(Some((l, m))) = self.slot_min.get_mut(list as usize / SLOTS) {
            if *l == list {
                *m = (*m).min(at);
            }
        }
        if list == FAR {
            self.far_min = self.far_min.min(at);
        } else {
            self.earliest = self.earliest.map(|e| e.min(at));
            self.occupied[list as usize / SLOTS] |= 1 << (list as usize % SLOTS);
        }
    }

    /// Takes session `idx` out of its list (its entry stays, to be linked again or cleared).
    fn unlink(&mut self, idx: u32) {
        let Some(Some(n)) = self.nodes.get(idx as usize).copied() else {
            return;
        };
        // The wheel's time does not move while its own slot holds entries: an entry placed
        // there past due is still behind it.
        if n.at < self.elapsed && n.list < SLOTS as u16 {
            self.past = self.past.saturating_sub(1);
        }
        if self.earliest == Some(n.at) && n.list != FAR {
            self.earliest = None;
        }
        if let Some(p) = self.nodes.get_mut(n.prev as usize).and_then(Option::as_mut) {
            p.next = n.next;
        } else if let Some(h) = self.heads.get_mut(n.list as usize) {
            *h = n.next;
            if n.next == NONE && n.list != FAR {
                self.occupied[n.list as usize / SLOTS] &= !(1 << (n.list as usize % SLOTS));
                if let Some(kept) = self.slot_min.get_mut(n.list as usize / SLOTS) {
                    if kept.is_some_and(|(l, _)| l == n.list) {
                        *kept = None;
                    }
                }
            }
        }
        if let Some(x) = self.nodes.get_mut(n.next as usize).and_then(Option::as_mut) {
            x.prev = n.prev;
        }
    }

    /// The first slot to come up: the lowest occupied level's first occupied slot from the
    /// wheel's own on, and when it begins.
    fn first_slot(&self) -> Option<(usize, usize, u64)> {
        let (level, &bits) = self
            .occupied
            .iter()
            .enumerate()
            .find(|(_, &bits)| bits != 0)?;
        let own = digit(self.elapsed, level);
        let slot = (own + bits.rotate_right(own as u32).trailing_zeros() as usize) & (SLOTS - 1);
        Some((level, slot, slot_start(self.elapsed, level, slot)))
    }

    /// The sessions in list `list`, first to last.
    fn members(&self, list: usize) -> impl Iterator<Item = (u32, Node)> + '_ {
        let mut cur = self.heads.get(list).copied().unwrap_or(NONE);
        core::iter::from_fn(move || {
            let n = self.nodes.get(cur as usize).copied().flatten()?;
            let idx = cur;
            cur = n.next;
            Some((idx, n))
        })
    }

    /// Places every session of list `list` again at its deadline, relative to the wheel's
    /// time (a slot that came up, or one whose deadlines all moved past it).
    fn spread(&mut self, list: usize) {
        while let Some(idx) = self.heads.get(list).copied().filter(|&h| h != NONE) {
            let Some(Some(n)) = self.nodes.get(idx as usize).copied() else {
                break;
            };
            self.unlink(idx);
            self.link(idx, n.at);
        }
    }

    /// The earliest deadline, or a time before it (see [`wheel_next`](Self::wheel_next)).
    pub(super) fn next(&mut self) -> Option<u64> {
        let wheel = match self.earliest {
            Some(e) => Some(e),
            None => {
                let (e, exact) = self.wheel_next();
                if exact {
                    self.earliest = e;
                }
                e
            }
        };
        if self.heads[FAR as usize] == NONE {
            return wheel;
        }
        let far = self.members(FAR as usize).map(|(_, n)| n.at).min();
        match (wheel, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest deadline in the wheel's slots (the far list apart), and whether it is
    /// exact. It is not when the first slot lies above level 0 and its kept lower bound
    /// ([`slot_min`](Self::slot_min)) is older than a move of the session that set it: then
    /// it is a time at or before the earliest deadline and at or after the slot's start, so
    /// that a caller who wakes then finds the slot come up ([`pop_due`](Self::pop_due)
    /// spreads it) and is told the exact deadline next. At most one early wake-up per slot;
    /// a slot with one entry stays exact.
    fn wheel_next(&mut self) -> (Option<u64>, bool) {
        loop {
            let Some((level, slot, start)) = self.first_slot() else {
                return (None, true);
            };
            let width = 1u64 << (BITS * level as u32);
            let list = level * SLOTS + slot;
            if level == 0 && (start > self.elapsed || self.past == 0) {
                // A level-0 slot holds deadlines of its millisecond only (later moves leave
                // it at once), and past ones in the wheel's own slot, counted.
                return (Some(start), true);
            }
            let kept = self.slot_min.get(level).copied().flatten();
            let (earliest, exact) = match kept {
                Some((l, m)) if level > 0 && l as usize == list && m >= start => (Some(m), false),
                _ => {
                    #[cfg(test)]
                    {
                        self.scanned += self.members(list).count() as u64;
                    }
                    let e = self.members(list).map(|(_, n)| n.at).min();
                    if level > 0 {
                        if let Some(k) = self.slot_min.get_mut(level) {
                            *k = e.map(|m| (list as u16, m));
                        }
                    }
                    (e, true)
                }
            };
            // A deadline within the slot's time is the earliest of all: lower levels are
            // empty and later slots begin after it. (On level 0 a deadline placed when it
            // had passed already lies before the slot's start.)
            match earliest {
                Some(at) if at < start + width => return (Some(at), exact),
                // All moved past the slot: place them again.
                _ => self.spread(list),
            }
        }
    }

    /// A session whose deadline is at or before `now`, removing that deadline. `now` must not
    /// go back between calls.
    pub(super) fn pop_due(&mut self, now: u64) -> Option<u32> {
        loop {
            match self.first_slot() {
                Some((0, slot, start)) if start <= now => {
                    self.elapsed = self.elapsed.max(start);
                    let idx = self.heads.get(slot).copied().unwrap_or(NONE);
                    let Some(Some(n)) = self.nodes.get(idx as usize).copied() else {
                        // Unreachable: an occupied slot has a head.
                        self.occupied[0] &= !(1 << slot);
                        continue;
                    };
                    self.unlink(idx);
                    if n.at <= now {
                        if let Some(e) = self.nodes.get_mut(idx as usize) {
                            *e = None;
                        }
                        return Some(idx);
                    }
                    // Moved later: placed again (in a later slot).
                    self.link(idx, n.at);
                }
                Some((level, slot, start)) if start <= now => {
                    // Spread over the lower levels, relative to the slot's start.
                    self.elapsed = self.elapsed.max(start);
                    self.spread(level * SLOTS + slot);
                }
                _ => {
                    // Nothing comes up by `now`: the wheel's time moves to it (every slot
                    // still begins later, so every entry keeps its place).
                    self.elapsed = self.elapsed.max(now);
                    if self.far_min >= self.elapsed.saturating_add(REACH) {
                        return None;
                    }
                    // Deadlines that were out of reach come within it.
                    self.far_min = u64::MAX;
                    let mut far = self.heads[FAR as usize];
                    self.heads[FAR as usize] = NONE;
                    while let Some(Some(n)) = self.nodes.get(far as usize).copied() {
                        let idx = far;
                        far = n.next;
                        self.link(idx, n.at);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot of thousands of deadlines on level 2 while one session takes a level-1 slot
    /// and leaves it again, over and over (its ACK came, then its next send): the level-2
    /// slot's bound is kept meanwhile, so it is looked through once, not at every return.
    #[test]
    fn a_big_slots_bound_survives_a_lower_slot_coming_and_going() {
        let mut t = Timers::default();
        const BIG: u32 = 4000;
        for i in 0..BIG {
            t.set(i, 5000 + u64::from(i));
        }
        assert_eq!(t.next(), Some(5000));
        for k in 0..100u64 {
            t.set(BIG, 100 + k % 7);
            assert_eq!(t.next(), Some(100 + k % 7));
            t.set(BIG, 6000 + k);
            let n = t.next().expect("deadlines");
            assert!((4096..=5000).contains(&n), "{n}");
        }
        assert!(
            t.scanned < u64::from(BIG) + 1000,
            "{} entries looked at",
            t.scanned
        );
        // The bound is a lower one: a wake-up at it finds the slot spread and the exact
        // deadline next.
        assert_eq!(t.pop_due(4096), None);
        assert_eq!(t.next(), Some(5000));
        assert_eq!(t.pop_due(5000), Some(0));
    }

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

    /// Entries in all lists, each checked against its list's links.
    fn entries(t: &Timers) -> usize {
        let mut total = 0;
        let own = digit(t.elapsed, 0);
        let past = t.members(own).filter(|(_, n)| n.at < t.elapsed).count();
        assert_eq!(past, t.past as usize, "past entries in the own slot");
        if let Some(e) = t.earliest {
            let wheel = (0..LEVELS * SLOTS).flat_map(|l| t.members(l).map(|(_, n)| n.at));
            assert_eq!(wheel.min(), Some(e), "the earliest deadline kept");
        }
        assert!(t.slot_min[0].is_none(), "a bound kept for level 0");
        for (level, kept) in t.slot_min.iter().enumerate() {
            let Some((l, m)) = *kept else { continue };
            assert_eq!(l as usize / SLOTS, level, "list {l} kept for level {level}");
            let list = t.members(l as usize).map(|(_, n)| n.at);
            let min = list.min().expect("a bound kept for an empty list");
            assert!(m <= min, "list {l}: bound {m} after its earliest {min}");
        }
        for list in 0..t.heads.len() {
            let mut prev = NONE;
            for (idx, n) in t.members(list) {
                assert_eq!(n.list as usize, list);
                assert_eq!(n.prev, prev);
                assert!(n.queued <= n.at);
                prev = idx;
                total += 1;
            }
            if list < LEVELS * SLOTS {
                let bit = t.occupied[list / SLOTS] & (1 << (list % SLOTS)) != 0;
                assert_eq!(bit, t.heads[list] != NONE, "occupied bit of list {list}");
            }
        }
        total
    }

    #[test]
    fn a_session_has_one_entry_however_often_it_moves() {
        let mut t = Timers::default();
        for at in (0..10_000).rev() {
            t.set(7, 100_000 + at);
            t.set(8, 100_000 + 2 * at);
        }
        assert_eq!(entries(&t), 2);
        assert_eq!(t.next(), Some(100_000));
        t.cancel(7);
        assert_eq!(entries(&t), 1);
        assert_eq!(t.next(), Some(100_000));
        assert_eq!(t.pop_due(99_999), None);
        assert_eq!(t.pop_due(100_000), Some(8));
        assert_eq!(entries(&t), 0);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn a_deadline_moved_later_fires_at_its_new_time_only() {
        let mut t = Timers::default();
        t.set(1, 10);
        t.set(2, 30);
        t.set(1, 50);
        t.set(1, 40);
        assert_eq!(entries(&t), 2);
        assert_eq!(t.next(), Some(30));
        assert_eq!(t.pop_due(35), Some(2));
        assert_eq!(t.pop_due(35), None);
        assert_eq!(t.next(), Some(40));
        // Earlier again: placed at once.
        t.set(1, 37);
        assert_eq!(t.next(), Some(37));
        // A deadline already past is due at once.
        t.set(2, 20);
        assert_eq!(t.next(), Some(20));
        assert_eq!(t.pop_due(36), Some(2));
        assert_eq!(t.pop_due(36), None);
        assert_eq!(t.pop_due(37), Some(1));
        assert_eq!(t.next(), None);
        assert_eq!(t.pop_due(u64::MAX), None);
    }

    /// Against a plain map of deadlines: any sequence of sets, cancels and pops gives the
    /// same earliest deadline and the same due sessions, with deadlines and clock steps from
    /// a millisecond to beyond the wheel's reach.
    #[test]
    fn matches_a_plain_map_of_deadlines() {
        // (deadline spread, clock step spread): one slot, level 0, level 1, several levels,
        // the top level's wrap, and beyond the reach.
        let scales = [
            (100, 20),
            (3_000, 300),
            (300_000, 40_000),
            (50_000_000, 9_000_000),
            (REACH + 5_000, REACH / 3),
            (4 * SPAN, SPAN / 2),
        ];
        // Times `next` gave before the earliest deadline (a slot's bound).
        let mut early = 0;
        for (k, &(spread, step)) in scales.iter().enumerate() {
            let mut t = Timers::default();
            let mut model: alloc::collections::BTreeMap<u32, u64> = Default::default();
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ k as u64;
            // Start near the top level's turn for some runs: deadlines cross it.
            let mut now = if k % 2 == 1 { SPAN - 7_777 } else { 0 };
            for _ in 0..60_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let idx = (x % 64) as u32;
                match (x >> 8) % 8 {
                    0..=4 => {
                        // Mostly near, sometimes a deadline already past.
                        let r = (x >> 16) % spread.max(1);
                        let at = if (x >> 60) == 0 {
                            now.saturating_sub(r % 50)
                        } else {
                            now + r
                        };
                        t.set(idx, at);
                        model.insert(idx, at);
                    }
                    5 => {
                        t.cancel(idx);
                        model.remove(&idx);
                    }
                    _ => {
                        now += (x >> 20) % step.max(1);
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
                        assert_eq!(due, want, "due at {now}, scale {k}");
                    }
                }
                let what = alloc::format!("next at {now}, scale {k}");
                early += check_next(&mut t, model.values().min().copied(), &what);
                assert_eq!(entries(&t), model.len());
            }
        }
        // The bound is used (and checked above) however the run's numbers fall.
        assert!(early > 100, "next was early {early} times");
    }

    /// `next` is the earliest deadline `want`, or a time before it at which a caller that
    /// wakes finds nothing due and is told `want` next. Returns 1 for the latter.
    fn check_next(t: &mut Timers, want: Option<u64>, what: &str) -> u32 {
        let got = t.next();
        match (got, want) {
            (g, w) if g == w => 0,
            (Some(g), Some(w)) if g < w => {
                let mut woken = t.clone();
                assert_eq!(woken.pop_due(g), None, "{what}: woken at {g}, before {w}");
                assert_eq!(woken.next(), Some(w), "{what}: after waking at {g}");
                1
            }
            _ => panic!("{what}: next {got:?}, earliest {want:?}"),
        }
    }

    /// A slot above level 0 with one entry keeps its deadline exact as it moves later: an
    /// endpoint with one quiet session wakes when its keepalive is due, not before.
    #[test]
    fn a_lone_deadline_moved_later_is_told_exactly() {
        let mut t = Timers::default();
        let mut at = 5_000;
        t.set(3, at);
        for _ in 0..10 {
            assert_eq!(t.next(), Some(at));
            at += 7;
            t.set(3, at);
        }
        assert_eq!(t.next(), Some(at));
        assert_eq!(t.pop_due(at - 1), None);
        assert_eq!(t.pop_due(at), Some(3));
    }

    /// A slot's entries leaving one by one, the earliest first, as ACKs arrive: `next` is
    /// never after the earliest deadline left, and a wake-up at what it said finds the slot
    /// come up and tells the rest exactly.
    #[test]
    fn a_busy_slot_tells_a_bound_then_the_deadline() {
        let mut t = Timers::default();
        for i in 0..100u32 {
            t.set(i, 1_000 + u64::from(i));
        }
        assert_eq!(t.next(), Some(1_000));
        // The earliest ones move far out (their ACK came), in order.
        let mut early = 0;
        for i in 0..50u32 {
            t.set(i, 1_000_000);
            early += check_next(&mut t, Some(1_001 + u64::from(i)), "after a move");
        }
        assert!(early > 10, "{early}");
        // Earlier moves relink at once and are exact.
        t.set(99, 900);
        assert_eq!(t.next(), Some(900));
        assert_eq!(t.pop_due(950), Some(99));
        assert_eq!(t.pop_due(1_049), None);
        assert_eq!(t.next(), Some(1_050));
        assert_eq!(entries(&t), 99);
    }
}
