//! A stream of a session: `AsyncRead + AsyncWrite` over the shared session state.

use super::*;

/// One smux stream: `AsyncRead + AsyncWrite`. Dropping it closes it (a `FIN` follows what was
/// written).
pub struct SmuxStream {
    pub(super) shared: Arc<Shared>,
    pub(super) id: StreamId,
    /// `poll_shutdown` closed it.
    pub(super) shut: bool,
}

impl fmt::Debug for SmuxStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmuxStream")
            .field("id", &self.id)
            .field("shut", &self.shut)
            .finish()
    }
}

impl SmuxStream {
    /// The stream id on the wire (a client's are odd from 3, a server's even from 2).
    pub fn id(&self) -> u32 {
        self.id.get()
    }
}

impl Drop for SmuxStream {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        if !self.shut {
            let _ = s.sess.close_stream(self.id);
        }
        s.readers.remove(&self.id.get());
        s.writers.remove(&self.id.get());
        s.after_op();
        s.release();
    }
}

impl AsyncRead for SmuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.shut {
            return Poll::Ready(Ok(()));
        }
        let mut s = self.shared.lock();
        // Initializes no more of `buf` than the stream can fill (a caller may lend a large
        // uninitialized buffer), and at least a byte, so an empty stream says whether it
        // ended or would wait.
        let fill = s
            .sess
            .readable_bytes(self.id)
            .clamp(1, buf.remaining().max(1))
            .min(buf.remaining());
        let r = s.sess.read(self.id, buf.initialize_unfilled_to(fill));
        match r {
            Ok(n) => {
                buf.advance(n);
                s.after_op();
                Poll::Ready(Ok(()))
            }
            Err(SmuxError::WouldBlock) => {
                match s.readers.get(&self.id.get()) {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => {
                        s.readers.insert(self.id.get(), cx.waker().clone());
                    }
                }
                Poll::Pending
            }
            Err(SmuxError::Session(r)) => Poll::Ready(Err(end_error(&s.end, r))),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}

impl AsyncWrite for SmuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shut {
            return Poll::Ready(Err(SmuxError::StreamClosed.into()));
        }
        let mut s = self.shared.lock();
        match s.sess.write(self.id, data) {
            Ok(n) => {
                s.after_op();
                Poll::Ready(Ok(n))
            }
            Err(SmuxError::WouldBlock) => {
                match s.writers.get(&self.id.get()) {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => {
                        s.writers.insert(self.id.get(), cx.waker().clone());
                    }
                }
                s.after_op();
                Poll::Pending
            }
            Err(SmuxError::Session(r)) => Poll::Ready(Err(end_error(&s.end, r))),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Closes the stream (smux has no half-close): what was written still goes out, then a
    /// `FIN`; reads then return end of stream.
    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut {
            self.shut = true;
            let mut s = self.shared.lock();
            let _ = s.sess.close_stream(self.id);
            s.after_op();
        }
        Poll::Ready(Ok(()))
    }
}
