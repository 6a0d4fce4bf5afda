//! Linux: `sendmmsg` with UDP GSO, `recvmmsg` with UDP GRO. The message headers, iovecs and
//! control-message buffers are allocated once and rebuilt (pointers only) before every call.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::SockRef;

use super::{UdpStats, BATCH, FIRST_BATCH, SLOT};

/// Linux uapi `UDP_SEGMENT` (GSO) and `UDP_GRO` socket options / control messages.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// The kernel's limit on segments per GSO send (64 on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Largest GSO message (the IP packet limit, with room for headers).
const GSO_MAX_BYTES: usize = 65_000;
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

/// Asks the kernel to coalesce received datagrams (UDP GRO); false if it cannot.
pub(super) fn enable_gro(socket: &SockRef<'_>) -> bool {
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
}

/// What a `sendmmsg` round did.
pub(super) enum Sent {
    /// The first `k` datagrams are sent; the rest (if any) met `WouldBlock`.
    Done(usize),
    /// `sendmmsg` is not implemented: nothing was sent.
    Unsupported,
    /// The first `k` are sent; the kernel refused datagram `k` for a reason of its own (an
    /// unreachable destination...).
    Failed(usize),
}

/// Send-side message headers for one batch.
pub(super) struct SendMsgs {
    dests: Vec<libc::sockaddr_storage>,
    dest_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    /// Messages of the batch: (first datagram, datagrams).
    groups: Vec<(usize, usize)>,
}

// SAFETY: the raw pointers in iovs/hdrs only ever point into buffers owned by the `Sender`
// that owns this, and are rebuilt before every use.
unsafe impl Send for SendMsgs {}
// SAFETY: as above; `&SendMsgs` gives no access to the pointers.
unsafe impl Sync for SendMsgs {}

impl SendMsgs {
    pub(super) fn new() -> SendMsgs {
        let mut m = SendMsgs {
            dests: Vec::new(),
            dest_lens: Vec::new(),
            iovs: Vec::new(),
            hdrs: Vec::new(),
            cmsgs: Vec::new(),
            groups: Vec::with_capacity(FIRST_BATCH),
        };
        m.grow(FIRST_BATCH);
        m
    }

    /// Room for `n` datagrams' headers (they grow with the sender's batch).
    fn grow(&mut self, n: usize) {
        if self.hdrs.len() >= n {
            return;
        }
        // SAFETY: all-zero is a valid value for these plain C structs.
        self.dests.resize(n, unsafe { mem::zeroed() });
        self.dest_lens.resize(n, 0);
        self.iovs.resize(
            n,
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        );
        // SAFETY: as above.
        self.hdrs.resize(n, unsafe { mem::zeroed() });
        self.cmsgs.resize(n, [0; CMSG_WORDS]);
    }

    /// Splits datagrams `start..` into messages: GSO runs (same peer, same size, the last one
    /// may be shorter) or single datagrams.
    fn group(&mut self, lens: &[usize], addrs: &[SocketAddr], start: usize, gso: bool) {
        self.groups.clear();
        let n = lens.len();
        let mut i = start;
        while i < n {
            let mut j = i + 1;
            if gso {
                let size = lens[i];
                while j < n
                    && j - i < GSO_MAX_SEGMENTS
                    && addrs[j] == addrs[i]
                    && lens[j] <= size
                    && size * (j - i + 1) <= GSO_MAX_BYTES
                {
                    let shorter = lens[j] < size;
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

    /// Points the headers of the current groups at the batch.
    fn build(&mut self, lens: &[usize]) {
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
                // SAFETY: msg_control points to CMSG_WORDS u64s, more than CMSG_SPACE(2), so
                // the first header and its data fit.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, lens[start] as u16);
                }
            }
            self.hdrs[g] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
    }

    /// Sends datagram `i` of `buf[i * SLOT..][..lens[i]]` to `addrs[i]`, as few `sendmmsg`
    /// calls as the kernel allows. Turns `gso` off (and goes on without it) if the kernel
    /// refuses segmentation.
    pub(super) fn send(
        &mut self,
        socket: &SockRef<'_>,
        buf: &mut [u8],
        lens: &[usize],
        addrs: &[SocketAddr],
        gso: &mut bool,
        stats: &mut UdpStats,
    ) -> Sent {
        let n = lens.len().min(addrs.len()).min(BATCH);
        self.grow(n);
        for i in 0..n {
            self.dest_lens[i] = from_socket_addr(&addrs[i], &mut self.dests[i]);
            let len = lens[i].min(SLOT);
            self.iovs[i] = libc::iovec {
                iov_base: buf[i * SLOT..].as_mut_ptr().cast(),
                iov_len: len,
            };
        }
        let lens = &lens[..n];
        let fd = socket.as_raw_fd();
        let mut done = 0;
        'regroup: while done < n {
            self.group(lens, addrs, done, *gso);
            self.build(lens);
            let mut g = 0;
            while g < self.groups.len() {
                let msgs = (self.groups.len() - g) as libc::c_uint;
                stats.send_calls += 1;
                // SAFETY: `hdrs[g..]` holds `msgs` initialised headers pointing into `self`
                // and into `buf`, both alive for the call.
                let r = unsafe {
                    libc::sendmmsg(fd, self.hdrs.as_mut_ptr().add(g), msgs, libc::MSG_DONTWAIT)
                };
                if r > 0 {
                    for &(_, count) in &self.groups[g..g + r as usize] {
                        done += count;
                        stats.datagrams_sent += count as u64;
                    }
                    g += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock || r == 0 {
                    stats.would_block += 1;
                    return Sent::Done(done);
                }
                if e.raw_os_error() == Some(libc::ENOSYS) && done == 0 {
                    return Sent::Unsupported;
                }
                let gso_refused = matches!(
                    e.raw_os_error(),
                    Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::ENOPROTOOPT)
                );
                if *gso && self.groups[g].1 > 1 && gso_refused {
                    // This kernel or route cannot segment: send plain from now on.
                    *gso = false;
                    continue 'regroup;
                }
                return Sent::Failed(done);
            }
        }
        Sent::Done(done)
    }
}

/// Receive-side message headers for one batch of `count` slots.
pub(super) struct RecvMsgs {
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
}

// SAFETY: as for SendMsgs: the pointers point into the owning `Receiver`'s buffers and are
// rebuilt before every call.
unsafe impl Send for RecvMsgs {}
// SAFETY: as above.
unsafe impl Sync for RecvMsgs {}

impl RecvMsgs {
    pub(super) fn new(count: usize) -> RecvMsgs {
        RecvMsgs {
            // SAFETY: all-zero is a valid value for these plain C structs.
            names: vec![unsafe { mem::zeroed() }; count],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                count
            ],
            // SAFETY: as above.
            hdrs: vec![unsafe { mem::zeroed() }; count],
            cmsgs: vec![[0; CMSG_WORDS]; count],
        }
    }

