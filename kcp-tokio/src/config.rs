//! Configuration of streams and listeners.

use std::fmt;
use std::time::Duration;

use kcp_core::endpoint::{EndpointConfig, LayerFactory};
use kcp_core::{Config, Layer};

/// Settings for a [`KcpStream`](crate::KcpStream) or [`KcpListener`](crate::KcpListener):
/// the engine's knobs ([`Config`], with kcptun's presets), the codec layers, and lifecycle.
///
/// ```
/// use kcp_tokio::KcpConfig;
/// use kcp_core::Config;
///
/// let cfg = KcpConfig::new(Config::fast3().with_windows(1024, 1024)).fec(10, 3).idle_timeout(None);
/// ```
pub struct KcpConfig {
    pub(crate) engine: Config,
    pub(crate) fec: Option<(usize, usize)>,
    pub(crate) layers: Option<std::sync::Arc<dyn Fn() -> Vec<Layer> + Send + Sync>>,
    pub(crate) demux_layers: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) backlog: usize,
    pub(crate) max_sessions: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) sockbuf: Option<usize>,
    pub(crate) dscp: Option<u8>,
    pub(crate) crypt: Option<(kcp_crypto::CipherKind, kcp_crypto::Pass)>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) linger: Option<Duration>,
    /// Where the driver's millisecond clock starts (tests of the 2^32 ms wrap).
    pub(crate) clock_offset_ms: u64,
}

impl Clone for KcpConfig {
    fn clone(&self) -> Self {
        KcpConfig {
            engine: self.engine,
            fec: self.fec,
            layers: self.layers.clone(),
            demux_layers: self.demux_layers,
            idle_timeout: self.idle_timeout,
            backlog: self.backlog,
            max_sessions: self.max_sessions,
            shutdown_timeout: self.shutdown_timeout,
            sockbuf: self.sockbuf,
            dscp: self.dscp,
            crypt: self.crypt.clone(),
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            linger: self.linger,
            clock_offset_ms: self.clock_offset_ms,
        }
    }
}

impl fmt::Debug for KcpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KcpConfig")
            .field("engine", &self.engine)
            .field("fec", &self.fec)
            .field("custom_layers", &self.layers.is_some())
            .field("idle_timeout", &self.idle_timeout)
            .field("backlog", &self.backlog)
            .finish_non_exhaustive()
    }
}

impl Default for KcpConfig {
    /// kcptun's default mode (`fast`), stream mode, no FEC, no encryption.
    fn default() -> Self {
        KcpConfig::new(Config::fast())
    }
}

impl KcpConfig {
    /// Settings around an engine configuration (see [`Config`]'s presets).
    pub fn new(engine: Config) -> Self {
        KcpConfig {
            engine,
            fec: None,
            layers: None,
            demux_layers: 0,
            idle_timeout: Some(Duration::from_secs(60)),
            backlog: 128,
            max_sessions: 65_536,
            shutdown_timeout: Duration::from_secs(10),
            sockbuf: Some(4 << 20),
            dscp: None,
            crypt: None,
            read_timeout: None,
            write_timeout: None,
            linger: None,
            clock_offset_ms: 0,
        }
    }

    /// The engine configuration.
    pub fn engine(&self) -> &Config {
        &self.engine
    }

    /// Replaces the engine configuration.
    pub fn with_engine(mut self, engine: Config) -> Self {
        self.engine = engine;
        self
    }

    /// Reed-Solomon FEC, kcp-go compatible: `ds` data and `ps` parity datagrams per group
    /// (kcptun's `--datashard`/`--parityshard`; 0/0 turns it off).
    pub fn fec(mut self, ds: usize, ps: usize) -> Self {
        self.fec = (ds > 0 && ps > 0).then_some((ds, ps));
        self
    }

