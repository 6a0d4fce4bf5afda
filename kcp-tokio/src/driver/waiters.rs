//! Tasks waiting for a condition (readable, writable, flushed, incoming), woken together.

use super::*;

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A fresh key for one waiting caller.
pub(crate) fn waiter_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// Tasks waiting for one condition, one entry per caller (keyed), all woken together: several
/// concurrent callers never overwrite each other's waker.
///
/// Almost every condition has one caller at a time (a stream's one reader, its one writer),
/// so that caller's entry is kept inline: registering, finding and waking it touches the
/// session's own entry and no table on the heap (at 10,000 sessions the table was one more
/// cache miss per read and per write). A second concurrent caller moves both to a table.
#[derive(Default)]
pub(crate) enum Waiters {
    /// Nobody waits.
    #[default]
    Empty,
    /// One caller: its key and waker.
    One(u64, Waker),
    /// Several callers (a table, kept once made: such a condition is likely to have several
    /// again).
    Many(Vec<(u64, Waker)>),
}

impl Waiters {
    pub(crate) fn register(&mut self, key: u64, waker: &Waker) {
        match self {
            Waiters::Empty => *self = Waiters::One(key, waker.clone()),
            Waiters::One(k, w) if *k == key => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
            }
            Waiters::One(..) => {
                let Waiters::One(k, w) = std::mem::take(self) else {
                    unreachable!("matched One above")
                };
                *self = Waiters::Many(vec![(k, w), (key, waker.clone())]);
            }
            Waiters::Many(v) => match v.iter_mut().find(|e| e.0 == key) {
                Some(e) => {
                    if !e.1.will_wake(waker) {
                        e.1 = waker.clone();
                    }
                }
                None => v.push((key, waker.clone())),
            },
        }
    }

    pub(crate) fn remove(&mut self, key: u64) {
        match self {
            Waiters::One(k, _) if *k == key => *self = Waiters::Empty,
            Waiters::Many(v) => v.retain(|e| e.0 != key),
            _ => {}
        }
    }

    pub(super) fn take_into(&mut self, out: &mut Vec<Waker>) {
        match self {
            Waiters::Empty => {}
            Waiters::One(..) => {
                if let Waiters::One(_, w) = std::mem::take(self) {
                    out.push(w);
                }
            }
            Waiters::Many(v) => out.extend(v.drain(..).map(|e| e.1)),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Waiters::Empty => true,
            Waiters::One(..) => false,
            Waiters::Many(v) => v.is_empty(),
        }
    }

    /// Callers waiting now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        match self {
            Waiters::Empty => 0,
            Waiters::One(..) => 1,
            Waiters::Many(v) => v.len(),
        }
    }

    /// Whether the callers' entries are on the heap (a table).
    #[cfg(test)]
    pub(super) fn on_heap(&self) -> bool {
        matches!(self, Waiters::Many(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn wake_all(w: &mut Waiters) -> usize {
        let mut out = Vec::new();
        w.take_into(&mut out);
        let n = out.len();
        out.into_iter().for_each(Waker::wake);
        n
    }

    #[test]
    fn one_caller_stays_inline_and_its_latest_waker_is_woken() {
        let (a, wa) = counting();
        let (b, wb) = counting();
        let mut w = Waiters::default();
        w.register(7, &wa);
        // The same caller polled again from another task: its newer waker replaces the old.
        w.register(7, &wb);
        assert_eq!(w.len(), 1);
        assert!(!w.on_heap());
        assert_eq!(wake_all(&mut w), 1);
        assert_eq!(a.0.load(Ordering::SeqCst), 0);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert!(w.is_empty());
    }

    #[test]
    fn concurrent_callers_are_all_woken_and_each_can_leave() {
        let counts: Vec<_> = (0..4).map(|_| counting()).collect();
        let mut w = Waiters::default();
        for (k, (_, waker)) in counts.iter().enumerate() {
            w.register(k as u64, waker);
        }
        assert_eq!(w.len(), 4);
        assert!(w.on_heap());
        // Registering again does not add an entry; a caller that leaves is not woken.
        w.register(2, &counts[2].1);
        w.remove(1);
        assert_eq!(w.len(), 3);
        assert_eq!(wake_all(&mut w), 3);
        let woken: Vec<_> = counts
            .iter()
            .map(|(c, _)| c.0.load(Ordering::SeqCst))
            .collect();
        assert_eq!(woken, [1, 0, 1, 1]);
        assert!(w.is_empty());
        // Removing a key that is not there changes nothing.
        w.register(9, &counts[0].1);
        w.remove(8);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn a_lone_callers_removal_empties_and_another_key_is_left_alone() {
        let (c, waker) = counting();
        let mut w = Waiters::default();
        w.register(1, &waker);
        w.remove(2);
        assert_eq!(w.len(), 1);
        w.remove(1);
        assert!(w.is_empty());
        assert_eq!(wake_all(&mut w), 0);
        assert_eq!(c.0.load(Ordering::SeqCst), 0);
    }
}
