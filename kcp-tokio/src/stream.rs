//! `KcpStream`: one KCP session as an `AsyncRead + AsyncWrite` byte stream (or, in message
//! mode, a message socket that keeps boundaries).

use std::future::poll_fn;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use kcp_core::endpoint::{CloseReason, EndpointError, SessionId};
use kcp_core::{RecvError, SendError, SessionStats, Stats};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{ToSocketAddrs, UdpSocket};

use crate::config::KcpConfig;
use crate::driver::{millis, waiter_key, Driver, Sess, Shared};
use crate::error::KcpError;
use crate::stats::SocketStats;

/// Counters of one session.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct StreamStats {
    /// The engine's ARQ counters.
    pub kcp: Stats,
    /// Packet-level counters.
    pub session: SessionStats,
    /// Smoothed RTT (ms).
    pub srtt_ms: i32,
    /// Current retransmission timeout (ms).
    pub rto_ms: u32,
}

fn session_stats(s: &Shared, id: SessionId) -> Option<StreamStats> {
    s.ep.session(id).map(|x| StreamStats {
        kcp: *x.kcp().stats(),
        session: *x.stats(),
        srtt_ms: x.kcp().srtt(),
        rto_ms: x.kcp().rto(),
    })
}

/// What every handle of one stream (the stream, its halves) shares. Dropping the last one
/// releases the session: it lingers to deliver what was written, or is discarded on abort.
pub(crate) struct Inner {
    pub(crate) driver: Arc<Driver>,
    pub(crate) id: SessionId,
    /// Whether this stream's socket is its own (connect) or its listener's.
    pub(crate) owns_socket: bool,
    /// Linger of a dropped stream (`None`: discard).
    linger_ms: Option<u32>,
    aborted: std::sync::atomic::AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let linger = if self.aborted.load(std::sync::atomic::Ordering::Relaxed) {
            None
        } else {
            self.linger_ms
        };
        {
            let now = self.driver.now_ms();
            let mut s = self.driver.lock();
            s.release(self.id, now, linger);
            if s.timer_moved_earlier(now) {
                self.driver.poke();
            }
        }
        self.driver.transmit();
    }
}

/// How a read treats a message that does not fit the buffer.
#[derive(Clone, Copy, PartialEq)]
enum ReadMode {
    /// `AsyncRead`: return part of it, keep the rest for the next read.
    Partial,
    /// `recv_message`: refuse (the message stays queued).
    Whole,
}

/// Whether a write may split a message (message mode `AsyncWrite`) or must keep it whole.
#[derive(Clone, Copy, PartialEq)]
enum WriteMode {
    Partial,
    Whole,
}

impl Inner {
    fn with<T>(&self, f: impl FnOnce(&mut Shared, SessionId) -> T) -> T {
        let mut s = self.driver.lock();
        f(&mut s, self.id)
    }

    /// After an endpoint call: send what it produced, wake the driver if its timers moved.
    fn after_call(&self, mut s: crate::driver::StateGuard<'_>) {
        let now = self.driver.now_ms();
        let poke = s.timer_moved_earlier(now);
        drop(s);
        if poke {
            self.driver.poke();
        }
        self.driver.transmit();
    }

    /// Ready with why the session ended, once it has.
    fn poll_closed(&self, cx: &mut Context<'_>, key: u64) -> Poll<Result<CloseReason, KcpError>> {
        let mut s = self.driver.lock();
        let mut wake = Vec::new();
        s.dispatch(&mut wake);
        let stopped = s.stopped;
        let r = match s.sessions.get_mut(&self.id) {
            None => Poll::Ready(Ok(CloseReason::Closed)),
            Some(sess) => match (sess.ended, stopped) {
                (Some(r), _) => Poll::Ready(Ok(r)),
                (None, Some(k)) => Poll::Ready(Err(KcpError::Socket(k))),
                (None, None) => {
                    sess.closers.register(key, cx.waker());
                    Poll::Pending
                }
            },
        };
        drop(s);
        for w in wake {
            w.wake();
        }
        r
    }

    /// Waits until the session ends (see [`KcpStream::closed`]).
    async fn closed(&self) -> Result<CloseReason, KcpError> {
        let key = waiter_key();
        let _guard = KeyGuard { inner: self, key };
        poll_fn(|cx| self.poll_closed(cx, key)).await
    }

