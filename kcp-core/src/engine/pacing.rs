//! Pacing (`Config::pacing`): new data leaves at a rate measured from the acknowledgements,
//! within a bound on what is in flight, instead of a whole window at once.
//!
//! * **Delivery rate.** Bytes newly acknowledged (by `una` or by ACK) are counted; every
//!   sample period (the smoothed RTT, at least [`SAMPLE_MIN_MS`]) the count over the period
//!   gives a sample. The estimate is the larger of the last two samples; a lower sample taken
//!   while the sender ran out of data (application-limited) is ignored.
//! * **Pacing rate.** New segments enter the window only while a token bucket holds credit,
//!   refilled at the estimate times a gain: 2 while the rate still grows by a quarter per
//!   sample (start-up), 5/4 after. The bucket holds [`BUCKET_MS`] of the rate (at least two
//!   segments), so a segment leaves in every millisecond the rate allows, not one burst per
//!   interval; the engine's timer wakes when credit for the next segment is due.
//! * **In-flight bound.** At most the estimate times `min_rtt + interval` is in flight
//!   (`2 * min_rtt + interval` in start-up): the interval covers the peer's delayed ACKs, and
//!   the queue a sender builds at the bottleneck stays within it, so a segment's round trip
//!   stays under its retransmission timeout (which is at least `srtt + interval`). A larger
//!   window then no longer means a longer queue. In flight means sent and not acknowledged:
//!   segments acknowledged beyond a hole do not count, so repairing a loss does not stall.
//! * **First timeout.** A new segment's first RTO is at least the time what is in flight ahead
//!   of it takes to drain at the delivery rate, plus an interval: a queue that grows faster
//!   than the RTT estimate follows (start-up on a long path) causes no spurious timeout.
//! * **Before the first estimate** at most [`INITIAL_SEGS`] segments are in flight, and
//!   **before anything was heard from the peer** only one: a server that keeps a bounded part
//!   of a new client's first flight (a SYN cache, as our endpoint's half-open entries) gets all
//!   of it, and the rest follows once the peer answered.
//!
//! Everything is computed from the `now` values the engine is given; retransmissions are not
//! paced. With pacing off none of this runs and the engine's output is unchanged.

use super::*;
use crate::wire::HEADER_LEN;

/// Shortest sample period of the delivery rate, ms.
pub(super) const SAMPLE_MIN_MS: u32 = 4;
/// The token bucket holds this many ms of the pacing rate.
pub(super) const BUCKET_MS: u64 = 2;
/// Segments in flight before the first delivery-rate sample.
pub(super) const INITIAL_SEGS: u32 = 32;
/// Segments in flight before the first datagram from the peer.
pub(super) const CONNECTING_SEGS: u32 = 1;
/// Fewest segments the in-flight bound allows once an estimate exists.
const MIN_SEGS: u64 = INITIAL_SEGS as u64;
/// How long the minimum RTT is kept before a newer sample replaces it, ms.
const MIN_RTT_WINDOW_MS: i32 = 10_000;
/// Start-up ends after this many samples without a quarter's growth.
const STARTUP_ROUNDS: u8 = 3;

/// The pacer's state (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacer {
    /// A datagram from the peer was processed.
    pub(super) heard: bool,
    /// Bytes newly acknowledged, in all.
    pub(super) delivered: u64,
    /// Segments sent and not acknowledged (what the in-flight bound counts: segments
    /// acknowledged beyond a hole are not in flight).
    pub(super) unacked: u32,
    /// Start of the current sample (`None`: the next acknowledgement starts one).
    sample_at: Option<Millis>,
    sample_from: u64,
    /// The sender ran out of data during the current sample.
    app_limited: bool,
    /// The delivery-rate estimate, bytes per second (0: no sample yet), and the last sample.
    rate: u64,
    last_sample: u64,
    /// Start-up: the best rate so far and samples since it grew by a quarter.
    startup: bool,
    best: u64,
    flat: u8,
    /// Smallest RTT sample (ms) and when it was taken.
    min_rtt: Option<(u32, Millis)>,
    /// Pacing credit in thousandths of a byte, and when it was last refilled.
    credit: i64,
    credit_at: Millis,
    /// When credit for the next waiting segment is due (segments wait for it).
    pub(super) due: Option<Millis>,
}

