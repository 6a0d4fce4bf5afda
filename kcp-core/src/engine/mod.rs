//! The KCP engine: ARQ state, the application side (send, recv) and scheduling.
//!
//! * [`input`](Kcp::input) takes a received datagram;
//! * [`poll_transmit`](Kcp::poll_transmit) hands out the next datagram to send;
//! * [`poll_timeout`](Kcp::poll_timeout) / [`handle_timeout`](Kcp::handle_timeout) drive the
//!   timer;
//! * [`send`](Kcp::send), [`recv`](Kcp::recv) and [`peek_size`](Kcp::peek_size) are the
//!   application side.
//!
//! The input path lives in `input.rs`, flush decisions and datagram assembly in `flush.rs`.

mod buffers;
mod flush;
mod input;

use core::fmt;

pub use buffers::{AckEntry, Buffers, RecvSlot, SendSlot, StaticBuffers};

use crate::config::{Config, ConfigError, MAX_FRAGMENTS};
use crate::congestion::Congestion;
use crate::stats::Stats;
#[cfg(feature = "alloc")]
use crate::storage::{ChunkCache, MIN_RING};
use crate::storage::{ChunkId, Managed, Pool, SeqRing};
use crate::time::{seq_diff, Millis, STALE_MS};
use crate::wire::WireError;

pub(crate) const NO_CHUNK: ChunkId = ChunkId::MAX;
const RTO_MAX: u32 = 60_000;
const PROBE_INIT: u32 = 7_000;
/// Shortest wait before the first zero-window probe.
const PROBE_FIRST: u32 = 200;
const PROBE_LIMIT: u32 = 120_000;
pub(crate) const ASK_SEND: u8 = 1;
pub(crate) const ASK_TELL: u8 = 2;

/// Largest segment payload the heap-backed engine stores: a 1500-byte MTU minus the header, so
/// segments from any kcp-go peer fit whatever MTU it was configured with.
#[cfg(feature = "alloc")]
pub const HEAP_CHUNK: usize = crate::config::MAX_MTU as usize - crate::wire::HEADER_LEN;

/// Why `send` did not queue data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Nothing to send: an empty buffer (KCP cannot carry empty messages; see kcp-spec H6).
    Empty,
    /// The message needs more than 255 fragments (message mode).
    TooLarge {
        /// Fragments the message would need.
        fragments: usize,
    },
    /// The send queue (or payload storage) is full; retry after `poll_transmit` and `input`
    /// have drained it. Nothing was queued.
    Full,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Empty => write!(f, "empty send"),
            SendError::TooLarge { fragments } => write!(
                f,
                "message needs {fragments} fragments, at most {MAX_FRAGMENTS} allowed"
            ),
            SendError::Full => write!(f, "send queue full"),
        }
    }
}

impl core::error::Error for SendError {}

/// Why `recv` returned no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// No complete message (message mode) or no byte (stream mode) is ready.
    WouldBlock,
    /// The next message is longer than the buffer (message mode); nothing was consumed.
    BufferTooSmall {
        /// Size of the next message.
        needed: usize,
    },
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::WouldBlock => write!(f, "no data ready"),
            RecvError::BufferTooSmall { needed } => {
                write!(f, "next message needs a buffer of {needed} bytes")
            }
        }
    }
}

impl core::error::Error for RecvError {}

/// Why `input` rejected (the rest of) a datagram. Segments before the bad one stay applied,
/// as in kcp-go and ikcp.c; every rejection is counted in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// The datagram or a segment is malformed.
    Wire(WireError),
    /// A segment belongs to another conversation.
    ConvMismatch {
        /// This engine's conversation id.
        expected: u32,
        /// The segment's.
        found: u32,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Wire(e) => write!(f, "malformed datagram: {e}"),
            InputError::ConvMismatch { expected, found } => {
                write!(f, "conversation {found:#x} is not {expected:#x}")
            }
        }
    }
}

impl core::error::Error for InputError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            InputError::Wire(e) => Some(e),
            InputError::ConvMismatch { .. } => None,
        }
    }
}

