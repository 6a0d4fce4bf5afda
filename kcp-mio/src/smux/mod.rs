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

mod frame;
#[cfg(test)]
mod tests;

pub use frame::{Cmd, FrameHeader, HEADER_SIZE, INITIAL_PEER_WINDOW, MAX_FRAME_DATA, UPD_SIZE};

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// The smux protocol version of a session (both ends must use the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Version 1: no per-stream flow control.
    V1 = 1,
    /// Version 2: per-stream windows with `UPD` frames.
    V2 = 2,
}

/// Which end of the session this is; it decides the parity of the stream ids it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opens odd stream ids: 3, 5, 7, ...
    Client,
    /// Opens even stream ids: 2, 4, 6, ...
    Server,
}

/// Keepalive timing (both of Go's tickers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// How often a `NOP` is sent (kcptun's `--keepalive`, 10 s by default).
    pub interval: Duration,
    /// How often the session checks that something arrived since the last check, and
    /// closes if nothing did (30 s in Go, not configurable in kcptun).
    pub timeout: Duration,
}

/// Session configuration. [`Config::default`] is Go smux's `DefaultConfig` plus this
/// implementation's own memory caps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Protocol version (kcptun's `--smuxver`, 1 by default).
    pub version: Version,
    /// Keepalive `NOP`s and the dead-peer check; `None` disables both.
    pub keepalive: Option<Keepalive>,
    /// The most data one outgoing frame carries: 1 to 65535, 32768 by default.
    pub max_frame_size: usize,
    /// The session-wide receive bucket in bytes (kcptun's `--smuxbuf`); 4194304 by default.
    pub max_receive_buffer: usize,
    /// Version 2: the window this end advertises per stream (kcptun's `--streambuf`);
    /// 65536 by default (kcptun passes 2097152). At most `max_receive_buffer` and
    /// `i32::MAX`.
    pub max_stream_buffer: usize,
    /// Bytes a stream's [`Session::write`] may queue before the caller pulls them as frames
    /// (or, in version 2, before the peer's window lets them go); 65536 by default.
    pub stream_send_buffer: usize,
    /// Streams open at once, either side's; 65535 by default.
    pub max_streams: usize,
    /// Incoming streams waiting in [`Session::accept`]; 1024 by default (Go's backlog).
    pub accept_backlog: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            version: Version::V1,
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(30),
            }),
            max_frame_size: 32768,
            max_receive_buffer: 4_194_304,
            max_stream_buffer: 65536,
            stream_send_buffer: 65536,
            max_streams: 65535,
            accept_backlog: 1024,
        }
    }
}

impl Config {
    /// Checks the values, with Go's rules plus this implementation's caps.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(k) = self.keepalive {
            if k.interval.is_zero() {
                return Err(ConfigError("keepalive interval must be positive"));
            }
            if k.timeout < k.interval {
                return Err(ConfigError(
                    "keepalive timeout must be at least the interval",
                ));
            }
        }
        if self.max_frame_size == 0 || self.max_frame_size > MAX_FRAME_DATA {
            return Err(ConfigError("max frame size must be 1 to 65535"));
        }
        if self.max_receive_buffer == 0 || self.max_receive_buffer > i32::MAX as usize {
            return Err(ConfigError("max receive buffer must be 1 to 2147483647"));
        }
        if self.max_stream_buffer == 0 {
            return Err(ConfigError("max stream buffer must be positive"));
        }
        if self.max_stream_buffer > self.max_receive_buffer {
            return Err(ConfigError(
                "max stream buffer must not exceed max receive buffer",
            ));
        }
        if self.stream_send_buffer == 0 {
            return Err(ConfigError("stream send buffer must be positive"));
        }
        if self.max_streams == 0 {
            return Err(ConfigError("max streams must be positive"));
        }
        if self.accept_backlog == 0 {
            return Err(ConfigError("accept backlog must be positive"));
        }
        Ok(())
    }
}

/// An invalid [`Config`] value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid smux config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

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

