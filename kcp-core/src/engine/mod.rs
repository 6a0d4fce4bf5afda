//! The KCP engine: ARQ state, the application side (send, recv) and scheduling.
//!
//! * [`handle_datagram`](Kcp::handle_datagram) takes a received datagram;
//! * [`poll_transmit`](Kcp::poll_transmit) hands out the next datagram to send;
//! * [`poll_timeout`](Kcp::poll_timeout) / [`handle_timeout`](Kcp::handle_timeout) drive the
//!   timer;
//! * [`send`](Kcp::send), [`recv`](Kcp::recv) and [`peek_size`](Kcp::peek_size) are the
//!   application side.
//!
//! Files by concern: `input.rs` (una, ACKs, fast-ack counting, PUSH, window probes),
//! `flush.rs` (what a flush sends and the datagram assembly), `send.rs` and `recv.rs` (the
//! application side), `rtt.rs` (the round-trip estimator and RTO), `memory.rs` (storage
//! that follows data), `error.rs`, `buffers.rs` (storage for the no-allocator build).

mod buffers;
mod error;
mod flush;
mod input;
mod memory;
mod pacing;
mod probe;
mod recv;
mod retransmit;
mod rtt;
mod send;

use core::fmt;

pub use buffers::{AckEntry, Buffers, RecvSlot, SendSlot, StaticBuffers};
pub use error::{InputError, RecvError, SendError};

use crate::config::{Config, ConfigError, MAX_FRAGMENTS};
use crate::congestion::Congestion;
use crate::stats::Stats;
#[cfg(feature = "alloc")]
use crate::storage::{ChunkCache, MIN_RING};
use crate::storage::{ChunkId, Managed, Pool, SeqRing};
use crate::time::{seq_diff, Millis, STALE_MS};

pub(crate) const NO_CHUNK: ChunkId = ChunkId::MAX;
const RTO_MAX: u32 = 60_000;
const PROBE_INIT: u32 = 7_000;
/// Shortest wait before the first zero-window probe.
const PROBE_FIRST: u32 = 200;
const PROBE_LIMIT: u32 = 120_000;
/// Unacknowledged segments the ACKs of one datagram may visit for fast-ack counting, in all.
/// A 1500-byte datagram carries at most 62 ACKs, and fast retransmission needs a few counts
/// per hole, so legitimate traffic rarely meets it; a datagram packed with ACKs beyond a long
/// run of holes costs this much at most, whatever the window.
pub(crate) const FASTACK_VISITS: u16 = 2_048;
pub(crate) const ASK_SEND: u8 = 1;
pub(crate) const ASK_TELL: u8 = 2;

