//! The kcp-perf protocol (what `examples/kcp-perf.rs` and `interop/kcpperf-go` speak), as a
//! library so that tests and benchmarks drive it in-process.
//!
//! The protocol is stated in `interop/kcpperf-go/README.md`. In short: all integers are
//! little-endian; CRC is CRC-32/IEEE. The client first sends a 16-byte header (in message
//! mode one message of its own): ASCII `KPRF`, version 1, test byte (1 echo, 2 sink, 3
//! source), two zero bytes, u64 byte count. **echo**: the client sends `msg`-sized messages
//! one at a time and waits for each echo. **sink**: the client sends `count` bytes; the
//! server answers with the u64 count and u32 CRC of what it received. **source**: the server
//! sends `count` bytes followed by their u32 CRC. Payload bytes are whatever a side chooses
//! (ours: [`pattern`]); a receiver checks them by the CRC or the echo, never by their
//! values. Count 0 (a `--duration` run) frames the payload: u32 length then the bytes, a
//! zero length ends the run, after which sink and source end as with a count.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::KcpStream;
pub use kcp_mio::histogram::RttHistogram;
pub use kcp_mio::perf::{
    frame_header, header, parse_header, parse_sink_answer, sink_answer, Report, Test, END_FRAME,
    HEADER_LEN, MAX_FRAME,
};

/// Payload byte at stream offset `i`.
pub fn pattern(i: u64) -> u8 {
    ((i * 7 + i / 251) % 256) as u8
}

/// The pattern repeats every `PERIOD` bytes: `7 * i` every 256, `i / 251` (mod 256) every
/// 251 * 256, which 7 * 251 * 256 also leaves unchanged mod 256.
const PERIOD: u64 = 251 * 256;
/// Longest run [`payload`] serves from its table; longer ones are computed.
const TABLE_RUN: usize = 1 << 16;

/// The pattern bytes at stream offsets `off..off + len`, the same as mapping [`pattern`]
/// over them, taken from a table computed once: computing them byte by byte (a division
/// each) took about half of a sink client's CPU and held back what it could send.
pub fn payload(off: u64, len: usize) -> std::borrow::Cow<'static, [u8]> {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    if len > TABLE_RUN {
        return (off..off + len as u64)
            .map(pattern)
            .collect::<Vec<u8>>()
            .into();
    }
    let table = TABLE.get_or_init(|| (0..PERIOD + TABLE_RUN as u64).map(pattern).collect());
    let at = (off % PERIOD) as usize;
    table.get(at..at + len).unwrap_or(&[]).into()
}

struct Io<'a> {
    s: &'a mut KcpStream,
    message: bool,
    buf: Vec<u8>,
}

/// Largest read buffer of a session (message mode uses it from the start: a message must fit).
const MAX_BUF: usize = 1 << 16;

/// A session's first read buffer in stream mode; it doubles while reads fill it.
const FIRST_BUF: usize = 512;

/// The read buffer a session starts with (in stream mode none: the first read that needs
/// one makes it, and a server's echo needs none).
fn first_buf(message_mode: bool) -> Vec<u8> {
    if message_mode {
        vec![0u8; MAX_BUF]
    } else {
        Vec::new()
    }
}

/// A stream-mode echo's stack buffer: one read moves at most this much.
const ECHO_BUF: usize = 2048;

/// One step of a stream-mode echo without waiting: reads what is there (at most `max`
/// bytes) into a buffer on the stack and queues it back. `Ok(None)`: nothing was there.
/// What the send queue did not take is appended to `rest`, for the caller to write.
///
/// With the wait in [`KcpStream::readable`] and no `await` here, an idle session's task
/// holds no read buffer: at 10,000 echo sessions that was 512 bytes each.
fn echo_now(s: &KcpStream, max: usize, rest: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut buf = [0u8; ECHO_BUF];
    let want = max.min(ECHO_BUF);
    let n = match s.try_read(&mut buf[..want]) {
        Ok(0) => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "session ended early",
            ))
        }
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    };
    let took = match s.try_write(&buf[..n]) {
        Ok(w) => w,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    rest.extend_from_slice(&buf[took..n]);
    Ok(Some(n))
}

