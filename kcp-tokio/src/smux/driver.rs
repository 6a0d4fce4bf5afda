//! The session's task: moves bytes between the underlying stream and the sans-IO session,
//! runs its timer and wakes the streams.

use super::*;

/// The session's task: reads the byte stream into the session, writes its frames out, runs
/// its timer.
pub(super) struct Driver<T> {
    pub(super) shared: Arc<Shared>,
    pub(super) io: Pin<Box<T>>,
    pub(super) rbuf: Box<[u8]>,
    pub(super) rpos: usize,
    pub(super) rlen: usize,
    pub(super) eof: bool,
    pub(super) dec: Option<snappy::Decoder>,
    pub(super) enc: Option<snappy::Encoder>,
    pub(super) frame: Vec<u8>,
    pub(super) wbuf: Vec<u8>,
    pub(super) wpos: usize,
    pub(super) flush: bool,
    pub(super) sleep: Pin<Box<Sleep>>,
    pub(super) armed: Option<std::time::Instant>,
}

impl<T: AsyncRead + AsyncWrite> Driver<T> {
    /// Hands buffered input to the session (through the snappy decoder); true if any was
    /// consumed.
    fn feed(&mut self, s: &mut State) -> bool {
        let mut progress = false;
        loop {
            if s.sess.close_reason().is_some() {
                return progress;
            }
            match &mut self.dec {
                None => {
                    if self.rpos == self.rlen {
                        return progress;
                    }
                    match s.sess.handle_input(&self.rbuf[self.rpos..self.rlen]) {
                        Ok(0) => return progress,
                        Ok(n) => {
                            self.rpos += n;
                            progress = true;
                        }
                        Err(_) => return true,
                    }
                }
                Some(dec) => {
                    if !dec.decoded().is_empty() {
                        match s.sess.handle_input(dec.decoded()) {
                            Ok(0) => return progress,
                            Ok(n) => {
                                dec.consume(n);
                                progress = true;
                            }
                            Err(_) => return true,
                        }
                    } else if self.rpos < self.rlen {
                        match dec.feed(&self.rbuf[self.rpos..self.rlen]) {
                            Ok(0) => return progress,
                            Ok(n) => {
                                self.rpos += n;
                                progress = true;
                            }
                            Err(e) => {
                                s.fail(format!("snappy framing: {e}"));
                                return true;
                            }
                        }
                    } else {
                        return progress;
                    }
                }
            }
        }
    }

    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Rounds with progress before yielding to other tasks (a busy byte stream could
        // otherwise keep this task running).
        let mut budget = 64;
        loop {
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut progress = false;
            let shared = self.shared.clone();
            let mut s = shared.lock();
            register(&mut s.driver, cx);
            if s.sess.close_reason().is_some() {
                s.dispatch();
                return Poll::Ready(());
            }
            // Input.
            if self.feed(&mut s) {
                progress = true;
            }
            if self.rpos == self.rlen && !self.eof && s.sess.close_reason().is_none() {
                self.rpos = 0;
                self.rlen = 0;
                let mut rb = ReadBuf::new(&mut self.rbuf);
                match self.io.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        progress = true;
                        if n == 0 {
                            self.eof = true;
                            match self.dec.as_ref().map(|d| d.finish()) {
                                Some(Err(e)) => s.fail(format!("snappy framing: {e}")),
                                _ => s.sess.handle_eof(),
                            }
                        } else {
                            self.rlen = n;
                            self.feed(&mut s);
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        s.fail(e.to_string());
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            // Time.
            let now = Instant::now().into_std();
            if let Some(t) = s.sess.poll_timeout() {
                if t <= now {
                    s.sess.handle_timeout(now);
                    progress = true;
                } else if self.armed != Some(t) {
                    self.armed = Some(t);
                    self.sleep.as_mut().reset(Instant::from_std(t));
                }
            }
            // Output: pull frames while the write buffer has room.
            while self.wbuf.len() - self.wpos < IO_CHUNK {
                self.frame.clear();
                if s.sess.poll_transmit(&mut self.frame).is_none() {
                    break;
                }
                match &mut self.enc {
                    Some(enc) => enc.encode(&self.frame, &mut self.wbuf),
                    None => self.wbuf.extend_from_slice(&self.frame),
                }
            }
            s.dispatch();
            if s.sess.close_reason().is_some() {
                return Poll::Ready(());
            }
            drop(s);
            while self.wpos < self.wbuf.len() {
                match self.io.as_mut().poll_write(cx, &self.wbuf[self.wpos..]) {
                    Poll::Ready(Ok(0)) => {
                        shared.lock().fail("write returned 0 bytes".into());
                        return Poll::Ready(());
                    }
                    Poll::Ready(Ok(n)) => {
                        self.wpos += n;
                        self.flush = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        shared.lock().fail(e.to_string());
                        return Poll::Ready(());
                    }
                    Poll::Pending => break,
                }
            }
            if self.wpos == self.wbuf.len() {
                self.wbuf.clear();
                self.wpos = 0;
                if self.wbuf.capacity() > 2 * IO_CHUNK {
                    self.wbuf.shrink_to(IO_CHUNK);
                }
            }
            if self.flush {
                match self.io.as_mut().poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.flush = false,
                    Poll::Ready(Err(e)) => {
                        shared.lock().fail(e.to_string());
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            if self.armed.is_some() && self.sleep.as_mut().poll(cx).is_ready() {
                self.armed = None;
                progress = true;
            }
            if !progress {
                // Idle: an idle session keeps only its read buffer.
                if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
                    self.wbuf = Vec::new();
                    self.frame = Vec::new();
                }
                return Poll::Pending;
            }
        }
    }
}
