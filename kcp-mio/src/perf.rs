//! The kcp-perf protocol (what `kcp-tokio`'s `kcp-perf` example and `interop/kcpperf-go`
//! speak, stated in `interop/kcpperf-go/README.md`) as per-session state machines over an
//! [`Endpoint`]: call [`ServerSession::drive`] / [`ClientSession::drive`] when the session is
//! accepted or connected, on each of its `Readable`/`Writable` events, and (client) when
//! [`ClientSession::wake_at`] is due; they read and write what they can without blocking and
//! say when the test is done.
//!
//! The wire format, in short. All integers are little-endian; CRC is CRC-32/IEEE. The client
//! first sends a 16-byte [`header`] (in message mode one message of its own): ASCII `KPRF`,
//! version 1, test byte (1 echo, 2 sink, 3 source), two zero bytes, u64 byte count.
//!
//! * **echo**: the client sends `msg`-sized messages one at a time and checks each echo
//!   equals what it sent; the server sends back whatever it receives.
//! * **sink**: the client sends `count` bytes; the server answers with the u64 count and u32
//!   CRC of what it received ([`sink_answer`]), which the client checks against what it sent.
//! * **source**: the server sends `count` bytes in writes of at most [`SOURCE_WRITE`] bytes,
//!   then their u32 CRC as a write of its own, which the client checks.
//! * **count 0** (a `--duration` run): the payload of both directions travels in frames (u32
//!   length, then at most [`MAX_FRAME`] bytes; [`frame_header`], [`Deframer`]), read as a
//!   byte stream. A zero-length frame ([`END_FRAME`]) ends the run: the client sends it when
//!   its time is up; the echo server echoes it, the sink server answers as above, the source
//!   server sends its own end frame and then the CRC.
//!
//! Payload bytes are whatever the sender chooses: receivers check them only by the CRC or the
//! echo, never by their values. This module sends a seeded pseudo-random stream
//! ([`Payload`]), so a peer that checks some fixed pattern fails against it.
//!
//! In message mode bulk data goes out in messages of at most one segment (kcp-go's `Write`
//! does the same), which any receiver window can take; the header, the sink answer, the CRC
//! and the end frame are messages of their own, and an echo goes back as the message it
//! came in.

use std::io;
use std::time::{Duration, Instant};

pub use crate::histogram::RttHistogram;
use crate::{Endpoint, SessionId};

// ---- the wire format ------------------------------------------------------------------------

/// Length of the session header.
pub const HEADER_LEN: usize = 16;

/// The largest frame payload a count-0 run accepts (1 MiB); a longer frame is an error.
pub const MAX_FRAME: u32 = 1 << 20;

/// The source server's write size (also its frame payload size in a count-0 run).
pub const SOURCE_WRITE: usize = 32 * 1024;

/// The end-of-run frame of a count-0 run: a frame of length 0.
pub const END_FRAME: [u8; 4] = [0; 4];

/// Size of the scratch buffer `drive` needs: one whole message in message mode (the
/// contract's 64 KiB read buffer).
pub const READ_BUF: usize = 1 << 16;

/// Which test a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Round trips of `msg`-sized messages.
    Echo,
    /// Client to server bulk transfer.
    Sink,
    /// Server to client bulk transfer.
    Source,
}

impl Test {
    /// The protocol byte.
    pub fn byte(self) -> u8 {
        match self {
            Test::Echo => 1,
            Test::Sink => 2,
            Test::Source => 3,
        }
    }

    /// Parses `echo`, `sink` or `source`.
    pub fn from_name(s: &str) -> Option<Test> {
        match s {
            "echo" => Some(Test::Echo),
            "sink" => Some(Test::Sink),
            "source" => Some(Test::Source),
            _ => None,
        }
    }

    /// The test's name.
    pub fn name(self) -> &'static str {
        match self {
            Test::Echo => "echo",
            Test::Sink => "sink",
            Test::Source => "source",
        }
    }
}

