//! The application's receiving side: `peek_size` and `recv` over the in-order receive
//! queue, and moving segments from the receive window into it.

use super::*;

impl Kcp<'_> {
    /// Size of the next message (message mode) or of the bytes readable from the next segment
    /// (stream mode); `None` when nothing is ready.
    #[doc(alias = "ikcp_peeksize")]
    pub fn peek_size(&self) -> Option<usize> {
        if self.cfg.stream {
            let mut sn = self.rcv.base();
            let mut off = self.rcv_off;
            while sn != self.rcv_nxt {
                let seg = self.rcv.get(sn)?;
                if seg.len as usize > off {
                    return Some(seg.len as usize - off);
                }
                sn = sn.wrapping_add(1);
                off = 0;
            }
            return None;
        }
        let mut sn = self.rcv.base();
        loop {
            let (size, count) = self.message_at(sn)?;
            if size > 0 {
                return Some(size);
            }
            sn = sn.wrapping_add(count);
        }
    }

    /// Size and fragment count of the complete message starting at `sn`, if complete.
    pub(super) fn message_at(&self, sn: u32) -> Option<(usize, u32)> {
        let queued = self.rcv_nxt.wrapping_sub(sn);
        if queued == 0 || queued > self.rcv.len() as u32 {
            return None;
        }
        let first = self.rcv.get(sn)?;
        // Computed in u32: a malicious frg = 255 cannot wrap the check (`docs/protocol.md`,
        // hazard H9).
        if queued < first.frg as u32 + 1 {
            return None;
        }
        // A message has `first.frg + 1` fragments; a chain whose count does not reach 0 there
        // (only a broken peer sends one) ends there too, so this walks at most 256 segments
        // and says "incomplete" in O(1).
        let last = sn.wrapping_add(first.frg as u32);
        let mut size = 0usize;
        let mut cur = sn;
        loop {
            let seg = self.rcv.get(cur)?;
            size += seg.len as usize;
            let end = seg.frg == 0 || cur == last;
            cur = cur.wrapping_add(1);
            if end {
                return Some((size, cur.wrapping_sub(sn)));
            }
            if cur == self.rcv_nxt {
                return None;
            }
        }
    }

    /// Receives the next message (message mode) or as many bytes as fit (stream mode).
    ///
    /// Zero-length messages from ikcp.c peers are skipped (and counted), never delivered.
    #[doc(alias = "ikcp_recv")]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let recover = self.queued_len() >= self.cfg.rcv_wnd;
        let n = if self.cfg.stream {
            self.recv_stream(buf)
        } else {
            self.recv_message(buf)?
        };
        self.advance_rcv_queue();
        if recover && self.queued_len() < self.cfg.rcv_wnd {
            // Tell the peer the window opened again (kcp-go: WINS at the next flush).
            self.probe |= ASK_TELL;
        }
        if n == 0 {
            return Err(RecvError::WouldBlock);
        }
        self.stats.bytes_received = self.stats.bytes_received.wrapping_add(n as u64);
        Ok(n)
    }

    pub(super) fn recv_stream(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() && self.rcv.base() != self.rcv_nxt {
            let Some(seg) = self.rcv.get(self.rcv.base()).copied() else {
                break;
            };
            let len = seg.len as usize;
            let take = (len - self.rcv_off.min(len)).min(buf.len() - n);
            if take > 0 {
                let src = self.pool.chunk(seg.chunk);
                if let (Some(dst), Some(src)) = (
                    buf.get_mut(n..n + take),
                    src.get(self.rcv_off..self.rcv_off + take),
                ) {
                    dst.copy_from_slice(src);
                }
            } else if len == 0 {
                self.stats.empty_messages += 1;
            }
            n += take;
            self.rcv_off += take;
            if self.rcv_off >= len {
                self.pop_rcv();
            }
        }
        n
    }

    pub(super) fn recv_message(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        loop {
            let Some((size, count)) = self.message_at(self.rcv.base()) else {
                return Ok(0);
            };
            if size == 0 {
                for _ in 0..count {
                    self.pop_rcv();
                }
                self.stats.empty_messages += 1;
                continue;
            }
            if size > buf.len() {
                return Err(RecvError::BufferTooSmall { needed: size });
            }
            let mut n = 0;
            for _ in 0..count {
                if let Some(seg) = self.rcv.get(self.rcv.base()).copied() {
                    let len = seg.len as usize;
                    if let (Some(dst), Some(src)) = (
                        buf.get_mut(n..n + len),
                        self.pool.chunk(seg.chunk).get(..len),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    n += len;
                }
                self.pop_rcv();
            }
            return Ok(n);
        }
    }

    pub(super) fn pop_rcv(&mut self) {
        if let Some(seg) = self.rcv.pop_front() {
            if seg.chunk != NO_CHUNK {
                let cost = self.pool.chunk_cost(seg.chunk) as u32;
                self.rcv_chunk_bytes = self.rcv_chunk_bytes.saturating_sub(cost);
                self.pool.give(seg.chunk);
            }
        }
        self.rcv_off = 0;
        self.rcv_head_ready = false;
    }

    /// Drops empty messages (zero-length segments in stream mode) from the head of the
    /// receive queue, counting them, so that the head is always something to read or an
    /// incomplete message: [`peek_size`](Self::peek_size) then never walks a run of empty
    /// segments, and they do not hold receive-queue slots.
    pub(super) fn skip_empty_head(&mut self) {
        if self.rcv_head_ready {
            return;
        }
        loop {
            if self.cfg.stream {
                match self.rcv.get(self.rcv.base()) {
                    Some(s) if self.rcv.base() != self.rcv_nxt && s.len == 0 => {
                        self.pop_rcv();
                        self.stats.empty_messages += 1;
                    }
                    Some(_) if self.rcv.base() != self.rcv_nxt => {
                        self.rcv_head_ready = true;
                        return;
                    }
                    _ => return,
                }
            } else {
                match self.message_at(self.rcv.base()) {
                    Some((0, count)) => {
                        for _ in 0..count {
                            self.pop_rcv();
                        }
                        self.stats.empty_messages += 1;
                    }
                    Some(_) => {
                        self.rcv_head_ready = true;
                        return;
                    }
                    None => return,
                }
            }
        }
    }

    /// Segments ready for `recv` (kcp-go's `len(rcv_queue)`).
    pub(super) fn queued_len(&self) -> u32 {
        self.rcv_nxt.wrapping_sub(self.rcv.base())
    }

    /// Moves in-order received segments into the receive queue while it has room.
    pub(crate) fn advance_rcv_queue(&mut self) {
        loop {
            // Skipped empty messages free queue slots for what waits behind them.
            self.skip_empty_head();
            let before = self.rcv_nxt;
            while self.queued_len() < self.cfg.rcv_wnd {
                match self.rcv.get(self.rcv_nxt) {
                    Some(s) if s.present => self.rcv_nxt = self.rcv_nxt.wrapping_add(1),
                    _ => break,
                }
            }
            if self.rcv_nxt == before || self.rcv_head_ready {
                return;
            }
        }
    }

    /// `wnd` advertised to the peer: free receive-queue slots.
    pub(crate) fn wnd_unused(&self) -> u16 {
        self.cfg
            .rcv_wnd
            .saturating_sub(self.queued_len())
            .min(u16::MAX as u32) as u16
    }
}