impl From<WireError> for InputError {
    fn from(e: WireError) -> Self {
        InputError::Wire(e)
    }
}

/// What the next flush has to do; later requests only widen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pending {
    None,
    /// ACKs only (ack-no-delay input).
    AckOnly,
    /// Everything (send, window slide).
    Full,
    /// Everything, and the periodic timer is rescheduled from its result.
    Timer,
}

/// One KCP conversation: the ARQ state machine of kcp-go v5.6.1, sans IO.
///
/// # Driving it
///
/// The engine never reads a clock or touches a socket. After **every** call to
/// [`input`](Self::input), [`handle_timeout`](Self::handle_timeout), [`send`](Self::send) or
/// [`recv`](Self::recv), call [`poll_transmit`](Self::poll_transmit) until it returns `None`
/// and send each datagram; then ask [`poll_timeout`](Self::poll_timeout) when to call
/// `handle_timeout` next. Between those instants the engine needs nothing: it costs no CPU.
///
/// ```
/// use kcp_core::{Config, Kcp, Millis};
///
/// let now = Millis(0);
/// let mut a = Kcp::new(7, Config::fast3(), now).unwrap();
/// let mut b = Kcp::new(7, Config::fast3(), now).unwrap();
/// a.send(b"hello").unwrap();
/// let mut buf = [0u8; 1500];
/// while let Some(n) = a.poll_transmit(now, &mut buf) {
///     b.input(now, &buf[..n]).unwrap();
/// }
/// let mut out = [0u8; 16];
/// let n = b.recv(&mut out).unwrap();
/// assert_eq!(&out[..n], b"hello");
/// ```
///
/// # Storage
///
/// [`Kcp::new`] (feature `alloc`) keeps its buffers on the heap, growing with the data in flight
/// up to bounds derived from the windows; [`Kcp::with_buffers`] runs on caller-provided memory
/// (for example a [`StaticBuffers`]) and never allocates. Both run the same code.
pub struct Kcp<'a> {
    conv: u32,
    cfg: Config,
    mss: u32,

    // Send side: queued and in-flight segments in one ring; its base is `snd_una`.
    snd: SeqRing<'a, SendSlot>,
    snd_nxt: u32,
    // In-flight, unacknowledged segments, linked in sequence order.
    ua_head: Option<u32>,
    ua_tail: Option<u32>,
    /// Unacknowledged segments with `fastack > 0` (fast or early retransmit candidates).
    fast_candidates: u32,
    /// No unacknowledged segment times out before this instant (a lower bound).
    rto_bound: Option<Millis>,
    txq: SeqRing<'a, u32>,

    // Receive side: queued (ready) then windowed slots; its base is the first queued sn.
    rcv: SeqRing<'a, RecvSlot>,
    rcv_nxt: u32,
    rcv_off: usize,
    acks: SeqRing<'a, AckEntry>,
    ack_budget: usize,

    pool: Pool<'a>,

    srtt: i32,
    rttvar: i32,
    rx_rto: u32,
    rmt_wnd: u32,
    cc: Congestion<'a>,
    probe: u8,
    emit_probe: u8,
    last_ack: (u32, u32),
    ts_probe: Millis,
    probe_wait: u32,
    dead: bool,
    timer: Option<Millis>,
    /// The last instant the periodic timer was scheduled for; re-arming after an idle spell
    /// keeps kcp-go's phase (ticks every `interval` from here).
    timer_anchor: Millis,
    /// The rate limit's token bucket, in thousandths of a byte, and when it was last filled.
    rate_tokens: i64,
    rate_at: Millis,
    pending: Pending,
    /// Newest `ts` of a regular PUSH, to tell stale FEC-rebuilt segments (see `on_push`).
    newest_push_ts: Option<u32>,
    /// The latest `now` the engine was given, to notice a clock that wrapped past 2^31 ms.
    last_now: Millis,
    stats: Stats,
}

