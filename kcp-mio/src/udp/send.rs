//! The sending half: batched slots, `sendmmsg` with GSO on Linux, `send_to` elsewhere.

use std::io;
use std::net::SocketAddr;

use socket2::{SockAddr, SockRef};

use super::backlog::Backlog;
use super::*;

/// The sending half of a socket: a batch of slots the endpoint writes datagrams into, sent
/// with as few system calls as the platform allows, and a bounded backlog for what the
/// kernel refuses.
pub struct Sender {
    /// The batch's slots while datagrams are in them; lent (see `scratch`) between batches.
    buf: Vec<u8>,
    /// Slots a batch has room for (doubles, up to [`BATCH`], each time one fills).
    slots: usize,
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
            buf: Vec::new(),
            slots: FIRST_BATCH,
            lens: Vec::with_capacity(FIRST_BATCH),
            addrs: Vec::with_capacity(FIRST_BATCH),
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

    /// Bytes of batch slots this sender holds now: only between a [`fill`](Self::fill)
    /// and the [`flush`](Self::flush) (or [`discard`](Self::discard)) that empties the
    /// batch; between batches they are lent back to a stock kept per thread. The backlog's
    /// slots are apart from these.
    pub fn buffer_bytes(&self) -> usize {
        self.buf.len()
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
    /// adapters that fill under one lock and seal or send outside it. A batch that fills
    /// doubles (up to [`BATCH`] slots) before it counts as full.
    pub fn fill(
        &mut self,
        mut source: impl FnMut(&mut [u8], usize, &mut [usize]) -> Option<(SocketAddr, usize)>,
    ) -> bool {
        let mut lens = [0usize; BATCH];
        let full = loop {
            let used = self.lens.len();
            let cap = self.slots.min(BATCH);
            if used >= cap {
                if cap >= BATCH {
                    break true;
                }
                self.slots = (cap * 2).min(BATCH);
                continue;
            }
            if self.buf.len() < cap * SLOT {
                if self.buf.is_empty() {
                    self.buf = scratch::take(cap * SLOT);
                } else {
                    self.buf.resize(cap * SLOT, 0);
                }
            }
            let free = cap - used;
            let region = self.buf.get_mut(used * SLOT..).unwrap_or(&mut []);
            match source(region, SLOT, &mut lens[..free]) {
                Some((to, n)) => {
                    for &len in lens.iter().take(n.min(free)) {
                        self.lens.push(len.min(SLOT));
                        self.addrs.push(to);
                    }
                }
                None => break false,
            }
        };
        self.lend_if_empty();
        full
    }

    /// With the batch empty, its slots go back to the thread's stock until the next fill.
    fn lend_if_empty(&mut self) {
        if self.lens.is_empty() && !self.buf.is_empty() {
            scratch::give(std::mem::take(&mut self.buf));
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
        self.lend_if_empty();
    }

    /// Sends the filled datagrams. Behind a non-empty backlog they join it without a system
    /// call; what the kernel refuses goes to the backlog. `Err(WouldBlock)` only when the
    /// kernel refused in this call (so a readiness-tracking caller such as Tokio's `try_io`
    /// clears its readiness exactly then); check [`backlog_len`](Self::backlog_len) for
    /// whether to wait for the socket to be writable.
    pub fn flush(&mut self, socket: &SockRef<'_>) -> io::Result<()> {
        let before = self.stats.would_block;
        self.send_batch(socket);
        self.lend_if_empty();
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
