//! KCP's classic controller: slow start, congestion avoidance, rate halving on fast retransmit
//! and a reset to one segment on timeout (kcp-go v5.6.1 quirks included; `docs/protocol.md`,
//! "Congestion window").

use super::{Controller, FlushEvent};

/// cwnd/ssthresh state, in segments (`incr` in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classic {
    /// Congestion window in segments.
    pub cwnd: u32,
    /// Slow-start threshold.
    pub ssthresh: u32,
    /// Byte counter for congestion avoidance.
    pub incr: u32,
}

impl Default for Classic {
    fn default() -> Self {
        Classic {
            cwnd: 0,
            ssthresh: 2,
            incr: 0,
        }
    }
}

const THRESH_MIN: u32 = 2;

impl Classic {
    /// The state after kcp-go's first flush. A raw KCP starts with `cwnd = 0` (the
    /// [`Default`]), so its first flush moves no data and only opens the window to 1; a kcp-go
    /// session runs that flush from its timer the moment it is created, before the application
    /// can write. The engine models the session, so it starts here.
    pub fn opened() -> Classic {
        Classic {
            cwnd: 1,
            ssthresh: THRESH_MIN,
            incr: 0,
        }
    }
}

impl Controller for Classic {
    fn window(&self) -> Option<u32> {
        Some(self.cwnd)
    }

    fn on_ack(&mut self, mss: u32, rmt_wnd: u32) {
        if self.cwnd >= rmt_wnd {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd += 1;
            self.incr = self.incr.wrapping_add(mss);
        } else {
            self.incr = self.incr.max(mss);
            self.incr = self
                .incr
                .wrapping_add((mss.wrapping_mul(mss) / self.incr.max(1)).wrapping_add(mss / 16));
            if mss > 0 && (self.cwnd as u64 + 1) * mss as u64 <= self.incr as u64 {
                self.cwnd = (self.incr as u64).div_ceil(mss as u64) as u32;
            }
        }
        if self.cwnd > rmt_wnd {
            self.cwnd = rmt_wnd;
            self.incr = rmt_wnd.wrapping_mul(mss);
        }
    }

    fn on_flush(&mut self, ev: FlushEvent) {
        if ev.fast > 0 {
            self.ssthresh = (ev.inflight / 2).max(THRESH_MIN);
            // kcp-go quirk: with fast retransmit off, resend is u32::MAX and this wraps to
            // ssthresh - 1 (early retransmits count here too).
            self.cwnd = self.ssthresh.wrapping_add(ev.resend);
            self.incr = self.cwnd.wrapping_mul(ev.mss);
        }
        if ev.lost > 0 {
            self.ssthresh = (ev.window / 2).max(THRESH_MIN);
            self.cwnd = 1;
            self.incr = ev.mss;
        }
        if self.cwnd < 1 {
            self.cwnd = 1;
            self.incr = ev.mss;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_flush_opens_window_to_one_then_slow_start() {
        let mut c = Classic::default();
        assert_eq!(c.window(), Some(0));
        c.on_flush(FlushEvent {
            fast: 0,
            lost: 0,
            inflight: 0,
            window: 0,
            resend: 2,
            mss: 1376,
        });
        assert_eq!(c.window(), Some(1));
        c.on_ack(1376, 32);
        assert_eq!(c.window(), Some(2));
        c.on_ack(1376, 32);
        assert_eq!(
            c.window(),
            Some(2),
            "ssthresh 2 reached: congestion avoidance"
        );
    }

    #[test]
    fn timeout_resets_to_one_and_fast_retransmit_halves() {
        let mut c = Classic {
            cwnd: 20,
            ssthresh: 10,
            incr: 0,
        };
        let ev = FlushEvent {
            fast: 1,
            lost: 0,
            inflight: 16,
            window: 20,
            resend: 2,
            mss: 100,
        };
        c.on_flush(ev);
        assert_eq!((c.cwnd, c.ssthresh), (10, 8));
        c.on_flush(FlushEvent {
            fast: 0,
            lost: 1,
            ..ev
        });
        assert_eq!((c.cwnd, c.ssthresh), (1, 10));
    }
}
