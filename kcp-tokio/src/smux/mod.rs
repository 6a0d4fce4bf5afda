//! smux sessions over any `AsyncRead + AsyncWrite` (a [`KcpStream`](crate::KcpStream) in
//! practice), handing out streams that are `AsyncRead + AsyncWrite` themselves: the Tokio face
//! of [`kcp_mio::smux`], with kcptun's optional snappy framing ([`kcp_mio::snappy`]) between
//! smux and the byte stream.
//!
//! Every protocol decision (frames, stream ids, keepalive `NOP`s, the dead-peer timeout,
//! version 1's session-wide receive bucket, version 2's per-stream windows) is the sans-IO
//! [`Session`]'s; this layer moves bytes, wakes tasks and runs the
//! session's timer. Each session has one task (spawned by [`SmuxSession::new`], so a Tokio
//! runtime must be running), whatever the number of streams; streams talk to it through the
//! shared session state and wakers.
//!
//! smux has no half-close: [`AsyncWrite::poll_shutdown`] on a stream closes the whole stream
//! (what was written still goes out, then a `FIN`), and dropping a stream does the same. A
//! write hands its bytes to the session (up to its per-stream send buffer); `poll_flush` does
//! not wait for them, the session task sends them as soon as it runs.
//!
//! Memory: a session holds a 16 KiB read buffer, and while it sends, up to 64 KiB of framed
//! output plus one frame; the rest is the sans-IO session's, bounded by its configuration.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kcp_tokio::smux::{Framing, SmuxConfig, SmuxSession};
//! use kcp_tokio::{Config, KcpConfig, KcpStream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let kcp = KcpStream::connect("127.0.0.1:29900", KcpConfig::new(Config::fast())).await?;
//! let session = SmuxSession::client(kcp, SmuxConfig::default(), Framing::Snappy)?;
//! let mut stream = session.open()?;
//! stream.write_all(b"hello").await?;
//! let mut buf = [0u8; 5];
//! stream.read_exact(&mut buf).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use kcp_mio::smux::{Error as SmuxError, Event, Session};
use kcp_mio::snappy;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

mod driver;
mod stream;

use driver::Driver;
pub use stream::SmuxStream;

pub use kcp_mio::smux::{
    CloseReason, Config as SmuxConfig, Keepalive, ProtocolError, Role, Stats as SmuxStats,
    StreamId, Version,
};

/// What sits between smux and the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// smux frames as they are (kcptun's `--nocomp`).
    Plain,
    /// The snappy framing format, one chunk per smux frame (kcptun's default).
    Snappy,
}

/// Why a session ended, as [`SmuxSession::end`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The smux state machine ended the session (local close, keepalive timeout, a protocol
    /// error of the peer, end of the byte stream).
    Smux(CloseReason),
    /// The byte stream failed (its error), or carried malformed snappy framing.
    Transport(String),
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionEnd::Smux(r) => r.fmt(f),
            SessionEnd::Transport(e) => write!(f, "smux transport: {e}"),
        }
    }
}

/// The most framed output buffered before the session task writes it (frames are pulled from
/// the session only below this).
const IO_CHUNK: usize = 64 * 1024;
/// Bytes read from the byte stream at once (the one buffer a session always holds).
const READ_CHUNK: usize = 16 * 1024;

struct State {
    sess: Session,
    readers: HashMap<u32, Waker>,
    writers: HashMap<u32, Waker>,
    acceptor: Option<Waker>,
    driver: Option<Waker>,
    /// Tasks in [`SmuxSession::closed`].
    end_waiters: Vec<Waker>,
    /// Live handles: [`SmuxSession`] clones and streams. At zero the session closes.
    handles: usize,
    end: Option<SessionEnd>,
}

impl State {
    /// Drains the session's events into wakeups.
    fn dispatch(&mut self) {
        while let Some(ev) = self.sess.poll_event() {
            match ev {
                Event::Incoming => wake(&mut self.acceptor),
                Event::Readable(id) | Event::Finished(id) => {
                    if let Some(w) = self.readers.remove(&id.get()) {
                        w.wake();
                    }
                }
                Event::Writable(id) => {
                    if let Some(w) = self.writers.remove(&id.get()) {
                        w.wake();
                    }
                }
                Event::InputResumed => wake(&mut self.driver),
                Event::Closed(r) => {
                    if self.end.is_none() {
                        self.end = Some(SessionEnd::Smux(r));
                    }
                    for (_, w) in self.readers.drain().chain(self.writers.drain()) {
                        w.wake();
                    }
                    wake(&mut self.acceptor);
                    wake(&mut self.driver);
                    for w in self.end_waiters.drain(..) {
                        w.wake();
                    }
                }
            }
        }
    }

    /// After a stream operation: events to wakeups, and the session task woken if it has
    /// frames to send.
    fn after_op(&mut self) {
        self.dispatch();
        if self.sess.has_transmit() {
            wake(&mut self.driver);
        }
    }

