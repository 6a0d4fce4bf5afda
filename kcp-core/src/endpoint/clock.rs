//! The endpoint's clock: a wrapping millisecond reading from the caller becomes a monotonic
//! count that never goes back, and deadlines go back into the caller's frame.

use crate::time::Millis;

use super::{Endpoint, PeerAddr};

impl<A: PeerAddr> Endpoint<A> {
    /// Milliseconds since the endpoint first saw a time (monotonic, never wraps). Time never
    /// goes back. A `now` up to [`STALE_MS`](crate::time::STALE_MS) earlier than the
    /// endpoint's clock is either a caller's stale reading (another thread read the clock
    /// before taking its lock) or a clock that jumped forward by just under 2^32 ms; it counts
    /// as no time, but while readings stay behind, time counts from the latest of them, and
    /// deadlines are reported in their frame: timers neither freeze after such a jump nor run
    /// fast when stale readings interleave with fresh ones. A `now` that looks earlier by
    /// more is the wrapping clock having moved on by 2^31 ms or more, and counts forward by
    /// the wrapped difference.
    pub(super) fn tick(&mut self, now: Millis) -> u64 {
        let Some(last) = self.last_now else {
            self.last_now = Some(now);
            return self.elapsed;
        };
        let d = now.since(last);
        if d >= 0 {
            self.elapsed += d as u64;
            self.last_now = Some(now);
            self.shadow = None;
        } else if d >= -crate::time::STALE_MS {
            match self.shadow {
                Some(s) if now.since(s) > 0 => {
                    let p = now.since(s) as u32;
                    self.elapsed += u64::from(p);
                    self.last_now = Some(last + p);
                    self.shadow = Some(now);
                }
                Some(_) => {}
                None => self.shadow = Some(now),
            }
        } else {
            self.elapsed += u64::from(now.0.wrapping_sub(last.0));
            self.last_now = Some(now);
            self.shadow = None;
        }
        self.elapsed
    }

    /// The endpoint's own clock, which its sessions run on: the caller's, moved on from the
    /// last reading that was not behind (see [`tick`](Self::tick)); never goes back.
    pub(super) fn clock(&self, now: Millis) -> Millis {
        self.last_now.unwrap_or(now)
    }

    pub(super) fn to_millis(&self, at: u64) -> Millis {
        // In the caller's frame: the latest reading when readings are behind the clock.
        let base = self.shadow.or(self.last_now).unwrap_or(Millis(0));
        base + (at.saturating_sub(self.elapsed).min(u32::MAX as u64 / 2) as u32)
    }
}
