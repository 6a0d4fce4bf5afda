//! The sending half: kcp-go v5.6.1's `fecEncoder`, computing parity as data shards pass.

use alloc::vec::Vec;

use kcp_core::CodecError;

use crate::code::FecCode;
use crate::gf;
use crate::wire::{self, HEADER_LEN, MAX_PACKET_LEN, SHARD_HEADER_LEN, TYPE_DATA, TYPE_PARITY};
use crate::ConfigError;

/// Numbers every outgoing packet and computes each group's parity shards as its data shards
/// are sealed, keeping no copy of them.
///
/// Byte-compatible with kcp-go v5.6.1 (`fec.go`): data seqids count up from 0, parity seqids
/// follow a group's data seqids, and seqids wrap at `paws`, the largest multiple of `ds + ps`
/// not above `u32::MAX`, so groups stay aligned at multiples of `ds + ps`. Parity shards are as
/// long as the longest packet of their group; shorter data shards count as zero-padded.
///
/// # Memory
///
/// Reed-Solomon parity is linear: parity shard `p` is the sum over the data shards `i` of
/// `coef(p, i) * shard_i` in GF(2^8), each shard zero-padded to the group's longest. So each
/// sealed data shard is multiplied into the `ps` parity packets at once and then forgotten;
/// a shard longer than the ones before widens the parity packets, whose new bytes start at
/// zero (the earlier shards' padding contributes nothing). The result is the same bytes as
/// encoding the whole group at its end. The only buffer is the `ps` parity packets of the
/// group in progress (as long as its longest shard, headers included: 3 x 96 bytes for
/// 64-byte messages at 10/3), which keeps its capacity while traffic flows (no allocation per
/// packet) and is given back by [`trim`](Self::trim), which also ends the partial group.
/// Nothing grows past `ps` packets of [`MAX_PACKET_LEN`]. Nothing is allocated before the
/// first packet.
pub struct FecEncoder {
    ds: usize,
    ps: usize,
    paws: u32,
    next: u32,
    /// Data shards collected in the current group.
    count: usize,
    /// `ps` parity packets of `parity_len` bytes each (headers included): the current
    /// group's sums so far while it collects (headers not written yet), then the last
    /// completed group's packets until they are handed out or the next group starts.
    parity: Vec<u8>,
    parity_len: usize,
    /// Parity packets of the last completed group not handed out yet.
    pending: usize,
    code: FecCode,
    data_sealed: u64,
    parity_sealed: u64,
}

impl FecEncoder {
    /// An encoder for `ds` data and `ps` parity shards per group, starting at seqid 0 as kcp-go
    /// does. `ds, ps >= 1` and `ds + ps <= 256` must hold.
    pub fn new(ds: usize, ps: usize) -> Result<Self, ConfigError> {
        Ok(Self::with_code(FecCode::new(ds, ps)?))
    }

    /// An encoder for `code`'s parameters that shares its matrix.
    pub fn with_code(code: FecCode) -> Self {
        let (ds, ps) = code.shards();
        FecEncoder {
            ds,
            ps,
            paws: paws(ds + ps),
            next: 0,
            count: 0,
            parity: Vec::new(),
            parity_len: 0,
            pending: 0,
            code,
            data_sealed: 0,
            parity_sealed: 0,
        }
    }

    /// The code this encoder uses.
    pub fn code(&self) -> &FecCode {
        &self.code
    }

