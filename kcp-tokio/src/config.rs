//! Configuration of streams and listeners: the shared stack settings of
//! [`kcp_mio::KcpConfig`] (engine, FEC, encryption, lifecycle, admission, socket options)
//! plus what only an async adapter has (per-operation timeouts).

use std::fmt;
use std::time::Duration;

use kcp_core::endpoint::EndpointConfig;
use kcp_core::{Config, Layer};
use kcp_mio::stack::{AdapterCrypt, CryptPlacement};
use socket2::SockRef;

/// Settings for a [`KcpStream`](crate::KcpStream) or [`KcpListener`](crate::KcpListener):
/// the engine's knobs ([`Config`], with kcptun's presets), the codec layers, lifecycle and
/// admission limits (all from the stack shared with kcp-mio, [`kcp_mio::KcpConfig`]), and
/// read and write timeouts.
///
/// ```
/// use kcp_tokio::KcpConfig;
/// use kcp_core::Config;
///
/// let cfg = KcpConfig::new(Config::fast3().with_windows(1024, 1024)).fec(10, 3).idle_timeout(None);
/// ```
#[derive(Clone)]
pub struct KcpConfig {
    pub(crate) stack: kcp_mio::KcpConfig,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    /// Where the driver's millisecond clock starts (tests of the 2^32 ms wrap).
    pub(crate) clock_offset_ms: u64,
}

impl fmt::Debug for KcpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KcpConfig")
            .field("stack", &self.stack)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for KcpConfig {
    /// kcptun's default mode (`fast`), stream mode, no FEC, no encryption.
    fn default() -> Self {
        KcpConfig::new(Config::fast())
    }
}

impl From<kcp_mio::KcpConfig> for KcpConfig {
    /// The Tokio settings around a shared stack configuration (no timeouts).
    fn from(stack: kcp_mio::KcpConfig) -> Self {
        KcpConfig {
            stack,
            read_timeout: None,
            write_timeout: None,
            clock_offset_ms: 0,
        }
    }
}

impl KcpConfig {
    /// Settings around an engine configuration (see [`Config`]'s presets and
    /// [`kcp_mio::KcpConfig::new`] for the defaults).
    pub fn new(engine: Config) -> Self {
        KcpConfig::from(kcp_mio::KcpConfig::new(engine))
    }

    /// The shared stack settings.
    pub fn stack(&self) -> &kcp_mio::KcpConfig {
        &self.stack
    }

    /// Changes the shared stack settings through `f` (for the settings that have no
    /// shortcut here: closed-conversation linger, payload pool, send backlog...).
    pub fn with_stack(mut self, f: impl FnOnce(kcp_mio::KcpConfig) -> kcp_mio::KcpConfig) -> Self {
        self.stack = f(self.stack);
        self
    }

    /// The engine configuration.
    pub fn engine(&self) -> &Config {
        self.stack.engine()
    }

    /// Replaces the engine configuration.
    pub fn with_engine(self, engine: Config) -> Self {
        self.with_stack(|s| s.with_engine(engine))
    }

    /// Reed-Solomon FEC, kcp-go compatible: `ds` data and `ps` parity datagrams per group
    /// (kcptun's `--datashard`/`--parityshard`; 0 for either turns it off).
    pub fn fec(self, ds: usize, ps: usize) -> Self {
        self.with_stack(|s| s.fec(ds, ps))
    }

    /// kcp-go packet encryption as kcptun sets it up: `--crypt name --key key` (see
    /// [`kcp_mio::KcpConfig::crypt`]). The key is derived once (PBKDF2, a few ms); the socket's
    /// driver seals and opens datagrams outside the lock streams take, with the key schedule
    /// shared by every session. Unknown names are refused.
    pub fn crypt(mut self, name: &str, key: &str) -> std::io::Result<Self> {
        self.stack = self.stack.crypt(name, key)?;
        Ok(self)
    }

    /// Custom codec layers, between FEC and encryption (innermost first). Each session gets
    /// its own instances from `factory`; without encryption, `demux` of them (counted from
    /// the outside) are opened by the socket's endpoint before demultiplexing.
    pub fn layers(
        self,
        factory: impl Fn() -> Vec<Layer> + Send + Sync + 'static,
        demux: usize,
    ) -> Self {
        self.with_stack(|s| s.layers(factory, demux))
    }

    /// Close a session after this long without hearing from the peer (`None`: never). KCP
    /// has no close handshake; this is how a vanished peer is noticed. Default 60 s.
    pub fn idle_timeout(self, t: Option<Duration>) -> Self {
        self.with_stack(|s| s.idle_timeout(t))
    }

    /// Accepted sessions waiting for `accept` (default 128, as kcp-go).
    pub fn backlog(self, n: usize) -> Self {
        self.with_stack(|s| s.backlog(n))
    }

