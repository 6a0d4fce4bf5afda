//! smux (versions 1 and 2) as a sans-IO state machine: stream multiplexing over one reliable,
//! ordered byte stream (a KCP stream in practice), wire-compatible with Go's
//! `github.com/xtaci/smux` 1.5.16 as kcptun uses it.
//!
//! A [`Session`] owns no socket, no thread and no clock:
//!
//! * **Input**: the caller hands in bytes read from the underlying stream, in chunks of any
//!   size, with [`Session::handle_input`]. It returns how many it consumed: fewer than offered
//!   means back-pressure (the session-wide receive bucket is empty, or the accept backlog is
//!   full); keep the rest and offer it again after [`Event::InputResumed`].
//! * **Output**: the caller pulls whole frames with [`Session::poll_transmit`] and writes them
//!   to the underlying stream in order (one frame per call, so a framing layer such as
//!   `kcp_mio::snappy` can flush each frame as kcptun does).
//!   Frames are queued by [`Session::open`], [`Session::write`], [`Session::read`] (a
//!   version-2 `UPD`), [`Session::close_stream`], [`Session::handle_input`] (a refusal) and
//!   [`Session::handle_timeout`] (a `NOP`): after any of them, pull until `None`
//!   ([`Session::has_transmit`] tells whether to wake the writer).
//! * **Events**: [`Session::poll_event`] reports incoming streams, readable and writable
//!   streams, a peer's `FIN`, resumed input and the end of the session. Each stream has at
//!   most one pending event of each kind, so the queue is bounded by the number of streams.
//! * **Time**: [`Session::poll_timeout`] says when [`Session::handle_timeout`] must be called
//!   next (keepalive `NOP`s and the dead-peer check); both take the time as an argument.
//! * **Streams**: [`Session::open`], [`Session::accept`], [`Session::read`],
//!   [`Session::write`], [`Session::close_stream`], by [`StreamId`].
//!
//! # Wire format
//!
//! A frame is `version u8 | cmd u8 | length u16 LE | stream id u32 LE | data`. Commands: `SYN`
//! (0) opens a stream, `FIN` (1) closes it, `PSH` (2) carries `length` bytes of data, `NOP`
//! (3, stream 0) is the keepalive, `UPD` (4, version 2) carries `consumed u32 LE | window u32
//! LE`. Clients open odd stream ids from 3, servers even ids from 2.
//!
//! The parser reads exactly what Go's reads, byte for byte: a `PSH` is followed by `length`
//! bytes; an `UPD` by exactly 8 bytes whatever its length field says; `SYN`, `FIN` and `NOP`
//! by nothing (a length there is ignored, as Go ignores it). A version byte other than the
//! session's, or an unknown command, ends the session ([`ProtocolError`]). An `UPD` in a
//! version-1 session is parsed and has no effect (Go parses it too). A `SYN` for a known id is
//! ignored; `PSH`, `FIN` and `UPD` for an unknown id are dropped and counted.
//!
//! # Flow control and memory
//!
//! * Version 1 and 2: a session-wide receive bucket of [`Config::max_receive_buffer`] bytes.
//!   Data of a `PSH` for a live stream is taken from it; reading it gives it back. While the
//!   bucket is empty the session consumes no input at all (checked before each frame header,
//!   as Go does, so a stream buffers at most the bucket plus one frame).
//! * Version 2: each stream's sender may have at most the peer's window unacknowledged
//!   (262144 until the first `UPD`); the receiver sends `UPD(consumed, window =
//!   max_stream_buffer)` on its first read and each time another `max_stream_buffer / 2`
//!   bytes were read. Counters wrap as `u32`.
//! * Writes go to a per-stream send buffer of [`Config::stream_send_buffer`] bytes; frames of
//!   at most [`Config::max_frame_size`] bytes are cut from it when the caller pulls, round-robin
//!   over the streams, control frames first.
//! * A stream's receive and send buffers are given back whenever they empty, so a stream that
//!   waits holds neither (a tunnel's idle connections); a busy stream allocates once per read
//!   or send that empties its buffer, small against copying the data.
//! * At most [`Config::max_streams`] streams; a `SYN` beyond that is refused with a `FIN`.
//!   At most [`Config::accept_backlog`] streams wait in [`Session::accept`]; beyond that the
//!   session stops consuming input until one is accepted (Go's reader blocks the same way).
//!
//! # Keepalive
//!
//! With [`Config::keepalive`] set, a `NOP` is queued every `interval`, and every `timeout`
//! the session checks that at least one frame header arrived since the previous check (Go's
//! two tickers): if none did, and the bucket is not empty, it closes with
//! [`CloseReason::Timeout`]. A peer that goes silent is thus noticed between one and two
//! timeouts later.
//!
//! # Example
//!
//! Two sessions connected back to back (a real caller writes the frames to a stream):
//!
//! ```
//! use std::time::Instant;
//! use kcp_mio::smux::{Config, Event, Role, Session};
//!
//! let now = Instant::now();
//! let mut client = Session::new(Config::default(), Role::Client, now).unwrap();
//! let mut server = Session::new(Config::default(), Role::Server, now).unwrap();
//!
//! let id = client.open().unwrap();
//! client.write(id, b"hello").unwrap();
//!
//! let mut wire = Vec::new();
//! while client.poll_transmit(&mut wire).is_some() {}
//! assert_eq!(server.handle_input(&wire).unwrap(), wire.len());
//!
//! assert_eq!(server.poll_event(), Some(Event::Incoming));
//! let accepted = server.accept().unwrap();
//! assert_eq!(accepted.get(), 3); // a client's first stream
//! let mut buf = [0u8; 16];
//! let n = server.read(accepted, &mut buf).unwrap();
//! assert_eq!(&buf[..n], b"hello");
//! ```

