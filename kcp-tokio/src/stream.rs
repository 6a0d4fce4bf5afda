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

use kcp_core::endpoint::{CloseReason, Endpoint, EndpointError, SessionId};
use kcp_core::{RecvError, SendError, SessionStats, Stats};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{ToSocketAddrs, UdpSocket};

use crate::config::KcpConfig;
use crate::driver::{Driver, Shared};

/// Turns why a session ended into the error every later call returns.
pub(crate) fn close_error(reason: CloseReason) -> io::Error {
    let kind = match reason {
        CloseReason::IdleTimeout | CloseReason::ShutdownTimeout => io::ErrorKind::TimedOut,
        CloseReason::DeadLink => io::ErrorKind::ConnectionAborted,
        CloseReason::Shutdown | CloseReason::Closed => io::ErrorKind::NotConnected,
        _ => io::ErrorKind::ConnectionAborted,
    };
    io::Error::new(kind, reason.to_string())
}

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

pub(crate) struct Inner {
    pub(crate) driver: Arc<Driver>,
    pub(crate) id: SessionId,
    /// Whether this stream's socket is its own (connect) or its listener's.
    pub(crate) owns_socket: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut s = self.driver.lock();
        let _ = s.ep.close(self.id);
        s.streams.remove(&self.id);
        s.read_wakers.remove(&self.id);
        s.write_wakers.remove(&self.id);
        s.close_wakers.remove(&self.id);
        s.flush();
        s.closed.remove(&self.id);
    }
}

impl Inner {
    fn ended(&self, s: &Shared) -> Option<io::Error> {
        if let Some(r) = s.closed.get(&self.id) {
            return Some(close_error(*r));
        }
        s.stopped
            .map(|k| io::Error::new(k, "socket driver stopped"))
    }

    fn poll_read_into(&self, cx: &mut Context<'_>, dst: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut s = self.driver.lock();
        match s.ep.recv(self.id, dst) {
            Ok(n) => {
                s.flush();
                drop(s);
                self.driver.poke();
                Poll::Ready(Ok(n))
            }
            Err(EndpointError::Recv(RecvError::BufferTooSmall { needed })) => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("message of {needed} bytes does not fit the buffer"),
                )))
            }
            Err(EndpointError::Recv(RecvError::WouldBlock)) => {
                s.read_wakers.insert(self.id, cx.waker().clone());
                Poll::Pending
            }
            Err(_) => match self.ended(&s) {
                // A session we shut down ourselves reads as end of stream.
                Some(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(0)),
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Ready(Ok(0)),
            },
        }
    }

    fn poll_write_from(&self, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut s = self.driver.lock();
        if let Some(e) = self.ended(&s) {
            return Poll::Ready(Err(e));
        }
        if !s.ep.is_writable(self.id) {
            if s.ep.session(self.id).is_none() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "session ended",
                )));
            }
            s.write_wakers.insert(self.id, cx.waker().clone());
            return Poll::Pending;
        }
        match s.ep.send(self.id, src) {
            Ok(n) => {
                s.flush();
                drop(s);
                self.driver.poke();
                Poll::Ready(Ok(n))
            }
            Err(EndpointError::Send(SendError::Full)) => {
                s.write_wakers.insert(self.id, cx.waker().clone());
                Poll::Pending
            }
            Err(EndpointError::Send(e)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                e.to_string(),
            ))),
            Err(e) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                e.to_string(),
            ))),
        }
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>, timeout_ms: u32) -> Poll<io::Result<()>> {
        let mut s = self.driver.lock();
        if let Some(r) = s.closed.get(&self.id) {
            return Poll::Ready(match r {
                CloseReason::Shutdown => Ok(()),
                r => Err(close_error(*r)),
            });
        }
        if s.ep.session(self.id).is_none() {
            return Poll::Ready(Ok(()));
        }
        let now = s.now();
        let _ = s.ep.close_after_flush(now, self.id, timeout_ms);
        s.close_wakers.insert(self.id, cx.waker().clone());
        s.flush();
        drop(s);
        self.driver.poke();
        Poll::Pending
    }
}

