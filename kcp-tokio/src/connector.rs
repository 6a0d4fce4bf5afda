//! `KcpConnector`: many client sessions over one UDP socket.

use std::io;
use std::net::SocketAddr;

use tokio::net::{ToSocketAddrs, UdpSocket};

use crate::config::KcpConfig;
use crate::driver::Driver;
use crate::endpoint::SocketSet;
use crate::stats::SocketStats;
use crate::stream::KcpStream;

/// Opens client sessions that share one UDP socket and one driver task, each with its own
/// conversation id (kcp-go's `NewConn3` over a shared `net.PacketConn`).
///
/// [`KcpStream::connect`] gives every session a socket of its own, as kcp-go's `Dial` does;
/// an application that opens many sessions (a tunnel, a load generator) saves a socket, a
/// driver task and its wake-ups per session this way, and the datagrams of many sessions
/// leave in one `sendmmsg`. The peer tells the sessions apart by conversation id; a peer
/// that admits new sessions per source address (kcp-core's half-open limits) sees them all
/// come from one address. Sessions peers open towards this socket are refused; a
/// [`KcpEndpoint`](crate::KcpEndpoint) dials and accepts on one socket.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use kcp_tokio::{KcpConfig, KcpConnector};
/// use tokio::io::AsyncWriteExt;
///
/// let connector = KcpConnector::bind("0.0.0.0:0", KcpConfig::default()).await?;
/// let mut a = connector.connect("127.0.0.1:4000").await?;
/// let mut b = connector.connect("127.0.0.1:4000").await?;
/// a.write_all(b"one").await?;
/// b.write_all(b"two").await?;
/// # Ok(()) }
/// ```
pub struct KcpConnector {
    sockets: SocketSet,
}

impl std::fmt::Debug for KcpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpConnector")
            .field("local", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl KcpConnector {
    /// Binds a UDP socket at `local` (port 0 for an ephemeral one) for client sessions.
    pub async fn bind(local: impl ToSocketAddrs, config: KcpConfig) -> io::Result<KcpConnector> {
        let socket = UdpSocket::bind(local).await?;
        KcpConnector::from_socket(socket, config)
    }

    /// Client sessions over an existing socket.
    pub fn from_socket(socket: UdpSocket, config: KcpConfig) -> io::Result<KcpConnector> {
        Ok(KcpConnector {
            sockets: SocketSet::open(socket, config, false)?,
        })
    }

    /// Opens a session to `addr` with a random conversation id. No packet is sent until the
    /// first write: KCP has no handshake.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<KcpStream> {
        self.sockets.connect(addr).await
    }

    /// Opens a session to `addr` with conversation id `conv`; `AddrInUse` if a session of
    /// this socket to `addr` has it already.
    pub fn connect_with_conv(&self, addr: SocketAddr, conv: u32) -> io::Result<KcpStream> {
        self.sockets.dial(addr, conv, false)
    }

    /// Waits until the sessions of every dropped stream of this connector have delivered
    /// what was written (acknowledged by the peer) or given up after
    /// [`KcpConfig::linger`](crate::KcpConfig::linger), as quinn's `Endpoint::wait_idle`. A
    /// dropped stream's session lingers in the socket's driver task, which dies with the
    /// runtime: a program that writes, drops its streams and returns from `main` loses
    /// what is still in flight unless it waits here first. Streams still held are not waited
    /// for. Resolves at once if nothing lingers, and when the socket failed.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use kcp_tokio::{KcpConfig, KcpConnector};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let connector = KcpConnector::bind("0.0.0.0:0", KcpConfig::default()).await?;
    /// let mut s = connector.connect("127.0.0.1:4000").await?;
    /// s.write_all(&[7u8; 1 << 20]).await?;
    /// drop(s); // lingers until delivered
    /// connector.wait_idle().await; // now the process may exit
    /// # Ok(()) }
    /// ```
    pub async fn wait_idle(&self) {
        self.sockets.wait_idle().await
    }

    pub(crate) fn driver(&self) -> &Driver {
        self.sockets.driver()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.sockets.local_addr()
    }

    /// Sessions open on the socket.
    pub fn sessions(&self) -> usize {
        self.sockets.sessions_per_socket().iter().sum()
    }

    /// kcp-go's SNMP counters of the socket's sessions.
    pub fn stats(&self) -> kcp_core::endpoint::EndpointStats {
        self.sockets.stats()
    }

    /// The socket driver's counters (system calls, backlog, drops).
    pub fn socket_stats(&self) -> SocketStats {
        self.sockets.socket_stats()
    }

    /// Sets the socket buffers at run time (kcptun's `--sockbuf`).
    pub fn set_sockbuf(&self, bytes: usize) -> io::Result<()> {
        self.sockets.set_sockbuf(bytes)
    }
}
