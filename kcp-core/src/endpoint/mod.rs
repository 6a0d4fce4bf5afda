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
//! ([`Codec::group`](crate::Codec::group)); when that is not one session, they go to the
//! one half-open entry of the address whose data is of a nearby group (kept with its first
//! flight, `half_open_held`), else they are dropped and counted (`half_open_dropped` while
//! the address has a session and a half-open entry, else `parity_unrouted`).
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
//! entry*, not a session: a record of the future session's codec stack and the first flight
//! (and the peer's further datagrams until it answers), at most
//! [`half_open_bytes`](EndpointConfig::half_open_bytes) (256 KiB) per entry and
//! [`half_open_pool_bytes`](EndpointConfig::half_open_pool_bytes) (2 MiB) of kept datagrams
//! for all entries, answered by a window probe (WASK). Nothing is acknowledged.
//! Only the peer's answer to the probe (a WINS, which every KCP peer sends at its next
//! flush) proves it receives at its address and creates the session, which then takes the
//! kept datagrams, in the order they came, and queues for [`accept`](Endpoint::accept).
//! A datagram is kept as the demux layers opened it, so the session's inner layers open it
//! then as if it had just arrived: its FEC layer knows every shard of the first groups (and
//! their parity, kept too), and rebuilds none that arrived. Without inner layers, or when a
//! datagram does not fit whole, only its new PUSH segments are kept. Entries are bounded by
//! [`max_half_open`](EndpointConfig::max_half_open) and
//! [`max_half_open_per_host`](EndpointConfig::max_half_open_per_host) (hosts counted per
//! prefix, [`host_prefix_v4`](EndpointConfig::host_prefix_v4) and
//! [`host_prefix_v6`](EndpointConfig::host_prefix_v6); a host whose peers confirmed
//! sessions earns a larger share, up to half the table); when full (or the pool cannot take
//! a new first flight), the oldest entry is evicted once it is
//! [`half_open_min_age_ms`](EndpointConfig::half_open_min_age_ms) old, or as old as its
//! host's peers have been taking to answer (a younger one stays and the new first flight
//! is refused), so a flood of spoofed first flights delays a real peer by at most the round trip
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
//! chunks from the cache, so a busy endpoint does not allocate per packet. Chunks come in two
//! sizes: a segment of up to [`SMALL_CHUNK`](crate::SMALL_CHUNK) payload bytes takes a small
//! one, so small messages cost a tenth of the memory of full segments. A session idle for
//! [`TRIM_AFTER_MS`] also trims its codec layers ([`Codec::trim`](crate::Codec::trim)).

mod addr;
mod admission;
mod application;
mod clock;
mod config;
mod error;
mod event;
mod half_open;
mod input;
mod kept;
mod keyed;
mod lifecycle;
mod memory;
mod migration;
mod replay_record;
mod slot;
mod stats;
mod timers;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt;

pub use addr::PeerAddr;
pub use admission::{first_flight, FirstFlightError};
pub use config::{ControllerFactory, EndpointConfig, LayerFactory, Migration, DEFAULT_RECV_BUDGET};
pub use error::{DropReason, EndpointError};
pub use event::{CloseReason, Event, SessionId};
use half_open::HalfOpen;
use keyed::{Keyed, KeyedMap, SessionIndex};
use migration::Move;
use replay_record::ReplayRecord;
use slot::{Slot, QUEUED, RESCHED_QUEUED};
pub use stats::EndpointStats;
use timers::Timers;

use crate::config::ConfigError;
use crate::session::{Layer, Session};
use crate::storage::ChunkCache;
use crate::time::Millis;

