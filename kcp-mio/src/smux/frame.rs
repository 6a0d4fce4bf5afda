//! The smux frame header.

/// Bytes in a frame header: version, command, length, stream id.
pub const HEADER_SIZE: usize = 8;

/// Bytes in the payload of an `UPD` frame: consumed and window, each a `u32` LE.
pub const UPD_SIZE: usize = 8;

/// The most data one frame can carry (its length field is a `u16`).
pub const MAX_FRAME_DATA: usize = u16::MAX as usize;

/// The send window a version-2 stream assumes before the peer's first `UPD`.
pub const INITIAL_PEER_WINDOW: u32 = 262_144;

/// A frame command (the second header byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cmd {
    /// Opens a stream.
    Syn = 0,
    /// Closes a stream (the sender's end of it, for good).
    Fin = 1,
    /// Carries stream data.
    Psh = 2,
    /// Keepalive; stream id 0, no data.
    Nop = 3,
    /// Version 2 flow control: `consumed u32 LE | window u32 LE`.
    Upd = 4,
}

impl Cmd {
    /// The command of a header byte, `None` for an unknown one.
    pub fn from_u8(b: u8) -> Option<Cmd> {
        Some(match b {
            0 => Cmd::Syn,
            1 => Cmd::Fin,
            2 => Cmd::Psh,
            3 => Cmd::Nop,
            4 => Cmd::Upd,
            _ => return None,
        })
    }
}

/// A decoded frame header, raw: nothing is validated here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Protocol version byte (1 or 2 from a well-behaved peer).
    pub version: u8,
    /// Command byte (see [`Cmd`]).
    pub cmd: u8,
    /// Length of the data that follows (only `PSH` uses it; see the module docs).
    pub len: u16,
    /// Stream id.
    pub sid: u32,
}

impl FrameHeader {
    /// Parses the 8 header bytes.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> FrameHeader {
        FrameHeader {
            version: b[0],
            cmd: b[1],
            len: u16::from_le_bytes([b[2], b[3]]),
            sid: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// The 8 header bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0] = self.version;
        b[1] = self.cmd;
        b[2..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..8].copy_from_slice(&self.sid.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = FrameHeader {
            version: 2,
            cmd: 4,
            len: 0xfffe,
            sid: 0xdead_beef,
        };
        let b = h.encode();
        assert_eq!(b, [2, 4, 0xfe, 0xff, 0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(FrameHeader::decode(&b), h);
    }

    #[test]
    fn commands() {
        for b in 0..=255u8 {
            match Cmd::from_u8(b) {
                Some(c) => assert_eq!(c as u8, b),
                None => assert!(b > 4),
            }
        }
    }
}