/// The 16-byte session header; `count` 0 asks for a framed (`--duration`) run.
pub fn header(test: Test, count: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(b"KPRF");
    h[4] = 1;
    h[5] = test.byte();
    h[8..].copy_from_slice(&count.to_le_bytes());
    h
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Parses a session header: the test and the byte count (0: a framed run). Errors are
/// `InvalidData` and start with `bad header:`.
pub fn parse_header(h: &[u8]) -> io::Result<(Test, u64)> {
    let Ok(h) = <&[u8; HEADER_LEN]>::try_from(h) else {
        return Err(bad(format!(
            "bad header: {} bytes, want {HEADER_LEN}",
            h.len()
        )));
    };
    if &h[..4] != b"KPRF" {
        return Err(bad(format!("bad header: bad magic {:?}", &h[..4])));
    }
    if h[4] != 1 {
        return Err(bad(format!("bad header: unsupported version {}", h[4])));
    }
    if h[6] != 0 || h[7] != 0 {
        return Err(bad("bad header: non-zero reserved bytes".into()));
    }
    let test = match h[5] {
        1 => Test::Echo,
        2 => Test::Sink,
        3 => Test::Source,
        t => return Err(bad(format!("bad header: unknown test {t}"))),
    };
    let [.., c0, c1, c2, c3, c4, c5, c6, c7] = *h;
    Ok((test, u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7])))
}

/// The length prefix of a frame carrying `len` payload bytes.
pub fn frame_header(len: u32) -> [u8; 4] {
    len.to_le_bytes()
}

/// The sink server's 12-byte answer: bytes received and their CRC.
pub fn sink_answer(count: u64, crc: u32) -> [u8; 12] {
    let mut a = [0u8; 12];
    a[..8].copy_from_slice(&count.to_le_bytes());
    a[8..].copy_from_slice(&crc.to_le_bytes());
    a
}

/// Splits a sink answer into the byte count and the CRC.
pub fn parse_sink_answer(a: &[u8; 12]) -> (u64, u32) {
    let [c0, c1, c2, c3, c4, c5, c6, c7, r0, r1, r2, r3] = *a;
    (
        u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]),
        u32::from_le_bytes([r0, r1, r2, r3]),
    )
}

/// What a [`Deframer`] found next in its input.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Payload bytes of the current frame (never empty; a frame may come in several pieces).
    Payload(&'a [u8]),
    /// The end-of-run frame. The input after it is left to the caller (the source server's
    /// CRC follows it; nothing follows it otherwise).
    End,
}

/// Splits the byte stream of a count-0 run into frame payload and the end frame, whatever
/// the pieces it arrives in (message boundaries carry no meaning).
#[derive(Debug, Default, Clone)]
pub struct Deframer {
    len: [u8; 4],
    have: usize,
    left: usize,
    ended: bool,
}

impl Deframer {
    /// A deframer at the start of a frame.
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Whether the end frame was seen.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Takes the next piece from the front of `input`; `None` when `input` is used up (or
    /// the end frame was seen). A frame longer than [`MAX_FRAME`] is an `InvalidData` error.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> io::Result<Option<Piece<'a>>> {
        while !self.ended {
            if self.left > 0 {
                if input.is_empty() {
                    return Ok(None);
                }
                let (p, rest) = input.split_at(self.left.min(input.len()));
                *input = rest;
                self.left -= p.len();
                return Ok(Some(Piece::Payload(p)));
            }
            while self.have < 4 {
                let Some((&b, rest)) = input.split_first() else {
                    return Ok(None);
                };
                self.len[self.have] = b;
                self.have += 1;
                *input = rest;
            }
            self.have = 0;
            let len = u32::from_le_bytes(self.len);
            if len == 0 {
                self.ended = true;
                return Ok(Some(Piece::End));
            }
            if len > MAX_FRAME {
                return Err(bad(format!("frame of {len} bytes (at most {MAX_FRAME})")));
            }
            self.left = len as usize;
        }
        Ok(None)
    }
}

