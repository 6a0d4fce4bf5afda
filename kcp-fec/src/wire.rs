//! The FEC header on the wire (kcp-go v5.6.1 `fec.go`).
//!
//! ```text
//! data shard  : | seqid u32 LE | type u16 LE = 0x00F1 | size u16 LE | KCP datagram (size-2 bytes) |
//! parity shard: | seqid u32 LE | type u16 LE = 0x00F2 | Reed-Solomon parity bytes                |
//! ```
//! `size` counts itself: it is `2 + len(KCP datagram)`, and it lies inside the region the
//! Reed-Solomon code protects, so a rebuilt data shard knows its own length.

use kcp_core::CodecError;

/// Bytes of seqid and type, in front of every shard, data or parity (kcp-go's `fecHeaderSize`).
/// Not the header in front of the KCP datagram in a data shard: that is [`HEADER_LEN`].
pub const SHARD_HEADER_LEN: usize = 6;
/// Bytes in front of the KCP datagram in a data shard: seqid, type and size
/// (kcp-go's `fecHeaderSizePlus2`).
pub const HEADER_LEN: usize = SHARD_HEADER_LEN + 2;
/// Type of a data shard.
pub const TYPE_DATA: u16 = 0x00F1;
/// Type of a parity shard.
pub const TYPE_PARITY: u16 = 0x00F2;
/// Longest packet the layer handles, FEC header included (kcp-go's `mtuLimit`: receive buffers
/// are this long, and `SetMtu` refuses more).
pub const MAX_PACKET_LEN: usize = 1500;
/// How long a received shard waits for the rest of its group (kcp-go's `fecExpire`), in ms.
pub const FEC_EXPIRE_MS: u32 = 60_000;

/// What a received packet is, judged by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Not an FEC packet: plain KCP (the u16 at offset 4 is a KCP `cmd | frg << 8`).
    Plain,
    /// An FEC data shard carrying a KCP datagram at `HEADER_LEN..`.
    Data {
        /// The shard's sequence number.
        seqid: u32,
    },
    /// An FEC parity shard.
    Parity {
        /// The shard's sequence number.
        seqid: u32,
    },
}

/// Why [`classify`] rejected a packet; each maps to a [`CodecError`] and a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    Truncated,
    Oversized,
    BadSize,
    UnknownType,
}

impl From<Reject> for CodecError {
    fn from(r: Reject) -> CodecError {
        match r {
            Reject::Truncated => CodecError::Truncated,
            Reject::Oversized | Reject::BadSize | Reject::UnknownType => CodecError::Malformed,
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}

/// Classifies a received packet (FEC-relative: it starts at the FEC header).
///
/// The u16 at offset 4 tells FEC from plain KCP, whose `cmd` (81..=84) can never make it
/// 0x00F1 or 0x00F2. Types 0x00F0..=0x00FF other than those two (such as upstream kcp-go's
/// 0x00F3 out-of-band packets) are rejected rather than passed on as KCP. FEC packets must
/// hold at least [`HEADER_LEN`] bytes, at most [`MAX_PACKET_LEN`], and a data shard's size
/// field must equal its length minus 6, as every kcp-go encoder writes it.
pub(crate) fn classify(packet: &[u8]) -> Result<PacketKind, Reject> {
    let Some(ty) = u16_at(packet, 4) else {
        return Ok(PacketKind::Plain);
    };
    let is_data = match ty {
        TYPE_DATA => true,
        TYPE_PARITY => false,
        0x00F0..=0x00FF => return Err(Reject::UnknownType),
        _ => return Ok(PacketKind::Plain),
    };
    if packet.len() < HEADER_LEN {
        return Err(Reject::Truncated);
    }
    if packet.len() > MAX_PACKET_LEN {
        return Err(Reject::Oversized);
    }
    let seqid = u32_at(packet, 0).ok_or(Reject::Truncated)?;
    if !is_data {
        return Ok(PacketKind::Parity { seqid });
    }
    let size = u16_at(packet, SHARD_HEADER_LEN).ok_or(Reject::Truncated)?;
    if usize::from(size) != packet.len() - SHARD_HEADER_LEN {
        return Err(Reject::BadSize);
    }
    Ok(PacketKind::Data { seqid })
}

/// Writes seqid and type at the front of `buf` (which must be at least 6 bytes).
pub(crate) fn put_header(buf: &mut [u8], seqid: u32, ty: u16) {
    if let Some(h) = buf.get_mut(..SHARD_HEADER_LEN) {
        h[..4].copy_from_slice(&seqid.to_le_bytes());
        h[4..6].copy_from_slice(&ty.to_le_bytes());
    }
}

/// Writes the size field of a data shard (`buf` at least 8 bytes).
pub(crate) fn put_size(buf: &mut [u8], size: u16) {
    if let Some(s) = buf.get_mut(SHARD_HEADER_LEN..HEADER_LEN) {
        s.copy_from_slice(&size.to_le_bytes());
    }
}

/// The size field at the front of a rebuilt shard payload.
pub(crate) fn shard_size_field(shard: &[u8]) -> Option<u16> {
    u16_at(shard, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_kcp_is_not_fec() {
        // An ACK segment: cmd 82 at offset 4.
        let ack = [0x44, 0x33, 0x22, 0x11, 0x52, 0x00, 0x20, 0x00];
        assert_eq!(classify(&ack), Ok(PacketKind::Plain));
        assert_eq!(classify(&[1, 2, 3]), Ok(PacketKind::Plain));
    }

    #[test]
    fn short_or_inconsistent_fec_is_rejected() {
        assert_eq!(classify(&[0, 0, 0, 0, 0xf1, 0]), Err(Reject::Truncated));
        assert_eq!(classify(&[0, 0, 0, 0, 0xf2, 0, 1]), Err(Reject::Truncated));
        assert_eq!(classify(&[0, 0, 0, 0, 0xf1, 0, 9, 0]), Err(Reject::BadSize));
        assert_eq!(
            classify(&[0, 0, 0, 0, 0xf3, 0, 2, 0]),
            Err(Reject::UnknownType)
        );
        assert_eq!(
            classify(&[7, 0, 0, 0, 0xf1, 0, 2, 0]),
            Ok(PacketKind::Data { seqid: 7 })
        );
        let mut big = [0u8; MAX_PACKET_LEN + 1];
        big[4] = 0xf2;
        assert_eq!(classify(&big), Err(Reject::Oversized));
    }
}
