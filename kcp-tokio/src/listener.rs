//! `KcpListener`: accepts sessions that peers open on one UDP socket.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use tokio::net::{ToSocketAddrs, UdpSocket};

use crate::config::KcpConfig;
use crate::driver::Driver;
use crate::endpoint::SocketSet;
use crate::stats::SocketStats;
use crate::stream::KcpStream;

/// Accepts KCP sessions on one UDP socket (kcp-go's `Listener`).
///
/// A session is created when its first datagram arrives and runs with this listener's
/// configuration from that datagram on (kcp-go applies settings only after `Accept`). Every
/// session has its own codec state. At most `backlog` sessions wait for `accept`; more are
/// refused until the application catches up. To dial from the same socket as well, use a
/// [`KcpEndpoint`](crate::KcpEndpoint).
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
    pub(crate) sockets: SocketSet,
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
        Ok(KcpListener {
            sockets: SocketSet::open(socket, config, true)?,
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
            sockets: SocketSet::of(drivers, config),
        })
    }

    /// Sets the socket buffers of the listener's sockets at run time (kcptun's `--sockbuf`).
    pub fn set_sockbuf(&self, bytes: usize) -> io::Result<()> {
        self.sockets.set_sockbuf(bytes)
    }

    /// Sets the DSCP code point of the listener's sockets at run time (`SetDSCP`).
    pub fn set_dscp(&self, dscp: u8) -> io::Result<()> {
        self.sockets.set_dscp(dscp)
    }

    /// Sessions currently open on each of the listener's sockets.
    pub fn sessions_per_socket(&self) -> Vec<usize> {
        self.sockets.sessions_per_socket()
    }

    /// Waits until the sessions of every dropped stream this listener accepted have
    /// delivered what was written or given up after
    /// [`KcpConfig::linger`](crate::KcpConfig::linger), on every socket of the listener (see
    /// [`KcpConnector::wait_idle`](crate::KcpConnector::wait_idle)). A server that shuts
    /// down stops accepting, drops its streams, then waits here before its runtime ends.
    pub async fn wait_idle(&self) {
        self.sockets.wait_idle().await
    }

    /// The first socket's driver.
    pub(crate) fn driver(&self) -> &Driver {
        self.sockets.driver()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.sockets.local_addr()
    }

    /// The next session a peer opened.
    ///
    /// A session that ended before it was accepted is skipped, never reported as an error:
    /// only a failed socket ends `accept().await?` loops. Safe to call from several tasks at
    /// once (each session goes to one of them) and cancellation-safe (a dropped `accept`
    /// future took no session).
    pub async fn accept(&self) -> io::Result<(KcpStream, SocketAddr)> {
        self.sockets.accept().await
    }

    /// Polls for the next session a peer opened (`accept` for hand-written futures and
    /// `Stream` adapters, as `tokio::net::TcpListener::poll_accept`). When it returns
    /// `Pending`, the task of the most recent `poll_accept` call on this listener is woken
    /// when a session arrives; concurrent `accept` callers keep their own wakers.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(KcpStream, SocketAddr)>> {
        self.sockets.poll_accept(cx)
    }

    /// Counters of the listener's sockets (summed): datagrams sent and dropped, kernel
    /// pushback, truncated datagrams.
    pub fn socket_stats(&self) -> SocketStats {
        self.sockets.socket_stats()
    }

    /// kcp-go's SNMP counters, summed over the listener's sockets.
    pub fn stats(&self) -> kcp_core::endpoint::EndpointStats {
        self.sockets.stats()
    }

    /// The counters the listener's endpoints keep themselves, summed over its sockets:
    /// datagrams, admission (`refused`...), errors before a session took a datagram, and the
    /// gauges. The sessions' own counters (bytes, segments, retransmissions) read zero.
    /// [`stats`](Self::stats) walks every session under the socket's lock, which on a server
    /// of 10,000 sessions holds its input up for milliseconds; this does not, so poll it as
    /// often as you like.
    pub fn own_stats(&self) -> kcp_core::endpoint::EndpointStats {
        self.sockets.own_stats()
    }
}

// Dropping a listener (its `SocketSet`): sessions peers open from now on, and those waiting
// for `accept`, are closed at once; accepted streams go on.
