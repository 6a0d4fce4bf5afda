//! The server side of a kcp-perf session: reads the header, then sinks, echoes or sources
//! the run and answers it.

use std::io;
use std::time::Instant;

use super::*;

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
