//! The input side: the frame parser fed by [`Session::handle_input`] and what each frame
//! does to the session's streams, bucket and accept queue.

use super::*;

/// Where the input parser is.
#[derive(Clone, Copy, Debug)]
pub(super) enum Input {
    /// Collecting a frame header.
    Header { buf: [u8; HEADER_SIZE], have: usize },
    /// In the data of a `PSH` (dropped if the stream is unknown or closed).
    Payload { sid: u32, remaining: usize },
    /// Collecting the 8 bytes of an `UPD`.
    Upd {
        sid: u32,
        buf: [u8; UPD_SIZE],
        have: usize,
    },
    /// A `SYN` waits for room in the accept backlog.
    BlockedSyn { sid: u32 },
}

impl Session {
    /// Feeds bytes read from the underlying stream; returns how many were consumed. Fewer
    /// than `data.len()` means back-pressure: keep the rest and offer it again after
    /// [`Event::InputResumed`]. An error ends the session (it is also reported as
    /// [`Event::Closed`]); later calls return the same error.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, CloseReason> {
        if let Some(r) = self.closed {
            return Err(r);
        }
        let mut pos = 0;
        while pos < data.len() {
            match self.input {
                Input::Header { mut buf, have } => {
                    if have == 0 && self.bucket <= 0 {
                        break;
                    }
                    let n = (HEADER_SIZE - have).min(data.len() - pos);
                    buf[have..have + n].copy_from_slice(&data[pos..pos + n]);
                    pos += n;
                    if have + n < HEADER_SIZE {
                        self.input = Input::Header {
                            buf,
                            have: have + n,
                        };
                        continue;
                    }
                    self.input = Input::Header {
                        buf: [0; HEADER_SIZE],
                        have: 0,
                    };
                    let h = FrameHeader::decode(&buf);
                    if let Err(e) = self.on_header(h) {
                        let r = CloseReason::Protocol(e);
                        self.end(r);
                        return Err(r);
                    }
                }
                Input::Payload { sid, remaining } => {
                    let n = remaining.min(data.len() - pos);
                    let chunk = &data[pos..pos + n];
                    pos += n;
                    self.on_payload(sid, chunk);
                    self.input = if remaining == n {
                        Input::Header {
                            buf: [0; HEADER_SIZE],
                            have: 0,
                        }
                    } else {
                        Input::Payload {
                            sid,
                            remaining: remaining - n,
                        }
                    };
                }
                Input::Upd { sid, mut buf, have } => {
                    let n = (UPD_SIZE - have).min(data.len() - pos);
                    buf[have..have + n].copy_from_slice(&data[pos..pos + n]);
                    pos += n;
                    if have + n < UPD_SIZE {
                        self.input = Input::Upd {
                            sid,
                            buf,
                            have: have + n,
                        };
                        continue;
                    }
                    self.input = Input::Header {
                        buf: [0; HEADER_SIZE],
                        have: 0,
                    };
                    let consumed = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    let window = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    self.on_upd(sid, consumed, window);
                }
                Input::BlockedSyn { .. } => break,
            }
        }
        if pos < data.len() {
            self.input_stalled = true;
        }
        Ok(pos)
    }

    fn on_header(&mut self, h: FrameHeader) -> Result<(), ProtocolError> {
        self.stats.frames_in += 1;
        self.data_ready = true;
        if h.version != self.version {
            return Err(ProtocolError::Version {
                expected: self.version,
                got: h.version,
            });
        }
        match Cmd::from_u8(h.cmd) {
            None => return Err(ProtocolError::Command(h.cmd)),
            Some(Cmd::Nop) => self.stats.nop_in += 1,
            Some(Cmd::Syn) => self.on_syn(h.sid),
            Some(Cmd::Fin) => match self.streams.get_mut(&h.sid) {
                Some(s) if !s.closing => {
                    if !s.fin_in {
                        s.fin_in = true;
                        // A write can no longer reach the peer: free the queued data.
                        s.send = VecDeque::new();
                        let writable = s.want_writable;
                        if !s.unaccepted {
                            self.events.push_back(Event::Finished(StreamId(h.sid)));
                        }
                        self.readable(h.sid);
                        if writable {
                            self.writable(h.sid);
                        }
                    }
                }
                _ => self.stats.dropped_frames += 1,
            },
            Some(Cmd::Psh) => {
                if h.len > 0 {
                    self.input = Input::Payload {
                        sid: h.sid,
                        remaining: h.len as usize,
                    };
                    let live = matches!(self.streams.get(&h.sid), Some(s) if !s.closing);
                    if !live {
                        self.stats.dropped_frames += 1;
                    }
                }
            }
            Some(Cmd::Upd) => {
                self.input = Input::Upd {
                    sid: h.sid,
                    buf: [0; UPD_SIZE],
                    have: 0,
                };
            }
        }
        Ok(())
    }

    pub(super) fn on_syn(&mut self, sid: u32) {
        if self.streams.contains_key(&sid) {
            self.stats.duplicate_syn += 1;
            return;
        }
        if self.streams.len() >= self.config.max_streams {
            self.stats.refused_streams += 1;
            if self.refusals < MAX_QUEUED_REFUSALS {
                self.refusals += 1;
                self.control.push_back(Control::Refuse(sid));
            }
            return;
        }
        if self.accept_queue.len() >= self.config.accept_backlog {
            self.input = Input::BlockedSyn { sid };
            return;
        }
        self.add_incoming(sid);
    }

    pub(super) fn add_incoming(&mut self, sid: u32) {
        let mut s = Stream::new();
        s.unaccepted = true;
        self.streams.insert(sid, s);
        self.accept_queue.push_back(sid);
        if !self.incoming_pending {
            self.incoming_pending = true;
            self.events.push_back(Event::Incoming);
        }
    }

    fn on_payload(&mut self, sid: u32, chunk: &[u8]) {
        match self.streams.get_mut(&sid) {
            Some(s) if !s.closing => {
                s.recv.extend(chunk);
                self.bucket -= chunk.len() as i64;
                self.stats.data_in += chunk.len() as u64;
                self.readable(sid);
            }
            _ => self.stats.dropped_bytes += chunk.len() as u64,
        }
    }

    fn on_upd(&mut self, sid: u32, consumed: u32, window: u32) {
        let v2 = self.version == 2;
        let half = self.config.stream_send_buffer / 2;
        let Some(s) = self.streams.get_mut(&sid) else {
            self.stats.dropped_frames += 1;
            return;
        };
        s.peer_consumed = consumed;
        s.peer_window = window;
        if !v2 {
            return;
        }
        if !s.ready && !s.send.is_empty() && s.window() > 0 {
            s.ready = true;
            self.ready.push_back(sid);
        }
        let consistent = s.num_written.wrapping_sub(consumed) as i32 >= 0;
        if s.want_writable && consistent && s.send.len() <= half && !s.fin_in {
            // A write refused with `Consumed` may succeed now.
            self.writable(sid);
        }
    }

    pub(super) fn readable(&mut self, sid: u32) {
        if let Some(s) = self.streams.get_mut(&sid) {
            if !s.readable_pending && !s.unaccepted {
                s.readable_pending = true;
                self.events.push_back(Event::Readable(StreamId(sid)));
            }
        }
    }

    pub(super) fn writable(&mut self, sid: u32) {
        if let Some(s) = self.streams.get_mut(&sid) {
            s.want_writable = false;
            if !s.writable_pending {
                s.writable_pending = true;
                self.events.push_back(Event::Writable(StreamId(sid)));
            }
        }
    }

    pub(super) fn return_tokens(&mut self, n: usize) {
        self.bucket += n as i64;
        self.maybe_resume();
    }

    pub(super) fn maybe_resume(&mut self) {
        if self.input_stalled && self.closed.is_none() && self.input_open() {
            self.input_stalled = false;
            self.events.push_back(Event::InputResumed);
        }
    }
}
