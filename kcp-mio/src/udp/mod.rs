//! Batched UDP socket I/O for any non-blocking socket, shared by both adapters.
//!
//! * [`Sender`]: datagrams are written straight into a batch of fixed slots (several per
//!   call, so the crypto layer seals them together), then sent with one `sendmmsg` on Linux,
//!   where a run of same-size datagrams to one peer goes as one UDP GSO message (the kernel
//!   walks its stack once for up to 64 datagrams). Elsewhere, or when the kernel refuses
//!   `sendmmsg` or GSO, one `send_to` per datagram, still without allocating. What the kernel
//!   refuses (`EAGAIN`) waits in a bounded backlog of preallocated slots; beyond the bound
//!   datagrams are dropped and counted (KCP retransmits them).
//! * [`Receiver`]: `recvmmsg` batches on Linux, optionally with UDP GRO (64 KiB slots whose
//!   coalesced trains are split back at the segment size the kernel reports); one
//!   `recv_from` per datagram elsewhere or when the kernel refuses `recvmmsg`.
//!
//! Sockets are passed by [`SockRef`], which any std, mio or tokio UDP socket converts to
//! (`SockRef::from(&socket)`); the socket must be non-blocking. **`WouldBlock` is explicit**:
//! [`Sender::send_from`] and [`Sender::send_backlog`] return `Err(WouldBlock)` while datagrams
//! wait in the backlog (the caller waits for the socket to be writable: mio registers
//! `WRITABLE` interest, Tokio wraps `send_backlog` in `try_io`), and [`Receiver::recv`]
//! returns it when nothing is queued. Buffers are allocated once per socket; the backlog's
//! slots grow (doubling) up to its bound and are then reused, so steady-state I/O allocates
//! nothing.

#[cfg(target_os = "linux")]
mod linux;

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use socket2::{SockAddr, SockRef};

/// Datagrams per batch (one `sendmmsg`/`recvmmsg`).
pub const BATCH: usize = 32;
/// Bytes per datagram slot: the largest datagram sent, or received without GRO (KCP's MTU is
/// at most 1500).
pub const SLOT: usize = 2048;
/// Default bound of the send backlog, in datagrams.
pub const DEFAULT_BACKLOG: usize = 4096;

/// Whether a receive error is about a peer (an ICMP port unreachable surfacing on the socket)
/// rather than about the socket: the caller goes on reading.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// Counters of one socket's I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams the kernel accepted.
    pub datagrams_sent: u64,
    /// Send system calls (`sendmmsg` or `send_to`).
    pub send_calls: u64,
    /// Datagrams received (GRO trains counted per datagram).
    pub datagrams_received: u64,
    /// Receive system calls that returned data.
    pub recv_calls: u64,
    /// Sends the kernel refused with `WouldBlock` (the datagrams went to the backlog).
    pub would_block: u64,
    /// Datagrams dropped because the backlog was full.
    pub backlog_drops: u64,
    /// Datagrams dropped because the kernel refused them (unreachable destination...).
    pub send_errors: u64,
    /// Most datagrams that waited in the backlog at once.
    pub backlog_peak: u64,
    /// Datagrams dropped on receipt because they were larger than a receive slot (never
    /// passed on truncated).
    pub recv_truncated: u64,
}

/// Datagrams the kernel had no room for, in preallocated slots: a ring that grows (doubling)
/// up to `max` slots and is then reused.
struct Backlog {
    buf: Vec<u8>,
    lens: Vec<u16>,
    addrs: Vec<SocketAddr>,
    head: usize,
    len: usize,
    max: usize,
}

impl Backlog {
    fn new(max: usize) -> Backlog {
        Backlog {
            buf: Vec::new(),
            lens: Vec::new(),
            addrs: Vec::new(),
            head: 0,
            len: 0,
            max,
        }
    }

    fn cap(&self) -> usize {
        self.lens.len()
    }