    /// Continues numbering at `seqid` (rounded down to a group boundary and reduced modulo
    /// `paws`) and drops a partly collected group. kcp-go always starts at 0; this exists to
    /// exercise the seqid wrap.
    pub fn set_next_seqid(&mut self, seqid: u32) {
        let total = (self.ds + self.ps) as u32;
        let s = seqid % self.paws;
        self.next = s - s % total;
        self.count = 0;
        self.parity.clear();
        self.parity_len = 0;
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
        if self.pending > 0 || self.count == 0 {
            // A new group: the last one's parity, handed out or not, is dropped.
            self.pending = 0;
            self.parity.clear();
            self.parity_len = 0;
        }
        wire::put_header(packet, self.next, TYPE_DATA);
        self.next = self.next.wrapping_add(1);
        // `len <= MAX_PACKET_LEN`, so the size fits in a u16.
        wire::put_size(packet, (len - SHARD_HEADER_LEN) as u16);
        self.count += 1;
        self.data_sealed = self.data_sealed.wrapping_add(1);
        let shard = packet.get(SHARD_HEADER_LEN..).unwrap_or(&[]);
        self.widen(SHARD_HEADER_LEN + shard.len());
        let (ds, plen, kernel) = (self.ds, self.parity_len, self.code.kernel());
        let index = self.count - 1;
        for (p, out) in self.parity.chunks_exact_mut(plen).enumerate() {
            let coef = self
                .code
                .parity_row(ds + p)
                .and_then(|row| row.get(index))
                .copied()
                .unwrap_or(0);
            let out = out.get_mut(SHARD_HEADER_LEN..).unwrap_or(&mut []);
            gf::mul_with(kernel, coef, shard, out, true);
        }
        if self.count >= self.ds {
            self.finish_group();
        }
        Ok(len)
    }

    /// Makes the parity packets at least `plen` bytes long, moving the sums so far to their
    /// new places; the new bytes are zero (shorter shards count as zero-padded).
    fn widen(&mut self, plen: usize) {
        let (ps, old) = (self.ps, self.parity_len);
        if plen <= old {
            return;
        }
        // Exact: the buffer keeps its capacity across groups, so it grows only when a group's
        // longest packet is longer than every earlier group's.
        self.parity
            .reserve_exact((ps * plen).saturating_sub(self.parity.len()));
        self.parity.resize(ps * plen, 0);
        // From the last packet down, each moves to a place at or past its old one.
        for p in (0..ps).rev() {
            self.parity.copy_within(p * old..(p + 1) * old, p * plen);
            if let Some(tail) = self.parity.get_mut(p * plen + old..(p + 1) * plen) {
                tail.fill(0);
            }
        }
        self.parity_len = plen;
    }

    fn finish_group(&mut self) {
        for p in self.parity.chunks_exact_mut(self.parity_len) {
            wire::put_header(p, self.next, TYPE_PARITY);
            self.next = self.next.wrapping_add(1) % self.paws;
        }
        self.pending = self.ps;
        self.count = 0;
    }

    /// Copies the next parity packet of the group completed by the last `seal` into `buf` and
    /// returns its length (seqid, type 0x00F2, parity bytes); `None` when there is none.
    pub fn poll_parity(&mut self, buf: &mut [u8]) -> Option<Result<usize, CodecError>> {
        if self.pending == 0 {
            return None;
        }
        let idx = self.ps - self.pending;
        self.pending -= 1;
        let plen = self.parity_len;
        let packet = self.parity.get(idx * plen..(idx + 1) * plen)?;
        let Some(out) = buf.get_mut(..plen) else {
            return Some(Err(CodecError::BufferTooSmall));
        };
        out.copy_from_slice(packet);
        self.parity_sealed = self.parity_sealed.wrapping_add(1);
        Some(Ok(plen))
    }

    /// Gives back every buffer, for a session gone idle: everything it sent was acknowledged,
    /// so parity for the packets of the current partial group could only rebuild packets the
    /// peer already has. That group ends here: its sums are dropped, and its remaining data
    /// seqids and its parity seqids are skipped (a receiver sees them as lost packets; groups
    /// stay aligned at multiples of `ds + ps`). The next packet starts a whole group, so what
    /// is sent after the trim is protected by parity again. Parity packets not handed out yet
    /// are kept.
    ///
    /// An endpoint trims the codec stack that sealed a new peer's probe, so the session's
    /// first data packets start a group of their own instead of finishing the probe's.
    pub fn trim(&mut self) {
        if self.count > 0 {
            // `next` lies within the group; skip to the next group's first seqid. In 64 bits:
            // `paws` may lie within `ds + ps` of `u32::MAX`.
            let skip = (self.ds - self.count.min(self.ds) + self.ps) as u64;
            self.next = ((u64::from(self.next) + skip) % u64::from(self.paws)) as u32;
            self.count = 0;
        }
        if self.pending == 0 {
            self.parity = Vec::new();
            self.parity_len = 0;
        }
    }

