//! `KcpStream`: one KCP session as an `AsyncRead + AsyncWrite` byte stream (or, in message
//! mode, a message socket that keeps boundaries).

mod close;
mod deadline;
mod read;
mod ready;
mod write;

pub use read::OwnedReadHalf;
pub use write::OwnedWriteHalf;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kcp_core::endpoint::{CloseReason, SessionId};
use kcp_core::{SessionStats, Stats};
use tokio::net::{ToSocketAddrs, UdpSocket};

use crate::config::KcpConfig;
use crate::driver::{millis, waiter_key, Driver, Sess, Shared};
use crate::error::KcpError;
use crate::stats::SocketStats;
use deadline::Deadline;

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

impl Inner {
    fn with<T>(&self, f: impl FnOnce(&mut Shared, SessionId) -> T) -> T {
        let mut s = self.driver.lock();
        f(&mut s, self.id)
    }

    /// After an endpoint call: send what it produced, wake the driver if its timers moved.
    ///
    /// During the driver's receive turn (the common case for a server's streams: the turn
    /// woke them) there is nothing to check: the driver computes its next sleep under this
    /// lock once the turn ends, and so sees what this call changed. That saves a clock
    /// reading and a look at the endpoint's timers per stream call.
    fn after_call(&self, mut s: crate::driver::StateGuard<'_>) {
        let poke = !self.driver.in_turn() && {
            let now = self.driver.now_ms();
            s.timer_moved_earlier(now)
        };
        drop(s);
        if poke {
            self.driver.poke();
        }
        self.driver.transmit();
    }

    fn forget(&self, key: u64) {
        let mut s = self.driver.lock();
        if let Some(sess) = s.sessions.get_mut(&self.id) {
            sess.readers.remove(key);
            sess.writers.remove(key);
            if let Some(r) = sess.rare_mut() {
                r.flushers.remove(key);
                r.closers.remove(key);
            }
        }
    }
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
