//! The receive path: read a batch, open it in place without a lock, feed it to the endpoint in chunks with timers between.

use super::*;

/// The receive side, owned by the driver task.
pub(super) struct Rx {
    pub(super) receiver: Receiver,
    pub(super) p: RxProc,
}

/// What the receive side keeps apart from the receive buffers (so both can be borrowed at
/// once).
pub(super) struct RxProc {
    pub(super) opener: Option<Crypt>,
    /// Per datagram of the batch just read, in order: whether it goes to the endpoint
    /// (opened in place), or was rejected by the opener (counted through the endpoint).
    pub(super) verdicts: Vec<Verdict>,
    /// Datagrams longer than this are not opened (the endpoint's `max_datagram`).
    pub(super) max_datagram: usize,
    /// The last clock ms at which timers ran (they run at most once per ms).
    pub(super) timers_at: u64,
}

/// What the first pass over a received batch decided for one datagram.
#[derive(Clone, Copy)]
pub(super) enum Verdict {
    /// Opened in place (or nothing to open): the endpoint takes it.
    Feed,
    /// The opener rejected it: counted by the endpoint, not fed.
    Rejected(CodecError),
    /// The opener consumed it without delivering anything.
    Skip,
}

impl Inner {
    /// Reads up to `RECV_PER_WAKE` datagrams and returns how many; `Err` only for a socket
    /// failure.
    ///
    /// With `direct` the socket is read even when Tokio has not (yet) seen it readable: after
    /// a late wake-up, datagrams may be waiting that the runtime has not polled for.
    ///
    /// Each batch the socket delivers is handled where it lies, in two passes: the first
    /// opens every datagram in place with no lock held (decryption is the costly part), the
    /// second feeds them to the endpoint under the state lock, in chunks of `CHUNK` with due
    /// timers run between chunks, so a receiver busy with a backlog keeps sending ACKs.
    pub(super) fn receive(&self, rx: &mut Rx, direct: bool) -> io::Result<usize> {
        let r = self.receive_batches(rx, direct);
        // The turn is over: the receive slots go back to the thread's stock (a turn that
        // stops at a drained batch reads no empty one, which would have given them back).
        rx.receiver.release();
        r
    }

    fn receive_batches(&self, rx: &mut Rx, direct: bool) -> io::Result<usize> {
        let mut got = 0;
        while got < RECV_PER_WAKE {
            // A turn whose first batch drained the socket (the kernel's read stopped at an
            // empty queue inside it: a socket with a few datagrams at a time) ends there,
            // without one more read that would only find nothing; a datagram that arrives
            // later signals readiness anew. A busier turn reads on until a read finds
            // nothing: while it handled its batches, more have likely arrived.
            let first = got == 0;
            // Through Tokio's readiness: a `WouldBlock` clears it, the drained first batch's
            // too (the kernel's read inside it would have blocked). A direct read leaves the
            // readiness as it is (at worst Tokio reports the socket readable once more and
            // that read finds nothing).
            let r = if direct {
                rx.receiver.recv(self.socket.sock_ref())
            } else {
                self.socket.try_read(|| {
                    let n = rx.receiver.recv(self.socket.sock_ref())?;
                    if first && rx.receiver.drained() {
                        Err(io::ErrorKind::WouldBlock.into())
                    } else {
                        Ok(n)
                    }
                })
            };
            match r {
                Ok(_) => {}
                // Nothing more to read; a drained batch is handed out first.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !rx.receiver.is_empty() => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if ignorable(&e) => {
                    got += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let st = rx.receiver.stats();
            self.counters
                .recv_truncated
                .store(st.recv_truncated, Ordering::Relaxed);
            let now = self.clock.now_ms();
            let RxProc {
                opener,
                verdicts,
                max_datagram,
                ..
            } = &mut rx.p;
            verdicts.clear();
            rx.receiver.for_each(|_, data| {
                let v = match opener {
                    // The endpoint counts an oversized datagram; it is not worth opening.
                    Some(c) if data.len() <= *max_datagram => match c.open(data, millis(now)) {
                        Ok(Some(_)) => Verdict::Feed,
                        Ok(None) => Verdict::Skip,
                        Err(e) => Verdict::Rejected(e),
                    },
                    _ => Verdict::Feed,
                };
                verdicts.push(v);
            });
            let n = verdicts.len();
            if n == 0 {
                break;
            }
            self.trace(Trace::Received(n));
            bump(&self.counters.datagrams_received, n as u64);
            self.feed(rx);
            got += n;
            if first && rx.receiver.drained() {
                break;
            }
        }
        Ok(got)
    }

    /// The second pass over a batch: feeds the opened datagrams to the endpoint, runs timers
    /// that are due, and sends, every `CHUNK` datagrams (what the last chunk produced is sent
    /// by the driver at the end of its turn).
    pub(super) fn feed(&self, rx: &mut Rx) {
        let Rx { receiver, p } = rx;
        let RxProc {
            verdicts,
            timers_at,
            ..
        } = p;
        let mut guard: Option<StateGuard<'_>> = None;
        let mut fed = 0;
        let mut i = 0;
        let now = self.clock.now_ms();
        receiver.for_each(|from, data| {
            let v = verdicts.get(i).copied().unwrap_or(Verdict::Skip);
            i += 1;
            let s = match v {
                Verdict::Skip => return,
                _ => guard.get_or_insert_with(|| self.lock()),
            };
            let r = match v {
                Verdict::Feed => s.ep.handle_datagram(millis(now), from, data),
                Verdict::Rejected(e) => Err(s.ep.handle_rejected(data.len(), e)),
                Verdict::Skip => Ok(()),
            };
            kcp_mio::diag::datagram(from, &r);
            fed += 1;
            if fed % CHUNK == 0 {
                if let Some(mut s) = guard.take() {
                    self.end_chunk(&mut s, timers_at);
                }
                self.transmit();
            }
        });
        // What the last chunk produced leaves with the turn's batch (the driver sends it
        // after the tasks the batch woke have written).
        if let Some(mut s) = guard.take() {
            self.end_chunk(&mut s, timers_at);
        }
    }

    /// After feeding a chunk, under the state lock: wakes readers of closed sessions and runs
    /// the endpoint's timers if any is due (at most once per ms).
    pub(super) fn end_chunk(&self, s: &mut StateGuard<'_>, timers_at: &mut u64) {
        let now = self.clock.now_ms();
        s.close_delivered();
        if *timers_at != now && s.deadline(now).is_some_and(|d| d <= now) {
            s.ep.handle_timeout(millis(now));
            *timers_at = now;
        }
    }
}

impl Inner {
    /// The socket failed: every session ends with its error, their tasks are woken.
    pub(super) fn fail(&self, e: &io::Error) {
        let mut wake = Vec::new();
        self.lock().stop(e.kind(), &mut wake);
        for w in wake {
            w.wake();
        }
    }
}

/// Errors a UDP socket reports for an earlier datagram (ICMP port unreachable and the like):
/// not the socket's fault.
pub(super) fn ignorable(e: &io::Error) -> bool {
    is_transient(e) || e.kind() == io::ErrorKind::Interrupted
}
