//! Timers, transmission, readiness and the end of sessions.

use crate::time::Millis;

use super::migration::within_budget;
use super::slot::{
    State, ATTACHED, NOT_IDLE, NO_GROUP, QUEUED, READABLE, RESCHED_QUEUED, SHARED, TRIMMED,
};
use super::{keyed, CloseReason, Endpoint, Event, PeerAddr, SessionId, TRIM_AFTER_MS};

impl<A: PeerAddr> Endpoint<A> {
    /// Runs every session timer due at `now`: engine timers, idle, shutdown, half-open and
    /// accept deadlines, and the trimming of sessions that went idle.
    pub fn handle_timeout(&mut self, now: Millis) {
        let t = self.tick(now);
        let now = self.clock(now);
        self.half_timeouts(t);
        let keepalive = self.cfg.keepalive_ms;
        while let Some(idx) = self.timers.pop_due(t) {
            let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
                continue;
            };
            slot.session.kcp_mut().handle_timeout(now);
            if let Some(ms) = keepalive {
                if t >= slot.last_heard.max(slot.last_probe) + ms as u64 {
                    // Quiet for a keepalive interval: make the peer speak (it answers the
                    // window probe with its window).
                    slot.last_probe = t;
                    slot.session.kcp_mut().ask_window();
                    self.stats.keepalives += 1;
                }
            }
            if slot.idle_since != NOT_IDLE && t >= slot.idle_since + TRIM_AFTER_MS {
                slot.idle_since = NOT_IDLE;
                slot.set_flag(TRIMMED, true);
                slot.session.trim();
                self.recount_recv(idx);
            }
            self.mark(idx);
        }
    }

    /// When `handle_timeout` is next needed; `None` when no session needs the clock.
    ///
    /// With many sessions this may be a little before the earliest deadline (the timer
    /// wheel's bound for a slot whose first deadline moved later): `handle_timeout` at that
    /// time then finds nothing due, and the next call gives the exact deadline. It is never
    /// later than a deadline.
    pub fn poll_timeout(&mut self) -> Option<Millis> {
        // Sessions changed since the last call may have new deadlines.
        self.flush_dirty_timers();
        let next = match (self.timers.next(), self.half_next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|t| self.to_millis(t))
    }

    fn flush_dirty_timers(&mut self) {
        while let Some(idx) = self.resched.pop_front() {
            if let Some(Some(slot)) = self.slots.get_mut(idx as usize) {
                slot.set_flag(RESCHED_QUEUED, false);
            }
            self.reschedule(idx);
        }
    }

    /// Recomputes one session's deadline: its engine timer, idle timeout, shutdown, half-open
    /// and accept deadlines, and its trim.
    pub(super) fn reschedule(&mut self, idx: u32) {
        let elapsed = self.elapsed;
        let base = self.last_now.unwrap_or(Millis(0));
        let cfg = &self.cfg;
        let Some(Some(slot)) = self.slots.get(idx as usize) else {
            self.timers.cancel(idx);
            return;
        };
        let mut at = slot
            .session
            .kcp()
            .poll_timeout()
            .map(|m| elapsed + m.since(base).max(0) as u64);
        let mut consider = |d: u64| at = Some(at.map_or(d, |a: u64| a.min(d)));
        if let Some(ms) = cfg.idle_timeout_ms {
            consider(slot.last_heard + ms as u64);
        }
        if let Some(ms) = cfg.keepalive_ms {
            consider(slot.last_heard.max(slot.last_probe) + ms as u64);
        }
        if let State::Draining(deadline) = slot.state {
            consider(deadline);
        }
        if slot.passive && !slot.accepted {
            if let Some(ms) = cfg.accept_timeout_ms {
                consider(slot.opened_at + ms as u64);
            }
        }
        if slot.idle_since != NOT_IDLE {
            consider(slot.idle_since + TRIM_AFTER_MS);
        }
        match at {
            Some(at) => self.timers.set(idx, at),
            None => self.timers.cancel(idx),
        }
    }

    /// Checks lifecycle conditions of one session; returns false if it was removed.
    fn check_lifecycle(&mut self, idx: u32) -> bool {
        let t = self.elapsed;
        let cfg = &self.cfg;
        let Some(Some(slot)) = self.slots.get(idx as usize) else {
            return false;
        };
        let kcp = slot.session.kcp();
        if matches!(slot.state, State::Closing(_)) {
            return true;
        }
        let reason = if kcp.is_dead() {
            Some(CloseReason::DeadLink)
        } else if slot.passive
            && !slot.accepted
            && cfg
                .accept_timeout_ms
                .is_some_and(|ms| t >= slot.opened_at + ms as u64)
        {
            Some(CloseReason::NotAccepted)
        } else if cfg
            .idle_timeout_ms
            .is_some_and(|ms| t >= slot.last_heard + ms as u64)
        {
            Some(CloseReason::IdleTimeout)
        } else if let State::Draining(deadline) = slot.state {
            // Once flushed, the session still sends the ACKs it owes before it goes (see
            // `poll_transmit_strided`); only the deadline ends it here.
            (t >= deadline && !kcp.is_idle()).then_some(CloseReason::ShutdownTimeout)
        } else {
            None
        };
        match reason {
            Some(r) => {
                self.timers.cancel(idx);
                self.remove(idx, r);
                false
            }
            None => true,
        }
    }

    /// Removes a session and reports why.
    pub(super) fn remove(&mut self, idx: u32, reason: CloseReason) {
        let Some(mut slot) = self.slots.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        let id = SessionId { idx, gen: slot.gen };
        let key = (slot.addr, slot.conv);
        self.by_key.remove(&key.0, key.1, idx);
        self.by_key.shrink(&self.slots);
        if self.cfg.migration.is_on() {
            self.by_conv.remove(&(slot.conv, idx));
            self.moves.remove(&idx);
        }
        if slot.flag(ATTACHED) {
            self.detach(slot.addr, idx, slot.group);
        }
        self.recv_total -= (slot.recv_bytes as usize).min(self.recv_total);
        if slot.passive {
            self.forget_session_host(slot.addr);
            if !slot.accepted {
                self.unqueue(id);
                self.backlog_freed = true;
            }
        }
        match reason {
            CloseReason::Unconfirmed => self.stats.unconfirmed += 1,
            CloseReason::NotAccepted => self.stats.not_accepted += 1,
            _ => {}
        }
        self.retired.absorb_session(&slot.session);
        slot.session.kcp_mut().release_storage(&mut self.cache);
        // A session whose peer never confirmed it leaves no trace: it may have been a spoofed
        // source, and a real peer's next datagram may open it again.
        if reason != CloseReason::Unconfirmed {
            let until = self.elapsed + self.cfg.closed_linger_ms as u64;
            self.closed.insert(key, until);
            self.closed_order.push_back((key, until));
            while self.closed_order.len() > 4 * self.cfg.max_sessions.max(1024) {
                if let Some((k, u)) = self.closed_order.pop_front() {
                    if self.closed.get(&k) == Some(&u) {
                        self.closed.remove(&k);
                    }
                }
            }
            self.expire_closed();
        }
        self.free.push(idx);
        self.stats.curr_estab = self.by_key.len() as u64;
        self.events.push_back(Event::Closed(id, reason));
    }

    /// Removes session `idx` (whose latest data group is `group`) from the sessions that
    /// packets without a conversation id from `addr` may go to. Its slot may be gone
    /// already (a session being removed) or still there (a session moving away).
    pub(super) fn detach(&mut self, addr: A, idx: u32, group: u32) {
        if let Some(Some(slot)) = self.slots.get_mut(idx as usize) {
            slot.set_flag(SHARED, false);
        }
        if group != NO_GROUP && !self.attach_groups.is_empty() {
            self.attach_groups.remove(&(addr, group, idx));
        }
        let Some(more) = self.attach_more.get_mut(&addr) else {
            if self.attach_route.get(&addr) == Some(&idx) {
                self.attach_route.remove(&addr);
                keyed::shrink(&mut self.attach_route);
            }
            return;
        };
        if self.attach_route.get(&addr) == Some(&idx) {
            if let Some(next) = more.pop() {
                self.attach_route.insert(addr, next);
            }
        } else {
            more.retain(|&i| i != idx);
        }
        if more.is_empty() {
            self.attach_more.remove(&addr);
            // The one session left on the address is alone again: out of the index.
            if let Some(&left) = self.attach_route.get(&addr) {
                self.index_group(addr, left, false);
            }
        }
    }

    /// Forgets closed conversations whose linger has passed (the oldest first).
    fn expire_closed(&mut self) {
        while let Some(&(k, u)) = self.closed_order.front() {
            if u > self.elapsed {
                break;
            }
            self.closed_order.pop_front();
            if self.closed.get(&k) == Some(&u) {
                self.closed.remove(&k);
            }
        }
    }

    /// The next datagram to send and its destination. Drain it after every call that changes
    /// the endpoint; `buf` must hold the MTU.
    pub fn poll_transmit(&mut self, now: Millis, buf: &mut [u8]) -> Option<(A, usize)> {
        let stride = buf.len();
        let mut len = [0usize; 1];
        let (to, n) = self.poll_transmit_strided(now, buf, stride, &mut len)?;
        (n == 1).then_some((to, len[0]))
    }

    /// Up to `lens.len()` datagrams to one destination at once (see
    /// [`Session::poll_transmit_strided`](crate::Session::poll_transmit_strided)): datagram
    /// `i` in `buf[i * stride..]`, its length in `lens[i]`. Returns the destination and how
    /// many; `None` when nothing is left to send.
    pub fn poll_transmit_strided(
        &mut self,
        now: Millis,
        buf: &mut [u8],
        stride: usize,
        lens: &mut [usize],
    ) -> Option<(A, usize)> {
        loop {
            if let Some(out) = self.poll_transmit_pass(now, buf, stride, lens) {
                return Some(out);
            }
            // Sessions nobody accepted went (their accept timeout): peers that answered
            // while the backlog was full get their sessions, whose first output is due.
            if !core::mem::take(&mut self.backlog_freed) || self.half_answered.is_empty() {
                return None;
            }
            self.open_answered();
            if self.dirty.is_empty() {
                return None;
            }
        }
    }

    /// One pass of [`poll_transmit_strided`](Self::poll_transmit_strided) over the probes
    /// and the sessions with output.
    fn poll_transmit_pass(
        &mut self,
        now: Millis,
        buf: &mut [u8],
        stride: usize,
        lens: &mut [usize],
    ) -> Option<(A, usize)> {
        self.tick(now);
        let now = self.clock(now);
        if !self.half_tx.is_empty() || !self.refusal_probes.is_empty() {
            let slot = buf.get_mut(..stride).unwrap_or(&mut []);
            if let Some((to, n)) = self.half_transmit(now, slot) {
                if let Some(l) = lens.first_mut() {
                    *l = n;
                }
                return Some((to, 1));
            }
        }
        while let Some(&idx) = self.dirty.front() {
            let alive = self.check_lifecycle(idx);
            if alive {
                let mut closing = None;
                if let Some(Some(slot)) = self.slots.get_mut(idx as usize) {
                    let mut n = slot.session.poll_transmit_strided(now, buf, stride, lens);
                    while n > 0 {
                        // A session that moved to an address that has not answered sends
                        // there within the anti-amplification budget; KCP resends the rest.
                        let k = match self.moves.get_mut(&idx) {
                            Some(m) => within_budget(m, lens.get(..n).unwrap_or(&[])),
                            None => n,
                        };
                        self.stats.amplification_limited += (n - k) as u64;
                        if k > 0 {
                            self.stats.out_pkts += k as u64;
                            self.stats.out_bytes += lens[..k].iter().sum::<usize>() as u64;
                            return Some((slot.addr, k));
                        }
                        n = slot.session.poll_transmit_strided(now, buf, stride, lens);
                    }
                    match slot.state {
                        State::Closing(reason) => closing = Some(reason),
                        State::Draining(_) if slot.session.kcp().is_idle() => {
                            // Flushed: owe the peer its ACKs once more, then go.
                            slot.state = State::Closing(CloseReason::Shutdown);
                            slot.session.kcp_mut().flush();
                            let n = slot.session.poll_transmit_strided(now, buf, stride, lens);
                            let k = match self.moves.get_mut(&idx) {
                                Some(m) => within_budget(m, lens.get(..n).unwrap_or(&[])),
                                None => n,
                            };
                            self.stats.amplification_limited += (n - k) as u64;
                            if k > 0 {
                                self.stats.out_pkts += k as u64;
                                self.stats.out_bytes += lens[..k].iter().sum::<usize>() as u64;
                                return Some((slot.addr, k));
                            }
                            closing = Some(CloseReason::Shutdown);
                        }
                        _ => {}
                    }
                }
                if let Some(reason) = closing {
                    self.timers.cancel(idx);
                    self.remove(idx, reason);
                } else {
                    self.settle(idx);
                    self.reschedule(idx);
                    self.after_io_quiet(idx);
                }
            }
            self.dirty.pop_front();
            if let Some(Some(slot)) = self.slots.get_mut(idx as usize) {
                slot.set_flag(QUEUED, false);
            }
        }
        None
    }

    /// A session has sent everything it had: if it holds no data, its payload chunks go to
    /// the endpoint's cache and its rings shrink; its codec layers are trimmed once it has
    /// stayed that way for `TRIM_AFTER_MS`.
    fn settle(&mut self, idx: u32) {
        let t = self.elapsed;
        let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if slot.session.kcp().is_drained() {
            slot.session.kcp_mut().release_storage(&mut self.cache);
            if slot.flag(TRIMMED) {
                // Still trimmed: only probes and their answers (a keepalive) passed. What
                // they made the codec layers build goes back at once, so a quiet session's
                // keepalive does not keep its buffers.
                slot.session.trim();
            } else if slot.idle_since == NOT_IDLE {
                slot.idle_since = t;
            }
            self.recount_recv(idx);
        } else {
            slot.idle_since = NOT_IDLE;
            slot.set_flag(TRIMMED, false);
        }
    }

    /// Readiness edges after a session processed something; it then has output to drain.
    pub(super) fn after_io(&mut self, idx: u32) {
        self.after_io_quiet(idx);
        self.mark(idx);
    }

    /// Readiness edges without re-marking the session dirty.
    fn after_io_quiet(&mut self, idx: u32) {
        let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let id = SessionId { idx, gen: slot.gen };
        let kcp = slot.session.kcp();
        let readable = kcp.peek_size().is_some();
        let writable = slot.state == State::Open && kcp.is_writable();
        if readable && !slot.flag(READABLE) {
            self.events.push_back(Event::Readable(id));
        }
        if writable && !slot.writable {
            self.events.push_back(Event::Writable(id));
        }
        slot.set_flag(READABLE, readable);
        slot.writable = writable;
    }

    /// The next event (readable, writable, incoming, closed).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
