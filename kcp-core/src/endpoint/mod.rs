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
//!   [`recv`](Endpoint::recv), [`connect`](Endpoint::connect), [`shutdown`](Endpoint::shutdown)
//!   ...): drain [`poll_transmit`](Endpoint::poll_transmit) until `None`, then
//!   [`poll_event`](Endpoint::poll_event) until `None` (readable, writable, closed), then ask
//!   `poll_timeout` again.
//!
//! # Codec layers and demultiplexing
//!
//! With encryption the conversation id is only visible after decryption. The endpoint
//! therefore owns one instance of the outer layers (`EndpointConfig::demux_layers`, e.g. the
//! crypto layer) and opens every datagram with it before demultiplexing; each session owns a
//! full stack of its own for sending and for the inner layers (FEC), built by the layer
//! factory, so sessions never share mutable codec state. FEC parity datagrams carry no
//! conversation id: they go to the session that last received an FEC data datagram from the
//! same address.

mod stats;
mod timers;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::fmt;

pub use stats::EndpointStats;
use timers::Timers;

use crate::codec::{CodecError, Route};
use crate::config::{Config, ConfigError};
use crate::engine::{RecvError, SendError};
use crate::session::{Layer, Session, SessionError};
use crate::time::Millis;
use crate::wire::HEADER_LEN;

/// Builds a fresh codec stack (innermost first), for a session or for the endpoint itself.
pub type LayerFactory = Box<dyn FnMut() -> Vec<Layer> + Send>;

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
    /// How long a closed (address, conv) is remembered so its late datagrams do not create a
    /// phantom session (kcp-spec H8).
    pub closed_linger_ms: u32,
    /// A session a peer opened is *half-open* until the peer sends a second valid datagram
    /// (the endpoint asks it to, with a window probe); it is closed
    /// ([`CloseReason::Unconfirmed`]) if that does not happen within this time. Default 5 s.
    pub half_open_timeout_ms: u32,
    /// Most half-open sessions at once; further first datagrams are refused (counted) until
    /// some are confirmed or reaped. Default 1024.
    pub max_half_open: usize,
    /// Most half-open sessions per source host (IP address, whatever the port). Default 64.
    pub max_half_open_per_host: usize,
    /// Close a session a peer opened if the application has not accepted it after this long
    /// ([`CloseReason::NotAccepted`]; `None`: wait for ever). Default 10 s.
    pub accept_timeout_ms: Option<u32>,
    /// Bytes of payload buffers the endpoint keeps for its sessions to reuse after they drain
    /// (an idle session holds none). Beyond this, drained buffers go back to the allocator.
    /// Default 4 MiB.
    pub pool_bytes: usize,
}

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
            closed_linger_ms: 10_000,
            half_open_timeout_ms: 5_000,
            max_half_open: 1_024,
            max_half_open_per_host: 64,
            accept_timeout_ms: Some(10_000),
            pool_bytes: 4 << 20,
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
            .field("half_open_timeout_ms", &self.half_open_timeout_ms)
            .field("max_half_open", &self.max_half_open)
            .field("max_half_open_per_host", &self.max_half_open_per_host)
            .field("accept_timeout_ms", &self.accept_timeout_ms)
            .field("pool_bytes", &self.pool_bytes)
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
}

impl PeerAddr for core::net::SocketAddr {
    type Host = core::net::IpAddr;
    fn host(&self) -> core::net::IpAddr {
        self.ip()
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
    /// A session a peer opened never got past half-open: the peer did not speak again
    /// within `half_open_timeout_ms` of its first datagram (a spoofed source, or a peer that
    /// vanished at once).
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
    /// The accept backlog or session limit is full.
    Refused,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The write side is shut down; reading goes on.
    WriteClosed,
    /// Shutting down; closed when idle or at the deadline (elapsed ms).
    Draining(u64),
    /// Closed by the application: sends what it owes (ACKs) once, then goes.
    Closing,
}

struct Slot<A> {
    session: Session<'static>,
    addr: A,
    conv: u32,
    gen: u32,
    state: State,
    last_heard: u64,
    readable: bool,
    writable: bool,
    queued: bool,
}

/// Many sessions on one socket: demultiplexing, accepting, timers, stats. `A` is the address
/// type (`std::net::SocketAddr` in the adapters).
pub struct Endpoint<A> {
    cfg: EndpointConfig,
    demux: Vec<Layer>,
    slots: Vec<Option<Slot<A>>>,
    free: Vec<u32>,
    next_gen: u32,
    by_key: BTreeMap<(A, u32), u32>,
    /// The session last routed through a layer that asks for attachment, per address.
    attach_route: BTreeMap<A, u32>,
    closed: BTreeMap<(A, u32), u64>,
    closed_order: VecDeque<((A, u32), u64)>,
    accept_queue: VecDeque<SessionId>,
    dirty: VecDeque<u32>,
    events: VecDeque<Event>,
    timers: Timers,
    last_now: Option<Millis>,
    elapsed: u64,
    stats: EndpointStats,
    retired: EndpointStats,
}

impl<A> fmt::Debug for Endpoint<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("sessions", &self.by_key.len())
            .field("accept_queue", &self.accept_queue.len())
            .finish_non_exhaustive()
    }
}

