//! The retransmission decision: which segments a flush sends, first transmissions of the
//! segments the window admits, fast retransmits on ACK evidence (`resend` skips), kcp-go's
//! early retransmit, and timeouts with their back-off; and when the next one is due.

use super::*;
use crate::config::Backoff;
use crate::congestion::Controller;

/// What a walk over the segments in flight decided.
pub(super) struct Walk {
    /// Milliseconds until the earliest retransmission deadline (at most the interval).
    pub(super) next: u32,
    /// Segments resent on ACK evidence (fast and early), for congestion control.
    pub(super) change: u32,
    /// Segments resent by timeout.
    pub(super) lost: u32,
    /// Fast retransmits.
    pub(super) fast: u32,
    /// Early retransmits.
    pub(super) early: u32,
}

impl Kcp<'_> {
    /// Admits queued segments into the send window (the smaller of ours, the peer's and the
    /// congestion window, and within the rate limit); returns the window, the first admitted sequence number and how
    /// many were admitted.
    pub(super) fn admit_into_window(&mut self, now: Millis) -> (u32, u32, u32) {
        let mut window = self.cfg.snd_wnd.min(self.rmt_wnd);
        if let Some(cwnd) = self.cc.window() {
            window = window.min(cwnd);
        }
        let (mss, interval) = (self.mss, self.cfg.interval);
        let pacing = self.pace.is_some();
        let cap = match self.pacer_mut() {
            Some(p) => {
                p.refill(now, mss);
                p.inflight_cap(mss, interval)
            }
            None => u32::MAX,
        };
        let first_new = self.snd_nxt;
        let mut new = 0u32;
        // The rate limit: a token bucket in bytes x ms, refilled by the time since the last
        // flush; a segment enters the window only while tokens remain. An idle sender's
        // bucket holds one interval's worth (no burst after a pause); a sender whose segments
        // waited for tokens is owed the whole time since (up to a few buckets), so a flush
        // that runs a millisecond late loses none of the rate.
        let rate = self.cfg.rate_limit;
        if rate > 0 {
            let dt = now.since(self.rate_at).max(0);
            self.rate_at = now;
            let bucket = super::rate_bucket(&self.cfg);
            let cap = if self.rate_starved {
                bucket.saturating_mul(super::RATE_CATCH_UP)
            } else {
                bucket
            };
            self.rate_tokens = self
                .rate_tokens
                .saturating_add(i64::from(rate) * i64::from(dt))
                .min(cap);
        }
        while self.snd_nxt != self.snd.end()
            && seq_diff(self.snd_nxt, self.snd.base().wrapping_add(window)) < 0
            && (rate == 0 || self.rate_tokens > 0)
            && self.pacer().is_none_or(|p| p.may_send() && p.unacked < cap)
        {
            let sn = self.snd_nxt;
            if let Some(seg) = self.snd.get_mut(sn) {
                seg.xmit = 0;
                seg.fastack = 0;
                if rate > 0 {
                    self.rate_tokens -= i64::from(seg.len) * 1000;
                }
                if let Some(p) = pacing::get_mut(&mut self.pace) {
                    p.charge(u32::from(seg.len));
                }
            }
            self.link_tail(sn);
            self.snd_nxt = sn.wrapping_add(1);
            new += 1;
        }
        if pacing {
            let drained = self.snd_nxt == self.snd.end();
            let room = seq_diff(self.snd_nxt, self.snd.base().wrapping_add(window)) < 0;
            if let Some(p) = self.pacer_mut() {
                let waiting = !drained && p.unacked < cap && room;
                p.after_admit(now, waiting, drained);
            }
        }
        if rate > 0 {
            self.rate_starved = self.rate_tokens <= 0
                && self.snd_nxt != self.snd.end()
                && seq_diff(self.snd_nxt, self.snd.base().wrapping_add(window)) < 0;
        }
        (window, first_new, new)
    }

    /// Walks the segments in flight that may be due (all of them when ACK evidence or a
    /// passed deadline says so, else only the newly admitted ones) and marks those to send.
    pub(super) fn decide_retransmits(
        &mut self,
        now: Millis,
        first_new: u32,
        new: u32,
        resent: u32,
    ) -> Walk {
        let full_walk = self.fast_candidates > 0 || self.rto_bound.is_some_and(|b| now.reached(b));
        let mut cur = if full_walk {
            self.ua_head
        } else if new > 0 {
            Some(first_new)
        } else {
            None
        };
        let early = self.cfg.early_retransmit;
        let hold = self.cfg.retransmit_hold_ms;
        let srtt_hold = (self.srtt.max(0) as u32).saturating_add(hold);
        let mut next = self.cfg.interval;
        let mut bound: Option<Millis> = if full_walk { None } else { self.rto_bound };
        let (mut change, mut lost, mut fast, mut early_n) = (0u32, 0u32, 0u32, 0u32);
        // Paced: a first transmission cannot be acknowledged before what is in flight ahead
        // of it has drained at the delivery rate; its first timeout is at least that plus an
        // interval (the peer's ACK delay), so a queue that grew faster than the RTT estimate
        // (start-up on a long path) causes no spurious timeout.
        let first_rto = if let Some(p) = self.pacer() {
            p.drain_ms(p.unacked, self.mss).map_or(self.rx_rto, |d| {
                self.rx_rto
                    .max(d.saturating_add(self.cfg.interval).min(RTO_MAX))
            })
        } else {
            self.rx_rto
        };

        while let Some(sn) = cur {
            let rx_rto = self.rx_rto;
            let Some(seg) = self.snd.get_mut(sn) else {
                break;
            };
            cur = seg.next;
            let mut send = false;
            let was_candidate = seg.fastack > 0;
            // With a hold (FEC sessions), a skipped segment is not resent by ACK evidence until
            // it has been out for an RTT plus the hold: time for a rebuilt copy to be acked.
            let held = hold > 0 && now.since(Millis(seg.ts)) < srtt_hold as i32;
            if held && seg.fastack > 0 {
                let d = (srtt_hold as i32).saturating_sub(now.since(Millis(seg.ts)));
                if d > 0 && (d as u32) < next {
                    next = d as u32;
                }
            }
            if seg.xmit == 0 {
                send = true;
                seg.rto = first_rto;
                seg.resendts = now + seg.rto;
                if self.cfg.backoff == Backoff::Exponential && !self.cfg.nodelay {
                    // ikcp.c 1.7: first deadline gets an extra rx_rto / 8.
                    seg.resendts += rx_rto >> 3;
                }
            } else if !held && seg.fastack >= resent {
                send = true;
                seg.fastack = 0;
                seg.rto = rx_rto;
                seg.resendts = now + seg.rto;
                change += 1;
                fast += 1;
            } else if !held && early && seg.fastack > 0 && new == 0 {
                send = true;
                seg.fastack = 0;
                seg.rto = rx_rto;
                seg.resendts = now + seg.rto;
                change += 1;
                early_n += 1;
            } else if now.reached(seg.resendts) {
                send = true;
                seg.rto = match (self.cfg.backoff, self.cfg.nodelay) {
                    (Backoff::Linear, false) => seg.rto.saturating_add(rx_rto),
                    (Backoff::Linear, true) => seg.rto.saturating_add(rx_rto / 2),
                    (Backoff::Exponential, false) => {
                        seg.rto.saturating_add(seg.rto.max(rx_rto)).min(RTO_MAX)
                    }
                    (Backoff::Exponential, true) => {
                        seg.rto.saturating_add(seg.rto / 2).min(RTO_MAX)
                    }
                };
                if self.cfg.backoff == Backoff::Linear {
                    // kcp-go resets fast-ack counting on timeout; ikcp.c does not.
                    seg.fastack = 0;
                }
                seg.resendts = now + seg.rto;
                lost += 1;
            }
            if was_candidate && seg.fastack == 0 {
                self.fast_candidates = self.fast_candidates.saturating_sub(1);
            }
            if send {
                seg.xmit = seg.xmit.saturating_add(1);
                seg.ts = now.0;
                if seg.xmit >= self.cfg.dead_link {
                    self.dead = true;
                }
                if !seg.in_txq {
                    seg.in_txq = true;
                    if self.txq.push_back(sn).is_err() {
                        seg.in_txq = false;
                    }
                }
            }
            let deadline = seg.resendts;
            bound = Some(bound.map_or(deadline, |b| b.min_wrapping(deadline)));
            let d = deadline.since(now);
            if d > 0 && (d as u32) < next {
                next = d as u32;
            }
        }
        self.rto_bound = if self.ua_head.is_some() { bound } else { None };
        if !full_walk {
            if let Some(b) = self.rto_bound {
                let d = b.since(now);
                if d > 0 && (d as u32) < next {
                    next = d as u32;
                }
            }
        }

        Walk {
            next,
            change,
            lost,
            fast,
            early: early_n,
        }
    }
}
