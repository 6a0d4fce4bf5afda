//! One driver task per UDP socket: it owns nothing but the socket loop; all protocol state is
//! the sans-IO [`Endpoint`] behind a mutex that streams share, and streams talk to it through
//! that state and wakers (no channel per packet).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use kcp_core::endpoint::{CloseReason, Endpoint, Event, SessionId};
use kcp_core::Millis;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// Largest datagram we read.
#[cfg(not(target_os = "linux"))]
const RECV_BUF: usize = 65_536;
/// Datagrams read per wake-up before the loop yields to timers and writers.
#[cfg(not(target_os = "linux"))]
const RECV_BATCH: usize = 128;
/// `recvmmsg` calls per wake-up before the loop yields to timers and writers.
#[cfg(target_os = "linux")]
const RECV_CALLS: usize = 4;
/// Datagrams kept while the socket's send buffer is full.
const MAX_BACKLOG: usize = 4096;

/// State shared by the driver task and every stream and listener of one socket.
pub(crate) struct Shared {
    pub(crate) ep: Endpoint<SocketAddr>,
    socket: Arc<UdpSocket>,
    start: Instant,
    #[cfg(not(target_os = "linux"))]
    tx_buf: Vec<u8>,
    #[cfg(target_os = "linux")]
    batch: crate::batch::SendBatch,
    pub(crate) read_wakers: HashMap<SessionId, Waker>,
    pub(crate) write_wakers: HashMap<SessionId, Waker>,
    pub(crate) close_wakers: HashMap<SessionId, Waker>,
    /// Why sessions that have a stream ended, until the stream is dropped. Sessions nobody
    /// holds a stream for (ended before `accept`) are not recorded, so this stays bounded by
    /// the live streams.
    pub(crate) closed: HashMap<SessionId, CloseReason>,
    /// Sessions some `KcpStream` refers to.
    pub(crate) streams: HashSet<SessionId>,
    pub(crate) accept_waker: Option<Waker>,
    pub(crate) send_drops: u64,
    pub(crate) stopped: Option<io::ErrorKind>,
    backlog: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl Shared {
    pub(crate) fn now(&self) -> Millis {
        Millis(self.start.elapsed().as_millis() as u32)
    }

    /// Sends every datagram the endpoint has, then dispatches events to wakers.
    pub(crate) fn flush(&mut self) {
        let now = self.now();
        #[cfg(target_os = "linux")]
        {
            // Sessions write straight into the send batch's free slots, several datagrams per
            // call, so the crypto layer seals them together (interleaved CFB chains).
            let mut lens = [0usize; crate::batch::BATCH];
            loop {
                if self.batch.is_full() {
                    self.send_batch();
                }
                let (region, free) = self.batch.free_slots();
                let stride = crate::batch::SLOT;
                match self
                    .ep
                    .poll_transmit_strided(now, region, stride, &mut lens[..free])
                {
                    Some((to, n)) => self.batch.commit(to, &lens[..n]),
                    None => break,
                }
            }
            self.send_batch();
        }
        #[cfg(not(target_os = "linux"))]
        while let Some((to, n)) = self.ep.poll_transmit(now, &mut self.tx_buf) {
            let datagram = self.tx_buf[..n].to_vec();
            self.send_one(to, datagram);
        }
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Incoming => {
                    if let Some(w) = self.accept_waker.take() {
                        w.wake();
                    }
                }
                Event::Readable(id) => {
                    if let Some(w) = self.read_wakers.remove(&id) {
                        w.wake();
                    }
                }
                Event::Writable(id) => {
                    if let Some(w) = self.write_wakers.remove(&id) {
                        w.wake();
                    }
                }
                Event::Closed(id, reason) => {
                    if self.streams.contains(&id) {
                        self.closed.insert(id, reason);
                    }
                    for map in [
                        &mut self.read_wakers,
                        &mut self.write_wakers,
                        &mut self.close_wakers,
                    ] {
                        if let Some(w) = map.remove(&id) {
                            w.wake();
                        }
                    }
                }
            }
        }
    }

    /// Sends the datagrams collected in the batch with one `sendmmsg`; what the kernel did not
    /// take waits in the backlog.
    #[cfg(target_os = "linux")]
    fn send_batch(&mut self) {
        let n = self.batch.len();
        if n == 0 {
            return;
        }
        let sent = if self.backlog.is_empty() {
            match self.batch.send(&self.socket) {
                Ok(k) => k,
                // One bad destination fails the call: send one by one instead.
                Err(_) => {
                    for i in 0..n {
                        if let Some((to, d)) = self.batch.datagram(i) {
                            let d = d.to_vec();
                            self.send_one(to, d);
                        }
                    }
                    self.batch.clear();
                    return;
                }
            }
        } else {
            0
        };
        for i in sent..n {
            if let Some((to, d)) = self.batch.datagram(i) {
                let d = d.to_vec();
                self.queue(to, d);
            }
        }
        self.batch.clear();
    }

    /// Sends one datagram now, or queues it behind the backlog / when the kernel is full.
    fn send_one(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        if !self.backlog.is_empty() {
            self.queue(to, datagram);
            return;
        }
        match socket2::SockRef::from(&*self.socket).send_to(&datagram, &to.into()) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.queue(to, datagram),
            // Unreachable peers and the like: the datagram is lost, KCP retransmits.
            Err(_) => self.send_drops += 1,
        }
    }

    /// Keeps a datagram the kernel had no room for; the driver sends it when the socket is
    /// writable. Bounded: beyond `MAX_BACKLOG` datagrams are dropped (KCP retransmits).
    fn queue(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        if self.backlog.len() >= MAX_BACKLOG {
            self.send_drops += 1;
            return;
        }
        self.backlog.push_back((to, datagram));
    }

    /// Sends queued datagrams until the kernel pushes back; true when the queue is empty.
    fn drain_backlog(&mut self) -> bool {
        while let Some((to, d)) = self.backlog.front() {
            match socket2::SockRef::from(&*self.socket).send_to(d, &(*to).into()) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => self.send_drops += 1,
            }
            self.backlog.pop_front();
        }
        true
    }

    /// The instant of the endpoint's next deadline, on the exact millisecond boundary of the
    /// engine clock (not "now + n ms", which would drift late by the sub-millisecond part).
    fn deadline(&mut self) -> Option<Instant> {
        let t = self.ep.poll_timeout()?;
        let now = self.now();
        let at = u64::from(now.0) + t.since(now).max(0) as u64;
        Some(self.start + Duration::from_millis(at))
    }

    fn stop(&mut self, kind: io::ErrorKind) {
        self.stopped = Some(kind);
        for (_, w) in self
            .read_wakers
            .drain()
            .chain(self.write_wakers.drain())
            .chain(self.close_wakers.drain())
        {
            w.wake();
        }
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
    }
}

