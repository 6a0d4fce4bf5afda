//! [`KcpConfig`]: everything a kcptun-style command line sets, checked as it is set, and
//! turned into kcp-core's [`EndpointConfig`] (with the socket options applied through
//! [`socket2::SockRef`]).

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcp_core::endpoint::{EndpointConfig, LayerFactory, Migration};
use kcp_core::{Config, Layer};
use kcp_crypto::{CipherKind, Pass};
use socket2::SockRef;

use super::socket::{set_dscp, set_sockbuf};
use super::{
    invalid, AdapterCrypt, CongestionMaker, CryptMode, CryptPlacement, CustomLayers, Stack,
};

/// The timeouts of a [`KcpConfig`], as [`KcpConfig::timeouts`] reads them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Idle timeout: a session that hears nothing for this long ends (`None`: never).
    pub idle: Option<Duration>,
    /// Keepalive interval (`None`: off).
    pub keepalive: Option<Duration>,
    /// How long a graceful close waits for queued data to be acknowledged.
    pub shutdown: Duration,
    /// How long a closed session with unacknowledged data keeps delivering it (the shutdown
    /// timeout unless set).
    pub linger: Duration,
    /// Default read timeout of streams (`None`: wait for ever).
    pub read: Option<Duration>,
    /// Default write timeout of streams (`None`: wait for ever).
    pub write: Option<Duration>,
}

/// Settings of an endpoint and its sessions, shared by kcp-mio and kcp-tokio.
///
/// ```
/// use kcp_mio::KcpConfig;
/// use kcp_core::Config;
///
/// let cfg = KcpConfig::new(Config::fast3().with_windows(1024, 1024))
///     .fec(10, 3)
///     .crypt("aes", "it's a secrect")
///     .unwrap()
///     .idle_timeout(None);
/// let endpoint = cfg.endpoint_config(true).unwrap();
/// assert_eq!(endpoint.demux_layers, 1);
/// ```
#[derive(Clone)]
pub struct KcpConfig {
    pub(super) engine: Config,
    pub(super) fec: Option<(usize, usize)>,
    pub(super) crypt: Option<(CryptMode, Pass)>,
    pub(super) custom: Option<CustomLayers>,
    pub(super) custom_demux: usize,
    pub(super) controller: Option<CongestionMaker>,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) keepalive: Option<Duration>,
    pub(super) backlog: usize,
    pub(super) max_sessions: usize,
    pub(super) shutdown_timeout: Duration,
    pub(super) linger: Option<Duration>,
    pub(super) closed_linger: Duration,
    pub(super) half_open_timeout: Duration,
    pub(super) half_open_min_age: Duration,
    pub(super) max_half_open: usize,
    pub(super) max_half_open_per_host: usize,
    pub(super) half_open_bytes: usize,
    pub(super) half_open_pool_bytes: usize,
    pub(super) max_sessions_per_host: usize,
    pub(super) host_prefixes: (u8, u8),
    pub(super) max_datagram: usize,
    pub(super) replay_record: usize,
    pub(super) migration: bool,
    pub(super) accept_timeout: Option<Duration>,
    pub(super) pool_bytes: usize,
    pub(super) recv_budget: usize,
    pub(super) sockbuf: Option<usize>,
    pub(super) dscp: Option<u8>,
    pub(super) send_backlog: usize,
    pub(super) receive_hold: Option<Duration>,
    pub(super) read_timeout: Option<Duration>,
    pub(super) write_timeout: Option<Duration>,
    /// The shared part of the codec stack, built by the first endpoint made from this
    /// configuration and shared with every later one and every clone (see
    /// [`endpoint_config_with`](Self::endpoint_config_with)); a setting it depends on makes a
    /// new, empty one.
    pub(super) stack: StackCache,
}

/// A configuration's shared stack, once built.
pub(super) type StackCache = Arc<Mutex<Option<Stack>>>;

impl fmt::Debug for KcpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is not printed.
        f.debug_struct("KcpConfig")
            .field("engine", &self.engine)
            .field("fec", &self.fec)
            .field("crypt", &self.crypt_name())
            .field("custom_layers", &self.custom.is_some())
            .field("controller", &self.controller.is_some())
            .field("idle_timeout", &self.idle_timeout)
            .field("keepalive", &self.keepalive)
            .field("migration", &self.migration)
            .field("backlog", &self.backlog)
            .field("max_sessions", &self.max_sessions)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("sockbuf", &self.sockbuf)
            .field("dscp", &self.dscp)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