mod config;
mod error;
mod frame;
mod input;
mod streams;

use input::Input;
#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError, Keepalive, Role, Version};
pub use error::{CloseReason, Error, ProtocolError};
pub use frame::{Cmd, FrameHeader, HEADER_SIZE, INITIAL_PEER_WINDOW, MAX_FRAME_DATA, UPD_SIZE};

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// A stream of a session: its id on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u32);

impl StreamId {
    /// The id as carried in frames.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What changed in a session; see [`Session::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The peer opened one or more streams: [`Session::accept`] them.
    Incoming,
    /// [`Session::read`] on the stream will not return [`Error::WouldBlock`]: data, the
    /// peer's end of the stream, or an error.
    Readable(StreamId),
    /// A [`Session::write`] on the stream returned [`Error::WouldBlock`] (or less than
    /// asked) earlier, and there is room again (or the write would now fail).
    Writable(StreamId),
    /// The peer closed the stream (`FIN`). Data it sent before is still read first; then
    /// [`Session::read`] returns `Ok(0)`. smux has no half-close: close the stream too.
    Finished(StreamId),
    /// [`Session::handle_input`] had consumed less than offered, and consumes input again.
    InputResumed,
    /// The session ended; every stream operation now fails with [`Error::Session`] (after
    /// reads drain what was received). Reported once.
    Closed(CloseReason),
}

/// Counters of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frame headers received.
    pub frames_in: u64,
    /// Frames pulled by [`Session::poll_transmit`].
    pub frames_out: u64,
    /// `PSH` data bytes received for live streams.
    pub data_in: u64,
    /// `PSH` data bytes sent.
    pub data_out: u64,
    /// `NOP`s received.
    pub nop_in: u64,
    /// `NOP`s sent.
    pub nop_out: u64,
    /// `UPD`s sent.
    pub upd_out: u64,
    /// `PSH`, `FIN` or `UPD` frames dropped because their stream is unknown or closed.
    pub dropped_frames: u64,
    /// Data bytes dropped with those frames.
    pub dropped_bytes: u64,
    /// `SYN`s for a stream id already in use (ignored).
    pub duplicate_syn: u64,
    /// `SYN`s refused because [`Config::max_streams`] streams were open.
    pub refused_streams: u64,
}

