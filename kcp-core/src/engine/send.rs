//! The application's sending side: `send` cuts data into segments (stream mode fills the
//! last segment first; message mode keeps one message as up to `MAX_FRAGMENTS` fragments).

use super::*;

impl Kcp<'_> {
    /// Queues `data` for sending.
    ///
    /// Message mode: the whole message is queued (as up to 255 fragments) or nothing is, and
    /// `Ok(data.len())` is returned. Stream mode: as many bytes as fit are queued, merged into
    /// full segments; the count is returned (`Err(Full)` when none fit).
    /// Unless `write_delay` is set, a flush is requested: drain `poll_transmit` afterwards.
    #[doc(alias = "ikcp_send")]
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        if data.is_empty() {
            return Err(SendError::Empty);
        }
        let mss = self.mss as usize;
        let written = if self.cfg.stream {
            self.send_stream(data, mss)
        } else {
            self.send_message(data, mss)?
        };
        if written == 0 {
            return Err(SendError::Full);
        }
        self.stats.bytes_sent = self.stats.bytes_sent.wrapping_add(written as u64);
        if !self.cfg.write_delay || self.wait_snd() as u32 >= self.cfg.snd_wnd {
            self.request(Pending::Full);
        }
        Ok(written)
    }

    pub(super) fn send_stream(&mut self, mut data: &[u8], mss: usize) -> usize {
        let mut written = 0;
        // Top up the last queued (not yet transmitted) segment.
        if let Some(last) = self.stream_tail(mss) {
            if let Some(seg) = self.snd.get_mut(last) {
                let have = seg.len as usize;
                let mut take = (mss - have).min(data.len());
                // A small chunk is swapped for a full-size one when the segment
                // outgrows it; without one to be had, the segment fills its chunk.
                let chunk = match self.pool.grow(seg.chunk, have, have + take) {
                    Some(c) => c,
                    None => {
                        take = self.pool.chunk(seg.chunk).len().saturating_sub(have);
                        seg.chunk
                    }
                };
                seg.chunk = chunk;
                seg.len = (have + take) as u16;
                if let Some(dst) = self.pool.chunk_mut(chunk).get_mut(have..have + take) {
                    dst.copy_from_slice(&data[..take]);
                }
                data = &data[take..];
                written += take;
            }
        }
        while !data.is_empty() {
            let take = mss.min(data.len());
            if !self.push_segment(&data[..take], 0) {
                break;
            }
            data = &data[take..];
            written += take;
        }
        written
    }

    /// The queued segment a stream-mode `send` tops up first: the last one, if it is not
    /// transmitted yet, holds a chunk and is shorter than `mss`.
    pub(super) fn stream_tail(&self, mss: usize) -> Option<u32> {
        let last = self.snd.end().wrapping_sub(1);
        if self.snd.is_empty() || seq_diff(last, self.snd_nxt) < 0 {
            return None;
        }
        let seg = self.snd.get(last)?;
        (seg.chunk != NO_CHUNK && (seg.len as usize) < mss).then_some(last)
    }

    pub(super) fn send_message(&mut self, data: &[u8], mss: usize) -> Result<usize, SendError> {
        let count = data.len().div_ceil(mss).max(1);
        if count > MAX_FRAGMENTS {
            return Err(SendError::TooLarge { fragments: count });
        }
        if self.snd.spare() < count || self.pool.available() < count || !self.snd.reserve(count) {
            return Err(SendError::Full);
        }
        for (i, piece) in data.chunks(mss).enumerate() {
            let frg = (count - 1 - i) as u8;
            if !self.push_segment(piece, frg) {
                // Unreachable after the checks above; never leave half a message queued.
                return Err(SendError::Full);
            }
        }
        Ok(data.len())
    }

    /// Appends one queued segment; false when storage is exhausted.
    pub(super) fn push_segment(&mut self, payload: &[u8], frg: u8) -> bool {
        if self.snd.spare() == 0 {
            return false;
        }
        let Some(chunk) = self.pool.take(payload.len()) else {
            return false;
        };
        if let Some(dst) = self.pool.chunk_mut(chunk).get_mut(..payload.len()) {
            dst.copy_from_slice(payload);
        }
        let slot = SendSlot {
            chunk,
            len: payload.len() as u16,
            frg,
            ..SendSlot::EMPTY
        };
        if self.snd.push_back(slot).is_err() {
            self.pool.give(chunk);
            return false;
        }
        true
    }
}
