//! The application's side of a session: opening, accepting, reading, writing and closing
//! streams, and the frames [`Session::poll_transmit`] cuts from what they queued.

use super::*;

impl Session {
    /// Opens a stream: queues its `SYN` and returns its id.
    pub fn open(&mut self) -> Result<StreamId, Error> {
        if let Some(r) = self.closed {
            return Err(Error::Session(r));
        }
        if self.go_away {
            return Err(Error::GoAway);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(Error::TooManyStreams);
        }
        loop {
            self.next_id = self.next_id.wrapping_add(2);
            if self.next_id < 2 {
                self.go_away = true;
                return Err(Error::GoAway);
            }
            // Skip an id the peer took (Go would overwrite its stream).
            if !self.streams.contains_key(&self.next_id) {
                break;
            }
        }
        let sid = self.next_id;
        self.streams.insert(sid, Stream::new());
        self.control.push_back(Control::Syn(sid));
        Ok(StreamId(sid))
    }

    /// The next stream the peer opened, `None` if none waits.
    pub fn accept(&mut self) -> Option<StreamId> {
        let sid = self.accept_queue.pop_front()?;
        let mut has_data = false;
        if let Some(s) = self.streams.get_mut(&sid) {
            s.unaccepted = false;
            has_data = !s.recv.is_empty() || s.fin_in;
            if s.fin_in {
                self.events.push_back(Event::Finished(StreamId(sid)));
            }
        }
        if has_data {
            self.readable(sid);
        }
        if let Input::BlockedSyn { sid: blocked } = self.input {
            if self.accept_queue.len() < self.config.accept_backlog {
                self.input = Input::Header {
                    buf: [0; HEADER_SIZE],
                    have: 0,
                };
                if self.streams.len() >= self.config.max_streams {
                    self.on_syn(blocked);
                } else {
                    self.add_incoming(blocked);
                }
                self.maybe_resume();
            }
        }
        Some(StreamId(sid))
    }