/// A queued control frame; frames carrying a stream's state are built when pulled.
#[derive(Clone, Copy, Debug)]
enum Control {
    Syn(u32),
    Fin(u32),
    /// A `FIN` answering a refused `SYN` (no stream state behind it).
    Refuse(u32),
    Nop,
    Upd(u32),
}

/// Refusal `FIN`s queued at most; more refusals are only counted.
const MAX_QUEUED_REFUSALS: usize = 1024;

#[derive(Debug)]
struct Stream {
    recv: VecDeque<u8>,
    send: VecDeque<u8>,
    /// The peer's `FIN` arrived.
    fin_in: bool,
    /// [`Session::close_stream`] was called; a `FIN` goes out once `send` is empty.
    closing: bool,
    /// Waits in the accept queue.
    unaccepted: bool,
    /// In `Session::ready` (has data and window to send).
    ready: bool,
    /// An `Upd` for this stream is queued (it carries `num_read` when pulled).
    upd_queued: bool,
    /// A write fell short: report `Writable` when there is room.
    want_writable: bool,
    readable_pending: bool,
    writable_pending: bool,
    // Version 2 counters, wrapping.
    num_read: u32,
    incr: u32,
    num_written: u32,
    peer_consumed: u32,
    peer_window: u32,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            recv: VecDeque::new(),
            send: VecDeque::new(),
            fin_in: false,
            closing: false,
            unaccepted: false,
            ready: false,
            upd_queued: false,
            want_writable: false,
            readable_pending: false,
            writable_pending: false,
            num_read: 0,
            incr: 0,
            num_written: 0,
            peer_consumed: 0,
            peer_window: INITIAL_PEER_WINDOW,
        }
    }

    /// Version 2: bytes the peer's window still admits (Go's arithmetic, in `i32`).
    fn window(&self) -> i64 {
        let inflight = self.num_written.wrapping_sub(self.peer_consumed) as i32;
        if inflight < 0 {
            return 0;
        }
        (self.peer_window as i32) as i64 - inflight as i64
    }
}

/// One smux session (see the module docs).
#[derive(Debug)]
pub struct Session {
    config: Config,
    version: u8,
    next_id: u32,
    go_away: bool,
    streams: HashMap<u32, Stream>,
    accept_queue: VecDeque<u32>,
    control: VecDeque<Control>,
    refusals: usize,
    nop_queued: bool,
    /// Streams with data to send, round-robin.
    ready: VecDeque<u32>,
    events: VecDeque<Event>,
    incoming_pending: bool,
    input: Input,
    /// Go's token bucket: may go below zero by up to one frame.
    bucket: i64,
    /// `handle_input` returned short; report `InputResumed` when it can go on.
    input_stalled: bool,
    /// A frame header arrived since the last keepalive check.
    data_ready: bool,
    next_ping: Option<Instant>,
    next_check: Option<Instant>,
    closed: Option<CloseReason>,
    stats: Stats,
}