/// The payload this module sends: a seeded xorshift64* stream, so that no receiver can rely
/// on a fixed pattern (the contract lets the sender choose its bytes).
#[derive(Debug, Clone)]
pub struct Payload(u64);

impl Payload {
    /// A stream from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Payload {
        Payload((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

// ---- reports ----------------------------------------------------------------------------------

/// What one session measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The test.
    pub test: Test,
    /// Payload bytes moved (frame headers, answers and CRCs excluded).
    pub bytes: u64,
    /// The throughput interval, as the contract's "Timing" states it.
    pub seconds: f64,
    /// Echo round trips in microseconds (empty for sink and source), in a bounded histogram:
    /// a run of any length keeps the same memory.
    pub rtt: RttHistogram,
    /// Retransmissions of this session.
    pub retrans: u64,
    /// FEC-rebuilt datagrams this session accepted.
    pub fec_recovered: u64,
}

impl Report {
    /// Megabytes per second (10^6 bytes per second; JSON `mb_per_s`).
    pub fn mbps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e6
        } else {
            0.0
        }
    }

    /// A round-trip percentile in microseconds, nearest rank, to within 1/32 (0 without
    /// echoes; see [`RttHistogram::quantile`]).
    pub fn rtt_us(&self, p: f64) -> u64 {
        self.rtt.quantile(p)
    }

    /// One human-readable line, as `kcp-perf` prints it.
    pub fn line(&self, role: &str, ok: bool) -> String {
        let rtt = if self.rtt.is_empty() {
            String::new()
        } else {
            format!(
                ", rtt p50 {} us p99 {} us",
                self.rtt_us(0.5),
                self.rtt_us(0.99)
            )
        };
        format!(
            "{role} {}: {} bytes in {:.3} s = {:.2} MB/s ({:.1} Mbit/s){rtt}, retrans {}, fec recovered {}: {}",
            self.test.name(),
            self.bytes,
            self.seconds,
            self.mbps(),
            self.mbps() * 8.0,
            self.retrans,
            self.fec_recovered,
            if ok { "ok" } else { "FAILED" }
        )
    }

    /// One JSON object (the contract's `--json` keys, as `kcp-perf` prints them), without a
    /// trailing newline; `extra` is inserted before the closing brace (e.g.
    /// `,"remote":"1.2.3.4:5"`, or empty).
    pub fn json(
        &self,
        role: &str,
        ok: bool,
        cpu_seconds: f64,
        peak_rss_kb: u64,
        extra: &str,
    ) -> String {
        format!(
            "{{\"role\":\"{role}\",\"test\":\"{}\",\"bytes\":{},\"seconds\":{:.6},\"mb_per_s\":{:.3},\"mbit_per_s\":{:.3},\"rtt_p50_us\":{},\"rtt_p99_us\":{},\"rtt_max_us\":{},\"cpu_seconds\":{:.3},\"peak_rss_kb\":{},\"retrans\":{},\"fec_recovered\":{},\"ok\":{ok}{extra}}}",
            self.test.name(),
            self.bytes,
            self.seconds,
            self.mbps(),
            self.mbps() * 8.0,
            self.rtt_us(0.5),
            self.rtt_us(0.99),
            self.rtt.max(),
            cpu_seconds,
            peak_rss_kb,
            self.retrans,
            self.fec_recovered,
        )
    }
}

/// What `drive` says.
#[derive(Debug)]
pub enum Status {
    /// Waiting for the session to become readable or writable (or, client, for
    /// [`ClientSession::wake_at`]).
    Pending,
    /// The test finished and was verified. Close the session gracefully
    /// ([`Endpoint::shutdown`]) so its last bytes are acknowledged.
    Done(Report),
    /// The test failed (bad data, bad header, the session ended).
    Failed(io::Error),
}

// ---- session I/O --------------------------------------------------------------------------