    /// Ends the session because the byte stream failed.
    fn fail(&mut self, e: String) {
        if self.end.is_none() {
            self.end = Some(SessionEnd::Transport(e));
        }
        self.sess.close();
        self.dispatch();
    }

    fn release(&mut self) {
        self.handles -= 1;
        if self.handles == 0 {
            self.sess.close();
            self.dispatch();
            wake(&mut self.driver);
        }
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn end_error(end: &Option<SessionEnd>, r: CloseReason) -> io::Error {
    match end {
        Some(SessionEnd::Transport(e)) => io::Error::new(io::ErrorKind::BrokenPipe, e.clone()),
        _ => SmuxError::Session(r).into(),
    }
}

/// One smux session: open and accept streams. Clones are handles to the same session; the
/// session closes when every handle and every stream is dropped, or on [`SmuxSession::close`].
pub struct SmuxSession {
    shared: Arc<Shared>,
}

impl fmt::Debug for SmuxSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.lock();
        f.debug_struct("SmuxSession")
            .field("streams", &s.sess.num_streams())
            .field("end", &s.end)
            .finish()
    }
}

impl Clone for SmuxSession {
    fn clone(&self) -> Self {
        self.shared.lock().handles += 1;
        SmuxSession {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for SmuxSession {
    fn drop(&mut self) {
        self.shared.lock().release();
    }
}

impl SmuxSession {
    /// A session over `io` in `role`, with its task spawned on the current Tokio runtime.
    /// Fails if `config` is invalid ([`SmuxConfig::validate`]).
    pub fn new<T>(io: T, config: SmuxConfig, role: Role, framing: Framing) -> io::Result<Self>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let sess = Session::new(config, role, Instant::now().into_std())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                sess,
                readers: HashMap::new(),
                writers: HashMap::new(),
                acceptor: None,
                driver: None,
                end_waiters: Vec::new(),
                handles: 1,
                end: None,
            }),
        });
        let mut driver = Driver {
            shared: shared.clone(),
            io: Box::pin(io),
            rbuf: vec![0; READ_CHUNK].into_boxed_slice(),
            rpos: 0,
            rlen: 0,
            eof: false,
            dec: (framing == Framing::Snappy).then(snappy::Decoder::new),
            enc: (framing == Framing::Snappy).then(snappy::Encoder::new),
            frame: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            flush: false,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
        };
        tokio::spawn(async move { poll_fn(|cx| driver.poll(cx)).await });
        Ok(SmuxSession { shared })
    }

    /// A client session (opens odd stream ids, as kcptun's client).
    pub fn client<T>(io: T, config: SmuxConfig, framing: Framing) -> io::Result<Self>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        SmuxSession::new(io, config, Role::Client, framing)
    }

    /// A server session (opens even stream ids, as kcptun's server).
    pub fn server<T>(io: T, config: SmuxConfig, framing: Framing) -> io::Result<Self>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        SmuxSession::new(io, config, Role::Server, framing)
    }

    /// Opens a stream (its `SYN` goes out with the next frames).
    pub fn open(&self) -> io::Result<SmuxStream> {
        let mut s = self.shared.lock();
        let id = match s.sess.open() {
            Ok(id) => id,
            Err(SmuxError::Session(r)) => return Err(end_error(&s.end, r)),
            Err(e) => return Err(e.into()),
        };
        s.handles += 1;
        s.after_op();
        Ok(SmuxStream {
            shared: self.shared.clone(),
            id,
            shut: false,
        })
    }

    /// The next stream the peer opened; an error once the session has ended.
    pub async fn accept(&self) -> io::Result<SmuxStream> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next stream the peer opened.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<SmuxStream>> {
        let mut s = self.shared.lock();
        if let Some(id) = s.sess.accept() {
            s.handles += 1;
            s.after_op();
            return Poll::Ready(Ok(SmuxStream {
                shared: self.shared.clone(),
                id,
                shut: false,
            }));
        }
        if let Some(r) = s.sess.close_reason() {
            return Poll::Ready(Err(end_error(&s.end, r)));
        }
        register(&mut s.acceptor, cx);
        Poll::Pending
    }

    /// Ends the session now (as Go's `Session.Close`: no `FIN`s; every stream fails).
    pub fn close(&self) {
        let mut s = self.shared.lock();
        s.sess.close();
        s.dispatch();
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().sess.close_reason().is_some()
    }

    /// Why the session ended, `None` while it lives.
    pub fn end(&self) -> Option<SessionEnd> {
        self.shared.lock().end.clone()
    }

    /// Waits until the session has ended and says why.
    pub async fn closed(&self) -> SessionEnd {
        poll_fn(|cx| {
            let mut s = self.shared.lock();
            match &s.end {
                Some(e) => Poll::Ready(e.clone()),
                None => {
                    if !s.end_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        s.end_waiters.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Streams open now.
    pub fn num_streams(&self) -> usize {
        self.shared.lock().sess.num_streams()
    }

    /// The session's counters.
    pub fn stats(&self) -> SmuxStats {
        self.shared.lock().sess.stats()
    }
}