impl Session {
    /// A new session at time `now` (the keepalive clocks start here).
    pub fn new(config: Config, role: Role, now: Instant) -> Result<Session, ConfigError> {
        config.validate()?;
        let (next_ping, next_check) = match config.keepalive {
            Some(k) => (Some(now + k.interval), Some(now + k.timeout)),
            None => (None, None),
        };
        Ok(Session {
            version: config.version as u8,
            next_id: match role {
                Role::Client => 1,
                Role::Server => 0,
            },
            go_away: false,
            streams: HashMap::new(),
            accept_queue: VecDeque::new(),
            control: VecDeque::new(),
            refusals: 0,
            nop_queued: false,
            ready: VecDeque::new(),
            events: VecDeque::new(),
            incoming_pending: false,
            input: Input::Header {
                buf: [0; HEADER_SIZE],
                have: 0,
            },
            bucket: config.max_receive_buffer as i64,
            input_stalled: false,
            data_ready: false,
            next_ping,
            next_check,
            closed: None,
            stats: Stats::default(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Why the session ended, or `None` while it lives.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.closed
    }

    /// Streams open now (including those waiting in [`Session::accept`] and closed ones
    /// whose `FIN` has not been pulled yet).
    pub fn num_streams(&self) -> usize {
        self.streams.len()
    }

    /// Bytes left in the session-wide receive bucket (negative by up to one frame).
    pub fn receive_bucket(&self) -> i64 {
        self.bucket
    }

    /// Whether [`Session::handle_input`] would consume input now.
    pub fn wants_input(&self) -> bool {
        self.closed.is_none() && self.input_open()
    }

    fn input_open(&self) -> bool {
        match self.input {
            Input::Header { have: 0, .. } => self.bucket > 0,
            Input::BlockedSyn { .. } => false,
            _ => true,
        }
    }

    /// Ends the session (Go's `Session.Close`: no `FIN`s are sent; frames still queued are
    /// not pulled any more). Reports [`Event::Closed`] with [`CloseReason::Local`].
    pub fn close(&mut self) {
        self.end(CloseReason::Local);
    }

    fn end(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            self.closed = Some(reason);
            self.events.push_back(Event::Closed(reason));
            self.control.clear();
            self.ready.clear();
            for s in self.streams.values_mut() {
                s.send = VecDeque::new();
                s.ready = false;
            }
        }
    }

    /// The underlying stream ended (its read returned end of file). Ends the session with
    /// [`CloseReason::Eof`], or [`ProtocolError::Truncated`] inside a frame.
    pub fn handle_eof(&mut self) {
        let mid_frame = match self.input {
            Input::Header { have, .. } => have > 0,
            Input::BlockedSyn { .. } => false,
            _ => true,
        };
        self.end(if mid_frame {
            CloseReason::Protocol(ProtocolError::Truncated)
        } else {
            CloseReason::Eof
        });
    }

    /// The next event, `None` when nothing changed.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front()?;
        match e {
            Event::Incoming => self.incoming_pending = false,
            Event::Readable(id) => {
                if let Some(s) = self.streams.get_mut(&id.0) {
                    s.readable_pending = false;
                }
            }
            Event::Writable(id) => {
                if let Some(s) = self.streams.get_mut(&id.0) {
                    s.writable_pending = false;
                }
            }
            _ => {}
        }
        Some(e)
    }

    /// When [`Session::handle_timeout`] must be called next; `None` without keepalive or
    /// once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        match (self.next_ping, self.next_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the keepalive clocks up to `now`: queues a `NOP` each interval, and closes the
    /// session with [`CloseReason::Timeout`] when a whole timeout passed with nothing
    /// received (unless the bucket is empty: then this end is the one not reading).
    ///
    /// Feed the input that is already available before calling it: after a stall of the
    /// caller's loop, the peer's keepalives may be waiting unread.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        let Some(k) = self.config.keepalive else {
            return;
        };
        if let Some(t) = self.next_ping {
            if now >= t {
                if !self.nop_queued {
                    self.nop_queued = true;
                    self.control.push_back(Control::Nop);
                }
                self.next_ping = Some(advance(t, k.interval, now));
            }
        }
        if let Some(t) = self.next_check {
            if now >= t {
                if !self.data_ready && self.bucket > 0 {
                    self.end(CloseReason::Timeout);
                    return;
                }
                self.data_ready = false;
                self.next_check = Some(advance(t, k.timeout, now));
            }
        }
    }
}

/// The first tick after `now` of a ticker that ticked at `t` (missed ticks are dropped, as
/// Go's ticker drops them).
fn advance(t: Instant, period: Duration, now: Instant) -> Instant {
    let next = t + period;
    if next > now {
        return next;
    }
    let behind = now.duration_since(t).as_nanos() / period.as_nanos().max(1);
    u32::try_from(behind + 1)
        .ok()
        .and_then(|k| period.checked_mul(k))
        .and_then(|d| t.checked_add(d))
        .filter(|&n| n > now)
        .unwrap_or(now + period)
}
