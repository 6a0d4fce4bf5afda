//! The driver's socket: Tokio's UDP socket, or, with a receive hold (Linux), the same socket
//! with its arrivals reported through an epoll set of its own that reports once and is
//! armed again only when the driver wants to read.
//!
//! Why: Tokio's reactor wakes its thread for every datagram that reaches an idle socket. A
//! server with 10,000 sessions exchanging a message a second each receives a datagram every
//! 30-60 µs, and each one costs a sleep, a wake-up and a receive call of its own (a third of
//! such a server's CPU in a profile). With a hold the driver, after a receive turn, leaves
//! the socket unwatched for the hold and then reads everything that arrived meanwhile in one
//! batch: arrivals during the hold wake nobody. Tokio registers its UDP sockets for reading
//! whatever the task polls, so the held socket is registered with Tokio for writability
//! only, and readability comes from a one-shot epoll set (`EPOLLONESHOT`) that Tokio
//! watches in its place: it reports the first arrival and is silent until armed again.

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The driver's UDP socket.
pub(crate) enum Sock {
    /// Tokio's socket: woken for every arrival.
    Plain(UdpSocket),
    /// With a receive hold.
    #[cfg(target_os = "linux")]
    Held(held::Held),
}

impl Sock {
    /// `socket` as the driver uses it; `hold`: whether it reads after a hold (Linux only).
    pub(crate) fn new(socket: UdpSocket, hold: bool) -> io::Result<Sock> {
        if !hold {
            return Ok(Sock::Plain(socket));
        }
        #[cfg(target_os = "linux")]
        {
            Ok(Sock::Held(held::Held::new(socket)?))
        }
        #[cfg(not(target_os = "linux"))]
        {
            drop(socket);
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a receive hold needs Linux (epoll)",
            ))
        }
    }

    /// The socket for system calls and options.
    pub(crate) fn sock_ref(&self) -> SockRef<'_> {
        match self {
            Sock::Plain(s) => SockRef::from(s),
            #[cfg(target_os = "linux")]
            Sock::Held(h) => SockRef::from(h.socket()),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Sock::Plain(s) => s.local_addr(),
            #[cfg(target_os = "linux")]
            Sock::Held(h) => h.socket().local_addr(),
        }
    }

    /// Waits until datagrams may be waiting. With a hold, the epoll set is armed here if a
    /// read turn disarmed it.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Sock::Plain(s) => s.readable().await,
            #[cfg(target_os = "linux")]
            Sock::Held(h) => h.readable().await,
        }
    }

    /// Runs a receive call `f`: through Tokio's readiness on a plain socket (a `WouldBlock`
    /// clears it), directly on a held one (its epoll set is armed before the next wait).
    pub(crate) fn try_read<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match self {
            Sock::Plain(s) => s.try_io(Interest::READABLE, f),
            #[cfg(target_os = "linux")]
            Sock::Held(_) => f(),
        }
    }

    /// Waits until the socket may take datagrams again.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Sock::Plain(s) => s.writable().await,
            #[cfg(target_os = "linux")]
            Sock::Held(h) => h.writable().await,
        }
    }

    /// Runs a send call `f` through Tokio's write readiness (a `WouldBlock` clears it).
    pub(crate) fn try_write<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match self {
            Sock::Plain(s) => s.try_io(Interest::WRITABLE, f),
            #[cfg(target_os = "linux")]
            Sock::Held(h) => h.try_write(f),
        }
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Sock {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Sock::Plain(s) => s.as_fd(),
            #[cfg(target_os = "linux")]
            Sock::Held(h) => h.socket().as_fd(),
        }
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsSocket for Sock {
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        match self {
            Sock::Plain(s) => s.as_socket(),
        }
    }
}

#[cfg(target_os = "linux")]
mod held {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    /// A UDP socket Tokio watches for writability only, and the one-shot epoll set that
    /// reports its arrivals.
    pub(crate) struct Held {
        socket: AsyncFd<std::net::UdpSocket>,
        set: AsyncFd<OwnedFd>,
        /// Whether the socket's entry in `set` is armed (it disarms when it reports).
        armed: AtomicBool,
    }

    fn events() -> u32 {
        (libc::EPOLLIN | libc::EPOLLONESHOT) as u32
    }

    fn ctl(set: RawFd, op: libc::c_int, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: events(),
            u64: 0,
        };
        // SAFETY: `set` and `fd` are open descriptors owned by `Held`; `ev` lives across
        // the call.
        if unsafe { libc::epoll_ctl(set, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    impl Held {
        pub(super) fn new(socket: UdpSocket) -> io::Result<Held> {
            // Out of Tokio's reactor, back in for writability only.
            let socket = socket.into_std()?;
            socket.set_nonblocking(true)?;
            // SAFETY: plain system call; the result is checked before use.
            let set = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if set < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `set` is a new descriptor nobody else owns.
            let set = unsafe { OwnedFd::from_raw_fd(set) };
            ctl(set.as_raw_fd(), libc::EPOLL_CTL_ADD, socket.as_raw_fd())?;
            // SAFETY: both descriptors are owned by the values registered, which the
            // `AsyncFd`s own until they are dropped: open and the same all along.
            let (socket, set) = unsafe {
                (
                    AsyncFd::register_with_interest(socket, Interest::WRITABLE)?,
                    AsyncFd::register_with_interest(set, Interest::READABLE)?,
                )
            };
            Ok(Held {
                socket,
                set,
                armed: AtomicBool::new(true),
            })
        }

        pub(super) fn socket(&self) -> &std::net::UdpSocket {
            self.socket.get_ref()
        }

        pub(super) async fn readable(&self) -> io::Result<()> {
            let set = self.set.get_ref().as_raw_fd();
            loop {
                if !self.armed.swap(true, Ordering::AcqRel) {
                    // Arms the entry; if datagrams wait already, the set reports at once.
                    ctl(set, libc::EPOLL_CTL_MOD, self.socket.get_ref().as_raw_fd())?;
                }
                let mut guard = self.set.readable().await?;
                // Takes the report (which disarms the entry) so the set is quiet again.
                let mut ev = [libc::epoll_event { events: 0, u64: 0 }];
                // SAFETY: `set` is open; `ev` has room for the one event asked for.
                let n = unsafe { libc::epoll_wait(set, ev.as_mut_ptr(), 1, 0) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                guard.clear_ready();
                if n > 0 {
                    self.armed.store(false, Ordering::Release);
                    return Ok(());
                }
            }
        }

        pub(super) async fn writable(&self) -> io::Result<()> {
            let mut guard = self.socket.writable().await?;
            guard.retain_ready();
            Ok(())
        }

        pub(super) fn try_write<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
            self.socket.try_io(Interest::WRITABLE, |_| f())
        }
    }
}
