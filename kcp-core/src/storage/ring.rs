//! A ring indexed by wrapping sequence number.

use super::Managed;

/// Smallest owned ring: rings start here and shrink back here when they drain. One slot: a
/// small-message session (one message in flight, one ACK to send) holds one entry per ring,
/// and a bulk transfer's rings reach their size after two more doublings.
#[cfg(feature = "alloc")]
pub(crate) const MIN_RING: usize = 1;

/// A ring of `T` indexed by wrapping `u32` sequence number, starting at `base`.
///
/// Logical entries are `base .. base + len`. Owned storage grows (doubling, up to `max`) when
/// full; borrowed storage refuses to grow.
#[derive(Debug)]
pub(crate) struct SeqRing<'a, T> {
    slots: Managed<'a, T>,
    // u32 indices: rings never exceed 2 * MAX_WINDOW + MAX_FRAGMENTS entries, and a session
    // is smaller with them (memory per session is a target).
    head: u32,
    len: u32,
    base: u32,
    max: u32,
}

impl<'a, T: Copy + Default> SeqRing<'a, T> {
    pub(crate) fn new(slots: Managed<'a, T>, base: u32, max: usize) -> Self {
        let max = match &slots {
            #[cfg(feature = "alloc")]
            Managed::Owned(_) => max,
            borrowed => {
                let _ = max;
                borrowed.len()
            }
        };
        SeqRing {
            slots,
            head: 0,
            len: 0,
            base,
            max: max.min(u32::MAX as usize) as u32,
        }
    }

    #[inline]
    pub(crate) fn base(&self) -> u32 {
        self.base
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sequence number one past the last entry.
    #[inline]
    pub(crate) fn end(&self) -> u32 {
        self.base.wrapping_add(self.len)
    }

    /// The most entries this ring can ever hold.
    #[inline]
    pub(crate) fn max_len(&self) -> usize {
        self.max as usize
    }

    #[inline]
    fn phys(&self, offset: usize) -> usize {
        let cap = self.slots.len();
        let i = self.head as usize + offset;
        if i >= cap {
            i - cap
        } else {
            i
        }
    }

    /// The entry for sequence number `sn`, if it is in the ring.
    #[inline]
    pub(crate) fn get(&self, sn: u32) -> Option<&T> {
        let off = sn.wrapping_sub(self.base) as usize;
        if off < self.len as usize {
            let p = self.phys(off);
            self.slots.get(p)
        } else {
            None
        }
    }

    /// Mutable entry for sequence number `sn`, if it is in the ring.
    #[inline]
    pub(crate) fn get_mut(&mut self, sn: u32) -> Option<&mut T> {
        let off = sn.wrapping_sub(self.base) as usize;
        if off < self.len as usize {
            let p = self.phys(off);
            self.slots.get_mut(p)
        } else {
            None
        }
    }

    /// The entry at logical offset `off` from the front.
    #[inline]
    pub(crate) fn at(&self, off: usize) -> Option<&T> {
        if off < self.len as usize {
            self.slots.get(self.phys(off))
        } else {
            None
        }
    }

    /// Appends `value` as entry `end()`. Fails when the ring is at its bound.
    pub(crate) fn push_back(&mut self, value: T) -> Result<(), T> {
        if self.len as usize == self.slots.len() && !self.grow() {
            return Err(value);
        }
        let p = self.phys(self.len as usize);
        match self.slots.get_mut(p) {
            Some(slot) => {
                *slot = value;
                self.len += 1;
                Ok(())
            }
            None => Err(value),
        }
    }

    /// Removes the front entry (sequence number `base()`), advancing `base`.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let v = self.slots.get(self.head as usize).copied();
        self.head = self.phys(1) as u32;
        self.len -= 1;
        self.base = self.base.wrapping_add(1);
        if self.len == 0 {
            self.head = 0;
        }
        v
    }

    /// Removes every entry and restarts at `base`.
    pub(crate) fn reset(&mut self, base: u32) {
        self.head = 0;
        self.len = 0;
        self.base = base;
    }

    /// Makes sure at least `n` more entries fit without failing.
    pub(crate) fn reserve(&mut self, n: usize) -> bool {
        while self.slots.len() - (self.len as usize) < n {
            if !self.grow() {
                return false;
            }
        }
        true
    }

    /// Changes the bound (owned storage only; borrowed storage keeps its capacity). Never
    /// below the entries held. Returns whether the requested bound is in force.
    pub(crate) fn set_max(&mut self, max: usize) -> bool {
        if self.slots.is_borrowed() {
            return max <= self.slots.len();
        }
        let max = max.min(u32::MAX as usize) as u32;
        self.max = max.max(self.len);
        self.max == max
    }

    /// Free entries before the bound is reached.
    pub(crate) fn spare(&self) -> usize {
        self.max.saturating_sub(self.len) as usize
    }

    #[cfg(feature = "alloc")]
    fn grow(&mut self) -> bool {
        let cap = self.slots.len();
        if cap >= self.max as usize {
            return false;
        }
        // Doubling from a small start, never past the bound (`max` may be below the start).
        let new_cap = cap.saturating_mul(2).max(MIN_RING).min(self.max as usize);
        let Managed::Owned(v) = &mut self.slots else {
            return false;
        };
        // Linearise the ring so the grown part is contiguous after the last entry.
        v.rotate_left(self.head as usize);
        self.head = 0;
        v.reserve_exact(new_cap - cap);
        v.resize(new_cap, T::default());
        true
    }

    /// Gives owned storage back down to `keep` slots once the ring is empty (borrowed storage
    /// is the caller's and stays). Returns the bytes freed.
    #[cfg(feature = "alloc")]
    pub(crate) fn shrink(&mut self, keep: usize) -> usize {
        if self.len != 0 {
            return 0;
        }
        let Managed::Owned(v) = &mut self.slots else {
            return 0;
        };
        let before = v.capacity();
        if before <= keep {
            return 0;
        }
        self.head = 0;
        v.truncate(keep);
        v.shrink_to_fit();
        (before - v.capacity()) * core::mem::size_of::<T>()
    }

    /// Heap bytes held (owned storage; 0 when borrowed).
    #[cfg(feature = "alloc")]
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.slots {
            Managed::Owned(v) => v.capacity() * core::mem::size_of::<T>(),
            Managed::Borrowed(_) => 0,
        }
    }

    #[cfg(not(feature = "alloc"))]
    fn grow(&mut self) -> bool {
        false
    }
}