/// Pending output of a session, not yet accepted by `send`. In message mode it goes out in
/// messages of at most `piece` bytes. Its buffer is reused.
#[derive(Debug, Default)]
struct Out {
    buf: Vec<u8>,
    off: usize,
    piece: usize,
}

impl Out {
    fn is_empty(&self) -> bool {
        self.off >= self.buf.len()
    }

    /// Empties the buffer for new output in messages of at most `piece` bytes.
    fn start(&mut self, piece: usize) -> &mut Vec<u8> {
        self.buf.clear();
        self.off = 0;
        self.piece = piece.max(1);
        &mut self.buf
    }

    /// New output of one message of its own (message mode).
    fn message(&mut self, data: &[u8]) {
        self.start(data.len()).extend_from_slice(data);
    }

    /// Sends what is pending; `Ok(true)` when nothing is left.
    fn flush(&mut self, ep: &mut Endpoint, id: SessionId, message: bool) -> io::Result<bool> {
        while !self.is_empty() {
            let end = if message {
                self.buf.len().min(self.off + self.piece)
            } else {
                self.buf.len()
            };
            match ep.send(id, &self.buf[self.off..end]) {
                Ok(n) => self.off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Reads once: `Ok(None)` when nothing is ready. Stream mode reads at most `max` bytes;
/// message mode reads one message, which must not exceed `max`.
fn read(
    ep: &mut Endpoint,
    id: SessionId,
    buf: &mut [u8],
    message: bool,
    max: usize,
) -> io::Result<Option<usize>> {
    let want = if message {
        buf.len()
    } else {
        max.min(buf.len())
    };
    if want == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty read buffer (drive needs READ_BUF bytes)",
        ));
    }
    match ep.recv(id, &mut buf[..want]) {
        Ok(0) => Ok(None),
        Ok(n) if message && n > max => Err(bad(format!(
            "a message of {n} bytes, expected at most {max}"
        ))),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if message && e.kind() == io::ErrorKind::InvalidInput => Err(bad(format!(
            "a message of {} bytes, larger than the {} byte read buffer",
            ep.peek_size(id).unwrap_or(0),
            buf.len()
        ))),
        Err(e) => Err(e),
    }
}

fn session_counters(ep: &Endpoint, id: SessionId) -> (u64, u64) {
    ep.session_info(id)
        .map(|s| (s.kcp.retrans_segs, s.session.fec_recovered))
        .unwrap_or((0, 0))
}

/// The message size for bulk data: one segment.
fn mss(ep: &Endpoint, id: SessionId) -> usize {
    ep.session_info(id).map_or(READ_BUF, |s| s.mss.max(1))
}

/// A per-session seed: the conversation id and the clock.
fn seed(ep: &Endpoint, id: SessionId) -> u64 {
    let conv = ep.session_info(id).map_or(0, |s| u64::from(s.conv));
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (conv << 32) ^ t
}

fn seconds(start: Option<Instant>, end: Option<Instant>) -> f64 {
    match (start, end) {
        (Some(s), Some(e)) => e.saturating_duration_since(s).as_secs_f64(),
        _ => 0.0,
    }
}

// ---- server -----------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Header,
    /// A run of `count` bytes.
    Counted,
    /// A count-0 run: frames until the end frame.
    Framed,
    Done,
}

/// The server side of one kcp-perf session: any payload bytes are accepted (checked by
/// nothing but their count), both byte-count and `--duration` (count 0) runs.
#[derive(Debug)]
pub struct ServerSession {
    message: bool,
    mss: usize,
    state: Server,
    hdr: Vec<u8>,
    test: Test,
    count: u64,
    moved: u64,
    crc: crc32fast::Hasher,
    payload: Payload,
    frames: Deframer,
    /// Framed source: the client's end frame arrived.
    stopped: bool,
    start: Option<Instant>,
    end: Option<Instant>,
    out: Out,
}