    /// The error of a session that is gone, or `Ok(())` for a read that sees end of stream.
    fn ended(&self, s: &mut Shared, reading: bool) -> io::Result<()> {
        let mut wake = Vec::new();
        s.dispatch(&mut wake);
        for w in wake {
            w.wake();
        }
        let stopped = s.stopped;
        let Some(sess) = s.sessions.get(&self.id) else {
            return Err(KcpError::Ended(CloseReason::Closed).into());
        };
        match sess.ended {
            // After our own shutdown, a session whose peer fell silent simply ends.
            Some(CloseReason::IdleTimeout) if reading && sess.write_shut => Ok(()),
            Some(r) => Err(KcpError::Ended(r).into()),
            None => match stopped {
                Some(k) => Err(KcpError::Socket(k).into()),
                None => Err(KcpError::Ended(CloseReason::Closed).into()),
            },
        }
    }

    fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        key: u64,
        dst: &mut [u8],
        mode: ReadMode,
    ) -> Poll<io::Result<usize>> {
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut s = self.driver.lock();
        if let Some(k) = s.stopped {
            return Poll::Ready(Err(KcpError::Socket(k).into()));
        }
        let Shared { ep, sessions, .. } = &mut *s;
        let Some(sess) = sessions.get_mut(&self.id) else {
            return Poll::Ready(Err(KcpError::Ended(CloseReason::Closed).into()));
        };
        // The rest of a message an earlier small read took part of.
        if sess.leftover_pos < sess.leftover.len() {
            let rest = &sess.leftover[sess.leftover_pos..];
            if mode == ReadMode::Whole && rest.len() > dst.len() {
                return Poll::Ready(Err(too_small(rest.len())));
            }
            let n = rest.len().min(dst.len());
            dst[..n].copy_from_slice(&rest[..n]);
            sess.leftover_pos += n;
            if sess.leftover_pos == sess.leftover.len() {
                sess.leftover.clear();
                sess.leftover_pos = 0;
            }
            sess.readers.remove(key);
            return Poll::Ready(Ok(n));
        }
        match ep.recv(self.id, dst) {
            Ok(n) => {
                sess.readers.remove(key);
                self.after_call(s);
                Poll::Ready(Ok(n))
            }
            Err(EndpointError::Recv(RecvError::BufferTooSmall { needed })) => {
                if mode == ReadMode::Whole {
                    return Poll::Ready(Err(too_small(needed)));
                }
                let mut whole = std::mem::take(&mut sess.leftover);
                whole.resize(needed, 0);
                match ep.recv(self.id, &mut whole) {
                    Ok(m) => {
                        whole.truncate(m);
                        let n = m.min(dst.len());
                        dst[..n].copy_from_slice(&whole[..n]);
                        sess.leftover = whole;
                        sess.leftover_pos = n;
                        sess.readers.remove(key);
                        self.after_call(s);
                        Poll::Ready(Ok(n))
                    }
                    Err(e) => {
                        whole.clear();
                        sess.leftover = whole;
                        Poll::Ready(Err(io::Error::other(e.to_string())))
                    }
                }
            }
            Err(EndpointError::Recv(RecvError::WouldBlock)) => {
                sess.readers.register(key, cx.waker());
                Poll::Pending
            }
            Err(EndpointError::UnknownSession) => match self.ended(&mut s, true) {
                Ok(()) => Poll::Ready(Ok(0)),
                Err(e) => Poll::Ready(Err(e)),
            },
            Err(e) => Poll::Ready(Err(io::Error::other(e.to_string()))),
        }
    }

    fn poll_write_from(
        &self,
        cx: &mut Context<'_>,
        key: u64,
        src: &[u8],
        mode: WriteMode,
    ) -> Poll<io::Result<usize>> {
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut s = self.driver.lock();
        if let Some(k) = s.stopped {
            return Poll::Ready(Err(KcpError::Socket(k).into()));
        }
        let Shared { ep, sessions, .. } = &mut *s;
        let Some(sess) = sessions.get_mut(&self.id) else {
            return Poll::Ready(Err(KcpError::Ended(CloseReason::Closed).into()));
        };
        if sess.write_shut {
            return Poll::Ready(Err(KcpError::WriteShutdown.into()));
        }
        if ep.session(self.id).is_none() {
            return Poll::Ready(match self.ended(&mut s, false) {
                Err(e) => Err(e),
                Ok(_) => Err(KcpError::Ended(CloseReason::Closed).into()),
            });
        }
        if !ep.is_writable(self.id) {
            sess.writers.register(key, cx.waker());
            s.watch_write(self.id);
            drop(s);
            // A drain may be due (and with it the writable check).
            self.driver.transmit();
            return Poll::Pending;
        }
        let mut src = src;
        if mode == WriteMode::Partial {
            // Message mode AsyncWrite: at most one message of what the send ring can hold.
            if let Some(x) = ep.session(self.id) {
                let k = x.kcp();
                if !k.config().stream {
                    let frags = 255usize.min(k.config().snd_wnd.max(1) as usize);
                    let max = k.mss().max(1) * frags;
                    src = &src[..src.len().min(max)];
                }
            }
        }
        match ep.send(self.id, src) {
            Ok(n) => {
                sess.writers.remove(key);
                self.after_call(s);
                Poll::Ready(Ok(n))
            }
            Err(EndpointError::Send(SendError::Full)) => {
                sess.writers.register(key, cx.waker());
                s.watch_write(self.id);
                drop(s);
                self.driver.transmit();
                Poll::Pending
            }
            Err(EndpointError::Send(e)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                e.to_string(),
            ))),
            Err(EndpointError::WriteClosed) => Poll::Ready(Err(KcpError::WriteShutdown.into())),
            Err(_) => Poll::Ready(match self.ended(&mut s, false) {
                Err(e) => Err(e),
                Ok(_) => Err(KcpError::Ended(CloseReason::Closed).into()),
            }),
        }
    }

    /// A vectored write: the slices' bytes as one write (in message mode: one message). One
    /// non-empty slice is written as is; several are gathered first, at most as many bytes
    /// as the largest message (255 segments of the largest MTU).
    fn poll_write_vectored_from(
        &self,
        cx: &mut Context<'_>,
        key: u64,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        const MAX_GATHER: usize = 255 * kcp_core::config::MAX_MTU as usize;
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        let Some(first) = nonempty.next() else {
            return Poll::Ready(Ok(0));
        };
        if nonempty.next().is_none() {
            return self.poll_write_from(cx, key, first, WriteMode::Partial);
        }
        let total = bufs.iter().map(|b| b.len()).sum::<usize>().min(MAX_GATHER);
        let mut gather = Vec::with_capacity(total);
        for b in bufs {
            let room = total - gather.len();
            if room == 0 {
                break;
            }
            gather.extend_from_slice(&b[..b.len().min(room)]);
        }
        self.poll_write_from(cx, key, &gather, WriteMode::Partial)
    }

    /// Half-close: stops the write side at once, then waits until everything written was
    /// acknowledged (bounded by `timeout_ms` from the first call).
    fn poll_shutdown(
        &self,
        cx: &mut Context<'_>,
        key: u64,
        timeout_ms: u32,
        sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    ) -> Poll<io::Result<()>> {
        let now = self.driver.now_ms();
        let mut s = self.driver.lock();
        let Shared { ep, sessions, .. } = &mut *s;
        let Some(sess) = sessions.get_mut(&self.id) else {
            return Poll::Ready(Err(KcpError::Ended(CloseReason::Closed).into()));
        };
        if sess.shutdown_done {
            return Poll::Ready(Ok(()));
        }
        if ep.session(self.id).is_none() {
            sess.write_shut = true;
            return Poll::Ready(match self.ended(&mut s, false) {
                Err(e) => Err(e),
                Ok(_) => Ok(()),
            });
        }
        let deadline = match sess.shutdown_deadline {
            Some(d) => d,
            None => {
                sess.write_shut = true;
                let _ = ep.shutdown_write(self.id);
                let d = now + u64::from(timeout_ms);
                sess.shutdown_deadline = Some(d);
                d
            }
        };
        if ep.is_flushed(self.id) {
            sess.shutdown_done = true;
            sess.flushers.remove(key);
            *sleep = None;
            drop(s);
            self.driver.transmit();
            return Poll::Ready(Ok(()));
        }
        if now >= deadline {
            sess.flushers.remove(key);
            *sleep = None;
            return Poll::Ready(Err(KcpError::ShutdownTimeout.into()));
        }
        sess.flushers.register(key, cx.waker());
        s.watch_flush(self.id);
        self.after_call(s);
        let at = self.driver.instant_at(deadline);
        let sl = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
        if sl.as_mut().poll(cx).is_ready() {
            // The deadline passed: the next poll reports it (or success, if just flushed).
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn forget(&self, key: u64) {
        let mut s = self.driver.lock();
        if let Some(sess) = s.sessions.get_mut(&self.id) {
            sess.readers.remove(key);
            sess.writers.remove(key);
            sess.flushers.remove(key);
            sess.closers.remove(key);
        }
    }
}

fn too_small(needed: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("message of {needed} bytes does not fit the buffer"),
    )
}

