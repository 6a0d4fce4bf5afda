//! `KcpListener`: accepts sessions that peers open on one UDP socket.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use kcp_core::endpoint::Endpoint;
use tokio::net::{ToSocketAddrs, UdpSocket};

use crate::config::KcpConfig;
use crate::driver::Driver;
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
    driver: Arc<Driver>,
    config: KcpConfig,
}

impl std::fmt::Debug for KcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpListener")
            .field("local", &self.driver.local_addr())
            .finish_non_exhaustive()
    }
}

impl KcpListener {
    /// Binds a UDP socket at `addr` and listens on it.
    pub async fn bind(addr: impl ToSocketAddrs, config: KcpConfig) -> io::Result<KcpListener> {
        let socket = UdpSocket::bind(addr).await?;
        KcpListener::from_socket(socket, config)
    }

    /// Listens on an existing socket (kcp-go's `ServeConn`).
    pub fn from_socket(socket: UdpSocket, config: KcpConfig) -> io::Result<KcpListener> {
        crate::check_layers(&config)?;
        config.apply_socket(&socket)?;
        let ep = Endpoint::new(config.endpoint_config(true))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let driver = Driver::spawn(socket, ep)?;
        Ok(KcpListener { driver, config })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.driver.local_addr()
    }

    /// The next session a peer opened.
    pub async fn accept(&self) -> io::Result<(KcpStream, SocketAddr)> {
        let id = poll_fn(|cx| {
            let mut s = self.driver.lock();
            if let Some(k) = s.stopped {
                return Poll::Ready(Err(io::Error::new(k, "socket driver stopped")));
            }
            match s.ep.accept() {
                Some(id) => Poll::Ready(Ok(id)),
                None => {
                    s.accept_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await?;
        let peer = self
            .driver
            .lock()
            .ep
            .remote(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "session ended"))?;
        Ok((
            KcpStream::from_parts(self.driver.clone(), id, &self.config),
            peer,
        ))
    }

    /// kcp-go's SNMP counters for this socket.
    pub fn stats(&self) -> kcp_core::endpoint::EndpointStats {
        self.driver.lock().ep.stats()
    }
}