    /// kcp-go packet encryption as kcptun sets it up: `--crypt name --key key` (`aes`,
    /// `aes-128`, `aes-192`, `salsa20`, `blowfish`, `twofish`, `cast5`, `3des`, `tea`, `xtea`,
    /// `xor`, `sm4`, `none`, `null`). The key is derived once (PBKDF2, a few ms); each session
    /// gets its own cipher and nonce generator, seeded from the OS. Unknown names are refused.
    pub fn crypt(mut self, name: &str, key: &str) -> std::io::Result<Self> {
        let kind = kcp_crypto::CipherKind::from_name(name).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("--crypt {name}: {e}"),
            )
        })?;
        self.crypt = (kind != kcp_crypto::CipherKind::Null)
            .then(|| (kind, kcp_crypto::Pass::derive(key.as_bytes())));
        Ok(self)
    }

    /// Custom outer codec layers (for example encryption), outermost last. Each session gets
    /// its own instances from `factory`; `demux` of them (counted from the outside) are
    /// opened by the socket's endpoint before demultiplexing (1 for a crypto layer).
    pub fn layers(
        mut self,
        factory: impl Fn() -> Vec<Layer> + Send + Sync + 'static,
        demux: usize,
    ) -> Self {
        self.layers = Some(std::sync::Arc::new(factory));
        self.demux_layers = demux;
        self
    }

    /// Close a session after this long without hearing from the peer (`None`: never). KCP
    /// has no close handshake; this is how a vanished peer is noticed. Default 60 s.
    pub fn idle_timeout(mut self, t: Option<Duration>) -> Self {
        self.idle_timeout = t;
        self
    }

    /// Accepted sessions waiting for `accept` (default 128, as kcp-go).
    pub fn backlog(mut self, n: usize) -> Self {
        self.backlog = n;
        self
    }

    /// Most sessions per socket.
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// How long `shutdown` waits for everything written to be acknowledged before it fails
    /// with `TimedOut` (default 10 s).
    pub fn shutdown_timeout(mut self, t: Duration) -> Self {
        self.shutdown_timeout = t;
        self
    }

    /// How long a dropped stream keeps its session to deliver what was written (like
    /// `SO_LINGER` on a TCP socket): the session ends once everything is acknowledged, or
    /// after this time with the rest discarded. `Duration::ZERO` discards at once, as
    /// [`KcpStream::abort`](crate::KcpStream::abort) does. Default: the
    /// [`shutdown_timeout`](Self::shutdown_timeout). The socket of a connected stream stays
    /// open (its driver runs) until the session ends.
    pub fn linger(mut self, t: Duration) -> Self {
        self.linger = Some(t);
        self
    }

    /// Starts the driver's millisecond clock at `ms` (tests of the 2^32 ms wrap).
    #[cfg(test)]
    pub(crate) fn clock_offset(mut self, ms: u64) -> Self {
        self.clock_offset_ms = ms;
        self
    }

    /// The linger of dropped streams in ms (`None`: discard at once).
    pub(crate) fn linger_ms(&self) -> Option<u32> {
        let t = self.linger.unwrap_or(self.shutdown_timeout);
        (!t.is_zero()).then(|| t.as_millis().min(u32::MAX as u128) as u32)
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
    pub fn sockbuf(mut self, bytes: Option<usize>) -> Self {
        self.sockbuf = bytes;
        self
    }

    /// DSCP code point for outgoing datagrams (kcptun's `--dscp`; IPv4 TOS = dscp << 2, IPv6
    /// traffic class likewise).
    pub fn dscp(mut self, dscp: Option<u8>) -> Self {
        self.dscp = dscp;
        self
    }

    /// Applies socket options to a socket this configuration will drive.
    pub(crate) fn apply_socket(&self, socket: &tokio::net::UdpSocket) -> std::io::Result<()> {
        if let Some(b) = self.sockbuf {
            set_sockbuf(socket, b)?;
        }
        if let Some(d) = self.dscp {
            set_dscp(socket, d)?;
        }
        Ok(())
    }
}

/// Sets both socket buffers (the kernel may cap them at `net.core.rmem_max`/`wmem_max`).
pub(crate) fn set_sockbuf(socket: &tokio::net::UdpSocket, bytes: usize) -> std::io::Result<()> {
    let s = socket2::SockRef::from(socket);
    s.set_recv_buffer_size(bytes)?;
    s.set_send_buffer_size(bytes)
}

