//! KCP segments written byte by byte as a peer would send them, for tests that script a peer:
//! the 24-byte header (conv, cmd, frg, wnd, ts, sn, una, len; little-endian) and the payload.
//! It is independent of kcp-core's own encoder, so a test that feeds these to the engine
//! checks the decoder against the format, not against itself.

/// Bytes in a segment header.
pub const HEADER_LEN: usize = 24;
/// The command byte of a data segment.
pub const PUSH: u8 = 81;
/// The command byte of an acknowledgement.
pub const ACK: u8 = 82;
/// The command byte of a window probe.
pub const WASK: u8 = 83;
/// The command byte of a window tell.
pub const WINS: u8 = 84;

/// A segment's header fields (its `len` is the payload's length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Conversation id.
    pub conv: u32,
    /// Command byte ([`PUSH`], [`ACK`], [`WASK`], [`WINS`]).
    pub cmd: u8,
    /// Fragments that follow in the same message.
    pub frg: u8,
    /// The sender's free receive window, in segments.
    pub wnd: u16,
    /// Timestamp (ms).
    pub ts: u32,
    /// Sequence number.
    pub sn: u32,
    /// Everything below this is received.
    pub una: u32,
}

impl Default for Segment {
    /// A PUSH on conversation 1, sequence number 0, window 128.
    fn default() -> Segment {
        Segment {
            conv: 1,
            cmd: PUSH,
            frg: 0,
            wnd: 128,
            ts: 0,
            sn: 0,
            una: 0,
        }
    }
}

impl Segment {
    /// Appends the segment carrying `data` to `out` (several make one datagram).
    pub fn write(&self, out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(&self.conv.to_le_bytes());
        out.extend_from_slice(&[self.cmd, self.frg]);
        out.extend_from_slice(&self.wnd.to_le_bytes());
        for v in [self.ts, self.sn, self.una, data.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(data);
    }

    /// A datagram of this one segment carrying `data`.
    pub fn datagram(&self, data: &[u8]) -> Vec<u8> {
        let mut d = Vec::with_capacity(HEADER_LEN + data.len());
        self.write(&mut d, data);
        d
    }
}

/// Appends a segment to `out`: frg 0, window 128, the other fields as given.
pub fn segment(out: &mut Vec<u8>, conv: u32, cmd: u8, sn: u32, una: u32, ts: u32, data: &[u8]) {
    Segment {
        conv,
        cmd,
        ts,
        sn,
        una,
        ..Segment::default()
    }
    .write(out, data);
}

/// The headers of the segments in `datagram`, in order (a truncated tail is ignored).
pub fn segments(datagram: &[u8]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut d = datagram;
    let u32_at = |d: &[u8], i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    while d.len() >= HEADER_LEN {
        out.push(Segment {
            conv: u32_at(d, 0),
            cmd: d[4],
            frg: d[5],
            wnd: u16::from_le_bytes([d[6], d[7]]),
            ts: u32_at(d, 8),
            sn: u32_at(d, 12),
            una: u32_at(d, 16),
        });
        let len = u32_at(d, 20) as usize;
        d = &d[(HEADER_LEN + len).min(d.len())..];
    }
    out
}

/// A scripted peer's answer to `datagram`, appended to `out`: an ACK of each PUSH (echoing its
/// timestamp) and a window tell for each window probe, all with `una` 1 and window 128. The
/// peer keeps no state, so every allocation a test measures meanwhile is the other side's.
pub fn answer(datagram: &[u8], out: &mut Vec<u8>) {
    for s in segments(datagram) {
        match s.cmd {
            PUSH => segment(out, s.conv, ACK, s.sn, 1, s.ts, &[]),
            WASK => segment(out, s.conv, WINS, 0, 1, 0, &[]),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_little_endian_in_field_order() {
        let s = Segment {
            conv: 0x0403_0201,
            cmd: ACK,
            frg: 5,
            wnd: 0x0706,
            ts: 0x0B0A_0908,
            sn: 0x0F0E_0D0C,
            una: 0x1312_1110,
        };
        let d = s.datagram(b"xy");
        assert_eq!(d.len(), HEADER_LEN + 2);
        assert_eq!(d[..4], [1, 2, 3, 4]);
        assert_eq!(d[4..8], [ACK, 5, 6, 7]);
        assert_eq!(d[8..20], [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
        assert_eq!(d[20..24], [2, 0, 0, 0]);
        assert_eq!(&d[24..], b"xy");
        assert_eq!(segments(&d), vec![s]);
    }

    #[test]
    fn answers_pushes_with_acks_and_probes_with_tells() {
        let mut d = Vec::new();
        segment(&mut d, 7, PUSH, 3, 0, 99, b"abc");
        segment(&mut d, 7, WASK, 0, 0, 5, &[]);
        segment(&mut d, 7, ACK, 1, 0, 5, &[]);
        let mut a = Vec::new();
        answer(&d, &mut a);
        let got = segments(&a);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].cmd, got[0].sn, got[0].ts, got[0].una),
            (ACK, 3, 99, 1)
        );
        assert_eq!((got[1].cmd, got[1].conv), (WINS, 7));
    }
}
