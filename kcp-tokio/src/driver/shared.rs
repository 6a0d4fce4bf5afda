//! The state behind the state lock: the endpoint, the adapter's per-session state, the waiters, and what wakes whom after each change.

use super::*;

/// What the adapter keeps for a session some stream refers to. It lives in the driver's
/// session table ([`Sessions`]), which has room for up to twice as many entries as
/// sessions, so what most sessions never use is boxed apart ([`Rare`]), and a lone reader's
/// and writer's wakers are kept inline ([`Waiters`]).
#[derive(Default)]
pub(crate) struct Sess {
    pub(crate) readers: Waiters,
    pub(crate) writers: Waiters,
    /// Built by the first `shutdown`, `closed` or message read that needs it.
    rare: Option<Box<Rare>>,
    /// Why the session ended (recorded while a stream refers to it).
    pub(crate) ended: Option<CloseReason>,
    /// The write side is shut down (writes fail with BrokenPipe).
    pub(crate) write_shut: bool,
    /// `shutdown` completed: everything written was acknowledged.
    pub(crate) shutdown_done: bool,
}

/// The part of [`Sess`] that only `shutdown`, `closed` and message-mode reads use.
#[derive(Default)]
pub(crate) struct Rare {
    /// `shutdown` callers waiting until everything written is acknowledged.
    pub(crate) flushers: Waiters,
    /// `closed` callers waiting until the session ends.
    pub(crate) closers: Waiters,
    /// When `shutdown` gives up (clock ms).
    pub(crate) shutdown_deadline: Option<u64>,
    /// Message mode: the rest of a message a small read took only part of.
    pub(crate) leftover: Vec<u8>,
    pub(crate) leftover_pos: usize,
}

impl Sess {
    /// The rarely used part, built on first use.
    pub(crate) fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }

    /// The rarely used part, if it was built.
    pub(crate) fn rare_mut(&mut self) -> Option<&mut Rare> {
        self.rare.as_deref_mut()
    }

    /// Whether no `shutdown` caller waits.
    pub(crate) fn no_flushers(&self) -> bool {
        self.rare.as_ref().is_none_or(|r| r.flushers.is_empty())
    }

    /// Moves the wakers of `shutdown` and `closed` callers into `wake`.
    pub(crate) fn take_rare_into(&mut self, wake: &mut Vec<Waker>) {
        if let Some(r) = self.rare_mut() {
            r.flushers.take_into(wake);
            r.closers.take_into(wake);
        }
    }
}

/// State shared by the driver task and every stream and listener of one socket: the state
/// lock. Nothing under it makes a system call or encrypts.
pub(crate) struct Shared {
    pub(crate) ep: Endpoint<SocketAddr>,
    /// Sessions some stream refers to.
    pub(crate) sessions: Sessions,
    /// Sessions whose streams were dropped and that deliver what was written (linger).
    pub(super) lingering: HashSet<SessionId>,
    /// Sessions with `shutdown` callers waiting.
    pub(super) flush_watch: HashSet<SessionId>,
    /// Sessions with writers waiting: checked after every drain, since the endpoint's
    /// writable edge can pass unseen between a writer's check and the next drain.
    pub(super) write_watch: HashSet<SessionId>,
    pub(crate) acceptors: Waiters,
    /// Sessions peers opened that were taken from the endpoint's accept queue early (a dial
    /// looked for the peer's session of its own conv behind them, see
    /// `KcpEndpoint::connect_with_conv`): `accept` hands them out first, in arrival order.
    pub(crate) ready: VecDeque<SessionId>,
    /// `wait_idle` callers waiting until no dropped stream's session lingers.
    pub(super) idle_waiters: Waiters,
    /// A listener accepts from this socket (otherwise sessions peers open are closed).
    pub(crate) listening: bool,
    /// The socket failed with this kind; the driver stopped.
    pub(crate) stopped: Option<io::ErrorKind>,
    /// The deadline the driver sleeps until (clock ms).
    pub(super) armed: Option<u64>,
    /// The longest linger a dropped stream asked for (bounds the driver's life after the
    /// last handle is gone).
    pub(super) linger_max: u64,
}

impl Shared {
    /// The endpoint's next deadline in clock ms.
    pub(super) fn deadline(&mut self, now: u64) -> Option<u64> {
        self.ep.poll_timeout().map(|t| deadline_ms(now, t))
    }