impl fmt::Debug for Kcp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kcp")
            .field("conv", &self.conv)
            .field("snd_una", &self.snd.base())
            .field("snd_nxt", &self.snd_nxt)
            .field("rcv_nxt", &self.rcv_nxt)
            .field("rx_rto", &self.rx_rto)
            .field("srtt", &self.srtt)
            .field("rmt_wnd", &self.rmt_wnd)
            .field("wait_snd", &self.wait_snd())
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "alloc")]
impl Kcp<'static> {
    /// A heap-backed engine for conversation `conv`, created at `now`.
    ///
    /// Buffers start empty and grow with the data in flight, bounded by the configured windows
    /// (send: `snd_wnd + send_queue` segments; receive: `2 * rcv_wnd`), then are reused: a
    /// steady-state transfer allocates nothing.
    pub fn new(conv: u32, config: Config, now: Millis) -> Result<Self, ConfigError> {
        use alloc::vec::Vec;
        config.validate()?;
        let snd_max = config.send_capacity();
        let rcv_max = config.recv_capacity();
        Ok(Kcp::build(
            conv,
            config,
            now,
            SeqRing::new(Managed::Owned(Vec::new()), 0, snd_max),
            SeqRing::new(Managed::Owned(Vec::new()), 0, rcv_max),
            SeqRing::new(Managed::Owned(Vec::new()), 0, config.ack_capacity()),
            SeqRing::new(Managed::Owned(Vec::new()), 0, snd_max),
            Pool::heap(snd_max + rcv_max),
        ))
    }
}

