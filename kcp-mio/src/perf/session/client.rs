//! The client side of a kcp-perf session: sends the header and runs the test (a byte count or
//! a duration, optionally paced), measuring round trips and verifying what comes back.

use std::io;
use std::time::{Duration, Instant};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Until `start_at`.
    Wait,
    Header,
    /// Echo: the next message (or the end frame); sink: the next piece (or the end frame).
    Send,
    /// Echo: waiting for the rest of `sent` to come back.
    Echo {
        sent_at: Instant,
    },
    /// Framed echo: waiting for the end frame to come back.
    EndEcho,
    /// Sink: waiting for the 12-byte answer.
    Answer,
    /// Counted source: payload.
    Receive,
    /// Framed source: frames, until the server's end frame.
    Frames,
    /// Source: the 4-byte CRC.
    Crc,
    Done,
}

/// The client side of one kcp-perf session: a run over a byte count ([`new`](Self::new)) or
/// for a duration ([`for_duration`](Self::for_duration)), sending [`Payload`] bytes.
#[derive(Debug)]
pub struct ClientSession {
    message: bool,
    mss: usize,
    test: Test,
    /// 0: a framed run until `deadline`.
    count: u64,
    duration: Option<Duration>,
    msg: usize,
    pace: Option<Duration>,
    start_at: Option<Instant>,
    state: Client,
    /// Payload bytes sent (echo, sink) or received (source).
    moved: u64,
    crc: crc32fast::Hasher,
    payload: Payload,
    frames: Deframer,
    /// Echo: what was sent and awaits its echo, and how much of it came back.
    sent: Vec<u8>,
    echoed: usize,
    /// Sink answer, source CRC, end frame echo.
    tail: Vec<u8>,
    /// When the header went out, and the end of a framed run (`None`: no end).
    run_start: Option<Instant>,
    deadline: Option<Instant>,
    time_up: bool,
    /// Framed source: the end frame was queued.
    stopped: bool,
    /// Echo pacing: messages sent, and the time the next one waits for.
    sends: u32,
    paced_until: Option<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
    rtts: RttHistogram,
    out: Out,
}

impl ClientSession {
    /// A session that runs `test` over `count` bytes (at least 1) in `msg`-byte messages.
    pub fn new(test: Test, count: u64, msg: usize, message_mode: bool) -> ClientSession {
        ClientSession::with(test, count.max(1), None, msg, message_mode)
    }

    /// A session that runs `test` for `duration` (header count 0; `Duration::MAX`: until the
    /// session fails), in `msg`-byte frames, then ends the run with the end frame.
    pub fn for_duration(
        test: Test,
        msg: usize,
        message_mode: bool,
        duration: Duration,
    ) -> ClientSession {
        ClientSession::with(test, 0, Some(duration), msg, message_mode)
    }

    fn with(
        test: Test,
        count: u64,
        duration: Option<Duration>,
        msg: usize,
        message_mode: bool,
    ) -> ClientSession {
        ClientSession {
            message: message_mode,
            mss: READ_BUF,
            test,
            count,
            duration,
            msg: msg.clamp(1, MAX_FRAME as usize),
            pace: None,
            start_at: None,
            state: Client::Wait,
            moved: 0,
            crc: crc32fast::Hasher::new(),
            payload: Payload::new(0),
            frames: Deframer::new(),
            sent: Vec::new(),
            echoed: 0,
            tail: Vec::with_capacity(12),
            run_start: None,
            deadline: None,
            time_up: false,
            stopped: false,
            sends: 0,
            paced_until: None,
            first: None,
            last: None,
            rtts: RttHistogram::new(),
            out: Out::default(),
        }
    }

    /// Echo: one message per `pace` (from the header on) instead of back to back.
    pub fn paced(mut self, pace: Option<Duration>) -> ClientSession {
        self.pace = pace.filter(|p| !p.is_zero());
        self
    }

    /// Sends nothing before `at` (to spread the start of many sessions).
    pub fn start_at(mut self, at: Instant) -> ClientSession {
        self.start_at = Some(at);
        self
    }