    /// Reads received data of a stream into `buf`. `Ok(0)` (for a non-empty `buf`) means
    /// the peer closed the stream and everything it sent has been read.
    pub fn read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<usize, Error> {
        let closed = self.closed;
        let half = (self.config.max_stream_buffer / 2) as u32;
        let v2 = self.version == 2;
        let s = self.streams.get_mut(&id.0).ok_or(Error::UnknownStream)?;
        if s.closing {
            return Err(Error::StreamClosed);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if s.recv.is_empty() {
            return match closed {
                Some(r) => Err(Error::Session(r)),
                None if s.fin_in => Ok(0),
                None => Err(Error::WouldBlock),
            };
        }
        let n = {
            let (a, b) = s.recv.as_slices();
            let n1 = a.len().min(buf.len());
            buf[..n1].copy_from_slice(&a[..n1]);
            let n2 = b.len().min(buf.len() - n1);
            buf[n1..n1 + n2].copy_from_slice(&b[..n2]);
            n1 + n2
        };
        s.recv.drain(..n);
        if s.recv.is_empty() {
            // A stream that has nothing to read holds no receive buffer (see the module's
            // "Flow control and memory").
            s.recv = VecDeque::new();
        }
        if v2 && closed.is_none() {
            s.num_read = s.num_read.wrapping_add(n as u32);
            s.incr = s.incr.wrapping_add(n as u32);
            if s.incr >= half || s.num_read == n as u32 {
                s.incr = 0;
                if s.num_read != 0 && !s.upd_queued {
                    s.upd_queued = true;
                    self.control.push_back(Control::Upd(id.0));
                }
            }
        }
        self.return_tokens(n);
        Ok(n)
    }

    /// Bytes of the stream ready to read now.
    pub fn readable_bytes(&self, id: StreamId) -> usize {
        self.streams.get(&id.0).map_or(0, |s| s.recv.len())
    }

    /// Queues data for a stream; returns how much was taken (at most the room left in its
    /// send buffer). [`Error::WouldBlock`] when none fits: wait for [`Event::Writable`].
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, Error> {
        if let Some(r) = self.closed {
            return Err(Error::Session(r));
        }
        let cap = self.config.stream_send_buffer;
        let v2 = self.version == 2;
        let s = self.streams.get_mut(&id.0).ok_or(Error::UnknownStream)?;
        if s.closing {
            return Err(Error::StreamClosed);
        }
        if s.fin_in {
            return Err(Error::PeerClosed);
        }
        if v2 && (s.num_written.wrapping_sub(s.peer_consumed) as i32) < 0 {
            s.want_writable = true;
            return Err(Error::Consumed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = (cap - s.send.len().min(cap)).min(data.len());
        if n < data.len() {
            s.want_writable = true;
        }
        if n == 0 {
            return Err(Error::WouldBlock);
        }
        s.send.extend(&data[..n]);
        if !s.ready && (!v2 || s.window() > 0) {
            s.ready = true;
            self.ready.push_back(id.0);
        }
        Ok(n)
    }

    /// Bytes a [`Session::write`] would take now.
    pub fn write_capacity(&self, id: StreamId) -> usize {
        match self.streams.get(&id.0) {
            Some(s) if self.closed.is_none() && !s.closing && !s.fin_in => {
                self.config.stream_send_buffer - s.send.len().min(self.config.stream_send_buffer)
            }
            _ => 0,
        }
    }

    /// The capacities of a stream's receive and send buffers (tests of the memory an idle
    /// stream holds).
    #[cfg(test)]
    pub(super) fn buffer_capacities(&self, id: StreamId) -> (usize, usize) {
        self.streams
            .get(&id.0)
            .map_or((0, 0), |s| (s.recv.capacity(), s.send.capacity()))
    }

    /// Bytes written to the stream and not yet pulled as frames.
    pub fn queued_bytes(&self, id: StreamId) -> usize {
        self.streams.get(&id.0).map_or(0, |s| s.send.len())
    }

    /// Whether the peer's `FIN` for the stream arrived.
    pub fn is_finished(&self, id: StreamId) -> bool {
        self.streams.get(&id.0).is_some_and(|s| s.fin_in)
    }

    /// Closes a stream (Go's `Stream.Close`): what was written still goes out, then a `FIN`;
    /// unread data is dropped (its bytes return to the bucket) and data arriving later is
    /// dropped. The id is forgotten once the `FIN` is pulled (at once if the session ended).
    pub fn close_stream(&mut self, id: StreamId) -> Result<(), Error> {
        let ended = self.closed.is_some();
        let s = self.streams.get_mut(&id.0).ok_or(Error::UnknownStream)?;
        if s.closing {
            return Err(Error::StreamClosed);
        }
        s.closing = true;
        let tokens = s.recv.len();
        s.recv = VecDeque::new();
        let flush_now = s.send.is_empty();
        if ended {
            self.streams.remove(&id.0);
        } else if flush_now {
            self.control.push_back(Control::Fin(id.0));
        }
        self.accept_queue.retain(|&x| x != id.0);
        self.return_tokens(tokens);
        Ok(())
    }

    /// Appends the next frame to `out` and returns its length, or `None` when nothing is
    /// due. Control frames (`SYN`, `FIN`, `NOP`, `UPD`) go first, then data frames of at most
    /// [`Config::max_frame_size`] bytes, one stream after another.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        if self.closed.is_some() {
            return None;
        }
        while let Some(c) = self.control.pop_front() {
            let (cmd, sid, upd) = match c {
                Control::Syn(sid) => (Cmd::Syn, sid, None),
                Control::Fin(sid) => {
                    self.streams.remove(&sid);
                    (Cmd::Fin, sid, None)
                }
                Control::Refuse(sid) => {
                    self.refusals -= 1;
                    (Cmd::Fin, sid, None)
                }
                Control::Nop => {
                    self.nop_queued = false;
                    self.stats.nop_out += 1;
                    (Cmd::Nop, 0, None)
                }
                Control::Upd(sid) => match self.streams.get_mut(&sid) {
                    Some(s) => {
                        s.upd_queued = false;
                        self.stats.upd_out += 1;
                        (Cmd::Upd, sid, Some(s.num_read))
                    }
                    None => continue,
                },
            };
            let len = if upd.is_some() { UPD_SIZE } else { 0 };
            let h = FrameHeader {
                version: self.version,
                cmd: cmd as u8,
                len: len as u16,
                sid,
            };
            out.extend_from_slice(&h.encode());
            if let Some(consumed) = upd {
                out.extend_from_slice(&consumed.to_le_bytes());
                out.extend_from_slice(&(self.config.max_stream_buffer as u32).to_le_bytes());
            }
            self.stats.frames_out += 1;
            return Some(HEADER_SIZE + len);
        }
        let v2 = self.version == 2;
        let half = self.config.stream_send_buffer / 2;
        while let Some(sid) = self.ready.pop_front() {
            let Some(s) = self.streams.get_mut(&sid) else {
                continue;
            };
            s.ready = false;
            let mut n = s.send.len().min(self.config.max_frame_size);
            if v2 {
                n = n.min(s.window().max(0) as usize);
            }
            if n == 0 {
                continue;
            }
            let h = FrameHeader {
                version: self.version,
                cmd: Cmd::Psh as u8,
                len: n as u16,
                sid,
            };
            out.reserve(HEADER_SIZE + n);
            out.extend_from_slice(&h.encode());
            let (a, b) = s.send.as_slices();
            let n1 = a.len().min(n);
            out.extend_from_slice(&a[..n1]);
            out.extend_from_slice(&b[..n - n1]);
            s.send.drain(..n);
            s.num_written = s.num_written.wrapping_add(n as u32);
            self.stats.frames_out += 1;
            self.stats.data_out += n as u64;
            let more = !s.send.is_empty() && (!v2 || s.window() > 0);
            if more {
                s.ready = true;
                self.ready.push_back(sid);
            }
            if s.send.is_empty() {
                // Nothing left to send: no send buffer either.
                s.send = VecDeque::new();
                if s.closing {
                    self.control.push_back(Control::Fin(sid));
                }
            }
            if s.want_writable && s.send.len() <= half {
                self.writable(sid);
            }
            return Some(HEADER_SIZE + n);
        }
        None
    }

    /// Whether [`Session::poll_transmit`] may have a frame now (a hint: after a peer shrank
    /// its window it can be true while `poll_transmit` finds nothing).
    pub fn has_transmit(&self) -> bool {
        self.closed.is_none() && (!self.control.is_empty() || !self.ready.is_empty())
    }
}
