//! `KcpEndpoint`: one UDP socket that both accepts sessions and dials them (peer-to-peer,
//! hole punching), and the socket set behind it that [`KcpListener`](crate::KcpListener) and
//! [`KcpConnector`](crate::KcpConnector) are faces of.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use kcp_core::endpoint::{EndpointError, SessionId};
use tokio::net::{ToSocketAddrs, UdpSocket};

use crate::config::KcpConfig;
use crate::driver::{millis, waiter_key, Driver, Sess, Shared};
use crate::error::KcpError;
use crate::stats::SocketStats;
use crate::stream::KcpStream;

/// The sockets (each with its driver task) and the configuration behind a listener, a
/// connector or an endpoint: accepting, dialing, waiting until idle and the counters are
/// written once, here.
pub(crate) struct SocketSet {
    pub(crate) drivers: Vec<Arc<Driver>>,
    config: KcpConfig,
    /// The waiter key of `poll_accept` callers (one per face, as a poll method keeps only
    /// the last task's waker).
    poll_key: u64,
}

impl SocketSet {
    /// One socket; `accept`: whether peers may open sessions on it.
    pub(crate) fn open(socket: UdpSocket, config: KcpConfig, accept: bool) -> io::Result<Self> {
        let driver = Driver::open(socket, &config, accept)?;
        Ok(SocketSet::of(vec![driver], config))
    }

    /// Sockets already driven (a listener's `SO_REUSEPORT` group).
    pub(crate) fn of(drivers: Vec<Arc<Driver>>, config: KcpConfig) -> Self {
        SocketSet {
            drivers,
            config,
            poll_key: waiter_key(),
        }
    }

    /// The first socket's driver (the one that dials, and whose descriptor `AsFd` gives).
    pub(crate) fn driver(&self) -> &Driver {
        &self.drivers[0]
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.drivers[0].local_addr()
    }

    pub(crate) async fn accept(&self) -> io::Result<(KcpStream, SocketAddr)> {
        let key = waiter_key();
        let _guard = AcceptGuard {
            drivers: &self.drivers,
            key,
        };
        poll_fn(|cx| self.poll_accept_as(cx, key)).await
    }

    pub(crate) fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(KcpStream, SocketAddr)>> {
        self.poll_accept_as(cx, self.poll_key)
    }