/// A KCP session: an `AsyncRead + AsyncWrite` byte stream in stream mode, or a message socket
/// in message mode ([`send_message`](Self::send_message), [`recv_message`](Self::recv_message)).
///
/// Writes wait while the send window is full (kcp-go's `Write` rule), so memory stays
/// bounded. KCP has no close handshake: [`shutdown`](tokio::io::AsyncWriteExt::shutdown)
/// waits (bounded by [`KcpConfig::shutdown_timeout`]) until everything written was
/// acknowledged, then ends the session; the peer notices by its idle timeout. A session that
/// ended for any other reason returns an error from every call: `TimedOut` (idle timeout),
/// `ConnectionAborted` (dead link).
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use kcp_tokio::{KcpConfig, KcpStream};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let mut stream = KcpStream::connect("127.0.0.1:4000", KcpConfig::default()).await?;
/// stream.write_all(b"hello").await?;
/// let mut buf = [0u8; 5];
/// stream.read_exact(&mut buf).await?;
/// stream.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct KcpStream {
    inner: Arc<Inner>,
    shutdown_ms: u32,
    read_to: Deadline,
    write_to: Deadline,
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
        what: &str,
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
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{what} timed out"),
                    )))
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
    /// Opens a session to `addr` from a new UDP socket on an ephemeral port, with a random
    /// conversation id (kcp-go's `DialWithOptions`). No packet is sent until the first write:
    /// KCP has no handshake.
    pub async fn connect(addr: impl ToSocketAddrs, config: KcpConfig) -> io::Result<KcpStream> {
        let addr = tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad bind address"))?;
        let socket = UdpSocket::bind(bind).await?;
        KcpStream::connect_with_socket(socket, addr, random_conv(), config)
    }

    /// Opens a session over an existing socket with a given conversation id (kcp-go's
    /// `NewConn3`). The socket is owned by the returned stream's driver.
    pub fn connect_with_socket(
        socket: UdpSocket,
        addr: SocketAddr,
        conv: u32,
        config: KcpConfig,
    ) -> io::Result<KcpStream> {
        let ep = Endpoint::new(config.endpoint_config(false))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        crate::check_layers(&config)?;
        config.apply_socket(&socket)?;
        let driver = Driver::spawn(socket, ep, false)?;
        let id = {
            let mut s = driver.lock();
            let now = s.now();
            s.ep.connect(now, addr, conv)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?
        };
        driver.poke();
        Ok(KcpStream::from_parts(driver, id, &config, true))
    }

    pub(crate) fn from_parts(
        driver: Arc<Driver>,
        id: SessionId,
        config: &KcpConfig,
        owns_socket: bool,
    ) -> KcpStream {
        driver.lock().streams.insert(id);
        KcpStream {
            inner: Arc::new(Inner {
                driver,
                id,
                owns_socket,
            }),
            shutdown_ms: config.shutdown_timeout.as_millis().min(u32::MAX as u128) as u32,
            read_to: Deadline::new(config.read_timeout),
            write_to: Deadline::new(config.write_timeout),
        }
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

    /// Fails a read that waits longer than `t` with `TimedOut` (kcp-go's read deadline, as a
    /// duration per operation); `None` waits for ever. The session stays usable.
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_to = Deadline::new(t);
    }

    /// Fails a write that waits longer than `t` (for room in the send window) with `TimedOut`.
    pub fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.write_to = Deadline::new(t);
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.with(|s, id| s.ep.session(id).map(|x| x.kcp().conv()))
            .unwrap_or(0)
    }

    /// Largest segment payload: messages up to this size travel as one segment.
    pub fn mss(&self) -> usize {
        self.with(|s, id| s.ep.session(id).map(|x| x.kcp().mss()))
            .unwrap_or(0)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.with(|s, id| s.ep.remote(id))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "session ended"))
    }

    /// The local socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.driver.local_addr()
    }

    /// A handle that reads this stream's counters from elsewhere (a progress display, a
    /// metrics task) while the stream itself is busy.
    pub fn monitor(&self) -> StreamMonitor {
        StreamMonitor {
            inner: self.inner.clone(),
        }
    }

    /// Counters and RTT of the session (`None` once it ended).
    pub fn stats(&self) -> Option<StreamStats> {
        self.with(|s, id| {
            s.ep.session(id).map(|x| StreamStats {
                kcp: *x.kcp().stats(),
                session: *x.stats(),
                srtt_ms: x.kcp().srtt(),
                rto_ms: x.kcp().rto(),
            })
        })
    }

    /// Changes the engine settings at run time (kcp-go's `SetNoDelay`, `SetWindowSize`,
    /// `SetACKNoDelay`, `SetWriteDelay`, `SetMtu`), through `f` on the engine's
    /// configuration; invalid results are refused and nothing changes. Stream mode is fixed at
    /// creation; an MTU change waits until queued segments fit it (an error says so).
    pub fn set_config(&self, f: impl FnOnce(&mut kcp_core::Config)) -> io::Result<()> {
        let r = self.with(|s, id| {
            s.ep.session_mut(id).map(|x| {
                let mut c = *x.kcp().config();
                f(&mut c);
                x.kcp_mut().reconfigure(c)
            })
        });
        match r {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "session ended")),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared, SessionId) -> T) -> T {
        let mut s = self.inner.driver.lock();
        f(&mut s, self.inner.id)
    }

    /// Sends one message (message mode keeps boundaries; at most 255 fragments). Waits while
    /// the send window is full.
    pub async fn send_message(&self, msg: &[u8]) -> io::Result<()> {
        let mut to = Deadline::new(self.write_to.timeout);
        let n = poll_fn(|cx| {
            let r = self.inner.poll_write_from(cx, msg);
            to.wrap(cx, r, "write")
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

    /// Receives one whole message into `buf` (message mode); `Ok(0)` after a local shutdown.
    pub async fn recv_message(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut to = Deadline::new(self.read_to.timeout);
        poll_fn(|cx| {
            let r = self.inner.poll_read_into(cx, buf);
            to.wrap(cx, r, "read")
        })
        .await
    }

    /// Splits into a read half and a write half that can move to different tasks.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (
            OwnedReadHalf {
                inner: self.inner.clone(),
                read_to: self.read_to,
            },
            OwnedWriteHalf {
                inner: self.inner,
                shutdown_ms: self.shutdown_ms,
                write_to: self.write_to,
            },
        )
    }
}

