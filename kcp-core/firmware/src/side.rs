//! One side: an engine and its codec stack (FEC inside crypto, as kcp-go).

use super::*;

pub(crate) struct Side<'a> {
    pub(crate) kcp: Kcp<'a>,
    pub(crate) fec: Option<Fec>,
    pub(crate) crypt: Option<PacketCrypt<&'static PacketKey>>,
    pub(crate) codec_errors: u32,
    pub(crate) recovered_in: u32,
}

impl Side<'_> {
    pub(crate) fn room(&self) -> usize {
        self.crypt.as_ref().map_or(0, |_| CRYPT_ROOM) + self.fec.as_ref().map_or(0, |_| FEC_ROOM)
    }

    /// Drains the engine into the link through the codecs.
    pub(crate) fn transmit(&mut self, now: u32, link: &mut Link) {
        let t = Millis(now);
        let room = self.room();
        let fec_off = self.crypt.as_ref().map_or(0, |_| CRYPT_ROOM);
        let mut buf = [0u8; MTU];
        while let Some(n) = self.kcp.poll_transmit(t, &mut buf[room..]) {
            let mut end = room + n;
            if let Some(fec) = self.fec.as_mut() {
                match fec.seal(&mut buf[fec_off..], end - fec_off, t) {
                    Ok(len) => end = fec_off + len,
                    Err(_) => {
                        self.codec_errors += 1;
                        continue;
                    }
                }
            }
            if !seal_out(
                self.crypt.as_mut(),
                &mut self.codec_errors,
                &mut buf,
                end,
                now,
                link,
            ) {
                continue;
            }
            // Parity follows the packet that completed its group.
            if let Some(fec) = self.fec.as_mut() {
                let mut parity = [0u8; MTU];
                while let Some(r) = fec.poll_extra(&mut parity[fec_off..], t) {
                    match r {
                        Ok(len) => {
                            let end = fec_off + len;
                            let errs = &mut self.codec_errors;
                            seal_out(self.crypt.as_mut(), errs, &mut parity, end, now, link);
                        }
                        Err(_) => self.codec_errors += 1,
                    }
                }
            }
        }
    }

    /// Opens one received datagram through the codecs and feeds the engine.
    pub(crate) fn receive(&mut self, now: u32, datagram: &mut [u8]) {
        let t = Millis(now);
        let mut range: Range<usize> = 0..datagram.len();
        if let Some(c) = self.crypt.as_mut() {
            match c.open(&mut datagram[range.clone()], t) {
                Ok(Some(inner)) => range = range.start + inner.start..range.start + inner.end,
                Ok(None) => return,
                Err(_) => {
                    self.codec_errors += 1;
                    return;
                }
            }
        }
        if let Some(fec) = self.fec.as_mut() {
            let opened = fec.open(&mut datagram[range.clone()], t);
            match opened {
                Ok(Some(inner)) => {
                    let r = range.start + inner.start..range.start + inner.end;
                    if self.kcp.handle_datagram(t, &datagram[r]).is_err() {
                        self.codec_errors += 1;
                    }
                }
                Ok(None) => {}
                Err(_) => self.codec_errors += 1,
            }
            let mut rebuilt = [0u8; MTU];
            while let Some(n) = fec.poll_recovered(&mut rebuilt) {
                self.recovered_in += 1;
                if self
                    .kcp
                    .handle_recovered(t, &rebuilt[..n.min(MTU)])
                    .is_err()
                {
                    self.codec_errors += 1;
                }
            }
        } else if self.kcp.handle_datagram(t, &datagram[range]).is_err() {
            self.codec_errors += 1;
        }
    }
}

/// Encrypts `buf[..end]` (room for the cipher's header in front) and puts it on the link.
pub(crate) fn seal_out(
    crypt: Option<&mut PacketCrypt<&'static PacketKey>>,
    codec_errors: &mut u32,
    buf: &mut [u8],
    end: usize,
    now: u32,
    link: &mut Link,
) -> bool {
    let end = match crypt {
        Some(c) => match c.seal(buf, end, Millis(now)) {
            Ok(len) => len,
            Err(_) => {
                *codec_errors += 1;
                return false;
            }
        },
        None => end,
    };
    link.push(now, &buf[..end]);
    true
}
