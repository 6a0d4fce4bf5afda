//! Batched socket I/O on Linux: `recvmmsg` and `sendmmsg`, one system call for up to
//! [`BATCH`] datagrams. Other systems use one call per datagram (see `driver.rs`).
//!
//! The buffers, iovecs and headers are allocated once per socket and reused.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use tokio::net::UdpSocket;

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;
/// Bytes per datagram slot: the largest UDP payload we accept.
pub(crate) const SLOT: usize = 2048;

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

/// Receive side: `BATCH` slots.
pub(crate) struct RecvBatch {
    buf: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in iovs/hdrs only ever point into this struct's own buffers and are
// rebuilt before every use.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub(crate) fn new() -> RecvBatch {
        RecvBatch {
            buf: vec![0; BATCH * SLOT],
            // SAFETY: all-zero is a valid value for these plain C structs.
            names: vec![unsafe { mem::zeroed() }; BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            hdrs: vec![unsafe { mem::zeroed() }; BATCH],
        }
    }

    /// Reads up to `BATCH` datagrams without blocking; `WouldBlock` when there is none.
    pub(crate) fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.buf[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            // SAFETY: zeroed msghdr is valid; we then point it at our own storage.
            let mut h: libc::msghdr = unsafe { mem::zeroed() };
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            self.hdrs[i] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        let fd = socket.as_raw_fd();
        let hdrs = self.hdrs.as_mut_ptr();
        socket.try_io(tokio::io::Interest::READABLE, || {
            // SAFETY: `hdrs` points to BATCH initialised mmsghdr whose buffers live in `self`
            // for the duration of the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs,
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
    }

    /// Datagram `i` of the last `recv` and its source (`None` for an unknown family).
    pub(crate) fn get(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        let len = (self.hdrs.get(i)?.msg_len as usize).min(SLOT);
        let from = to_socket_addr(self.names.get(i)?)?;
        Some((from, &mut self.buf[i * SLOT..i * SLOT + len]))
    }
}

/// Send side: datagrams collected during a flush, sent with one `sendmmsg`.
pub(crate) struct SendBatch {
    buf: Vec<u8>,
    lens: Vec<usize>,
    dests: Vec<libc::sockaddr_storage>,
    dest_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub(crate) fn new() -> SendBatch {
        SendBatch {
            buf: vec![0; BATCH * SLOT],
            lens: Vec::with_capacity(BATCH),
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
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.lens.len() == BATCH
    }

    /// The slot for the next datagram (write into it, then `push`).
    pub(crate) fn slot(&mut self) -> &mut [u8] {
        let i = self.lens.len().min(BATCH - 1);
        &mut self.buf[i * SLOT..(i + 1) * SLOT]
    }

    /// Commits the datagram written into `slot()`.
    pub(crate) fn push(&mut self, to: SocketAddr, len: usize) {
        let i = self.lens.len();
        if i < BATCH {
            self.dest_lens[i] = from_socket_addr(&to, &mut self.dests[i]);
            self.lens.push(len.min(SLOT));
        }
    }

    /// Datagram `i` and its destination.
    pub(crate) fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let len = *self.lens.get(i)?;
        Some((
            to_socket_addr(self.dests.get(i)?)?,
            &self.buf[i * SLOT..i * SLOT + len],
        ))
    }

    /// Sends what is collected; returns how many went out (the rest stay for the caller to
    /// queue). `WouldBlock` counts as zero sent.
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
            // SAFETY: zeroed msghdr is valid; pointed at our own storage.
            let mut h: libc::msghdr = unsafe { mem::zeroed() };
            h.msg_name = (&mut self.dests[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.dest_lens[i];
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            self.hdrs[i] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        let fd = socket.as_raw_fd();
        // SAFETY: `hdrs` holds n initialised headers pointing into `self`'s buffers.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(r as usize)
    }

    /// Forgets the first `n` datagrams (sent), keeping the rest in order.
    pub(crate) fn clear(&mut self) {
        self.lens.clear();
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
}
