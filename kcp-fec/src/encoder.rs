//! The sending half: kcp-go v5.6.1's `fecEncoder`.

use alloc::vec::Vec;

use kcp_core::CodecError;

use crate::rs::ReedSolomon;
use crate::wire::{self, FEC_HEADER_LEN, HEADER_LEN, MAX_PACKET_LEN, TYPE_DATA, TYPE_PARITY};
use crate::ConfigError;

/// Numbers every outgoing packet, remembers each group's data shards and computes the group's
/// parity shards once its last data shard is sealed.
///
/// Byte-compatible with kcp-go v5.6.1 (`fec.go`): data seqids count up from 0, parity seqids
/// follow a group's data seqids, and seqids wrap at `paws`, the largest multiple of `ds + ps`
/// not above `u32::MAX`, so groups stay aligned at multiples of `ds + ps`. Parity shards are as
/// long as the longest packet of their group; shorter data shards count as zero-padded.
pub struct FecEncoder {
    ds: usize,
    ps: usize,
    paws: u32,
    next: u32,
    /// Data shards collected in the current group.
    count: usize,
    /// Longest packet of the current group (FEC-relative, header included).
    max_len: usize,
    /// `ds` data shard copies then `ps` parity packets, each with room for
    /// [`MAX_PACKET_LEN`] bytes (allocated once).
    shards: Vec<Vec<u8>>,
    /// Parity packets of the last completed group not handed out yet.
    pending: usize,
    rs: ReedSolomon,
    data_sealed: u64,
    parity_sealed: u64,
}

impl FecEncoder {
    /// An encoder for `ds` data and `ps` parity shards per group, starting at seqid 0 as kcp-go
    /// does. `ds, ps >= 1` and `ds + ps <= 256` must hold.
    pub fn new(ds: usize, ps: usize) -> Result<Self, ConfigError> {
        crate::check_shards(ds, ps)?;
        let rs = ReedSolomon::new(ds, ps).map_err(|_| ConfigError::InvalidShards)?;
        let total = ds + ps;
        let shards = (0..total)
            .map(|_| Vec::with_capacity(MAX_PACKET_LEN))
            .collect();
        Ok(FecEncoder {
            ds,
            ps,
            paws: paws(total),
            next: 0,
            count: 0,
            max_len: 0,
            shards,
            pending: 0,
            rs,
            data_sealed: 0,
            parity_sealed: 0,
        })
    }

    /// Continues numbering at `seqid` (rounded down to a group boundary and reduced modulo
    /// `paws`) and drops a partly collected group. kcp-go always starts at 0; this exists to
    /// exercise the seqid wrap.
    pub fn set_next_seqid(&mut self, seqid: u32) {
        let total = (self.ds + self.ps) as u32;
        let s = seqid % self.paws;
        self.next = s - s % total;
        self.count = 0;
        self.max_len = 0;
        self.pending = 0;
    }

    /// The seqid the next data shard gets.
    pub fn next_seqid(&self) -> u32 {
        self.next
    }

    /// The seqid modulus: the largest multiple of `ds + ps` not above `u32::MAX`.
    pub fn paws(&self) -> u32 {
        self.paws
    }

    /// Seals one data shard in place: `buf[..8]` is room for the header, `buf[8..len]` the KCP
    /// datagram. Writes seqid, type and size and returns `len`. After the group's last data
    /// shard, [`poll_parity`](Self::poll_parity) hands out its parity packets; parity of an
    /// earlier group not handed out by then is dropped.
    ///
    /// Fails with [`CodecError::BufferTooSmall`] when `len < 8`, `len > buf.len()` or `len` is
    /// above [`MAX_PACKET_LEN`].
    pub fn seal(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CodecError> {
        if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&len) {
            return Err(CodecError::BufferTooSmall);
        }
        let packet = buf.get_mut(..len).ok_or(CodecError::BufferTooSmall)?;
        self.pending = 0;
        wire::put_header(packet, self.next, TYPE_DATA);
        self.next = self.next.wrapping_add(1);
        // `len <= MAX_PACKET_LEN`, so the size fits in a u16.
        wire::put_size(packet, (len - FEC_HEADER_LEN) as u16);
        let shard = self
            .shards
            .get_mut(self.count)
            .ok_or(CodecError::BufferTooSmall)?;
        shard.clear();
        shard.extend_from_slice(packet);
        self.count += 1;
        self.max_len = self.max_len.max(len);
        self.data_sealed = self.data_sealed.wrapping_add(1);
        if self.count >= self.ds {
            self.finish_group();
        }
        Ok(len)
    }

    fn finish_group(&mut self) {
        let max = self.max_len;
        for shard in self.shards.iter_mut() {
            // Zero padding of data shards; parity buffers get their final length.
            shard.resize(max, 0);
        }
        self.rs.encode(&mut self.shards, FEC_HEADER_LEN..max);
        for shard in self.shards.iter_mut().skip(self.ds) {
            wire::put_header(shard, self.next, TYPE_PARITY);
            self.next = self.next.wrapping_add(1) % self.paws;
        }
        self.pending = self.ps;
        self.count = 0;
        self.max_len = 0;
    }

    /// Copies the next parity packet of the group completed by the last `seal` into `buf` and
    /// returns its length (seqid, type 0x00F2, parity bytes); `None` when there is none.
    pub fn poll_parity(&mut self, buf: &mut [u8]) -> Option<Result<usize, CodecError>> {
        if self.pending == 0 {
            return None;
        }
        let idx = self.ds + self.ps - self.pending;
        self.pending -= 1;
        let shard = self.shards.get(idx)?;
        let Some(out) = buf.get_mut(..shard.len()) else {
            return Some(Err(CodecError::BufferTooSmall));
        };
        out.copy_from_slice(shard);
        self.parity_sealed = self.parity_sealed.wrapping_add(1);
        Some(Ok(shard.len()))
    }

    /// Data shards sealed and parity packets handed out so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.data_sealed, self.parity_sealed)
    }
}

impl core::fmt::Debug for FecEncoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FecEncoder")
            .field("ds", &self.ds)
            .field("ps", &self.ps)
            .field("next_seqid", &self.next)
            .field("collected", &self.count)
            .field("pending_parity", &self.pending)
            .finish()
    }
}

/// kcp-go's `paws`: `floor(0xFFFFFFFF / total) * total`.
pub(crate) fn paws(total: usize) -> u32 {
    let t = total.max(1) as u32;
    u32::MAX / t * t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paws_matches_kcp_spec_4_2() {
        assert_eq!(paws(13), 4294967287);
        assert_eq!(paws(5), 0xFFFF_FFFF);
        assert_eq!(paws(2), 4294967294);
        assert_eq!(paws(10), 4294967290);
    }
}