impl Io<'_> {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.message {
            self.s.send_message(data).await
        } else {
            self.s.write_all(data).await
        }
    }

    /// Stream mode: up to `max` bytes; message mode: one whole message (must be <= max).
    async fn read_some(&mut self, max: usize) -> io::Result<&[u8]> {
        let n = if self.message {
            let n = self.s.recv_message(&mut self.buf).await?;
            if n > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "message longer than expected",
                ));
            }
            n
        } else {
            if self.buf.is_empty() {
                self.buf.resize(FIRST_BUF, 0);
            }
            let want = max.min(self.buf.len());
            let n = self.s.read(&mut self.buf[..want]).await?;
            if n == self.buf.len() && max > n && self.buf.len() < MAX_BUF {
                // Reads fill the buffer: grow it (sessions that move small messages keep a
                // small one, so thousands of echo sessions stay cheap).
                self.buf.resize(self.buf.len() * 2, 0);
            }
            n
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "session ended early",
            ));
        }
        Ok(&self.buf[..n])
    }

    /// Sends `len` pattern bytes from stream offset `off`, waits for their echo, checks it;
    /// returns the round trip in microseconds.
    async fn echo_once(&mut self, off: u64, len: usize) -> io::Result<u64> {
        let data = payload(off, len);
        let t = Instant::now();
        self.write(&data).await?;
        let back = self.read_exact_n(len).await?;
        if back[..] != data[..] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("echo mismatch at offset {off}"),
            ));
        }
        Ok(t.elapsed().as_micros() as u64)
    }

    async fn read_exact_n(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = n - out.len();
            let got = self.read_some(left).await?;
            out.extend_from_slice(got);
        }
        Ok(out)
    }
}

fn stats(s: &KcpStream) -> (u64, u64) {
    s.stats()
        .map(|st| (st.kcp.retrans_segs, st.session.fec_recovered))
        .unwrap_or((0, 0))
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl Io<'_> {
    /// Exactly `n` bytes as a byte stream, across message boundaries in message mode.
    async fn read_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.s.read_exact(&mut v).await?;
        Ok(v)
    }

    async fn read_u32(&mut self) -> io::Result<u32> {
        let b = self.read_bytes(4).await?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads what is there without waiting (`None`: nothing yet).
    async fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        use std::task::Poll;
        use tokio::io::AsyncRead;
        let s = &mut *self.s;
        std::future::poll_fn(|cx| {
            let mut rb = tokio::io::ReadBuf::new(buf);
            match std::pin::Pin::new(&mut *s).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(rb.filled().len()))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Ready(Ok(None)),
            }
        })
        .await
    }
}

/// A frame of a count-0 (duration) run: u32 length, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(4 + payload.len());
    f.extend_from_slice(&frame_header(payload.len() as u32));
    f.extend_from_slice(payload);
    f
}

/// Runs one client session. `msg` is the message size (echo) or write size.
pub async fn client(
    stream: &mut KcpStream,
    test: Test,
    count: u64,
    msg: usize,
    message_mode: bool,
) -> io::Result<Report> {
    client_paced(stream, test, count, msg, message_mode, None).await
}