/// Removes a waiting caller's entry when its future is dropped (completed or cancelled).
struct KeyGuard<'a> {
    inner: &'a Inner,
    key: u64,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.inner.forget(self.key);
    }
}

/// A KCP session: an `AsyncRead + AsyncWrite` byte stream in stream mode, or a message socket
/// in message mode ([`send_message`](Self::send_message), [`recv_message`](Self::recv_message)).
///
/// Writes wait while the send window is full (kcp-go's `Write` rule), so memory stays
/// bounded. Reads work with any buffer size; in message mode `AsyncRead` returns part of a
/// message that does not fit and the rest on the next reads (as kcp-go's `Read`), while
/// [`recv_message`](Self::recv_message) keeps whole messages.
///
/// # Closing
///
/// KCP has no FIN: the peer learns nothing from a close and notices by its idle timeout.
/// * [`shutdown`](tokio::io::AsyncWriteExt::shutdown) is TCP's half-close: the write side
///   closes at once (later writes fail with `BrokenPipe`), then it waits until everything
///   written was acknowledged, failing with `TimedOut` ([`KcpError::ShutdownTimeout`]) after
///   [`KcpConfig::shutdown_timeout`]. Reading goes on; once the peer falls silent the session
///   ends by its idle timeout, which after a shutdown reads as end of stream.
/// * Dropping the stream (all its halves) closes it like a TCP socket: the session stays
///   until what was written is acknowledged, at most [`KcpConfig::linger`], then goes.
/// * [`abort`](Self::abort) discards unsent data at once (the peer still gets the ACKs it is
///   owed).
///
/// A session that ended otherwise fails every call with an error carrying a [`KcpError`]:
/// `TimedOut` (idle timeout), `ConnectionAborted` (dead link), or the socket's error.
///
/// # Concurrency
///
/// The `&self` methods ([`send_message`](Self::send_message),
/// [`recv_message`](Self::recv_message)) may be called from several tasks at once: each
/// caller waits with its own waker. All of them, and `AsyncRead`/`AsyncWrite`, are
/// cancellation-safe: a future dropped before it completed consumed or queued nothing.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use kcp_tokio::{KcpConfig, KcpStream};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let mut stream = KcpStream::connect("127.0.0.1:4000", KcpConfig::default()).await?;
/// stream.write_all(b"hello").await?;
/// stream.shutdown().await?; // delivered; the peer's reply can still be read
/// let mut reply = Vec::new();
/// stream.read_to_end(&mut reply).await?;
/// # Ok(()) }
/// ```
pub struct KcpStream {
    inner: Arc<Inner>,
    shutdown_ms: u32,
    read_to: Deadline,
    write_to: Deadline,
    rkey: u64,
    wkey: u64,
    shut_sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// A read or write timeout: armed when an operation first has to wait, cleared when one
/// completes. `None` waits for ever.
#[derive(Default)]
struct Deadline {
    timeout: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadline {
    fn new(timeout: Option<Duration>) -> Deadline {
        Deadline {
            timeout,
            sleep: None,
        }
    }

    fn wrap<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
        err: KcpError,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(v) => {
                self.sleep = None;
                Poll::Ready(v)
            }
            Poll::Pending => {
                let Some(t) = self.timeout else {
                    return Poll::Pending;
                };
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
                if sleep.as_mut().poll(cx).is_ready() {
                    self.sleep = None;
                    Poll::Ready(Err(err.into()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl std::fmt::Debug for KcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpStream")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl KcpStream {
    /// Opens a session to `addr` (an address or `host:port`) from a new UDP socket on an
    /// ephemeral port, with a random conversation id (kcp-go's `DialWithOptions`). No packet
    /// is sent until the first write: KCP has no handshake.
    pub async fn connect(addr: impl ToSocketAddrs, config: KcpConfig) -> io::Result<KcpStream> {
        let addr = tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let bind: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).await?;
        KcpStream::connect_with_socket(socket, addr, kcp_mio::stack::random_conv()?, config)
    }

    /// Opens a session over an existing socket with a given conversation id (kcp-go's
    /// `NewConn3`). The socket is owned by the returned stream's driver.
    pub fn connect_with_socket(
        socket: UdpSocket,
        addr: SocketAddr,
        conv: u32,
        config: KcpConfig,
    ) -> io::Result<KcpStream> {
        let driver = Driver::open(socket, &config, false)?;
        let id = {
            let now = driver.now_ms();
            let mut s = driver.lock();
            let id =
                s.ep.connect(millis(now), addr, conv)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            s.sessions.insert(id, Sess::default());
            id
        };
        kcp_mio::diag::session_opened(id, addr, false);
        driver.poke();
        Ok(KcpStream::from_parts(driver, id, &config, true))
    }

    /// A stream over a session already registered in the driver's `sessions`.
    pub(crate) fn from_parts(
        driver: Arc<Driver>,
        id: SessionId,
        config: &KcpConfig,
        owns_socket: bool,
    ) -> KcpStream {
        KcpStream {
            inner: Arc::new(Inner {
                driver,
                id,
                owns_socket,
                linger_ms: crate::config::linger_ms(config),
                aborted: std::sync::atomic::AtomicBool::new(false),
            }),
            shutdown_ms: crate::config::shutdown_ms(config),
            read_to: Deadline::new(config.timeouts().read),
            write_to: Deadline::new(config.timeouts().write),
            rkey: waiter_key(),
            wkey: waiter_key(),
            shut_sleep: None,
        }
    }

    pub(crate) fn driver(&self) -> &Driver {
        &self.inner.driver
    }

    /// Ends the session at once, discarding what was not yet delivered (a TCP reset, without
    /// telling the peer: KCP has no such message). The peer still gets the ACKs it is owed.
    pub fn abort(self) {
        self.inner
            .aborted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets the socket buffers at run time (`SetReadBuffer`/`SetWriteBuffer`). Like kcp-go,
    /// refused for a stream a listener accepted: its socket is the listener's.
    pub fn set_sockbuf(&self, bytes: usize) -> io::Result<()> {
        self.own_socket()?;
        self.inner
            .driver
            .with_socket(|s| crate::config::set_sockbuf(s, bytes))
    }

    /// Sets the DSCP code point at run time (`SetDSCP`); refused for accepted streams.
    pub fn set_dscp(&self, dscp: u8) -> io::Result<()> {
        self.own_socket()?;
        self.inner
            .driver
            .with_socket(|s| crate::config::set_dscp(s, dscp))
    }

    fn own_socket(&self) -> io::Result<()> {
        if self.inner.owns_socket {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an accepted stream shares its listener's socket: set it on the listener",
            ))
        }
    }

    /// Fails a read that waits longer than `t` with `TimedOut` ([`KcpError::ReadTimeout`];
    /// kcp-go's read deadline, as a duration per operation); `None` waits for ever. The
    /// session stays usable.
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_to = Deadline::new(t);
    }

    /// Fails a write that waits longer than `t` (for room in the send window) with
    /// `TimedOut` ([`KcpError::WriteTimeout`]).
    pub fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.write_to = Deadline::new(t);
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.inner
            .with(|s, id| s.ep.session(id).map(|x| x.kcp().conv()))
            .unwrap_or(0)
    }

    /// Largest segment payload: messages up to this size travel as one segment.
    pub fn mss(&self) -> usize {
        self.inner
            .with(|s, id| s.ep.session(id).map(|x| x.kcp().mss()))
            .unwrap_or(0)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner
            .with(|s, id| s.ep.remote(id))
            .ok_or_else(|| KcpError::Ended(CloseReason::Closed).into())
    }

    /// The local socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.driver.local_addr()
    }