/// Input that breaks the protocol; it ends the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolError {
    /// A frame's version byte is not the session's.
    Version {
        /// The session's version.
        expected: u8,
        /// The byte received.
        got: u8,
    },
    /// A frame's command byte is not a known command.
    Command(u8),
    /// The underlying stream ended inside a frame.
    Truncated,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Version { expected, got } => {
                write!(f, "smux version {got} received, session speaks {expected}")
            }
            ProtocolError::Command(c) => write!(f, "unknown smux command {c}"),
            ProtocolError::Truncated => write!(f, "underlying stream ended inside a smux frame"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// [`Session::close`] was called.
    Local,
    /// Nothing arrived for a whole keepalive timeout.
    Timeout,
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// The underlying stream ended between frames ([`Session::handle_eof`]).
    Eof,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => write!(f, "smux session closed"),
            CloseReason::Timeout => write!(f, "smux session timed out (nothing received)"),
            CloseReason::Protocol(e) => e.fmt(f),
            CloseReason::Eof => write!(f, "underlying stream of the smux session ended"),
        }
    }
}

/// Errors of stream operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Nothing to read yet, or no room to write: wait for [`Event::Readable`] or
    /// [`Event::Writable`].
    WouldBlock,
    /// No such stream (never opened, or closed and forgotten).
    UnknownStream,
    /// The stream was closed locally with [`Session::close_stream`].
    StreamClosed,
    /// The peer closed the stream (its `FIN` arrived): a write can no longer reach it.
    PeerClosed,
    /// Version 2: the peer claims to have consumed more than was sent on this stream.
    Consumed,
    /// All stream ids of this side are used ([`Session::open`]); start a new session.
    GoAway,
    /// [`Config::max_streams`] streams are open ([`Session::open`]).
    TooManyStreams,
    /// The session has ended.
    Session(CloseReason),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WouldBlock => write!(f, "smux stream operation would block"),
            Error::UnknownStream => write!(f, "unknown smux stream"),
            Error::StreamClosed => write!(f, "smux stream closed"),
            Error::PeerClosed => write!(f, "smux stream closed by the peer"),
            Error::Consumed => write!(f, "smux peer consumed more than was sent"),
            Error::GoAway => write!(f, "smux stream ids exhausted, start a new session"),
            Error::TooManyStreams => write!(f, "too many smux streams"),
            Error::Session(r) => r.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match e {
            Error::WouldBlock => ErrorKind::WouldBlock,
            Error::UnknownStream | Error::StreamClosed => ErrorKind::NotConnected,
            Error::PeerClosed => ErrorKind::BrokenPipe,
            Error::Consumed | Error::Session(CloseReason::Protocol(_)) => ErrorKind::InvalidData,
            Error::GoAway | Error::TooManyStreams => ErrorKind::Other,
            Error::Session(CloseReason::Timeout) => ErrorKind::TimedOut,
            Error::Session(CloseReason::Local) => ErrorKind::NotConnected,
            Error::Session(CloseReason::Eof) => ErrorKind::UnexpectedEof,
        };
        std::io::Error::new(kind, e)
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
/// A stream's receive buffer keeps at most this much capacity once drained.
const KEEP_RECV_CAPACITY: usize = 64 * 1024;

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

/// Where the input parser is.
#[derive(Clone, Copy, Debug)]
enum Input {
    /// Collecting a frame header.
    Header { buf: [u8; HEADER_SIZE], have: usize },
    /// In the data of a `PSH` (dropped if the stream is unknown or closed).
    Payload { sid: u32, remaining: usize },
    /// Collecting the 8 bytes of an `UPD`.
    Upd {
        sid: u32,
        buf: [u8; UPD_SIZE],
        have: usize,
    },
    /// A `SYN` waits for room in the accept backlog.
    BlockedSyn { sid: u32 },
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