impl<'a> Kcp<'a> {
    /// An engine on caller-provided memory; it never allocates.
    ///
    /// The receive slots must cover `2 * rcv_wnd`, the send slots at least `snd_wnd`, and the
    /// payload chunks must hold a full segment (`mss` bytes).
    pub fn with_buffers(
        conv: u32,
        config: Config,
        now: Millis,
        buffers: Buffers<'a>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if buffers.send.len() < config.snd_wnd as usize {
            return Err(ConfigError::Storage("send slots fewer than snd_wnd"));
        }
        if buffers.recv.len() < config.recv_capacity() {
            return Err(ConfigError::Storage("receive slots fewer than 2 * rcv_wnd"));
        }
        if buffers.transmit.len() < buffers.send.len() {
            return Err(ConfigError::Storage(
                "transmit queue shorter than send slots",
            ));
        }
        if buffers.acks.is_empty() {
            return Err(ConfigError::Storage("no ACK list"));
        }
        if buffers.chunk_len < config.mss() as usize {
            return Err(ConfigError::Storage("payload chunk smaller than the MSS"));
        }
        let chunks = buffers.arena.len() / buffers.chunk_len.max(1);
        if chunks == 0 || buffers.free.len() < chunks {
            return Err(ConfigError::Storage(
                "payload arena empty or free list short",
            ));
        }
        Ok(Kcp::build(
            conv,
            config,
            now,
            SeqRing::new(Managed::Borrowed(buffers.send), 0, 0),
            SeqRing::new(Managed::Borrowed(buffers.recv), 0, 0),
            SeqRing::new(Managed::Borrowed(buffers.acks), 0, 0),
            SeqRing::new(Managed::Borrowed(buffers.transmit), 0, 0),
            Pool::borrowed(buffers.arena, buffers.free, buffers.chunk_len),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        conv: u32,
        cfg: Config,
        now: Millis,
        snd: SeqRing<'a, SendSlot>,
        rcv: SeqRing<'a, RecvSlot>,
        acks: SeqRing<'a, AckEntry>,
        txq: SeqRing<'a, u32>,
        pool: Pool<'a>,
    ) -> Self {
        Kcp {
            conv,
            mss: cfg.mss(),
            snd,
            snd_nxt: 0,
            ua_head: None,
            ua_tail: None,
            fast_candidates: 0,
            rto_bound: None,
            txq,
            rcv,
            rcv_nxt: 0,
            rcv_off: 0,
            acks,
            ack_budget: 0,
            pool,
            srtt: 0,
            rttvar: 0,
            rx_rto: 200,
            rmt_wnd: 32,
            cc: Congestion::for_nc(cfg.nc),
            probe: 0,
            emit_probe: 0,
            last_ack: (0, 0),
            ts_probe: Millis(0),
            probe_wait: 0,
            dead: false,
            // kcp-go schedules the first timer flush at session creation.
            timer: Some(now),
            timer_anchor: now,
            rate_tokens: rate_bucket(&cfg),
            rate_at: now,
            pending: Pending::None,
            newest_push_ts: None,
            last_now: now,
            stats: Stats::default(),
            cfg,
        }
    }

    /// Starts sequence numbers at `sn` on both sides (they are `0` by default, as in kcp-go).
    /// Only for tests of wrap-around: both peers must agree, and nothing may have been sent or
    /// received yet (otherwise this does nothing and returns `false`).
    pub fn set_initial_sequence(&mut self, sn: u32) -> bool {
        if !self.snd.is_empty() || !self.rcv.is_empty() || self.rcv_nxt != self.rcv.base() {
            return false;
        }
        self.snd.reset(sn);
        self.snd_nxt = sn;
        self.rcv.reset(sn);
        self.rcv_nxt = sn;
        true
    }

    /// Changes settings at run time (kcp-go's `NoDelay`, `WndSize`, `SetACKNoDelay`,
    /// `SetWriteDelay`, `SetMtu`...). Header and trailer room and stream mode are fixed at
    /// creation; an MTU change is refused while queued segments would not fit it. With
    /// caller-provided buffers, windows cannot grow beyond what the buffers hold. Nothing
    /// changes when an error is returned.
    pub fn reconfigure(&mut self, config: Config) -> Result<(), ConfigError> {
        config.validate()?;
        let c = &self.cfg;
        if config.header_room != c.header_room
            || config.trailer_room != c.trailer_room
            || config.stream != c.stream
        {
            return Err(ConfigError::Storage(
                "codec room and stream mode are fixed at creation",
            ));
        }
        let mss = config.mss();
        if mss != self.mss {
            // A new MTU applies to segments queued from now on; segments already queued must
            // still fit in a datagram, and payload chunks must hold the new segment size.
            if mss as usize > self.pool.chunk_len() {
                return Err(ConfigError::Storage(
                    "payload chunks smaller than the new MSS",
                ));
            }
            let too_big = (0..self.snd.len())
                .filter_map(|i| self.snd.at(i))
                .any(|seg| !seg.acked && seg.len as u32 > mss);
            if too_big {
                return Err(ConfigError::Storage(
                    "queued segments exceed the new MSS; retry once they are acknowledged",
                ));
            }
        }
        let snd = (config.snd_wnd + config.send_queue) as usize;
        let rcv = 2 * config.rcv_wnd as usize;
        if self.snd.max_len() < snd && !self.snd.set_max(snd)
            || self.rcv.max_len() < rcv && !self.rcv.set_max(rcv)
            || self.txq.max_len() < snd && !self.txq.set_max(snd)
        {
            return Err(ConfigError::Storage(
                "buffers too small for the new windows",
            ));
        }
        #[cfg(feature = "alloc")]
        {
            self.acks
                .set_max(config.ack_capacity().max(self.acks.max_len()));
        }
        self.pool.set_max(snd + rcv);
        let tell = config.rcv_wnd > c.rcv_wnd;
        if config.nc != c.nc && !self.cc.is_custom() {
            self.cc = Congestion::for_nc(config.nc);
        }
        self.cfg = config;
        self.mss = mss;
        if tell {
            // Tell the peer at once: a peer that saw a full window would otherwise wait for
            // its next probe (kcp-go does not tell after SetWindowSize).
            self.probe |= ASK_TELL;
            self.request(Pending::Full);
        }
        Ok(())
    }

    /// Replaces the congestion controller (see [`congestion`](crate::congestion)); `nc` in the
    /// configuration no longer changes it. The new controller starts from its own state; the
    /// flow-control windows still bound what is sent.
    pub fn set_controller(&mut self, controller: Congestion<'a>) {
        self.cc = controller;
    }

    /// The congestion controller.
    pub fn controller(&self) -> &Congestion<'a> {
        &self.cc
    }

