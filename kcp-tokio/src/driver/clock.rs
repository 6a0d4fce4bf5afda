//! The driver's 64-bit millisecond clock and its conversions to the endpoint's `u32` time.

use super::*;

/// The driver's clock: milliseconds since it started (plus a test offset), 64 bits.
pub(crate) struct Clock {
    start: Instant,
    offset_ms: u64,
}

impl Clock {
    pub(crate) fn new(offset_ms: u64) -> Clock {
        Clock {
            start: Instant::now(),
            offset_ms,
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.offset_ms
            .saturating_add(self.start.elapsed().as_millis() as u64)
    }

    /// The first clock reading at or after `at`.
    pub(crate) fn ms_at_or_after(&self, at: Instant) -> u64 {
        let ns = at.saturating_duration_since(self.start).as_nanos();
        self.offset_ms
            .saturating_add(ns.div_ceil(1_000_000).min(u64::MAX as u128) as u64)
    }

    /// The instant at clock reading `ms`.
    pub(crate) fn instant_at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms.saturating_sub(self.offset_ms))
    }
}

/// The endpoint's view of the 64-bit time `ms`.
pub(crate) fn millis(ms: u64) -> Millis {
    Millis(ms as u32)
}

/// The 64-bit time of an endpoint deadline `t` seen at 64-bit time `now` (a deadline in the
/// past is `now`).
pub(crate) fn deadline_ms(now: u64, t: Millis) -> u64 {
    now + t.since(millis(now)).max(0) as u64
}
