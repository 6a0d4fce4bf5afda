//! Storage for the engine: one algorithm over borrowed or owned memory.
//!
//! Every buffer the engine uses is a [`Managed`] slice: either borrowed from the caller (a
//! `static` array on a microcontroller, sized at compile time, see
//! [`StaticBuffers`](crate::StaticBuffers)) or, with the `alloc` feature, an owned `Vec` that
//! grows with the data in flight up to a bound derived from the configured windows, and is
//! then reused without further allocation.
//!
//! * `ring.rs`, `SeqRing`: a ring indexed by wrapping sequence number, used for the send
//!   window (queued and in-flight segments), the receive window, the ACK list and the
//!   transmit queue. Lookups by sequence number are O(1); pushing at the back and popping at
//!   the front are O(1).
//! * `pool.rs`, `Pool`: fixed-size payload chunks (one segment's payload each) handed out and
//!   returned by id, so payload memory follows the segments that exist, not the configured
//!   windows.
//! * `chunk.rs`: the heap chunk ([`Chunk`], [`HEAP_CHUNK`] bytes) and the [`ChunkCache`] an
//!   endpoint's sessions share.

mod chunk;
mod pool;
mod ring;

pub(crate) use chunk::ChunkId;
#[cfg(feature = "alloc")]
pub use chunk::{Chunk, ChunkCache, HEAP_CHUNK};
pub(crate) use pool::Pool;
pub(crate) use ring::SeqRing;
#[cfg(feature = "alloc")]
pub(crate) use ring::MIN_RING;

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

#[cfg(test)]
mod tests {
    use super::pool::Pool;
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
        let mut p = Pool::borrowed(&mut arena, &mut free, 10);
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