/// Replies to an address that has not confirmed are at most this many times the bytes
/// received from it (anti-amplification).
pub(super) const AMPLIFICATION: u64 = 3;
/// How long a session must stay drained before its codec layers are trimmed
/// ([`Codec::trim`](crate::Codec::trim)): long enough that a session exchanging a message a
/// second does not rebuild its buffers every time.
pub const TRIM_AFTER_MS: u64 = 5_000;
/// Most layers an endpoint opens itself before demultiplexing.
const MAX_DEMUX_LAYERS: usize = 4;

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
    /// Sessions by (address, conversation id): slot numbers, whose keys are compared in
    /// their slots (`keyed/index.rs`).
    by_key: SessionIndex,
    /// The first session routed through a layer that asks for attachment (FEC), per
    /// address: where packets without a conversation id go (see
    /// [`Codec::group`](crate::Codec::group)).
    attach_route: KeyedMap<A, u32>,
    /// Further such sessions on the same address (rare: several conversations on one
    /// socket), kept apart so the common case holds one small entry per address.
    attach_more: BTreeMap<A, Vec<u32>>,
    /// Every attached session that knows its latest data group and shares its address with
    /// another attached session, by address and group: parity from an address with several
    /// FEC sessions finds its session in a range of this set instead of a scan of them all.
    /// A session alone on its address is not in it (its group is in its slot), so the
    /// common case changes nothing here when a new group begins.
    attach_groups: BTreeSet<(A, u32, u32)>,
    closed: BTreeMap<(A, u32), u64>,
    closed_order: VecDeque<((A, u32), u64)>,
    accept_queue: VecDeque<SessionId>,
    /// Half-open entries by (address, conv).
    half: BTreeMap<(A, u32), Box<HalfOpen<A::Host>>>,
    /// Half-open entries by age (serial number), oldest first.
    half_age: BTreeMap<u64, (A, u32)>,
    /// Half-open entries by host, oldest first within a host.
    half_by_host: BTreeSet<(A::Host, u64)>,
    /// Half-open entries per host, and how long the host's peers take to answer a probe.
    half_open_hosts: BTreeMap<A::Host, half_open::HostHalf>,
    /// Recently evicted half-open entries, and refused first flights that were answered
    /// with a probe: when each was opened, so a late answer still teaches its host's answer
    /// time (the answers that come in time are the fast ones) and opens the session.
    half_gone: BTreeMap<(A, u32), half_open::Gone>,
    /// The same keys, oldest first (at most eight times `max_half_open`).
    half_gone_order: VecDeque<(A, u32)>,
    /// Half-open deadlines (at, serial), stale ones skipped.
    half_timers: BinaryHeap<Reverse<(u64, u64)>>,
    /// Half-open entries with a probe to send.
    half_tx: VecDeque<(A, u32)>,
    /// Half-open entries whose peer answered while the accept backlog was full, in the
    /// order the answers came (keys of entries gone since are skipped).
    half_answered: VecDeque<(A, u32)>,
    /// A session waiting for `accept` went: `half_answered` may open now.
    backlog_freed: bool,
    /// Probes sealed for refused first flights (see `half_open::probe_refused`), at most
    /// `half_open::REFUSAL_PROBES`.
    refusal_probes: VecDeque<(A, Vec<u8>)>,
    /// KCP segment bytes all half-open entries keep (within `half_open_pool_bytes`).
    half_pool: usize,
    next_serial: u64,
    /// Confirmed sessions peers opened, per host.
    host_sessions: BTreeMap<A::Host, u32>,
    record: ReplayRecord,
    /// With migration on: every session by (conversation id, index), to find the session a
    /// datagram from a new address belongs to. Empty with migration off.
    by_conv: BTreeSet<(u32, u32)>,
    /// Sessions that moved to an address that has not answered yet, by index.
    moves: BTreeMap<u32, Move<A>>,
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
        let key = Keyed::new(cfg.hash_key);
        Ok(Endpoint {
            cfg,
            demux,
            slots: Vec::new(),
            free: Vec::new(),
            next_gen: 1,
            by_key: SessionIndex::new(key),
            attach_route: keyed::map(key),
            attach_more: BTreeMap::new(),
            attach_groups: BTreeSet::new(),
            closed: BTreeMap::new(),
            closed_order: VecDeque::new(),
            accept_queue: VecDeque::new(),
            half: BTreeMap::new(),
            half_age: BTreeMap::new(),
            half_by_host: BTreeSet::new(),
            half_open_hosts: BTreeMap::new(),
            half_gone: BTreeMap::new(),
            half_gone_order: VecDeque::new(),
            half_timers: BinaryHeap::new(),
            half_tx: VecDeque::new(),
            half_answered: VecDeque::new(),
            backlog_freed: false,
            refusal_probes: VecDeque::new(),
            half_pool: 0,
            next_serial: 0,
            host_sessions: BTreeMap::new(),
            record,
            by_conv: BTreeSet::new(),
            moves: BTreeMap::new(),
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
        let slot = Slot::new(session, addr, conv, gen, t);
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
        self.by_key.insert(&self.slots, idx);
        if self.cfg.migration.is_on() {
            self.by_conv.insert((conv, idx));
        }
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
}
