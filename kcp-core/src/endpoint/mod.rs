//! Many sessions on one socket, sans IO (feature `alloc`).
//!
//! An [`Endpoint`] owns every [`Session`] that shares one UDP socket. It demultiplexes
//! received datagrams by (remote address, conversation id), decides whether an unknown
//! conversation becomes a new session (listener mode, bounded backlog and session limit),
//! keeps one timer structure for all sessions (an idle session has no timer entry and costs
//! nothing), and reports kcp-go's SNMP counters for the whole socket. Adapters (kcp-tokio,
//! kcp-mio) own the socket and the clock and call it; no protocol logic lives in them.
//!
//! # Driving it
//!
//! * A datagram arrived: [`handle_datagram`](Endpoint::handle_datagram).
//! * The time in [`poll_timeout`](Endpoint::poll_timeout) came: [`handle_timeout`](Endpoint::handle_timeout).
//! * After either, and after any application call ([`send`](Endpoint::send),
//!   [`recv`](Endpoint::recv), [`connect`](Endpoint::connect),
//!   [`shutdown_write`](Endpoint::shutdown_write) ...): drain
//!   [`poll_transmit`](Endpoint::poll_transmit) until `None`, then
//!   [`poll_event`](Endpoint::poll_event) until `None` (readable, writable, closed), then ask
//!   `poll_timeout` again.
//!
//! Time is a wrapping millisecond clock ([`Millis`]) that must never go back. A `now` up to a
//! minute earlier than the endpoint's clock is a stale reading (threads that read the clock
//! before taking a lock) or a jump of just under 2^32 ms, which cannot be told apart: it
//! counts as no time, but time then counts from it and deadlines are given in its frame, so
//! timers never freeze. One that looks earlier by more is the clock having moved on by
//! 2^31 ms or more (an endpoint with no deadline is not called for that long), and every timer
//! is re-anchored on it. Sessions run on the endpoint's own clock, which never goes back.
//!
//! # Codec layers and demultiplexing
//!
//! With encryption the conversation id is only visible after decryption. The endpoint
//! therefore owns one instance of the codec stack: its outermost `demux_layers` (the crypto
//! layer) open every datagram ([`Codec::demux_open`](crate::Codec::demux_open)), and the inner
//! layers say where their inner packet lies ([`Codec::route`](crate::Codec::route)), so the
//! endpoint never parses a codec's format. Each session owns a full stack of its own, built by
//! the layer factory: it sees what the endpoint opened through
//! [`Codec::accept_demuxed`](crate::Codec::accept_demuxed) (replay windows live there) and
//! opens the inner layers itself. Packets without a conversation id (FEC parity) go to the
//! session on the same address whose latest data lies in the same region of FEC groups
//! ([`Codec::group`](crate::Codec::group)); when that is not one session, they are dropped
//! and counted (`half_open_dropped` while the address has a half-open entry, else
//! `parity_unrouted`).
//!
//! # Receive budget
//!
//! [`recv_budget_bytes`](EndpointConfig::recv_budget_bytes) bounds what all sessions hold on
//! the receive side together (segments, rings, spare chunks, codec state), counted in O(1)
//! per datagram. Past it every session refuses out-of-order data (unacknowledged, counted in
//! `recv_over_budget`), its codec layers keep no new state, and spare chunks go back at once;
//! a session still takes the segment it needs next while its application has nothing to
//! read, so none deadlocks.
//!
//! # Admission: who may create state
//!
//! A datagram for an unknown (address, conversation) is looked at only if it could be a new
//! peer's first flight ([`first_flight`]): a well-formed KCP datagram of PUSH segments only,
//! one conversation, every length exact, `una == 0` and sequence numbers inside the receive
//! window of a session that starts at 0 (with a CRC or AEAD layer, after that check; and no
//! longer than [`max_datagram`](EndpointConfig::max_datagram)). It then opens a *half-open
//! entry*, not a session: a small record (at most
//! [`half_open_bytes`](EndpointConfig::half_open_bytes), 2 KiB, with the leading segments of
//! the first flight it keeps) answered by a window probe (WASK). Nothing is acknowledged.
//! Only the peer's answer to the probe (a WINS, which every KCP peer sends at its next
//! flush) proves it receives at its address and creates the session, which then takes the
//! kept segments and queues for [`accept`](Endpoint::accept). Entries are bounded by
//! [`max_half_open`](EndpointConfig::max_half_open) and
//! [`max_half_open_per_host`](EndpointConfig::max_half_open_per_host) (hosts counted per
//! prefix, [`host_prefix_v4`](EndpointConfig::host_prefix_v4) and
//! [`host_prefix_v6`](EndpointConfig::host_prefix_v6)); when full, the oldest entry is
//! evicted, so a flood of spoofed first flights delays a real peer by at most the round trip
//! of its answer. Probes to an entry's address stay within three times the bytes received
//! from it. An entry unanswered after
//! [`half_open_timeout_ms`](EndpointConfig::half_open_timeout_ms) is dropped. With codec
//! layers, the datagrams that opened and confirmed recent sessions are remembered
//! ([`replay_record`](EndpointConfig::replay_record)) and copies of them are dropped. A
//! session the application does not accept within
//! [`accept_timeout_ms`](EndpointConfig::accept_timeout_ms) is closed as
//! [`CloseReason::NotAccepted`].
//!
//! # Memory
//!
//! Payload chunks and ring storage follow the data a session holds: when a session drains
//! (nothing queued, in flight, unread or to acknowledge) its chunks go to an endpoint-wide
//! [`ChunkCache`] bounded by [`pool_bytes`](EndpointConfig::pool_bytes) and
//! its rings shrink to a few entries; before a session stores data the endpoint hands it
//! chunks from the cache, so a busy endpoint does not allocate per packet. A session idle for
//! [`TRIM_AFTER_MS`] also trims its codec layers ([`Codec::trim`](crate::Codec::trim)).

