//! The kcp-perf protocol (what `examples/kcp-perf.rs` and `interop/kcpperf-go` speak), as a
//! library so that tests and benchmarks drive it in-process.
//!
//! All integers are little-endian; CRC is CRC-32/IEEE. The client first sends a 16-byte
//! header (in message mode one message of its own): ASCII `KPRF`, version 1, test byte (1
//! echo, 2 sink, 3 source), two zero bytes, u64 byte count. **echo**: the client sends
//! `msg`-sized messages one at a time and waits for each echo. **sink**: the client sends
//! `count` bytes; the server answers with the u64 count and u32 CRC of what it received.
//! **source**: the server sends `count` bytes followed by their u32 CRC. Payload byte `i` of
//! each direction is [`pattern`]`(i)`; both sides check every byte.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::KcpStream;

/// Payload byte at stream offset `i`.
pub fn pattern(i: u64) -> u8 {
    ((i * 7 + i / 251) % 256) as u8
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

fn parse_header(h: &[u8]) -> io::Result<(Test, u64)> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad header: {why}"));
    if h.len() != 16 {
        return Err(bad("length"));
    }
    if &h[..4] != b"KPRF" || h[4] != 1 || h[6] != 0 || h[7] != 0 {
        return Err(bad("magic, version or reserved bytes"));
    }
    let test = match h[5] {
        1 => Test::Echo,
        2 => Test::Sink,
        3 => Test::Source,
        _ => return Err(bad("test")),
    };
    let mut c = [0u8; 8];
    c.copy_from_slice(&h[8..16]);
    Ok((test, u64::from_le_bytes(c)))
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
    /// A round-trip percentile in microseconds (0 without echoes).
    pub fn rtt_us(&self, p: f64) -> u64 {
        if self.rtts_us.is_empty() {
            return 0;
        }
        let i = ((self.rtts_us.len() - 1) as f64 * p).round() as usize;
        self.rtts_us[i.min(self.rtts_us.len() - 1)]
    }
}

struct Io<'a> {
    s: &'a mut KcpStream,
    message: bool,
    buf: Vec<u8>,
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
            let want = max.min(self.buf.len());
            self.s.read(&mut self.buf[..want]).await?
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
        let data: Vec<u8> = (off..off + len as u64).map(pattern).collect();
        let t = Instant::now();
        self.write(&data).await?;
        let back = self.read_exact_n(len).await?;
        if back != data {
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

fn check(data: &[u8], offset: u64) -> io::Result<()> {
    for (k, &b) in data.iter().enumerate() {
        if b != pattern(offset + k as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt byte at offset {}", offset + k as u64),
            ));
        }
    }
    Ok(())
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
        buf: vec![0u8; 1 << 16],
    };
    io.write(&header(test, count)).await?;
    let mut rtts = Vec::new();
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
                rtts.push(io.echo_once(off, len).await?);
                off += len as u64;
            }
        }
        Test::Sink => {
            start = Instant::now();
            let mut off = 0u64;
            while off < count {
                let len = (msg as u64).min(count - off) as usize;
                let data: Vec<u8> = (off..off + len as u64).map(pattern).collect();
                io.write(&data).await?;
                off += len as u64;
            }
            let ans = io.read_exact_n(12).await?;
            let mut c = [0u8; 8];
            c.copy_from_slice(&ans[..8]);
            let got = u64::from_le_bytes(c);
            let crc = u32::from_le_bytes([ans[8], ans[9], ans[10], ans[11]]);
            let mut h = crc32fast::Hasher::new();
            let mut off = 0u64;
            let mut chunk = vec![0u8; 65536];
            while off < count {
                let len = (chunk.len() as u64).min(count - off) as usize;
                for (k, b) in chunk[..len].iter_mut().enumerate() {
                    *b = pattern(off + k as u64);
                }
                h.update(&chunk[..len]);
                off += len as u64;
            }
            if got != count || crc != h.finalize() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "sink answer does not match what was sent",
                ));
            }
        }
        Test::Source => {
            let mut h = crc32fast::Hasher::new();
            let mut off = 0u64;
            let mut first = None;
            while off < count {
                let left = (count - off).min(1 << 16) as usize;
                let got = io.read_some(left).await?;
                first.get_or_insert_with(Instant::now);
                check(got, off)?;
                h.update(got);
                off += got.len() as u64;
            }
            start = first.unwrap_or_else(Instant::now);
            let elapsed = start.elapsed();
            let crc = io.read_exact_n(4).await?;
            if u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) != h.finalize() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "source CRC mismatch",
                ));
            }
            let (retrans, fec_recovered) = stats(io.s);
            return Ok(Report {
                test,
                bytes: count,
                seconds: elapsed.as_secs_f64(),
                rtts_us: rtts,
                retrans,
                fec_recovered,
            });
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    rtts.sort_unstable();
    let (retrans, fec_recovered) = stats(io.s);
    Ok(Report {
        test,
        bytes: count,
        seconds,
        rtts_us: rtts,
        retrans,
        fec_recovered,
    })
}

