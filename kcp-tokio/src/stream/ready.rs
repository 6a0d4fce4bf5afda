//! Readiness without a buffer: `readable` and `writable` wait until a read or a write would
//! not wait, and `try_read` and `try_write` then move bytes without waiting (Tokio's
//! `TcpStream` pattern). A task that waits this way holds no read buffer, which at
//! thousands of mostly idle sessions is most of what a session's task costs.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use super::deadline::Deadline;
use super::read::ReadMode;
use super::write::WriteMode;
use super::{Inner, KcpStream, OwnedReadHalf, OwnedWriteHalf};
use crate::driver::{waiter_key, Shared};
use crate::error::KcpError;

/// Which readiness a caller waits for.
#[derive(Clone, Copy, PartialEq)]
enum Want {
    Read,
    Write,
}

/// A waiting caller's key, and whether its waker is registered under it. Dropping it
/// (completed or cancelled) removes a registration left behind; a caller that found the
/// condition ready has removed its own already and takes no lock here.
struct Waiting<'a> {
    inner: &'a Inner,
    key: u64,
    /// Only its own future touches it (an atomic so that the future is `Send`).
    registered: AtomicBool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.registered.load(Ordering::Relaxed) {
            self.inner.forget(self.key);
        }
    }
}

impl Inner {
    /// Ready when a read (or a write) would not wait: data to read (room to write), the
    /// session's end, a shut write side, or the socket's failure, each of which the next
    /// `try_read` or `try_write` reports. Otherwise registers the waker.
    fn poll_ready(&self, cx: &mut Context<'_>, want: Want, w: &Waiting<'_>) -> Poll<()> {
        let mut s = self.driver.lock_for_io();
        if s.stopped.is_some() {
            return Poll::Ready(());
        }
        let Shared { ep, sessions, .. } = &mut *s;
        let Some(sess) = sessions.get_mut(&self.id) else {
            return Poll::Ready(());
        };
        let ready = sess.ended.is_some()
            || match want {
                Want::Read => {
                    sess.rare_mut()
                        .is_some_and(|r| r.leftover_pos < r.leftover.len())
                        // `Ok(false)` only: an unknown session is ready (the read reports it).
                        || ep.readable(self.id) != Ok(false)
                }
                Want::Write => {
                    sess.write_shut || ep.session(self.id).is_none() || ep.is_writable(self.id)
                }
            };
        let waiters = match want {
            Want::Read => &mut sess.readers,
            Want::Write => &mut sess.writers,
        };
        if ready {
            if w.registered.swap(false, Ordering::Relaxed) {
                waiters.remove(w.key);
            }
            return Poll::Ready(());
        }
        w.registered.store(true, Ordering::Relaxed);
        match want {
            Want::Read => waiters.register(w.key, cx.waker()),
            Want::Write => self.wait_for_room(s, cx, w.key),
        }
        Poll::Pending
    }