    /// Resolves when the session ends, with why: the peer fell silent for the idle timeout
    /// ([`CloseReason::IdleTimeout`]), data went unacknowledged (`DeadLink`), ... Cancel-safe;
    /// any number of tasks may wait. A socket failure resolves it with
    /// [`KcpError::Socket`]. Dropping the stream is not an end it can see (the future
    /// borrows the stream): a dropped stream's session lingers to deliver what was written,
    /// and [`KcpConnector::wait_idle`](crate::KcpConnector::wait_idle) or
    /// [`KcpListener::wait_idle`](crate::KcpListener::wait_idle) wait for that.
    ///
    /// ```no_run
    /// # async fn demo(stream: kcp_tokio::KcpStream) {
    /// match stream.closed().await {
    ///     Ok(reason) => eprintln!("session ended: {reason}"),
    ///     Err(e) => eprintln!("socket failed: {e}"),
    /// }
    /// # }
    /// ```
    pub async fn closed(&self) -> Result<CloseReason, KcpError> {
        self.inner.closed().await
    }

    /// A handle that reads this stream's counters from elsewhere (a progress display, a
    /// metrics task) while the stream itself is busy.
    pub fn monitor(&self) -> StreamMonitor {
        StreamMonitor {
            driver: self.inner.driver.clone(),
            id: self.inner.id,
        }
    }

