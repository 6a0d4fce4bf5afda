//! [`Endpoint`]: every KCP session of one UDP socket, driven from the user's `mio::Poll`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kcp_core::endpoint::{Endpoint as Core, EndpointError, EndpointStats};
use kcp_core::{Millis, RecvError, SendError, Session, SessionStats, Stats};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use socket2::SockRef;

use crate::stack::KcpConfig;
use crate::udp::{self, Receiver, Sender, UdpStats};
use crate::{Event, SessionId};

/// `recvmmsg` calls per readable event before the endpoint lets timers and the application
/// have their turn (it then asks for a zero timeout and reads on in `handle_timeout`).
const RECV_CALLS: usize = 4;

/// Counters of the work the endpoint did, for checking that a loop iteration costs what the
/// traffic costs and nothing per idle session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Work {
    /// `handle_event` calls for this endpoint's token.
    pub events: u64,
    /// `handle_timeout` calls.
    pub timeouts: u64,
    /// Datagrams handed to kcp-core.
    pub datagrams_in: u64,
    /// Calls of kcp-core's `poll_transmit_strided`: one per session with something to send
    /// (per batch of its datagrams), plus one per flush to learn that nothing is left.
    pub transmit_polls: u64,
    /// Readiness events handed to the application.
    pub app_events: u64,
    /// Receive turns that read datagrams (a turn stopped at its bound of system calls with
    /// datagrams left goes on in the next loop iteration, without a wait, and counts once);
    /// with a receive hold, one per hold.
    pub receive_turns: u64,
}

/// A session's counters and state.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The peer.
    pub remote: SocketAddr,
    /// The conversation id.
    pub conv: u32,
    /// The engine's ARQ counters.
    pub kcp: Stats,
    /// Packet-level counters.
    pub session: SessionStats,
    /// Smoothed RTT (ms).
    pub srtt_ms: i32,
    /// Current retransmission timeout (ms).
    pub rto_ms: u32,
    /// Largest payload of one segment: in message mode, the largest message kcp-go peers
    /// keep whole.
    pub mss: usize,
}

/// Every KCP session of one UDP socket, sans threads and sans async: the socket is registered
/// with the user's [`mio::Poll`] under the user's [`Token`]; the user calls
/// [`handle_event`](Self::handle_event) for the events it gets,
/// [`handle_timeout`](Self::handle_timeout) each iteration, and passes
/// [`poll_timeout`](Self::poll_timeout) to `Poll::poll`. What changed is queued as
/// [`Event`]s ([`poll_event`](Self::poll_event)): sessions peers opened, sessions that became
/// readable or writable, sessions that closed with their reason. The endpoint never walks its
/// sessions: a loop iteration costs what the traffic of that iteration costs.
///
/// Readiness is edge-triggered, like mio's: after `Readable(id)`, read until `recv` returns
/// `WouldBlock`; after `send` returned `WouldBlock`, a `Writable(id)` follows when room opens.
///
/// Application calls ([`send`](Self::send), [`recv`](Self::recv), [`connect`](Self::connect),
/// [`close`](Self::close)...) change state only; what they make the sessions send leaves in
/// one batch when the loop next calls `poll_timeout` (or [`flush`](Self::flush)), so one
/// iteration's replies to many sessions cost one `sendmmsg`.
///
/// Sends respect the socket's writability: what the kernel refuses waits in a bounded backlog
/// while the endpoint asks mio for `WRITABLE` too, and goes out on the writable event;
/// beyond the bound, datagrams are dropped and counted ([`udp_stats`](Self::udp_stats)), and
/// KCP retransmits them.
///
/// With a receive hold ([`KcpConfig::receive_hold`]), after a receive turn that read
/// datagrams the endpoint takes its socket out of the poll's read interest for the hold, and
/// [`handle_timeout`](Self::handle_timeout) reads what arrived meanwhile once the hold is over
/// ([`poll_timeout`](Self::poll_timeout) counts the hold's end as a deadline): a server with
/// thousands of sessions then wakes once per hold instead of once per datagram. Session
/// timers that fall due during a hold run at its end too, so the loop does not wake between
/// holds for them either: a timer is late by at most the hold, as a datagram is.
pub struct Endpoint {
    socket: UdpSocket,
    registry: Registry,
    token: Token,
    writable_interest: bool,
    /// What the socket is registered for (`None`: not registered, during a hold).
    registered: Option<Interest>,
    /// The receive hold.
    hold: Option<Duration>,
    /// When the running hold ends.
    hold_until: Option<Instant>,
    core: Core<SocketAddr>,
    rx: Receiver,
    tx: Sender,
    start: Instant,
    /// Reading stopped before the socket said `WouldBlock`.
    rx_more: bool,
    events: VecDeque<Event>,
    shutdown_ms: u32,
    error: Option<io::Error>,
    work: Work,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.socket.local_addr().ok())
            .field("token", &self.token)
            .field("sessions", &self.core.len())
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

