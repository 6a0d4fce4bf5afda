//! The kcp-perf protocol (what `kcp-tokio`'s `kcp-perf` example and `interop/kcpperf-go`
//! speak) as per-session state machines over an [`Endpoint`]: call
//! [`ServerSession::drive`] / [`ClientSession::drive`] when the session is accepted or
//! connected and on each of its `Readable`/`Writable` events; they read and write what they
//! can without blocking and say when the test is done.
//!
//! All integers are little-endian; CRC is CRC-32/IEEE. The client first sends a 16-byte
//! header (in message mode one message of its own): ASCII `KPRF`, version 1, test byte (1
//! echo, 2 sink, 3 source), two zero bytes, u64 byte count. **echo**: the client sends
//! `msg`-sized messages one at a time and checks each echo equals what it sent. **sink**: the
//! client sends `count` bytes; the server answers with the u64 count and u32 CRC of what it
//! received, which the client checks against what it sent. **source**: the server sends
//! `count` bytes in writes of at most 32 KiB, then their u32 CRC as a write of its own, which
//! the client checks. Payload bytes are whatever the sender chooses (this module sends
//! [`pattern`]; the Go peer sends a random stream): receivers check them only by CRC or echo.
//!
//! Count 0 (a `--duration` run, whose payload travels in length-prefixed frames) is not
//! served: the server refuses such a header.

use std::io;
use std::time::Instant;

use crate::{Endpoint, SessionId};

/// Payload byte at stream offset `i`.
pub fn pattern(i: u64) -> u8 {
    ((i * 7 + i / 251) % 256) as u8
}

/// Fills `buf` with the pattern from stream offset `off`.
pub fn fill_pattern(off: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern(off + k as u64);
    }
}

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

/// The 16-byte session header.
pub fn header(test: Test, count: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(b"KPRF");
    h[4] = 1;
    h[5] = test.byte();
    h[8..].copy_from_slice(&count.to_le_bytes());
    h
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Parses a session header.
pub fn parse_header(h: &[u8]) -> io::Result<(Test, u64)> {
    if h.len() != 16 {
        return Err(bad(format!("bad header: {} bytes, want 16", h.len())));
    }
    if &h[..4] != b"KPRF" || h[4] != 1 || h[6] != 0 || h[7] != 0 {
        return Err(bad("bad header: magic, version or reserved bytes".into()));
    }
    let test = match h[5] {
        1 => Test::Echo,
        2 => Test::Sink,
        3 => Test::Source,
        t => return Err(bad(format!("bad header: test {t}"))),
    };
    let mut c = [0u8; 8];
    c.copy_from_slice(&h[8..16]);
    Ok((test, u64::from_le_bytes(c)))
}

fn check(data: &[u8], offset: u64) -> io::Result<()> {
    for (k, &b) in data.iter().enumerate() {
        if b != pattern(offset + k as u64) {
            return Err(bad(format!("corrupt byte at offset {}", offset + k as u64)));
        }
    }
    Ok(())
}

/// What one session measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The test.
    pub test: Test,
    /// Payload bytes moved.
    pub bytes: u64,
    /// From the first payload byte to the last byte's confirmation.
    pub seconds: f64,
    /// Echo round trips in microseconds, ascending (empty for sink and source).
    pub rtts_us: Vec<u64>,
    /// Retransmissions of this session.
    pub retrans: u64,
    /// FEC-rebuilt datagrams this session accepted.
    pub fec_recovered: u64,
}

impl Report {
    /// MB/s (10^6 bytes per second).
    pub fn mbps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e6
        } else {
            0.0
        }
    }

    /// A round-trip percentile in microseconds, nearest rank (0 without echoes).
    pub fn rtt_us(&self, p: f64) -> u64 {
        if self.rtts_us.is_empty() {
            return 0;
        }
        let i = ((self.rtts_us.len() - 1) as f64 * p).round() as usize;
        self.rtts_us[i.min(self.rtts_us.len() - 1)]
    }

    /// One human-readable line, as the other kcp-perf implementations print.
    pub fn line(&self, role: &str, ok: bool) -> String {
        let rtt = if self.rtts_us.is_empty() {
            String::new()
        } else {
            format!(
                ", rtt p50 {} us p99 {} us",
                self.rtt_us(0.5),
                self.rtt_us(0.99)
            )
        };
        format!(
            "{role} {}: {} bytes in {:.3} s = {:.2} MB/s{rtt}, retrans {}, fec recovered {}: {}",
            self.test.name(),
            self.bytes,
            self.seconds,
            self.mbps(),
            self.retrans,
            self.fec_recovered,
            if ok { "ok" } else { "FAILED" }
        )
    }
}