    /// Counters and RTT of the session (`None` once it ended).
    pub fn stats(&self) -> Option<StreamStats> {
        self.inner.with(|s, id| session_stats(s, id))
    }

    /// Counters of the socket this stream's session runs on (shared with the listener's
    /// other sessions for an accepted stream): datagrams sent and dropped, kernel pushback.
    pub fn socket_stats(&self) -> SocketStats {
        self.inner.driver.socket_stats()
    }

    /// Changes the engine settings at run time (kcp-go's `SetNoDelay`, `SetWindowSize`,
    /// `SetACKNoDelay`, `SetWriteDelay`, `SetMtu`), through `f` on the engine's
    /// configuration; invalid results are refused and nothing changes. Stream mode is fixed at
    /// creation; an MTU change waits until queued segments fit it (an error says so).
    pub fn set_config(&self, f: impl FnOnce(&mut kcp_core::Config)) -> io::Result<()> {
        let r = self.inner.with(|s, id| {
            s.ep.session_mut(id).map(|x| {
                let mut c = *x.kcp().config();
                f(&mut c);
                x.kcp_mut().reconfigure(c)
            })
        });
        self.inner.driver.transmit();
        match r {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
            None => Err(KcpError::Ended(CloseReason::Closed).into()),
        }
    }

    /// Sends one message (message mode keeps boundaries; at most 255 fragments). Waits while
    /// the send window is full. Safe to call from several tasks at once; cancellation-safe
    /// (a message is queued whole or not at all).
    pub async fn send_message(&self, msg: &[u8]) -> io::Result<()> {
        let mut to = Deadline::new(self.write_to.timeout);
        let key = waiter_key();
        let _guard = KeyGuard {
            inner: &self.inner,
            key,
        };
        let n = poll_fn(|cx| {
            let r = self.inner.poll_write_from(cx, key, msg, WriteMode::Whole);
            to.wrap(cx, r, KcpError::WriteTimeout)
        })
        .await?;
        if n != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "stream mode does not keep message boundaries",
            ));
        }
        Ok(())
    }

    /// Receives one whole message into `buf` (message mode; in stream mode whatever bytes
    /// are there). A message larger than `buf` is refused with `InvalidInput` and stays
    /// queued; if an `AsyncRead` took part of a message, this returns the rest of it. Safe to
    /// call from several tasks at once (each message goes to one of them);
    /// cancellation-safe. An empty `buf` returns `Ok(0)` at once.
    pub async fn recv_message(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut to = Deadline::new(self.read_to.timeout);
        let key = waiter_key();
        let _guard = KeyGuard {
            inner: &self.inner,
            key,
        };
        poll_fn(|cx| {
            let r = self.inner.poll_read_into(cx, key, buf, ReadMode::Whole);
            to.wrap(cx, r, KcpError::ReadTimeout)
        })
        .await
    }

    /// Splits into a read half and a write half that can move to different tasks. The
    /// session is released when both are dropped.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (
            OwnedReadHalf {
                inner: self.inner.clone(),
                read_to: self.read_to,
                rkey: self.rkey,
            },
            OwnedWriteHalf {
                inner: self.inner,
                shutdown_ms: self.shutdown_ms,
                write_to: self.write_to,
                wkey: self.wkey,
                shut_sleep: self.shut_sleep,
            },
        )
    }
}