/// Maps an endpoint error to the `io::Error` an application call returns. `WouldBlock` and
/// `NotConnected` carry no message, so they do not allocate.
fn io_error(e: EndpointError) -> io::Error {
    match e {
        EndpointError::Send(SendError::Full) | EndpointError::Recv(RecvError::WouldBlock) => {
            io::ErrorKind::WouldBlock.into()
        }
        EndpointError::UnknownSession => io::ErrorKind::NotConnected.into(),
        EndpointError::WriteClosed => io::ErrorKind::BrokenPipe.into(),
        EndpointError::Duplicate => io::Error::new(io::ErrorKind::AlreadyExists, e.to_string()),
        EndpointError::Recv(_) | EndpointError::Send(_) | EndpointError::Config(_) => {
            io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
        }
        _ => io::Error::other(e.to_string()),
    }
}

impl Endpoint {
    /// Binds a UDP socket at `addr` that accepts sessions peers open (a server) and can also
    /// open its own ([`connect`](Self::connect)); registers it with `registry` under `token`.
    pub fn listen(
        addr: SocketAddr,
        config: &KcpConfig,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Endpoint> {
        Endpoint::from_socket(UdpSocket::bind(addr)?, config, true, registry, token)
    }

    /// Binds a UDP socket at `addr` (for example `0.0.0.0:0`) that only opens sessions
    /// ([`connect`](Self::connect)); datagrams of unknown conversations are dropped.
    pub fn client(
        addr: SocketAddr,
        config: &KcpConfig,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Endpoint> {
        Endpoint::from_socket(UdpSocket::bind(addr)?, config, false, registry, token)
    }

    /// Drives an existing non-blocking socket (kcp-go's `ServeConn` with `accept`, `NewConn`
    /// without). A listening socket asks the kernel for receive offload (GRO).
    pub fn from_socket(
        mut socket: UdpSocket,
        config: &KcpConfig,
        accept: bool,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Endpoint> {
        // Checks the whole configuration (one codec stack built) before the socket is touched.
        let ep = config.endpoint_config(accept)?;
        config.apply_socket(SockRef::from(&socket))?;
        let core = Core::new(ep)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let registry = registry.try_clone()?;
        registry.register(&mut socket, token, Interest::READABLE)?;
        let rx = Receiver::new(SockRef::from(&socket), accept);
        Ok(Endpoint {
            rx,
            tx: Sender::new(config.send_backlog_limit()),
            socket,
            registry,
            token,
            writable_interest: false,
            registered: Some(Interest::READABLE),
            hold: config.receive_hold_time().filter(|d| !d.is_zero()),
            hold_until: None,
            core,
            start: Instant::now(),
            rx_more: false,
            events: VecDeque::new(),
            shutdown_ms: ms(config.timeouts().shutdown),
            error: None,
            work: Work::default(),
        })
    }

    /// The socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The token the socket is registered under.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The engine clock: milliseconds since the endpoint was made, and that count as the
    /// wrapping `u32` kcp-core takes.
    fn clock(&self) -> (u64, Millis) {
        let t = self.start.elapsed().as_millis() as u64;
        (t, Millis(t as u32))
    }

    fn now(&self) -> Millis {
        self.clock().1
    }

    // ---- the loop ---------------------------------------------------------------------

    /// How long `Poll::poll` may sleep: until the earliest session deadline or the end of a
    /// receive hold, zero if events wait for the application or the socket has more to read,
    /// `None` if nothing needs the clock. Sends first what application calls produced since
    /// the last flush.
    pub fn poll_timeout(&mut self) -> Option<Duration> {
        self.flush();
        if !self.events.is_empty() || self.rx_more || self.error.is_some() {
            return Some(Duration::ZERO);
        }
        let (now64, now) = self.clock();
        // In 64 bits, on the exact millisecond boundary of the engine clock (not "now + n ms",
        // which would drift late by the sub-millisecond part).
        let session = self
            .core
            .poll_timeout()
            .map(|at| self.start + Duration::from_millis(now64 + at.since(now).max(0) as u64));
        // Session timers that fall due during a hold wait for its end: the hold already
        // trades up to its length of latency, and one wake-up then serves the timers and the
        // read. Otherwise a server's sessions, whose deadlines fall on almost every
        // millisecond, woke the loop between holds about as often as the holds did.
        let deadline = self.hold_until.or(session)?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// Handles one event from `Poll::poll`. Events for other tokens are ignored, so a loop
    /// may pass every event of its `Events` to every endpoint. Errors are the socket's
    /// (not a peer's): the endpoint cannot go on.
    pub fn handle_event(&mut self, event: &mio::event::Event) -> io::Result<()> {
        if event.token() != self.token {
            return Ok(());
        }
        self.work.events += 1;
        if event.is_writable() {
            self.on_writable();
        }
        // During a hold, reading waits for its end (an event the poll reported before the
        // hold began, or a writable one carrying readability).
        if (event.is_readable() || event.is_error() || event.is_read_closed())
            && self.hold_until.is_none()
        {
            self.receive()?;
        }
        self.flush();
        self.take_error()
    }

    /// Runs the session timers that are due (cheap when none is), reads on if a readable
    /// event was cut short, and sends what is due. Call it once per loop iteration, after
    /// the events.
    pub fn handle_timeout(&mut self) -> io::Result<()> {
        self.work.timeouts += 1;
        let now = self.now();
        self.core.handle_timeout(now);
        if self.hold_until.is_some_and(|t| Instant::now() >= t) {
            // The hold is over: read what came meanwhile (a turn that reads datagrams starts
            // the next hold); nothing came: watch the socket again.
            self.hold_until = None;
            self.receive()?;
            if self.hold_until.is_none() {
                self.update_interest(false);
            }
        } else if self.rx_more && self.hold_until.is_none() {
            self.receive()?;
        }
        self.flush();
        self.take_error()
    }

    /// The next readiness event: a session peers opened ([`Event::Incoming`], then
    /// [`accept`](Self::accept)), data readable, room to write, a session closed and why.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_some() {
            self.work.app_events += 1;
        }
        e
    }

    /// Sends what the sessions have to send now (`poll_timeout` does this too) and collects
    /// their events.
    pub fn flush(&mut self) {
        let now = self.now();
        let core = &mut self.core;
        let work = &mut self.work;
        let r = self
            .tx
            .send_from(SockRef::from(&self.socket), |buf, stride, lens| {
                work.transmit_polls += 1;
                core.poll_transmit_strided(now, buf, stride, lens)
            });
        if r.is_err() && !self.writable_interest {
            // The kernel refused some: they wait in the backlog until the socket is writable.
            self.set_writable_interest(true);
        }
        while let Some(e) = self.core.poll_event() {
            if let Event::Closed(id, reason) = e {
                crate::diag::session_closed(id, reason);
            }
            self.events.push_back(e);
        }
    }

    fn on_writable(&mut self) {
        match self.tx.send_backlog(SockRef::from(&self.socket)) {
            Ok(()) => {
                if self.writable_interest {
                    self.set_writable_interest(false);
                }
            }
            // Still full: re-arm, so the kernel reports the next moment it is writable even
            // if that moment came between the refusal and now (the event is edge-triggered).
            Err(_) => self.set_writable_interest(true),
        }
    }

    /// Turning the interest on always registers anew, also when it was on: that re-arms the
    /// edge-triggered event after a refused retry.
    fn set_writable_interest(&mut self, on: bool) {
        self.writable_interest = on;
        self.update_interest(on);
    }

    /// Registers the socket for what the endpoint waits for now: reading unless a receive
    /// hold runs, writing while datagrams wait in the backlog; neither: not registered.
    /// `rearm`: register even if the interest is unchanged.
    fn update_interest(&mut self, rearm: bool) {
        let read = self.hold_until.is_none().then_some(Interest::READABLE);
        let write = self.writable_interest.then_some(Interest::WRITABLE);
        let want = read.into_iter().chain(write).reduce(|a, b| a | b);
        if want == self.registered && !(rearm && want.is_some()) {
            return;
        }
        let r = match (self.registered, want) {
            (None, Some(i)) => self.registry.register(&mut self.socket, self.token, i),
            (Some(_), Some(i)) => self.registry.reregister(&mut self.socket, self.token, i),
            (Some(_), None) => self.registry.deregister(&mut self.socket),
            (None, None) => Ok(()),
        };
        match r {
            Ok(()) => self.registered = want,
            Err(e) => self.error = Some(e),
        }
    }

    fn take_error(&mut self) -> io::Result<()> {
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads what the socket has, a bounded number of system calls, and hands every datagram
    /// to the sessions.
    fn receive(&mut self) -> io::Result<()> {
        let now = self.now();
        let before = self.work.datagrams_in;
        let fresh = !self.rx_more;
        for _ in 0..RECV_CALLS {
            match self.rx.recv(SockRef::from(&self.socket)) {
                Ok(_) => {
                    let core = &mut self.core;
                    let work = &mut self.work;
                    self.rx.for_each(|from, d| {
                        work.datagrams_in += 1;
                        // Rejected datagrams are counted in the endpoint's stats.
                        let r = core.handle_datagram(now, from, d);
                        crate::diag::datagram(from, &r);
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.rx_more = false;
                    self.after_turn(before, fresh);
                    return Ok(());
                }
                // An ICMP error about some peer: not the socket's fault.
                Err(e) if udp::is_transient(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.rx_more = true;
        self.after_turn(before, fresh);
        Ok(())
    }

    /// Counts a receive turn that read datagrams (`fresh`: not the rest of a turn cut short)
    /// and, with a hold, starts one once the socket is drained (it leaves the read interest
    /// until `handle_timeout` sees the hold end).
    fn after_turn(&mut self, before: u64, fresh: bool) {
        if fresh {
            if self.work.datagrams_in == before {
                // Woken for nothing: no turn, no hold.
                return;
            }
            self.work.receive_turns += 1;
        }
        // A turn cut short by the per-turn bound reads on in `handle_timeout` first.
        if let (Some(h), false) = (self.hold, self.rx_more) {
            self.hold_until = Some(Instant::now() + h);
            self.update_interest(false);
        }
    }

    // ---- sessions ---------------------------------------------------------------------

    /// The next session a peer opened, in arrival order.
    pub fn accept(&mut self) -> Option<SessionId> {
        let id = self.core.accept()?;
        if let Some(peer) = self.core.remote(id) {
            crate::diag::session_opened(id, peer, true);
        }
        Some(id)
    }

    /// Opens a session to `addr` with a random conversation id (kcp-go's `Dial`). No packet
    /// leaves until the first `send`: KCP has no handshake. Several sessions may share the
    /// endpoint's socket, told apart by conversation id.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<SessionId> {
        let mut last = None;
        for _ in 0..8 {
            match self.connect_with_conv(addr, crate::stack::random_conv()?) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                r => return r,
            }
        }
        Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
    }

    /// Opens a session to `addr` with conversation id `conv` (kcp-go's `NewConn3`).
    pub fn connect_with_conv(&mut self, addr: SocketAddr, conv: u32) -> io::Result<SessionId> {
        let now = self.now();
        let id = self.core.connect(now, addr, conv).map_err(io_error)?;
        crate::diag::session_opened(id, addr, false);
        Ok(id)
    }

    /// Queues data on a session. Stream mode: takes what fits (at least one byte) and returns
    /// how much; message mode: the whole message (at most 255 segments) or nothing.
    /// `WouldBlock` when the send queue is full (a [`Event::Writable`] follows);
    /// `BrokenPipe` after [`shutdown_write`](Self::shutdown_write); `NotConnected` for a
    /// session that ended. An empty `data` returns 0.
    pub fn send(&mut self, id: SessionId, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.core.send(id, data).map_err(io_error)
    }

    /// Reads from a session: stream mode, up to `buf.len()` bytes; message mode, one whole
    /// message (`InvalidInput` if it does not fit, nothing consumed: see
    /// [`peek_size`](Self::peek_size)). `WouldBlock` when nothing is ready (a
    /// [`Event::Readable`] follows); `NotConnected` for a session that ended.
    pub fn recv(&mut self, id: SessionId, buf: &mut [u8]) -> io::Result<usize> {
        self.core.recv(id, buf).map_err(io_error)
    }

    /// Size of the next message (message mode) or of the bytes ready (stream mode).
    pub fn peek_size(&self, id: SessionId) -> Option<usize> {
        self.core.session(id)?.kcp().peek_size()
    }

    /// Whether `send` would currently accept data.
    pub fn is_writable(&self, id: SessionId) -> bool {
        self.core.is_writable(id)
    }

    /// Shuts down the write side (TCP's half-close): queued data is still delivered, further
    /// sends fail with `BrokenPipe`, reading goes on. KCP has no FIN: the peer is not told.
    pub fn shutdown_write(&mut self, id: SessionId) -> io::Result<()> {
        self.core.shutdown_write(id).map_err(io_error)
    }

    /// Whether everything queued on the session was acknowledged.
    pub fn is_flushed(&self, id: SessionId) -> bool {
        self.core.is_flushed(id)
    }

    /// Closes the session once everything queued is acknowledged (an
    /// [`Event::Closed`] with [`CloseReason::Shutdown`](crate::CloseReason::Shutdown)), or at
    /// the configured shutdown timeout (`ShutdownTimeout`). Data arriving meanwhile stays
    /// readable.
    /// Not TCP's `shutdown` (that is [`shutdown_write`](Self::shutdown_write)), but kcp-core's
    /// `close_after_flush`, with the configured shutdown timeout.
    pub fn close_after_flush(&mut self, id: SessionId) -> io::Result<()> {
        self.close_after_flush_within(id, Duration::from_millis(u64::from(self.shutdown_ms)))
    }

    /// [`close_after_flush`](Self::close_after_flush) with its own timeout.
    pub fn close_after_flush_within(&mut self, id: SessionId, timeout: Duration) -> io::Result<()> {
        let now = self.now();
        self.core
            .close_after_flush(now, id, ms(timeout))
            .map_err(io_error)
    }

    /// Closes the session now, dropping what it still holds (kcp-go's `Close`): it sends the
    /// ACKs it owes once, then an [`Event::Closed`] with
    /// [`CloseReason::Closed`](crate::CloseReason::Closed) follows.
    pub fn close(&mut self, id: SessionId) -> io::Result<()> {
        self.core.close(id).map_err(io_error)
    }

    /// The peer of a live session.
    pub fn remote(&self, id: SessionId) -> Option<SocketAddr> {
        self.core.remote(id)
    }

    /// A session's counters.
    pub fn session_info(&self, id: SessionId) -> Option<SessionInfo> {
        let s = self.core.session(id)?;
        let k = s.kcp();
        Some(SessionInfo {
            remote: self.core.remote(id)?,
            conv: k.conv(),
            kcp: *k.stats(),
            session: *s.stats(),
            srtt_ms: k.srtt(),
            rto_ms: k.rto(),
            mss: k.mss(),
        })
    }

    /// A session's engine and layers, for reading.
    pub fn session(&self, id: SessionId) -> Option<&Session<'static>> {
        self.core.session(id)
    }

    /// A session's engine and layers, for settings at run time.
    pub fn session_mut(&mut self, id: SessionId) -> Option<&mut Session<'static>> {
        self.core.session_mut(id)
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.core.is_empty()
    }

    /// kcp-go's SNMP counters for the whole endpoint.
    pub fn stats(&self) -> EndpointStats {
        self.core.stats()
    }

    /// The counters the endpoint keeps itself (datagrams, admission, errors before a session
    /// took a datagram, gauges), without the sessions' own (bytes, segments,
    /// retransmissions), which read zero. [`stats`](Self::stats) walks every session, which
    /// takes milliseconds at 10,000 sessions; this does not, so poll it as often as you like.
    pub fn own_stats(&self) -> EndpointStats {
        self.core.own_stats()
    }

    /// The socket's I/O counters (system calls, backlog, drops), both directions.
    pub fn udp_stats(&self) -> UdpStats {
        let mut s = self.tx.stats();
        let r = self.rx.stats();
        s.datagrams_received = r.datagrams_received;
        s.recv_calls = r.recv_calls;
        s
    }

    /// Whether datagrams wait for the socket to become writable (the endpoint then listens
    /// for `WRITABLE` events too).
    pub fn is_send_blocked(&self) -> bool {
        self.writable_interest
    }

    /// Counters of the work done, per kind.
    pub fn work(&self) -> Work {
        self.work
    }

    /// The sans-IO endpoint underneath.
    pub fn core(&self) -> &Core<SocketAddr> {
        &self.core
    }

    /// The sending half of the socket (for tests of the writable handling).
    #[doc(hidden)]
    pub fn sender_mut(&mut self) -> &mut Sender {
        &mut self.tx
    }

    /// Deregisters the socket from the poll and gives it back.
    pub fn into_socket(mut self) -> io::Result<UdpSocket> {
        if self.registered.is_some() {
            self.registry.deregister(&mut self.socket)?;
        }
        Ok(self.socket)
    }
}