    /// Waits for `want`, at most `timeout` (then `TimedOut` with `err`).
    async fn ready(&self, want: Want, timeout: Option<Duration>, err: KcpError) -> io::Result<()> {
        let mut to = Deadline::new(timeout);
        let w = Waiting {
            inner: self,
            key: waiter_key(),
            registered: AtomicBool::new(false),
        };
        poll_fn(|cx| {
            let r = self.poll_ready(cx, want, &w).map(Ok);
            to.wrap(cx, r, err)
        })
        .await
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.poll_read_into(None, buf, ReadMode::Partial) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self.poll_write_from(None, buf, WriteMode::Partial) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// The doc shared by the read sides' `readable`.
macro_rules! readiness_docs {
    () => {
        "Waits until a read would not wait: data is there, or the session ended or its \
         socket failed (which the next read reports). Holds no buffer while it waits: read \
         with `try_read` once it returns. Waits at most the read timeout \
         ([`KcpConfig::read_timeout`](crate::KcpConfig::read_timeout), \
         `set_read_timeout`), then fails with `TimedOut`. Several tasks may wait at once; cancellation-safe. Data can still be \
         gone when `try_read` runs (another reader took it): then it fails with `WouldBlock` \
         and the caller waits again."
    };
}

impl KcpStream {
    #[doc = readiness_docs!()]
    ///
    /// An echo whose task holds no buffer while it waits: the read and the reply happen in
    /// a plain function, so the buffer is not kept across an `await`.
    ///
    /// ```no_run
    /// use std::io::ErrorKind::WouldBlock;
    /// use kcp_tokio::KcpStream;
    /// use tokio::io::AsyncWriteExt;
    ///
    /// /// Reads what is there and answers it. `None` at the end of the stream, else what
    /// /// the send queue did not take.
    /// fn answer(s: &KcpStream) -> std::io::Result<Option<Vec<u8>>> {
    ///     let mut buf = [0u8; 2048];
    ///     let n = match s.try_read(&mut buf) {
    ///         Ok(0) => return Ok(None),
    ///         Ok(n) => n,
    ///         Err(e) if e.kind() == WouldBlock => return Ok(Some(Vec::new())), // taken already
    ///         Err(e) => return Err(e),
    ///     };
    ///     let sent = match s.try_write(&buf[..n]) {
    ///         Ok(k) => k,
    ///         Err(e) if e.kind() == WouldBlock => 0,
    ///         Err(e) => return Err(e),
    ///     };
    ///     Ok(Some(buf[sent..n].to_vec()))
    /// }
    ///
    /// async fn echo(mut stream: KcpStream) -> std::io::Result<()> {
    ///     loop {
    ///         stream.readable().await?;
    ///         match answer(&stream)? {
    ///             None => return Ok(()),
    ///             // The send queue was full: wait for room (the rest is small and rare).
    ///             Some(rest) if !rest.is_empty() => stream.write_all(&rest).await?,
    ///             Some(_) => {}
    ///         }
    ///     }
    /// }
    /// ```
    pub async fn readable(&self) -> io::Result<()> {
        self.inner
            .ready(Want::Read, self.read_to.timeout, KcpError::ReadTimeout)
            .await
    }

    /// Reads what is there into `buf` without waiting, as `AsyncRead` would (in message
    /// mode, part of a message that does not fit, the rest on the next reads): `Ok(n)` with
    /// `n > 0` bytes read, `Ok(0)` at the end of the stream (or for an empty `buf`), or
    /// `WouldBlock` when nothing is there (wait with [`readable`](Self::readable)). Other
    /// errors as for reads.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.try_read(buf)
    }

    /// Waits until a write would not wait: the send queue has room, or the session ended,
    /// its write side was shut down or its socket failed (which the next write reports).
    /// Waits at most the write timeout, then fails with `TimedOut`. Several tasks may wait
    /// at once; cancellation-safe.
    pub async fn writable(&self) -> io::Result<()> {
        self.inner
            .ready(Want::Write, self.write_to.timeout, KcpError::WriteTimeout)
            .await
    }

    /// Queues what the send queue takes of `buf` without waiting, as `AsyncWrite` would (in
    /// message mode one message, at most 255 segments or the send window): `Ok(n)` bytes
    /// taken, or `WouldBlock` when the queue is full (wait with [`writable`](Self::writable)).
    /// Other errors as for writes.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.try_write(buf)
    }
}

impl OwnedReadHalf {
    #[doc = readiness_docs!()]
    pub async fn readable(&self) -> io::Result<()> {
        self.inner
            .ready(Want::Read, self.read_to.timeout, KcpError::ReadTimeout)
            .await
    }

    /// See [`KcpStream::try_read`].
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.try_read(buf)
    }
}

impl OwnedWriteHalf {
    /// See [`KcpStream::writable`].
    pub async fn writable(&self) -> io::Result<()> {
        self.inner
            .ready(Want::Write, self.write_to.timeout, KcpError::WriteTimeout)
            .await
    }

    /// See [`KcpStream::try_write`].
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.try_write(buf)
    }
}
