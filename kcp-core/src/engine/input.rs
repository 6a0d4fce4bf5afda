//! The input path: una, ACKs with RTT samples, fast-ack counting, PUSH, window probe and tell
//! (kcp-go v5.6.1 semantics; `docs/protocol.md`, ARQ rules, "Receiving").

use crate::congestion::Controller;
use crate::time::{seq_diff, Millis};
use crate::wire::{Command, Datagram, WireError, HEADER_LEN};

use super::{AckEntry, InputError, Kcp, Pending, RecvSlot, ASK_TELL, NO_CHUNK};

impl Kcp<'_> {
    /// Processes one received datagram (one or more segments) at `now`.
    ///
    /// Errors reject the rest of the datagram; segments before the bad one stay applied, as in
    /// kcp-go. Every error is counted in [`stats`](Self::stats). Afterwards drain
    /// [`poll_transmit`](Self::poll_transmit): kcp-go sends at once when the peer's
    /// acknowledgement slid the window (and ACKs at once with `ack_nodelay`).
    #[doc(alias = "input")]
    #[doc(alias = "ikcp_input")]
    pub fn handle_datagram(&mut self, now: Millis, datagram: &[u8]) -> Result<(), InputError> {
        self.input_inner(now, datagram, true)
    }

    /// Processes a datagram rebuilt by a codec (FEC recovery). Like [`handle_datagram`](Self::handle_datagram), but
    /// as kcp-go does for such packets, the peer's window is not taken from it, no RTT sample
    /// is taken and duplicates are not counted as repeats: a recovered packet arrives late and
    /// would inflate the RTT estimate.
    #[doc(alias = "input_recovered")]
    pub fn handle_recovered(&mut self, now: Millis, datagram: &[u8]) -> Result<(), InputError> {
        self.input_inner(now, datagram, false)
    }

    fn input_inner(&mut self, now: Millis, data: &[u8], regular: bool) -> Result<(), InputError> {
        let now = self.observe(now);
        self.fastack_visits = super::FASTACK_VISITS;
        self.stats.in_datagrams += 1;
        self.stats.in_bytes += data.len() as u64;
        if !regular {
            self.stats.in_recovered += 1;
        }
        if data.len() < HEADER_LEN {
            self.stats.in_errors += 1;
            self.stats.in_truncated += 1;
            return Err(WireError::Truncated.into());
        }
        let prev_una = self.snd.base();
        let in_segs_before = self.stats.in_segs;
        let delivered_before = self.pacer().map(|p| p.delivered);
        let mut latest_ts: Option<u32> = None;
        let mut window_slid = false;
        let mut result = Ok(());

        for item in Datagram::new(data) {
            let (seg, payload) = match item {
                Ok(x) => x,
                Err(e) => {
                    self.stats.in_errors += 1;
                    match e {
                        WireError::UnknownCommand(_) => self.stats.in_unknown_cmd += 1,
                        _ => self.stats.in_truncated += 1,
                    }
                    result = Err(e.into());
                    break;
                }
            };
            if seg.conv != self.conv {
                self.stats.in_errors += 1;
                self.stats.in_conv_mismatch += 1;
                result = Err(InputError::ConvMismatch {
                    expected: self.conv,
                    found: seg.conv,
                });
                break;
            }
            if regular {
                self.rmt_wnd = seg.wnd as u32;
            }
            if self.parse_una(seg.una) {
                window_slid = true;
            }
            match seg.cmd {
                Command::Ack => {
                    self.stats.acks_in += 1;
                    self.parse_ack(seg.sn);
                    self.parse_fastack(seg.sn, seg.ts);
                    latest_ts = Some(seg.ts);
                }
                Command::Push => {
                    let repeat = self.on_push(seg.sn, seg.ts, seg.frg, payload, regular);
                    if regular && repeat {
                        self.stats.repeat_segs += 1;
                    }
                }
                Command::WindowAsk => self.probe |= ASK_TELL,
                Command::WindowTell => {}
            }
            self.stats.in_segs += 1;
        }

        if let (Some(ts), true) = (latest_ts, regular) {
            let rtt = now.since(Millis(ts));
            if rtt >= 0 {
                self.update_rtt(rtt);
                self.cc.on_rtt(rtt as u32);
                if let Some(p) = self.pacer_mut() {
                    p.on_rtt(now, rtt as u32);
                }
            }
        }
        let srtt = self.srtt;
        let heard_now = self.stats.in_segs > in_segs_before;
        let mut opened = false;
        if let Some(p) = self.pacer_mut().filter(|_| heard_now) {
            if !p.heard {
                // The peer answered: the first window may open.
                p.heard = true;
                opened = true;
            }
            if Some(p.delivered) != delivered_before {
                p.on_input(now, srtt);
            }
        }
        if opened {
            self.request(Pending::Full);
        }
        if seq_diff(self.snd.base(), prev_una) > 0 {
            let (mss, rmt) = (self.mss, self.rmt_wnd);
            self.cc.on_ack(mss, rmt);
        }
        if window_slid {
            self.request(Pending::Full);
        } else if (self.cfg.ack_nodelay && !self.acks.is_empty())
            || (self.cfg.ack_threshold > 0 && self.acks.len() >= self.cfg.ack_threshold as usize)
        {
            self.request(Pending::AckOnly);
        }
        self.rearm(now);
        result
    }

    /// Removes in-flight segments the peer's cumulative `una` covers. True if any was removed.
    fn parse_una(&mut self, una: u32) -> bool {
        let mut removed = false;
        while self.snd.base() != self.snd_nxt && seq_diff(una, self.snd.base()) > 0 {
            let sn = self.snd.base();
            if let Some(seg) = self.snd.get(sn).copied() {
                if !seg.acked {
                    if let Some(p) = self.pacer_mut() {
                        p.delivered += u64::from(seg.len);
                    }
                    self.unlink(sn);
                    if seg.chunk != NO_CHUNK {
                        self.pool.give(seg.chunk);
                    }
                }
            }
            self.snd.pop_front();
            removed = true;
        }
        removed
    }

    /// Marks segment `sn` acknowledged and frees its payload; the slot stays until `una`
    /// passes it (kcp-go keeps acked entries in `snd_buf`).
    fn parse_ack(&mut self, sn: u32) {
        if seq_diff(sn, self.snd.base()) < 0 || seq_diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        let Some(seg) = self.snd.get(sn).copied() else {
            return;
        };
        if seg.acked {
            return;
        }
        if let Some(p) = self.pacer_mut() {
            p.delivered += u64::from(seg.len);
        }
        self.unlink(sn);
        if seg.chunk != NO_CHUNK {
            self.pool.give(seg.chunk);
        }
        if let Some(s) = self.snd.get_mut(sn) {
            s.acked = true;
            s.chunk = NO_CHUNK;
        }
    }

    /// kcp-go's per-ACK fast-ack counting: every unacknowledged segment before `sn` that was
    /// last sent no later than the acknowledged one (`seg.ts <= ts`) gains a fast-ack.
    ///
    /// Only unacknowledged segments are visited (they are linked in sequence order), so the
    /// cost is the number of holes before `sn`, not the window: zero in a loss-free transfer.
    /// All ACKs of one datagram visit at most [`FASTACK_VISITS`](super::FASTACK_VISITS)
    /// segments together, so a datagram packed with ACKs costs a bounded amount.
    fn parse_fastack(&mut self, sn: u32, ts: u32) {
        if seq_diff(sn, self.snd.base()) < 0 || seq_diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        let mut cur = self.ua_head;
        while let Some(c) = cur {
            if seq_diff(sn, c) < 0 {
                break;
            }
            // Bounded per datagram (see `FASTACK_VISITS`): the holes nearest `snd_una` are
            // counted first; the rest wait for the next datagram or their RTO.
            if self.fastack_visits == 0 {
                self.stats.fastack_skipped += 1;
                break;
            }
            self.fastack_visits -= 1;
            let Some(seg) = self.snd.get_mut(c) else {
                break;
            };
            cur = seg.next;
            if c != sn && seq_diff(seg.ts, ts) <= 0 {
                if seg.fastack == 0 {
                    self.fast_candidates += 1;
                }
                seg.fastack = seg.fastack.saturating_add(1);
            }
        }
    }

    /// Handles one PUSH: queues its ACK and stores its payload. Returns whether it was a
    /// repeat (duplicate, old, or beyond the window), as kcp-go counts `RepeatSegs`.
    ///
    /// A PUSH rebuilt by FEC (`regular == false`) long after its group started would be
    /// acknowledged with its original, stale timestamp, and the sender would take the FEC
    /// wait for path delay (kcp-go's RTO inflation with sparse traffic). So a rebuilt PUSH
    /// older than the newest regular PUSH by more than [`Self::stale_recovery_ms`] gets no
    /// explicit ACK: `una` covers it, carried at once by a window-tell (which has no RTT
    /// meaning). A rebuilt PUSH from the same burst is acknowledged as usual, so bulk
    /// transfers see no spurious retransmission.
    fn on_push(&mut self, sn: u32, ts: u32, frg: u8, payload: &[u8], regular: bool) -> bool {
        let stale = if regular {
            if self.newest_push_ts.is_none_or(|n| seq_diff(ts, n) > 0) {
                self.newest_push_ts = Some(ts);
            }
            false
        } else {
            self.newest_push_ts
                .is_some_and(|n| seq_diff(n, ts) > self.stale_recovery_ms() as i32)
        };
        let wnd = self.cfg.rcv_wnd;
        if seq_diff(sn, self.rcv_nxt.wrapping_add(wnd)) >= 0 {
            return true;
        }
        let mut repeat = true;
        if seq_diff(sn, self.rcv_nxt) >= 0 {
            match self.store(sn, frg, payload) {
                Some(r) => repeat = r,
                // Not stored (no buffer, or larger than we can hold): do not acknowledge it,
                // the peer will send it again.
                None => return false,
            }
        }
        if stale {
            self.stats.stale_recovered += 1;
            self.probe |= ASK_TELL;
        } else if self.acks.push_back(AckEntry { sn, ts }).is_err() {
            self.stats.ack_list_full += 1;
        }
        repeat
    }

    /// How much older than the newest regular PUSH a rebuilt PUSH may be and still be
    /// acknowledged explicitly: two flush intervals, at least 30 ms.
    pub(crate) fn stale_recovery_ms(&self) -> u32 {
        (2 * self.cfg.interval).max(30)
    }

    /// Stores a PUSH inside the receive window. `Some(true)` if it was already there,
    /// `Some(false)` if stored, `None` if it could not be stored.
    fn store(&mut self, sn: u32, frg: u8, payload: &[u8]) -> Option<bool> {
        if payload.len() > self.pool.chunk_len() || payload.len() > u16::MAX as usize {
            self.stats.in_oversized += 1;
            return None;
        }
        let off = sn.wrapping_sub(self.rcv.base()) as usize;
        if off >= self.rcv.max_len() {
            self.stats.in_no_buffer += 1;
            return None;
        }
        if off < self.rcv.len() && self.rcv.get(sn).is_some_and(|s| s.present) {
            return Some(true);
        }
        // Over the owner's memory budget, only the segment the application needs next is
        // stored, and only while it has nothing to read: that always lets a session progress
        // (a gap filled, a message completed) without holding more out-of-order data.
        if self.recv_limited && (sn != self.rcv_nxt || self.peek_size().is_some()) {
            self.stats.in_over_budget += 1;
            return None;
        }
        while self.rcv.len() <= off {
            if self.rcv.push_back(RecvSlot::EMPTY).is_err() {
                self.stats.in_no_buffer += 1;
                return None;
            }
        }
        if self.rcv.get(sn).is_some_and(|s| s.present) {
            return Some(true);
        }
        let chunk = if payload.is_empty() {
            NO_CHUNK
        } else {
            let Some(c) = self.pool.take(payload.len()) else {
                self.stats.in_no_buffer += 1;
                return None;
            };
            if let Some(dst) = self.pool.chunk_mut(c).get_mut(..payload.len()) {
                dst.copy_from_slice(payload);
            }
            self.rcv_chunk_bytes += self.pool.chunk_cost(c) as u32;
            c
        };
        if let Some(slot) = self.rcv.get_mut(sn) {
            *slot = RecvSlot {
                chunk,
                len: payload.len() as u16,
                frg,
                present: true,
            };
        }
        self.advance_rcv_queue();
        Some(false)
    }

    /// Appends in-flight segment `sn` to the unacknowledged list.
    pub(crate) fn link_tail(&mut self, sn: u32) {
        let tail = self.ua_tail;
        if let Some(seg) = self.snd.get_mut(sn) {
            seg.prev = tail;
            seg.next = None;
        }
        match tail.and_then(|t| self.snd.get_mut(t)) {
            Some(t) => t.next = Some(sn),
            None => self.ua_head = Some(sn),
        }
        self.ua_tail = Some(sn);
        if let Some(p) = self.pacer_mut() {
            p.unacked += 1;
        }
    }

    /// Removes segment `sn` from the unacknowledged list (and from the fast candidates).
    pub(crate) fn unlink(&mut self, sn: u32) {
        let Some(seg) = self.snd.get_mut(sn) else {
            return;
        };
        let (prev, next) = (seg.prev.take(), seg.next.take());
        if let Some(p) = super::pacing::get_mut(&mut self.pace) {
            p.unacked = p.unacked.saturating_sub(1);
        }
        if seg.fastack > 0 {
            seg.fastack = 0;
            self.fast_candidates = self.fast_candidates.saturating_sub(1);
        }
        match prev.and_then(|p| self.snd.get_mut(p)) {
            Some(p) => p.next = next,
            None => {
                if self.ua_head == Some(sn) {
                    self.ua_head = next;
                }
            }
        }
        match next.and_then(|n| self.snd.get_mut(n)) {
            Some(n) => n.prev = prev,
            None => {
                if self.ua_tail == Some(sn) {
                    self.ua_tail = prev;
                }
            }
        }
    }
}