/// Send and receive window, in segments, of [`KcpConfig::default`]: enough for 5 MB/s and more
/// at 100 ms round trip and 1 % loss (see `docs/tuning.md` for sizing them, and what a busy
/// session holds at each size; an idle session holds nothing for them).
pub const DEFAULT_WINDOW: u32 = 2048;

impl Default for KcpConfig {
    /// kcptun's default mode (`fast`), stream mode, windows of [`DEFAULT_WINDOW`] segments
    /// each way, no FEC, no encryption.
    fn default() -> Self {
        KcpConfig::new(Config::fast().with_windows(DEFAULT_WINDOW, DEFAULT_WINDOW))
    }
}

/// The default receive budget of an endpoint ([`KcpConfig::recv_budget`]): a sixteenth of
/// the machine's physical memory (`MemTotal` in `/proc/meminfo`), at least 16 MiB and at most
/// 1 GiB; 64 MiB where the memory size is unknown (other systems). A 2 GiB machine gets
/// 128 MiB: about 90,000 full-size segments held across all sessions.
pub fn default_recv_budget() -> usize {
    const MIB: usize = 1 << 20;
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib.saturating_mul(1024))
    });
    match total {
        Some(bytes) => (bytes / 16).clamp(16 * MIB, 1024 * MIB),
        None => kcp_core::endpoint::DEFAULT_RECV_BUDGET,
    }
}