    /// Conversation id.
    pub fn conv(&self) -> u32 {
        self.conv
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Largest segment payload.
    pub fn mss(&self) -> usize {
        self.mss as usize
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Current retransmission timeout in ms (`rx_rto`).
    pub fn rto(&self) -> u32 {
        self.rx_rto
    }

    /// Smoothed RTT in ms (`rx_srtt`), 0 before the first sample.
    pub fn srtt(&self) -> i32 {
        self.srtt
    }

    /// RTT variation in ms (`rx_rttvar`).
    pub fn rttvar(&self) -> i32 {
        self.rttvar
    }

    /// The peer's last advertised receive window, in segments.
    pub fn remote_window(&self) -> u32 {
        self.rmt_wnd
    }

    /// Segments queued or in flight and not yet removed by the peer's `una` (kcp-go `WaitSnd`).
    pub fn wait_snd(&self) -> usize {
        self.snd.len()
    }

    /// Whether an application writer should be let through: kcp-go's `Write` blocks while
    /// `WaitSnd >= snd_wnd` or `WaitSnd >= rmt_wnd`.
    pub fn is_writable(&self) -> bool {
        let w = self.wait_snd() as u32;
        w < self.cfg.snd_wnd && w < self.rmt_wnd && self.snd.spare() > 0
    }

    /// Whether the peer has acknowledged everything that was sent.
    pub fn is_idle(&self) -> bool {
        self.snd.is_empty()
    }

    /// Whether some segment was transmitted `dead_link` times without being acknowledged.
    /// KCP has no close handshake; adapters report this as a dead link.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Payload chunks held (send and receive), a measure of memory in use.
    pub fn buffered_segments(&self) -> usize {
        self.pool.in_use()
    }

    /// Whether the engine holds no data at all: nothing queued, in flight, received but
    /// unread, or waiting to be acknowledged. Then [`release_storage`](Self::release_storage)
    /// can give back everything but a few bytes.
    pub fn is_drained(&self) -> bool {
        self.snd.is_empty() && self.rcv.is_empty() && self.acks.is_empty() && self.txq.is_empty()
    }

    /// Heap bytes the engine holds beyond its own struct: rings and payload chunks (0 on
    /// caller-provided buffers).
    #[cfg(feature = "alloc")]
    pub fn heap_bytes(&self) -> usize {
        self.snd.heap_bytes()
            + self.rcv.heap_bytes()
            + self.acks.heap_bytes()
            + self.txq.heap_bytes()
            + self.pool.heap_bytes()
    }

    /// Moves up to `chunks` payload chunks from `cache` into the engine, so the segments it is
    /// about to store (a datagram's PUSH segments, a `send`) need no allocation. Heap-backed
    /// engines only; a no-op on caller-provided buffers.
    #[cfg(feature = "alloc")]
    pub fn stock_storage(&mut self, cache: &mut ChunkCache, chunks: usize) {
        self.pool.stock(cache, chunks);
    }

    /// Gives the payload chunks the engine does not use to `cache` (no allocation: the
    /// engine's tables keep their size, so data coming back costs none either). Returns the
    /// heap bytes the engine no longer holds. Heap-backed engines only.
    #[cfg(feature = "alloc")]
    pub fn release_storage(&mut self, cache: &mut ChunkCache) -> usize {
        self.pool.release(cache)
    }

    /// When the engine is [drained](Self::is_drained), shrinks its rings and tables to a few
    /// entries, so memory follows the data held rather than the high-water mark of the last
    /// burst; they grow again (allocating) with the next burst, so call it when the session
    /// has been quiet for a while, not after every exchange. Give the chunks back first
    /// ([`release_storage`](Self::release_storage)). Returns the heap bytes freed.
    #[cfg(feature = "alloc")]
    pub fn shrink_storage(&mut self) -> usize {
        if !self.is_drained() {
            return 0;
        }
        self.pool.shrink()
            + self.snd.shrink(MIN_RING)
            + self.rcv.shrink(MIN_RING)
            + self.acks.shrink(MIN_RING)
            + self.txq.shrink(MIN_RING)
    }

    /// Asks the peer for its window (a `WASK` segment at the next flush); a KCP peer answers
    /// with a `WINS`. An endpoint uses it to make a new peer speak again (see
    /// [`Endpoint`](crate::endpoint::Endpoint)'s half-open sessions).
    pub fn ask_window(&mut self) {
        self.probe |= ASK_SEND;
        self.request(Pending::Full);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called; `None` while the
    /// session is idle (nothing to send, acknowledge or probe), until the next `send` or
    /// `input`. Ask again after every call that changes the engine.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timer
    }

    /// Advances the timer: a periodic flush (ACKs, retransmissions, probes) is due when `now`
    /// has reached [`poll_timeout`](Self::poll_timeout). Then drain
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn handle_timeout(&mut self, now: Millis) {
        self.observe(now);
        if let Some(t) = self.timer {
            // The timer is never set more than an interval ahead of the clock; further ahead,
            // the clock has wrapped past it.
            if now.reached(t) || t.since(now) > self.cfg.interval as i32 {
                self.request(Pending::Timer);
            }
        }
    }

    /// Asks for a flush now (ikcp.c's `ikcp_flush`): ACKs, probes, new data and whatever
    /// retransmission is due go out at the next [`poll_transmit`](Self::poll_transmit). The
    /// periodic timer keeps its schedule.
    pub fn flush(&mut self) {
        self.request(Pending::Full);
    }

    /// Notes the caller's clock. Time never goes back: a `now` up to [`STALE_MS`] earlier
    /// than the last one is a caller's stale reading and changes nothing, and one that looks
    /// earlier by more means the wrapping clock moved on by 2^31 ms or more while the engine
    /// was not called (an idle session sleeps with no timer). Every deadline is then
    /// re-anchored on `now`: the timer and retransmissions are due at once, instead of
    /// 2^31 ms away.
    pub(crate) fn observe(&mut self, now: Millis) {
        let d = now.since(self.last_now);
        if d >= 0 {
            self.last_now = now;
            return;
        }
        if d >= -STALE_MS {
            return;
        }
        self.last_now = now;
        self.timer_anchor = now;
        if self.timer.is_some() {
            self.timer = Some(now);
        }
        let mut cur = self.ua_head;
        while let Some(sn) = cur {
            let Some(seg) = self.snd.get_mut(sn) else {
                break;
            };
            seg.resendts = now;
            cur = seg.next;
        }
        if self.ua_head.is_some() {
            self.rto_bound = Some(now);
        }
        if self.probe_wait > 0 {
            self.ts_probe = now;
        }
    }

    pub(crate) fn request(&mut self, p: Pending) {
        if p > self.pending {
            self.pending = p;
        }
    }

    /// Queues `data` for sending.
    ///
    /// Message mode: the whole message is queued (as up to 255 fragments) or nothing is, and
    /// `Ok(data.len())` is returned. Stream mode: as many bytes as fit are queued, merged into
    /// full segments; the count is returned (`Err(Full)` when none fit).
    /// Unless `write_delay` is set, a flush is requested: drain `poll_transmit` afterwards.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        if data.is_empty() {
            return Err(SendError::Empty);
        }
        let mss = self.mss as usize;
        let written = if self.cfg.stream {
            self.send_stream(data, mss)
        } else {
            self.send_message(data, mss)?
        };
        if written == 0 {
            return Err(SendError::Full);
        }
        self.stats.bytes_sent = self.stats.bytes_sent.wrapping_add(written as u64);
        if !self.cfg.write_delay || self.wait_snd() as u32 >= self.cfg.snd_wnd {
            self.request(Pending::Full);
        }
        Ok(written)
    }

