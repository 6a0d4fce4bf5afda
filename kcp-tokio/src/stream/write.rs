//! The write side: writes of bytes or whole messages (waiting for room in the send window),
//! gathered vectored writes, `send_message`, `AsyncWrite`, and the write half.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use kcp_core::endpoint::{CloseReason, EndpointError};
use kcp_core::SendError;
use tokio::io::AsyncWrite;

use super::deadline::Deadline;
use super::{Inner, KcpStream, KeyGuard};
use crate::driver::{waiter_key, Shared, StateGuard};
use crate::error::KcpError;

/// Whether a write may split a message (message mode `AsyncWrite`) or must keep it whole.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum WriteMode {
    Partial,
    Whole,
}

impl Inner {
    /// Writes from `src`. With a waiter (a context and its key) a write that finds no room
    /// registers the waker and is pending; without one it fails with `WouldBlock`.
    pub(super) fn poll_write_from(
        &self,
        waiter: Option<(&mut Context<'_>, u64)>,
        src: &[u8],
        mode: WriteMode,
    ) -> Poll<io::Result<usize>> {
        if src.is_empty() {
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
        if sess.write_shut {
            return Poll::Ready(Err(KcpError::WriteShutdown.into()));
        }
        if ep.session(self.id).is_none() {
            return Poll::Ready(match self.ended(&mut s, false) {
                Err(e) => Err(e),
                Ok(_) => Err(KcpError::Ended(CloseReason::Closed).into()),
            });
        }
        if !ep.is_writable(self.id) {
            let Some((cx, key)) = waiter else {
                return Poll::Ready(Err(io::ErrorKind::WouldBlock.into()));
            };
            self.wait_for_room(s, cx, key);
            return Poll::Pending;
        }
        let mut src = src;
        if mode == WriteMode::Partial {
            // Message mode AsyncWrite: at most one message of what the send ring can hold.
            if let Some(x) = ep.session(self.id) {
                let k = x.kcp();
                if !k.config().stream {
                    let frags = 255usize.min(k.config().snd_wnd.max(1) as usize);
                    let max = k.mss().max(1) * frags;
                    src = &src[..src.len().min(max)];
                }
            }
        }
        match ep.send(self.id, src) {
            Ok(n) => {
                if let Some((_, key)) = waiter {
                    sess.writers.remove(key);
                }
                self.after_call(s);
                Poll::Ready(Ok(n))
            }
            Err(EndpointError::Send(SendError::Full)) => {
                let Some((cx, key)) = waiter else {
                    return Poll::Ready(Err(io::ErrorKind::WouldBlock.into()));
                };
                self.wait_for_room(s, cx, key);
                Poll::Pending
            }
            Err(EndpointError::Send(e)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                e.to_string(),
            ))),
            Err(EndpointError::WriteClosed) => Poll::Ready(Err(KcpError::WriteShutdown.into())),
            Err(_) => Poll::Ready(match self.ended(&mut s, false) {
                Err(e) => Err(e),
                Ok(_) => Err(KcpError::Ended(CloseReason::Closed).into()),
            }),
        }
    }

    /// Registers a writer waiting for room in the send queue: its waker under `key`, the
    /// session on the driver's write watch, then a send (a drain may be due, and with it the
    /// writable check).
    pub(super) fn wait_for_room(&self, mut s: StateGuard<'_>, cx: &mut Context<'_>, key: u64) {
        if let Some(sess) = s.sessions.get_mut(&self.id) {
            sess.writers.register(key, cx.waker());
        }
        s.watch_write(self.id);
        drop(s);
        self.driver.transmit();
    }

    /// A vectored write: the slices' bytes as one write (in message mode: one message). One
    /// non-empty slice is written as is; several are gathered first, at most as many bytes
    /// as the largest message (255 segments of the largest MTU).
    fn poll_write_vectored_from(
        &self,
        cx: &mut Context<'_>,
        key: u64,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        const MAX_GATHER: usize = 255 * kcp_core::config::MAX_MTU as usize;
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        let Some(first) = nonempty.next() else {
            return Poll::Ready(Ok(0));
        };
        if nonempty.next().is_none() {
            return self.poll_write_from(Some((cx, key)), first, WriteMode::Partial);
        }
        let total = bufs.iter().map(|b| b.len()).sum::<usize>().min(MAX_GATHER);
        let mut gather = Vec::with_capacity(total);
        for b in bufs {
            let room = total - gather.len();
            if room == 0 {
                break;
            }
            gather.extend_from_slice(&b[..b.len().min(room)]);
        }
        self.poll_write_from(Some((cx, key)), &gather, WriteMode::Partial)
    }
}

impl KcpStream {
    /// Sends one message (message mode keeps boundaries; at most 255 fragments). Waits while
    /// the send window is full. Safe to call from several tasks at once; cancellation-safe
    /// (a message is queued whole or not at all).
    pub async fn send_message(&self, msg: &[u8]) -> io::Result<()> {
        let mut to = Deadline::new(self.write_to.timeout);
        let key = waiter_key();
        let _guard = KeyGuard {
            inner: &self.inner,
            key,
        };
        let n = poll_fn(|cx| {
            let r = self
                .inner
                .poll_write_from(Some((cx, key)), msg, WriteMode::Whole);
            to.wrap(cx, r, KcpError::WriteTimeout)
        })
        .await?;
        if n != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "stream mode does not keep message boundaries",
            ));
        }
        Ok(())
    }
}

impl AsyncWrite for KcpStream {
    /// Queues data (in message mode: one message, at most 255 segments or the send window);
    /// waits while the send window is full.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this
            .inner
            .poll_write_from(Some((cx, this.wkey)), buf, WriteMode::Partial);
        this.write_to.wrap(cx, r, KcpError::WriteTimeout)
    }
    /// The slices as one write: in message mode one message of their bytes together (at
    /// most the largest message), in stream mode as many of their bytes as the send queue
    /// takes.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.inner.poll_write_vectored_from(cx, this.wkey, bufs);
        this.write_to.wrap(cx, r, KcpError::WriteTimeout)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write is handed to the engine and sent at once.
        Poll::Ready(Ok(()))
    }
    /// Half-close; see [`KcpStream`]'s "Closing".
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.inner
            .poll_shutdown(cx, this.wkey, this.shutdown_ms, &mut this.shut_sleep)
    }
}

/// The writing half of a [`KcpStream`].
pub struct OwnedWriteHalf {
    pub(super) inner: Arc<Inner>,
    pub(super) shutdown_ms: u32,
    pub(super) write_to: Deadline,
    pub(super) wkey: u64,
    pub(super) shut_sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl OwnedWriteHalf {
    /// Resolves when the session ends (see [`KcpStream::closed`]).
    pub async fn closed(&self) -> Result<CloseReason, KcpError> {
        self.inner.closed().await
    }
}

impl std::fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedWriteHalf").finish_non_exhaustive()
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this
            .inner
            .poll_write_from(Some((cx, this.wkey)), buf, WriteMode::Partial);
        this.write_to.wrap(cx, r, KcpError::WriteTimeout)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.inner.poll_write_vectored_from(cx, this.wkey, bufs);
        this.write_to.wrap(cx, r, KcpError::WriteTimeout)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.inner
            .poll_shutdown(cx, this.wkey, this.shutdown_ms, &mut this.shut_sleep)
    }
}