impl ServerSession {
    /// A session waiting for its header; `message_mode` as the endpoint's engine.
    pub fn new(message_mode: bool) -> ServerSession {
        ServerSession {
            message: message_mode,
            mss: READ_BUF,
            state: Server::Header,
            hdr: Vec::with_capacity(HEADER_LEN),
            test: Test::Echo,
            count: 0,
            moved: 0,
            crc: crc32fast::Hasher::new(),
            payload: Payload::new(0),
            frames: Deframer::new(),
            stopped: false,
            start: None,
            end: None,
            out: Out::default(),
        }
    }

    /// Payload bytes received (echo, sink) or sent (source) so far.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    /// The test, once the header arrived.
    pub fn test(&self) -> Option<Test> {
        (self.state != Server::Header).then_some(self.test)
    }

    /// Reads and writes what the session allows now. `buf` is scratch space of
    /// [`READ_BUF`] bytes.
    pub fn drive(&mut self, ep: &mut Endpoint, id: SessionId, buf: &mut [u8]) -> Status {
        match self.step(ep, id, buf) {
            Ok(true) => {
                let (retrans, fec_recovered) = session_counters(ep, id);
                Status::Done(Report {
                    test: self.test,
                    bytes: self.moved,
                    seconds: seconds(self.start, self.end),
                    rtt: RttHistogram::new(),
                    retrans,
                    fec_recovered,
                })
            }
            Ok(false) => Status::Pending,
            Err(e) => Status::Failed(e),
        }
    }

    fn step(&mut self, ep: &mut Endpoint, id: SessionId, buf: &mut [u8]) -> io::Result<bool> {
        loop {
            if self.state == Server::Framed && self.test == Test::Source && !self.stopped {
                // Before a send that may block: the end frame must not wait behind it.
                self.read_stop(ep, id, buf)?;
            }
            if !self.out.flush(ep, id, self.message)? {
                return Ok(false);
            }
            match self.state {
                Server::Header => {
                    let max = if self.message {
                        HEADER_LEN
                    } else {
                        HEADER_LEN - self.hdr.len()
                    };
                    let n = read(ep, id, buf, self.message, max).map_err(|e| {
                        if e.kind() == io::ErrorKind::InvalidData {
                            bad(format!("bad header: {e}"))
                        } else {
                            e
                        }
                    })?;
                    let Some(n) = n else {
                        return Ok(false);
                    };
                    self.hdr.extend_from_slice(&buf[..n]);
                    if self.message || self.hdr.len() == HEADER_LEN {
                        (self.test, self.count) = parse_header(&self.hdr)?;
                        self.mss = mss(ep, id);
                        self.payload = Payload::new(seed(ep, id));
                        self.state = if self.count == 0 {
                            Server::Framed
                        } else {
                            Server::Counted
                        };
                        if self.test == Test::Source {
                            self.start = Some(Instant::now());
                        }
                    }
                }
                Server::Counted => match self.test {
                    Test::Echo | Test::Sink => {
                        let left = self.count - self.moved;
                        let max = left.min(READ_BUF as u64) as usize;
                        let Some(n) = read(ep, id, buf, self.message, max)? else {
                            return Ok(false);
                        };
                        let got = &buf[..n];
                        self.start.get_or_insert_with(Instant::now);
                        self.moved += n as u64;
                        if self.test == Test::Echo {
                            // In message mode each message goes back as one message.
                            self.out.message(got);
                        } else {
                            self.crc.update(got);
                        }
                        if self.moved == self.count {
                            self.end = Some(Instant::now());
                            self.finish();
                        }
                    }
                    Test::Source => {
                        if self.moved == self.count {
                            // The last payload write returned.
                            self.end = Some(Instant::now());
                            self.finish();
                            continue;
                        }
                        let len = (self.count - self.moved).min(SOURCE_WRITE as u64) as usize;
                        self.source_write(len, false);
                    }
                },
                Server::Framed => match self.test {
                    Test::Echo | Test::Sink => {
                        let Some(n) = read(ep, id, buf, self.message, READ_BUF)? else {
                            return Ok(false);
                        };
                        self.start.get_or_insert_with(Instant::now);
                        let mut input = &buf[..n];
                        while let Some(p) = self.frames.next(&mut input)? {
                            match p {
                                Piece::Payload(p) => {
                                    self.moved += p.len() as u64;
                                    if self.test == Test::Sink {
                                        self.crc.update(p);
                                    }
                                }
                                Piece::End => {
                                    if !input.is_empty() {
                                        return Err(bad(format!(
                                            "{} bytes after the end frame",
                                            input.len()
                                        )));
                                    }
                                    self.end = Some(Instant::now());
                                }
                            }
                        }
                        if self.test == Test::Echo {
                            // Checked above (frame lengths), then sent back as it came.
                            self.out.message(&buf[..n]);
                        }
                        if self.frames.ended() {
                            self.finish();
                        }
                    }
                    Test::Source => {
                        if self.stopped {
                            self.end = Some(Instant::now());
                            self.finish();
                            continue;
                        }
                        self.source_write(SOURCE_WRITE, true);
                    }
                },
                Server::Done => return Ok(true),
            }
        }
    }