    /// Most sessions per socket.
    pub fn max_sessions(self, n: usize) -> Self {
        self.with_stack(|s| s.max_sessions(n))
    }

    /// Admission of sessions peers open (see [`kcp_mio::KcpConfig::half_open`]).
    pub fn half_open(self, timeout: Duration, max: usize, per_host: usize) -> Self {
        self.with_stack(|s| s.half_open(timeout, max, per_host))
    }

    /// Close a session a peer opened if it is not accepted after this long (`None`: wait for
    /// ever; default 10 s).
    pub fn accept_timeout(self, t: Option<Duration>) -> Self {
        self.with_stack(|s| s.accept_timeout(t))
    }

    /// How long `shutdown` waits for everything written to be acknowledged before it fails
    /// with `TimedOut` (default 10 s).
    pub fn shutdown_timeout(self, t: Duration) -> Self {
        self.with_stack(|s| s.shutdown_timeout(t))
    }

    /// How long a dropped stream keeps its session to deliver what was written (like
    /// `SO_LINGER` on a TCP socket): the session ends once everything is acknowledged, or
    /// after this time with the rest discarded. `Duration::ZERO` discards at once, as
    /// [`KcpStream::abort`](crate::KcpStream::abort) does. Default: the
    /// [`shutdown_timeout`](Self::shutdown_timeout). The socket of a connected stream stays
    /// open (its driver runs) until the session ends.
    pub fn linger(self, t: Duration) -> Self {
        self.with_stack(|s| s.linger(t))
    }

    /// Starts the driver's millisecond clock at `ms` (tests of the 2^32 ms wrap).
    #[cfg(test)]
    pub(crate) fn clock_offset(mut self, ms: u64) -> Self {
        self.clock_offset_ms = ms;
        self
    }

    /// The linger of dropped streams in ms (`None`: discard at once).
    pub(crate) fn linger_ms(&self) -> Option<u32> {
        let t = self.stack.get_linger();
        (!t.is_zero()).then(|| t.as_millis().min(u32::MAX as u128) as u32)
    }

    /// `shutdown`'s bound in ms.
    pub(crate) fn shutdown_ms(&self) -> u32 {
        self.stack
            .get_shutdown_timeout()
            .as_millis()
            .min(u32::MAX as u128) as u32
    }

    /// Default read timeout of streams made with this configuration (see
    /// [`KcpStream::set_read_timeout`](crate::KcpStream::set_read_timeout)).
    pub fn read_timeout(mut self, t: Option<Duration>) -> Self {
        self.read_timeout = t;
        self
    }

    /// Default write timeout of streams made with this configuration.
    pub fn write_timeout(mut self, t: Option<Duration>) -> Self {
        self.write_timeout = t;
        self
    }

    /// Socket send and receive buffer size in bytes (kcptun's `--sockbuf`, default 4 MiB;
    /// `None` keeps the system default). The kernel may cap it (`net.core.rmem_max`).
    pub fn sockbuf(self, bytes: Option<usize>) -> Self {
        self.with_stack(|s| s.sockbuf(bytes))
    }

    /// DSCP code point for outgoing datagrams (kcptun's `--dscp`; IPv4 TOS = dscp << 2, IPv6
    /// traffic class likewise).
    pub fn dscp(self, dscp: Option<u8>) -> Self {
        self.with_stack(|s| s.dscp(dscp))
    }

    /// Checks the engine settings and that the codec layers can be built.
    pub(crate) fn check(&self) -> std::io::Result<()> {
        self.stack.check()
    }

    /// Applies socket options to a socket this configuration will drive.
    pub(crate) fn apply_socket(&self, socket: &tokio::net::UdpSocket) -> std::io::Result<()> {
        self.stack.apply_socket(SockRef::from(socket))
    }

    /// The endpoint's settings, with encryption left to the driver (sessions reserve the
    /// header; the returned maker builds the driver's sealing and opening layers).
    pub(crate) fn endpoint_config(
        &self,
        accept: bool,
    ) -> std::io::Result<(EndpointConfig, Option<AdapterCrypt>)> {
        self.stack
            .endpoint_config_with(accept, CryptPlacement::Adapter)
    }
}

/// Sets both socket buffers (the kernel may cap them at `net.core.rmem_max`/`wmem_max`).
pub(crate) fn set_sockbuf(socket: &tokio::net::UdpSocket, bytes: usize) -> std::io::Result<()> {
    kcp_mio::stack::set_sockbuf(SockRef::from(socket), bytes)
}

/// Sets the DSCP code point (IPv4 TOS or IPv6 traffic class = dscp << 2).
pub(crate) fn set_dscp(socket: &tokio::net::UdpSocket, dscp: u8) -> std::io::Result<()> {
    kcp_mio::stack::set_dscp(SockRef::from(socket), dscp)
}
