//! Storage for the engine: one algorithm over borrowed or owned memory.
//!
//! Every buffer the engine uses is a [`Managed`] slice: either borrowed from the caller (a
//! `static` array on a microcontroller, sized at compile time, see [`StaticBuffers`]) or, with
//! the `alloc` feature, an owned `Vec` that grows with the data in flight up to a bound derived
//! from the configured windows, and is then reused without further allocation.
//!
//! * [`SeqRing`]: a ring indexed by wrapping sequence number, used for the send window (queued
//!   and in-flight segments), the receive window, the ACK list and the transmit queue. Lookups by
//!   sequence number are O(1); pushing at the back and popping at the front are O(1).
//! * [`Pool`]: fixed-size payload chunks (one segment's payload each) handed out and returned by
//!   id, so payload memory follows the segments that exist, not the configured windows.

#[cfg(feature = "alloc")]
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

/// A slice that is either borrowed from the caller or (with `alloc`) owned and growable.
#[derive(Debug)]
pub enum Managed<'a, T> {
    /// Caller-provided storage of fixed capacity.
    Borrowed(&'a mut [T]),
    /// Heap storage that may grow up to a bound.
    #[cfg(feature = "alloc")]
    Owned(Vec<T>),
}

impl<T> Managed<'_, T> {
    /// Whether the storage is the caller's (fixed capacity).
    pub fn is_borrowed(&self) -> bool {
        match self {
            Managed::Borrowed(_) => true,
            #[cfg(feature = "alloc")]
            Managed::Owned(_) => false,
        }
    }
}

impl<T> Deref for Managed<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Managed::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Managed::Owned(v) => v,
        }
    }
}

impl<T> DerefMut for Managed<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Managed::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Managed::Owned(v) => v,
        }
    }
}

impl<'a, T> From<&'a mut [T]> for Managed<'a, T> {
    fn from(s: &'a mut [T]) -> Self {
        Managed::Borrowed(s)
    }
}

#[cfg(feature = "alloc")]
impl<T> From<Vec<T>> for Managed<'_, T> {
    fn from(v: Vec<T>) -> Self {
        Managed::Owned(v)
    }
}