    /// Queues `len` payload bytes of a source run (framed: as one frame).
    fn source_write(&mut self, len: usize, framed: bool) {
        let b = self.out.start(self.mss);
        if framed {
            b.extend_from_slice(&frame_header(len as u32));
        }
        let at = b.len();
        b.resize(at + len, 0);
        self.payload.fill(&mut b[at..]);
        self.crc.update(&b[at..]);
        self.moved += len as u64;
    }

    /// Queues what ends the test: the sink answer, or the source's (end frame and) CRC.
    fn finish(&mut self) {
        let crc = std::mem::take(&mut self.crc).finalize();
        match self.test {
            Test::Echo => {}
            Test::Sink => self.out.message(&sink_answer(self.moved, crc)),
            Test::Source => {
                let b = self.out.start(4);
                if self.count == 0 {
                    b.extend_from_slice(&END_FRAME);
                }
                b.extend_from_slice(&crc.to_le_bytes());
            }
        }
        self.state = Server::Done;
    }

    /// Framed source: reads the client's end frame, the only thing it may send.
    fn read_stop(&mut self, ep: &mut Endpoint, id: SessionId, buf: &mut [u8]) -> io::Result<()> {
        while !self.stopped {
            let max = if self.message { READ_BUF } else { 4 };
            let Some(n) = read(ep, id, buf, self.message, max)? else {
                return Ok(());
            };
            let mut input = &buf[..n];
            while let Some(p) = self.frames.next(&mut input)? {
                match p {
                    Piece::Payload(_) => {
                        return Err(bad("the client sent payload during a source run".into()))
                    }
                    Piece::End if !input.is_empty() => {
                        return Err(bad(format!("{} bytes after the end frame", input.len())))
                    }
                    Piece::End => self.stopped = true,
                }
            }
        }
        Ok(())
    }
}

