//! `KcpListener`: accepts sessions that peers open on one UDP socket.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::{ToSocketAddrs, UdpSocket};

use crate::config::KcpConfig;
use crate::driver::{waiter_key, Driver, Sess};
use crate::error::KcpError;
use crate::stats::SocketStats;
use crate::stream::KcpStream;

/// Accepts KCP sessions on one UDP socket (kcp-go's `Listener`).
///
/// A session is created when its first datagram arrives and runs with this listener's
/// configuration from that datagram on (kcp-go applies settings only after `Accept`). Every
/// session has its own codec state. At most `backlog` sessions wait for `accept`; more are
/// refused until the application catches up.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use kcp_tokio::{KcpConfig, KcpListener};
/// use tokio::io::copy;
///
/// let listener = KcpListener::bind("127.0.0.1:4000", KcpConfig::default()).await?;
/// loop {
///     let (stream, peer) = listener.accept().await?;
///     tokio::spawn(async move {
///         let (mut r, mut w) = stream.into_split();
///         let _ = copy(&mut r, &mut w).await; // echo
///         let _ = peer;
///     });
/// }
/// # }
/// ```
pub struct KcpListener {
    pub(crate) drivers: Vec<Arc<Driver>>,
    config: KcpConfig,
    /// The waiter key of `poll_accept` callers (one per listener, as a poll method keeps
    /// only the last task's waker).
    poll_key: u64,
}