mod admission;
mod half_open;
mod input;
mod lifecycle;
mod stats;
mod timers;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt;

pub use admission::{first_flight, FirstFlightError};
use half_open::{HalfOpen, ReplayRecord};
pub use stats::EndpointStats;
use timers::Timers;

use crate::codec::CodecError;
use crate::config::{Config, ConfigError};
use crate::engine::{RecvError, SendError};
use crate::session::{Layer, Session, SessionError};
use crate::storage::ChunkCache;
use crate::time::Millis;

/// Builds a fresh codec stack (innermost first), for a session or for the endpoint itself.
pub type LayerFactory = Box<dyn FnMut() -> Vec<Layer> + Send>;

/// Builds each session's congestion controller (see [`congestion`](crate::congestion)).
pub type ControllerFactory =
    Box<dyn FnMut() -> Box<dyn crate::congestion::Controller + Send> + Send>;

/// Endpoint settings.
pub struct EndpointConfig {
    /// Every session's engine configuration (header room is set from the layers).
    pub session: Config,
    /// Builds each session's codec stack (innermost first: FEC, then crypto).
    pub layers: LayerFactory,
    /// How many outermost layers the endpoint opens itself before demultiplexing (1 with
    /// crypto, 0 without). Must not exceed the stack's length.
    pub demux_layers: usize,
    /// Accept sessions that peers open (listener mode).
    pub accept: bool,
    /// Accepted sessions waiting for [`Endpoint::accept`]; more are refused (kcp-go: 128).
    pub backlog: usize,
    /// Most sessions at once, accepted and connected.
    pub max_sessions: usize,
    /// Close a session after this long without a valid datagram from its peer (`None`: never).
    pub idle_timeout_ms: Option<u32>,
    /// Keepalive: when nothing was heard from the peer for this long, ask it for its window
    /// (a `WASK` segment, which kcp-go, ikcp.c and this crate answer with `WINS`), and again
    /// every interval while it stays quiet. The answer counts as hearing from the peer, so a
    /// quiet session whose peer is still there does not reach the idle timeout; a vanished
    /// peer answers nothing and its session still ends at the idle timeout. Keep it well under
    /// `idle_timeout_ms` (a third or less, so a lost probe or answer is retried in time).
    /// `None`: never probe (a quiet session then ends at the idle timeout). Default 10 s.
    pub keepalive_ms: Option<u32>,
    /// How long a closed (address, conv) is remembered so its late datagrams do not create a
    /// phantom session (`docs/protocol.md`, hazard H8).
    pub closed_linger_ms: u32,
    /// A first flight from a new peer opens a *half-open* entry, not a session: the endpoint
    /// answers with a window probe (WASK) and creates the session only when the peer answers
    /// it (a WINS), proving it receives what is sent to its address. An entry that gets no
    /// answer within this time is dropped (counted in `unconfirmed`). Default 5 s.
    pub half_open_timeout_ms: u32,
    /// Most half-open entries at once. When full, a new first flight evicts the oldest entry
    /// (SYN-cache behaviour, counted in `half_open_evicted`), so a flood of spoofed first
    /// flights delays a real peer by at most its answer's round trip. Default 1024.
    pub max_half_open: usize,
    /// Most half-open entries per source host (see `host_prefix_v4`/`host_prefix_v6`); when
    /// a host's share is full, its own oldest entry is evicted. Default 64.
    pub max_half_open_per_host: usize,
    /// Heap bytes one half-open entry may hold in all: its bookkeeping, its codec stack and
    /// the leading KCP segments of the first flight it keeps while they fit (delivered when
    /// the peer confirms). Segments that do not fit, and later datagrams, are dropped
    /// unacknowledged (the peer retransmits them); nothing is acknowledged before
    /// confirmation. Default 2048: a whole 1500-byte first flight without crypto or with
    /// kcp-go's packet crypt.
    pub half_open_bytes: usize,
    /// Most confirmed sessions peers opened from one source host. Default 4096.
    pub max_sessions_per_host: usize,
    /// Source hosts are IPv4 addresses masked to this many leading bits. Default 32.
    pub host_prefix_v4: u8,
    /// Source hosts are IPv6 addresses masked to this many leading bits (one site usually
    /// holds a whole /64). Default 64.
    pub host_prefix_v6: u8,
    /// Datagrams longer than this are dropped before any parsing (counted in `oversize`).
    /// Default 1500, the largest MTU kcp-go accepts (raised to the session MTU if larger);
    /// set it to your peers' MTU for the tightest bound.
    pub max_datagram: usize,
    /// Entries of the endpoint-wide record of the datagrams that opened and confirmed
    /// recent sessions (8 bytes each; up to seven per session: the first flight, up to five
    /// datagrams before the answer, the answer): a copy of one of those, from any address,
    /// opens and confirms nothing (counted in `replayed`) while it is remembered. Only
    /// confirmed sessions add entries, so spoofed floods cannot wash it out. Used with demux
    /// (crypto) layers only: without them a copy cannot be told from a new identical
    /// datagram, and anyone can forge one anyway. Default 8192 (64 KiB, allocated with a
    /// listening endpoint): at least the last 1,170 sessions.
    pub replay_record: usize,
    /// Close a session a peer opened if the application has not accepted it after this long
    /// ([`CloseReason::NotAccepted`]; `None`: wait for ever). Default 10 s.
    pub accept_timeout_ms: Option<u32>,
    /// Bytes of payload buffers the endpoint keeps for its sessions to reuse after they drain
    /// (an idle session holds none). Beyond this, drained buffers go back to the allocator.
    /// Default 4 MiB.
    pub pool_bytes: usize,
    /// Heap bytes all sessions together may hold on the receive side: received segments
    /// (queued for the application or out of order), receive rings and codec layer state
    /// (FEC decoder queues). Past it, every session refuses new out-of-order data (dropped
    /// unacknowledged, so the peer retransmits, and counted) and its codec layers stop
    /// keeping state for it; the segment a session needs next is still taken while its
    /// application has nothing to read, so every session keeps progressing. Default
    /// [`DEFAULT_RECV_BUDGET`]; a std adapter sizes it for the machine.
    pub recv_budget_bytes: usize,
    /// Every session's congestion controller, built per session (`None`: the shipped one
    /// the engine configuration's `nc` selects). The engine never sends beyond the
    /// flow-control windows, whatever the controller says.
    pub controller: Option<ControllerFactory>,
}