// ---- client -----------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_including_count_zero() {
        for t in [Test::Echo, Test::Sink, Test::Source] {
            for count in [0, 1, 12345, u64::MAX] {
                assert_eq!(parse_header(&header(t, count)).unwrap(), (t, count));
            }
            assert_eq!(Test::from_name(t.name()), Some(t));
        }
    }

    #[test]
    fn each_kind_of_bad_header_is_refused_with_invalid_data() {
        type Spoil = fn(&mut Vec<u8>);
        let cases: [(&str, Spoil); 6] = [
            ("magic", |h| h[0] = b'X'),
            ("version", |h| h[4] = 2),
            ("test", |h| h[5] = 4),
            ("reserved", |h| h[7] = 1),
            ("short", |h| h.truncate(15)),
            ("long", |h| h.push(0)),
        ];
        for (what, f) in cases {
            let mut h = header(Test::Sink, 1).to_vec();
            f(&mut h);
            let e = parse_header(&h).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}");
            assert!(e.to_string().starts_with("bad header: "), "{what}: {e}");
        }
    }

    #[test]
    fn sink_answers_round_trip() {
        let a = sink_answer(0x0102_0304_0506_0708, 0xdead_beef);
        assert_eq!(a[0], 0x08);
        assert_eq!(parse_sink_answer(&a), (0x0102_0304_0506_0708, 0xdead_beef));
    }

    /// Frames cut at every byte boundary give the same payload and one end.
    #[test]
    fn the_deframer_reads_frames_split_anywhere() {
        let mut stream = Vec::new();
        let mut payload = Vec::new();
        for (len, byte) in [(3u32, 1u8), (1, 2), (300, 3)] {
            stream.extend_from_slice(&frame_header(len));
            stream.extend(std::iter::repeat_n(byte, len as usize));
            payload.extend(std::iter::repeat_n(byte, len as usize));
        }
        stream.extend_from_slice(&END_FRAME);
        stream.extend_from_slice(b"CRC!");
        for cut in 1..stream.len() {
            let mut d = Deframer::new();
            let mut got = Vec::new();
            let mut ends = 0;
            let mut after = Vec::new();
            for part in stream.chunks(cut) {
                let mut input = part;
                while let Some(p) = d.next(&mut input).unwrap() {
                    match p {
                        Piece::Payload(p) => got.extend_from_slice(p),
                        Piece::End => ends += 1,
                    }
                }
                after.extend_from_slice(input);
            }
            assert_eq!((got.as_slice(), ends), (payload.as_slice(), 1), "cut {cut}");
            assert_eq!(after, b"CRC!", "cut {cut}");
        }
    }

    #[test]
    fn a_frame_longer_than_the_limit_is_an_error() {
        let mut d = Deframer::new();
        let h = frame_header(MAX_FRAME + 1);
        let e = d.next(&mut &h[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut d = Deframer::new();
        let h = frame_header(MAX_FRAME);
        assert_eq!(d.next(&mut &h[..]).unwrap(), None);
    }

    #[test]
    fn the_payload_is_seeded_and_not_a_fixed_pattern() {
        let (mut a, mut b, mut c) = (Payload::new(1), Payload::new(1), Payload::new(2));
        let (mut x, mut y, mut z) = ([0u8; 1000], [0u8; 1000], [0u8; 1000]);
        a.fill(&mut x);
        b.fill(&mut y);
        c.fill(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
        // Not the Rust side's (i*7 + i/251) % 256 pattern, nor constant.
        let pattern: Vec<u8> = (0..1000u64)
            .map(|i| ((i * 7 + i / 251) % 256) as u8)
            .collect();
        assert_ne!(x.to_vec(), pattern);
        assert!(x.iter().any(|&v| v != x[0]));
    }

    #[test]
    fn json_has_the_contract_keys() {
        let r = Report {
            test: Test::Echo,
            bytes: 2_000_000,
            seconds: 2.0,
            rtt: RttHistogram::from_values([10, 20, 30]),
            retrans: 4,
            fec_recovered: 5,
        };
        let j = r.json("client", true, 0.5, 1234, ",\"conn\":0");
        for key in [
            "\"role\":\"client\"",
            "\"test\":\"echo\"",
            "\"bytes\":2000000",
            "\"mb_per_s\":1.000",
            "\"mbit_per_s\":8.000",
            "\"rtt_p50_us\":20",
            "\"rtt_max_us\":30",
            "\"peak_rss_kb\":1234",
            "\"retrans\":4",
            "\"fec_recovered\":5",
            "\"ok\":true,\"conn\":0}",
        ] {
            assert!(j.contains(key), "{key} in {j}");
        }
        assert_eq!(
            r.line("client", true),
            "client echo: 2000000 bytes in 2.000 s = 1.00 MB/s (8.0 Mbit/s), rtt p50 20 us p99 30 us, retrans 4, fec recovered 5: ok"
        );
    }
}
