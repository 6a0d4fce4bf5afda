//! The endpoint's settings: [`EndpointConfig`], its defaults, and the factories that build
//! each session's codec stack and congestion controller.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::config::Config;
use crate::session::Layer;

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
    /// Accepted sessions waiting for [`Endpoint::accept`](super::Endpoint::accept); more are refused (kcp-go: 128).
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
    /// A full half-open table (or host share) evicts its oldest entry for a new first flight
    /// only once that entry is this old; before, the new first flight is refused (counted in
    /// `refused`; its sender retransmits it). A real peer answers the probe within its flush
    /// interval plus a round trip, so an entry that age has had its chance: without it, a
    /// burst of first flights from one host (a NAT, a load test) evicts each entry before its
    /// peer can answer, and none gets in. Where a host's peers have answered slower (a long
    /// path, a client busy starting many sessions), its entries are kept longer: their
    /// smoothed answer time (first flight to answer, late answers to evicted entries
    /// included, counted in `half_open_late_answers`) plus four mean deviations, at most half
    /// of [`half_open_timeout_ms`](Self::half_open_timeout_ms). Default 100.
    pub half_open_min_age_ms: u32,
    /// Most half-open entries at once. When full, a new first flight evicts the oldest entry
    /// (SYN-cache behaviour, counted in `half_open_evicted`), so a flood of spoofed first
    /// flights delays a real peer by at most its answer's round trip. Default 1024.
    pub max_half_open: usize,
    /// Most half-open entries per source host (see `host_prefix_v4`/`host_prefix_v6`); when
    /// a host's share is full, its own oldest entry is evicted. A host earns one more entry
    /// for each confirmed session its peers opened and still hold, up to half of
    /// [`max_half_open`](Self::max_half_open): only peers that answer probes earn room, so
    /// a burst of real clients behind one address gets in ever faster, a flood that answers
    /// nothing stays within this share, and half the table is always left to other hosts.
    /// Default 64.
    pub max_half_open_per_host: usize,
    /// Heap bytes one half-open entry may hold in all: its bookkeeping, its codec stack and
    /// the first flight and the datagrams the peer sends before it hears the probe (as the
    /// demux layers opened them, plus 12 bytes each; see [`crate::endpoint`], "Admission"),
    /// kept while they fit here and in
    /// [`half_open_pool_bytes`](Self::half_open_pool_bytes) (delivered when the peer
    /// confirms). Datagrams that do not fit are dropped unacknowledged (the peer retransmits
    /// them, after its first retransmission timeout: 200 ms before it has a round-trip
    /// sample); nothing is acknowledged before confirmation. Default 256 KiB: the first
    /// window of a kcp-go client (at most 128 full segments until it hears the peer's window),
    /// so neither a multi-datagram request nor a bulk sender's first window waits for a
    /// retransmission.
    pub half_open_bytes: usize,
    /// Bytes of kept datagrams all half-open entries hold together. A new first flight that
    /// would exceed it evicts the oldest entries (SYN-cache behaviour, counted in
    /// `half_open_evicted`), so spoofed first flights cannot keep a real peer's out; an
    /// entry's later datagrams are kept only while the pool has room. With
    /// [`max_half_open`](Self::max_half_open) it bounds the memory of half-open entries:
    /// at most this pool plus `max_half_open` entries' bookkeeping and codec stacks.
    /// Default 2 MiB.
    pub half_open_pool_bytes: usize,
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
    /// ([`CloseReason::NotAccepted`](super::CloseReason::NotAccepted); `None`: wait for ever). Default 10 s.
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
    /// Session migration: whether a live session may follow its peer to a new address (a
    /// client behind a NAT that rebinds its port, a phone that changes networks), and what
    /// proves a datagram from there is no replay. Off by default; see [`Migration`].
    pub migration: Migration,
    /// The secret key of the hash that indexes sessions by peer address and conversation
    /// (SipHash-1-3). Peers choose their conversation ids and, spoofing, their addresses:
    /// whoever knows the key can pick keys that collide and slow every lookup down to a
    /// scan of them. `no_std` has no random source, so the default is a fixed key: an
    /// endpoint that untrusted peers reach should set random bytes here (kcp-mio's and
    /// kcp-tokio's configuration do, from the OS's random source).
    pub hash_key: [u8; 16],
}

