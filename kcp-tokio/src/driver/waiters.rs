//! Tasks waiting for a condition (readable, writable, flushed, incoming), woken together.

use super::*;

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A fresh key for one waiting caller.
pub(crate) fn waiter_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// Tasks waiting for one condition, one entry per caller (keyed), all woken together: several
/// concurrent callers never overwrite each other's waker.
#[derive(Default)]
pub(crate) struct Waiters(Vec<(u64, Waker)>);

impl Waiters {
    pub(crate) fn register(&mut self, key: u64, waker: &Waker) {
        match self.0.iter_mut().find(|e| e.0 == key) {
            Some(e) => {
                if !e.1.will_wake(waker) {
                    e.1 = waker.clone();
                }
            }
            None => {
                // Most conditions have one caller: room for one (a first push would make
                // room for four), then the usual doubling.
                if self.0.capacity() == 0 {
                    self.0.reserve_exact(1);
                }
                self.0.push((key, waker.clone()))
            }
        }
    }

    pub(crate) fn remove(&mut self, key: u64) {
        self.0.retain(|e| e.0 != key);
    }

    pub(super) fn take_into(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.0.drain(..).map(|e| e.1));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Callers the entry table has room for (its heap).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.0.capacity()
    }
}