    fn send_stream(&mut self, mut data: &[u8], mss: usize) -> usize {
        let mut written = 0;
        // Top up the last queued (not yet transmitted) segment.
        let last = self.snd.end().wrapping_sub(1);
        if !self.snd.is_empty() && seq_diff(last, self.snd_nxt) >= 0 {
            if let Some(seg) = self.snd.get_mut(last) {
                let have = seg.len as usize;
                if have < mss && seg.chunk != NO_CHUNK {
                    let take = (mss - have).min(data.len());
                    let chunk = seg.chunk;
                    seg.len = (have + take) as u16;
                    if let Some(dst) = self.pool.chunk_mut(chunk).get_mut(have..have + take) {
                        dst.copy_from_slice(&data[..take]);
                    }
                    data = &data[take..];
                    written += take;
                }
            }
        }
        while !data.is_empty() {
            let take = mss.min(data.len());
            if !self.push_segment(&data[..take], 0) {
                break;
            }
            data = &data[take..];
            written += take;
        }
        written
    }

    fn send_message(&mut self, data: &[u8], mss: usize) -> Result<usize, SendError> {
        let count = data.len().div_ceil(mss).max(1);
        if count > MAX_FRAGMENTS {
            return Err(SendError::TooLarge { fragments: count });
        }
        if self.snd.spare() < count || self.pool.available() < count || !self.snd.reserve(count) {
            return Err(SendError::Full);
        }
        for (i, piece) in data.chunks(mss).enumerate() {
            let frg = (count - 1 - i) as u8;
            if !self.push_segment(piece, frg) {
                // Unreachable after the checks above; never leave half a message queued.
                return Err(SendError::Full);
            }
        }
        Ok(data.len())
    }