/// [`EndpointConfig::recv_budget_bytes`] by default: 64 MiB (`no_std` cannot ask the
/// machine; kcp-mio's `KcpConfig` uses a share of physical memory instead).
pub const DEFAULT_RECV_BUDGET: usize = 64 << 20;

impl EndpointConfig {
    /// Plain KCP sessions (no codec layers) with `session` settings, not accepting.
    pub fn new(session: Config) -> Self {
        EndpointConfig {
            session,
            layers: Box::new(Vec::new),
            demux_layers: 0,
            accept: false,
            backlog: 128,
            max_sessions: 65_536,
            idle_timeout_ms: Some(60_000),
            keepalive_ms: Some(10_000),
            closed_linger_ms: 10_000,
            half_open_timeout_ms: 5_000,
            max_half_open: 1_024,
            max_half_open_per_host: 64,
            half_open_bytes: 2_048,
            max_sessions_per_host: 4_096,
            host_prefix_v4: 32,
            host_prefix_v6: 64,
            max_datagram: crate::config::MAX_MTU as usize,
            replay_record: 8_192,
            accept_timeout_ms: Some(10_000),
            pool_bytes: 4 << 20,
            recv_budget_bytes: DEFAULT_RECV_BUDGET,
            controller: None,
        }
    }
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("session", &self.session)
            .field("demux_layers", &self.demux_layers)
            .field("accept", &self.accept)
            .field("backlog", &self.backlog)
            .field("max_sessions", &self.max_sessions)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("keepalive_ms", &self.keepalive_ms)
            .field("half_open_timeout_ms", &self.half_open_timeout_ms)
            .field("max_half_open", &self.max_half_open)
            .field("max_half_open_per_host", &self.max_half_open_per_host)
            .field("half_open_bytes", &self.half_open_bytes)
            .field("max_sessions_per_host", &self.max_sessions_per_host)
            .field("host_prefix_v4", &self.host_prefix_v4)
            .field("host_prefix_v6", &self.host_prefix_v6)
            .field("max_datagram", &self.max_datagram)
            .field("replay_record", &self.replay_record)
            .field("accept_timeout_ms", &self.accept_timeout_ms)
            .field("pool_bytes", &self.pool_bytes)
            .field("recv_budget_bytes", &self.recv_budget_bytes)
            .field("controller", &self.controller.is_some())
            .finish_non_exhaustive()
    }
}

/// A peer address as an endpoint keys sessions by. [`host`](Self::host) is what admission
/// limits count per source: the IP address of a socket address, whatever its port.
pub trait PeerAddr: Ord + Copy {
    /// The part of the address that identifies a source host.
    type Host: Ord + Copy;
    /// The source host of this address.
    fn host(&self) -> Self::Host;
    /// The source host as admission limits count it: the address's network of `v4` leading
    /// bits (IPv4) or `v6` (IPv6). The default is [`host`](Self::host).
    fn host_prefix(&self, v4: u8, v6: u8) -> Self::Host {
        let _ = (v4, v6);
        self.host()
    }
}

impl PeerAddr for core::net::SocketAddr {
    type Host = core::net::IpAddr;
    fn host(&self) -> core::net::IpAddr {
        self.ip()
    }
    fn host_prefix(&self, v4: u8, v6: u8) -> core::net::IpAddr {
        use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let mask4 = |a: Ipv4Addr| {
            let bits = u32::from(v4.min(32));
            let m = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        };
        match self.ip() {
            IpAddr::V4(a) => mask4(a),
            // An IPv4 peer on a dual-stack socket counts as IPv4.
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a4) => mask4(a4),
                None => {
                    let bits = u32::from(v6.min(128));
                    let m = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
                }
            },
        }
    }
}