/// Most layers an endpoint opens itself before demultiplexing.
const MAX_DEMUX_LAYERS: usize = 4;

/// Where the codec stack said a datagram belongs.
enum Routed {
    /// The KCP datagram lies at this range; `attach` when a layer asked to remember the
    /// address's session for packets without a conversation id.
    Conv { conv: u32, attach: bool },
    /// No conversation id (FEC parity): the session last routed from the same address.
    Attach,
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
        Ok(Endpoint {
            cfg,
            demux,
            slots: Vec::new(),
            free: Vec::new(),
            next_gen: 1,
            by_key: BTreeMap::new(),
            attach_route: BTreeMap::new(),
            closed: BTreeMap::new(),
            closed_order: VecDeque::new(),
            accept_queue: VecDeque::new(),
            dirty: VecDeque::new(),
            events: VecDeque::new(),
            timers: Timers::default(),
            last_now: None,
            elapsed: 0,
            stats: EndpointStats::default(),
            retired: EndpointStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// Milliseconds since the endpoint first saw a time (monotonic, never wraps).
    fn tick(&mut self, now: Millis) -> u64 {
        if let Some(last) = self.last_now {
            let d = now.since(last);
            if d > 0 {
                self.elapsed += d as u64;
                self.last_now = Some(now);
            }
        } else {
            self.last_now = Some(now);
        }
        self.elapsed
    }

    fn to_millis(&self, at: u64) -> Millis {
        let base = self.last_now.unwrap_or(Millis(0));
        base + (at.saturating_sub(self.elapsed).min(u32::MAX as u64 / 2) as u32)
    }

    /// Opens a session to `addr` with conversation id `conv` (kcp-go's `NewConn3`).
    pub fn connect(&mut self, now: Millis, addr: A, conv: u32) -> Result<SessionId, EndpointError> {
        let t = self.tick(now);
        if self.by_key.contains_key(&(addr, conv)) {
            return Err(EndpointError::Duplicate);
        }
        if self.by_key.len() >= self.cfg.max_sessions {
            return Err(EndpointError::TooManySessions);
        }
        let id = self
            .create(now, t, addr, conv)
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
    ) -> Result<SessionId, ConfigError> {
        let session = Session::new(conv, self.cfg.session, (self.cfg.layers)(), now)?;
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let slot = Slot {
            session,
            addr,
            conv,
            gen,
            state: State::Open,
            last_heard: t,
            readable: false,
            writable: true,
            queued: false,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
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
            .as_ref()
            .filter(|s| s.gen == id.gen)
    }

    fn slot_mut(&mut self, id: SessionId) -> Option<&mut Slot<A>> {
        self.slots
            .get_mut(id.idx as usize)?
            .as_mut()
            .filter(|s| s.gen == id.gen)
    }

    fn mark(&mut self, idx: u32) {
        if let Some(Some(s)) = self.slots.get_mut(idx as usize) {
            if !s.queued {
                s.queued = true;
                self.dirty.push_back(idx);
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
            if self.slot(id).is_some() {
                return Some(id);
            }
        }
        None
    }

    /// Queues data on a session (see [`Kcp::send`](crate::Kcp::send)).
    pub fn send(&mut self, id: SessionId, data: &[u8]) -> Result<usize, EndpointError> {
        let slot = self.slot_mut(id).ok_or(EndpointError::UnknownSession)?;
        match slot.state {
            State::Open => {}
            State::WriteClosed | State::Draining(_) => return Err(EndpointError::WriteClosed),
            State::Closing => return Err(EndpointError::UnknownSession),
        }
        let r = slot
            .session
            .kcp_mut()
            .send(data)
            .map_err(EndpointError::Send);
        if r.is_err() {
            slot.writable = false;
        }
        self.mark(id.idx);
        r
    }

    /// Reads from a session (see [`Kcp::recv`](crate::Kcp::recv)).
    pub fn recv(&mut self, id: SessionId, buf: &mut [u8]) -> Result<usize, EndpointError> {
        let slot = self.slot_mut(id).ok_or(EndpointError::UnknownSession)?;
        let r = slot
            .session
            .kcp_mut()
            .recv(buf)
            .map_err(EndpointError::Recv);
        if let Err(EndpointError::Recv(RecvError::WouldBlock)) = r {
            slot.readable = false;
        }
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
        slot.state = State::Closing;
        slot.session.kcp_mut().flush();
        self.mark(id.idx);
        Ok(())
    }

    fn remove(&mut self, idx: u32, reason: CloseReason) {
        let Some(slot) = self.slots.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        let key = (slot.addr, slot.conv);
        self.by_key.remove(&key);
        if self.attach_route.get(&slot.addr) == Some(&idx) {
            self.attach_route.remove(&slot.addr);
        }
        self.retired.absorb_session(&slot.session);
        let until = self.elapsed + self.cfg.closed_linger_ms as u64;
        self.closed.insert(key, until);
        self.closed_order.push_back((key, until));
        while self.closed_order.len() > 4 * self.cfg.max_sessions.max(1024) {
            if let Some((k, u)) = self.closed_order.pop_front() {
                if self.closed.get(&k) == Some(&u) {
                    self.closed.remove(&k);
                }
            }
        }
        self.free.push(idx);
        self.stats.curr_estab = self.by_key.len() as u64;
        self.events
            .push_back(Event::Closed(SessionId { idx, gen: slot.gen }, reason));
    }

    /// Processes one datagram from `from`. Dropped datagrams are counted and reported.
    pub fn handle_datagram(
        &mut self,
        now: Millis,
        from: A,
        datagram: &mut [u8],
    ) -> Result<(), EndpointError> {
        let t = self.tick(now);
        self.stats.in_pkts += 1;
        self.stats.in_bytes += datagram.len() as u64;
        // Open the outer layers (crypto) with the endpoint's own instances, outermost first,
        // remembering each opened packet for the session's instances.
        let total = self.demux.len();
        let first_demux = total - self.cfg.demux_layers;
        let mut opened: [(usize, usize, usize, usize); MAX_DEMUX_LAYERS] =
            [(0, 0, 0, 0); MAX_DEMUX_LAYERS];
        let mut range = 0..datagram.len();
        for (k, i) in (first_demux..total).rev().enumerate() {
            let part = datagram.get_mut(range.clone()).unwrap_or(&mut []);
            match self.demux[i].demux_open(part, now) {
                Ok(Some(inner)) => {
                    if let Some(o) = opened.get_mut(k) {
                        *o = (range.start, range.end, inner.start, inner.end);
                    }
                    range = range.start + inner.start..range.start + inner.end;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    if e == CodecError::Integrity {
                        self.stats.in_csum_errors += 1;
                    } else {
                        self.stats.in_errs += 1;
                    }
                    return Err(EndpointError::Rejected(DropReason::Codec(e)));
                }
            }
        }
        let plain_range = range.clone();
        // Ask the inner layers where the KCP datagram lies.
        let routed = match self.route(first_demux, datagram.get(range).unwrap_or(&[])) {
            Ok(r) => r,
            Err(reason) => {
                self.stats.in_errs += 1;
                return Err(EndpointError::Rejected(reason));
            }
        };
        let idx = match routed {
            Routed::Attach => match self.attach_route.get(&from) {
                Some(&i) => i,
                None => {
                    self.stats.in_errs += 1;
                    return Err(EndpointError::Rejected(DropReason::NoSession));
                }
            },
            Routed::Conv { conv, attach } => {
                let idx = match self.by_key.get(&(from, conv)) {
                    Some(&i) => i,
                    None => self.admit(now, t, from, conv)?,
                };
                if attach {
                    self.attach_route.insert(from, idx);
                }
                idx
            }
        };
        let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
            return Err(EndpointError::Rejected(DropReason::NoSession));
        };
        // The session's own instances of the opened layers see what was opened (replay
        // windows live there).
        let mut r = Ok(());
        for (k, i) in (first_demux..total).rev().enumerate() {
            let Some(&(ps, pe, is, ie)) = opened.get(k) else {
                break;
            };
            let packet = datagram.get(ps..pe).unwrap_or(&[]);
            r = slot.session.accept_demuxed(i, packet, is..ie, now);
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() {
            let plain = datagram.get_mut(plain_range).unwrap_or(&mut []);
            r = slot.session.input_opened(now, plain, self.cfg.demux_layers);
        }
        if r.is_ok() {
            slot.last_heard = t;
        }
        self.after_io(idx);
        r.map_err(|e| EndpointError::Rejected(DropReason::Session(e)))
    }

    /// Finds the conversation of a datagram whose outer layers are open: layers
    /// `..first_demux` (innermost first) are asked, outermost first, where their inner packet
    /// lies; the KCP datagram then carries the conversation id in its first four bytes.
    fn route(&self, first_demux: usize, plain: &[u8]) -> Result<Routed, DropReason> {
        let mut range = 0..plain.len();
        let mut attach = false;
        for layer in self.demux[..first_demux].iter().rev() {
            let part = plain.get(range.clone()).unwrap_or(&[]);
            match layer.route(part).map_err(DropReason::Codec)? {
                Route::Inner(inner) => {
                    if inner.start > inner.end || inner.end > part.len() {
                        return Err(DropReason::Codec(CodecError::Malformed));
                    }
                    if inner != (0..part.len()) {
                        attach = true;
                    }
                    range = range.start + inner.start..range.start + inner.end;
                }
                Route::Attach => return Ok(Routed::Attach),
            }
        }
        let kcp = plain.get(range).unwrap_or(&[]);
        if kcp.len() < HEADER_LEN {
            return Err(DropReason::Short);
        }
        let conv = u32::from_le_bytes([kcp[0], kcp[1], kcp[2], kcp[3]]);
        Ok(Routed::Conv { conv, attach })
    }

    /// Decides about a datagram for an unknown (address, conv).
    fn admit(&mut self, now: Millis, t: u64, from: A, conv: u32) -> Result<u32, EndpointError> {
        if let Some(&until) = self.closed.get(&(from, conv)) {
            if t < until {
                self.stats.in_errs += 1;
                return Err(EndpointError::Rejected(DropReason::RecentlyClosed));
            }
            self.closed.remove(&(from, conv));
        }
        if !self.cfg.accept {
            self.stats.in_errs += 1;
            return Err(EndpointError::Rejected(DropReason::NoSession));
        }
        if self.accept_queue.len() >= self.cfg.backlog || self.by_key.len() >= self.cfg.max_sessions
        {
            self.stats.refused += 1;
            return Err(EndpointError::Rejected(DropReason::Refused));
        }
        let id = self
            .create(now, t, from, conv)
            .map_err(EndpointError::Config)?;
        self.stats.passive_opens += 1;
        self.accept_queue.push_back(id);
        self.events.push_back(Event::Incoming);
        Ok(id.idx)
    }

    /// Readiness edges after a session processed something; it then has output to drain.
    fn after_io(&mut self, idx: u32) {
        self.after_io_quiet(idx);
        self.mark(idx);
    }

    /// Runs every session timer due at `now`, and idle and shutdown deadlines.
    pub fn handle_timeout(&mut self, now: Millis) {
        let t = self.tick(now);
        while let Some(idx) = self.timers.pop_due(t) {
            let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
                continue;
            };
            slot.session.kcp_mut().handle_timeout(now);
            self.mark(idx);
        }
    }

    /// When `handle_timeout` is next needed; `None` when no session needs the clock.
    pub fn poll_timeout(&mut self) -> Option<Millis> {
        // Sessions changed since the last call may have new deadlines.
        self.flush_dirty_timers();
        self.timers.next().map(|t| self.to_millis(t))
    }

    fn flush_dirty_timers(&mut self) {
        for i in 0..self.dirty.len() {
            if let Some(&idx) = self.dirty.get(i) {
                self.reschedule(idx);
            }
        }
    }

    /// Recomputes one session's deadline: its engine timer, its idle timeout, its shutdown.
    fn reschedule(&mut self, idx: u32) {
        let elapsed = self.elapsed;
        let base = self.last_now.unwrap_or(Millis(0));
        let idle = self.cfg.idle_timeout_ms;
        let Some(Some(slot)) = self.slots.get(idx as usize) else {
            self.timers.cancel(idx);
            return;
        };
        let mut at = slot
            .session
            .kcp()
            .poll_timeout()
            .map(|m| elapsed + m.since(base).max(0) as u64);
        let mut consider = |d: u64| at = Some(at.map_or(d, |a: u64| a.min(d)));
        if let Some(ms) = idle {
            consider(slot.last_heard + ms as u64);
        }
        if let State::Draining(deadline) = slot.state {
            consider(deadline);
        }
        match at {
            Some(at) => self.timers.set(idx, at),
            None => self.timers.cancel(idx),
        }
    }

    /// Checks lifecycle conditions of one session; returns false if it was removed.
    fn check_lifecycle(&mut self, idx: u32) -> bool {
        let t = self.elapsed;
        let idle = self.cfg.idle_timeout_ms;
        let Some(Some(slot)) = self.slots.get(idx as usize) else {
            return false;
        };
        let kcp = slot.session.kcp();
        if slot.state == State::Closing {
            return true;
        }
        let reason = if kcp.is_dead() {
            Some(CloseReason::DeadLink)
        } else if idle.is_some_and(|ms| t >= slot.last_heard + ms as u64) {
            Some(CloseReason::IdleTimeout)
        } else if let State::Draining(deadline) = slot.state {
            if kcp.is_idle() {
                Some(CloseReason::Shutdown)
            } else if t >= deadline {
                Some(CloseReason::ShutdownTimeout)
            } else {
                None
            }
        } else {
            None
        };
        match reason {
            Some(r) => {
                self.timers.cancel(idx);
                self.remove(idx, r);
                false
            }
            None => true,
        }
    }

    /// The next datagram to send and its destination. Drain it after every call that changes
    /// the endpoint; `buf` must hold the MTU.
    pub fn poll_transmit(&mut self, now: Millis, buf: &mut [u8]) -> Option<(A, usize)> {
        let stride = buf.len();
        let mut len = [0usize; 1];
        let (to, n) = self.poll_transmit_strided(now, buf, stride, &mut len)?;
        (n == 1).then_some((to, len[0]))
    }

    /// Up to `lens.len()` datagrams to one destination at once (see
    /// [`Session::poll_transmit_strided`]): datagram `i` in `buf[i * stride..]`, its length in
    /// `lens[i]`. Returns the destination and how many; `None` when nothing is left to send.
    pub fn poll_transmit_strided(
        &mut self,
        now: Millis,
        buf: &mut [u8],
        stride: usize,
        lens: &mut [usize],
    ) -> Option<(A, usize)> {
        self.tick(now);
        while let Some(&idx) = self.dirty.front() {
            let alive = self.check_lifecycle(idx);
            if alive {
                let mut closing = false;
                if let Some(Some(slot)) = self.slots.get_mut(idx as usize) {
                    let n = slot.session.poll_transmit_strided(now, buf, stride, lens);
                    if n > 0 {
                        self.stats.out_pkts += n as u64;
                        self.stats.out_bytes += lens[..n].iter().sum::<usize>() as u64;
                        return Some((slot.addr, n));
                    }
                    closing = slot.state == State::Closing;
                }
                if closing {
                    self.timers.cancel(idx);
                    self.remove(idx, CloseReason::Closed);
                } else {
                    self.reschedule(idx);
                    self.after_io_quiet(idx);
                }
            }
            self.dirty.pop_front();
            if let Some(Some(slot)) = self.slots.get_mut(idx as usize) {
                slot.queued = false;
            }
        }
        None
    }

    /// Readiness edges without re-marking the session dirty.
    fn after_io_quiet(&mut self, idx: u32) {
        let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let id = SessionId { idx, gen: slot.gen };
        let kcp = slot.session.kcp();
        let readable = kcp.peek_size().is_some();
        let writable = slot.state == State::Open && kcp.is_writable();
        if readable && !slot.readable {
            self.events.push_back(Event::Readable(id));
        }
        if writable && !slot.writable {
            self.events.push_back(Event::Writable(id));
        }
        slot.readable = readable;
        slot.writable = writable;
    }

    /// The next event (readable, writable, incoming, closed).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// kcp-go's SNMP counters for the whole endpoint: its own packet counters plus the sum of
    /// every live and ended session's.
    pub fn stats(&self) -> EndpointStats {
        let mut s = self.stats;
        s.add(&self.retired);
        for slot in self.slots.iter().flatten() {
            s.absorb_session(&slot.session);
        }
        s
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