/// Milliseconds of a duration, saturated to what the endpoint's `u32` fields hold.
fn ms(d: Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

impl KcpConfig {
    /// Settings around an engine configuration (see [`Config`]'s presets), used as given: the
    /// presets keep kcp-go's windows of 32 segments (about 0.4 MB/s at 100 ms round trip),
    /// so set yours with [`Config::with_windows`] ([`DEFAULT_WINDOW`] in
    /// [`KcpConfig::default`]; `docs/tuning.md` sizes them). Defaults: no FEC,
    /// no encryption, idle timeout 60 s, backlog 128, 65,536 sessions, shutdown linger 10 s,
    /// socket buffers 4 MiB, the endpoint's admission defaults.
    pub fn new(engine: Config) -> Self {
        let ep = EndpointConfig::new(engine);
        KcpConfig {
            engine,
            fec: None,
            crypt: None,
            custom: None,
            custom_demux: 0,
            controller: None,
            idle_timeout: Some(Duration::from_secs(60)),
            keepalive: ep.keepalive_ms.map(|m| Duration::from_millis(u64::from(m))),
            backlog: ep.backlog,
            max_sessions: ep.max_sessions,
            shutdown_timeout: Duration::from_secs(10),
            linger: None,
            closed_linger: Duration::from_millis(u64::from(ep.closed_linger_ms)),
            half_open_timeout: Duration::from_millis(u64::from(ep.half_open_timeout_ms)),
            half_open_min_age: Duration::from_millis(u64::from(ep.half_open_min_age_ms)),
            max_half_open: ep.max_half_open,
            max_half_open_per_host: ep.max_half_open_per_host,
            half_open_bytes: ep.half_open_bytes,
            half_open_pool_bytes: ep.half_open_pool_bytes,
            max_sessions_per_host: ep.max_sessions_per_host,
            host_prefixes: (ep.host_prefix_v4, ep.host_prefix_v6),
            max_datagram: ep.max_datagram,
            replay_record: ep.replay_record,
            migration: ep.migration.is_on(),
            accept_timeout: ep
                .accept_timeout_ms
                .map(|m| Duration::from_millis(u64::from(m))),
            pool_bytes: ep.pool_bytes,
            recv_budget: default_recv_budget(),
            sockbuf: Some(4 << 20),
            dscp: None,
            send_backlog: crate::udp::DEFAULT_BACKLOG,
            receive_hold: None,
            read_timeout: None,
            write_timeout: None,
            stack: StackCache::default(),
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
    /// (kcptun's `--datashard`/`--parityshard`; 0 for either turns it off, as kcp-go). With
    /// FEC off, sessions still decode a peer that sends FEC (kcp-go does the same).
    pub fn fec(mut self, ds: usize, ps: usize) -> Self {
        self.fec = (ds > 0 && ps > 0).then_some((ds, ps));
        self.stack = StackCache::default();
        self
    }

    /// The FEC shards, `None` when off.
    pub fn fec_shards(&self) -> Option<(usize, usize)> {
        self.fec
    }

    /// Packet encryption by name, with the key kcptun derives from `key` (PBKDF2, a few ms,
    /// done once here); each session gets its own cipher state and nonces, seeded from the
    /// OS. Unknown names are refused (kcptun would silently fall back to aes).
    ///
    /// * kcp-go v5.6.1's layout, kcptun's `--crypt`: `aes`, `aes-128`, `aes-192`, `salsa20`,
    ///   `blowfish`, `twofish`, `cast5`, `3des`, `tea`, `xtea`, `xor`, `sm4`, `none`, `null`
    ///   (no layer). Encrypted and checked by a CRC, **not authenticated**.
    /// * Authenticated, upstream kcp-go's AEAD layout (v5.6.49 and later, kcptun's
    ///   `-crypt aes-128-gcm`; **not** v5.6.1): `aes-128-gcm`, `chacha20-poly1305`
    ///   ([`kcp_crypto::AeadCrypt`]).
    /// * Authenticated and replay-protected, this crate's extension (both peers must run
    ///   it): `aes-128-gcm-replay`, `chacha20-poly1305-replay`
    ///   ([`kcp_crypto::ReplayAeadCrypt`]): a replayed datagram is dropped and counted.
    ///
    /// The trade-offs are in the project's `docs/security.md`.
    pub fn crypt(mut self, name: &str, key: &str) -> io::Result<Self> {
        let mode = CryptMode::from_name(name)?;
        self.crypt = (mode != CryptMode::Packet(CipherKind::Null))
            .then(|| (mode, Pass::derive(key.as_bytes())));
        self.stack = StackCache::default();
        Ok(self)
    }

    /// The kcp-go v5.6.1 cipher, `None` without encryption (`null`) or with an authenticated
    /// mode (see [`crypt_name`](Self::crypt_name)).
    pub fn cipher(&self) -> Option<CipherKind> {
        match self.crypt.as_ref()?.0 {
            CryptMode::Packet(k) => Some(k),
            _ => None,
        }
    }

    /// The name of the packet encryption as [`crypt`](Self::crypt) took it, `None` without.
    pub fn crypt_name(&self) -> Option<&'static str> {
        self.crypt.as_ref().map(|c| c.0.name())
    }

    /// Custom codec layers, placed between FEC and encryption (innermost first). Each session
    /// gets its own instances from `factory`. Without encryption, `demux` of them (counted from
    /// the outside) are opened by the endpoint before demultiplexing; with encryption, the
    /// endpoint opens the cipher only and asks the custom layers to
    /// [`route`](kcp_core::Codec::route).
    pub fn layers(
        mut self,
        factory: impl Fn() -> Vec<Layer> + Send + Sync + 'static,
        demux: usize,
    ) -> Self {
        self.custom = Some(Arc::new(factory));
        self.custom_demux = demux;
        self.stack = StackCache::default();
        self
    }

    /// Most bytes of new data per second each session sends (`None`: no limit, the default):
    /// kcp-core's [`Config::rate_limit`], paced at the engine's interval (a token bucket of
    /// one interval's worth), so a backlog leaves evenly. Retransmissions are not counted.
    pub fn rate_limit(mut self, bytes_per_sec: Option<u32>) -> Self {
        self.engine.rate_limit = bytes_per_sec.unwrap_or(0);
        self
    }

    /// Paces every session's new data (kcp-core's [`Config::pacing`]): at the delivery rate
    /// the acknowledgements show, within an in-flight bound, instead of a whole window at
    /// once; one segment until the peer answered. Off by default.
    pub fn pacing(mut self, on: bool) -> Self {
        self.engine.pacing = on;
        self
    }

    /// Every session's congestion controller, built by `make` for each session (kcp-core's
    /// [`Controller`](kcp_core::congestion::Controller) trait): both adapters' sessions run
    /// it instead of the one the engine configuration's `nc` selects. Whatever it decides,
    /// the engine never sends beyond the flow-control windows, so any controller stays
    /// wire-compatible.
    pub fn congestion(
        mut self,
        make: impl Fn() -> Box<dyn kcp_core::congestion::Controller + Send> + Send + Sync + 'static,
    ) -> Self {
        self.controller = Some(Arc::new(make));
        self
    }

    /// Close a session after this long without hearing from the peer (`None`: never). KCP
    /// has no close handshake; this is how a vanished peer is noticed. Default 60 s. A quiet
    /// session whose peer is still there is kept alive by the [`keepalive`](Self::keepalive).
    pub fn idle_timeout(mut self, t: Option<Duration>) -> Self {
        self.idle_timeout = t;
        self
    }

    /// Keepalive interval (default 10 s; `None`: off). When nothing was heard from the peer
    /// for this long, the session asks the peer for its window (a KCP `WASK` segment, 24
    /// bytes plus the codec headers), and asks again every interval while the peer stays
    /// quiet. kcp-go, ikcp.c and this crate answer with their window (`WINS`), and that
    /// answer counts as hearing from the peer: a quiet session does not reach the
    /// [idle timeout](Self::idle_timeout) while its peer is there. It does not keep a dead
    /// peer's session alive: a vanished peer sends no answer, and the idle timeout counts
    /// only what is received. Only one side needs it; no wire change, nothing to negotiate.
    /// Keep it at a third of the idle timeout or less, so a lost probe is retried in time.
    pub fn keepalive(mut self, t: Option<Duration>) -> Self {
        self.keepalive = t;
        self
    }

    /// Sessions peers opened that wait for `accept` (default 128, as kcp-go); more are refused.
    pub fn backlog(mut self, n: usize) -> Self {
        self.backlog = n;
        self
    }

    /// Most sessions per endpoint (socket), accepted and connected.
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// How long a graceful close waits for queued data to be acknowledged (default 10 s).
    pub fn shutdown_timeout(mut self, t: Duration) -> Self {
        self.shutdown_timeout = t;
        self
    }

    /// How long closing a session that still has unacknowledged data keeps delivering it
    /// (dropping a Tokio stream, `Endpoint::close_after_flush` in kcp-mio), like a TCP
    /// socket's linger; then the session ends with the data undelivered. Default: the
    /// shutdown timeout.
    pub fn linger(mut self, t: Duration) -> Self {
        self.linger = Some(t);
        self
    }

    /// How long a closed (address, conversation) is remembered, so its late datagrams do not
    /// open a phantom session (default 10 s).
    pub fn closed_linger(mut self, t: Duration) -> Self {
        self.closed_linger = t;
        self
    }

    /// Admission of sessions peers open: a first flight opens a half-open entry, which
    /// becomes a session when the peer answers the endpoint's window probe; an entry is
    /// dropped after `timeout`, at most `max` exist at once and at most `per_host` per source
    /// host (see [`host_prefixes`](Self::host_prefixes)), plus one per confirmed session
    /// the host's peers opened, up to half of `max`; when full, the oldest is evicted once
    /// it is [`half_open_min_age`](Self::half_open_min_age) old (defaults: the endpoint's,
    /// 5 s, 1024, 64).
    pub fn half_open(mut self, timeout: Duration, max: usize, per_host: usize) -> Self {
        self.half_open_timeout = timeout;
        self.max_half_open = max;
        self.max_half_open_per_host = per_host;
        self
    }

    /// How long a half-open entry waits for its peer's answer (set by
    /// [`half_open`](Self::half_open); default 5 s).
    pub fn half_open_timeout(&self) -> Duration {
        self.half_open_timeout
    }

    /// How old a half-open entry must be before a new first flight may evict it from a full
    /// table; younger entries stay and the new first flight is refused, so a burst of
    /// clients behind one address all get in (default 100 ms; longer for a host whose peers
    /// have been answering slower; see `EndpointConfig::half_open_min_age_ms`).
    pub fn half_open_min_age(mut self, age: Duration) -> Self {
        self.half_open_min_age = age;
        self
    }

    /// Heap bytes one half-open entry may hold in all, the segments it keeps until the peer
    /// confirms included (default 256 KiB; see `EndpointConfig::half_open_bytes`).
    pub fn half_open_bytes(mut self, bytes: usize) -> Self {
        self.half_open_bytes = bytes;
        self
    }

    /// Segment bytes all half-open entries keep together (default 2 MiB; see
    /// `EndpointConfig::half_open_pool_bytes`).
    pub fn half_open_pool_bytes(mut self, bytes: usize) -> Self {
        self.half_open_pool_bytes = bytes;
        self
    }

    /// Most sessions peers opened from one source host at once (default 4096).
    pub fn max_sessions_per_host(mut self, n: usize) -> Self {
        self.max_sessions_per_host = n;
        self
    }

    /// What counts as one source host for the per-host limits: IPv4 addresses masked to `v4`
    /// leading bits, IPv6 to `v6` (defaults 32 and 64).
    pub fn host_prefixes(mut self, v4: u8, v6: u8) -> Self {
        self.host_prefixes = (v4.min(32), v6.min(128));
        self
    }

    /// Datagrams longer than this are dropped before parsing (default 1500, kcp-go's
    /// largest MTU; never below the engine's MTU).
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        self.max_datagram = bytes;
        self
    }

    /// Entries of the endpoint's record of datagrams that opened and confirmed recent
    /// sessions, whose replays are dropped (default 8192, 64 KiB; used with encryption).
    pub fn replay_record(mut self, entries: usize) -> Self {
        self.replay_record = entries;
        self
    }

    /// Session migration (off by default): a live session follows its peer to a new address
    /// (a client behind a NAT that rebinds its port, a phone that changes networks) when a
    /// datagram from there authenticates and is no replay (with the `-replay` modes, the
    /// session's replay window proves it, so even a quiet peer's keepalive moves it; with
    /// the others it must also carry something new to KCP); until the peer answers
    /// there, the session sends there at most three times what it received from there.
    /// Needs a mode that authenticates: an AEAD name, or one of kcp-go's CFB block ciphers
    /// (`aes`, `aes-128`, `aes-192`, `blowfish`, `twofish`, `cast5`, `3des`, `tea`, `xtea`,
    /// `sm4`), whose CRC-32 someone without the key passes with a probability of about 2^-32
    /// per forged datagram; with `salsa20`, `xor`, `none`, `null` or no encryption, building
    /// the endpoint fails. What each mode lets an attacker do is in the project's
    /// `docs/security.md`; the rule itself is `kcp_core::endpoint::EndpointConfig::migration`.
    /// Counted in `EndpointStats::migrations` and `migrations_refused`.
    pub fn migration(mut self, on: bool) -> Self {
        self.migration = on;
        self
    }

    /// Whether session migration is on.
    pub fn get_migration(&self) -> bool {
        self.migration
    }

    /// Whether the packet encryption authenticates datagrams well enough to move a session
    /// on their word: the AEAD modes, and kcp-go's CFB block ciphers (CRC-32 under the
    /// cipher: about 2^-32 per forgery without the key). Not the stream and identity modes,
    /// whose CRC an attacker fixes up with certainty.
    fn authenticates(&self) -> bool {
        match self.crypt.as_ref().map(|c| c.0) {
            Some(CryptMode::Packet(k)) => k.block_size().is_some(),
            Some(CryptMode::Aead(_) | CryptMode::Replay(_)) => true,
            None => false,
        }
    }

    /// kcp-core's migration setting for this configuration: a replay-protected mode's
    /// window proves every datagram it accepts fresh; the other modes need KCP's evidence.
    fn migration_mode(&self) -> Migration {
        match (self.migration, self.crypt.as_ref().map(|c| c.0)) {
            (false, _) => Migration::Off,
            (true, Some(CryptMode::Replay(_))) => Migration::ReplayProtected,
            (true, _) => Migration::Fresh,
        }
    }

    fn check_migration(&self) -> io::Result<()> {
        if self.migration && !self.authenticates() {
            return Err(invalid(format!(
                "session migration needs a crypt mode that authenticates (an AEAD mode or a \
                 CFB block cipher), not {}",
                self.crypt_name().unwrap_or("no encryption")
            )));
        }
        Ok(())
    }

    /// Close a session a peer opened if the application has not accepted it after this long
    /// (`None`: wait for ever; default 10 s).
    pub fn accept_timeout(mut self, t: Option<Duration>) -> Self {
        self.accept_timeout = t;
        self
    }

    /// Bytes of payload buffers the endpoint keeps for reuse (default 4 MiB).
    pub fn pool_bytes(mut self, bytes: usize) -> Self {
        self.pool_bytes = bytes;
        self
    }

    /// Heap bytes all sessions together may hold on the receive side (received data,
    /// out-of-order segments, FEC decoder queues); past it, new out-of-order data is refused
    /// unacknowledged and the peers retransmit it (see kcp-core's
    /// `EndpointConfig::recv_budget_bytes`). Default: [`default_recv_budget`].
    pub fn recv_budget(mut self, bytes: usize) -> Self {
        self.recv_budget = bytes;
        self
    }

    /// Socket send and receive buffer size in bytes (kcptun's `--sockbuf`, default 4 MiB;
    /// `None` keeps the system default). The receive buffer is raised to hold the receive
    /// window when that is larger ([`receive_buffer_bytes`](Self::receive_buffer_bytes)).
    /// The kernel may cap both (`net.core.rmem_max`, `wmem_max`).
    pub fn sockbuf(mut self, bytes: Option<usize>) -> Self {
        self.sockbuf = bytes;
        self
    }

    /// The receive buffer a socket needs to hold a full receive window: the window in
    /// segments times the MTU. [`apply_socket`](Self::apply_socket) asks for at least this
    /// much when a [`sockbuf`](Self::sockbuf) is set.
    pub fn receive_buffer_bytes(&self) -> usize {
        (self.engine.rcv_wnd as usize).saturating_mul(self.engine.mtu as usize)
    }

    /// A warning for a command-line tool to print when the system caps socket receive
    /// buffers below [`receive_buffer_bytes`](Self::receive_buffer_bytes) (Linux:
    /// `net.core.rmem_max`); `None` when the cap allows it, when no `sockbuf` is set, or where
    /// the cap cannot be read.
    pub fn receive_buffer_note(&self) -> Option<String> {
        // Without a `sockbuf` the system's default buffer is kept: nothing was asked for.
        self.sockbuf?;
        let want = self.receive_buffer_bytes();
        let cap = super::socket::receive_buffer_cap()?;
        (cap < want).then(|| {
            format!(
                "a receive window of {} segments of {} bytes needs a {want}-byte socket \
                 receive buffer, and net.core.rmem_max caps it at {cap}: datagrams are lost \
                 whenever the receiver stalls (sysctl -w net.core.rmem_max={want})",
                self.engine.rcv_wnd, self.engine.mtu
            )
        })
    }

    /// DSCP code point for outgoing datagrams (kcptun's `--dscp`; IPv4 TOS = dscp << 2, IPv6
    /// traffic class likewise).
    pub fn dscp(mut self, dscp: Option<u8>) -> Self {
        self.dscp = dscp;
        self
    }

    /// Datagrams kept while the socket's send buffer is full (default
    /// [`udp::DEFAULT_BACKLOG`](crate::udp::DEFAULT_BACKLOG)); beyond, datagrams are dropped
    /// and counted, and KCP retransmits them.
    pub fn send_backlog(mut self, datagrams: usize) -> Self {
        self.send_backlog = datagrams;
        self
    }

    /// A busy server's trade of latency for CPU: after reading what arrived, an async
    /// adapter's driver leaves its socket unwatched for this long and then reads everything
    /// that came meanwhile in one batch, so datagrams arriving every few tens of
    /// microseconds (thousands of sessions) no longer wake its thread one by one. A datagram
    /// that arrives during a hold waits up to the hold longer (timed to the microsecond);
    /// the replies of the sessions a turn wakes leave together. Default `None` (read at
    /// once), which suits clients and servers with few sessions: a lone session would wait
    /// the hold on every exchange. At most 50 ms. Honoured by kcp-tokio on Linux (its socket
    /// is then watched through an epoll set of its own; elsewhere opening the socket fails
    /// with `Unsupported`) and by kcp-mio's [`Endpoint`](crate::Endpoint) everywhere (it
    /// takes its socket out of the poll's read interest for the hold, and its
    /// `poll_timeout` and `handle_timeout` time the hold's end). In both, session timers
    /// falling due during the hold run at its end, late by at most the hold (in kcp-tokio
    /// by at most the hold rounded up to the millisecond). Measured in
    /// `docs/benchmarks.md` ("Receive hold").
    pub fn receive_hold(mut self, hold: Option<Duration>) -> Self {
        self.receive_hold = hold;
        self
    }

    /// The receive hold (see [`receive_hold`](Self::receive_hold)).
    pub fn receive_hold_time(&self) -> Option<Duration> {
        self.receive_hold
    }

    /// The send backlog bound in datagrams (see [`send_backlog`](Self::send_backlog)).
    pub fn send_backlog_limit(&self) -> usize {
        self.send_backlog
    }

    /// Default read timeout of the streams an async adapter makes with this configuration
    /// (kcp-tokio's `KcpStream::set_read_timeout` changes it per stream; `None`, the default,
    /// waits for ever). A read that times out fails with `TimedOut` and the session goes on.
    /// The mio [`Endpoint`](crate::Endpoint) never blocks and ignores it.
    pub fn read_timeout(mut self, t: Option<Duration>) -> Self {
        self.read_timeout = t;
        self
    }

    /// Default write timeout of the streams an async adapter makes with this configuration
    /// (see [`read_timeout`](Self::read_timeout)).
    pub fn write_timeout(mut self, t: Option<Duration>) -> Self {
        self.write_timeout = t;
        self
    }

    /// The timeouts this configuration sets, read back in one value (the builders of the same
    /// names set them: [`idle_timeout`](Self::idle_timeout), [`keepalive`](Self::keepalive),
    /// [`shutdown_timeout`](Self::shutdown_timeout), [`linger`](Self::linger),
    /// [`read_timeout`](Self::read_timeout), [`write_timeout`](Self::write_timeout)).
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            idle: self.idle_timeout,
            keepalive: self.keepalive,
            shutdown: self.shutdown_timeout,
            linger: self.linger.unwrap_or(self.shutdown_timeout),
            read: self.read_timeout,
            write: self.write_timeout,
        }
    }

    /// Checks the engine settings and that the codec layers can be built (kcp-go silently
    /// disables FEC it cannot build; this refuses it).
    pub fn check(&self) -> io::Result<()> {
        self.check_settings()?;
        self.shared_stack().map(|_| ())
    }

    /// What [`check`](Self::check) checks short of building the codec stack.
    fn check_settings(&self) -> io::Result<()> {
        self.engine
            .validate()
            .map_err(|e| invalid(format!("KCP settings: {e}")))?;
        self.check_migration()?;
        if self
            .receive_hold
            .is_some_and(|h| h > Duration::from_millis(50))
        {
            return Err(invalid(format!(
                "receive hold {:?} is longer than 50 ms",
                self.receive_hold.unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Applies the socket options (buffers, DSCP) to a socket this configuration will drive.
    ///
    /// With a [`sockbuf`](Self::sockbuf), the send buffer gets that size and the receive
    /// buffer at least [`receive_buffer_bytes`](Self::receive_buffer_bytes): datagrams wait
    /// in the socket while the process is not running, and a receive window that the socket
    /// cannot hold loses datagrams whenever the receiver stalls, which the sender must then
    /// retransmit. The kernel may cap either (`net.core.rmem_max`; macOS and the BSDs refuse
    /// a receive buffer above their limit, and the `sockbuf` size stays); a receive buffer
    /// left short of the window is logged (the `log` feature).
    pub fn apply_socket(&self, socket: SockRef<'_>) -> io::Result<()> {
        if let Some(b) = self.sockbuf {
            set_sockbuf(SockRef::from(&*socket), b)?;
            let want = self.receive_buffer_bytes();
            // Linux caps a request at `rmem_max`; macOS and the BSDs refuse one above their
            // limit (`ENOBUFS`) and keep the size set just above: either way the socket
            // works, and a buffer left short is reported below.
            if want > b {
                let _ = socket.set_recv_buffer_size(want);
            }
            // Linux reports twice what the kernel granted (its bookkeeping share): compare
            // like with like.
            let got = socket.recv_buffer_size()?;
            let granted = if cfg!(target_os = "linux") {
                got / 2
            } else {
                got
            };
            if granted < want {
                crate::diag::receive_buffer_short(granted, want);
            }
        }
        if let Some(d) = self.dscp {
            set_dscp(SockRef::from(&*socket), d)?;
        }
        Ok(())
    }

    /// The endpoint settings for kcp-core, with the layer factory: the shared part of the
    /// stack is built here once, the per-session part by the factory for each session.
    /// `accept`: whether the endpoint accepts sessions peers open (a listener). Encryption
    /// runs inside the endpoint (each session seals with its own layer; the endpoint opens
    /// before demultiplexing), which suits a single-threaded adapter such as kcp-mio.
    pub fn endpoint_config(&self, accept: bool) -> io::Result<EndpointConfig> {
        self.endpoint_config_with(accept, CryptPlacement::Sessions)
            .map(|(ep, _)| ep)
    }

    /// The endpoint settings with encryption where `placement` says; fails as
    /// [`check`](Self::check) does on settings that cannot work. With
    /// [`CryptPlacement::Adapter`], sessions only reserve the cipher's header (kcp-core's
    /// [`Reserve`](kcp_core::Reserve) layer) and the returned [`AdapterCrypt`] makes the layers
    /// that seal datagrams after they leave the endpoint and open them in place before they
    /// enter it: an adapter whose endpoint sits behind a lock (kcp-tokio) does the
    /// cryptography outside it and seals a whole batch at once.
    pub fn endpoint_config_with(
        &self,
        accept: bool,
        placement: CryptPlacement,
    ) -> io::Result<(EndpointConfig, Option<AdapterCrypt>)> {
        // Everything `check` checks, with the one stack build the endpoint keeps.
        self.check_settings()?;
        let mut stack = self.shared_stack()?;
        let adapter = match placement {
            CryptPlacement::Adapter => stack.defer_crypt(),
            CryptPlacement::Sessions => None,
        };
        let demux_layers = stack.demux_layers();
        let layers: LayerFactory = Box::new(move || stack.session_layers());
        // The update keeps this compiling (with kcp-core's defaults) when the endpoint grows
        // a setting.
        #[allow(clippy::needless_update)]
        let ep = EndpointConfig {
            session: self.engine,
            layers,
            demux_layers,
            accept,
            backlog: self.backlog,
            max_sessions: self.max_sessions,
            idle_timeout_ms: self.idle_timeout.map(ms),
            keepalive_ms: self.keepalive.map(|d| ms(d).max(1)),
            closed_linger_ms: ms(self.closed_linger),
            half_open_timeout_ms: ms(self.half_open_timeout),
            half_open_min_age_ms: ms(self.half_open_min_age),
            max_half_open: self.max_half_open,
            max_half_open_per_host: self.max_half_open_per_host,
            half_open_bytes: self.half_open_bytes,
            half_open_pool_bytes: self.half_open_pool_bytes,
            max_sessions_per_host: self.max_sessions_per_host,
            host_prefix_v4: self.host_prefixes.0,
            host_prefix_v6: self.host_prefixes.1,
            max_datagram: self.max_datagram,
            replay_record: self.replay_record,
            migration: self.migration_mode(),
            accept_timeout_ms: self.accept_timeout.map(ms),
            pool_bytes: self.pool_bytes,
            recv_budget_bytes: self.recv_budget,
            controller: self
                .controller
                .clone()
                .map(|make| Box::new(move || make()) as kcp_core::endpoint::ControllerFactory),
            hash_key: random_hash_key()?,
            ..EndpointConfig::new(self.engine)
        };
        Ok((ep, adapter))
    }
}

impl KcpConfig {
    /// The shared part of the stack: built once per configuration (and its clones, until a
    /// setting it depends on changes) rather than once per endpoint. A client with one
    /// socket, hence one endpoint, per session kept a key schedule and an FEC code per
    /// session. Sharing the cipher's key is safe: every layer made from it draws its own
    /// nonce stream from the key's one counter (see `kcp_crypto::PacketKey`).
    fn shared_stack(&self) -> io::Result<Stack> {
        let mut cached = self.stack.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cached.as_ref() {
            return Ok(s.clone());
        }
        let s = Stack::new(self)?;
        *cached = Some(s.clone());
        Ok(s)
    }
}

/// A secret key for the endpoint's session index, from the OS's random source: peers cannot
/// choose addresses and conversation ids that collide in it.
fn random_hash_key() -> io::Result<[u8; 16]> {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| io::Error::other(format!("OS random source: {e}")))?;
    Ok(key)
}

#[cfg(test)]
mod hash_key_tests {
    use super::*;

    #[test]
    fn every_endpoint_gets_its_own_random_hash_key() {
        let cfg = KcpConfig::default();
        let (a, _) = cfg
            .endpoint_config_with(true, CryptPlacement::Sessions)
            .unwrap();
        let (b, _) = cfg
            .endpoint_config_with(true, CryptPlacement::Sessions)
            .unwrap();
        let fixed = EndpointConfig::new(cfg.engine).hash_key;
        assert_ne!(a.hash_key, fixed, "the fixed default key was kept");
        assert_ne!(a.hash_key, b.hash_key, "two endpoints share a key");
    }
}