/// What `drive` says.
#[derive(Debug)]
pub enum Status {
    /// Waiting for the session to become readable or writable.
    Pending,
    /// The test finished and was verified. Close the session gracefully
    /// ([`Endpoint::shutdown`]) so its last bytes are acknowledged.
    Done(Report),
    /// The test failed (bad data, bad header, the session ended).
    Failed(io::Error),
}

/// Size of the read buffer `drive` needs: one whole message in message mode.
pub const READ_BUF: usize = 1 << 16;

/// Pending output of a session: bytes (stream mode) or one message (message mode) not yet
/// accepted by `send`. Its buffer is reused.
#[derive(Debug, Default)]
struct Out {
    buf: Vec<u8>,
    off: usize,
}

impl Out {
    fn is_empty(&self) -> bool {
        self.off >= self.buf.len()
    }

    fn set(&mut self, data: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(data);
        self.off = 0;
    }

    /// Sends what is pending; `Ok(true)` when nothing is left.
    fn flush(&mut self, ep: &mut Endpoint, id: SessionId) -> io::Result<bool> {
        while !self.is_empty() {
            match ep.send(id, &self.buf[self.off..]) {
                Ok(n) => self.off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.off = 0;
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
        max.min(buf.len()).max(1)
    };
    match ep.recv(id, &mut buf[..want]) {
        Ok(n) if message && n > max => {
            Err(bad(format!("message of {n} bytes, expected at most {max}")))
        }
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

fn session_counters(ep: &Endpoint, id: SessionId) -> (u64, u64) {
    ep.session_info(id)
        .map(|s| (s.kcp.retrans_segs, s.session.fec_recovered))
        .unwrap_or((0, 0))
}

#[derive(Debug)]
enum Server {
    Header,
    Run,
    Finishing,
    Done,
}

/// The server side of one kcp-perf session.
#[derive(Debug)]
pub struct ServerSession {
    message: bool,
    state: Server,
    hdr: Vec<u8>,
    test: Test,
    count: u64,
    moved: u64,
    crc: crc32fast::Hasher,
    start: Option<Instant>,
    end: Option<Instant>,
    out: Out,
}

impl ServerSession {
    /// A session waiting for its header; `message_mode` as the endpoint's engine.
    pub fn new(message_mode: bool) -> ServerSession {
        ServerSession {
            message: message_mode,
            state: Server::Header,
            hdr: Vec::with_capacity(16),
            test: Test::Echo,
            count: 0,
            moved: 0,
            crc: crc32fast::Hasher::new(),
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
        (!matches!(self.state, Server::Header)).then_some(self.test)
    }

    /// Reads and writes what the session allows now. `buf` is scratch space of
    /// [`READ_BUF`] bytes.
    pub fn drive(&mut self, ep: &mut Endpoint, id: SessionId, buf: &mut [u8]) -> Status {
        match self.step(ep, id, buf) {
            Ok(true) => {
                let (retrans, fec_recovered) = session_counters(ep, id);
                let seconds = match (self.start, self.end) {
                    (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
                    _ => 0.0,
                };
                Status::Done(Report {
                    test: self.test,
                    bytes: self.moved,
                    seconds,
                    rtts_us: Vec::new(),
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
            // Count 0 (a client's --duration run): until the session ends.
            let unlimited = self.count == 0;
            if !self.out.flush(ep, id)? {
                return Ok(false);
            }
            match self.state {
                Server::Header => {
                    let max = if self.message {
                        16
                    } else {
                        16 - self.hdr.len()
                    };
                    let Some(n) = read(ep, id, buf, self.message, max).map_err(|e| {
                        if e.kind() == io::ErrorKind::InvalidData {
                            bad("bad header: not 16 bytes".into())
                        } else {
                            e
                        }
                    })?
                    else {
                        return Ok(false);
                    };
                    self.hdr.extend_from_slice(&buf[..n]);
                    if self.message || self.hdr.len() == 16 {
                        (self.test, self.count) = parse_header(&self.hdr)?;
                        if self.count == 0 {
                            return Err(bad(
                                "bad header: count 0 (framed --duration runs) is not served here"
                                    .into(),
                            ));
                        }
                        self.state = Server::Run;
                        if self.test == Test::Source {
                            self.start = Some(Instant::now());
                        }
                    }
                }
                Server::Run => {
                    let left = if self.count == 0 {
                        READ_BUF as u64
                    } else {
                        self.count - self.moved
                    };
                    match self.test {
                        Test::Echo | Test::Sink => {
                            let max = left.min(READ_BUF as u64) as usize;
                            let Some(n) = read(ep, id, buf, self.message, max)? else {
                                return Ok(false);
                            };
                            self.start.get_or_insert_with(Instant::now);
                            let got = &buf[..n];
                            self.moved += n as u64;
                            if self.test == Test::Echo {
                                self.out.set(got);
                            } else {
                                self.crc.update(got);
                            }
                            if !unlimited && self.moved == self.count {
                                self.end = Some(Instant::now());
                                if self.test == Test::Sink {
                                    let mut ans = [0u8; 12];
                                    ans[..8].copy_from_slice(&self.count.to_le_bytes());
                                    let crc = std::mem::take(&mut self.crc).finalize();
                                    ans[8..].copy_from_slice(&crc.to_le_bytes());
                                    self.out.set(&ans);
                                }
                                self.state = Server::Finishing;
                            }
                        }
                        Test::Source => {
                            let len = left.min(32 * 1024) as usize;
                            let chunk = &mut buf[..len];
                            fill_pattern(self.moved, chunk);
                            self.crc.update(chunk);
                            self.out.set(chunk);
                            self.moved += len as u64;
                            if !unlimited && self.moved == self.count {
                                self.state = Server::Finishing;
                            }
                        }
                    }
                }
                Server::Finishing => {
                    if self.test == Test::Source {
                        self.end = Some(Instant::now());
                        let crc = std::mem::take(&mut self.crc).finalize();
                        self.out.set(&crc.to_le_bytes());
                    }
                    self.state = Server::Done;
                }
                Server::Done => return Ok(true),
            }
        }
    }
}

#[derive(Debug)]
enum Client {
    Header,
    /// Echo: waiting for `awaiting` echoed bytes of the message sent at `msg_off`.
    Echo {
        msg_off: u64,
        awaiting: usize,
        sent_at: Instant,
    },
    Send,
    Answer,
    Receive,
    Crc,
    Done,
}

/// The client side of one kcp-perf session.
#[derive(Debug)]
pub struct ClientSession {
    message: bool,
    test: Test,
    count: u64,
    msg: usize,
    state: Client,
    /// Payload bytes sent (echo, sink) or received (source).
    moved: u64,
    /// Echo: bytes of echoes received.
    back: u64,
    crc: crc32fast::Hasher,
    tail: Vec<u8>,
    start: Option<Instant>,
    end: Option<Instant>,
    rtts: Vec<u64>,
    out: Out,
}

impl ClientSession {
    /// A session that runs `test` over `count` bytes (at least 1) in `msg`-byte messages; in
    /// message mode `msg` must not exceed the session's mss.
    pub fn new(test: Test, count: u64, msg: usize, message_mode: bool) -> ClientSession {
        ClientSession {
            message: message_mode,
            test,
            count: count.max(1),
            msg: msg.clamp(1, READ_BUF),
            state: Client::Header,
            moved: 0,
            back: 0,
            crc: crc32fast::Hasher::new(),
            tail: Vec::with_capacity(12),
            start: None,
            end: None,
            rtts: Vec::new(),
            out: Out::default(),
        }
    }

    /// Payload bytes moved so far.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    /// Reads and writes what the session allows now; `buf` is scratch space of [`READ_BUF`]
    /// bytes.
    pub fn drive(&mut self, ep: &mut Endpoint, id: SessionId, buf: &mut [u8]) -> Status {
        match self.step(ep, id, buf) {
            Ok(true) => {
                let (retrans, fec_recovered) = session_counters(ep, id);
                let seconds = match (self.start, self.end) {
                    (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
                    _ => 0.0,
                };
                let mut rtts_us = std::mem::take(&mut self.rtts);
                rtts_us.sort_unstable();
                Status::Done(Report {
                    test: self.test,
                    bytes: self.count,
                    seconds,
                    rtts_us,
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
            if !self.out.flush(ep, id)? {
                return Ok(false);
            }
            match self.state {
                Client::Header => {
                    self.out.set(&header(self.test, self.count));
                    self.state = match self.test {
                        Test::Echo => Client::Send,
                        Test::Sink => Client::Send,
                        Test::Source => Client::Receive,
                    };
                }
                Client::Send if self.test == Test::Echo => {
                    if self.moved == self.count {
                        self.end = Some(Instant::now());
                        self.state = Client::Done;
                        continue;
                    }
                    let len = (self.msg as u64).min(self.count - self.moved) as usize;
                    let chunk = &mut buf[..len];
                    fill_pattern(self.moved, chunk);
                    self.out.set(chunk);
                    let now = Instant::now();
                    self.start.get_or_insert(now);
                    self.state = Client::Echo {
                        msg_off: self.moved,
                        awaiting: len,
                        sent_at: now,
                    };
                    self.moved += len as u64;
                }
                Client::Echo {
                    msg_off,
                    awaiting,
                    sent_at,
                } => {
                    let Some(n) = read(ep, id, buf, self.message, awaiting)? else {
                        return Ok(false);
                    };
                    // The echo must equal what was sent: the pattern at these offsets.
                    check(&buf[..n], self.back).map_err(|_| {
                        bad(format!("echo mismatch in the message at offset {msg_off}"))
                    })?;
                    self.back += n as u64;
                    if n == awaiting {
                        self.rtts.push(sent_at.elapsed().as_micros() as u64);
                        self.state = Client::Send;
                    } else {
                        self.state = Client::Echo {
                            msg_off,
                            awaiting: awaiting - n,
                            sent_at,
                        };
                    }
                }
                Client::Send => {
                    // Sink: the pattern in `msg` pieces, then the answer.
                    if self.moved == self.count {
                        self.state = Client::Answer;
                        continue;
                    }
                    let len = (self.msg as u64).min(self.count - self.moved) as usize;
                    let chunk = &mut buf[..len];
                    fill_pattern(self.moved, chunk);
                    self.crc.update(chunk);
                    self.out.set(chunk);
                    self.start.get_or_insert_with(Instant::now);
                    self.moved += len as u64;
                }
                Client::Answer => {
                    let Some(n) = read(ep, id, buf, self.message, 12 - self.tail.len())? else {
                        return Ok(false);
                    };
                    self.tail.extend_from_slice(&buf[..n]);
                    if self.tail.len() == 12 {
                        self.end = Some(Instant::now());
                        let mut c = [0u8; 8];
                        c.copy_from_slice(&self.tail[..8]);
                        let got = u64::from_le_bytes(c);
                        let crc = u32::from_le_bytes([
                            self.tail[8],
                            self.tail[9],
                            self.tail[10],
                            self.tail[11],
                        ]);
                        let want = std::mem::take(&mut self.crc).finalize();
                        if got != self.count || crc != want {
                            return Err(bad(format!(
                                "sink answer {got} bytes crc {crc:08x}, sent {} bytes crc {want:08x}",
                                self.count
                            )));
                        }
                        self.state = Client::Done;
                    }
                }
                Client::Receive => {
                    let left = (self.count - self.moved).min(READ_BUF as u64) as usize;
                    let Some(n) = read(ep, id, buf, self.message, left)? else {
                        return Ok(false);
                    };
                    let now = Instant::now();
                    self.start.get_or_insert(now);
                    // Any bytes: the CRC that follows checks them.
                    self.crc.update(&buf[..n]);
                    self.moved += n as u64;
                    if self.moved == self.count {
                        self.end = Some(now);
                        self.state = Client::Crc;
                    }
                }
                Client::Crc => {
                    let Some(n) = read(ep, id, buf, self.message, 4 - self.tail.len())? else {
                        return Ok(false);
                    };
                    self.tail.extend_from_slice(&buf[..n]);
                    if self.tail.len() == 4 {
                        let crc = u32::from_le_bytes([
                            self.tail[0],
                            self.tail[1],
                            self.tail[2],
                            self.tail[3],
                        ]);
                        let want = std::mem::take(&mut self.crc).finalize();
                        if crc != want {
                            return Err(bad(format!(
                                "source CRC {crc:08x}, received bytes have {want:08x}"
                            )));
                        }
                        self.state = Client::Done;
                    }
                }
                Client::Done => return Ok(true),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_bad_headers_are_refused() {
        for t in [Test::Echo, Test::Sink, Test::Source] {
            assert_eq!(parse_header(&header(t, 12345)).unwrap(), (t, 12345));
            assert_eq!(Test::from_name(t.name()), Some(t));
        }
        let mut h = header(Test::Sink, 1);
        h[0] = b'X';
        assert!(parse_header(&h).is_err());
        assert!(parse_header(&h[..15]).is_err());
        let mut h = header(Test::Sink, 1);
        h[5] = 9;
        assert!(parse_header(&h).is_err());
    }

    #[test]
    fn pattern_matches_the_go_peer() {
        // (i*7 + i/251) % 256, repeating every 64256 bytes.
        assert_eq!(pattern(0), 0);
        assert_eq!(pattern(1), 7);
        assert_eq!(pattern(251), ((251 * 7 + 1) % 256) as u8);
        for i in [0u64, 5, 999, 70_000] {
            assert_eq!(pattern(i), pattern(i + 64256));
        }
    }
}