/// What the driver task and the handles share.
pub(crate) struct Inner {
    pub(crate) shared: Mutex<Shared>,
    notify: Notify,
    stop: Notify,
    pub(crate) local: SocketAddr,
}

/// A handle on one socket's driver, held (in an `Arc`) by its streams and listener; when the
/// last one is dropped the driver task stops.
pub(crate) struct Driver {
    inner: Arc<Inner>,
}

impl Driver {
    /// Starts the driver task for `socket`.
    /// Starts the driver task for `socket`. `gro` asks for receive offload (64 KiB receive
    /// slots: worth it for a listener's busy socket, not for every client socket).
    pub(crate) fn spawn(
        socket: UdpSocket,
        ep: Endpoint<SocketAddr>,
        gro: bool,
    ) -> io::Result<Arc<Driver>> {
        let local = socket.local_addr()?;
        let socket = Arc::new(socket);
        #[cfg(not(target_os = "linux"))]
        let mtu = ep.config().session.mtu as usize;
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                ep,
                socket: socket.clone(),
                start: Instant::now(),
                #[cfg(not(target_os = "linux"))]
                tx_buf: vec![0; mtu.max(1500)],
                #[cfg(target_os = "linux")]
                batch: crate::batch::SendBatch::new(),
                read_wakers: HashMap::new(),
                write_wakers: HashMap::new(),
                close_wakers: HashMap::new(),
                closed: HashMap::new(),
                streams: HashSet::new(),
                accept_waker: None,
                send_drops: 0,
                stopped: None,
                backlog: VecDeque::new(),
            }),
            notify: Notify::new(),
            stop: Notify::new(),
            local,
        });
        tokio::spawn(run(inner.clone(), socket, gro));
        Ok(Arc::new(Driver { inner }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.inner.lock()
    }

    /// Tells the driver that timers may have changed (after an application call).
    pub(crate) fn poke(&self) {
        self.inner.notify.notify_one();
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Runs `f` on the driver's socket (socket options at run time).
    pub(crate) fn with_socket<T>(&self, f: impl FnOnce(&UdpSocket) -> T) -> T {
        let s = self.lock();
        f(&s.socket)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Nothing panics while holding the lock; if something did, the state is still usable.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.inner.stop.notify_one();
    }
}

/// Reads what the socket has (up to a bound, so timers and writers get their turn) and hands
/// every datagram to the endpoint.
fn receive(socket: &UdpSocket, rx: &mut Rx, s: &mut Shared, now: Millis) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    for _ in 0..RECV_CALLS {
        match rx.recv(socket) {
            Ok(n) => {
                rx.for_each(|from, data| {
                    let _ = s.ep.handle_datagram(now, from, data);
                });
                if n == 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // ICMP port unreachable and the like surface here: not our socket's fault.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(target_os = "linux"))]
    for _ in 0..RECV_BATCH {
        match socket.try_recv_from(rx) {
            Ok((n, from)) => {
                let _ = s.ep.handle_datagram(now, from, &mut rx[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
type Rx = crate::batch::RecvBatch;
#[cfg(not(target_os = "linux"))]
type Rx = Vec<u8>;

async fn run(d: Arc<Inner>, socket: Arc<UdpSocket>, gro: bool) {
    #[cfg(target_os = "linux")]
    let mut rx = crate::batch::RecvBatch::new(&socket, gro);
    #[cfg(not(target_os = "linux"))]
    let _ = gro;
    #[cfg(not(target_os = "linux"))]
    let mut rx = vec![0u8; RECV_BUF];
    loop {
        let (deadline, backlog) = {
            let mut s = d.lock();
            (s.deadline(), !s.backlog.is_empty())
        };
        let writable = async {
            if backlog {
                let _ = socket.writable().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = socket.readable() => {
                let mut s = d.lock();
                if let Err(e) = r {
                    s.stop(e.kind());
                    return;
                }
                let now = s.now();
                if let Err(e) = receive(&socket, &mut rx, &mut s, now) {
                    s.stop(e.kind());
                    return;
                }
                s.flush();
            }
            _ = sleep => {
                let mut s = d.lock();
                let now = s.now();
                s.ep.handle_timeout(now);
                s.flush();
            }
            _ = writable => {
                let mut s = d.lock();
                if s.drain_backlog() {
                    s.flush();
                }
            }
            _ = d.notify.notified() => {}
            _ = d.stop.notified() => {
                d.lock().stop(io::ErrorKind::NotConnected);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kcp_core::wire::{Command, SegmentRepr, HEADER_LEN};

    use crate::{KcpConfig, KcpListener};

    /// Peers that open sessions and vanish before `accept` leave nothing behind.
    #[tokio::test]
    async fn unaccepted_sessions_leave_no_state() {
        let cfg = KcpConfig::new(kcp_core::Config::fast3())
            .idle_timeout(Some(Duration::from_millis(100)));
        let l = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for conv in 0..20u32 {
            let mut d = [0u8; HEADER_LEN + 1];
            SegmentRepr {
                conv,
                cmd: Command::Push,
                frg: 0,
                wnd: 32,
                ts: 0,
                sn: 0,
                una: 0,
                len: 1,
            }
            .emit(&mut d)
            .unwrap();
            peer.send_to(&d, l.local_addr()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(l.sessions_per_socket(), [20]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(l.sessions_per_socket(), [0], "idle sessions time out");
        let s = l.drivers[0].lock();
        assert!(s.closed.is_empty() && s.streams.is_empty());
    }
}