    /// Heap bytes held: the parity packets, and this encoder's share of the code's matrix.
    pub fn heap_bytes(&self) -> usize {
        self.parity.capacity() + self.code.share_bytes()
    }

    /// Most heap bytes an encoder for (ds, ps) holds, the whole matrix counted.
    pub fn heap_bound(ds: usize, ps: usize) -> usize {
        ps * MAX_PACKET_LEN + crate::code::matrix_bytes(ds, ps)
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
    use alloc::vec;

    #[test]
    fn paws_matches_kcp_go() {
        assert_eq!(paws(13), 4294967287);
        assert_eq!(paws(5), 0xFFFF_FFFF);
        assert_eq!(paws(2), 4294967294);
        assert_eq!(paws(10), 4294967290);
    }

    #[test]
    fn a_partial_group_holds_its_parity_sums_not_its_shards() {
        let mut enc = FecEncoder::new(10, 3).unwrap();
        let before = enc.heap_bytes();
        let mut buf = [0u8; 68];
        for _ in 0..9 {
            enc.seal(&mut buf, 68).unwrap();
        }
        // Three parity packets as long as the data packets, whatever the number of shards.
        assert_eq!(enc.parity.len(), 3 * 68);
        assert_eq!(enc.heap_bytes() - before, 3 * 68);
        enc.trim();
        assert_eq!(enc.heap_bytes(), before);
    }

    #[test]
    fn a_trim_ends_the_partial_group_and_the_next_packets_get_parity() {
        let mut enc = FecEncoder::new(3, 2).unwrap();
        let mut buf = [0u8; 64];
        let mut out = [0u8; 64];
        enc.seal(&mut buf, 40).unwrap();
        enc.trim();
        let mut seqids = vec![u32::from_le_bytes(buf[..4].try_into().unwrap())];
        let mut parity = 0;
        for _ in 0..5 {
            enc.seal(&mut buf, 40).unwrap();
            seqids.push(u32::from_le_bytes(buf[..4].try_into().unwrap()));
            while let Some(r) = enc.poll_parity(&mut out) {
                r.unwrap();
                parity += 1;
            }
        }
        // Group 0 ends at seqid 0 (1..=4 skipped); group 1 (5..=7, parity 8, 9) is whole,
        // group 2 starts at 10.
        assert_eq!(seqids, [0, 5, 6, 7, 10, 11]);
        assert_eq!(parity, 2);
        assert_eq!(enc.next_seqid(), 12);
    }

    #[test]
    fn a_trim_at_the_seqid_wrap_starts_the_next_group_at_zero() {
        let mut enc = FecEncoder::new(3, 2).unwrap();
        let paws = enc.paws();
        enc.set_next_seqid(paws - 5);
        let mut buf = [0u8; 64];
        enc.seal(&mut buf, 40).unwrap();
        assert_eq!(enc.next_seqid(), paws - 4);
        enc.trim();
        assert_eq!(enc.next_seqid(), 0);
        enc.seal(&mut buf, 40).unwrap();
        assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), 0);
    }

    #[test]
    fn shards_of_mixed_lengths_are_spread_and_zero_padded() {
        let mut enc = FecEncoder::new(3, 1).unwrap();
        // (3,1) parity is the XOR of the padded shards.
        let lens = [20usize, 40, 9];
        let mut want = [0u8; 40 - 6];
        for (i, &len) in lens.iter().enumerate() {
            let mut buf = [0u8; 64];
            for (j, b) in buf[8..len].iter_mut().enumerate() {
                *b = (i * 50 + j) as u8 | 1;
            }
            enc.seal(&mut buf, len).unwrap();
            for (w, b) in want.iter_mut().zip(&buf[6..len]) {
                *w ^= b;
            }
        }
        let mut out = [0u8; 64];
        let n = enc.poll_parity(&mut out).unwrap().unwrap();
        assert_eq!(n, 40);
        assert_eq!(&out[..4], &3u32.to_le_bytes());
        assert_eq!(&out[6..n], &want[..]);
        assert!(enc.poll_parity(&mut out).is_none());
    }
}