fn poll_read_buf(
    inner: &Inner,
    key: u64,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if buf.remaining() == 0 {
        return Poll::Ready(Ok(()));
    }
    let dst = buf.initialize_unfilled();
    match inner.poll_read_into(cx, key, dst, ReadMode::Partial) {
        Poll::Ready(Ok(n)) => {
            buf.advance(n);
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

impl AsyncRead for KcpStream {
    /// Any buffer size; an empty one returns at once. End of stream (`Ok` with nothing read)
    /// only after a local shutdown and the session's end by idle timeout.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = poll_read_buf(&this.inner, this.rkey, cx, buf);
        this.read_to.wrap(cx, r, KcpError::ReadTimeout)
    }
}

impl AsyncWrite for KcpStream {
    /// Queues data (in message mode: one message, at most 255 segments or the send window);
    /// waits while the send window is full.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this
            .inner
            .poll_write_from(cx, this.wkey, buf, WriteMode::Partial);
        this.write_to.wrap(cx, r, KcpError::WriteTimeout)
    }
    /// The slices as one write: in message mode one message of their bytes together (at
    /// most the largest message), in stream mode as many of their bytes as the send queue
    /// takes.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.inner.poll_write_vectored_from(cx, this.wkey, bufs);
        this.write_to.wrap(cx, r, KcpError::WriteTimeout)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write is handed to the engine and sent at once.
        Poll::Ready(Ok(()))
    }
    /// Half-close; see [`KcpStream`]'s "Closing".
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.inner
            .poll_shutdown(cx, this.wkey, this.shutdown_ms, &mut this.shut_sleep)
    }
}

