//! Copying a tunneled connection both ways without holding a buffer while it is idle.
//!
//! A tunnel server or client holds one pipe per TCP connection, and most of a busy tunnel's
//! connections wait most of the time. Each direction therefore reads into a buffer on the
//! stack of the poll that found data, and writes from it in the same poll. Only what the
//! destination did not take at once moves to the heap, into a buffer the direction keeps while
//! its data keeps coming and gives back as soon as its source has nothing more to read. A
//! connection that waits holds no buffer at all, where a pair of `BufReader`s would hold 64 KiB
//! for its whole life.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes read from a source per read: the stack buffer of one poll.
const CHUNK: usize = 32 * 1024;
/// Reads per direction per poll before the pipe lets other tasks run (a source that always
/// has data, and a destination that always takes it, would otherwise keep the worker).
const ROUNDS: usize = 16;

/// Copies both ways until either direction ends (end of stream or an error), then shuts both
/// ends down: kcptun has no half-close, so the end of either direction closes the TCP
/// connection and the smux stream. Returns the error that ended it, if any.
pub(super) async fn pipe<A, B>(mut a: A, mut b: B) -> Option<io::Error>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let r = Pipe {
        a: &mut a,
        b: &mut b,
        ab: Leftover::default(),
        ba: Leftover::default(),
    }
    .await;
    let _ = a.shutdown().await;
    let _ = b.shutdown().await;
    r.err()
}

/// Bytes a direction read and its destination has not taken yet, written before anything
/// more is read (so the order holds).
#[derive(Default)]
struct Leftover {
    buf: Vec<u8>,
    /// How much of `buf` is written.
    at: usize,
}

impl Leftover {
    fn is_empty(&self) -> bool {
        self.at == self.buf.len()
    }

    /// Writes what is left to `dst`; `Ready(Ok)` once it is all written.
    fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let rest = self.buf.get(self.at..).unwrap_or(&[]);
            let n = match Pin::new(&mut *dst).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            self.at += n.min(rest.len());
        }
        // Kept (its capacity) while the direction is busy; given back when it goes idle.
        self.buf.clear();
        self.at = 0;
        Poll::Ready(Ok(()))
    }

    /// Gives the buffer's memory back (the direction has nothing to read now).
    fn release(&mut self) {
        if self.is_empty() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.at = 0;
        }
    }
}

/// Where a direction's poll left it.
#[derive(Debug, PartialEq, Eq)]
enum Dir {
    /// It waits for its source or its destination (a waker is registered).
    Waiting,
    /// It did [`ROUNDS`] reads and has more to do.
    Busy,
    /// Its source ended, and everything the source sent before is written.
    Ended,
}

/// Moves what `src` has now to `dst`.
fn poll_direction<R, W>(
    cx: &mut Context<'_>,
    src: &mut R,
    dst: &mut W,
    left: &mut Leftover,
) -> io::Result<Dir>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    for _ in 0..ROUNDS {
        match left.poll_drain(cx, dst) {
            Poll::Ready(r) => r?,
            Poll::Pending => return Ok(Dir::Waiting),
        }
        // Not initialized: a source fills what it reports, and only that is read back.
        let mut stack = [MaybeUninit::<u8>::uninit(); CHUNK];
        let mut rb = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut *src).poll_read(cx, &mut rb) {
            Poll::Ready(r) => r?,
            Poll::Pending => {
                left.release();
                return Ok(Dir::Waiting);
            }
        }
        let data = rb.filled();
        if data.is_empty() {
            // End of stream; `left` was empty, so all before it is written.
            return Ok(Dir::Ended);
        }
        let mut written = 0;
        while let Some(rest) = data.get(written..).filter(|r| !r.is_empty()) {
            match Pin::new(&mut *dst).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => written += n.min(rest.len()),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    // The destination is full: what it did not take waits on the heap,
                    // and the direction waits for the destination (its waker is
                    // registered).
                    left.buf.clear();
                    left.buf.extend_from_slice(rest);
                    left.at = 0;
                    return Ok(Dir::Waiting);
                }
            }
        }
    }
    Ok(Dir::Busy)
}

/// Both directions of a pipe, polled together in one task.
struct Pipe<'a, A, B> {
    a: &'a mut A,
    b: &'a mut B,
    /// From `a` to `b`.
    ab: Leftover,
    /// From `b` to `a`.
    ba: Leftover,
}

impl<A, B> Future for Pipe<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    /// `Ok` when a direction's source ended, else the error that ended the pipe.
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let ab = poll_direction(cx, this.a, this.b, &mut this.ab)?;
        if ab == Dir::Ended {
            return Poll::Ready(Ok(()));
        }
        let ba = poll_direction(cx, this.b, this.a, &mut this.ba)?;
        if ba == Dir::Ended {
            return Poll::Ready(Ok(()));
        }
        if ab == Dir::Busy || ba == Dir::Busy {
            // More to do: run again after the other tasks.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