    /// Keeps a copy of `d`; false if the backlog is full.
    fn push(&mut self, to: SocketAddr, d: &[u8]) -> bool {
        if self.len == self.cap() && !self.grow() {
            return false;
        }
        let i = (self.head + self.len) % self.cap();
        let n = d.len().min(SLOT);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(i * SLOT..i * SLOT + n), d.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.lens[i] = n as u16;
        self.addrs[i] = to;
        self.len += 1;
        true
    }

    /// Doubles the ring (at least 64 slots, at most `max`), keeping the order.
    fn grow(&mut self) -> bool {
        let cap = self.cap();
        let new = (cap * 2).max(64).min(self.max);
        if new <= cap {
            return false;
        }
        let mut buf = vec![0u8; new * SLOT];
        let mut lens = vec![0u16; new];
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut addrs = vec![unspecified; new];
        for k in 0..self.len {
            let i = (self.head + k) % cap;
            buf[k * SLOT..(k + 1) * SLOT].copy_from_slice(&self.buf[i * SLOT..(i + 1) * SLOT]);
            lens[k] = self.lens[i];
            addrs[k] = self.addrs[i];
        }
        self.buf = buf;
        self.lens = lens;
        self.addrs = addrs;
        self.head = 0;
        true
    }

    fn front(&self) -> Option<(SocketAddr, &[u8])> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        let n = usize::from(self.lens[i]);
        Some((self.addrs[i], self.buf.get(i * SLOT..i * SLOT + n)?))
    }

    fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.cap();
            self.len -= 1;
        }
    }
}

/// The sending half of a socket: a batch of slots the endpoint writes datagrams into, sent
/// with as few system calls as the platform allows, and a bounded backlog for what the
/// kernel refuses.
pub struct Sender {
    buf: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<SocketAddr>,
    #[cfg(target_os = "linux")]
    mmsg: linux::SendMsgs,
    /// `sendmmsg` is usable (turned off if the kernel says it is not implemented).
    batched: bool,
    /// UDP GSO is usable (turned off when the kernel refuses it).
    gso: bool,
    backlog: Backlog,
    stats: UdpStats,
    /// Kernel sends still to be refused as if the buffer were full (tests).
    refuse: u64,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("batched", &self.batched)
            .field("gso", &self.gso)
            .field("backlog", &self.backlog.len)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for Sender {
    fn default() -> Self {
        Sender::new(DEFAULT_BACKLOG)
    }
}

impl Sender {
    /// A sender whose backlog holds at most `max_backlog` datagrams.
    pub fn new(max_backlog: usize) -> Sender {
        Sender {
            buf: vec![0; BATCH * SLOT],
            lens: Vec::with_capacity(BATCH),
            addrs: Vec::with_capacity(BATCH),
            #[cfg(target_os = "linux")]
            mmsg: linux::SendMsgs::new(),
            batched: cfg!(target_os = "linux"),
            gso: cfg!(target_os = "linux"),
            backlog: Backlog::new(max_backlog),
            stats: UdpStats::default(),
            refuse: 0,
        }
    }

    /// Makes the next `attempts` kernel sends fail with `WouldBlock` without reaching the
    /// kernel, as if the socket's buffer were full (0 stops it). For tests of the adapters'
    /// writable handling: loopback hands datagrams to the receiver synchronously and so never
    /// pushes back.
    #[doc(hidden)]
    pub fn simulate_full_socket(&mut self, attempts: u64) {
        self.refuse = attempts;
    }

    /// Whether the next kernel send is refused by `simulate_full_socket`.
    fn refused(&mut self) -> bool {
        if self.refuse == 0 {
            return false;
        }
        self.refuse -= 1;
        self.stats.would_block += 1;
        true
    }

    /// Sends with one `send_to` per datagram from now on (what non-Linux systems do), for
    /// tests of that path and for sockets where batching is not wanted.
    pub fn use_plain_sends(&mut self) {
        self.batched = false;
        self.gso = false;
    }

    /// Whether UDP segmentation offload is in use (turned off if the kernel refuses it).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Datagrams waiting for the socket to become writable.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len
    }

