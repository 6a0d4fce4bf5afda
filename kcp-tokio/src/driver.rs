//! One driver task per UDP socket. All protocol state is the sans-IO [`Endpoint`] behind the
//! *state lock* that streams share; sending has its own *send lock*.
//!
//! * Under the state lock only endpoint calls run: queueing and reading data, feeding
//!   received (already decrypted) datagrams, timers, and collecting outgoing datagrams into
//!   the send batch. No system call and no encryption happens under it.
//! * Whoever holds the send lock (a stream's task after a write, or the driver) collects
//!   datagrams under the state lock, releases it, then seals the batch (kcp-go's packet
//!   encryption, see [`crate::config`]) and sends it. Sends go through Tokio's readiness
//!   (`try_io`): when the kernel refuses (`EAGAIN`) the readiness is cleared and the driver
//!   sleeps until the socket is writable again, keeping what it could not send in a bounded
//!   backlog (beyond it datagrams are dropped, counted in [`SocketStats::send_drops`]; KCP
//!   retransmits).
//! * The driver reads datagrams, decrypts them without any lock, and feeds them in chunks,
//!   running due timers between chunks so that ACKs keep flowing while it is busy.
//! * Time is a 64-bit millisecond clock from an `Instant`; the endpoint gets it truncated to
//!   `u32` ([`Millis`]), deadlines are computed in 64 bits.

#[cfg(not(target_has_atomic = "64"))]
use portable_atomic::AtomicU64;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::Waker;
use std::time::{Duration, Instant};

use kcp_core::endpoint::{CloseReason, Endpoint, Event, SessionId};
use kcp_core::{Codec, CodecError, Millis};
use kcp_mio::stack::AdapterCrypt;
use kcp_mio::udp::{is_transient, Receiver, Sender, SLOT};
use kcp_mio::KcpConfig;

use crate::stats::SocketStats;
use crate::stats::{bump, Counters};
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// kcp-go's packet encryption as the driver applies it: the endpoint's shared key, a nonce
/// stream per layer.
type Crypt = kcp_crypto::PacketCrypt<Arc<kcp_crypto::PacketKey>>;
/// Received datagrams fed to the endpoint per state-lock hold; due timers run between chunks.
const CHUNK: usize = 32;
/// Received datagrams per wake-up before the loop looks at timers, writers and its stop signal.
const RECV_PER_WAKE: usize = 256;

/// The driver's clock: milliseconds since it started (plus a test offset), 64 bits.
pub(crate) struct Clock {
    start: Instant,
    offset_ms: u64,
}

impl Clock {
    pub(crate) fn new(offset_ms: u64) -> Clock {
        Clock {
            start: Instant::now(),
            offset_ms,
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.offset_ms
            .saturating_add(self.start.elapsed().as_millis() as u64)
    }

    /// The instant at clock reading `ms`.
    pub(crate) fn instant_at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms.saturating_sub(self.offset_ms))
    }
}

/// The endpoint's view of the 64-bit time `ms`.
pub(crate) fn millis(ms: u64) -> Millis {
    Millis(ms as u32)
}

