//! The receiving half: `recvmmsg` with GRO on Linux, `recv_from` elsewhere.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use socket2::SockRef;

use super::*;

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
    /// Slots now; a call that fills them all doubles them, up to `max`.
    count: usize,
    max: usize,
    /// The slots; lent (see `scratch`) between batches unless `gro`: empty then.
    buf: Vec<u8>,
    /// Per received message: (slot, length, segment size, source).
    got: Vec<(usize, usize, usize, SocketAddr)>,
    #[cfg(target_os = "linux")]
    mmsg: linux::RecvMsgs,
    batched: bool,
    /// The last `recv` read fewer datagrams than it had slots for.
    drained: bool,
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
        let (slot, count, max) = if gro {
            (GRO_SLOT, GRO_BATCH, GRO_BATCH)
        } else {
            (SLOT, FIRST_BATCH, BATCH)
        };
        Receiver {
            gro,
            slot,
            count,
            max,
            // A GRO receiver (a listener's busy socket) keeps its 512 KiB; others take
            // slots per batch.
            buf: if gro {
                vec![0; slot * count]
            } else {
                Vec::new()
            },
            got: Vec::with_capacity(count),
            #[cfg(target_os = "linux")]
            mmsg: linux::RecvMsgs::new(count),
            batched: cfg!(target_os = "linux"),
            drained: false,
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

    /// Bytes of slots this receiver holds now: a GRO receiver's always, others' only
    /// between a [`recv`](Self::recv) that got datagrams and the next one (a `recv` that
    /// finds nothing lends them back to a stock kept per thread, for the next batch of any
    /// socket).
    pub fn buffer_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether the last [`recv`](Self::recv) found the socket's queue empty after what it
    /// read: it got fewer datagrams than it had slots for (`recvmmsg`, like the loop of
    /// `recv_from` elsewhere, stops at the first read that would block). A caller can end
    /// its read turn there instead of calling `recv` once more only to get `WouldBlock`: a
    /// datagram that arrives later signals readiness anew. (A batch cut short by a socket
    /// error counts as drained; the error comes with the next `recv`.)
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Whether the last [`recv`](Self::recv) left nothing for [`for_each`](Self::for_each).
    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// Ends the batch: [`for_each`](Self::for_each) hands out nothing more, and the slots go
    /// back to the thread's stock until the next [`recv`](Self::recv) (a GRO receiver keeps
    /// its own). For a read turn that stops at a [`drained`](Self::drained) batch, where no
    /// `recv` finding nothing gives them back.
    pub fn release(&mut self) {
        self.got.clear();
        if !self.gro && !self.buf.is_empty() {
            scratch::give(std::mem::take(&mut self.buf));
        }
    }

    /// Reads up to a batch without blocking (its slots double, up to [`BATCH`], each time a
    /// call fills them). Returns how many datagrams it got (a GRO train
    /// counts as its datagrams), then [`for_each`](Self::for_each) hands them out.
    /// `Err(WouldBlock)` when nothing is queued; errors [`is_transient`] says are about a peer
    /// can be ignored.
    pub fn recv(&mut self, socket: SockRef<'_>) -> io::Result<usize> {
        self.got.clear();
        if self.buf.len() < self.slot * self.count {
            self.buf = scratch::take(self.slot * self.count);
        }
        let r = self.recv_batch(socket);
        if !self.gro && self.got.is_empty() {
            // Nothing to hand out: the slots go back until the next batch.
            scratch::give(std::mem::take(&mut self.buf));
        }
        r
    }

    fn recv_batch(&mut self, socket: SockRef<'_>) -> io::Result<usize> {
        self.drained = true;
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
                Ok(full) => {
                    self.drained = !full;
                    return Ok(self.count_received());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => self.batched = false,
                Err(e) => return Err(e),
            }
        }
        self.drained = false;
        for i in 0..self.count {
            let slot = &mut self.buf[i * self.slot..(i + 1) * self.slot];
            match recv_whole(&socket, slot) {
                Ok(Some((n, from))) => self.got.push((i, n, n, from)),
                // Larger than the slot: dropped and counted, never passed on truncated.
                Ok(None) => self.stats.recv_truncated += 1,
                Err(e) if !self.got.is_empty() && !is_transient(&e) => {
                    self.drained = true;
                    break;
                }
                Err(e) if self.got.is_empty() => return Err(e),
                Err(_) => {}
            }
        }
        Ok(self.count_received())
    }

    fn count_received(&mut self) -> usize {
        self.stats.recv_calls += 1;
        if self.got.len() >= self.count && self.count < self.max {
            // Full: the next call reads up to twice as many.
            self.count = (self.count * 2).min(self.max);
            self.buf.resize(self.slot * self.count, 0);
            #[cfg(target_os = "linux")]
            self.mmsg.grow(self.count);
        }
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
