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

/// One smux stream: `AsyncRead + AsyncWrite`. Dropping it closes it (a `FIN` follows what was
/// written).
pub struct SmuxStream {
    shared: Arc<Shared>,
    id: StreamId,
    /// `poll_shutdown` closed it.
    shut: bool,
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
        let r = s.sess.read(self.id, buf.initialize_unfilled());
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

/// The session's task: reads the byte stream into the session, writes its frames out, runs
/// its timer.
struct Driver<T> {
    shared: Arc<Shared>,
    io: Pin<Box<T>>,
    rbuf: Box<[u8]>,
    rpos: usize,
    rlen: usize,
    eof: bool,
    dec: Option<snappy::Decoder>,
    enc: Option<snappy::Encoder>,
    frame: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    flush: bool,
    sleep: Pin<Box<Sleep>>,
    armed: Option<std::time::Instant>,
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

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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