/// The 64-bit time of an endpoint deadline `t` seen at 64-bit time `now` (a deadline in the
/// past is `now`).
pub(crate) fn deadline_ms(now: u64, t: Millis) -> u64 {
    now + t.since(millis(now)).max(0) as u64
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A fresh key for one waiting caller.
pub(crate) fn waiter_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// Tasks waiting for one condition, one entry per caller (keyed), all woken together: several
/// concurrent callers never overwrite each other's waker.
#[derive(Default)]
pub(crate) struct Waiters(Vec<(u64, Waker)>);

impl Waiters {
    pub(crate) fn register(&mut self, key: u64, waker: &Waker) {
        match self.0.iter_mut().find(|e| e.0 == key) {
            Some(e) => {
                if !e.1.will_wake(waker) {
                    e.1 = waker.clone();
                }
            }
            None => self.0.push((key, waker.clone())),
        }
    }

    pub(crate) fn remove(&mut self, key: u64) {
        self.0.retain(|e| e.0 != key);
    }

    fn take_into(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.0.drain(..).map(|e| e.1));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the adapter keeps for a session some stream refers to.
#[derive(Default)]
pub(crate) struct Sess {
    pub(crate) readers: Waiters,
    pub(crate) writers: Waiters,
    /// `shutdown` callers waiting until everything written is acknowledged.
    pub(crate) flushers: Waiters,
    /// `closed` callers waiting until the session ends.
    pub(crate) closers: Waiters,
    /// Why the session ended (recorded while a stream refers to it).
    pub(crate) ended: Option<CloseReason>,
    /// The write side is shut down (writes fail with BrokenPipe).
    pub(crate) write_shut: bool,
    /// `shutdown` completed: everything written was acknowledged.
    pub(crate) shutdown_done: bool,
    /// When `shutdown` gives up (clock ms).
    pub(crate) shutdown_deadline: Option<u64>,
    /// Message mode: the rest of a message a small read took only part of.
    pub(crate) leftover: Vec<u8>,
    pub(crate) leftover_pos: usize,
}

/// State shared by the driver task and every stream and listener of one socket: the state
/// lock. Nothing under it makes a system call or encrypts.
pub(crate) struct Shared {
    pub(crate) ep: Endpoint<SocketAddr>,
    /// Sessions some stream refers to.
    pub(crate) sessions: HashMap<SessionId, Sess>,
    /// Sessions whose streams were dropped and that deliver what was written (linger).
    lingering: HashSet<SessionId>,
    /// Sessions with `shutdown` callers waiting.
    flush_watch: HashSet<SessionId>,
    /// Sessions with writers waiting: checked after every drain, since the endpoint's
    /// writable edge can pass unseen between a writer's check and the next drain.
    write_watch: HashSet<SessionId>,
    pub(crate) acceptors: Waiters,
    /// `wait_idle` callers waiting until no dropped stream's session lingers.
    idle_waiters: Waiters,
    /// A listener accepts from this socket (otherwise sessions peers open are closed).
    pub(crate) listening: bool,
    /// The socket failed with this kind; the driver stopped.
    pub(crate) stopped: Option<io::ErrorKind>,
    /// The deadline the driver sleeps until (clock ms).
    armed: Option<u64>,
    /// The longest linger a dropped stream asked for (bounds the driver's life after the
    /// last handle is gone).
    linger_max: u64,
}

impl Shared {
    /// The endpoint's next deadline in clock ms.
    fn deadline(&mut self, now: u64) -> Option<u64> {
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
                        while let Some(id) = self.ep.accept() {
                            let _ = self.ep.close(id);
                        }
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
                        s.flushers.take_into(wake);
                        s.closers.take_into(wake);
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
                Some(s) if s.flushers.is_empty() => false,
                Some(s) if ep.is_flushed(*id) || ep.session(*id).is_none() => {
                    s.flushers.take_into(wake);
                    false
                }
                Some(_) => true,
                None => false,
            });
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
    fn close_delivered(&mut self) {
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

    fn stop(&mut self, kind: io::ErrorKind, wake: &mut Vec<Waker>) {
        self.stopped = Some(kind);
        for s in self.sessions.values_mut() {
            s.readers.take_into(wake);
            s.writers.take_into(wake);
            s.flushers.take_into(wake);
            s.closers.take_into(wake);
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

    /// Forgets a `wait_idle` caller.
    pub(crate) fn forget_idle(&mut self, key: u64) {
        self.idle_waiters.remove(key);
    }

    /// The endpoint's counters (datagrams the driver could not decrypt included).
    pub(crate) fn stats(&self) -> kcp_core::endpoint::EndpointStats {
        self.ep.stats()
    }
}

/// The send side, behind the send lock: the shared batched sender (its batch, GSO, the
/// bounded backlog of what the kernel refused) and the sealer.
struct Tx {
    sender: Sender,
    /// Wakers collected under the state lock, woken after it (reused: no allocation).
    wake: Vec<Waker>,
    /// kcp-go's packet encryption, applied to every datagram after collection (the sessions'
    /// stacks only reserve its header).
    sealer: Option<Crypt>,
}

/// What the driver task and the handles share.
pub(crate) struct Inner {
    state: Mutex<Shared>,
    tx: Mutex<Tx>,
    /// Set by every caller that wants a transmit pass; the send lock's holder loops while set.
    tx_pending: AtomicBool,
    notify: Notify,
    stop: Notify,
    socket: Arc<UdpSocket>,
    pub(crate) clock: Clock,
    local: SocketAddr,
    counters: Counters,
    /// Test hook: every send fails with `WouldBlock` inside `try_io`, as when the kernel's
    /// send buffer stays full.
    #[cfg(test)]
    pub(crate) stall_sends: AtomicBool,
}

/// The state lock's guard; with the `perf` feature it records how long it was held.
pub(crate) struct StateGuard<'a> {
    guard: MutexGuard<'a, Shared>,
    #[cfg(feature = "perf")]
    since: Instant,
    #[cfg(feature = "perf")]
    counters: &'a Counters,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut Shared {
        &mut self.guard
    }
}

#[cfg(feature = "perf")]
impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let ns = self.since.elapsed().as_nanos() as u64;
        bump(&self.counters.lock_hold_total_ns, ns);
        bump(&self.counters.lock_acquisitions, 1);
        self.counters
            .lock_hold_max_ns
            .fetch_max(ns, Ordering::Relaxed);
    }
}

