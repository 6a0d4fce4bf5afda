//! The end of a stream: half-close (`shutdown`, waiting until what was written is
//! acknowledged), why a session ended and how a call reports it, `closed`, `abort`, and the
//! release of the session when the last handle goes (linger or discard).

use std::future::poll_fn;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use kcp_core::endpoint::CloseReason;

use super::{Inner, KcpStream, KeyGuard};
use crate::driver::{waiter_key, Shared};
use crate::error::KcpError;

impl Drop for Inner {
    fn drop(&mut self) {
        let linger = if self.aborted.load(std::sync::atomic::Ordering::Relaxed) {
            None
        } else {
            self.linger_ms
        };
        {
            let now = self.driver.now_ms();
            let mut s = self.driver.lock();
            s.release(self.id, now, linger);
            if s.timer_moved_earlier(now) {
                self.driver.poke();
            }
        }
        self.driver.transmit();
    }
}

impl Inner {
    /// Ready with why the session ended, once it has.
    fn poll_closed(&self, cx: &mut Context<'_>, key: u64) -> Poll<Result<CloseReason, KcpError>> {
        let mut s = self.driver.lock();
        let mut wake = Vec::new();
        s.dispatch(&mut wake);
        let stopped = s.stopped;
        let r = match s.sessions.get_mut(&self.id) {
            None => Poll::Ready(Ok(CloseReason::Closed)),
            Some(sess) => match (sess.ended, stopped) {
                (Some(r), _) => Poll::Ready(Ok(r)),
                (None, Some(k)) => Poll::Ready(Err(KcpError::Socket(k))),
                (None, None) => {
                    sess.rare().closers.register(key, cx.waker());
                    Poll::Pending
                }
            },
        };
        drop(s);
        for w in wake {
            w.wake();
        }
        r
    }

    /// Waits until the session ends (see [`KcpStream::closed`]).
    pub(super) async fn closed(&self) -> Result<CloseReason, KcpError> {
        let key = waiter_key();
        let _guard = KeyGuard { inner: self, key };
        poll_fn(|cx| self.poll_closed(cx, key)).await
    }

    /// The error of a session that is gone, or `Ok(())` for a read that sees end of stream.
    pub(super) fn ended(&self, s: &mut Shared, reading: bool) -> io::Result<()> {
        let mut wake = Vec::new();
        s.dispatch(&mut wake);
        for w in wake {
            w.wake();
        }
        let stopped = s.stopped;
        let Some(sess) = s.sessions.get(&self.id) else {
            return Err(KcpError::Ended(CloseReason::Closed).into());
        };
        match sess.ended {
            // After our own shutdown, a session whose peer fell silent simply ends.
            Some(CloseReason::IdleTimeout) if reading && sess.write_shut => Ok(()),
            Some(r) => Err(KcpError::Ended(r).into()),
            None => match stopped {
                Some(k) => Err(KcpError::Socket(k).into()),
                None => Err(KcpError::Ended(CloseReason::Closed).into()),
            },
        }
    }

    /// Half-close: stops the write side at once, then waits until everything written was
    /// acknowledged (bounded by `timeout_ms` from the first call).
    pub(super) fn poll_shutdown(
        &self,
        cx: &mut Context<'_>,
        key: u64,
        timeout_ms: u32,
        sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    ) -> Poll<io::Result<()>> {
        let now = self.driver.now_ms();
        let mut s = self.driver.lock();
        let Shared { ep, sessions, .. } = &mut *s;
        let Some(sess) = sessions.get_mut(&self.id) else {
            return Poll::Ready(Err(KcpError::Ended(CloseReason::Closed).into()));
        };
        if sess.shutdown_done {
            return Poll::Ready(Ok(()));
        }
        if ep.session(self.id).is_none() {
            sess.write_shut = true;
            return Poll::Ready(match self.ended(&mut s, false) {
                Err(e) => Err(e),
                Ok(_) => Ok(()),
            });
        }
        let deadline = match sess.rare().shutdown_deadline {
            Some(d) => d,
            None => {
                sess.write_shut = true;
                let _ = ep.shutdown_write(self.id);
                let d = now + u64::from(timeout_ms);
                sess.rare().shutdown_deadline = Some(d);
                d
            }
        };
        if ep.is_flushed(self.id) {
            sess.shutdown_done = true;
            sess.rare().flushers.remove(key);
            *sleep = None;
            drop(s);
            self.driver.transmit();
            return Poll::Ready(Ok(()));
        }
        if now >= deadline {
            sess.rare().flushers.remove(key);
            *sleep = None;
            return Poll::Ready(Err(KcpError::ShutdownTimeout.into()));
        }
        sess.rare().flushers.register(key, cx.waker());
        s.watch_flush(self.id);
        self.after_call(s);
        let at = self.driver.instant_at(deadline);
        let sl = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
        if sl.as_mut().poll(cx).is_ready() {
            // The deadline passed: the next poll reports it (or success, if just flushed).
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl KcpStream {
    /// Ends the session at once, discarding what was not yet delivered (a TCP reset, without
    /// telling the peer: KCP has no such message). The peer still gets the ACKs it is owed.
    pub fn abort(self) {
        self.inner
            .aborted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resolves when the session ends, with why: the peer fell silent for the idle timeout
    /// ([`CloseReason::IdleTimeout`]), data went unacknowledged (`DeadLink`), ... Cancel-safe;
    /// any number of tasks may wait. A socket failure resolves it with
    /// [`KcpError::Socket`]. Dropping the stream is not an end it can see (the future
    /// borrows the stream): a dropped stream's session lingers to deliver what was written,
    /// and [`KcpConnector::wait_idle`](crate::KcpConnector::wait_idle) or
    /// [`KcpListener::wait_idle`](crate::KcpListener::wait_idle) wait for that.
    ///
    /// ```no_run
    /// # async fn demo(stream: kcp_tokio::KcpStream) {
    /// match stream.closed().await {
    ///     Ok(reason) => eprintln!("session ended: {reason}"),
    ///     Err(e) => eprintln!("socket failed: {e}"),
    /// }
    /// # }
    /// ```
    pub async fn closed(&self) -> Result<CloseReason, KcpError> {
        self.inner.closed().await
    }
}
