//! Time as a number: KCP's wrapping millisecond clock.
//!
//! KCP timestamps are `u32` milliseconds that wrap every ~49.7 days. The engine never reads a
//! clock; callers pass the current [`Millis`] into every call that needs it. Any monotonic
//! millisecond counter truncated to `u32` works, whatever its origin: peers only echo
//! timestamps back, so no clock agreement between them is needed.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A point on KCP's wrapping `u32` millisecond clock.
///
/// Ordering is wrap-aware: `a < b` when `b - a`, computed with wrapping arithmetic, is positive
/// as an `i32` (ikcp.c's `_itimediff`). This is a total order only for values less than 2^31 ms
/// (~24.8 days) apart, which holds for every pair of timestamps the engine compares. For that
/// reason `Millis` implements [`PartialOrd`] but not `Ord`; it must not be used as a key of a
/// sorted collection spanning more than 2^31 ms.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Millis(pub u32);

/// How far back a `now` may look and still be taken as a caller's stale reading (threads that
/// read the clock before taking a lock) rather than the wrapping clock having moved on by
/// 2^31 ms or more: one minute.
pub const STALE_MS: i32 = 60_000;

impl Millis {
    /// Milliseconds from `earlier` to `self`, negative when `self` is before `earlier`.
    #[inline]
    pub const fn since(self, earlier: Millis) -> i32 {
        self.0.wrapping_sub(earlier.0) as i32
    }

    /// `self + ms`, wrapping.
    #[inline]
    pub const fn add_ms(self, ms: u32) -> Millis {
        Millis(self.0.wrapping_add(ms))
    }

    /// Whether `self` is at or after `other` (wrap-aware).
    #[inline]
    pub const fn reached(self, other: Millis) -> bool {
        self.since(other) >= 0
    }

    /// The later of two instants (wrap-aware).
    #[inline]
    pub fn max_wrapping(self, other: Millis) -> Millis {
        if self.since(other) >= 0 {
            self
        } else {
            other
        }
    }

    /// The earlier of two instants (wrap-aware).
    #[inline]
    pub fn min_wrapping(self, other: Millis) -> Millis {
        if self.since(other) <= 0 {
            self
        } else {
            other
        }
    }
}

impl PartialOrd for Millis {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.since(*other).cmp(&0))
    }
}

impl Add<u32> for Millis {
    type Output = Millis;
    #[inline]
    fn add(self, rhs: u32) -> Millis {
        self.add_ms(rhs)
    }
}

impl AddAssign<u32> for Millis {
    #[inline]
    fn add_assign(&mut self, rhs: u32) {
        *self = self.add_ms(rhs);
    }
}

impl Sub for Millis {
    type Output = i32;
    /// Signed, wrap-aware difference in milliseconds.
    #[inline]
    fn sub(self, rhs: Millis) -> i32 {
        self.since(rhs)
    }
}

impl fmt::Debug for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Wrap-aware difference of two sequence numbers (`a - b` as `i32`), as ikcp.c's `_itimediff`.
#[inline]
pub(crate) const fn seq_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_is_wrap_aware() {
        let before_wrap = Millis(u32::MAX - 5);
        let after_wrap = before_wrap + 10;
        assert_eq!(after_wrap.0, 4);
        assert!(before_wrap < after_wrap);
        assert!(after_wrap > before_wrap);
        assert_eq!(after_wrap - before_wrap, 10);
        assert_eq!(before_wrap - after_wrap, -10);
        assert!(after_wrap.reached(before_wrap));
        assert!(!before_wrap.reached(after_wrap));
        assert_eq!(before_wrap.min_wrapping(after_wrap), before_wrap);
    }

    #[test]
    fn seq_diff_wraps() {
        assert_eq!(seq_diff(2, u32::MAX), 3);
        assert_eq!(seq_diff(u32::MAX, 2), -3);
    }
}