impl Pacer {
    pub(super) fn new(now: Millis) -> Pacer {
        Pacer {
            heard: false,
            delivered: 0,
            unacked: 0,
            sample_at: None,
            sample_from: 0,
            app_limited: false,
            rate: 0,
            last_sample: 0,
            startup: true,
            best: 0,
            flat: 0,
            min_rtt: None,
            credit: 0,
            credit_at: now,
            due: None,
        }
    }

    /// Gain applied to the estimate, in quarters.
    fn gain_q(&self) -> u64 {
        if self.startup {
            8
        } else {
            5
        }
    }

    /// Bytes per second new data may leave at (`None`: no estimate yet, unpaced).
    pub(super) fn pacing_rate(&self) -> Option<u64> {
        (self.rate > 0).then(|| self.rate * self.gain_q() / 4)
    }

    /// The delivery-rate estimate in bytes per second (`None` before the first sample).
    pub(super) fn delivery_rate(&self) -> Option<u64> {
        (self.rate > 0).then_some(self.rate)
    }

    /// Notes an RTT sample.
    pub(super) fn on_rtt(&mut self, now: Millis, rtt: u32) {
        match self.min_rtt {
            Some((m, at)) if rtt > m && now.since(at) < MIN_RTT_WINDOW_MS => {}
            _ => self.min_rtt = Some((rtt, now)),
        }
    }

    /// After input: takes a delivery-rate sample when the period is over.
    pub(super) fn on_input(&mut self, now: Millis, srtt: i32) {
        let Some(at) = self.sample_at else {
            // The first acknowledgement after a quiet spell starts a sample.
            self.sample_at = Some(now);
            self.sample_from = self.delivered;
            self.app_limited = false;
            return;
        };
        let dt = now.since(at);
        let period = (srtt.max(0) as u32).max(SAMPLE_MIN_MS);
        if dt < period as i32 {
            return;
        }
        let sample = (self.delivered - self.sample_from) * 1000 / dt as u64;
        if !(self.app_limited && sample < self.rate) {
            self.rate = sample.max(self.last_sample);
            self.last_sample = sample;
            if self.startup {
                if sample >= self.best + self.best / 4 {
                    self.best = sample;
                    self.flat = 0;
                } else {
                    self.flat += 1;
                    if self.flat >= STARTUP_ROUNDS {
                        self.startup = false;
                    }
                }
            }
        }
        self.sample_at = Some(now);
        self.sample_from = self.delivered;
        self.app_limited = false;
    }

    /// Most segments in flight (sent and not acknowledged).
    pub(super) fn inflight_cap(&self, mss: u32, interval: u32) -> u32 {
        if !self.heard {
            return CONNECTING_SEGS;
        }
        if self.rate == 0 {
            return INITIAL_SEGS;
        }
        let min_rtt = self.min_rtt.map_or(0, |(m, _)| m) as u64;
        // The peer may hold its ACKs for up to an interval: that is part of the pipe, and the
        // queue allowance. Start-up doubles the path's part only (room for the rate to double
        // per round trip), never the queue's.
        let pipe = if self.startup { 2 * min_rtt } else { min_rtt };
        let ms = pipe + u64::from(interval);
        let bytes = self.rate * ms / 1000;
        let segs = bytes / u64::from(mss.max(1) + HEADER_LEN as u32);
        segs.clamp(MIN_SEGS, u64::from(u32::MAX)) as u32
    }