/// Runs one client session for `duration` instead of a byte count (header count 0: the
/// server serves until the session ends). Sink and source then have no answer or CRC; every
/// byte is still checked against the pattern.
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
        buf: vec![0u8; 1 << 16],
    };
    io.write(&header(test, 0)).await?;
    let start = Instant::now();
    let end = start + duration;
    let mut off = 0u64;
    let mut rtts = Vec::new();
    let mut i = 0u32;
    while Instant::now() < end {
        match test {
            Test::Echo => {
                if let Some(p) = pace {
                    tokio::time::sleep_until((start + p * i).into()).await;
                    i += 1;
                }
                rtts.push(io.echo_once(off, msg).await?);
                off += msg as u64;
            }
            Test::Sink => {
                let data: Vec<u8> = (off..off + msg as u64).map(pattern).collect();
                io.write(&data).await?;
                off += msg as u64;
            }
            Test::Source => {
                let left = end.saturating_duration_since(Instant::now());
                let got = match tokio::time::timeout(left, io.read_some(1 << 16)).await {
                    Ok(r) => r?,
                    Err(_) => break,
                };
                check(got, off)?;
                off += got.len() as u64;
            }
        }
    }
    rtts.sort_unstable();
    let (retrans, fec_recovered) = stats(io.s);
    Ok(Report {
        test,
        bytes: off,
        seconds: start.elapsed().as_secs_f64(),
        rtts_us: rtts,
        retrans,
        fec_recovered,
    })
}

/// Serves one session: reads the header and runs its test. The caller shuts the stream down
/// afterwards (KCP has no FIN: shutdown waits until the last bytes were acknowledged).
pub async fn serve(stream: &mut KcpStream, message_mode: bool) -> io::Result<Report> {
    let mut io = Io {
        s: stream,
        message: message_mode,
        buf: vec![0u8; 1 << 16],
    };
    let h = if message_mode {
        let n = io.s.recv_message(&mut io.buf).await?;
        io.buf[..n].to_vec()
    } else {
        io.read_exact_n(16).await?
    };
    let (test, count) = parse_header(&h)?;
    // Count 0: until the session ends (the client's --duration runs); the end is an error
    // from the session (idle timeout), which then is the normal end of the test.
    let unlimited = count == 0;
    let mut start = None;
    let mut moved = 0u64;
    let r = serve_test(&mut io, test, count, unlimited, &mut start, &mut moved).await;
    if let Err(e) = r {
        if !(unlimited && moved > 0) {
            return Err(e);
        }
    }
    let seconds = start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
    let (retrans, fec_recovered) = stats(io.s);
    Ok(Report {
        test,
        bytes: if unlimited { moved } else { count },
        seconds,
        rtts_us: Vec::new(),
        retrans,
        fec_recovered,
    })
}

async fn serve_test(
    io: &mut Io<'_>,
    test: Test,
    count: u64,
    unlimited: bool,
    start: &mut Option<Instant>,
    moved: &mut u64,
) -> io::Result<()> {
    let left = |off: u64| {
        if unlimited {
            1 << 16
        } else {
            (count - off).min(1 << 16) as usize
        }
    };
    match test {
        Test::Echo => {
            while unlimited || *moved < count {
                let got = io.read_some(left(*moved)).await?.to_vec();
                start.get_or_insert_with(Instant::now);
                check(&got, *moved)?;
                io.write(&got).await?;
                *moved += got.len() as u64;
            }
        }
        Test::Sink => {
            let mut h = crc32fast::Hasher::new();
            while unlimited || *moved < count {
                let got = io.read_some(left(*moved)).await?;
                start.get_or_insert_with(Instant::now);
                check(got, *moved)?;
                h.update(got);
                *moved += got.len() as u64;
            }
            let mut ans = [0u8; 12];
            ans[..8].copy_from_slice(&count.to_le_bytes());
            ans[8..].copy_from_slice(&h.finalize().to_le_bytes());
            io.write(&ans).await?;
        }
        Test::Source => {
            *start = Some(Instant::now());
            let mut h = crc32fast::Hasher::new();
            while unlimited || *moved < count {
                let len = if unlimited {
                    32768
                } else {
                    (count - *moved).min(32768)
                };
                let data: Vec<u8> = (*moved..*moved + len).map(pattern).collect();
                h.update(&data);
                io.write(&data).await?;
                *moved += len;
            }
            io.write(&h.finalize().to_le_bytes()).await?;
        }
    }
    Ok(())
}

/// One JSON line for a report (kcp-perf's `--json` format).
pub fn json(role: &str, r: &Report, ok: bool, cpu_seconds: f64, peak_rss_kb: u64) -> String {
    format!(
        "{{\"role\":\"{role}\",\"test\":\"{}\",\"bytes\":{},\"seconds\":{:.6},\"mbps\":{:.3},\"rtt_p50_us\":{},\"rtt_p99_us\":{},\"rtt_max_us\":{},\"cpu_seconds\":{:.3},\"peak_rss_kb\":{},\"retrans\":{},\"fec_recovered\":{},\"ok\":{}}}",
        r.test.name(),
        r.bytes,
        r.seconds,
        r.mbps(),
        r.rtt_us(0.5),
        r.rtt_us(0.99),
        r.rtts_us.last().copied().unwrap_or(0),
        cpu_seconds,
        peak_rss_kb,
        r.retrans,
        r.fec_recovered,
        ok
    )
}

/// A default per-operation deadline for interop and tests.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