/// A handle on one socket's driver, held (in an `Arc`) by its streams and listener; when the
/// last one is dropped the driver finishes the sessions that linger and stops.
pub(crate) struct Driver {
    inner: Arc<Inner>,
}

impl Driver {
    /// The one place a socket becomes a driven endpoint: checks `config`, applies its socket
    /// options, builds the endpoint (`accept`: whether peers may open sessions, a listener)
    /// and starts the driver task. Listeners ask for receive offload; client sockets do not.
    pub(crate) fn open(
        socket: UdpSocket,
        config: &KcpConfig,
        accept: bool,
    ) -> io::Result<Arc<Driver>> {
        config.check()?;
        crate::config::apply_socket(config, &socket)?;
        let (ep, crypt) = crate::config::endpoint_config(config, accept)?;
        let ep = Endpoint::new(ep)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Driver::spawn(
            socket,
            ep,
            accept,
            crypt,
            config.get_send_backlog(),
            crate::config::clock_offset_ms(),
        )
    }

    /// Starts the driver task for `socket`. `gro` asks for receive offload (64 KiB receive
    /// slots: worth it for a listener's busy socket, not for every client socket). `crypt`
    /// builds the packet encryption the sessions' stacks left to the driver.
    pub(crate) fn spawn(
        socket: UdpSocket,
        ep: Endpoint<SocketAddr>,
        gro: bool,
        crypt: Option<AdapterCrypt>,
        send_backlog: usize,
        clock_offset_ms: u64,
    ) -> io::Result<Arc<Driver>> {
        let local = socket.local_addr()?;
        let socket = Arc::new(socket);
        let listening = ep.config().accept;
        let inner = Arc::new(Inner {
            state: Mutex::new(Shared {
                ep,
                sessions: HashMap::new(),
                lingering: HashSet::new(),
                flush_watch: HashSet::new(),
                write_watch: HashSet::new(),
                acceptors: Waiters::default(),
                idle_waiters: Waiters::default(),
                listening,
                stopped: None,
                armed: None,
                linger_max: 0,
            }),
            tx: Mutex::new(Tx {
                sender: Sender::new(send_backlog),
                wake: Vec::with_capacity(16),
                sealer: crypt.as_ref().map(AdapterCrypt::layer),
            }),
            tx_pending: AtomicBool::new(false),
            notify: Notify::new(),
            stop: Notify::new(),
            socket: socket.clone(),
            clock: Clock::new(clock_offset_ms),
            local,
            counters: Counters::default(),
            #[cfg(test)]
            stall_sends: AtomicBool::new(false),
        });
        tokio::spawn(run(
            inner.clone(),
            gro,
            crypt.as_ref().map(AdapterCrypt::layer),
        ));
        Ok(Arc::new(Driver { inner }))
    }