macro_rules! peer_addr_is_host {
    ($($t:ty),*) => {$(
        /// For tests and simulations: the whole value is the host.
        impl PeerAddr for $t {
            type Host = $t;
            fn host(&self) -> $t {
                *self
            }
        }
    )*};
}
peer_addr_is_host!(u8, u16, u32, u64, u128);

/// A session of an [`Endpoint`]. Ids are not reused while the endpoint lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    idx: u32,
    gen: u32,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// No valid datagram from the peer for the idle timeout.
    IdleTimeout,
    /// A segment was sent `dead_link` times without acknowledgement.
    DeadLink,
    /// `shutdown` finished: everything queued was acknowledged.
    Shutdown,
    /// `shutdown` gave up: data was still unacknowledged at its deadline.
    ShutdownTimeout,
    /// Closed locally with [`Endpoint::close`].
    Closed,
    /// Not reported any more: a first flight the peer never confirms stays a half-open
    /// entry, which is not a session (counted in `EndpointStats::unconfirmed`).
    Unconfirmed,
    /// A session a peer opened waited longer than `accept_timeout_ms` for
    /// [`Endpoint::accept`].
    NotAccepted,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::IdleTimeout => "idle timeout: nothing heard from the peer",
            CloseReason::DeadLink => {
                "dead link: data not acknowledged after repeated retransmission"
            }
            CloseReason::Shutdown => "shut down: all data acknowledged",
            CloseReason::ShutdownTimeout => "shutdown timed out with data unacknowledged",
            CloseReason::Closed => "closed locally",
            CloseReason::Unconfirmed => "the peer never confirmed the session it opened",
            CloseReason::NotAccepted => "the application did not accept the session in time",
        })
    }
}

/// Something an adapter should react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A session queued for [`Endpoint::accept`].
    Incoming,
    /// Data became readable.
    Readable(SessionId),
    /// Room opened in the send queue.
    Writable(SessionId),
    /// The session ended; it is gone from the endpoint.
    Closed(SessionId, CloseReason),
}

/// Why an endpoint call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    /// No such session (closed, or never existed).
    UnknownSession,
    /// The session limit is reached.
    TooManySessions,
    /// A session with this address and conversation id exists already.
    Duplicate,
    /// Building the session failed.
    Config(ConfigError),
    /// The datagram was rejected (counted in the stats).
    Rejected(DropReason),
    /// Sending failed.
    Send(SendError),
    /// Receiving failed.
    Recv(RecvError),
    /// The session's write side was shut down ([`Endpoint::shutdown_write`] or
    /// [`Endpoint::close_after_flush`]): no more data can be queued.
    WriteClosed,
}

/// Why a received datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The endpoint's own layers rejected it (checksum, authentication...).
    Codec(CodecError),
    /// Too short to carry a KCP header.
    Short,
    /// No session, and it could not or may not open one.
    NoSession,
    /// Its (address, conv) was closed recently (a late datagram; no phantom session).
    RecentlyClosed,
    /// An unknown conversation whose datagram could not be a peer's first flight (see
    /// [`first_flight`]).
    NotFirstFlight(FirstFlightError),
    /// The accept backlog, the session limit or a per-host limit is full.
    Refused,
    /// Longer than [`EndpointConfig::max_datagram`]; not parsed.
    TooLong,
    /// A copy of a datagram the endpoint remembers (a replayed first flight or
    /// confirmation).
    Replayed,
    /// For a half-open entry and not its peer's answer: dropped unacknowledged (the peer
    /// retransmits it once the session exists).
    Unconfirmed,
    /// The session rejected it.
    Session(SessionError),
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::UnknownSession => write!(f, "unknown session"),
            EndpointError::TooManySessions => write!(f, "session limit reached"),
            EndpointError::Duplicate => write!(f, "session exists already"),
            EndpointError::Config(e) => write!(f, "configuration: {e}"),
            EndpointError::Rejected(d) => write!(f, "datagram dropped: {d:?}"),
            EndpointError::Send(e) => write!(f, "send: {e}"),
            EndpointError::Recv(e) => write!(f, "recv: {e}"),
            EndpointError::WriteClosed => write!(f, "write side shut down"),
        }
    }
}

impl core::error::Error for EndpointError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            EndpointError::Config(e) => Some(e),
            EndpointError::Send(e) => Some(e),
            EndpointError::Recv(e) => Some(e),
            _ => None,
        }
    }
}

/// How often a half-open entry asks its peer again (window probe) when it heard nothing.
pub(super) const ASK_PERIOD_MS: u64 = 1_000;
/// A half-open entry answers a retransmitted first flight with a new probe at most this often.
pub(super) const ASK_GAP_MS: u64 = 200;
/// Replies to an address that has not confirmed are at most this many times the bytes
/// received from it (anti-amplification).
pub(super) const AMPLIFICATION: u64 = 3;
/// How long a session must stay drained before its codec layers are trimmed
/// ([`Codec::trim`](crate::Codec::trim)): long enough that a session exchanging a message a
/// second does not rebuild its buffers every time.
pub const TRIM_AFTER_MS: u64 = 5_000;
/// Most layers an endpoint opens itself before demultiplexing.
const MAX_DEMUX_LAYERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The write side is shut down; reading goes on.
    WriteClosed,
    /// Closing once everything is acknowledged, or at the deadline (elapsed ms).
    Draining(u64),
    /// Ending: sends what it owes (ACKs) once, then goes with this reason (`Closed` after
    /// `close`, `Shutdown` after a graceful close finished).
    Closing(CloseReason),
}