    /// Room for `count` slots' headers (they grow with the receiver's batch).
    pub(super) fn grow(&mut self, count: usize) {
        if self.hdrs.len() >= count {
            return;
        }
        // SAFETY: all-zero is a valid value for these plain C structs.
        self.names.resize(count, unsafe { mem::zeroed() });
        self.iovs.resize(
            count,
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        );
        // SAFETY: as above.
        self.hdrs.resize(count, unsafe { mem::zeroed() });
        self.cmsgs.resize(count, [0; CMSG_WORDS]);
    }

    /// One `recvmmsg` into `buf`'s slots; pushes (slot, length, segment size, source) per
    /// message to `got`. `WouldBlock` when nothing is queued; else whether the kernel filled
    /// every slot offered (if not, its queue was empty when the call returned: `recvmmsg`
    /// stops at the first empty read).
    pub(super) fn recv(
        &mut self,
        socket: &SockRef<'_>,
        buf: &mut [u8],
        slot: usize,
        gro: bool,
        got: &mut Vec<(usize, usize, usize, SocketAddr)>,
        truncated: &mut u64,
    ) -> io::Result<bool> {
        let count = self.hdrs.len().min(buf.len() / slot.max(1));
        for i in 0..count {
            self.iovs[i] = libc::iovec {
                iov_base: buf[i * slot..].as_mut_ptr().cast(),
                iov_len: slot,
            };
            // SAFETY: zeroed msghdr is valid; we then point it at our own storage.
            let mut h: libc::msghdr = unsafe { mem::zeroed() };
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            if gro {
                h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
                h.msg_controllen = mem::size_of::<[u64; CMSG_WORDS]>() as _;
            }
            self.hdrs[i] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        // SAFETY: `hdrs` holds `count` initialised mmsghdr whose buffers live in `self` and
        // `buf` for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for i in 0..n as usize {
            if self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                // Larger than its slot: dropped, never passed on truncated.
                *truncated += 1;
                continue;
            }
            let len = (self.hdrs[i].msg_len as usize).min(slot);
            let seg = if gro {
                self.segment_size(i).unwrap_or(len)
            } else {
                len
            };
            if let Some(from) = to_socket_addr(&self.names[i]) {
                got.push((i, len, seg.max(1), from));
            }
        }
        Ok(n as usize >= count)
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn gso_groups_runs_to_one_peer_of_one_size() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let lens = [1000, 1000, 1000, 400, 1000, 1000, 1200, 1200];
        let addrs = [a, a, a, a, a, b, b, b];
        let mut m = SendMsgs::new();
        m.group(&lens, &addrs, 0, true);
        // A run with a shorter tail; a change of peer; a larger size starts a new run.
        assert_eq!(m.groups, [(0, 4), (4, 1), (5, 1), (6, 2)]);
        m.group(&lens, &addrs, 2, false);
        assert_eq!(m.groups.len(), 6);
    }
}
