//! Batched socket I/O on Linux: `recvmmsg` and `sendmmsg`, one system call for up to
//! [`BATCH`] datagrams, with UDP segmentation offload (GSO: a run of same-size datagrams to
//! one peer is one message) and receive offload (GRO, on listener sockets: coalesced trains
//! are split back at the segment size). Both fall back to plain batching when the kernel
//! refuses them. Other systems use one call per datagram (see `driver.rs`).
//!
//! The buffers, iovecs and headers are allocated once per socket and reused.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use tokio::net::UdpSocket;

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;
/// Bytes per datagram slot: the largest datagram we send, or receive without GRO.
pub(crate) const SLOT: usize = 2048;
/// Receive slot with GRO: one coalesced train of datagrams.
const GRO_SLOT: usize = 65_536;
/// Receive slots with GRO (fewer, larger).
const GRO_BATCH: usize = 8;
/// Linux uapi `UDP_SEGMENT` (GSO) and `UDP_GRO` socket options / control messages.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// The kernel's limit on segments per GSO send.
const GSO_MAX_SEGMENTS: usize = 64;
/// Control-message room per header (u64 words, for alignment): one `int` or `u16` payload.
const CMSG_WORDS: usize = 8;

fn to_socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in into this storage (family AF_INET), and
            // sockaddr_storage is large and aligned enough for it.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn from_socket_addr(addr: &SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: zeroed sockaddr_storage is a valid value.
    *ss = unsafe { mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage can hold a sockaddr_in.
            let s = unsafe { &mut *(ss as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage can hold a sockaddr_in6.
            let s = unsafe { &mut *(ss as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6) };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            s.sin6_flowinfo = a.flowinfo();
            s.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Receive side: `BATCH` slots of `SLOT` bytes, or with GRO `GRO_BATCH` slots of 64 KiB whose
/// coalesced trains are split at the segment size the kernel reports.
pub(crate) struct RecvBatch {
    gro: bool,
    slot: usize,
    count: usize,
    buf: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    /// Per received message: (slot, length, segment size).
    got: Vec<(usize, usize, usize)>,
    /// Messages dropped because they did not fit their slot (`MSG_TRUNC`).
    truncated: u64,
}

// SAFETY: the raw pointers in iovs/hdrs only ever point into this struct's own buffers and are
// rebuilt before every use.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Buffers for `socket`; with `gro`, asks the kernel to coalesce (ignored if it cannot).
    pub(crate) fn new(socket: &UdpSocket, gro: bool) -> RecvBatch {
        let gro = gro && {
            let on: libc::c_int = 1;
            // SAFETY: valid fd, option value points to a live c_int of the given size.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_UDP,
                    UDP_GRO,
                    (&on as *const libc::c_int).cast(),
                    mem::size_of::<libc::c_int>() as libc::socklen_t,
                ) == 0
            }
        };
        let (slot, count) = if gro {
            (GRO_SLOT, GRO_BATCH)
        } else {
            (SLOT, BATCH)
        };
        RecvBatch {
            gro,
            slot,
            count,
            buf: vec![0; count * slot],
            // SAFETY: all-zero is a valid value for these plain C structs.
            names: vec![unsafe { mem::zeroed() }; count],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                count
            ],
            hdrs: vec![unsafe { mem::zeroed() }; count],
            cmsgs: vec![[0; CMSG_WORDS]; count],
            got: Vec::with_capacity(count),
            truncated: 0,
        }
    }

    /// Datagrams dropped so far because they were larger than a receive slot: a truncated
    /// datagram is never passed on.
    pub(crate) fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Whether the kernel coalesces received datagrams for us.
    #[cfg(test)]
    pub(crate) fn gro(&self) -> bool {
        self.gro
    }

    /// Reads up to a batch of messages without blocking; `WouldBlock` when there is none.
    /// Returns how many messages (a GRO message holds several datagrams).
    pub(crate) fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for i in 0..self.count {
            self.iovs[i] = libc::iovec {
                iov_base: self.buf[i * self.slot..].as_mut_ptr().cast(),
                iov_len: self.slot,
            };
            // SAFETY: zeroed msghdr is valid; we then point it at our own storage.
            let mut h: libc::msghdr = unsafe { mem::zeroed() };
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            if self.gro {
                h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
                h.msg_controllen = mem::size_of::<[u64; CMSG_WORDS]>() as _;
            }
            self.hdrs[i] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        let fd = socket.as_raw_fd();
        let hdrs = self.hdrs.as_mut_ptr();
        let count = self.count as libc::c_uint;
        let n = socket.try_io(tokio::io::Interest::READABLE, || {
            // SAFETY: `hdrs` points to `count` initialised mmsghdr whose buffers live in
            // `self` for the duration of the call.
            let n = unsafe {
                libc::recvmmsg(fd, hdrs, count, libc::MSG_DONTWAIT, std::ptr::null_mut())
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })?;
        self.got.clear();
        for i in 0..n {
            if self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.truncated += 1;
                continue;
            }
            let len = (self.hdrs[i].msg_len as usize).min(self.slot);
            let seg = if self.gro {
                self.segment_size(i).unwrap_or(len)
            } else {
                len
            };
            self.got.push((i, len, seg.max(1)));
        }
        Ok(n)
    }

    /// The GRO segment size of message `i`, from its control message.
    fn segment_size(&self, i: usize) -> Option<usize> {
        let h = &self.hdrs[i].msg_hdr;
        // SAFETY: the kernel filled msg_control/msg_controllen of this header; the CMSG
        // macros walk within it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                    return usize::try_from(v).ok().filter(|&v| v > 0);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    /// Calls `f` for every datagram of the last `recv` (GRO trains split into datagrams).
    pub(crate) fn for_each(&mut self, mut f: impl FnMut(SocketAddr, &mut [u8])) {
        for k in 0..self.got.len() {
            let (i, len, seg) = self.got[k];
            let Some(from) = to_socket_addr(&self.names[i]) else {
                continue;
            };
            let base = i * self.slot;
            let mut off = 0;
            while off < len {
                let end = (off + seg).min(len);
                f(from, &mut self.buf[base + off..base + end]);
                off = end;
            }
        }
    }
}