    /// Whether the driver must recompute its sleep (a deadline earlier than the armed one).
    pub(crate) fn timer_moved_earlier(&mut self, now: u64) -> bool {
        match (self.deadline(now), self.armed) {
            (Some(d), Some(a)) => d < a,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Hands the endpoint's events to the waiting tasks (woken by the caller after it
    /// released the lock).
    pub(crate) fn dispatch(&mut self, wake: &mut Vec<Waker>) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Incoming => {
                    if self.listening {
                        self.acceptors.take_into(wake);
                    } else {
                        self.refuse_incoming();
                    }
                }
                Event::Readable(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.readers.take_into(wake);
                    }
                }
                Event::Writable(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.writers.take_into(wake);
                    }
                }
                Event::Closed(id, reason) => {
                    kcp_mio::diag::session_closed(id, reason);
                    self.lingering.remove(&id);
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.ended = Some(reason);
                        s.readers.take_into(wake);
                        s.writers.take_into(wake);
                        s.take_rare_into(wake);
                    }
                }
                // Events added to kcp-core later: nothing waits on them.
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        if self.lingering.is_empty() {
            self.idle_waiters.take_into(wake);
        }
        if !self.write_watch.is_empty() {
            let ep = &self.ep;
            let sessions = &mut self.sessions;
            self.write_watch.retain(|id| match sessions.get_mut(id) {
                Some(s) if s.writers.is_empty() => false,
                Some(s) if ep.is_writable(*id) || ep.session(*id).is_none() => {
                    s.writers.take_into(wake);
                    false
                }
                Some(_) => true,
                None => false,
            });
        }
        if !self.flush_watch.is_empty() {
            let ep = &self.ep;
            let sessions = &mut self.sessions;
            self.flush_watch.retain(|id| match sessions.get_mut(id) {
                Some(s) if s.no_flushers() => false,
                Some(s) if ep.is_flushed(*id) || ep.session(*id).is_none() => {
                    if let Some(r) = s.rare_mut() {
                        r.flushers.take_into(wake);
                    }
                    false
                }
                Some(_) => true,
                None => false,
            });
        }
    }

    /// Closes every session peers opened that waits for `accept` (nothing accepts from this
    /// socket any more).
    pub(crate) fn refuse_incoming(&mut self) {
        while let Some(id) = self.ready.pop_front().or_else(|| self.ep.accept()) {
            let _ = self.ep.close(id);
        }
    }

    /// A writer waits until `id` is writable.
    pub(crate) fn watch_write(&mut self, id: SessionId) {
        self.write_watch.insert(id);
    }

    /// A `shutdown` caller waits until `id` is flushed.
    pub(crate) fn watch_flush(&mut self, id: SessionId) {
        self.flush_watch.insert(id);
    }

    /// The last stream of `id` is gone: deliver what was written within `linger_ms`, or
    /// discard it (`abort`).
    pub(crate) fn release(&mut self, id: SessionId, now: u64, linger_ms: Option<u32>) {
        self.sessions.remove(&id);
        self.flush_watch.remove(&id);
        self.write_watch.remove(&id);
        if self.ep.session(id).is_none() {
            return;
        }
        match linger_ms {
            // Delivered already: close at once, flushing the ACKs the peer is owed.
            Some(_) if self.ep.is_flushed(id) => {
                let _ = self.ep.close(id);
            }
            Some(ms) => {
                let _ = self.ep.close_after_flush(millis(now), id, ms);
                self.lingering.insert(id);
                self.linger_max = self.linger_max.max(u64::from(ms));
            }
            None => {
                let _ = self.ep.close(id);
            }
        }
    }

    /// Lingering sessions whose data was all acknowledged close now, with `close`, which
    /// flushes the ACKs the peer is owed (`close_after_flush` would end them without).
    pub(super) fn close_delivered(&mut self) {
        if self.lingering.is_empty() {
            return;
        }
        let ep = &mut self.ep;
        self.lingering.retain(|&id| {
            if ep.is_flushed(id) {
                let _ = ep.close(id);
                false
            } else {
                true
            }
        });
    }

    pub(super) fn stop(&mut self, kind: io::ErrorKind, wake: &mut Vec<Waker>) {
        self.stopped = Some(kind);
        for s in self.sessions.values_mut() {
            s.readers.take_into(wake);
            s.writers.take_into(wake);
            s.take_rare_into(wake);
        }
        self.acceptors.take_into(wake);
        self.idle_waiters.take_into(wake);
    }

    /// Whether no dropped stream's session lingers (or the driver stopped); else `waker`
    /// is woken when that changes.
    pub(crate) fn poll_idle(&mut self, key: u64, waker: &Waker) -> bool {
        let mut wake = Vec::new();
        self.dispatch(&mut wake);
        for w in wake {
            w.wake();
        }
        if self.lingering.is_empty() || self.stopped.is_some() {
            self.idle_waiters.remove(key);
            true
        } else {
            self.idle_waiters.register(key, waker);
            false
        }
    }

    /// Whether `id`'s stream was dropped and the session delivers what was written.
    pub(crate) fn is_lingering(&self, id: SessionId) -> bool {
        self.lingering.contains(&id)
    }

    /// Forgets a `wait_idle` caller.
    pub(crate) fn forget_idle(&mut self, key: u64) {
        self.idle_waiters.remove(key);
    }

    /// The endpoint's counters (datagrams the driver could not decrypt included).
    pub(crate) fn stats(&self) -> kcp_core::endpoint::EndpointStats {
        self.ep.stats()
    }

    /// The endpoint's own counters, without the walk over its sessions.
    pub(crate) fn own_stats(&self) -> kcp_core::endpoint::EndpointStats {
        self.ep.own_stats()
    }
}