struct Slot<A> {
    session: Session<'static>,
    addr: A,
    conv: u32,
    gen: u32,
    state: State,
    last_heard: u64,
    /// When the last keepalive probe was asked for.
    last_probe: u64,
    opened_at: u64,
    /// Since when the session has held no data (for trimming its codec layers), or
    /// [`NOT_IDLE`].
    idle_since: u64,
    /// Opened by the peer (listener mode).
    passive: bool,
    /// Handed out by `accept`.
    accepted: bool,
    writable: bool,
    /// [`TRIMMED`], [`READABLE`], [`QUEUED`], [`RESCHED_QUEUED`], [`ATTACHED`] (bits, so
    /// an idle session's slot stays small).
    flags: u8,
    /// Receive-side heap bytes counted for this session in the endpoint's budget.
    recv_bytes: u32,
    /// The FEC group of the latest data this session received (`NO_GROUP`: none yet), so
    /// parity from the same address reaches the session that owns its group.
    group: u32,
}

/// `Slot::idle_since` of a session that holds data.
pub(super) const NOT_IDLE: u64 = u64::MAX;
/// `Slot::flags`: codec layers trimmed since the session last held data.
pub(super) const TRIMMED: u8 = 1;
/// `Slot::flags`: the application was told the session is readable.
pub(super) const READABLE: u8 = 2;
/// `Slot::flags`: in `dirty` (output to drain, lifecycle to check).
pub(super) const QUEUED: u8 = 4;
/// `Slot::flags`: in `resched` (deadline to recompute at the next `poll_timeout`).
pub(super) const RESCHED_QUEUED: u8 = 8;
/// `Slot::flags`: listed in `attach_route` for its address.
pub(super) const ATTACHED: u8 = 16;

impl<A> Slot<A> {
    fn flag(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    fn set_flag(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }
}

/// How far (in FEC seqids) parity's group may lie from a session's latest data group and
/// still be that session's, when several sessions on one address use FEC: far beyond any
/// reordering, far below the distance between random starting points of two sessions.
pub(super) const GROUP_REACH: u32 = 1 << 16;
/// `Slot::group` before any FEC data (a group that never occurs: seqids stay below it).
pub(super) const NO_GROUP: u32 = u32::MAX;

/// Many sessions on one socket: demultiplexing, admission, timers, memory, stats. `A` is the
/// address type (`std::net::SocketAddr` in the adapters).
pub struct Endpoint<A: PeerAddr> {
    cfg: EndpointConfig,
    /// The endpoint's own codec stack (innermost first): the outermost `demux_layers` open
    /// datagrams, the others route them.
    demux: Vec<Layer>,
    /// Sessions by index, boxed so growing the table moves pointers, not sessions.
    slots: Vec<Option<Box<Slot<A>>>>,
    free: Vec<u32>,
    next_gen: u32,
    by_key: BTreeMap<(A, u32), u32>,
    /// The first session routed through a layer that asks for attachment (FEC), per
    /// address: where packets without a conversation id go (see
    /// [`Codec::group`](crate::Codec::group)).
    attach_route: BTreeMap<A, u32>,
    /// Further such sessions on the same address (rare: several conversations on one
    /// socket), kept apart so the common case holds one small entry per address.
    attach_more: BTreeMap<A, Vec<u32>>,
    closed: BTreeMap<(A, u32), u64>,
    closed_order: VecDeque<((A, u32), u64)>,
    accept_queue: VecDeque<SessionId>,
    /// Half-open entries by (address, conv).
    half: BTreeMap<(A, u32), Box<HalfOpen<A::Host>>>,
    /// Half-open entries by age (serial number), oldest first.
    half_age: BTreeMap<u64, (A, u32)>,
    /// Half-open entries by host, oldest first within a host.
    half_by_host: BTreeSet<(A::Host, u64)>,
    /// Half-open entries per host.
    half_open_hosts: BTreeMap<A::Host, u32>,
    /// Half-open deadlines (at, serial), stale ones skipped.
    half_timers: BinaryHeap<Reverse<(u64, u64)>>,
    /// Half-open entries with a probe to send.
    half_tx: VecDeque<(A, u32)>,
    next_serial: u64,
    /// Confirmed sessions peers opened, per host.
    host_sessions: BTreeMap<A::Host, u32>,
    record: ReplayRecord,
    cache: ChunkCache,
    dirty: VecDeque<u32>,
    /// Sessions whose deadline `poll_timeout` must recompute: each once per change, however
    /// often `poll_timeout` is asked before the output is drained.
    resched: VecDeque<u32>,
    events: VecDeque<Event>,
    timers: Timers,
    last_now: Option<Millis>,
    /// While the caller's readings stay behind `last_now` (stale, or a clock that jumped by
    /// just under 2^32 ms): the latest of them; time counts from it (see `tick`).
    shadow: Option<Millis>,
    elapsed: u64,
    /// Receive-side heap bytes of all sessions (see `recv_budget_bytes`).
    recv_total: usize,
    stats: EndpointStats,
    retired: EndpointStats,
}

impl<A: PeerAddr> fmt::Debug for Endpoint<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("sessions", &self.by_key.len())
            .field("half_open", &self.half.len())
            .field("accept_queue", &self.accept_queue.len())
            .finish_non_exhaustive()
    }
}