    /// Appends one queued segment; false when storage is exhausted.
    fn push_segment(&mut self, payload: &[u8], frg: u8) -> bool {
        if self.snd.spare() == 0 {
            return false;
        }
        let Some(chunk) = self.pool.take() else {
            return false;
        };
        if let Some(dst) = self.pool.chunk_mut(chunk).get_mut(..payload.len()) {
            dst.copy_from_slice(payload);
        }
        let slot = SendSlot {
            chunk,
            len: payload.len() as u16,
            frg,
            ..SendSlot::EMPTY
        };
        if self.snd.push_back(slot).is_err() {
            self.pool.give(chunk);
            return false;
        }
        true
    }

    /// Size of the next message (message mode) or of the bytes readable from the next segment
    /// (stream mode); `None` when nothing is ready.
    pub fn peek_size(&self) -> Option<usize> {
        if self.cfg.stream {
            let mut sn = self.rcv.base();
            let mut off = self.rcv_off;
            while sn != self.rcv_nxt {
                let seg = self.rcv.get(sn)?;
                if seg.len as usize > off {
                    return Some(seg.len as usize - off);
                }
                sn = sn.wrapping_add(1);
                off = 0;
            }
            return None;
        }
        let mut sn = self.rcv.base();
        loop {
            let (size, count) = self.message_at(sn)?;
            if size > 0 {
                return Some(size);
            }
            sn = sn.wrapping_add(count);
        }
    }

    /// Size and fragment count of the complete message starting at `sn`, if complete.
    fn message_at(&self, sn: u32) -> Option<(usize, u32)> {
        let queued = self.rcv_nxt.wrapping_sub(sn);
        if queued == 0 || queued > self.rcv.len() as u32 {
            return None;
        }
        let first = self.rcv.get(sn)?;
        // Computed in u32: a malicious frg = 255 cannot wrap the check (kcp-spec H9).
        if queued < first.frg as u32 + 1 {
            return None;
        }
        let mut size = 0usize;
        let mut cur = sn;
        loop {
            let seg = self.rcv.get(cur)?;
            size += seg.len as usize;
            cur = cur.wrapping_add(1);
            if seg.frg == 0 {
                return Some((size, cur.wrapping_sub(sn)));
            }
            if cur == self.rcv_nxt {
                return None;
            }
        }
    }

