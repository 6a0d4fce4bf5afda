//! The read side: reads into a buffer (a whole message, or part of one with the rest kept
//! for the next read), `recv_message`, `AsyncRead`, and the read half.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use kcp_core::endpoint::{CloseReason, EndpointError};
use kcp_core::RecvError;
use tokio::io::{AsyncRead, ReadBuf};

use super::deadline::Deadline;
use super::{Inner, KcpStream, KeyGuard};
use crate::driver::{waiter_key, Shared};
use crate::error::KcpError;

/// How a read treats a message that does not fit the buffer.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum ReadMode {
    /// `AsyncRead`: return part of it, keep the rest for the next read.
    Partial,
    /// `recv_message`: refuse (the message stays queued).
    Whole,
}

impl Inner {
    /// Reads into `dst`. With a waiter (a context and its key) a read that finds nothing
    /// registers the waker and is pending; without one it fails with `WouldBlock`.
    pub(super) fn poll_read_into(
        &self,
        waiter: Option<(&mut Context<'_>, u64)>,
        dst: &mut [u8],
        mode: ReadMode,
    ) -> Poll<io::Result<usize>> {
        let key = waiter.as_ref().map(|w| w.1);
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut s = self.driver.lock_for_io();
        if let Some(k) = s.stopped {
            return Poll::Ready(Err(KcpError::Socket(k).into()));
        }
        let Shared { ep, sessions, .. } = &mut *s;
        let Some(sess) = sessions.get_mut(&self.id) else {
            return Poll::Ready(Err(KcpError::Ended(CloseReason::Closed).into()));
        };
        // The rest of a message an earlier small read took part of.
        if let Some(r) = sess
            .rare_mut()
            .filter(|r| r.leftover_pos < r.leftover.len())
        {
            let rest = &r.leftover[r.leftover_pos..];
            if mode == ReadMode::Whole && rest.len() > dst.len() {
                return Poll::Ready(Err(too_small(rest.len())));
            }
            let n = rest.len().min(dst.len());
            dst[..n].copy_from_slice(&rest[..n]);
            r.leftover_pos += n;
            if r.leftover_pos == r.leftover.len() {
                r.leftover.clear();
                r.leftover_pos = 0;
            }
            if let Some(key) = key {
                sess.readers.remove(key);
            }
            return Poll::Ready(Ok(n));
        }
        match ep.recv(self.id, dst) {
            Ok(n) => {
                if let Some(key) = key {
                    sess.readers.remove(key);
                }
                self.after_call(s);
                Poll::Ready(Ok(n))
            }
            Err(EndpointError::Recv(RecvError::BufferTooSmall { needed })) => {
                if mode == ReadMode::Whole {
                    return Poll::Ready(Err(too_small(needed)));
                }
                let mut whole = std::mem::take(&mut sess.rare().leftover);
                whole.resize(needed, 0);
                match ep.recv(self.id, &mut whole) {
                    Ok(m) => {
                        whole.truncate(m);
                        let n = m.min(dst.len());
                        dst[..n].copy_from_slice(&whole[..n]);
                        let r = sess.rare();
                        r.leftover = whole;
                        r.leftover_pos = n;
                        if let Some(key) = key {
                            sess.readers.remove(key);
                        }
                        self.after_call(s);
                        Poll::Ready(Ok(n))
                    }
                    Err(e) => {
                        whole.clear();
                        sess.rare().leftover = whole;
                        Poll::Ready(Err(io::Error::other(e.to_string())))
                    }
                }
            }
            Err(EndpointError::Recv(RecvError::WouldBlock)) => match waiter {
                Some((cx, key)) => {
                    sess.readers.register(key, cx.waker());
                    Poll::Pending
                }
                None => Poll::Ready(Err(io::ErrorKind::WouldBlock.into())),
            },
            Err(EndpointError::UnknownSession) => match self.ended(&mut s, true) {
                Ok(()) => Poll::Ready(Ok(0)),
                Err(e) => Poll::Ready(Err(e)),
            },
            Err(e) => Poll::Ready(Err(io::Error::other(e.to_string()))),
        }
    }
}

fn too_small(needed: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("message of {needed} bytes does not fit the buffer"),
    )
}

impl KcpStream {
    /// Receives one whole message into `buf` (message mode; in stream mode whatever bytes
    /// are there). A message larger than `buf` is refused with `InvalidInput` and stays
    /// queued; if an `AsyncRead` took part of a message, this returns the rest of it. Safe to
    /// call from several tasks at once (each message goes to one of them);
    /// cancellation-safe. An empty `buf` returns `Ok(0)` at once.
    pub async fn recv_message(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut to = Deadline::new(self.read_to.timeout);
        let key = waiter_key();
        let _guard = KeyGuard {
            inner: &self.inner,
            key,
        };
        poll_fn(|cx| {
            let r = self
                .inner
                .poll_read_into(Some((cx, key)), buf, ReadMode::Whole);
            to.wrap(cx, r, KcpError::ReadTimeout)
        })
        .await
    }
}

fn poll_read_buf(
    inner: &Inner,
    key: u64,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if buf.remaining() == 0 {
        return Poll::Ready(Ok(()));
    }
    let dst = buf.initialize_unfilled();
    match inner.poll_read_into(Some((cx, key)), dst, ReadMode::Partial) {
        Poll::Ready(Ok(n)) => {
            buf.advance(n);
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

impl AsyncRead for KcpStream {
    /// Any buffer size; an empty one returns at once. End of stream (`Ok` with nothing read)
    /// only after a local shutdown and the session's end by idle timeout.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = poll_read_buf(&this.inner, this.rkey, cx, buf);
        this.read_to.wrap(cx, r, KcpError::ReadTimeout)
    }
}

/// The reading half of a [`KcpStream`].
pub struct OwnedReadHalf {
    pub(super) inner: Arc<Inner>,
    pub(super) read_to: Deadline,
    pub(super) rkey: u64,
}

impl OwnedReadHalf {
    /// Resolves when the session ends (see [`KcpStream::closed`]).
    pub async fn closed(&self) -> Result<CloseReason, KcpError> {
        self.inner.closed().await
    }
}

impl std::fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedReadHalf").finish_non_exhaustive()
    }
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = poll_read_buf(&this.inner, this.rkey, cx, buf);
        this.read_to.wrap(cx, r, KcpError::ReadTimeout)
    }
}
