//! Flush: what to send (ACKs, probes, new data, retransmissions) and datagram assembly.
//!
//! A flush is *decided* when [`Kcp::poll_transmit`] first runs after a request (timer, send,
//! window slide, ack-no-delay): probing, moving queued segments into the window, choosing
//! retransmissions (`docs/protocol.md`, "Sending and retransmission") and updating congestion
//! state happen then, at that `now`. The chosen items are then *emitted* one datagram per
//! `poll_transmit` call, in kcp-go's order (ACKs, WASK, WINS, PUSH in sequence order), each
//! datagram packed up to the MTU.
//!
//! Cost: when no retransmission can be due (no fast-ack candidate and the earliest
//! retransmission deadline not reached), only newly admitted segments are visited, so a flush
//! with nothing due is O(1) whatever the window. Otherwise the unacknowledged segments are
//! walked once, as kcp-go walks `snd_buf`.

use crate::congestion::{Controller, FlushEvent};
use crate::time::{seq_diff, Millis};
use crate::wire::{Command, SegmentRepr, HEADER_LEN};

use super::retransmit::Walk;
use super::{Kcp, Pending, ASK_SEND, ASK_TELL, NO_CHUNK};

impl Kcp<'_> {
    /// Writes the next datagram to send into `buf` and returns its length, or `None` when there
    /// is nothing (more) to send now.
    ///
    /// `buf` must hold at least `mtu - header_room - trailer_room` bytes (the KCP part of a
    /// full-size datagram); codec layers put their headers in front. Call this until it returns
    /// `None` after every call that changes the engine.
    pub fn poll_transmit(&mut self, now: Millis, buf: &mut [u8]) -> Option<usize> {
        let now = self.observe(now);
        let pending = core::mem::replace(&mut self.pending, Pending::None);
        if pending != Pending::None {
            self.decide_flush(now, pending);
        }
        self.rearm(now);
        let limit = buf.len().min(self.mss as usize + HEADER_LEN);
        let n = self.assemble(&mut buf[..limit]);
        if n > 0 {
            self.stats.out_datagrams += 1;
            self.stats.out_bytes += n as u64;
            Some(n)
        } else {
            None
        }
    }

    /// Arms the timer if the session has work: at the next tick of kcp-go's periodic
    /// schedule, or, when only a retransmission or probe can be due ([`quiet`](Self::quiet)),
    /// at that deadline; moves an armed timer earlier when the work changed (an ACK to send
    /// arrived while it slept until a retransmission deadline). Disarms it when idle, so an
    /// idle session costs nothing.
    pub(crate) fn rearm(&mut self, now: Millis) {
        // A closed peer window keeps the timer running even with nothing queued: only a probe
        // finds out that it opened again (a peer that grows its window without telling, as
        // kcp-go does after SetWindowSize, would otherwise leave a writer blocked for ever).
        let busy =
            !self.snd.is_empty() || !self.acks.is_empty() || self.probe != 0 || self.rmt_wnd == 0;
        if !busy {
            if self.pending == Pending::None {
                self.timer = None;
            }
            return;
        }
        let want = if self.quiet() {
            match self.quiet_deadline() {
                Some(d) => d.max_wrapping(now + 1),
                None => return,
            }
        } else {
            // The next tick of the schedule kcp-go's timer would have kept while we slept.
            let interval = self.cfg.interval;
            // The anchor is the last scheduled tick, at most an interval ahead of any clock
            // reading; further ahead, the clock has wrapped: start over from now.
            if self.timer_anchor.since(now) > interval as i32 {
                self.timer_anchor = now;
            }
            let behind = now.since(self.timer_anchor).max(0) as u32;
            // Waking from idle on a later tick's own millisecond, that tick counts as past: on
            // a millisecond clock the datagram (or write) that woke the engine may as well
            // have come just after it, as kcp-go's finer timer mostly sees it. The ACKs then
            // wait for the application's answer or the next tick, as they do on the other
            // milliseconds, instead of leaving alone at once whenever the peer's sends keep
            // step with the interval (a peer sending every second does, for ever). The
            // anchor's own tick (a new session's first, which kcp-go runs at creation) stays.
            let ticks = if self.timer.is_none() && behind > 0 && behind.is_multiple_of(interval) {
                behind / interval + 1
            } else {
                behind.div_ceil(interval)
            };
            self.timer_anchor + ticks.saturating_mul(interval)
        };
        match self.timer {
            Some(t) if t.since(want) <= 0 => {}
            _ => {
                self.timer = Some(want);
                if !self.quiet() {
                    self.timer_anchor = want;
                }
            }
        }
        {
            // Paced segments wait for credit: wake when it is due (the periodic tick keeps
            // its schedule in `timer_anchor`).
            if let Some(d) = self.pacer().and_then(|p| p.due) {
                let d = d.max_wrapping(now + 1);
                if self.timer.is_none_or(|t| t.since(d) > 0) {
                    self.timer = Some(d);
                }
            }
        }
    }

    /// Whether a timer tick could only find retransmissions or probes to do: no ACK to send,
    /// no probe to emit, no fast-retransmit candidate, nothing queued. Then the engine sleeps
    /// until the earliest retransmission deadline (or probe) instead of ticking every
    /// interval: kcp-go's timer fires at `min(interval, resendts - now)` and finds nothing to
    /// do at the ticks in between, so skipping them changes no datagram. With thousands of
    /// sessions waiting for acknowledgements, those ticks were most of a server's work.
    fn quiet(&self) -> bool {
        self.acks.is_empty()
            && self.probe == 0
            && self.emit_probe == 0
            && self.fast_candidates == 0
            && self.snd_nxt == self.snd.end()
            && self.pending == Pending::None
            // A closed window not yet scheduled for probing needs a flush to schedule it.
            && !(self.rmt_wnd == 0 && self.probe_wait == 0)
    }

    /// When a quiet engine next has something to do: its earliest retransmission deadline or
    /// zero-window probe.
    fn quiet_deadline(&self) -> Option<Millis> {
        let probe = (self.rmt_wnd == 0 && self.probe_wait > 0).then_some(self.ts_probe);
        match (self.rto_bound.filter(|_| self.ua_head.is_some()), probe) {
            (Some(a), Some(b)) => Some(a.min_wrapping(b)),
            (a, b) => a.or(b),
        }
    }

    fn decide_flush(&mut self, now: Millis, kind: Pending) {
        self.ack_budget = self.acks.len();
        self.last_ack = (0, 0);
        if kind == Pending::AckOnly {
            return;
        }

        self.schedule_probe(now);
        let (window, first_new, new) = self.admit_into_window(now);
        let resent = if self.cfg.resend > 0 {
            self.cfg.resend
        } else {
            u32::MAX
        };
        let Walk {
            next,
            change,
            lost,
            fast,
            early: early_n,
        } = self.decide_retransmits(now, first_new, new, resent);

        let retrans = (lost + fast + early_n) as u64;
        self.stats.lost_segs += lost as u64;
        self.stats.fast_retrans_segs += fast as u64;
        self.stats.early_retrans_segs += early_n as u64;
        self.stats.retrans_segs += retrans;

        let inflight = self.snd_nxt.wrapping_sub(self.snd.base());
        let mss = self.mss;
        self.cc.on_flush(FlushEvent {
            fast: change,
            lost,
            inflight,
            window,
            resend: resent,
            mss,
        });

        if kind == Pending::Timer {
            // kcp-go re-arms at now + next on a sub-millisecond clock; on a millisecond clock,
            // a tick that runs late would push every later tick back. Keep the cadence of the
            // deadline that fired (never earlier than the next millisecond).
            let base = match self.timer {
                Some(t) if now.since(t) >= 0 && now.since(t) < next as i32 => t,
                _ => now,
            };
            let mut at = base + next;
            if !at.reached(now + 1) {
                at = now + 1;
            }
            self.timer_anchor = at;
            if self.quiet() {
                // The tick would find nothing: wake at the next retransmission or probe (the
                // anchor keeps the phase for when ticking resumes). `None` when nothing can be
                // due: the engine sleeps until it is called.
                self.timer = self.quiet_deadline().map(|d| d.max_wrapping(now + 1));
            } else {
                self.timer = Some(at);
            }
        }
    }

    /// Packs ACKs, probes and segments into one datagram; returns its length (0: nothing).
    fn assemble(&mut self, buf: &mut [u8]) -> usize {
        let limit = buf.len();
        let mut at = 0usize;
        let wnd = self.wnd_unused();
        let mut hdr = SegmentRepr {
            conv: self.conv,
            cmd: Command::Ack,
            frg: 0,
            wnd,
            ts: self.last_ack.1,
            sn: self.last_ack.0,
            una: self.rcv_nxt,
            len: 0,
        };

        while self.ack_budget > 0 {
            let Some(entry) = self.acks.at(0).copied() else {
                self.ack_budget = 0;
                break;
            };
            let last = self.ack_budget == 1;
            // kcp-go skips ACKs that `una` already covers, except the list's last one.
            if seq_diff(entry.sn, self.rcv_nxt) < 0 && !last {
                self.acks.pop_front();
                self.ack_budget -= 1;
                continue;
            }
            if at + HEADER_LEN > limit {
                return at;
            }
            hdr.sn = entry.sn;
            hdr.ts = entry.ts;
            self.last_ack = (entry.sn, entry.ts);
            if hdr.emit(&mut buf[at..]).is_err() {
                return at;
            }
            at += HEADER_LEN;
            self.stats.out_segs += 1;
            self.stats.acks_out += 1;
            self.acks.pop_front();
            self.ack_budget -= 1;
        }

        // WASK and WINS carry the sn/ts of the last ACK written (`docs/protocol.md`, KCP
        // segments, "Datagrams").
        for (bit, cmd) in [
            (ASK_SEND, Command::WindowAsk),
            (ASK_TELL, Command::WindowTell),
        ] {
            if self.emit_probe & bit != 0 {
                if at + HEADER_LEN > limit {
                    return at;
                }
                hdr.cmd = cmd;
                if hdr.emit(&mut buf[at..]).is_err() {
                    return at;
                }
                at += HEADER_LEN;
                self.stats.out_segs += 1;
                self.emit_probe &= !bit;
            }
        }

        while let Some(sn) = self.txq.at(0).copied() {
            let seg = match self.snd.get(sn) {
                Some(s) if !s.acked && s.in_txq => *s,
                _ => {
                    self.txq.pop_front();
                    continue;
                }
            };
            let len = seg.len as usize;
            if at + HEADER_LEN + len > limit {
                if at == 0 {
                    // Cannot fit even alone (buffer smaller than the MTU): drop it from this
                    // flush rather than stall; its retransmission timer still runs.
                    self.txq.pop_front();
                    if let Some(s) = self.snd.get_mut(sn) {
                        s.in_txq = false;
                    }
                    continue;
                }
                return at;
            }
            let repr = SegmentRepr {
                conv: self.conv,
                cmd: Command::Push,
                frg: seg.frg,
                wnd,
                ts: seg.ts,
                sn,
                una: self.rcv_nxt,
                len: len as u32,
            };
            if repr.emit(&mut buf[at..]).is_err() {
                return at;
            }
            at += HEADER_LEN;
            if len > 0 && seg.chunk != NO_CHUNK {
                if let (Some(dst), Some(src)) = (
                    buf.get_mut(at..at + len),
                    self.pool.chunk(seg.chunk).get(..len),
                ) {
                    dst.copy_from_slice(src);
                }
            }
            at += len;
            self.stats.out_segs += 1;
            self.txq.pop_front();
            if let Some(s) = self.snd.get_mut(sn) {
                s.in_txq = false;
            }
        }
        at
    }
}