    /// Receives the next message (message mode) or as many bytes as fit (stream mode).
    ///
    /// Zero-length messages from ikcp.c peers are skipped (and counted), never delivered.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let recover = self.queued_len() >= self.cfg.rcv_wnd;
        let n = if self.cfg.stream {
            self.recv_stream(buf)
        } else {
            self.recv_message(buf)?
        };
        self.advance_rcv_queue();
        if recover && self.queued_len() < self.cfg.rcv_wnd {
            // Tell the peer the window opened again (kcp-go: WINS at the next flush).
            self.probe |= ASK_TELL;
        }
        if n == 0 {
            return Err(RecvError::WouldBlock);
        }
        self.stats.bytes_received = self.stats.bytes_received.wrapping_add(n as u64);
        Ok(n)
    }

    fn recv_stream(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() && self.rcv.base() != self.rcv_nxt {
            let Some(seg) = self.rcv.get(self.rcv.base()).copied() else {
                break;
            };
            let len = seg.len as usize;
            let take = (len - self.rcv_off.min(len)).min(buf.len() - n);
            if take > 0 {
                let src = self.pool.chunk(seg.chunk);
                if let (Some(dst), Some(src)) = (
                    buf.get_mut(n..n + take),
                    src.get(self.rcv_off..self.rcv_off + take),
                ) {
                    dst.copy_from_slice(src);
                }
            } else if len == 0 {
                self.stats.empty_messages += 1;
            }
            n += take;
            self.rcv_off += take;
            if self.rcv_off >= len {
                self.pop_rcv();
            }
        }
        n
    }

    fn recv_message(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        loop {
            let Some((size, count)) = self.message_at(self.rcv.base()) else {
                return Ok(0);
            };
            if size == 0 {
                for _ in 0..count {
                    self.pop_rcv();
                }
                self.stats.empty_messages += 1;
                continue;
            }
            if size > buf.len() {
                return Err(RecvError::BufferTooSmall { needed: size });
            }
            let mut n = 0;
            for _ in 0..count {
                if let Some(seg) = self.rcv.get(self.rcv.base()).copied() {
                    let len = seg.len as usize;
                    if let (Some(dst), Some(src)) = (
                        buf.get_mut(n..n + len),
                        self.pool.chunk(seg.chunk).get(..len),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    n += len;
                }
                self.pop_rcv();
            }
            return Ok(n);
        }
    }

    fn pop_rcv(&mut self) {
        if let Some(seg) = self.rcv.pop_front() {
            if seg.chunk != NO_CHUNK {
                self.pool.give(seg.chunk);
            }
        }
        self.rcv_off = 0;
    }

    /// Segments ready for `recv` (kcp-go's `len(rcv_queue)`).
    fn queued_len(&self) -> u32 {
        self.rcv_nxt.wrapping_sub(self.rcv.base())
    }

    /// Moves in-order received segments into the receive queue while it has room.
    pub(crate) fn advance_rcv_queue(&mut self) {
        while self.queued_len() < self.cfg.rcv_wnd {
            match self.rcv.get(self.rcv_nxt) {
                Some(s) if s.present => self.rcv_nxt = self.rcv_nxt.wrapping_add(1),
                _ => break,
            }
        }
    }

    /// `wnd` advertised to the peer: free receive-queue slots.
    pub(crate) fn wnd_unused(&self) -> u16 {
        self.cfg
            .rcv_wnd
            .saturating_sub(self.queued_len())
            .min(u16::MAX as u32) as u16
    }

    fn update_rtt(&mut self, rtt: i32) {
        if self.srtt == 0 {
            self.srtt = rtt;
            self.rttvar = rtt >> 1;
        } else {
            let mut delta = rtt.wrapping_sub(self.srtt);
            self.srtt = self.srtt.wrapping_add(delta >> 3);
            delta = delta.wrapping_abs();
            if rtt < self.srtt.wrapping_sub(self.rttvar) {
                self.rttvar = self
                    .rttvar
                    .wrapping_add(delta.wrapping_sub(self.rttvar) >> 5);
            } else {
                self.rttvar = self
                    .rttvar
                    .wrapping_add(delta.wrapping_sub(self.rttvar) >> 2);
            }
        }
        let var4 = (self.rttvar.max(0) as u64) << 2;
        let rto = self.srtt.max(0) as u64 + var4.max(self.cfg.interval as u64);
        self.rx_rto = rto.clamp(self.cfg.min_rto as u64, RTO_MAX as u64) as u32;
    }
}

/// What the rate limit's bucket holds at most, in thousandths of a byte: one interval's worth
/// of the rate, at least one full segment.
pub(crate) fn rate_bucket(cfg: &Config) -> i64 {
    (i64::from(cfg.rate_limit) * i64::from(cfg.interval)).max(i64::from(cfg.mss()) * 1000)
}