/// Reads a stream's counters; see [`KcpStream::monitor`]. Keeps the session's socket driver
/// alive while held, but not the session: it ends with its stream.
#[derive(Clone)]
pub struct StreamMonitor {
    driver: Arc<Driver>,
    id: SessionId,
}

impl std::fmt::Debug for StreamMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMonitor").finish_non_exhaustive()
    }
}

impl StreamMonitor {
    /// Counters and RTT of the session (`None` once it ended).
    pub fn stats(&self) -> Option<StreamStats> {
        session_stats(&self.driver.lock(), self.id)
    }

    /// Counters of the session's socket.
    pub fn socket_stats(&self) -> SocketStats {
        self.driver.socket_stats()
    }
}

/// The reading half of a [`KcpStream`].
pub struct OwnedReadHalf {
    inner: Arc<Inner>,
    read_to: Deadline,
    rkey: u64,
}

/// The writing half of a [`KcpStream`].
pub struct OwnedWriteHalf {
    inner: Arc<Inner>,
    shutdown_ms: u32,
    write_to: Deadline,
    wkey: u64,
    shut_sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl OwnedReadHalf {
    /// Resolves when the session ends (see [`KcpStream::closed`]).
    pub async fn closed(&self) -> Result<CloseReason, KcpError> {
        self.inner.closed().await
    }
}

impl OwnedWriteHalf {
    /// Resolves when the session ends (see [`KcpStream::closed`]).
    pub async fn closed(&self) -> Result<CloseReason, KcpError> {
        self.inner.closed().await
    }
}

impl std::fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedReadHalf").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedWriteHalf").finish_non_exhaustive()
    }
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = poll_read_buf(&this.inner, this.rkey, cx, buf);
        this.read_to.wrap(cx, r, KcpError::ReadTimeout)
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this
            .inner
            .poll_write_from(cx, this.wkey, buf, WriteMode::Partial);
        this.write_to.wrap(cx, r, KcpError::WriteTimeout)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.inner.poll_write_vectored_from(cx, this.wkey, bufs);
        this.write_to.wrap(cx, r, KcpError::WriteTimeout)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.inner
            .poll_shutdown(cx, this.wkey, this.shutdown_ms, &mut this.shut_sleep)
    }
}
