//! The KCP segment wire format (`docs/protocol.md`, "KCP segments").
//!
//! Two views, as smoltcp keeps them: [`Segment`] is a checked, zero-copy view over bytes, and
//! [`SegmentRepr`] is the validated representation with `parse` and `emit`. A datagram is one or
//! more segments back to back; [`Datagram`] iterates over them.
//!
//! ```text
//!  0      4     5     6       8        12       16       20       24
//!  | conv | cmd | frg | wnd   | ts     | sn     | una    | len    | data (len bytes)
//! ```
//! All integers are little-endian.

use core::fmt;

/// Size of a segment header in bytes (`IKCP_OVERHEAD`).
pub const HEADER_LEN: usize = 24;

/// A segment's command byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Data (first transmission or retransmission), 81.
    Push,
    /// Acknowledgement of one PUSH, 82.
    Ack,
    /// Window probe: "tell me your window", 83.
    WindowAsk,
    /// Window tell, the answer to a probe, 84.
    WindowTell,
}

impl Command {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Command::Push => 81,
            Command::Ack => 82,
            Command::WindowAsk => 83,
            Command::WindowTell => 84,
        }
    }

    /// Parses a command byte.
    pub const fn from_byte(b: u8) -> Result<Command, WireError> {
        match b {
            81 => Ok(Command::Push),
            82 => Ok(Command::Ack),
            83 => Ok(Command::WindowAsk),
            84 => Ok(Command::WindowTell),
            other => Err(WireError::UnknownCommand(other)),
        }
    }
}

/// Why bytes are not a valid segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Truncated,
    /// The header's `len` field claims more payload than the datagram holds.
    PayloadOverrun {
        /// Payload bytes the header declares.
        declared: u32,
        /// Bytes actually left in the datagram.
        available: usize,
    },
    /// The command byte is not one of 81..=84.
    UnknownCommand(u8),
    /// The output buffer is too small for the segment.
    BufferTooSmall,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => write!(f, "segment shorter than the 24-byte header"),
            WireError::PayloadOverrun {
                declared,
                available,
            } => write!(
                f,
                "segment declares {declared} payload bytes but only {available} follow"
            ),
            WireError::UnknownCommand(c) => write!(f, "unknown segment command {c}"),
            WireError::BufferTooSmall => write!(f, "buffer too small for the segment"),
        }
    }
}

impl core::error::Error for WireError {}

mod field {
    use core::ops::Range;
    pub const CONV: Range<usize> = 0..4;
    pub const CMD: usize = 4;
    pub const FRG: usize = 5;
    pub const WND: Range<usize> = 6..8;
    pub const TS: Range<usize> = 8..12;
    pub const SN: Range<usize> = 12..16;
    pub const UNA: Range<usize> = 16..20;
    pub const LEN: Range<usize> = 20..24;
}

/// A read-only, checked view of one segment at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Segment<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn le32(b: &[u8], r: core::ops::Range<usize>) -> u32 {
    match b.get(r) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

impl<T: AsRef<[u8]>> Segment<T> {
    /// Wraps `buffer`, checking that it holds a whole header and the payload it declares.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let s = Segment { buffer };
        let b = s.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let declared = s.payload_len();
        let available = b.len() - HEADER_LEN;
        if declared as usize > available {
            return Err(WireError::PayloadOverrun {
                declared,
                available,
            });
        }
        Ok(s)
    }

    /// Conversation id.
    pub fn conv(&self) -> u32 {
        le32(self.buffer.as_ref(), field::CONV)
    }
    /// Raw command byte.
    pub fn cmd(&self) -> u8 {
        self.buffer.as_ref().get(field::CMD).copied().unwrap_or(0)
    }
    /// Fragment countdown.
    pub fn frg(&self) -> u8 {
        self.buffer.as_ref().get(field::FRG).copied().unwrap_or(0)
    }
    /// Sender's free receive window, in segments.
    pub fn wnd(&self) -> u16 {
        match self.buffer.as_ref().get(field::WND) {
            Some(&[a, b]) => u16::from_le_bytes([a, b]),
            _ => 0,
        }
    }
    /// Timestamp (PUSH: send time; ACK: echoed send time).
    pub fn ts(&self) -> u32 {
        le32(self.buffer.as_ref(), field::TS)
    }
    /// Sequence number.
    pub fn sn(&self) -> u32 {
        le32(self.buffer.as_ref(), field::SN)
    }
    /// Cumulative acknowledgement: every sn below it was received.
    pub fn una(&self) -> u32 {
        le32(self.buffer.as_ref(), field::UNA)
    }
    /// Declared payload length.
    pub fn payload_len(&self) -> u32 {
        le32(self.buffer.as_ref(), field::LEN)
    }
    /// The payload (checked by `new_checked` to be present).
    pub fn payload(&self) -> &[u8] {
        let len = self.payload_len() as usize;
        self.buffer
            .as_ref()
            .get(HEADER_LEN..HEADER_LEN.saturating_add(len))
            .unwrap_or(&[])
    }
    /// Header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len() as usize
    }
}

/// A validated segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRepr {
    /// Conversation id.
    pub conv: u32,
    /// Command.
    pub cmd: Command,
    /// Fragment countdown (0 = last or only fragment).
    pub frg: u8,
    /// Sender's free receive window.
    pub wnd: u16,
    /// Timestamp.
    pub ts: u32,
    /// Sequence number.
    pub sn: u32,
    /// Cumulative acknowledgement.
    pub una: u32,
    /// Payload length.
    pub len: u32,
}

