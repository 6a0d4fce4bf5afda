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
//!
//! Files: `clock.rs`, `waiters.rs`, `shared.rs` (the state behind the lock), `send.rs`,
//! `recv.rs`; this file holds the driver handle and its task's loop.

#[cfg(not(target_has_atomic = "64"))]
use portable_atomic::AtomicU64;
use std::collections::{HashMap, HashSet, VecDeque};
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

mod clock;
mod recv;
mod send;
mod shared;
mod waiters;

pub(crate) use clock::{deadline_ms, millis, Clock};
use recv::{Rx, RxProc};
pub(crate) use shared::{Sess, Shared};
pub(crate) use waiters::{waiter_key, Waiters};

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
    /// The driver is in a receive turn: from reading a batch until the tasks it woke have
    /// run and it has sent what they wrote. A task's transmit then leaves its datagrams to
    /// the driver's one batch for the turn (see [`Driver::transmit`]).
    in_turn: AtomicBool,
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
    /// Test hook: the driver's events in order, recorded while `Some`.
    #[cfg(test)]
    pub(crate) traces: Mutex<Option<Vec<Trace>>>,
}

/// What the driver did, in order, for tests of the send path's batching (recorded only in
/// the crate's unit tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub(crate) enum Trace {
    /// A receive system call returned this many datagrams.
    Received(usize),
    /// The turn woke this many tasks before yielding to them.
    Woke(usize),
    /// A task's transmit was left to the driver's turn.
    Deferred,
    /// The turn ended: the driver sends what it and its tasks produced.
    TurnSend,
    /// One send pass handed this many datagrams to the socket.
    Sent(usize),
    /// The driver is about to wait for the socket, a timer or a signal.
    Wait,
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
            config.send_backlog_limit(),
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
                ready: VecDeque::new(),
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
            in_turn: AtomicBool::new(false),
            notify: Notify::new(),
            stop: Notify::new(),
            socket: socket.clone(),
            clock: Clock::new(clock_offset_ms),
            local,
            counters: Counters::default(),
            #[cfg(test)]
            stall_sends: AtomicBool::new(false),
            #[cfg(test)]
            traces: Mutex::new(None),
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

    /// Sends what the endpoint has, in the caller's task; during the driver's receive turn
    /// it is left to the driver, which sends everything the turn's tasks wrote in one batch
    /// once they have run (one `sendmmsg` for the replies of many sessions).
    pub(crate) fn transmit(&self) {
        self.inner.transmit_from_task();
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

    /// Tells the driver its timers moved earlier. Not needed during a receive turn: the
    /// driver computes its next sleep after the turn ends, under the state lock, so it sees
    /// the change the caller made under that lock (a wake-up saved per turn).
    pub(crate) fn poke(&self) {
        if !self.inner.in_turn.load(Ordering::SeqCst) {
            self.inner.notify.notify_one();
        }
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
    // One timer for all the driver's sleeps, moved when the deadline changes rather than
    // made (and registered with Tokio's timer wheel) anew on every wake-up.
    let mut timer = Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
    let mut timer_at: Option<u64> = None;
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
        d.trace(Trace::Wait);
        if let Some(at) = deadline {
            if timer_at != Some(at) {
                timer.as_mut().reset(d.clock.instant_at(at).into());
                timer_at = Some(at);
            }
        }
        let stop = async {
            if stopping.is_none() {
                d.stop.notified().await;
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            r = d.socket.readable() => {
                // A receive turn: what tasks write until it ends leaves in its one batch.
                d.in_turn.store(true, Ordering::SeqCst);
                let r = r.and_then(|()| d.receive(&mut rx));
                if let Err(e) = r {
                    d.in_turn.store(false, Ordering::SeqCst);
                    let mut wake = Vec::new();
                    d.lock().stop(e.kind(), &mut wake);
                    for w in wake {
                        w.wake();
                    }
                    return;
                }
                // Wake the tasks the batch made ready and, if there are several, let them run
                // first: Tokio resumes a yielding task once its worker has run the tasks in
                // its queue (those woken here among them) and polled the socket readiness.
                // Their writes only queue data; the replies then leave with the turn's ACKs
                // in one batch. A lone task sends its own reply: the yield would cost it more
                // than a batch of one saves (a single session's echo p50 went from 25 to
                // 43 µs with it).
                if d.wake_ready() > 1 {
                    tokio::task::yield_now().await;
                }
                d.in_turn.store(false, Ordering::SeqCst);
                d.trace(Trace::TurnSend);
                d.transmit();
            }
            _ = timer.as_mut(), if deadline.is_some() => {
                // Fired: the next deadline, even the same millisecond, sets it again.
                timer_at = None;
            }
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

    /// Starts recording the driver's events (see [`Trace`]).
    #[cfg(target_os = "linux")]
    fn start_trace(d: &Driver) {
        *d.inner().traces.lock().unwrap() = Some(Vec::new());
    }

    /// Stops recording and returns what was recorded.
    #[cfg(target_os = "linux")]
    fn take_trace(d: &Driver) -> Vec<Trace> {
        d.inner().traces.lock().unwrap().take().unwrap_or_default()
    }

    /// `n` client streams, each with an echo task on the listener's side, one round trip
    /// done, then quiet (every driver waiting). One runtime thread: nothing runs between the
    /// awaits of the test's task.
    #[cfg(target_os = "linux")]
    async fn echo_sessions(n: usize) -> (KcpListener, Vec<KcpStream>) {
        let cfg = KcpConfig::new(kcp_core::Config::fast3());
        let l = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
        let mut clients = Vec::new();
        for _ in 0..n {
            let mut c = KcpStream::connect(l.local_addr(), cfg.clone())
                .await
                .unwrap();
            c.write_all(b"hi").await.unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                loop {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => {
                            if s.write_all(&b[..k]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let mut b = [0u8; 2];
            c.read_exact(&mut b).await.unwrap();
            clients.push(c);
        }
        // Let every driver finish its turn and the ACKs settle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (l, clients)
    }

    /// Requests of many sessions that arrive together are answered by their own tasks, and
    /// the replies leave in one send pass of the driver (one `sendmmsg`), not one system call
    /// per reply.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn replies_of_many_sessions_leave_in_one_send() {
        const N: usize = 16;
        let (l, mut clients) = echo_sessions(N).await;
        let d = l.sockets.drivers[0].clone();
        let before = d.socket_stats();
        start_trace(&d);
        // Each write sends its datagram before returning: all N wait in the listener's socket
        // before its driver runs again.
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(&[i as u8; 8]).await.unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [i as u8; 8]);
        }
        let trace = take_trace(&d);
        let after = d.socket_stats();
        let received: usize = trace
            .iter()
            .map(|t| if let Trace::Received(k) = t { *k } else { 0 })
            .sum();
        assert!(received >= N, "{trace:?}");
        // The first send pass after the requests carries every reply.
        let first_send = trace.iter().find_map(|t| match t {
            Trace::Sent(k) => Some(*k),
            _ => None,
        });
        assert_eq!(first_send, Some(N), "{trace:?}");
        assert!(
            after.batched_writes - before.batched_writes >= N as u64,
            "{before:?} {after:?}"
        );
        assert!(
            after.send_calls - before.send_calls < N as u64 / 4,
            "{before:?} {after:?}"
        );
    }

    /// A lone request: the turn wakes one task and does not hold its reply: the task sends
    /// it itself as soon as it runs (no yield, no transmit left to the driver), right after
    /// the driver's turn, before anything else happens on the socket.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_lone_reply_is_sent_by_its_task_at_once() {
        let (l, mut clients) = echo_sessions(1).await;
        let d = l.sockets.drivers[0].clone();
        let c = &mut clients[0];
        for round in 0..3u8 {
            let before = d.socket_stats();
            start_trace(&d);
            c.write_all(&[round; 4]).await.unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [round; 4]);
            let trace = take_trace(&d);
            let after = d.socket_stats();
            // The turn, then the driver waits, then the task's own send of its reply.
            let upto_sent: Vec<Trace> = trace
                .iter()
                .copied()
                .take_while(|t| !matches!(t, Trace::Sent(_)))
                .collect();
            assert_eq!(
                upto_sent,
                [
                    Trace::Received(1),
                    Trace::Woke(1),
                    Trace::TurnSend,
                    Trace::Wait
                ],
                "{trace:?}"
            );
            assert_eq!(
                trace.get(upto_sent.len()),
                Some(&Trace::Sent(1)),
                "{trace:?}"
            );
            assert_eq!(after.batched_writes, before.batched_writes, "{trace:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        let s = l.sockets.drivers[0].lock();
        assert!(s.sessions.is_empty() && s.lingering.is_empty());
    }
}