    /// Payload bytes sent (echo, sink) or received (source) so far.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    /// When the session next needs a `drive` without an event of its own: its start time,
    /// the next paced echo, or the end of a duration run. `None`: events suffice.
    pub fn wake_at(&self) -> Option<Instant> {
        match self.state {
            Client::Wait => self.start_at,
            Client::Done => None,
            _ if self.paced_until.is_some() => self.paced_until,
            _ if !self.time_up => self.deadline,
            _ => None,
        }
    }

    /// Reads and writes what the session allows now; `buf` is scratch space of [`READ_BUF`]
    /// bytes.
    pub fn drive(&mut self, ep: &mut Endpoint, id: SessionId, buf: &mut [u8]) -> Status {
        match self.step(ep, id, buf) {
            Ok(true) => {
                let (retrans, fec_recovered) = session_counters(ep, id);
                Status::Done(Report {
                    test: self.test,
                    bytes: self.moved,
                    seconds: seconds(self.first, self.last),
                    rtt: std::mem::take(&mut self.rtts),
                    retrans,
                    fec_recovered,
                })
            }
            Ok(false) => Status::Pending,
            Err(e) => Status::Failed(e),
        }
    }

    /// Whether a framed run goes on (checks the clock).
    fn running(&mut self) -> bool {
        if !self.time_up && self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.time_up = true;
        }
        !self.time_up
    }

    fn step(&mut self, ep: &mut Endpoint, id: SessionId, buf: &mut [u8]) -> io::Result<bool> {
        let framed = self.count == 0;
        if framed {
            self.running();
        }
        loop {
            if !self.out.flush(ep, id, self.message)? {
                return Ok(false);
            }
            match self.state {
                Client::Wait => {
                    if self.start_at.is_some_and(|t| Instant::now() < t) {
                        return Ok(false);
                    }
                    self.state = Client::Header;
                }
                Client::Header => {
                    self.mss = mss(ep, id);
                    self.payload = Payload::new(seed(ep, id));
                    self.out.message(&header(self.test, self.count));
                    let now = Instant::now();
                    self.run_start = Some(now);
                    self.deadline = self.duration.and_then(|d| now.checked_add(d));
                    self.state = match (self.test, framed) {
                        (Test::Echo | Test::Sink, _) => Client::Send,
                        (Test::Source, false) => Client::Receive,
                        (Test::Source, true) => Client::Frames,
                    };
                }
                Client::Send => {
                    let more = if framed {
                        self.running()
                    } else {
                        self.moved < self.count
                    };
                    if !more {
                        self.state = match (self.test, framed) {
                            (Test::Echo, false) => Client::Done,
                            (Test::Echo, true) => Client::EndEcho,
                            _ => Client::Answer,
                        };
                        if framed {
                            if self.test == Test::Sink {
                                // The contract's interval for a sink run: to the last write.
                                self.last = Some(Instant::now());
                            }
                            self.out.message(&END_FRAME);
                        }
                        continue;
                    }
                    if self.test == Test::Echo {
                        if let Some(p) = self.pace {
                            let due = self
                                .run_start
                                .and_then(|s| s.checked_add(p.saturating_mul(self.sends)));
                            if due.is_some_and(|d| Instant::now() < d) {
                                self.paced_until = due;
                                return Ok(false);
                            }
                            self.paced_until = None;
                            self.sends = self.sends.saturating_add(1);
                        }
                    }
                    let len = if framed {
                        self.msg
                    } else {
                        (self.msg as u64).min(self.count - self.moved) as usize
                    };
                    let b = self.out.start(self.mss);
                    if framed {
                        b.extend_from_slice(&frame_header(len as u32));
                    }
                    let at = b.len();
                    b.resize(at + len, 0);
                    self.payload.fill(&mut b[at..]);
                    let now = Instant::now();
                    self.first.get_or_insert(now);
                    self.moved += len as u64;
                    if self.test == Test::Echo {
                        self.sent.clear();
                        self.sent.extend_from_slice(b);
                        self.echoed = 0;
                        self.state = Client::Echo { sent_at: now };
                    } else {
                        self.crc.update(&b[at..]);
                    }
                }
                Client::Echo { sent_at } => {
                    let want = self.sent.len() - self.echoed;
                    let Some(n) = read(ep, id, buf, self.message, want)? else {
                        return Ok(false);
                    };
                    if buf[..n] != self.sent[self.echoed..self.echoed + n] {
                        return Err(bad(format!(
                            "the echo differs from what was sent, in the message ending at offset {}",
                            self.moved
                        )));
                    }
                    self.echoed += n;
                    if self.echoed == self.sent.len() {
                        let now = Instant::now();
                        self.rtts
                            .record(now.duration_since(sent_at).as_micros() as u64);
                        self.last = Some(now);
                        self.state = Client::Send;
                    }
                }
                Client::EndEcho => {
                    if !self.read_tail(ep, id, buf, 4)? {
                        return Ok(false);
                    }
                    if self.tail[..] != END_FRAME {
                        return Err(bad(format!(
                            "the end frame came back as {:02x?}",
                            self.tail
                        )));
                    }
                    self.state = Client::Done;
                }
                Client::Answer => {
                    if !self.read_tail(ep, id, buf, 12)? {
                        return Ok(false);
                    }
                    if !framed {
                        self.last = Some(Instant::now());
                    }
                    let a = <[u8; 12]>::try_from(self.tail.as_slice())
                        .map_err(|_| bad(format!("an answer of {} bytes", self.tail.len())))?;
                    let (got, crc) = parse_sink_answer(&a);
                    let want = std::mem::take(&mut self.crc).finalize();
                    if got != self.moved || crc != want {
                        return Err(bad(format!(
                            "sink answer: {got} bytes with CRC {crc:08x}, sent {} with CRC {want:08x}",
                            self.moved
                        )));
                    }
                    self.state = Client::Done;
                }
                Client::Receive => {
                    let left = (self.count - self.moved).min(READ_BUF as u64) as usize;
                    let Some(n) = read(ep, id, buf, self.message, left)? else {
                        return Ok(false);
                    };
                    let now = Instant::now();
                    self.first.get_or_insert(now);
                    self.last = Some(now);
                    self.crc.update(&buf[..n]);
                    self.moved += n as u64;
                    if self.moved == self.count {
                        self.state = Client::Crc;
                    }
                }
                Client::Frames => {
                    if !self.stopped && !self.running() {
                        self.stopped = true;
                        self.out.message(&END_FRAME);
                        continue;
                    }
                    let Some(n) = read(ep, id, buf, self.message, READ_BUF)? else {
                        return Ok(false);
                    };
                    let mut input = &buf[..n];
                    while let Some(p) = self.frames.next(&mut input)? {
                        if let Piece::Payload(p) = p {
                            let now = Instant::now();
                            self.first.get_or_insert(now);
                            self.last = Some(now);
                            self.crc.update(p);
                            self.moved += p.len() as u64;
                        }
                    }
                    if self.frames.ended() {
                        // What follows the end frame is the CRC (perhaps in this read).
                        if input.len() > 4 {
                            return Err(bad(format!(
                                "{} bytes after the end frame, expected a 4-byte CRC",
                                input.len()
                            )));
                        }
                        self.tail.extend_from_slice(input);
                        self.state = Client::Crc;
                    }
                }
                Client::Crc => {
                    if !self.read_tail(ep, id, buf, 4)? {
                        return Ok(false);
                    }
                    let crc = <[u8; 4]>::try_from(self.tail.as_slice())
                        .map(u32::from_le_bytes)
                        .map_err(|_| bad(format!("a CRC of {} bytes", self.tail.len())))?;
                    let want = std::mem::take(&mut self.crc).finalize();
                    if crc != want {
                        return Err(bad(format!(
                            "source CRC {crc:08x}, received data has CRC {want:08x}"
                        )));
                    }
                    self.state = Client::Done;
                }
                Client::Done => return Ok(true),
            }
        }
    }

    /// Reads until `tail` holds `len` bytes (as a byte stream); `Ok(false)` if that has to
    /// wait.
    fn read_tail(
        &mut self,
        ep: &mut Endpoint,
        id: SessionId,
        buf: &mut [u8],
        len: usize,
    ) -> io::Result<bool> {
        while self.tail.len() < len {
            let Some(n) = read(ep, id, buf, self.message, len - self.tail.len())? else {
                return Ok(false);
            };
            self.tail.extend_from_slice(&buf[..n]);
        }
        Ok(true)
    }
}