    /// Feeds bytes read from the underlying stream; returns how many were consumed. Fewer
    /// than `data.len()` means back-pressure: keep the rest and offer it again after
    /// [`Event::InputResumed`]. An error ends the session (it is also reported as
    /// [`Event::Closed`]); later calls return the same error.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, CloseReason> {
        if let Some(r) = self.closed {
            return Err(r);
        }
        let mut pos = 0;
        while pos < data.len() {
            match self.input {
                Input::Header { mut buf, have } => {
                    if have == 0 && self.bucket <= 0 {
                        break;
                    }
                    let n = (HEADER_SIZE - have).min(data.len() - pos);
                    buf[have..have + n].copy_from_slice(&data[pos..pos + n]);
                    pos += n;
                    if have + n < HEADER_SIZE {
                        self.input = Input::Header {
                            buf,
                            have: have + n,
                        };
                        continue;
                    }
                    self.input = Input::Header {
                        buf: [0; HEADER_SIZE],
                        have: 0,
                    };
                    let h = FrameHeader::decode(&buf);
                    if let Err(e) = self.on_header(h) {
                        let r = CloseReason::Protocol(e);
                        self.end(r);
                        return Err(r);
                    }
                }
                Input::Payload { sid, remaining } => {
                    let n = remaining.min(data.len() - pos);
                    let chunk = &data[pos..pos + n];
                    pos += n;
                    self.on_payload(sid, chunk);
                    self.input = if remaining == n {
                        Input::Header {
                            buf: [0; HEADER_SIZE],
                            have: 0,
                        }
                    } else {
                        Input::Payload {
                            sid,
                            remaining: remaining - n,
                        }
                    };
                }
                Input::Upd { sid, mut buf, have } => {
                    let n = (UPD_SIZE - have).min(data.len() - pos);
                    buf[have..have + n].copy_from_slice(&data[pos..pos + n]);
                    pos += n;
                    if have + n < UPD_SIZE {
                        self.input = Input::Upd {
                            sid,
                            buf,
                            have: have + n,
                        };
                        continue;
                    }
                    self.input = Input::Header {
                        buf: [0; HEADER_SIZE],
                        have: 0,
                    };
                    let consumed = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    let window = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    self.on_upd(sid, consumed, window);
                }
                Input::BlockedSyn { .. } => break,
            }
        }
        if pos < data.len() {
            self.input_stalled = true;
        }
        Ok(pos)
    }

    fn on_header(&mut self, h: FrameHeader) -> Result<(), ProtocolError> {
        self.stats.frames_in += 1;
        self.data_ready = true;
        if h.version != self.version {
            return Err(ProtocolError::Version {
                expected: self.version,
                got: h.version,
            });
        }
        match Cmd::from_u8(h.cmd) {
            None => return Err(ProtocolError::Command(h.cmd)),
            Some(Cmd::Nop) => self.stats.nop_in += 1,
            Some(Cmd::Syn) => self.on_syn(h.sid),
            Some(Cmd::Fin) => match self.streams.get_mut(&h.sid) {
                Some(s) if !s.closing => {
                    if !s.fin_in {
                        s.fin_in = true;
                        // A write can no longer reach the peer: free the queued data.
                        s.send = VecDeque::new();
                        let writable = s.want_writable;
                        if !s.unaccepted {
                            self.events.push_back(Event::Finished(StreamId(h.sid)));
                        }
                        self.readable(h.sid);
                        if writable {
                            self.writable(h.sid);
                        }
                    }
                }
                _ => self.stats.dropped_frames += 1,
            },
            Some(Cmd::Psh) => {
                if h.len > 0 {
                    self.input = Input::Payload {
                        sid: h.sid,
                        remaining: h.len as usize,
                    };
                    let live = matches!(self.streams.get(&h.sid), Some(s) if !s.closing);
                    if !live {
                        self.stats.dropped_frames += 1;
                    }
                }
            }
            Some(Cmd::Upd) => {
                self.input = Input::Upd {
                    sid: h.sid,
                    buf: [0; UPD_SIZE],
                    have: 0,
                };
            }
        }
        Ok(())
    }

    fn on_syn(&mut self, sid: u32) {
        if self.streams.contains_key(&sid) {
            self.stats.duplicate_syn += 1;
            return;
        }
        if self.streams.len() >= self.config.max_streams {
            self.stats.refused_streams += 1;
            if self.refusals < MAX_QUEUED_REFUSALS {
                self.refusals += 1;
                self.control.push_back(Control::Refuse(sid));
            }
            return;
        }
        if self.accept_queue.len() >= self.config.accept_backlog {
            self.input = Input::BlockedSyn { sid };
            return;
        }
        self.add_incoming(sid);
    }

    fn add_incoming(&mut self, sid: u32) {
        let mut s = Stream::new();
        s.unaccepted = true;
        self.streams.insert(sid, s);
        self.accept_queue.push_back(sid);
        if !self.incoming_pending {
            self.incoming_pending = true;
            self.events.push_back(Event::Incoming);
        }
    }

    fn on_payload(&mut self, sid: u32, chunk: &[u8]) {
        match self.streams.get_mut(&sid) {
            Some(s) if !s.closing => {
                s.recv.extend(chunk);
                self.bucket -= chunk.len() as i64;
                self.stats.data_in += chunk.len() as u64;
                self.readable(sid);
            }
            _ => self.stats.dropped_bytes += chunk.len() as u64,
        }
    }

    fn on_upd(&mut self, sid: u32, consumed: u32, window: u32) {
        let v2 = self.version == 2;
        let half = self.config.stream_send_buffer / 2;
        let Some(s) = self.streams.get_mut(&sid) else {
            self.stats.dropped_frames += 1;
            return;
        };
        s.peer_consumed = consumed;
        s.peer_window = window;
        if !v2 {
            return;
        }
        if !s.ready && !s.send.is_empty() && s.window() > 0 {
            s.ready = true;
            self.ready.push_back(sid);
        }
        let consistent = s.num_written.wrapping_sub(consumed) as i32 >= 0;
        if s.want_writable && consistent && s.send.len() <= half && !s.fin_in {
            // A write refused with `Consumed` may succeed now.
            self.writable(sid);
        }
    }

    fn readable(&mut self, sid: u32) {
        if let Some(s) = self.streams.get_mut(&sid) {
            if !s.readable_pending && !s.unaccepted {
                s.readable_pending = true;
                self.events.push_back(Event::Readable(StreamId(sid)));
            }
        }
    }

    fn writable(&mut self, sid: u32) {
        if let Some(s) = self.streams.get_mut(&sid) {
            s.want_writable = false;
            if !s.writable_pending {
                s.writable_pending = true;
                self.events.push_back(Event::Writable(StreamId(sid)));
            }
        }
    }

    fn return_tokens(&mut self, n: usize) {
        self.bucket += n as i64;
        self.maybe_resume();
    }

    fn maybe_resume(&mut self) {
        if self.input_stalled && self.closed.is_none() && self.input_open() {
            self.input_stalled = false;
            self.events.push_back(Event::InputResumed);
        }
    }

    /// Opens a stream: queues its `SYN` and returns its id.
    pub fn open(&mut self) -> Result<StreamId, Error> {
        if let Some(r) = self.closed {
            return Err(Error::Session(r));
        }
        if self.go_away {
            return Err(Error::GoAway);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(Error::TooManyStreams);
        }
        loop {
            self.next_id = self.next_id.wrapping_add(2);
            if self.next_id < 2 {
                self.go_away = true;
                return Err(Error::GoAway);
            }
            // Skip an id the peer took (Go would overwrite its stream).
            if !self.streams.contains_key(&self.next_id) {
                break;
            }
        }
        let sid = self.next_id;
        self.streams.insert(sid, Stream::new());
        self.control.push_back(Control::Syn(sid));
        Ok(StreamId(sid))
    }

    /// The next stream the peer opened, `None` if none waits.
    pub fn accept(&mut self) -> Option<StreamId> {
        let sid = self.accept_queue.pop_front()?;
        let mut has_data = false;
        if let Some(s) = self.streams.get_mut(&sid) {
            s.unaccepted = false;
            has_data = !s.recv.is_empty() || s.fin_in;
            if s.fin_in {
                self.events.push_back(Event::Finished(StreamId(sid)));
            }
        }
        if has_data {
            self.readable(sid);
        }
        if let Input::BlockedSyn { sid: blocked } = self.input {
            if self.accept_queue.len() < self.config.accept_backlog {
                self.input = Input::Header {
                    buf: [0; HEADER_SIZE],
                    have: 0,
                };
                if self.streams.len() >= self.config.max_streams {
                    self.on_syn(blocked);
                } else {
                    self.add_incoming(blocked);
                }
                self.maybe_resume();
            }
        }
        Some(StreamId(sid))
    }

    /// Reads received data of a stream into `buf`. `Ok(0)` (for a non-empty `buf`) means
    /// the peer closed the stream and everything it sent has been read.
    pub fn read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<usize, Error> {
        let closed = self.closed;
        let half = (self.config.max_stream_buffer / 2) as u32;
        let v2 = self.version == 2;
        let s = self.streams.get_mut(&id.0).ok_or(Error::UnknownStream)?;
        if s.closing {
            return Err(Error::StreamClosed);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if s.recv.is_empty() {
            return match closed {
                Some(r) => Err(Error::Session(r)),
                None if s.fin_in => Ok(0),
                None => Err(Error::WouldBlock),
            };
        }
        let n = {
            let (a, b) = s.recv.as_slices();
            let n1 = a.len().min(buf.len());
            buf[..n1].copy_from_slice(&a[..n1]);
            let n2 = b.len().min(buf.len() - n1);
            buf[n1..n1 + n2].copy_from_slice(&b[..n2]);
            n1 + n2
        };
        s.recv.drain(..n);
        if s.recv.is_empty() && s.recv.capacity() > KEEP_RECV_CAPACITY {
            s.recv = VecDeque::new();
        }
        if v2 && closed.is_none() {
            s.num_read = s.num_read.wrapping_add(n as u32);
            s.incr = s.incr.wrapping_add(n as u32);
            if s.incr >= half || s.num_read == n as u32 {
                s.incr = 0;
                if s.num_read != 0 && !s.upd_queued {
                    s.upd_queued = true;
                    self.control.push_back(Control::Upd(id.0));
                }
            }
        }
        self.return_tokens(n);
        Ok(n)
    }

    /// Bytes of the stream ready to read now.
    pub fn readable_bytes(&self, id: StreamId) -> usize {
        self.streams.get(&id.0).map_or(0, |s| s.recv.len())
    }

    /// Queues data for a stream; returns how much was taken (at most the room left in its
    /// send buffer). [`Error::WouldBlock`] when none fits: wait for [`Event::Writable`].
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, Error> {
        if let Some(r) = self.closed {
            return Err(Error::Session(r));
        }
        let cap = self.config.stream_send_buffer;
        let v2 = self.version == 2;
        let s = self.streams.get_mut(&id.0).ok_or(Error::UnknownStream)?;
        if s.closing {
            return Err(Error::StreamClosed);
        }
        if s.fin_in {
            return Err(Error::PeerClosed);
        }
        if v2 && (s.num_written.wrapping_sub(s.peer_consumed) as i32) < 0 {
            s.want_writable = true;
            return Err(Error::Consumed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = (cap - s.send.len().min(cap)).min(data.len());
        if n < data.len() {
            s.want_writable = true;
        }
        if n == 0 {
            return Err(Error::WouldBlock);
        }
        s.send.extend(&data[..n]);
        if !s.ready && (!v2 || s.window() > 0) {
            s.ready = true;
            self.ready.push_back(id.0);
        }
        Ok(n)
    }

    /// Bytes a [`Session::write`] would take now.
    pub fn write_capacity(&self, id: StreamId) -> usize {
        match self.streams.get(&id.0) {
            Some(s) if self.closed.is_none() && !s.closing && !s.fin_in => {
                self.config.stream_send_buffer - s.send.len().min(self.config.stream_send_buffer)
            }
            _ => 0,
        }
    }

    /// Bytes written to the stream and not yet pulled as frames.
    pub fn queued_bytes(&self, id: StreamId) -> usize {
        self.streams.get(&id.0).map_or(0, |s| s.send.len())
    }

    /// Whether the peer's `FIN` for the stream arrived.
    pub fn is_finished(&self, id: StreamId) -> bool {
        self.streams.get(&id.0).is_some_and(|s| s.fin_in)
    }

    /// Closes a stream (Go's `Stream.Close`): what was written still goes out, then a `FIN`;
    /// unread data is dropped (its bytes return to the bucket) and data arriving later is
    /// dropped. The id is forgotten once the `FIN` is pulled (at once if the session ended).
    pub fn close_stream(&mut self, id: StreamId) -> Result<(), Error> {
        let ended = self.closed.is_some();
        let s = self.streams.get_mut(&id.0).ok_or(Error::UnknownStream)?;
        if s.closing {
            return Err(Error::StreamClosed);
        }
        s.closing = true;
        let tokens = s.recv.len();
        s.recv = VecDeque::new();
        let flush_now = s.send.is_empty();
        if ended {
            self.streams.remove(&id.0);
        } else if flush_now {
            self.control.push_back(Control::Fin(id.0));
        }
        self.accept_queue.retain(|&x| x != id.0);
        self.return_tokens(tokens);
        Ok(())
    }

    /// Appends the next frame to `out` and returns its length, or `None` when nothing is
    /// due. Control frames (`SYN`, `FIN`, `NOP`, `UPD`) go first, then data frames of at most
    /// [`Config::max_frame_size`] bytes, one stream after another.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        if self.closed.is_some() {
            return None;
        }
        while let Some(c) = self.control.pop_front() {
            let (cmd, sid, upd) = match c {
                Control::Syn(sid) => (Cmd::Syn, sid, None),
                Control::Fin(sid) => {
                    self.streams.remove(&sid);
                    (Cmd::Fin, sid, None)
                }
                Control::Refuse(sid) => {
                    self.refusals -= 1;
                    (Cmd::Fin, sid, None)
                }
                Control::Nop => {
                    self.nop_queued = false;
                    self.stats.nop_out += 1;
                    (Cmd::Nop, 0, None)
                }
                Control::Upd(sid) => match self.streams.get_mut(&sid) {
                    Some(s) => {
                        s.upd_queued = false;
                        self.stats.upd_out += 1;
                        (Cmd::Upd, sid, Some(s.num_read))
                    }
                    None => continue,
                },
            };
            let len = if upd.is_some() { UPD_SIZE } else { 0 };
            let h = FrameHeader {
                version: self.version,
                cmd: cmd as u8,
                len: len as u16,
                sid,
            };
            out.extend_from_slice(&h.encode());
            if let Some(consumed) = upd {
                out.extend_from_slice(&consumed.to_le_bytes());
                out.extend_from_slice(&(self.config.max_stream_buffer as u32).to_le_bytes());
            }
            self.stats.frames_out += 1;
            return Some(HEADER_SIZE + len);
        }
        let v2 = self.version == 2;
        let half = self.config.stream_send_buffer / 2;
        while let Some(sid) = self.ready.pop_front() {
            let Some(s) = self.streams.get_mut(&sid) else {
                continue;
            };
            s.ready = false;
            let mut n = s.send.len().min(self.config.max_frame_size);
            if v2 {
                n = n.min(s.window().max(0) as usize);
            }
            if n == 0 {
                continue;
            }
            let h = FrameHeader {
                version: self.version,
                cmd: Cmd::Psh as u8,
                len: n as u16,
                sid,
            };
            out.reserve(HEADER_SIZE + n);
            out.extend_from_slice(&h.encode());
            let (a, b) = s.send.as_slices();
            let n1 = a.len().min(n);
            out.extend_from_slice(&a[..n1]);
            out.extend_from_slice(&b[..n - n1]);
            s.send.drain(..n);
            s.num_written = s.num_written.wrapping_add(n as u32);
            self.stats.frames_out += 1;
            self.stats.data_out += n as u64;
            let more = !s.send.is_empty() && (!v2 || s.window() > 0);
            if more {
                s.ready = true;
                self.ready.push_back(sid);
            }
            if s.send.is_empty() {
                s.send.shrink_to(KEEP_RECV_CAPACITY);
                if s.closing {
                    self.control.push_back(Control::Fin(sid));
                }
            }
            if s.want_writable && s.send.len() <= half {
                self.writable(sid);
            }
            return Some(HEADER_SIZE + n);
        }
        None
    }

    /// Whether [`Session::poll_transmit`] may have a frame now (a hint: after a peer shrank
    /// its window it can be true while `poll_transmit` finds nothing).
    pub fn has_transmit(&self) -> bool {
        self.closed.is_none() && (!self.control.is_empty() || !self.ready.is_empty())
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