    /// Milliseconds to deliver `inflight` segments at the delivery rate (`None`: no estimate).
    pub(super) fn drain_ms(&self, inflight: u32, mss: u32) -> Option<u32> {
        (self.rate > 0).then(|| {
            let bytes = u64::from(inflight) * u64::from(mss + HEADER_LEN as u32);
            (bytes * 1000 / self.rate).min(u64::from(u32::MAX)) as u32
        })
    }

    /// Refills the credit for the time since the last refill.
    pub(super) fn refill(&mut self, now: Millis, mss: u32) {
        let dt = now.since(self.credit_at).max(0);
        self.credit_at = now;
        let Some(rate) = self.pacing_rate() else {
            return;
        };
        let seg = i64::from(mss + HEADER_LEN as u32) * 1000;
        let cap = (rate.saturating_mul(BUCKET_MS) as i64).max(2 * seg);
        self.credit = self
            .credit
            .saturating_add((rate as i64).saturating_mul(i64::from(dt)))
            .min(cap);
    }

    /// Whether a segment may enter the window now.
    pub(super) fn may_send(&self) -> bool {
        self.rate == 0 || self.credit > 0
    }

    /// Charges one admitted segment of `len` payload bytes.
    pub(super) fn charge(&mut self, len: u32) {
        if self.rate > 0 {
            self.credit -= i64::from(len + HEADER_LEN as u32) * 1000;
        }
    }

    /// After admission: `waiting` segments wait for credit (not for a window), `drained`
    /// the send queue is empty. Sets when credit for the next one is due.
    pub(super) fn after_admit(&mut self, now: Millis, waiting: bool, drained: bool) {
        if drained {
            self.app_limited = true;
        }
        self.due = match self.pacing_rate() {
            Some(rate) if waiting && self.credit <= 0 => {
                let ms = ((-self.credit) as u64 / rate.max(1)) as u32 + 1;
                Some(now + ms)
            }
            _ => None,
        };
    }
}

/// Where an engine keeps its pacer: boxed where there is an allocator (an unpaced engine
/// carries one pointer), inline without one.
#[cfg(feature = "alloc")]
pub(crate) type PacerSlot = Option<alloc::boxed::Box<Pacer>>;
/// Where an engine keeps its pacer: boxed where there is an allocator (an unpaced engine
/// carries one pointer), inline without one.
#[cfg(not(feature = "alloc"))]
pub(crate) type PacerSlot = Option<Pacer>;

/// A pacer when `on`, started at `now` with `unacked` segments already in flight.
pub(super) fn slot(on: bool, now: Millis, unacked: u32) -> PacerSlot {
    on.then(|| {
        let mut p = Pacer::new(now);
        p.unacked = unacked;
        #[cfg(feature = "alloc")]
        return alloc::boxed::Box::new(p);
        #[cfg(not(feature = "alloc"))]
        return p;
    })
}

/// The pacer in `slot`, borrowed apart from the rest of the engine.
pub(super) fn get_mut(slot: &mut PacerSlot) -> Option<&mut Pacer> {
    #[cfg(feature = "alloc")]
    return slot.as_deref_mut();
    #[cfg(not(feature = "alloc"))]
    return slot.as_mut();
}

impl Kcp<'_> {
    /// The pacer, with `Config::pacing`.
    pub(super) fn pacer(&self) -> Option<&Pacer> {
        #[cfg(feature = "alloc")]
        return self.pace.as_deref();
        #[cfg(not(feature = "alloc"))]
        return self.pace.as_ref();
    }

    /// The pacer, with `Config::pacing`.
    pub(super) fn pacer_mut(&mut self) -> Option<&mut Pacer> {
        get_mut(&mut self.pace)
    }

    /// Segments sent and not acknowledged (what a pacer turned on mid-session starts from).
    pub(super) fn unacked_segments(&self) -> u32 {
        let mut n = 0;
        let mut cur = self.ua_head;
        while let Some(sn) = cur {
            n += 1;
            cur = self.snd.get(sn).and_then(|s| s.next);
        }
        n
    }
}