fn random_conv() -> u32 {
    // kcp-go draws the conv from crypto/rand; uniqueness is what matters here.
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

impl AsyncRead for KcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = poll_read_buf(&this.inner, cx, buf);
        this.read_to.wrap(cx, r, "read")
    }
}

impl AsyncWrite for KcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.inner.poll_write_from(cx, buf);
        this.write_to.wrap(cx, r, "write")
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write is handed to the engine and flushed to the socket at once.
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let ms = self.shutdown_ms;
        self.inner.poll_shutdown(cx, ms)
    }
}

fn poll_read_buf(
    inner: &Inner,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    let dst = buf.initialize_unfilled();
    match inner.poll_read_into(cx, dst) {
        Poll::Ready(Ok(n)) => {
            buf.advance(n);
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Reads a stream's counters; see [`KcpStream::monitor`]. Keeps the session's socket driver
/// alive while held, but not the session: it ends with its stream.
#[derive(Clone)]
pub struct StreamMonitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMonitor").finish_non_exhaustive()
    }
}

impl StreamMonitor {
    /// Counters and RTT of the session (`None` once it ended).
    pub fn stats(&self) -> Option<StreamStats> {
        let s = self.inner.driver.lock();
        s.ep.session(self.inner.id).map(|x| StreamStats {
            kcp: *x.kcp().stats(),
            session: *x.stats(),
            srtt_ms: x.kcp().srtt(),
            rto_ms: x.kcp().rto(),
        })
    }
}

/// The reading half of a [`KcpStream`].
pub struct OwnedReadHalf {
    inner: Arc<Inner>,
    read_to: Deadline,
}

/// The writing half of a [`KcpStream`].
pub struct OwnedWriteHalf {
    inner: Arc<Inner>,
    shutdown_ms: u32,
    write_to: Deadline,
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
        let r = poll_read_buf(&this.inner, cx, buf);
        this.read_to.wrap(cx, r, "read")
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.inner.poll_write_from(cx, buf);
        this.write_to.wrap(cx, r, "write")
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let ms = self.shutdown_ms;
        self.inner.poll_shutdown(cx, ms)
    }
}
