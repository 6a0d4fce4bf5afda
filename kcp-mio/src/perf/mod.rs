//! The kcp-perf protocol (what `kcp-tokio`'s `kcp-perf` example and `interop/kcpperf-go`
//! speak, stated in `interop/kcpperf-go/README.md`): its wire format and reports, runtime
//! free, which kcp-tokio's `perf` module uses too; and, with the `mio` feature, per-session
//! state machines over an `Endpoint`: call `ServerSession::drive` / `ClientSession::drive`
//! when the session is accepted or connected, on each of its `Readable`/`Writable` events,
//! and (client) when `ClientSession::wake_at` is due; they read and write what they can
//! without blocking and say when the test is done.
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

pub use crate::histogram::RttHistogram;

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

#[cfg(feature = "mio")]
mod session;
#[cfg(feature = "mio")]
pub use session::{ClientSession, ServerSession, Status};

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