#[cfg(feature = "alloc")]
pub use crate::storage::{HEAP_CHUNK, SMALL_CHUNK};

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
/// [`handle_datagram`](Self::handle_datagram), [`handle_timeout`](Self::handle_timeout), [`send`](Self::send) or
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
///     b.handle_datagram(now, &buf[..n]).unwrap();
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
    /// The last admission stopped with segments waiting for tokens: the time until the next
    /// flush is owed to them in full (up to [`RATE_CATCH_UP`] buckets), however late it runs.
    rate_starved: bool,
    /// Pacing state, present exactly with `Config::pacing` (boxed where there is an
    /// allocator, so that an unpaced engine carries one pointer for it).
    pace: pacing::PacerSlot,
    pending: Pending,
    /// Newest `ts` of a regular PUSH, to tell stale FEC-rebuilt segments (see `on_push`).
    newest_push_ts: Option<u32>,
    /// The engine's own clock: the latest `now` it was given, moved on by how far the
    /// caller's clock advanced since it looked stale (see [`observe`](Self::observe)).
    last_now: Millis,
    /// While the caller's readings stay behind `last_now` (a stale reading, or a clock that
    /// jumped by just under 2^32 ms): how far behind the latest of them is (0: they are not).
    /// Time then counts from that reading.
    lag: u32,
    /// Out-of-order data is refused (the owner's receive-memory budget is spent).
    recv_limited: bool,
    /// Heap bytes of the payload chunks held by received segments (queued or out of order),
    /// each with its pointer; 0 on caller-provided buffers.
    rcv_chunk_bytes: u32,
    /// The head message of the receive queue was checked complete and not empty.
    rcv_head_ready: bool,
    /// Unacknowledged segments the current datagram's ACKs may still visit for fast-ack
    /// counting.
    fastack_visits: u16,
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
    #[doc(alias = "ikcp_create")]
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
            rate_starved: false,
            pace: pacing::slot(cfg.pacing, now, 0),
            pending: Pending::None,
            newest_push_ts: None,
            last_now: now,
            lag: 0,
            recv_limited: false,
            rcv_chunk_bytes: 0,
            rcv_head_ready: false,
            fastack_visits: 0,
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
        if config.pacing != self.pace.is_some() {
            // Turned on: a fresh estimate, counting what is in flight now.
            let unacked = self.unacked_segments();
            self.pace = pacing::slot(config.pacing, self.last_now, unacked);
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

    /// With [`Config::pacing`]: the rate new data leaves at, bytes per second (`None` before
    /// the first delivery-rate sample, or with pacing off).
    pub fn pacing_rate(&self) -> Option<u64> {
        self.pacer().and_then(|p| p.pacing_rate())
    }

    /// With [`Config::pacing`]: the delivery rate measured from the peer's acknowledgements,
    /// bytes per second (`None` before the first sample, or with pacing off).
    pub fn delivery_rate(&self) -> Option<u64> {
        self.pacer().and_then(|p| p.delivery_rate())
    }

    /// The peer's last advertised receive window, in segments.
    pub fn remote_window(&self) -> u32 {
        self.rmt_wnd
    }

    /// Segments queued or in flight and not yet removed by the peer's `una` (kcp-go `WaitSnd`).
    #[doc(alias = "ikcp_waitsnd")]
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

    /// Asks the peer for its window (a `WASK` segment at the next flush); a KCP peer answers
    /// with a `WINS`. An endpoint uses it to make a new peer speak again (see
    /// [`Endpoint`](crate::endpoint::Endpoint)'s half-open sessions).
    pub fn ask_window(&mut self) {
        self.probe |= ASK_SEND;
        self.request(Pending::Full);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called; `None` while the
    /// session is idle (nothing to send, acknowledge or probe), until the next `send` or
    /// `handle_datagram`. Ask again after every call that changes the engine.
    #[doc(alias = "ikcp_check")]
    #[doc(alias = "check")]
    pub fn poll_timeout(&self) -> Option<Millis> {
        // In the caller's frame: behind the engine's clock while its readings look stale.
        self.timer.map(|t| Millis(t.0.wrapping_sub(self.lag)))
    }

    /// Advances the timer: a periodic flush (ACKs, retransmissions, probes) is due when `now`
    /// has reached [`poll_timeout`](Self::poll_timeout). Then drain
    /// [`poll_transmit`](Self::poll_transmit).
    #[doc(alias = "ikcp_update")]
    #[doc(alias = "update")]
    pub fn handle_timeout(&mut self, now: Millis) {
        let now = self.observe(now);
        if let Some(t) = self.timer {
            // The timer is never set more than an interval ahead of the clock; further ahead,
            // the clock has wrapped past it.
            if now.reached(t) || t.since(now) > self.cfg.interval as i32 {
                if self
                    .pacer()
                    .is_some_and(|p| p.due.is_some_and(|d| now.reached(d)))
                    && !now.reached(self.timer_anchor)
                    && self.timer_anchor.since(now) <= self.cfg.interval as i32
                {
                    // A pacing wake before the periodic tick: release what the credit
                    // allows, keep the tick's schedule.
                    self.timer = None;
                    self.request(Pending::Full);
                } else {
                    self.request(Pending::Timer);
                }
            }
        }
    }

    /// Asks for a flush now (ikcp.c's `ikcp_flush`): ACKs, probes, new data and whatever
    /// retransmission is due go out at the next [`poll_transmit`](Self::poll_transmit). The
    /// periodic timer keeps its schedule.
    #[doc(alias = "ikcp_flush")]
    pub fn flush(&mut self) {
        self.request(Pending::Full);
    }

    /// Notes the caller's clock and returns the engine's own (what every deadline is set on).
    ///
    /// Time never goes back. A `now` up to [`STALE_MS`] earlier than the engine's clock is
    /// either a caller's stale reading or a clock that jumped forward by just under 2^32 ms;
    /// the two cannot be told apart, so it counts as no time, but time then counts from it:
    /// while readings stay behind, the engine's clock moves on by as much as they advance
    /// (from the latest of them), and [`poll_timeout`](Self::poll_timeout) answers in the
    /// caller's frame. So timers fire on time after such a jump, and stale readings
    /// interleaved with fresh ones neither freeze nor speed up the clock. A `now` that looks
    /// earlier by more means the wrapping clock moved on by 2^31 ms or more while the engine
    /// was not called (an idle session sleeps with no timer): every deadline is then
    /// re-anchored on `now`, due at once instead of 2^31 ms away.
    pub(crate) fn observe(&mut self, now: Millis) -> Millis {
        let d = now.since(self.last_now);
        if d >= 0 {
            self.last_now = now;
            self.lag = 0;
            return now;
        }
        if d >= -STALE_MS {
            let behind = d.unsigned_abs();
            if self.lag == 0 {
                // The first reading behind only sets the frame.
                self.lag = behind;
            } else if behind < self.lag {
                // Readings moved on from the latest behind reading: so does the clock (and
                // the frame stays as far behind).
                self.last_now += self.lag - behind;
            }
            return self.last_now;
        }
        self.last_now = now;
        self.lag = 0;
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
        now
    }

    pub(crate) fn request(&mut self, p: Pending) {
        if p > self.pending {
            self.pending = p;
        }
    }
}

/// How many buckets' worth a rate-limited sender with a backlog may catch up when its flush
/// runs late (a timer that fires after the interval, a busy thread): the time past is owed to
/// the waiting segments, so the long-run rate holds whatever the timer's jitter, while a
/// stall longer than this many intervals is not made up in one burst.
pub(crate) const RATE_CATCH_UP: i64 = 4;

/// What the rate limit's bucket holds at most, in thousandths of a byte: one interval's worth
/// of the rate, at least one full segment.
pub(crate) fn rate_bucket(cfg: &Config) -> i64 {
    (i64::from(cfg.rate_limit) * i64::from(cfg.interval)).max(i64::from(cfg.mss()) * 1000)
}