    /// Counters (the receive side's are zero; see [`Receiver::stats`]).
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Fills the batch from `source` and sends it, as many batches as `source` yields.
    ///
    /// `source(region, stride, lens)` writes up to `lens.len()` datagrams to one destination,
    /// datagram `i` at `region[i * stride..]` with its length in `lens[i]`, and returns the
    /// destination and how many it wrote, or `None` when it has nothing more (the shape of
    /// kcp-core's `Endpoint::poll_transmit_strided`). `Ok(())`: everything went to the
    /// kernel (or was dropped and counted). `Err(WouldBlock)`: datagrams wait in the backlog;
    /// call [`send_backlog`](Self::send_backlog) when the socket is writable.
    pub fn send_from(
        &mut self,
        socket: SockRef<'_>,
        mut source: impl FnMut(&mut [u8], usize, &mut [usize]) -> Option<(SocketAddr, usize)>,
    ) -> io::Result<()> {
        loop {
            let more = self.fill(&mut source);
            let _ = self.flush(&socket);
            if !more {
                break;
            }
        }
        if self.backlog.len > 0 {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    }

    /// Fills the free slots of the batch from `source` (see [`send_from`](Self::send_from))
    /// without sending; returns true when the batch is full (`source` may have more). For
    /// adapters that fill under one lock and seal or send outside it.
    pub fn fill(
        &mut self,
        mut source: impl FnMut(&mut [u8], usize, &mut [usize]) -> Option<(SocketAddr, usize)>,
    ) -> bool {
        let mut lens = [0usize; BATCH];
        loop {
            let used = self.lens.len();
            if used >= BATCH {
                return true;
            }
            let free = BATCH - used;
            let region = self.buf.get_mut(used * SLOT..).unwrap_or(&mut []);
            match source(region, SLOT, &mut lens[..free]) {
                Some((to, n)) => {
                    for &len in lens.iter().take(n.min(free)) {
                        self.lens.push(len.min(SLOT));
                        self.addrs.push(to);
                    }
                }
                None => return false,
            }
        }
    }

    /// The datagrams filled and not yet sent: datagram `i` at `buf[i * SLOT..]`, its length
    /// in `lens[i]`, for sealing in place (the lengths may change, within `SLOT`).
    pub fn committed_mut(&mut self) -> (&mut [u8], &mut [usize]) {
        let n = self.lens.len();
        (
            self.buf.get_mut(..n * SLOT).unwrap_or(&mut []),
            &mut self.lens[..],
        )
    }

    /// Datagrams filled and not yet sent.
    pub fn committed(&self) -> usize {
        self.lens.len()
    }

    /// Drops the filled datagrams unsent (counted as send errors): for a sealing failure.
    pub fn discard(&mut self) {
        self.stats.send_errors += self.lens.len() as u64;
        self.lens.clear();
        self.addrs.clear();
    }

    /// Moves the filled datagrams to the backlog without a system call (for a caller whose
    /// readiness says the socket is not writable; counted as `would_block` if any moved).
    pub fn defer(&mut self) {
        if self.lens.is_empty() {
            return;
        }
        self.stats.would_block += 1;
        self.queue_from(0);
    }

    /// Sends the filled datagrams. Behind a non-empty backlog they join it without a system
    /// call; what the kernel refuses goes to the backlog. `Err(WouldBlock)` only when the
    /// kernel refused in this call (so a readiness-tracking caller such as Tokio's `try_io`
    /// clears its readiness exactly then); check [`backlog_len`](Self::backlog_len) for
    /// whether to wait for the socket to be writable.
    pub fn flush(&mut self, socket: &SockRef<'_>) -> io::Result<()> {
        let before = self.stats.would_block;
        self.send_batch(socket);
        if self.stats.would_block > before {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    }

    /// Sends one datagram (copied into the batch first, so it goes behind any backlog).
    pub fn send_to(&mut self, socket: SockRef<'_>, to: SocketAddr, d: &[u8]) -> io::Result<()> {
        let mut once = Some(d);
        self.send_from(socket, |region, _, lens| {
            let d = once.take()?;
            let n = d.len().min(SLOT);
            region.get_mut(..n)?.copy_from_slice(d.get(..n)?);
            *lens.first_mut()? = n;
            Some((to, 1))
        })
    }

    /// Sends backlogged datagrams until the kernel pushes back. `Ok(())` when the backlog is
    /// empty, `Err(WouldBlock)` while some still wait.
    pub fn send_backlog(&mut self, socket: SockRef<'_>) -> io::Result<()> {
        while self.backlog.len > 0 {
            if self.refused() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let Some((to, d)) = self.backlog.front() else {
                break;
            };
            self.stats.send_calls += 1;
            match socket.send_to(d, &SockAddr::from(to)) {
                Ok(_) => self.stats.datagrams_sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.would_block += 1;
                    return Err(e);
                }
                Err(_) => self.stats.send_errors += 1,
            }
            self.backlog.pop();
        }
        Ok(())
    }

    /// Sends what the batch holds; what the kernel does not take goes to the backlog.
    fn send_batch(&mut self, socket: &SockRef<'_>) {
        let n = self.lens.len();
        if n == 0 {
            return;
        }
        let sent = if self.backlog.len > 0 {
            0
        } else {
            self.send_batch_now(socket)
        };
        self.queue_from(sent);
    }

    /// Moves datagrams `from..` of the batch to the backlog (dropping and counting what does
    /// not fit) and empties the batch.
    fn queue_from(&mut self, from: usize) {
        for i in from..self.lens.len() {
            let len = self.lens[i];
            let d = &self.buf[i * SLOT..i * SLOT + len];
            if self.backlog.push(self.addrs[i], d) {
                self.stats.backlog_peak = self.stats.backlog_peak.max(self.backlog.len as u64);
            } else {
                self.stats.backlog_drops += 1;
            }
        }
        self.lens.clear();
        self.addrs.clear();
    }

    /// Sends the batch; returns how many datagrams are done with (sent, or refused and
    /// counted). The rest (from the first `WouldBlock` on) is for the backlog.
    fn send_batch_now(&mut self, socket: &SockRef<'_>) -> usize {
        if self.refused() {
            return 0;
        }
        #[cfg(target_os = "linux")]
        if self.batched {
            match self.mmsg.send(
                socket,
                &mut self.buf,
                &self.lens,
                &self.addrs,
                &mut self.gso,
                &mut self.stats,
            ) {
                linux::Sent::Done(k) => return k,
                // sendmmsg is not implemented here: plain sends from now on.
                linux::Sent::Unsupported => self.batched = false,
                // A datagram the kernel refused for its own reason: go one by one from it, so
                // only that one is lost.
                linux::Sent::Failed(k) => return k + self.send_plain(socket, k),
            }
        }
        self.send_plain(socket, 0)
    }

    /// One `send_to` per datagram from `from`; returns how many were done with.
    fn send_plain(&mut self, socket: &SockRef<'_>, from: usize) -> usize {
        let n = self.lens.len();
        for i in from..n {
            let d = &self.buf[i * SLOT..i * SLOT + self.lens[i]];
            self.stats.send_calls += 1;
            match socket.send_to(d, &SockAddr::from(self.addrs[i])) {
                Ok(_) => self.stats.datagrams_sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.would_block += 1;
                    return i - from;
                }
                Err(_) => self.stats.send_errors += 1,
            }
        }
        n - from
    }
}

