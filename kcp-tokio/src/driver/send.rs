//! The send path: collect a batch under the state lock, seal it outside, send it with the shared batched sender, keep what the kernel refused.

use super::*;

impl Inner {
    pub(super) fn lock(&self) -> StateGuard<'_> {
        self.lock_timing_one_in(1)
    }

    /// Takes the state lock; with the `perf` feature, times one hold in `n` (by the count of
    /// holds so far) and counts it `n` times in the total.
    pub(super) fn lock_timing_one_in(&self, n: u64) -> StateGuard<'_> {
        // Nothing panics while holding the lock; if something did, the state is still usable.
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        #[cfg(not(feature = "perf"))]
        let _ = n;
        StateGuard {
            guard,
            #[cfg(feature = "perf")]
            since: self
                .counters
                .lock_acquisitions
                .load(Ordering::Relaxed)
                .is_multiple_of(n.max(1))
                .then(|| (Instant::now(), n.max(1))),
            #[cfg(feature = "perf")]
            counters: &self.counters,
        }
    }

    /// A task's transmit: during a receive turn the driver sends for it (see
    /// [`Driver::transmit`]), otherwise it sends now.
    ///
    /// No write is left behind: the driver clears `in_turn` before its own transmit, which
    /// takes the state lock after the clearing; a task that saw the flag set released the
    /// state lock (its data queued) before looking, so that transmit collects it.
    pub(super) fn transmit_from_task(&self) {
        if self.in_turn.load(Ordering::SeqCst) {
            bump(&self.counters.batched_writes, 1);
            self.trace(Trace::Deferred);
            return;
        }
        self.transmit_as(true);
    }

    /// Wakes the tasks waiting on what the turn's datagrams changed (readers, acceptors...);
    /// returns how many. With one (or none) the turn ends first, so a lone task sends for
    /// itself at once.
    pub(super) fn wake_ready(&self) -> usize {
        let mut wake = Vec::new();
        self.lock().dispatch(&mut wake);
        let n = wake.len();
        if n <= 1 {
            self.in_turn.store(false, Ordering::SeqCst);
        }
        for w in wake {
            w.wake();
        }
        self.trace(Trace::Woke(n));
        n
    }

    /// Records a driver event for the unit tests (nothing otherwise).
    pub(super) fn trace(&self, _t: Trace) {
        #[cfg(test)]
        if let Some(v) = self
            .traces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            v.push(_t);
        }
    }

    /// Collects every datagram the endpoint has and sends it. Only one caller sends at a
    /// time (datagrams stay in order); a caller that finds the send lock taken leaves a flag
    /// the holder acts on before it lets go.
    pub(super) fn transmit(&self) {
        self.transmit_as(false);
    }

    /// [`transmit`](Self::transmit) for a task (`task`: it wakes the driver when timers
    /// moved earlier than its sleep) or for the driver itself (which computes its sleep
    /// afterwards anyway, under the state lock: no wake-up).
    fn transmit_as(&self, task: bool) {
        loop {
            self.tx_pending.store(true, Ordering::SeqCst);
            let mut tx = match self.tx.try_lock() {
                Ok(g) => g,
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            };
            while self.tx_pending.swap(false, Ordering::SeqCst) {
                self.transmit_locked(&mut tx, task);
            }
            drop(tx);
            if !self.tx_pending.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    pub(super) fn transmit_locked(&self, tx: &mut Tx, task: bool) {
        // The wakers to wake after the state lock is released, in a list kept with the send
        // side so that no send allocates.
        let mut wake = std::mem::take(&mut tx.wake);
        loop {
            let now = self.clock.now_ms();
            let more = {
                let mut s = self.lock();
                let ep = &mut s.ep;
                let more = tx.sender.fill(|region, stride, lens| {
                    ep.poll_transmit_strided(millis(now), region, stride, lens)
                });
                s.dispatch(&mut wake);
                if task && s.timer_moved_earlier(now) {
                    self.notify.notify_one();
                }
                more
            };
            for w in wake.drain(..) {
                w.wake();
            }
            self.seal_and_send(tx, now);
            if !more {
                tx.wake = wake;
                return;
            }
        }
    }

    /// Seals the collected batch (no lock but the send lock) and sends it, or queues it
    /// behind the backlog.
    pub(super) fn seal_and_send(&self, tx: &mut Tx, now: u64) {
        let n = tx.sender.committed();
        if n == 0 {
            return;
        }
        if let Some(c) = &mut tx.sealer {
            let (buf, lens) = tx.sender.committed_mut();
            if c.seal_strided(buf, SLOT, lens, millis(now)).is_err() {
                // Cannot happen with the engine's datagram sizes; never send plaintext.
                tx.sender.discard();
                self.count_sends(tx);
                return;
            }
        }
        self.trace(Trace::Sent(n));
        let had_backlog = tx.sender.backlog_len() > 0;
        let socket = self.socket.sock_ref();
        #[cfg(test)]
        if !had_backlog && self.stall_sends.load(Ordering::Relaxed) {
            tx.sender.simulate_full_socket(1);
        }
        // Behind a backlog the batch joins it without a system call (the driver is waiting
        // for the socket to be writable already). Without one it goes to the kernel directly,
        // not through Tokio's write readiness: Tokio refuses without a system call until its
        // reactor has seen a new socket writable once, which would put every client socket's
        // first flight in the backlog (a 128 KiB ring for one datagram) and make it wait a
        // reactor turn. What the kernel refuses goes to the backlog, and the driver waits for
        // writability: if Tokio's readiness is stale, the first retry's `WouldBlock` clears it
        // (`drain_backlog` sends through `try_write`).
        let _ = tx.sender.flush(&socket);
        self.count_sends(tx);
        if !had_backlog && tx.sender.backlog_len() > 0 {
            // The driver waits for writability only while it knows of a backlog.
            self.notify.notify_one();
        }
    }

    /// Publishes the sender's counters (read by `socket_stats` and the driver's loop without
    /// the send lock).
    pub(super) fn count_sends(&self, tx: &Tx) {
        let st = tx.sender.stats();
        let c = &self.counters;
        c.datagrams_sent.store(st.datagrams_sent, Ordering::Relaxed);
        c.send_calls.store(st.send_calls, Ordering::Relaxed);
        c.send_would_block.store(st.would_block, Ordering::Relaxed);
        c.send_drops
            .store(st.backlog_drops + st.send_errors, Ordering::Relaxed);
        c.backlog
            .store(tx.sender.backlog_len() as u64, Ordering::Relaxed);
    }

    /// Sends the backlog until the kernel pushes back; true when it is empty.
    pub(super) fn drain_backlog(&self) -> bool {
        let mut tx = match self.tx.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let _ = self.socket.try_write(|| {
            #[cfg(test)]
            if self.stall_sends.load(Ordering::Relaxed) {
                tx.sender.simulate_full_socket(1);
            }
            tx.sender.send_backlog(self.socket.sock_ref())
        });
        self.count_sends(&tx);
        tx.sender.backlog_len() == 0
    }

    pub(super) fn has_backlog(&self) -> bool {
        self.counters.backlog.load(Ordering::Relaxed) > 0
    }
}