/// A ring of `T` indexed by wrapping `u32` sequence number, starting at `base`.
///
/// Logical entries are `base .. base + len`. Owned storage grows (doubling, up to `max`) when
/// full; borrowed storage refuses to grow.
#[derive(Debug)]
pub(crate) struct SeqRing<'a, T> {
    slots: Managed<'a, T>,
    head: usize,
    len: usize,
    base: u32,
    max: usize,
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
            max,
        }
    }

    #[inline]
    pub(crate) fn base(&self) -> u32 {
        self.base
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sequence number one past the last entry.
    #[inline]
    pub(crate) fn end(&self) -> u32 {
        self.base.wrapping_add(self.len as u32)
    }

    /// The most entries this ring can ever hold.
    #[inline]
    pub(crate) fn max_len(&self) -> usize {
        self.max
    }

    #[inline]
    fn phys(&self, offset: usize) -> usize {
        let cap = self.slots.len();
        let i = self.head + offset;
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
        if off < self.len {
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
        if off < self.len {
            let p = self.phys(off);
            self.slots.get_mut(p)
        } else {
            None
        }
    }

    /// The entry at logical offset `off` from the front.
    #[inline]
    pub(crate) fn at(&self, off: usize) -> Option<&T> {
        if off < self.len {
            self.slots.get(self.phys(off))
        } else {
            None
        }
    }

    /// Appends `value` as entry `end()`. Fails when the ring is at its bound.
    pub(crate) fn push_back(&mut self, value: T) -> Result<(), T> {
        if self.len == self.slots.len() && !self.grow() {
            return Err(value);
        }
        let p = self.phys(self.len);
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
        let v = self.slots.get(self.head).copied();
        self.head = self.phys(1);
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
        while self.slots.len() - self.len < n {
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
        self.max = max.max(self.len);
        self.max == max
    }

    /// Free entries before the bound is reached.
    pub(crate) fn spare(&self) -> usize {
        self.max.saturating_sub(self.len)
    }

    #[cfg(feature = "alloc")]
    fn grow(&mut self) -> bool {
        let cap = self.slots.len();
        if cap >= self.max {
            return false;
        }
        let new_cap = (cap * 2).clamp(8, self.max);
        let Managed::Owned(v) = &mut self.slots else {
            return false;
        };
        // Linearise the ring so the grown part is contiguous after the last entry.
        v.rotate_left(self.head);
        self.head = 0;
        v.resize(new_cap, T::default());
        true
    }

    #[cfg(not(feature = "alloc"))]
    fn grow(&mut self) -> bool {
        false
    }
}

/// Identifies one payload chunk of a [`Pool`].
pub(crate) type ChunkId = u32;

/// Fixed-size payload chunks, handed out by id.
#[derive(Debug)]
pub(crate) struct Pool<'a> {
    arena: Managed<'a, u8>,
    free: Managed<'a, ChunkId>,
    nfree: usize,
    chunk: usize,
    total: usize,
    max: usize,
}

impl<'a> Pool<'a> {
    /// A pool over `arena`, cut into chunks of `chunk` bytes. `free` must have room for one id
    /// per chunk (borrowed) or is grown alongside (owned); `max` bounds owned growth in chunks.
    pub(crate) fn new(
        arena: Managed<'a, u8>,
        free: Managed<'a, ChunkId>,
        chunk: usize,
        max: usize,
    ) -> Self {
        let chunk = chunk.max(1);
        let mut pool = Pool {
            total: arena.len() / chunk,
            arena,
            free,
            nfree: 0,
            chunk,
            max,
        };
        if pool.arena.is_borrowed() {
            pool.total = pool.total.min(pool.free.len());
            pool.max = pool.total;
        }
        for id in (0..pool.total).rev() {
            if let Some(slot) = pool.free.get_mut(pool.nfree) {
                *slot = id as ChunkId;
                pool.nfree += 1;
            }
        }
        pool
    }

    /// Bytes per chunk: the largest segment payload this pool can hold.
    #[inline]
    pub(crate) fn chunk_len(&self) -> usize {
        self.chunk
    }

    /// Chunks currently handed out.
    #[inline]
    pub(crate) fn in_use(&self) -> usize {
        self.total - self.nfree
    }

    /// Chunks that can still be handed out (including by growing).
    #[inline]
    pub(crate) fn available(&self) -> usize {
        self.nfree + (self.max - self.total)
    }

    /// Changes the bound in chunks (owned storage only), never below the chunks that exist.
    pub(crate) fn set_max(&mut self, max: usize) -> bool {
        if self.arena.is_borrowed() {
            return max <= self.max;
        }
        self.max = max.max(self.total);
        true
    }

    /// Takes a chunk, growing owned storage if needed. `None` when exhausted.
    pub(crate) fn take(&mut self) -> Option<ChunkId> {
        if self.nfree == 0 && !self.grow() {
            return None;
        }
        self.nfree -= 1;
        self.free.get(self.nfree).copied()
    }

    /// Returns a chunk to the pool.
    pub(crate) fn give(&mut self, id: ChunkId) {
        if let Some(slot) = self.free.get_mut(self.nfree) {
            *slot = id;
            self.nfree += 1;
        }
    }

    #[inline]
    pub(crate) fn chunk(&self, id: ChunkId) -> &[u8] {
        let start = id as usize * self.chunk;
        self.arena.get(start..start + self.chunk).unwrap_or(&[])
    }

    #[inline]
    pub(crate) fn chunk_mut(&mut self, id: ChunkId) -> &mut [u8] {
        let start = id as usize * self.chunk;
        self.arena
            .get_mut(start..start + self.chunk)
            .unwrap_or(&mut [])
    }

    #[cfg(feature = "alloc")]
    fn grow(&mut self) -> bool {
        if self.total >= self.max {
            return false;
        }
        let add = self.total.clamp(4, 64).min(self.max - self.total);
        let (Managed::Owned(arena), Managed::Owned(free)) = (&mut self.arena, &mut self.free)
        else {
            return false;
        };
        arena.resize((self.total + add) * self.chunk, 0);
        free.resize(self.total + add, 0);
        for id in (self.total..self.total + add).rev() {
            if let Some(slot) = free.get_mut(self.nfree) {
                *slot = id as ChunkId;
                self.nfree += 1;
            }
        }
        self.total += add;
        true
    }

    #[cfg(not(feature = "alloc"))]
    fn grow(&mut self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_indexes_by_wrapping_sequence_number() {
        let mut slots = [0u32; 4];
        let mut r = SeqRing::new(Managed::Borrowed(&mut slots), u32::MAX - 1, 4);
        for v in 0..4 {
            assert!(r.push_back(v).is_ok());
        }
        assert!(r.push_back(9).is_err(), "borrowed ring must not grow");
        assert_eq!(r.get(u32::MAX - 1), Some(&0));
        assert_eq!(r.get(1), Some(&3));
        assert_eq!(r.get(2), None);
        assert_eq!(r.pop_front(), Some(0));
        assert!(r.push_back(4).is_ok());
        assert_eq!(r.get(2), Some(&4));
        assert_eq!(r.base(), u32::MAX);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn owned_ring_grows_up_to_its_bound() {
        let mut r = SeqRing::new(Managed::Owned(alloc::vec::Vec::new()), 10, 20);
        for v in 0..20u32 {
            assert!(r.push_back(v).is_ok());
            if v == 5 {
                r.pop_front();
                r.pop_front();
                assert!(r.push_back(100).is_ok());
                assert!(r.push_back(101).is_ok());
            }
        }
        assert!(r.push_back(0).is_err());
        assert_eq!(r.len(), 20);
        assert_eq!(r.get(12), Some(&2));
    }

    #[test]
    fn pool_hands_out_distinct_chunks() {
        let mut arena = [0u8; 40];
        let mut free = [0u32; 4];
        let mut p = Pool::new(
            Managed::Borrowed(&mut arena),
            Managed::Borrowed(&mut free),
            10,
            0,
        );
        let a = p.take().unwrap();
        let b = p.take().unwrap();
        assert_ne!(a, b);
        p.chunk_mut(a).fill(1);
        assert!(p.chunk(b).iter().all(|&x| x == 0));
        assert_eq!(p.in_use(), 2);
        p.take().unwrap();
        p.take().unwrap();
        assert!(p.take().is_none());
        p.give(a);
        assert_eq!(p.take(), Some(a));
    }
}