/// One datagram into `slot`: `Ok(None)` when it was larger than the slot (truncated by the
/// kernel), which the caller drops.
fn recv_whole(socket: &SockRef<'_>, slot: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
    #[cfg(unix)]
    {
        let mut bufs = [socket2::MaybeUninitSlice::new(
            // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the slice is initialised;
            // the kernel only writes initialised bytes into it.
            unsafe {
                std::slice::from_raw_parts_mut(
                    slot.as_mut_ptr().cast::<MaybeUninit<u8>>(),
                    slot.len(),
                )
            },
        )];
        let (n, flags, from) = socket.recv_from_vectored(&mut bufs)?;
        if flags.is_truncated() {
            return Ok(None);
        }
        Ok(from.as_socket().map(|a| (n.min(slot.len()), a)))
    }
    #[cfg(not(unix))]
    {
        // SAFETY: as above.
        let uninit = unsafe {
            std::slice::from_raw_parts_mut(slot.as_mut_ptr().cast::<MaybeUninit<u8>>(), slot.len())
        };
        match socket.recv_from(uninit) {
            Ok((n, from)) => Ok(from.as_socket().map(|a| (n.min(slot.len()), a))),
            // WSAEMSGSIZE: the datagram did not fit (Windows truncates and says so).
            Err(e) if e.raw_os_error() == Some(10040) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The receiving half of a socket: a batch of slots filled by one system call.
pub struct Receiver {
    gro: bool,
    slot: usize,
    count: usize,
    buf: Vec<u8>,
    /// Per received message: (slot, length, segment size, source).
    got: Vec<(usize, usize, usize, SocketAddr)>,
    #[cfg(target_os = "linux")]
    mmsg: linux::RecvMsgs,
    batched: bool,
    stats: UdpStats,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("gro", &self.gro)
            .field("batched", &self.batched)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Receive slot with GRO: one coalesced train of datagrams.
const GRO_SLOT: usize = 65_536;
/// Receive slots with GRO (fewer, larger).
const GRO_BATCH: usize = 8;

impl Receiver {
    /// Buffers for `socket`. With `gro` (Linux), asks the kernel to coalesce datagrams from
    /// one peer (512 KiB of receive slots: worth it for a busy server socket); ignored where
    /// the kernel cannot.
    pub fn new(socket: SockRef<'_>, gro: bool) -> Receiver {
        #[cfg(target_os = "linux")]
        let gro = gro && linux::enable_gro(&socket);
        #[cfg(not(target_os = "linux"))]
        let _ = (&socket, gro);
        #[cfg(not(target_os = "linux"))]
        let gro = false;
        let (slot, count) = if gro {
            (GRO_SLOT, GRO_BATCH)
        } else {
            (SLOT, BATCH)
        };
        Receiver {
            gro,
            slot,
            count,
            buf: vec![0; slot * count],
            got: Vec::with_capacity(count),
            #[cfg(target_os = "linux")]
            mmsg: linux::RecvMsgs::new(count),
            batched: cfg!(target_os = "linux"),
            stats: UdpStats::default(),
        }
    }

    /// Reads with one `recv_from` per datagram from now on (what non-Linux systems do).
    pub fn use_plain_receives(&mut self) {
        self.batched = false;
    }

    /// Whether the kernel coalesces received datagrams for us.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Counters (the send side's are zero; see [`Sender::stats`]).
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Reads up to a batch without blocking. Returns how many datagrams it got (a GRO train
    /// counts as its datagrams), then [`for_each`](Self::for_each) hands them out.
    /// `Err(WouldBlock)` when nothing is queued; errors [`is_transient`] says are about a peer
    /// can be ignored.
    pub fn recv(&mut self, socket: SockRef<'_>) -> io::Result<usize> {
        self.got.clear();
        #[cfg(target_os = "linux")]
        if self.batched {
            match self.mmsg.recv(
                &socket,
                &mut self.buf,
                self.slot,
                self.gro,
                &mut self.got,
                &mut self.stats.recv_truncated,
            ) {
                Ok(()) => return Ok(self.count_received()),
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => self.batched = false,
                Err(e) => return Err(e),
            }
        }
        for i in 0..self.count {
            let slot = &mut self.buf[i * self.slot..(i + 1) * self.slot];
            match recv_whole(&socket, slot) {
                Ok(Some((n, from))) => self.got.push((i, n, n, from)),
                // Larger than the slot: dropped and counted, never passed on truncated.
                Ok(None) => self.stats.recv_truncated += 1,
                Err(e) if !self.got.is_empty() && !is_transient(&e) => break,
                Err(e) if self.got.is_empty() => return Err(e),
                Err(_) => {}
            }
        }
        Ok(self.count_received())
    }

    fn count_received(&mut self) -> usize {
        self.stats.recv_calls += 1;
        let n: usize = self
            .got
            .iter()
            .map(|&(_, len, seg, _)| len.div_ceil(seg.max(1)).max(1))
            .sum();
        self.stats.datagrams_received += n as u64;
        n
    }

    /// Calls `f` for every datagram of the last [`recv`](Self::recv), in order (GRO trains split
    /// into datagrams).
    pub fn for_each(&mut self, mut f: impl FnMut(SocketAddr, &mut [u8])) {
        for k in 0..self.got.len() {
            let (i, len, seg, from) = self.got[k];
            let base = i * self.slot;
            let seg = seg.max(1);
            let mut off = 0;
            loop {
                let end = (off + seg).min(len);
                if let Some(d) = self.buf.get_mut(base + off..base + end) {
                    f(from, d);
                }
                off = end;
                if off >= len {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// Sends `sizes` (datagram `k` filled with byte `k`) and reads them back; checks every
    /// datagram arrives whole, in order, with its content and source.
    fn round_trip(sizes: &[usize], gro: bool, plain: bool) -> (Sender, Receiver) {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut rx = Receiver::new(SockRef::from(&b), gro);
        let mut tx = Sender::new(64);
        if plain {
            tx.use_plain_sends();
            rx.use_plain_receives();
        }
        let mut k = 0;
        tx.send_from(SockRef::from(&a), |region, stride, lens| {
            let mut n = 0;
            // Datagrams to one destination, several per call as the endpoint hands them out.
            while n < lens.len() && k < sizes.len() && n < 5 {
                region[n * stride..n * stride + sizes[k]].fill(k as u8);
                lens[n] = sizes[k];
                n += 1;
                k += 1;
            }
            (n > 0).then_some((to, n))
        })
        .unwrap();
        let mut got: Vec<(usize, u8)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < sizes.len() && Instant::now() < deadline {
            match rx.recv(SockRef::from(&b)) {
                Ok(_) => rx.for_each(|from, d| {
                    assert_eq!(from, a.local_addr().unwrap());
                    assert!(d.iter().all(|&x| x == d[0]));
                    got.push((d.len(), d[0]));
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        let want: Vec<(usize, u8)> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| (n, k as u8))
            .collect();
        assert_eq!(got, want);
        (tx, rx)
    }

    /// A datagram larger than a receive slot is dropped and counted, never handed out cut;
    /// the datagrams around it arrive whole. Batched and plain receive paths.
    fn oversized_datagrams_are_dropped(plain: bool) {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut rx = Receiver::new(SockRef::from(&b), false);
        if plain {
            rx.use_plain_receives();
        }
        for d in [vec![1u8; 100], vec![2u8; SLOT + 500], vec![3u8; 200]] {
            a.send_to(&d, to).unwrap();
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 2 && Instant::now() < deadline {
            match rx.recv(SockRef::from(&b)) {
                Ok(_) => rx.for_each(|_, d| got.push((d.len(), d[0]))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, [(100, 1), (200, 3)]);
        assert_eq!(rx.stats().recv_truncated, 1);
    }

    #[test]
    fn oversized_datagrams_are_dropped_batched() {
        oversized_datagrams_are_dropped(false);
    }

    #[test]
    fn oversized_datagrams_are_dropped_plain() {
        oversized_datagrams_are_dropped(true);
    }

    fn mixed() -> Vec<usize> {
        // A run of equal sizes with a shorter tail (one GSO message), then mixed sizes.
        let mut sizes = vec![1200; 20];
        sizes.push(300);
        sizes.extend([100, 1400, 1400, 50]);
        sizes.extend(vec![1350; 40]);
        sizes
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn gso_runs_and_gro_trains_split_back_into_datagrams() {
        let sizes = mixed();
        let (tx, rx) = round_trip(&sizes, true, false);
        assert!(tx.gso(), "loopback supports UDP GSO on this kernel");
        assert!(rx.gro());
        let st = tx.stats();
        assert_eq!(st.datagrams_sent, sizes.len() as u64);
        assert!(
            st.send_calls <= 4,
            "{} datagrams in batches of 32: {st:?}",
            sizes.len()
        );
        let (_, rx) = round_trip(&sizes, false, false);
        assert!(!rx.gro());
    }

    #[test]
    fn plain_path_sends_one_datagram_per_call() {
        let sizes = mixed();
        let (tx, rx) = round_trip(&sizes, false, true);
        assert_eq!(tx.stats().send_calls, sizes.len() as u64);
        assert_eq!(rx.stats().datagrams_received, sizes.len() as u64);
    }

    /// The kernel refuses (simulated: loopback never pushes back, its datagrams are handed
    /// to the receiver synchronously): the refused datagrams wait in the backlog and
    /// `WouldBlock` is reported; later ones queue behind them; beyond the bound they are
    /// dropped and counted; `send_backlog` sends them in order once the kernel takes them.
    fn backlog_case(plain: bool) {
        let (a, b) = pair();
        // Room for the whole backlog at once: loopback drops what the receiver has no room for.
        SockRef::from(&b).set_recv_buffer_size(4 << 20).unwrap();
        let to = b.local_addr().unwrap();
        let mut tx = Sender::new(100);
        if plain {
            tx.use_plain_sends();
        }
        tx.send_to(SockRef::from(&a), to, &[9; 100]).unwrap();
        tx.simulate_full_socket(u64::MAX);
        for seq in 0..150u32 {
            let mut d = [0u8; 1000];
            d[..4].copy_from_slice(&seq.to_le_bytes());
            let e = tx.send_to(SockRef::from(&a), to, &d).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
        let st = tx.stats();
        assert_eq!(
            st.would_block, 1,
            "after the first refusal, datagrams queue behind it"
        );
        assert_eq!(tx.backlog_len(), 100, "bounded");
        assert_eq!(
            st.backlog_drops, 50,
            "beyond the bound, dropped and counted"
        );
        assert_eq!(st.backlog_peak, 100);
        let e = tx.send_backlog(SockRef::from(&a)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        tx.simulate_full_socket(0);
        tx.send_backlog(SockRef::from(&a)).unwrap();
        assert_eq!(tx.backlog_len(), 0);
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 101 && Instant::now() < deadline {
            match b.recv_from(&mut buf) {
                Ok((n, _)) => got.push((n, u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]))),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        let mut want = vec![(100, u32::from_le_bytes([9; 4]))];
        want.extend((0..100).map(|s| (1000, s)));
        assert_eq!(got, want, "in order, the first 100 of the refused ones");
    }

    #[test]
    fn refused_datagrams_wait_in_a_bounded_backlog_batched() {
        backlog_case(false);
    }

    #[test]
    fn refused_datagrams_wait_in_a_bounded_backlog_plain() {
        backlog_case(true);
    }

    #[test]
    fn receiving_nothing_is_would_block() {
        let (_a, b) = pair();
        for gro in [false, true] {
            let mut rx = Receiver::new(SockRef::from(&b), gro);
            let e = rx.recv(SockRef::from(&b)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            rx.use_plain_receives();
            let e = rx.recv(SockRef::from(&b)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn a_refused_destination_loses_only_its_datagram() {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        // Port 0 is not a valid destination: the kernel refuses that datagram alone.
        let bad: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut tx = Sender::new(16);
        let mut plan = vec![(to, 1u8), (bad, 2), (to, 3)].into_iter();
        tx.send_from(SockRef::from(&a), |region, _, lens| {
            let (dest, tag) = plan.next()?;
            region[..10].fill(tag);
            lens[0] = 10;
            Some((dest, 1))
        })
        .unwrap();
        assert_eq!(tx.stats().send_errors, 1);
        let mut buf = [0u8; 64];
        b.set_nonblocking(false).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(b.recv(&mut buf).unwrap(), 10);
        assert_eq!(buf[0], 1);
        assert_eq!(b.recv(&mut buf).unwrap(), 10);
        assert_eq!(buf[0], 3);
    }
}
