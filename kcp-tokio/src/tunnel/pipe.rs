//! Copying a tunneled connection both ways without holding a buffer while it is idle.
//!
//! A tunnel server or client holds one pipe per TCP connection, and most of a busy tunnel's
//! connections wait most of the time. Each direction therefore reads into a buffer on the
//! stack of the poll that found data, and writes from it in the same poll. Only when the
//! destination leaves part of a read behind does the direction take a heap buffer: the rest
//! waits there, and while the data keeps coming the direction reads straight into it (a bulk
//! transfer copies each byte once, as through a `BufReader`). The buffer goes back as soon as
//! the source has nothing to read. A connection that waits holds no buffer at all, where a
//! pair of `BufReader`s would hold 64 KiB for its whole life.

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
    let r = Pipe::new(&mut a, &mut b).await;
    let _ = a.shutdown().await;
    let _ = b.shutdown().await;
    r.err()
}

/// A direction's heap buffer: empty while the direction waits for its source; made when its
/// destination first leaves part of a read behind, and read into directly from then on (no
/// copy through the stack) until the source has nothing to read.
#[derive(Default)]
struct Leftover {
    /// [`CHUNK`] bytes while the direction is busy, none while it waits.
    buf: Vec<u8>,
    /// `buf[at..end]` is read and not yet written; written before anything more is read,
    /// so the order holds.
    at: usize,
    end: usize,
}

impl Leftover {
    fn is_empty(&self) -> bool {
        self.at == self.end
    }

    /// Writes what is left to `dst`; `Ready(Ok)` once it is all written.
    fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
    ) -> Poll<io::Result<()>> {
        while let Some(rest) = self.buf.get(self.at..self.end).filter(|r| !r.is_empty()) {
            match Pin::new(&mut *dst).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.at += n.min(rest.len()),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        (self.at, self.end) = (0, 0);
        Poll::Ready(Ok(()))
    }

    /// Keeps `rest`, which the destination did not take.
    fn keep(&mut self, rest: &[u8]) {
        if self.buf.len() < CHUNK {
            self.buf = vec![0; CHUNK];
        }
        let n = rest.len().min(CHUNK);
        if let (Some(to), Some(from)) = (self.buf.get_mut(..n), rest.get(..n)) {
            to.copy_from_slice(from);
        }
        (self.at, self.end) = (0, n);
    }

    /// Gives the buffer's memory back (the direction has nothing to read now).
    fn release(&mut self) {
        if self.is_empty() && !self.buf.is_empty() {
            self.buf = Vec::new();
            (self.at, self.end) = (0, 0);
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
        if !left.buf.is_empty() {
            // Busy: read into the heap buffer, and write from it at the top of the loop.
            let mut rb = ReadBuf::new(&mut left.buf);
            match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    left.release();
                    return Ok(Dir::Waiting);
                }
            }
            let n = rb.filled().len();
            if n == 0 {
                return Ok(Dir::Ended);
            }
            (left.at, left.end) = (0, n);
            continue;
        }
        // Not initialized: a source fills what it reports, and only that is read back.
        let mut stack = [MaybeUninit::<u8>::uninit(); CHUNK];
        let mut rb = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut *src).poll_read(cx, &mut rb) {
            Poll::Ready(r) => r?,
            Poll::Pending => return Ok(Dir::Waiting),
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
                    // The destination is full: what it did not take waits on the heap, and
                    // the direction waits for the destination (its waker is registered).
                    left.keep(rest);
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

impl<'a, A, B> Pipe<'a, A, B> {
    fn new(a: &'a mut A, b: &'a mut B) -> Self {
        Pipe {
            a,
            b,
            ab: Leftover::default(),
            ba: Leftover::default(),
        }
    }
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