    /// Takes the state lock.
    pub(crate) fn lock(&self) -> StateGuard<'_> {
        self.inner.lock()
    }

    /// Sends what the endpoint has (in the caller's task), then, if timers moved earlier than
    /// the driver's sleep, wakes the driver.
    pub(crate) fn transmit(&self) {
        self.inner.transmit();
    }

    /// Waits until no dropped stream's session lingers on this socket: each has delivered
    /// what was written or given up (its linger passed), or the socket failed.
    pub(crate) async fn wait_idle(&self) {
        struct Forget<'a>(&'a Driver, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.lock().forget_idle(self.1);
            }
        }
        let key = waiter_key();
        let _forget = Forget(self, key);
        std::future::poll_fn(|cx| {
            if self.lock().poll_idle(key, cx.waker()) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// Tells the driver its timers moved earlier.
    pub(crate) fn poke(&self) {
        self.inner.notify.notify_one();
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    pub(crate) fn instant_at(&self, ms: u64) -> Instant {
        self.inner.clock.instant_at(ms)
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The driver's socket (its descriptor, for `AsFd`).
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.inner.socket
    }

    /// Runs `f` on the driver's socket (socket options at run time).
    pub(crate) fn with_socket<T>(&self, f: impl FnOnce(&UdpSocket) -> T) -> T {
        f(&self.inner.socket)
    }

    pub(crate) fn socket_stats(&self) -> SocketStats {
        self.inner.counters.snapshot()
    }

    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.inner.stop.notify_one();
    }
}

impl Inner {
    fn lock(&self) -> StateGuard<'_> {
        // Nothing panics while holding the lock; if something did, the state is still usable.
        StateGuard {
            guard: self.state.lock().unwrap_or_else(|p| p.into_inner()),
            #[cfg(feature = "perf")]
            since: Instant::now(),
            #[cfg(feature = "perf")]
            counters: &self.counters,
        }
    }

    /// Collects every datagram the endpoint has and sends it. Only one caller sends at a
    /// time (datagrams stay in order); a caller that finds the send lock taken leaves a flag
    /// the holder acts on before it lets go.
    fn transmit(&self) {
        loop {
            self.tx_pending.store(true, Ordering::SeqCst);
            let mut tx = match self.tx.try_lock() {
                Ok(g) => g,
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            };
            while self.tx_pending.swap(false, Ordering::SeqCst) {
                self.transmit_locked(&mut tx);
            }
            drop(tx);
            if !self.tx_pending.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    fn transmit_locked(&self, tx: &mut Tx) {
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
                if s.timer_moved_earlier(now) {
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

    /// Seals the collected batch (no lock but the send lock) and sends it through Tokio's
    /// readiness, or queues it behind the backlog.
    fn seal_and_send(&self, tx: &mut Tx, now: u64) {
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
        let had_backlog = tx.sender.backlog_len() > 0;
        let socket = SockRef::from(&*self.socket);
        if had_backlog {
            // Behind the backlog: queued without a system call; the driver is waiting for
            // the socket to be writable already.
            let _ = tx.sender.flush(&socket);
        } else {
            let _ = self.socket.try_io(Interest::WRITABLE, || {
                #[cfg(test)]
                if self.stall_sends.load(Ordering::Relaxed) {
                    tx.sender.simulate_full_socket(1);
                }
                tx.sender.flush(&socket)
            });
            // Tokio refuses without a system call until its reactor has seen the socket
            // writable once (a new socket): what is still in the batch waits in the backlog
            // for the writable event, never dropped.
            tx.sender.defer();
        }
        self.count_sends(tx);
        if !had_backlog && tx.sender.backlog_len() > 0 {
            // The driver waits for writability only while it knows of a backlog.
            self.notify.notify_one();
        }
    }

    /// Publishes the sender's counters (read by `socket_stats` and the driver's loop without
    /// the send lock).
    fn count_sends(&self, tx: &Tx) {
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
    fn drain_backlog(&self) -> bool {
        let mut tx = match self.tx.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let _ = self.socket.try_io(Interest::WRITABLE, || {
            #[cfg(test)]
            if self.stall_sends.load(Ordering::Relaxed) {
                tx.sender.simulate_full_socket(1);
            }
            tx.sender.send_backlog(SockRef::from(&*self.socket))
        });
        self.count_sends(&tx);
        tx.sender.backlog_len() == 0
    }

    fn has_backlog(&self) -> bool {
        self.counters.backlog.load(Ordering::Relaxed) > 0
    }
}

/// The receive side, owned by the driver task.
struct Rx {
    receiver: Receiver,
    p: RxProc,
}

/// What the receive side keeps apart from the receive buffers (so both can be borrowed at
/// once).
struct RxProc {
    opener: Option<Crypt>,
    /// Per datagram of the batch just read, in order: whether it goes to the endpoint
    /// (opened in place), or was rejected by the opener (counted through the endpoint).
    verdicts: Vec<Verdict>,
    /// Datagrams longer than this are not opened (the endpoint's `max_datagram`).
    max_datagram: usize,
    /// The last clock ms at which timers ran (they run at most once per ms).
    timers_at: u64,
}

/// What the first pass over a received batch decided for one datagram.
#[derive(Clone, Copy)]
enum Verdict {
    /// Opened in place (or nothing to open): the endpoint takes it.
    Feed,
    /// The opener rejected it: counted by the endpoint, not fed.
    Rejected(CodecError),
    /// The opener consumed it without delivering anything.
    Skip,
}

impl Inner {
    /// Reads up to `RECV_PER_WAKE` datagrams; `Err` only for a socket failure.
    ///
    /// Each batch the socket delivers is handled where it lies, in two passes: the first
    /// opens every datagram in place with no lock held (decryption is the costly part), the
    /// second feeds them to the endpoint under the state lock, in chunks of `CHUNK` with due
    /// timers run between chunks, so a receiver busy with a backlog keeps sending ACKs.
    fn receive(&self, rx: &mut Rx) -> io::Result<()> {
        let mut got = 0;
        while got < RECV_PER_WAKE {
            // Through Tokio's readiness: a `WouldBlock` clears it.
            match self.socket.try_io(Interest::READABLE, || {
                rx.receiver.recv(SockRef::from(&*self.socket))
            }) {
                Ok(_) => {}
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
            bump(&self.counters.datagrams_received, n as u64);
            self.feed(rx);
            got += n;
        }
        Ok(())
    }

    /// The second pass over a batch: feeds the opened datagrams to the endpoint, runs timers
    /// that are due, and sends, every `CHUNK` datagrams.
    fn feed(&self, rx: &mut Rx) {
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
        if let Some(mut s) = guard.take() {
            self.end_chunk(&mut s, timers_at);
            drop(s);
            self.transmit();
        }
    }

    /// After feeding a chunk, under the state lock: wakes readers of closed sessions and runs
    /// the endpoint's timers if any is due (at most once per ms).
    fn end_chunk(&self, s: &mut StateGuard<'_>, timers_at: &mut u64) {
        let now = self.clock.now_ms();
        s.close_delivered();
        if *timers_at != now && s.deadline(now).is_some_and(|d| d <= now) {
            s.ep.handle_timeout(millis(now));
            *timers_at = now;
        }
    }
}

/// Errors a UDP socket reports for an earlier datagram (ICMP port unreachable and the like):
/// not the socket's fault.
fn ignorable(e: &io::Error) -> bool {
    is_transient(e) || e.kind() == io::ErrorKind::Interrupted
}

async fn run(d: Arc<Inner>, gro: bool, opener: Option<Crypt>) {
    let max_datagram = d.lock().ep.config().max_datagram;
    let mut rx = Rx {
        receiver: Receiver::new(SockRef::from(&*d.socket), gro),
        p: RxProc {
            opener,
            verdicts: Vec::with_capacity(CHUNK),
            max_datagram,
            timers_at: u64::MAX,
        },
    };
    // After the last handle went: the time by which lingering sessions are given up.
    let mut stopping: Option<u64> = None;
    loop {
        bump(&d.counters.wakeups, 1);
        let now = d.clock.now_ms();
        let (deadline, ran) = {
            let mut s = d.lock();
            let mut ran = false;
            if rx.p.timers_at != now && s.deadline(now).is_some_and(|t| t <= now) {
                s.ep.handle_timeout(millis(now));
                rx.p.timers_at = now;
                ran = true;
            }
            if let Some(until) = stopping {
                if s.ep.is_empty() || now >= until {
                    return;
                }
            }
            let deadline = s.deadline(now);
            s.armed = deadline;
            (deadline, ran)
        };
        if ran {
            d.transmit();
            continue;
        }
        // A deadline in this very millisecond (timers ran already): the next millisecond.
        let deadline = deadline.map(|t| t.max(now + 1));
        let backlog = d.has_backlog();
        let writable = async {
            if backlog {
                let _ = d.socket.writable().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(d.clock.instant_at(at).into()).await,
                None => std::future::pending().await,
            }
        };
        let stop = async {
            if stopping.is_none() {
                d.stop.notified().await;
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            r = d.socket.readable() => {
                let r = r.and_then(|()| d.receive(&mut rx));
                if let Err(e) = r {
                    let mut wake = Vec::new();
                    d.lock().stop(e.kind(), &mut wake);
                    for w in wake {
                        w.wake();
                    }
                    return;
                }
            }
            _ = sleep => {}
            _ = writable => {
                if d.drain_backlog() {
                    d.transmit();
                }
            }
            _ = d.notify.notified() => {}
            _ = stop => {
                // The last handle is gone: sessions no stream refers to (never accepted) go
                // now; those that linger deliver what was written, bounded by their linger.
                let now = d.clock.now_ms();
                let mut s = d.lock();
                s.listening = false;
                let ids = s.ep.sessions();
                for id in ids {
                    if !s.lingering.contains(&id) {
                        let _ = s.ep.close(id);
                    }
                }
                let bound = s.linger_max + 1_000;
                drop(s);
                d.transmit();
                // Lingering sessions end by their own deadline; this bounds the task anyway.
                stopping = Some(now + bound);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kcp_core::wire::{Command, SegmentRepr, HEADER_LEN};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{KcpConfig, KcpListener, KcpStream};

    /// CPU time of the calling thread.
    #[cfg(target_os = "linux")]
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write into.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn deadlines_are_computed_in_64_bits_across_the_wrap() {
        let wrap = 1u64 << 32;
        // A deadline 30 ms ahead, seen 10 ms before the u32 clock wraps.
        let now = wrap - 10;
        assert_eq!(deadline_ms(now, millis(now + 30)), now + 30);
        // Seen after the wrap (now is past 2^32, the endpoint's Millis is small again).
        let now = wrap + 5;
        assert_eq!(deadline_ms(now, millis(now + 30)), now + 30);
        // A deadline already past is now, never 49.7 days away or in the distant past.
        assert_eq!(deadline_ms(now, millis(now - 3)), now);
        let c = Clock::new(wrap - 1);
        let t = c.now_ms();
        assert!(c.instant_at(t + 1000) > Instant::now());
    }

    /// The kernel's send buffer stays full (every send refused with EAGAIN, through
    /// `try_io`) while the peer never answers: the driver sleeps until its timers, it does
    /// not spin on a writable readiness that never clears.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_send_buffer_does_not_spin() {
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let r = rt.block_on(async {
                // A peer that never reads or answers.
                let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let cfg = KcpConfig::new(kcp_core::Config::fast3());
                let mut c = KcpStream::connect(peer.local_addr().unwrap(), cfg)
                    .await
                    .unwrap();
                c.driver()
                    .inner()
                    .stall_sends
                    .store(true, Ordering::Relaxed);
                c.write_all(&[1u8; 64 * 1024]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                let cpu = thread_cpu();
                let wall = Instant::now();
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
                let st = c.socket_stats();
                assert!(st.send_would_block > 0 && st.backlog > 0, "{st:?}");
                (cpu, wall, st)
            });
            let _ = done.send(r);
        });
        // A driver that spins on a current-thread runtime can starve the test's own timer.
        let (cpu, wall, st) = result
            .recv_timeout(Duration::from_secs(20))
            .expect("the runtime never got back to the test: the driver spins");
        // A spinning driver burns the whole second; a sleeping one a few ms.
        assert!(
            cpu < wall / 10,
            "driver used {cpu:?} CPU in {wall:?} ({} wake-ups)",
            st.wakeups
        );
    }

    /// The driver's clock crosses 2^32 ms (49.7 days) during a transfer: data still flows,
    /// the driver does not spin, and an idle timeout after the wrap fires on time.
    #[tokio::test]
    async fn timers_work_across_the_32_bit_clock_wrap() {
        let start = (1u64 << 32) - 1_500;
        let cfg = KcpConfig::new(kcp_core::Config::fast3())
            .idle_timeout(Some(Duration::from_millis(1_000)));
        crate::config::CLOCK_OFFSET_MS.with(|c| c.set(start));
        let l = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
        let mut c = KcpStream::connect(l.local_addr(), cfg).await.unwrap();
        c.write_all(b"x").await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        // Echo round trips for 2.5 s: the clocks wrap 1.5 s in.
        let t = Instant::now();
        let mut n = 0u32;
        while t.elapsed() < Duration::from_millis(2_500) {
            c.write_all(&n.to_le_bytes()).await.unwrap();
            let mut got = [0u8; 4];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(&got).await.unwrap();
            c.read_exact(&mut got).await.unwrap();
            assert_eq!(u32::from_le_bytes(got), n);
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(c.driver().now_ms() > 1 << 32);
        assert!(n > 50, "only {n} round trips");
        // Silence: the server's session ends by its idle timeout, on time.
        let quiet = Instant::now();
        drop(c);
        let e = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            crate::KcpError::of(&e),
            Some(crate::KcpError::Ended(CloseReason::IdleTimeout))
        );
        let waited = quiet.elapsed();
        assert!(
            waited > Duration::from_millis(700) && waited < Duration::from_millis(2_000),
            "{waited:?}"
        );
        // A spinning driver wakes up millions of times in 3.5 s.
        let st = l.socket_stats();
        assert!(st.wakeups < 5_000, "{st:?}");
    }

    /// Peers that open sessions and vanish before `accept` leave nothing behind.
    #[tokio::test]
    async fn unaccepted_sessions_leave_no_state() {
        let cfg = KcpConfig::new(kcp_core::Config::fast3())
            .idle_timeout(Some(Duration::from_millis(100)));
        let l = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let segment = |conv, cmd, len: usize| {
            let mut d = vec![0u8; HEADER_LEN + len];
            SegmentRepr {
                conv,
                cmd,
                frg: 0,
                wnd: 32,
                ts: 0,
                sn: 0,
                una: 0,
                len: len as u32,
            }
            .emit(&mut d)
            .unwrap();
            d
        };
        for conv in 0..20u32 {
            let d = segment(conv, Command::Push, 1);
            peer.send_to(&d, l.local_addr()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // First flights open half-open entries, not sessions; the peer's answers to the
        // probes make them sessions.
        assert_eq!(l.sessions_per_socket(), [0]);
        assert_eq!(l.stats().half_open, 20);
        for conv in 0..20u32 {
            let d = segment(conv, Command::WindowTell, 0);
            peer.send_to(&d, l.local_addr()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(l.sessions_per_socket(), [20]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(l.sessions_per_socket(), [0], "idle sessions time out");
        let s = l.drivers[0].lock();
        assert!(s.sessions.is_empty() && s.lingering.is_empty());
    }
}