impl<A: PeerAddr> Endpoint<A> {
    /// An endpoint; checks the configuration by building one codec stack and one session.
    pub fn new(mut cfg: EndpointConfig) -> Result<Self, ConfigError> {
        // The endpoint's own stack: its outermost `demux_layers` open every datagram, the
        // others only say where their inner packet lies (`Codec::route`).
        let demux = (cfg.layers)();
        if cfg.demux_layers > demux.len() || cfg.demux_layers > MAX_DEMUX_LAYERS {
            return Err(ConfigError::Storage(
                "demux_layers exceeds the codec stack (or 4)",
            ));
        }
        Session::new(0, cfg.session, (cfg.layers)(), Millis(0))?;
        cfg.backlog = cfg.backlog.max(1);
        cfg.max_datagram = cfg.max_datagram.max(cfg.session.mtu as usize);
        let cache = ChunkCache::new(cfg.pool_bytes);
        let record = ReplayRecord::new(cfg.replay_record, cfg.accept && cfg.demux_layers > 0);
        Ok(Endpoint {
            cfg,
            demux,
            slots: Vec::new(),
            free: Vec::new(),
            next_gen: 1,
            by_key: BTreeMap::new(),
            attach_route: BTreeMap::new(),
            attach_more: BTreeMap::new(),
            closed: BTreeMap::new(),
            closed_order: VecDeque::new(),
            accept_queue: VecDeque::new(),
            half: BTreeMap::new(),
            half_age: BTreeMap::new(),
            half_by_host: BTreeSet::new(),
            half_open_hosts: BTreeMap::new(),
            half_timers: BinaryHeap::new(),
            half_tx: VecDeque::new(),
            next_serial: 0,
            host_sessions: BTreeMap::new(),
            record,
            cache,
            dirty: VecDeque::new(),
            resched: VecDeque::new(),
            events: VecDeque::new(),
            timers: Timers::default(),
            last_now: None,
            shadow: None,
            elapsed: 0,
            recv_total: 0,
            stats: EndpointStats::default(),
            retired: EndpointStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// Milliseconds since the endpoint first saw a time (monotonic, never wraps). Time never
    /// goes back. A `now` up to [`STALE_MS`](crate::time::STALE_MS) earlier than the
    /// endpoint's clock is either a caller's stale reading (another thread read the clock
    /// before taking its lock) or a clock that jumped forward by just under 2^32 ms; it counts
    /// as no time, but while readings stay behind, time counts from the latest of them, and
    /// deadlines are reported in their frame: timers neither freeze after such a jump nor run
    /// fast when stale readings interleave with fresh ones. A `now` that looks earlier by
    /// more is the wrapping clock having moved on by 2^31 ms or more, and counts forward by
    /// the wrapped difference.
    fn tick(&mut self, now: Millis) -> u64 {
        let Some(last) = self.last_now else {
            self.last_now = Some(now);
            return self.elapsed;
        };
        let d = now.since(last);
        if d >= 0 {
            self.elapsed += d as u64;
            self.last_now = Some(now);
            self.shadow = None;
        } else if d >= -crate::time::STALE_MS {
            match self.shadow {
                Some(s) if now.since(s) > 0 => {
                    let p = now.since(s) as u32;
                    self.elapsed += u64::from(p);
                    self.last_now = Some(last + p);
                    self.shadow = Some(now);
                }
                Some(_) => {}
                None => self.shadow = Some(now),
            }
        } else {
            self.elapsed += u64::from(now.0.wrapping_sub(last.0));
            self.last_now = Some(now);
            self.shadow = None;
        }
        self.elapsed
    }

    /// The endpoint's own clock, which its sessions run on: the caller's, moved on from the
    /// last reading that was not behind (see [`tick`](Self::tick)); never goes back.
    fn clock(&self, now: Millis) -> Millis {
        self.last_now.unwrap_or(now)
    }

    fn to_millis(&self, at: u64) -> Millis {
        // In the caller's frame: the latest reading when readings are behind the clock.
        let base = self.shadow.or(self.last_now).unwrap_or(Millis(0));
        base + (at.saturating_sub(self.elapsed).min(u32::MAX as u64 / 2) as u32)
    }

    /// Counts a session's receive-side heap again after it changed, and tells whether the
    /// endpoint is now past its receive budget.
    pub(super) fn recount_recv(&mut self, idx: u32) {
        if let Some(Some(slot)) = self.slots.get_mut(idx as usize) {
            let now = slot.session.receive_heap_bytes().min(u32::MAX as usize);
            let was = slot.recv_bytes as usize;
            self.recv_total = self.recv_total - was.min(self.recv_total) + now;
            slot.recv_bytes = now as u32;
        }
    }

    /// Whether the sessions together hold the receive budget or more.
    pub(super) fn recv_limited(&self) -> bool {
        self.recv_total >= self.cfg.recv_budget_bytes
    }

    /// Receive-side heap bytes all sessions hold, as counted against
    /// [`recv_budget_bytes`](EndpointConfig::recv_budget_bytes).
    pub fn receive_heap_bytes(&self) -> usize {
        self.recv_total
    }

    /// Opens a session to `addr` with conversation id `conv` (kcp-go's `NewConn3`).
    pub fn connect(&mut self, now: Millis, addr: A, conv: u32) -> Result<SessionId, EndpointError> {
        let t = self.tick(now);
        let now = self.clock(now);
        if self.by_key.contains_key(&(addr, conv)) {
            return Err(EndpointError::Duplicate);
        }
        if self.by_key.len() >= self.cfg.max_sessions {
            return Err(EndpointError::TooManySessions);
        }
        let layers = (self.cfg.layers)();
        let id = self
            .create(now, t, addr, conv, layers)
            .map_err(EndpointError::Config)?;
        self.stats.active_opens += 1;
        Ok(id)
    }

    fn create(
        &mut self,
        now: Millis,
        t: u64,
        addr: A,
        conv: u32,
        layers: Vec<Layer>,
    ) -> Result<SessionId, ConfigError> {
        let mut session = Session::new(conv, self.cfg.session, layers, now)?;
        if let Some(make) = &mut self.cfg.controller {
            session
                .kcp_mut()
                .set_controller(crate::congestion::Congestion::Boxed(make()));
        }
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let slot = Slot {
            session,
            addr,
            conv,
            gen,
            state: State::Open,
            last_heard: t,
            last_probe: t,
            opened_at: t,
            idle_since: NOT_IDLE,
            passive: false,
            accepted: false,
            writable: true,
            flags: 0,
            recv_bytes: 0,
            group: NO_GROUP,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = Some(Box::new(slot));
                }
                i
            }
            None => {
                self.slots.push(Some(Box::new(slot)));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_key.insert((addr, conv), idx);
        self.stats.curr_estab = self.by_key.len() as u64;
        self.stats.max_conn = self.stats.max_conn.max(self.stats.curr_estab);
        self.mark(idx);
        Ok(SessionId { idx, gen })
    }

    fn slot(&self, id: SessionId) -> Option<&Slot<A>> {
        self.slots
            .get(id.idx as usize)?
            .as_deref()
            .filter(|s| s.gen == id.gen)
    }

    fn slot_mut(&mut self, id: SessionId) -> Option<&mut Slot<A>> {
        self.slots
            .get_mut(id.idx as usize)?
            .as_deref_mut()
            .filter(|s| s.gen == id.gen)
    }

    fn mark(&mut self, idx: u32) {
        if let Some(Some(s)) = self.slots.get_mut(idx as usize) {
            if !s.flag(QUEUED) {
                s.set_flag(QUEUED, true);
                self.dirty.push_back(idx);
            }
            if !s.flag(RESCHED_QUEUED) {
                s.set_flag(RESCHED_QUEUED, true);
                self.resched.push_back(idx);
            }
        }
    }

    /// A session's state, for reading (stats, conv, RTT...).
    pub fn session(&self, id: SessionId) -> Option<&Session<'static>> {
        self.slot(id).map(|s| &s.session)
    }

    /// A session's state, for changing it (settings at run time). Drain `poll_transmit`
    /// afterwards.
    pub fn session_mut(&mut self, id: SessionId) -> Option<&mut Session<'static>> {
        self.mark(id.idx);
        self.slot_mut(id).map(|s| &mut s.session)
    }

    /// The peer address of a session.
    pub fn remote(&self, id: SessionId) -> Option<A> {
        self.slot(id).map(|s| s.addr)
    }

    /// Half-open entries now: first flights answered, waiting for their peer's answer.
    /// They are not sessions.
    pub fn half_open_len(&self) -> usize {
        self.half.len()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there is no live session.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The next session a peer opened, in arrival order.
    pub fn accept(&mut self) -> Option<SessionId> {
        while let Some(id) = self.accept_queue.pop_front() {
            if let Some(slot) = self.slot_mut(id) {
                slot.accepted = true;
                self.mark(id.idx);
                return Some(id);
            }
        }
        None
    }

    /// Queues data on a session (see [`Kcp::send`](crate::Kcp::send)).
    pub fn send(&mut self, id: SessionId, data: &[u8]) -> Result<usize, EndpointError> {
        let slot = self
            .slots
            .get_mut(id.idx as usize)
            .and_then(Option::as_deref_mut)
            .filter(|s| s.gen == id.gen)
            .ok_or(EndpointError::UnknownSession)?;
        match slot.state {
            State::Open => {}
            State::WriteClosed | State::Draining(_) => return Err(EndpointError::WriteClosed),
            State::Closing(_) => return Err(EndpointError::UnknownSession),
        }
        let kcp = slot.session.kcp_mut();
        let chunks = data.len().div_ceil(kcp.mss().max(1)).min(256);
        kcp.stock_storage(&mut self.cache, chunks);
        let r = kcp.send(data).map_err(EndpointError::Send);
        if r.is_err() {
            slot.writable = false;
        }
        self.mark(id.idx);
        r
    }

    /// Reads from a session (see [`Kcp::recv`](crate::Kcp::recv)).
    pub fn recv(&mut self, id: SessionId, buf: &mut [u8]) -> Result<usize, EndpointError> {
        let pressed = self.recv_total >= self.cfg.recv_budget_bytes;
        let slot = self
            .slots
            .get_mut(id.idx as usize)
            .and_then(Option::as_deref_mut)
            .filter(|s| s.gen == id.gen)
            .ok_or(EndpointError::UnknownSession)?;
        let r = slot
            .session
            .kcp_mut()
            .recv(buf)
            .map_err(EndpointError::Recv);
        if let Err(EndpointError::Recv(RecvError::WouldBlock)) = r {
            slot.set_flag(READABLE, false);
        }
        // Over the receive budget, what the application read goes back to the endpoint at
        // once (costing what it gives back), for the sessions waiting for room, instead of
        // when this one drains.
        if pressed && slot.session.kcp().spare_chunks() > 0 {
            slot.session.kcp_mut().release_storage(&mut self.cache);
            slot.session.kcp_mut().shrink_receive_storage();
        }
        self.recount_recv(id.idx);
        self.mark(id.idx);
        r
    }

    /// Whether `send` would currently accept data (kcp-go's Write would not block).
    pub fn is_writable(&self, id: SessionId) -> bool {
        self.slot(id)
            .is_some_and(|s| s.state == State::Open && s.session.kcp().is_writable())
    }

    /// Shuts down the write side (TCP's half-close): data already queued is still delivered,
    /// further [`send`](Self::send)s fail with [`EndpointError::WriteClosed`], and the session
    /// stays open for reading until it is closed or ends. KCP has no FIN: the peer is not
    /// told. [`is_flushed`](Self::is_flushed) says when everything written was acknowledged.
    pub fn shutdown_write(&mut self, id: SessionId) -> Result<(), EndpointError> {
        let slot = self.slot_mut(id).ok_or(EndpointError::UnknownSession)?;
        if slot.state == State::Open {
            slot.state = State::WriteClosed;
            slot.writable = false;
        }
        self.mark(id.idx);
        Ok(())
    }

    /// Whether everything queued on the session was acknowledged by the peer (nothing queued
    /// or in flight). `false` for an unknown session.
    pub fn is_flushed(&self, id: SessionId) -> bool {
        self.slot(id).is_some_and(|s| s.session.kcp().is_idle())
    }

    /// Closes the session once everything queued is acknowledged (a [`CloseReason::Shutdown`]
    /// event), or after `timeout_ms` with [`CloseReason::ShutdownTimeout`]: what closing a TCP
    /// socket with a linger does. Stops the write side at once; data received meanwhile is
    /// still readable. KCP has no FIN: the peer is not told; it will see an idle timeout.
    pub fn close_after_flush(
        &mut self,
        now: Millis,
        id: SessionId,
        timeout_ms: u32,
    ) -> Result<(), EndpointError> {
        let t = self.tick(now);
        let slot = self.slot_mut(id).ok_or(EndpointError::UnknownSession)?;
        if matches!(slot.state, State::Open | State::WriteClosed) {
            slot.state = State::Draining(t + timeout_ms as u64);
            slot.writable = false;
        }
        self.mark(id.idx);
        Ok(())
    }

    /// Closes a session, dropping whatever data it still holds (kcp-go's `Close`): it flushes
    /// once, so the peer gets the ACKs it is owed, and is gone after the next
    /// [`poll_transmit`](Self::poll_transmit) drain.
    pub fn close(&mut self, id: SessionId) -> Result<(), EndpointError> {
        let slot = self.slot_mut(id).ok_or(EndpointError::UnknownSession)?;
        slot.state = State::Closing(CloseReason::Closed);
        slot.session.kcp_mut().flush();
        self.mark(id.idx);
        Ok(())
    }

    /// kcp-go's SNMP counters for the whole endpoint: its own packet counters plus the sum of
    /// every live and ended session's.
    pub fn stats(&self) -> EndpointStats {
        let mut s = self.stats;
        s.add(&self.retired);
        for slot in self.slots.iter().flatten() {
            s.absorb_session(&slot.session);
        }
        s.half_open = self.half.len() as u64;
        s.pooled_bytes = self.cache.heap_bytes() as u64;
        s.recv_bytes = self.recv_total as u64;
        s
    }

    /// Heap bytes the endpoint's sessions and half-open entries hold (engines, codec state,
    /// session tables, kept first-flight segments) and those kept for reuse, as
    /// [`Session::heap_bytes`] and [`ChunkCache::heap_bytes`] count them; for memory
    /// accounting. The fixed replay record is apart
    /// ([`replay_record_bytes`](Self::replay_record_bytes)).
    pub fn heap_bytes(&self) -> (usize, usize) {
        let sessions = self.slots.capacity() * core::mem::size_of::<Option<Box<Slot<A>>>>()
            + self
                .slots
                .iter()
                .flatten()
                .map(|s| core::mem::size_of::<Slot<A>>() + s.session.heap_bytes())
                .sum::<usize>()
            + self.half_open_heap_bytes();
        (sessions, self.cache.heap_bytes())
    }

    /// Ids of all live sessions.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref().map(|s| SessionId {
                    idx: i as u32,
                    gen: s.gen,
                })
            })
            .collect()
    }
}