impl SegmentRepr {
    /// Parses a checked segment view.
    pub fn parse<T: AsRef<[u8]>>(seg: &Segment<T>) -> Result<SegmentRepr, WireError> {
        Ok(SegmentRepr {
            conv: seg.conv(),
            cmd: Command::from_byte(seg.cmd())?,
            frg: seg.frg(),
            wnd: seg.wnd(),
            ts: seg.ts(),
            sn: seg.sn(),
            una: seg.una(),
            len: seg.payload_len(),
        })
    }

    /// Writes the 24-byte header into `buf` (the payload, if any, is the caller's to write).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let Some(h) = buf.get_mut(..HEADER_LEN) else {
            return Err(WireError::BufferTooSmall);
        };
        h[field::CONV].copy_from_slice(&self.conv.to_le_bytes());
        h[field::CMD] = self.cmd.to_byte();
        h[field::FRG] = self.frg;
        h[field::WND].copy_from_slice(&self.wnd.to_le_bytes());
        h[field::TS].copy_from_slice(&self.ts.to_le_bytes());
        h[field::SN].copy_from_slice(&self.sn.to_le_bytes());
        h[field::UNA].copy_from_slice(&self.una.to_le_bytes());
        h[field::LEN].copy_from_slice(&self.len.to_le_bytes());
        Ok(())
    }
}

/// Iterates over the segments of one datagram.
///
/// Like ikcp.c and kcp-go, a trailing fragment shorter than a header ends the datagram silently.
/// A segment whose payload overruns the datagram or whose command is unknown yields an error
/// and ends the iteration; segments before it have been yielded already.
#[derive(Debug, Clone)]
pub struct Datagram<'a> {
    rest: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Iterates over the segments in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Datagram { rest: bytes }
    }
}

impl<'a> Iterator for Datagram<'a> {
    type Item = Result<(SegmentRepr, &'a [u8]), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < HEADER_LEN {
            return None;
        }
        let rest = self.rest;
        let result = Segment::new_checked(rest).and_then(|seg| {
            let repr = SegmentRepr::parse(&seg)?;
            let total = seg.total_len();
            Ok((repr, total))
        });
        match result {
            Ok((repr, total)) => {
                let payload = rest.get(HEADER_LEN..total).unwrap_or(&[]);
                self.rest = rest.get(total..).unwrap_or(&[]);
                Some(Ok((repr, payload)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (i, b) in s.as_bytes().chunks(2).enumerate() {
            let hi = (b[0] as char).to_digit(16).unwrap();
            let lo = (b[1] as char).to_digit(16).unwrap();
            out[i] = (hi * 16 + lo) as u8;
        }
        out
    }

    // Produced by kcp-go's own encoder (`docs/protocol.md`, "Known-answer vectors").
    const PUSH_HEX: &str = "44332211510200010403020105000000030000000500000068656c6c6f";
    const ACK_HEX: &str = "443322115200200004030201050000000600000000000000";
    const WASK_HEX: &str = "010000005300000000000000000000000700000000000000";

    fn emit_matches(repr: SegmentRepr, payload: &[u8], hex: &str) {
        let mut buf = [0u8; 64];
        repr.emit(&mut buf).unwrap();
        buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        let n = HEADER_LEN + payload.len();
        assert_eq!(&buf[..n], &unhex(hex)[..hex.len() / 2]);
        let parsed = SegmentRepr::parse(&Segment::new_checked(&buf[..n]).unwrap()).unwrap();
        assert_eq!(parsed, repr);
    }

    #[test]
    fn push_vector_from_kcp_go() {
        let repr = SegmentRepr {
            conv: 0x11223344,
            cmd: Command::Push,
            frg: 2,
            wnd: 256,
            ts: 0x01020304,
            sn: 5,
            una: 3,
            len: 5,
        };
        emit_matches(repr, b"hello", PUSH_HEX);
    }

    #[test]
    fn ack_vector_from_kcp_go() {
        let repr = SegmentRepr {
            conv: 0x11223344,
            cmd: Command::Ack,
            frg: 0,
            wnd: 32,
            ts: 0x01020304,
            sn: 5,
            una: 6,
            len: 0,
        };
        emit_matches(repr, b"", ACK_HEX);
    }

    #[test]
    fn wask_vector_from_kcp_go() {
        let repr = SegmentRepr {
            conv: 1,
            cmd: Command::WindowAsk,
            frg: 0,
            wnd: 0,
            ts: 0,
            sn: 0,
            una: 7,
            len: 0,
        };
        emit_matches(repr, b"", WASK_HEX);
    }

    #[test]
    fn datagram_iterates_segments_and_ignores_short_tail() {
        let mut d = [0u8; 29 + 24 + 5];
        d[..29].copy_from_slice(&unhex(PUSH_HEX)[..29]);
        d[29..53].copy_from_slice(&unhex(ACK_HEX)[..24]);
        let segs: Vec<_> = Datagram::new(&d).collect();
        assert_eq!(segs.len(), 2);
        let (p, data) = segs[0].unwrap();
        assert_eq!((p.cmd, data), (Command::Push, &b"hello"[..]));
        assert_eq!(segs[1].unwrap().0.cmd, Command::Ack);
    }

    #[test]
    fn overrun_and_unknown_command_are_errors() {
        let mut d = unhex(PUSH_HEX);
        assert_eq!(
            Segment::new_checked(&d[..27]).unwrap_err(),
            WireError::PayloadOverrun {
                declared: 5,
                available: 3
            }
        );
        assert_eq!(
            Segment::new_checked(&d[..23]).unwrap_err(),
            WireError::Truncated
        );
        d[4] = 99;
        let mut it = Datagram::new(&d[..29]);
        assert_eq!(it.next(), Some(Err(WireError::UnknownCommand(99))));
        assert_eq!(it.next(), None);
    }

    extern crate std;
    use std::vec::Vec;
}