/// [`client`], with echo messages sent one per `pace` (sparse traffic, for latency) instead of
/// back to back.
pub async fn client_paced(
    stream: &mut KcpStream,
    test: Test,
    count: u64,
    msg: usize,
    message_mode: bool,
    pace: Option<Duration>,
) -> io::Result<Report> {
    let msg = msg.max(1);
    let mut io = Io {
        s: stream,
        message: message_mode,
        buf: first_buf(message_mode),
    };
    io.write(&header(test, count)).await?;
    let mut rtts = RttHistogram::new();
    let start;
    match test {
        Test::Echo => {
            start = Instant::now();
            let mut off = 0u64;
            let mut i = 0u32;
            while off < count {
                if let Some(p) = pace {
                    tokio::time::sleep_until((start + p * i).into()).await;
                }
                i += 1;
                let len = (msg as u64).min(count - off) as usize;
                rtts.record(io.echo_once(off, len).await?);
                off += len as u64;
            }
        }
        Test::Sink => {
            start = Instant::now();
            // The CRC of what was sent is taken as it is written, so the clock stops when
            // the answer arrives, not after a second pass over the whole payload.
            let mut h = crc32fast::Hasher::new();
            let mut off = 0u64;
            while off < count {
                let len = (msg as u64).min(count - off) as usize;
                let data = payload(off, len);
                h.update(&data);
                io.write(&data).await?;
                off += len as u64;
            }
            let ans = io.read_exact_n(12).await?;
            let elapsed = start.elapsed();
            let got = u64::from_le_bytes(ans[..8].try_into().unwrap_or([0; 8]));
            let crc = u32::from_le_bytes([ans[8], ans[9], ans[10], ans[11]]);
            if got != count || crc != h.finalize() {
                return Err(bad(format!(
                    "sink answer: {got} bytes with CRC {crc:08x}, sent {count}"
                )));
            }
            let (retrans, fec_recovered) = stats(io.s);
            return Ok(Report {
                test,
                bytes: count,
                seconds: elapsed.as_secs_f64(),
                rtt: rtts,
                retrans,
                fec_recovered,
            });
        }
        Test::Source => {
            let mut h = crc32fast::Hasher::new();
            let mut off = 0u64;
            let mut first = None;
            while off < count {
                let left = (count - off).min(1 << 16) as usize;
                let got = io.read_some(left).await?;
                first.get_or_insert_with(Instant::now);
                h.update(got);
                off += got.len() as u64;
            }
            start = first.unwrap_or_else(Instant::now);
            let elapsed = start.elapsed();
            let crc = io.read_exact_n(4).await?;
            let want = h.finalize();
            let got = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
            if got != want {
                return Err(bad(format!(
                    "source CRC {got:08x}, received data has CRC {want:08x}"
                )));
            }
            let (retrans, fec_recovered) = stats(io.s);
            return Ok(Report {
                test,
                bytes: count,
                seconds: elapsed.as_secs_f64(),
                rtt: rtts,
                retrans,
                fec_recovered,
            });
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (retrans, fec_recovered) = stats(io.s);
    Ok(Report {
        test,
        bytes: count,
        seconds,
        rtt: rtts,
        retrans,
        fec_recovered,
    })
}

/// Runs one client session for `duration` instead of a byte count (header count 0): the
/// payload travels in frames and a zero-length frame ends the run, so the server reports at
/// once and sink and source are checked by their CRC as with a count.
pub async fn client_for(
    stream: &mut KcpStream,
    test: Test,
    msg: usize,
    message_mode: bool,
    pace: Option<Duration>,
    duration: Duration,
) -> io::Result<Report> {
    let msg = msg.max(1);
    let mut io = Io {
        s: stream,
        message: message_mode,
        buf: first_buf(message_mode),
    };
    io.write(&header(test, 0)).await?;
    let start = Instant::now();
    // `Duration::MAX` (kcp-perf's `--duration inf`): until interrupted.
    let end = start.checked_add(duration);
    let running = || end.is_none_or(|e| Instant::now() < e);
    let mut off = 0u64;
    let mut rtts = RttHistogram::new();
    let mut last = start;
    match test {
        Test::Echo => {
            let mut i = 0u32;
            while running() {
                if let Some(p) = pace {
                    tokio::time::sleep_until((start + p * i).into()).await;
                    i += 1;
                }
                let data = payload(off, msg);
                let f = frame(&data);
                let t = Instant::now();
                io.write(&f).await?;
                if io.read_bytes(f.len()).await? != f {
                    return Err(bad(format!("echo mismatch at offset {off}")));
                }
                rtts.record(t.elapsed().as_micros() as u64);
                off += msg as u64;
                last = Instant::now();
            }
            io.write(&frame(&[])).await?;
            if io.read_u32().await? != 0 {
                return Err(bad("echo of the end frame differs".into()));
            }
        }
        Test::Sink => {
            let mut h = crc32fast::Hasher::new();
            while running() {
                let data = payload(off, msg);
                h.update(&data);
                io.write(&frame(&data)).await?;
                off += msg as u64;
            }
            io.write(&frame(&[])).await?;
            let ans = io.read_bytes(12).await?;
            last = Instant::now();
            let got = u64::from_le_bytes(ans[..8].try_into().unwrap_or([0; 8]));
            let crc = u32::from_le_bytes([ans[8], ans[9], ans[10], ans[11]]);
            let want = h.finalize();
            if got != off || crc != want {
                return Err(bad(format!(
                    "sink answer: {got} bytes with CRC {crc:08x}, sent {off} with CRC {want:08x}"
                )));
            }
        }
        Test::Source => {
            let mut h = crc32fast::Hasher::new();
            let mut stopped = false;
            loop {
                if !stopped && !running() {
                    io.write(&frame(&[])).await?;
                    stopped = true;
                }
                // The server sends frames back to back: the clock is checked between them.
                let len = io.read_u32().await?;
                if len == 0 {
                    break;
                }
                if len > MAX_FRAME {
                    return Err(bad(format!("source frame of {len} bytes")));
                }
                let data = io.read_bytes(len as usize).await?;
                h.update(&data);
                off += u64::from(len);
                last = Instant::now();
            }
            let crc = io.read_u32().await?;
            let want = h.finalize();
            if crc != want {
                return Err(bad(format!(
                    "source CRC {crc:08x}, received data has CRC {want:08x}"
                )));
            }
        }
    }
    let (retrans, fec_recovered) = stats(io.s);
    Ok(Report {
        test,
        bytes: off,
        seconds: (last - start).as_secs_f64(),
        rtt: rtts,
        retrans,
        fec_recovered,
    })
}

/// Serves one session: reads the header and runs its test, accepting whatever bytes the
/// client sends. The caller closes the stream afterwards (dropping it delivers the tail).
pub async fn serve(stream: &mut KcpStream, message_mode: bool) -> io::Result<Report> {
    let mut io = Io {
        s: stream,
        message: message_mode,
        buf: first_buf(message_mode),
    };
    let h = if message_mode {
        let n = io.s.recv_message(&mut io.buf).await?;
        io.buf[..n].to_vec()
    } else {
        let mut h = [0u8; 16];
        io.s.read_exact(&mut h).await?;
        h.to_vec()
    };
    let (test, count) = parse_header(&h)?;
    // Not kept for the session's life (thousands of sessions each hold a task).
    drop(h);
    let mut start = None;
    let mut moved = 0u64;
    // The stream-mode echo is what thousands of sessions run at once: the other tests'
    // states are boxed, so that its task stays small.
    if count == 0 {
        Box::pin(serve_frames(&mut io, test, &mut start, &mut moved)).await?;
    } else if test == Test::Echo && !io.message {
        serve_echo(&mut io, count, &mut start, &mut moved).await?;
    } else {
        Box::pin(serve_test(&mut io, test, count, &mut start, &mut moved)).await?;
    }
    let seconds = start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
    let (retrans, fec_recovered) = stats(io.s);
    Ok(Report {
        test,
        bytes: moved,
        seconds,
        rtt: RttHistogram::new(),
        retrans,
        fec_recovered,
    })
}

/// A stream-mode echo of `count` bytes: waits for readiness, holding no buffer, and echoes
/// with [`echo_now`].
async fn serve_echo(
    io: &mut Io<'_>,
    count: u64,
    start: &mut Option<Instant>,
    moved: &mut u64,
) -> io::Result<()> {
    let mut rest = Vec::new();
    while *moved < count {
        io.s.readable().await?;
        let max = (count - *moved).min(1 << 16) as usize;
        let Some(n) = echo_now(io.s, max, &mut rest)? else {
            continue;
        };
        start.get_or_insert_with(Instant::now);
        *moved += n as u64;
        if !rest.is_empty() {
            // The send queue was full: wait for room (rare: the client reads).
            let r = std::mem::take(&mut rest);
            io.write(&r).await?;
        }
    }
    Ok(())
}

async fn serve_test(
    io: &mut Io<'_>,
    test: Test,
    count: u64,
    start: &mut Option<Instant>,
    moved: &mut u64,
) -> io::Result<()> {
    let left = |off: u64| (count - off).min(1 << 16) as usize;
    match test {
        Test::Echo => {
            while *moved < count {
                let got = io.read_some(left(*moved)).await?.to_vec();
                start.get_or_insert_with(Instant::now);
                io.write(&got).await?;
                *moved += got.len() as u64;
            }
        }
        Test::Sink => {
            let mut h = crc32fast::Hasher::new();
            while *moved < count {
                let got = io.read_some(left(*moved)).await?;
                start.get_or_insert_with(Instant::now);
                h.update(got);
                *moved += got.len() as u64;
            }
            let mut ans = [0u8; 12];
            ans[..8].copy_from_slice(&moved.to_le_bytes());
            ans[8..].copy_from_slice(&h.finalize().to_le_bytes());
            io.write(&ans).await?;
        }
        Test::Source => {
            *start = Some(Instant::now());
            let mut h = crc32fast::Hasher::new();
            while *moved < count {
                let len = (count - *moved).min(32768);
                let data = payload(*moved, len as usize);
                h.update(&data);
                io.write(&data).await?;
                *moved += len;
            }
            io.write(&h.finalize().to_le_bytes()).await?;
        }
    }
    Ok(())
}

/// A count-0 run: framed payload until a zero-length frame.
async fn serve_frames(
    io: &mut Io<'_>,
    test: Test,
    start: &mut Option<Instant>,
    moved: &mut u64,
) -> io::Result<()> {
    match test {
        Test::Echo => loop {
            let len = io.read_u32().await?;
            if len > MAX_FRAME {
                return Err(bad(format!("frame of {len} bytes")));
            }
            let data = io.read_bytes(len as usize).await?;
            start.get_or_insert_with(Instant::now);
            io.write(&frame(&data)).await?;
            if len == 0 {
                return Ok(());
            }
            *moved += u64::from(len);
        },
        Test::Sink => {
            let mut h = crc32fast::Hasher::new();
            loop {
                let len = io.read_u32().await?;
                if len == 0 {
                    break;
                }
                if len > MAX_FRAME {
                    return Err(bad(format!("frame of {len} bytes")));
                }
                let data = io.read_bytes(len as usize).await?;
                start.get_or_insert_with(Instant::now);
                h.update(&data);
                *moved += u64::from(len);
            }
            let mut ans = [0u8; 12];
            ans[..8].copy_from_slice(&moved.to_le_bytes());
            ans[8..].copy_from_slice(&h.finalize().to_le_bytes());
            io.write(&ans).await
        }
        Test::Source => {
            *start = Some(Instant::now());
            let mut h = crc32fast::Hasher::new();
            let mut stop = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                let data = payload(*moved, 32768);
                h.update(&data);
                io.write(&frame(&data)).await?;
                *moved += data.len() as u64;
                while got < 4 {
                    match io.read_now(&mut stop[got..]).await? {
                        Some(0) => return Err(bad("session ended before the stop frame".into())),
                        Some(n) => got += n,
                        None => break,
                    }
                }
            }
            if stop != [0; 4] {
                return Err(bad("the client's stop frame is not empty".into()));
            }
            io.write(&frame(&[])).await?;
            io.write(&h.finalize().to_le_bytes()).await
        }
    }
}

/// A default per-operation deadline for interop and tests.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_the_pattern_at_any_offset() {
        let p = PERIOD;
        for off in [
            0,
            1,
            250,
            251,
            255,
            256,
            p - 1,
            p,
            p + 7,
            3 * p - 100,
            1 << 40,
        ] {
            for len in [0, 1, 64, 1400, 16 << 10, TABLE_RUN, TABLE_RUN + 1] {
                let want: Vec<u8> = (off..off + len as u64).map(pattern).collect();
                assert_eq!(&payload(off, len)[..], &want[..], "off {off} len {len}");
            }
        }
    }
}