    fn poll_accept_as(
        &self,
        cx: &mut Context<'_>,
        key: u64,
    ) -> Poll<io::Result<(KcpStream, SocketAddr)>> {
        for driver in &self.drivers {
            let mut s = driver.lock();
            while let Some(id) = s.ready.pop_front().or_else(|| s.ep.accept()) {
                let Some(peer) = s.ep.remote(id) else {
                    continue;
                };
                s.sessions.insert(id, Sess::default());
                s.acceptors.remove(key);
                // Accepting makes room in the backlog, where peers that answered while it
                // was full get their sessions at once: their first output is due now.
                let due = s.timer_moved_earlier(driver.now_ms());
                drop(s);
                if due {
                    driver.transmit();
                }
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

    pub(crate) async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<KcpStream> {
        let addr = tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        // A random id that another session of this socket to the same peer already uses is
        // drawn again (never taken over, unlike an id the application chose).
        for _ in 0..16 {
            match self.dial(addr, kcp_mio::stack::random_conv()?, false) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                r => return r,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free conversation id",
        ))
    }

    /// Opens a session to `addr` with `conv` on the first socket. `claim`: a session the
    /// peer opened with the same conv that waits for `accept` becomes this dial's.
    pub(crate) fn dial(&self, addr: SocketAddr, conv: u32, claim: bool) -> io::Result<KcpStream> {
        let driver = &self.drivers[0];
        let id = {
            let now = driver.now_ms();
            let mut s = driver.lock();
            if let Some(k) = s.stopped {
                return Err(io::Error::new(k, "socket driver stopped"));
            }
            let id = match s.ep.connect(millis(now), addr, conv) {
                Ok(id) => id,
                Err(EndpointError::Duplicate) => {
                    match claim.then(|| take_incoming(&mut s, addr, conv)) {
                        Some(Some(id)) => id,
                        _ => {
                            return Err(io::Error::new(
                                io::ErrorKind::AddrInUse,
                                EndpointError::Duplicate.to_string(),
                            ))
                        }
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
            };
            s.sessions.insert(id, Sess::default());
            id
        };
        kcp_mio::diag::session_opened(id, addr, false);
        driver.poke();
        Ok(KcpStream::from_parts(
            driver.clone(),
            id,
            &self.config,
            false,
        ))
    }

    pub(crate) async fn wait_idle(&self) {
        for d in &self.drivers {
            d.wait_idle().await;
        }
    }

    pub(crate) fn sessions_per_socket(&self) -> Vec<usize> {
        self.drivers.iter().map(|d| d.lock().ep.len()).collect()
    }

    pub(crate) fn socket_stats(&self) -> SocketStats {
        let mut t = SocketStats::default();
        for d in &self.drivers {
            t.merge(&d.socket_stats());
        }
        t
    }

    pub(crate) fn stats(&self) -> kcp_core::endpoint::EndpointStats {
        self.merged(Shared::stats)
    }

    pub(crate) fn own_stats(&self) -> kcp_core::endpoint::EndpointStats {
        self.merged(Shared::own_stats)
    }

    /// One reading per socket, under its lock, merged as for sockets sharing a port.
    fn merged(
        &self,
        read: impl Fn(&Shared) -> kcp_core::endpoint::EndpointStats,
    ) -> kcp_core::endpoint::EndpointStats {
        let mut all = self.drivers.iter().map(|d| read(&d.lock()));
        let first = all.next().unwrap_or_default();
        all.fold(first, |acc, s| acc.merged(&s))
    }

    pub(crate) fn set_sockbuf(&self, bytes: usize) -> io::Result<()> {
        self.drivers
            .iter()
            .try_for_each(|d| d.with_socket(|s| crate::config::set_sockbuf(s, bytes)))
    }

    pub(crate) fn set_dscp(&self, dscp: u8) -> io::Result<()> {
        self.drivers
            .iter()
            .try_for_each(|d| d.with_socket(|s| crate::config::set_dscp(s, dscp)))
    }
}

/// The session `(addr, conv)` that a peer opened and that waits for `accept`, taken out of
/// the accept queue; `None` when a stream has it already (or it lingers after its stream).
/// Sessions that arrived before it stay first in line for `accept` (`Shared::ready`); they
/// count as accepted for kcp-core, so its accept timeout no longer closes them (they wait,
/// within the endpoint's session limit, until accepted, ended by their peer's silence, or
/// closed with the endpoint). Costs a walk over the socket's sessions, only when a dial's conv is
/// taken.
fn take_incoming(s: &mut Shared, addr: SocketAddr, conv: u32) -> Option<SessionId> {
    let id = s.ep.sessions().into_iter().find(|&id| {
        s.ep.remote(id) == Some(addr) && s.ep.session(id).map(|x| x.kcp().conv()) == Some(conv)
    })?;
    if s.sessions.contains_key(&id) || s.is_lingering(id) {
        return None;
    }
    if let Some(k) = s.ready.iter().position(|&r| r == id) {
        return s.ready.remove(k);
    }
    // Arrival order: what the endpoint's queue holds before it waits on in `ready`.
    let mut before = Vec::new();
    let mut found = None;
    while let Some(a) = s.ep.accept() {
        if a == id {
            found = Some(a);
            break;
        }
        before.push(a);
    }
    s.ready.extend(before);
    found
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

impl Drop for SocketSet {
    /// Sessions peers open from now on, and those that wait for `accept`, are closed;
    /// streams go on.
    fn drop(&mut self) {
        for d in &self.drivers {
            let mut s = d.lock();
            s.listening = false;
            s.acceptors.remove(self.poll_key);
            if s.ep.config().accept {
                s.refuse_incoming();
            }
        }
    }
}

/// One UDP socket that both accepts sessions peers open and dials sessions to peers: a
/// [`KcpListener`](crate::KcpListener) and a [`KcpConnector`](crate::KcpConnector) in one,
/// for peer-to-peer programs and NAT hole punching, where each peer's one socket (the address
/// its NAT mapped, which the other side learned through a rendezvous) must carry its dials
/// and its peers' both. Sessions of either kind share the socket's driver task; a stream
/// does not know which side opened it.
///
/// **Both sides dial at once.** What a peer dials is told apart by conversation id:
///
/// * With the **same conv** on both sides (agreed through the rendezvous, and dialed with
///   [`connect_with_conv`](Self::connect_with_conv)), a simultaneous open is **one session**
///   on each side, whichever datagram arrives first: if the peer's session reached this
///   socket before the local dial and waits for `accept`, the dial takes it over, and
///   `accept` never returns it. This is the way to punch a hole.
/// * With **different convs** (two [`connect`](Self::connect) calls draw two random ids),
///   each dial is a session of its own: each side has **two sessions** with the other, the
///   one it dialed and the one it accepts (with the peer's conv). Both carry data both ways;
///   nothing merges them.
///
/// Dialing a conv that a session to the same address already has, with a stream (dialed or
/// accepted) on it, fails with `AddrInUse`. A dial sends nothing until the stream's first
/// write (KCP has no handshake): to punch a hole, both sides write at once, so that each NAT
/// sees traffic out before the other's arrives (what it drops first, KCP retransmits).
///
/// ```no_run
/// # async fn demo(peer: std::net::SocketAddr) -> std::io::Result<()> {
/// use kcp_tokio::{KcpConfig, KcpEndpoint};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let ep = KcpEndpoint::bind("0.0.0.0:4000", KcpConfig::default()).await?;
/// // Both peers run this at the same moment with the conv they agreed on.
/// let mut s = ep.connect_with_conv(peer, 0x1234_5678)?;
/// s.write_all(b"hello").await?;
/// let mut buf = [0u8; 5];
/// s.read_exact(&mut buf).await?;
/// // Other peers may still open sessions here.
/// let (_other, _from) = ep.accept().await?;
/// # Ok(()) }
/// ```
pub struct KcpEndpoint {
    pub(crate) sockets: SocketSet,
}

impl std::fmt::Debug for KcpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpEndpoint")
            .field("local", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl KcpEndpoint {
    /// Binds a UDP socket at `addr` (port 0 for an ephemeral one) that accepts and dials.
    /// The address family is the address's, as for
    /// [`KcpListener::bind`](crate::KcpListener::bind).
    pub async fn bind(addr: impl ToSocketAddrs, config: KcpConfig) -> io::Result<KcpEndpoint> {
        let socket = UdpSocket::bind(addr).await?;
        KcpEndpoint::from_socket(socket, config)
    }

    /// Accepts and dials on an existing socket (one a hole-punching rendezvous already used,
    /// say).
    pub fn from_socket(socket: UdpSocket, config: KcpConfig) -> io::Result<KcpEndpoint> {
        Ok(KcpEndpoint {
            sockets: SocketSet::open(socket, config, true)?,
        })
    }

    /// The next session a peer opened, as [`KcpListener::accept`](crate::KcpListener::accept):
    /// safe to call from several tasks at once and cancellation-safe.
    pub async fn accept(&self) -> io::Result<(KcpStream, SocketAddr)> {
        self.sockets.accept().await
    }

    /// Polls for the next session a peer opened, as
    /// [`KcpListener::poll_accept`](crate::KcpListener::poll_accept).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(KcpStream, SocketAddr)>> {
        self.sockets.poll_accept(cx)
    }

    /// Opens a session to `addr` with a random conversation id, as
    /// [`KcpConnector::connect`](crate::KcpConnector::connect). If the peer dials this
    /// endpoint at the same time, the two dials are two sessions (see the type's
    /// documentation); agree on a conv and use [`connect_with_conv`](Self::connect_with_conv)
    /// for one.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<KcpStream> {
        self.sockets.connect(addr).await
    }

    /// Opens a session to `addr` with conversation id `conv`. A session the peer at `addr`
    /// opened with the same conv that waits for `accept` becomes this stream (a simultaneous
    /// open is one session); `AddrInUse` if a stream already has that session.
    pub fn connect_with_conv(&self, addr: SocketAddr, conv: u32) -> io::Result<KcpStream> {
        self.sockets.dial(addr, conv, true)
    }

    /// Waits until the sessions of every dropped stream of this endpoint (dialed or
    /// accepted) have delivered what was written or given up after
    /// [`KcpConfig::linger`](crate::KcpConfig::linger), as
    /// [`KcpConnector::wait_idle`](crate::KcpConnector::wait_idle).
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

    /// Sessions open on the socket, dialed and accepted.
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

    /// Sets the DSCP code point at run time (`SetDSCP`).
    pub fn set_dscp(&self, dscp: u8) -> io::Result<()> {
        self.sockets.set_dscp(dscp)
    }
}