/// Session migration ([`EndpointConfig::migration`]).
///
/// A datagram of a live session that arrives from another address moves the session to that
/// address, when migration is on, only if
///
/// * the endpoint has demux layers (crypto) and the datagram passed them: with AEAD modes its
///   tag authenticated; with kcp-go's CFB block ciphers its CRC-32 matched, which someone
///   without the key forges with a probability of about 2^-32 per try (stream modes, `xor`,
///   `none` and no crypto give no such bound: kcp-mio refuses migration with them, and
///   without demux layers the endpoint never moves a session);
/// * it is not a copy of a datagram in the
///   [replay record](EndpointConfig::replay_record) and the session's own layers accept it
///   (a replay-protected layer checks its pinned sender and its replay window);
/// * it is not a plausible first flight (that opens a half-open entry, as without
///   migration) and exactly one session has its conversation id;
/// * it is *fresh*: with [`ReplayProtected`](Migration::ReplayProtected), the layers'
///   acceptance says so; with [`Fresh`](Migration::Fresh), it carries a PUSH newer than
///   every PUSH the session took or data the session takes as new, or its acknowledgements
///   release data the session had in flight. A captured datagram re-sent later is neither,
///   so it moves nothing (counted in `migrations_refused`; what it carries is applied as if
///   it had come from the session's own address, which changes nothing).
///
/// Until the peer answers at the new address (a datagram from there acknowledges a segment
/// sent there after the move, or answers the window probe the session sends there when it
/// moves), the session sends there at most three times the bytes
/// received from there (extra datagrams are dropped and counted in `amplification_limited`;
/// KCP retransmits them); a fresh datagram from the previous address moves it back at once.
/// What an attacker replaying from another address can and cannot do, per crypto mode, is in
/// the project's `docs/security.md`. Costs, with migration on, one index entry per session
/// (its conversation id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Migration {
    /// A session stays at the address it was opened with (datagrams from elsewhere are
    /// strangers: admission decides).
    #[default]
    Off,
    /// On, for layers that authenticate but let copies through (AEAD without a replay
    /// window, kcp-go's CFB ciphers): a datagram must also be fresh by KCP's own state. A
    /// peer whose datagrams say nothing new (only keepalive or window probes, or
    /// acknowledgements of nothing new) does not move its session until they do.
    Fresh,
    /// On, for demux layers whose session instances drop every copy
    /// ([`Codec::accept_demuxed`](crate::Codec::accept_demuxed) with a replay window, as
    /// kcp-crypto's `ReplayAeadCrypt`): every datagram they accept may move the session,
    /// keepalive probes included. Choose it only for such layers.
    ReplayProtected,
}

impl Migration {
    /// Whether migration is on.
    pub fn is_on(self) -> bool {
        self != Migration::Off
    }
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
            half_open_min_age_ms: 100,
            max_half_open: 1_024,
            max_half_open_per_host: 64,
            half_open_bytes: 256 << 10,
            half_open_pool_bytes: 2 << 20,
            max_sessions_per_host: 4_096,
            host_prefix_v4: 32,
            host_prefix_v6: 64,
            max_datagram: crate::config::MAX_MTU as usize,
            replay_record: 8_192,
            accept_timeout_ms: Some(10_000),
            pool_bytes: 4 << 20,
            recv_budget_bytes: DEFAULT_RECV_BUDGET,
            controller: None,
            migration: Migration::Off,
            hash_key: *b"kcp-core hashkey",
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
            .field("half_open_min_age_ms", &self.half_open_min_age_ms)
            .field("max_half_open", &self.max_half_open)
            .field("max_half_open_per_host", &self.max_half_open_per_host)
            .field("half_open_bytes", &self.half_open_bytes)
            .field("half_open_pool_bytes", &self.half_open_pool_bytes)
            .field("max_sessions_per_host", &self.max_sessions_per_host)
            .field("host_prefix_v4", &self.host_prefix_v4)
            .field("host_prefix_v6", &self.host_prefix_v6)
            .field("max_datagram", &self.max_datagram)
            .field("replay_record", &self.replay_record)
            .field("accept_timeout_ms", &self.accept_timeout_ms)
            .field("pool_bytes", &self.pool_bytes)
            .field("recv_budget_bytes", &self.recv_budget_bytes)
            .field("controller", &self.controller.is_some())
            .field("migration", &self.migration)
            .field("hash_key", &"..")
            .finish_non_exhaustive()
    }
}