/// Send side: datagrams collected during a flush, sent with one `sendmmsg`. Runs of
/// datagrams to the same peer with the same size go as one GSO message (`UDP_SEGMENT`) where
/// the kernel supports it: one trip through the stack for up to 64 datagrams.
pub(crate) struct SendBatch {
    buf: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<SocketAddr>,
    dests: Vec<libc::sockaddr_storage>,
    dest_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    groups: Vec<(usize, usize)>,
    gso: bool,
}

// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub(crate) fn new() -> SendBatch {
        SendBatch {
            buf: vec![0; BATCH * SLOT],
            lens: Vec::with_capacity(BATCH),
            addrs: Vec::with_capacity(BATCH),
            // SAFETY: zeroed plain C structs are valid.
            dests: vec![unsafe { mem::zeroed() }; BATCH],
            dest_lens: vec![0; BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            hdrs: vec![unsafe { mem::zeroed() }; BATCH],
            cmsgs: vec![[0; CMSG_WORDS]; BATCH],
            groups: Vec::with_capacity(BATCH),
            gso: true,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.lens.len() == BATCH
    }

    /// Whether segmentation offload is in use (it is turned off if the kernel refuses it).
    #[cfg(test)]
    pub(crate) fn gso(&self) -> bool {
        self.gso
    }

    /// The slot for the next datagram (write into it, then `push`).
    #[cfg(test)]
    pub(crate) fn slot(&mut self) -> &mut [u8] {
        let i = self.lens.len().min(BATCH - 1);
        &mut self.buf[i * SLOT..(i + 1) * SLOT]
    }

    /// The free slots, contiguous, `SLOT` bytes apart, and how many there are (write into
    /// them, then `commit`).
    pub(crate) fn free_slots(&mut self) -> (&mut [u8], usize) {
        let used = self.lens.len().min(BATCH);
        (&mut self.buf[used * SLOT..], BATCH - used)
    }

    /// Commits `lens.len()` datagrams to `to`, written into the first free slots.
    pub(crate) fn commit(&mut self, to: SocketAddr, lens: &[usize]) {
        for &len in lens {
            self.push(to, len);
        }
    }

    /// Commits the datagram written into `slot()`.
    pub(crate) fn push(&mut self, to: SocketAddr, len: usize) {
        let i = self.lens.len();
        if i < BATCH {
            self.dest_lens[i] = from_socket_addr(&to, &mut self.dests[i]);
            self.addrs.push(to);
            self.lens.push(len.min(SLOT));
        }
    }

    /// The committed datagrams, `SLOT` bytes apart, and their lengths (to seal them in place).
    pub(crate) fn committed_mut(&mut self) -> (&mut [u8], &mut [usize]) {
        let n = self.lens.len();
        (&mut self.buf[..n * SLOT], &mut self.lens[..])
    }

    /// Datagram `i` and its destination.
    pub(crate) fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let len = *self.lens.get(i)?;
        Some((*self.addrs.get(i)?, &self.buf[i * SLOT..i * SLOT + len]))
    }

    /// Splits the batch into messages: GSO runs (same peer, same size, the last one may be
    /// shorter) or single datagrams.
    fn group(&mut self) {
        self.groups.clear();
        let n = self.lens.len();
        let mut i = 0;
        while i < n {
            let mut j = i + 1;
            if self.gso {
                let size = self.lens[i];
                while j < n
                    && j - i < GSO_MAX_SEGMENTS
                    && self.addrs[j] == self.addrs[i]
                    && self.lens[j] <= size
                    && size * (j - i + 1) <= 65_000
                {
                    let shorter = self.lens[j] < size;
                    j += 1;
                    if shorter {
                        break;
                    }
                }
            }
            self.groups.push((i, j - i));
            i = j;
        }
    }

    /// Sends what is collected; returns how many datagrams went out (the rest stay for the
    /// caller to queue, in order). `WouldBlock` counts as zero sent.
    pub(crate) fn send(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let n = self.lens.len();
        if n == 0 {
            return Ok(0);
        }
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.buf[i * SLOT..].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
        }
        self.group();
        for (g, &(start, count)) in self.groups.iter().enumerate() {
            // SAFETY: zeroed msghdr is valid; pointed at our own storage.
            let mut h: libc::msghdr = unsafe { mem::zeroed() };
            h.msg_name = (&mut self.dests[start] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.dest_lens[start];
            h.msg_iov = &mut self.iovs[start];
            h.msg_iovlen = count as _;
            if count > 1 {
                let control = &mut self.cmsgs[g];
                h.msg_control = control.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure size computation.
                h.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
                // SAFETY: msg_control points to CMSG_WORDS u64s, more than CMSG_SPACE(2).
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(
                        libc::CMSG_DATA(c) as *mut u16,
                        self.lens[start] as u16,
                    );
                }
            }
            self.hdrs[g] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        let fd = socket.as_raw_fd();
        let msgs = self.groups.len() as libc::c_uint;
        // SAFETY: `hdrs` holds `msgs` initialised headers pointing into `self`'s buffers.
        let r = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), msgs, libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(0);
            }
            let gso_refused = matches!(
                e.raw_os_error(),
                Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::ENOPROTOOPT)
            );
            if self.gso && self.groups.iter().any(|g| g.1 > 1) && gso_refused {
                // This kernel or route cannot segment: send plain from now on.
                self.gso = false;
                return self.send(socket);
            }
            return Err(e);
        }
        Ok(self.groups.iter().take(r as usize).map(|g| g.1).sum())
    }

    /// Empties the batch.
    pub(crate) fn clear(&mut self) {
        self.lens.clear();
        self.addrs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `sizes` through a SendBatch and reads them back with `gro` on or off; checks
    /// every datagram arrives whole, in order, with its content.
    async fn round_trip(sizes: &[usize], gro: bool) -> (bool, bool) {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = b.local_addr().unwrap();
        let mut rx = RecvBatch::new(&b, gro);
        let mut tx = SendBatch::new();
        for (k, &n) in sizes.iter().enumerate() {
            tx.slot()[..n].fill(k as u8);
            tx.push(to, n);
        }
        assert_eq!(tx.send(&a).unwrap(), sizes.len());
        let mut got: Vec<(usize, u8)> = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < sizes.len() && std::time::Instant::now() < deadline {
            b.readable().await.unwrap();
            if rx.recv(&b).is_ok() {
                rx.for_each(|from, d| {
                    assert_eq!(from, a.local_addr().unwrap());
                    assert!(d.iter().all(|&x| x == d[0]));
                    got.push((d.len(), d[0]));
                });
            }
        }
        let want: Vec<(usize, u8)> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| (n, k as u8))
            .collect();
        assert_eq!(got, want);
        (tx.gso(), rx.gro())
    }

    #[tokio::test]
    async fn gso_runs_and_gro_trains_split_back_into_datagrams() {
        // A run of equal sizes with a shorter tail (one GSO message), then mixed sizes.
        let mut sizes = vec![1200; 20];
        sizes.push(300);
        sizes.extend([100, 1400, 1400, 50]);
        let (gso, gro) = round_trip(&sizes, true).await;
        assert!(gso, "loopback supports UDP GSO on this kernel");
        assert!(gro);
        round_trip(&sizes, false).await;
    }

    #[test]
    fn socket_addresses_round_trip() {
        for a in ["127.0.0.1:4000", "[::1]:5000", "[fe80::1%2]:6000"] {
            let addr: SocketAddr = a.parse().unwrap();
            // SAFETY: zeroed storage is valid.
            let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
            from_socket_addr(&addr, &mut ss);
            assert_eq!(to_socket_addr(&ss), Some(addr));
        }
    }
}