/// Sets the DSCP code point (IPv4 TOS or IPv6 traffic class = dscp << 2).
pub(crate) fn set_dscp(socket: &tokio::net::UdpSocket, dscp: u8) -> std::io::Result<()> {
    if dscp > 63 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "DSCP is 0..=63",
        ));
    }
    let s = socket2::SockRef::from(socket);
    let tos = u32::from(dscp) << 2;
    match socket.local_addr()? {
        std::net::SocketAddr::V4(_) => s.set_tos_v4(tos),
        std::net::SocketAddr::V6(_) => set_tclass_v6(&s, tos),
    }
}

#[cfg(any(
    target_os = "android",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "linux",
    target_os = "macos",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "illumos",
))]
fn set_tclass_v6(s: &socket2::SockRef<'_>, tclass: u32) -> std::io::Result<()> {
    s.set_tclass_v6(tclass)
}

/// socket2 has no `IPV6_TCLASS` setter here (Windows among others).
#[cfg(not(any(
    target_os = "android",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "linux",
    target_os = "macos",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "illumos",
)))]
fn set_tclass_v6(_: &socket2::SockRef<'_>, _: u32) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "DSCP on IPv6 sockets is not supported on this system",
    ))
}

/// Stands in for kcp-go's packet encryption in every session's codec stack: it reserves the
/// crypto header (nonce and CRC) in front of each datagram but leaves sealing and opening to
/// the socket's driver, which does both outside the lock that streams take (see
/// `driver.rs`). Datagrams reach the endpoint already decrypted and checked.
struct DeferredCrypt {
    header: usize,
}

impl kcp_core::Codec for DeferredCrypt {
    fn header_len(&self) -> usize {
        self.header
    }

    fn seal(
        &mut self,
        buf: &mut [u8],
        len: usize,
        _now: kcp_core::Millis,
    ) -> Result<usize, kcp_core::CodecError> {
        if len > buf.len() || len < self.header {
            return Err(kcp_core::CodecError::BufferTooSmall);
        }
        Ok(len)
    }

    fn open(
        &mut self,
        buf: &mut [u8],
        _now: kcp_core::Millis,
    ) -> Result<Option<std::ops::Range<usize>>, kcp_core::CodecError> {
        if buf.len() < self.header {
            return Err(kcp_core::CodecError::Truncated);
        }
        Ok(Some(self.header..buf.len()))
    }
}

impl KcpConfig {
    /// The packet encryption the driver applies (the sessions' stacks only reserve room for
    /// it); `None` without encryption. Each call seeds a new nonce generator from the OS.
    pub(crate) fn packet_crypt(&self) -> Option<kcp_crypto::PacketCrypt> {
        let (kind, pass) = self.crypt.as_ref()?;
        // The OS random source does not fail on the systems we run on; if it did, this
        // panics rather than send predictable nonces.
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let cipher = kcp_crypto::BlockCrypt::from_pass(*kind, pass);
        Some(kcp_crypto::PacketCrypt::new(cipher, &mut rng))
    }

    pub(crate) fn endpoint_config(&self, accept: bool) -> EndpointConfig {
        let fec = self.fec;
        let custom = self.layers.clone();
        let crypt = self.crypt.clone();
        let factory: LayerFactory = Box::new(move || {
            let mut v: Vec<Layer> = Vec::new();
            match fec {
                Some((ds, ps)) => {
                    if let Ok(f) = kcp_fec::Fec::new(ds, ps) {
                        v.push(Box::new(f));
                    }
                }
                // Like kcp-go with FEC off: decode a peer that sends FEC, send plain KCP.
                None => {
                    if let Ok(f) = kcp_fec::Fec::receive_only(Default::default()) {
                        v.push(Box::new(f));
                    }
                }
            }
            if let Some(c) = &custom {
                v.extend(c());
            }
            if let Some((kind, _)) = &crypt {
                // Sealed and opened by the driver, outside the state lock.
                v.push(Box::new(DeferredCrypt {
                    header: kind.header_len(),
                }));
            }
            v
        });
        let demux = if self.crypt.is_some() {
            1
        } else {
            self.demux_layers
        };
        EndpointConfig {
            session: self.engine,
            layers: factory,
            demux_layers: demux,
            accept,
            backlog: self.backlog,
            max_sessions: self.max_sessions,
            idle_timeout_ms: self
                .idle_timeout
                .map(|d| d.as_millis().min(u32::MAX as u128) as u32),
            closed_linger_ms: 10_000,
            ..EndpointConfig::new(self.engine)
        }
    }
}