impl std::fmt::Debug for KcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpListener")
            .field("local", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl KcpListener {
    /// Binds a UDP socket at `addr` and listens on it. The address family is the address's:
    /// `0.0.0.0:PORT` takes IPv4 only; `[::]:PORT` takes IPv6 and, where the system maps
    /// IPv4 onto IPv6 sockets (Linux unless `net.ipv6.bindv6only` is set; not Windows or
    /// OpenBSD), IPv4 peers too, which then appear as `::ffff:a.b.c.d` addresses. For both
    /// families everywhere, bind one listener per family.
    pub async fn bind(addr: impl ToSocketAddrs, config: KcpConfig) -> io::Result<KcpListener> {
        let socket = UdpSocket::bind(addr).await?;
        KcpListener::from_socket(socket, config)
    }

    /// Listens on an existing socket (kcp-go's `ServeConn`).
    pub fn from_socket(socket: UdpSocket, config: KcpConfig) -> io::Result<KcpListener> {
        let driver = Driver::open(socket, &config, true)?;
        Ok(KcpListener {
            drivers: vec![driver],
            config,
            poll_key: waiter_key(),
        })
    }

    /// Binds `sockets` UDP sockets to the same address with `SO_REUSEPORT` (Linux and the
    /// BSDs), each with its own driver task: the kernel spreads peers over the sockets by
    /// address, so sessions spread over the runtime's worker threads. `accept` returns
    /// sessions from all of them.
    #[cfg(unix)]
    pub async fn bind_reuseport(
        addr: SocketAddr,
        config: KcpConfig,
        sockets: usize,
    ) -> io::Result<KcpListener> {
        use socket2::{Domain, Socket, Type};
        config.check()?;
        let mut drivers = Vec::new();
        let mut bound = addr;
        for _ in 0..sockets.max(1) {
            let s = Socket::new(Domain::for_address(bound), Type::DGRAM, None)?;
            s.set_reuse_port(true)?;
            s.set_nonblocking(true)?;
            s.bind(&bound.into())?;
            let socket = UdpSocket::from_std(s.into())?;
            // Later sockets join the port the first one got (when asked for port 0).
            bound = socket.local_addr()?;
            drivers.push(Driver::open(socket, &config, true)?);
        }
        Ok(KcpListener {
            drivers,
            config,
            poll_key: waiter_key(),
        })
    }

    /// Sets the socket buffers of the listener's sockets at run time (kcptun's `--sockbuf`).
    pub fn set_sockbuf(&self, bytes: usize) -> io::Result<()> {
        self.drivers
            .iter()
            .try_for_each(|d| d.with_socket(|s| crate::config::set_sockbuf(s, bytes)))
    }

    /// Sets the DSCP code point of the listener's sockets at run time (`SetDSCP`).
    pub fn set_dscp(&self, dscp: u8) -> io::Result<()> {
        self.drivers
            .iter()
            .try_for_each(|d| d.with_socket(|s| crate::config::set_dscp(s, dscp)))
    }

    /// Sessions currently open on each of the listener's sockets.
    pub fn sessions_per_socket(&self) -> Vec<usize> {
        self.drivers.iter().map(|d| d.lock().ep.len()).collect()
    }

    /// Waits until the sessions of every dropped stream this listener accepted have
    /// delivered what was written or given up after
    /// [`KcpConfig::linger`](crate::KcpConfig::linger), on every socket of the listener (see
    /// [`KcpConnector::wait_idle`](crate::KcpConnector::wait_idle)). A server that shuts
    /// down stops accepting, drops its streams, then waits here before its runtime ends.
    pub async fn wait_idle(&self) {
        for d in &self.drivers {
            d.wait_idle().await;
        }
    }

    /// The first socket's driver.
    pub(crate) fn driver(&self) -> &Driver {
        &self.drivers[0]
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.drivers[0].local_addr()
    }

    /// The next session a peer opened.
    ///
    /// A session that ended before it was accepted is skipped, never reported as an error:
    /// only a failed socket ends `accept().await?` loops. Safe to call from several tasks at
    /// once (each session goes to one of them) and cancellation-safe (a dropped `accept`
    /// future took no session).
    pub async fn accept(&self) -> io::Result<(KcpStream, SocketAddr)> {
        let key = waiter_key();
        let _guard = AcceptGuard {
            drivers: &self.drivers,
            key,
        };
        poll_fn(|cx| self.poll_accept_as(cx, key)).await
    }

    /// Polls for the next session a peer opened (`accept` for hand-written futures and
    /// `Stream` adapters, as `tokio::net::TcpListener::poll_accept`). When it returns
    /// `Pending`, the task of the most recent `poll_accept` call on this listener is woken
    /// when a session arrives; concurrent `accept` callers keep their own wakers.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(KcpStream, SocketAddr)>> {
        self.poll_accept_as(cx, self.poll_key)
    }

    fn poll_accept_as(
        &self,
        cx: &mut Context<'_>,
        key: u64,
    ) -> Poll<io::Result<(KcpStream, SocketAddr)>> {
        for driver in &self.drivers {
            let mut s = driver.lock();
            while let Some(id) = s.ep.accept() {
                let Some(peer) = s.ep.remote(id) else {
                    continue;
                };
                s.sessions.insert(id, Sess::default());
                s.acceptors.remove(key);
                drop(s);
                kcp_mio::diag::session_opened(id, peer, true);
                let stream = KcpStream::from_parts(driver.clone(), id, &self.config, false);
                return Poll::Ready(Ok((stream, peer)));
            }
            if let Some(k) = s.stopped {
                return Poll::Ready(Err(io::Error::from(KcpError::Socket(k))));
            }
            s.acceptors.register(key, cx.waker());
        }
        Poll::Pending
    }

    /// Counters of the listener's sockets (summed): datagrams sent and dropped, kernel
    /// pushback, truncated datagrams.
    pub fn socket_stats(&self) -> SocketStats {
        let mut t = SocketStats::default();
        for d in &self.drivers {
            t.merge(&d.socket_stats());
        }
        t
    }

    /// kcp-go's SNMP counters, summed over the listener's sockets.
    pub fn stats(&self) -> kcp_core::endpoint::EndpointStats {
        let mut all = self.drivers.iter().map(|d| d.lock().stats());
        let first = all.next().unwrap_or_default();
        all.fold(first, |acc, s| acc.merged(&s))
    }
}

/// Removes a waiting `accept` caller's entry when its future is dropped.
struct AcceptGuard<'a> {
    drivers: &'a [Arc<Driver>],
    key: u64,
}

impl Drop for AcceptGuard<'_> {
    fn drop(&mut self) {
        for d in self.drivers {
            d.lock().acceptors.remove(self.key);
        }
    }
}

impl Drop for KcpListener {
    /// Sessions peers open from now on are closed at once; accepted streams go on.
    fn drop(&mut self) {
        for d in &self.drivers {
            let mut s = d.lock();
            s.listening = false;
            s.acceptors.remove(self.poll_key);
        }
    }
}
