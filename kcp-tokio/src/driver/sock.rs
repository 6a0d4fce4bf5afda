//! The driver's socket: Tokio's UDP socket, or, with a receive hold (Linux), the same socket
//! with its arrivals reported through an epoll set of its own that reports once and is
//! armed again only when the driver waits for an arrival: after a hold, timed by a timerfd,
//! it reads first and waits only if that read found nothing.
//!
//! Why: Tokio's reactor wakes its thread for every datagram that reaches an idle socket. A
//! server with 10,000 sessions exchanging a message a second each receives a datagram every
//! 30-60 µs, and each one costs a sleep, a wake-up and a receive call of its own (a third of
//! such a server's CPU in a profile). With a hold the driver, after a receive turn, leaves
//! the socket unwatched for the hold and then reads everything that arrived meanwhile in one
//! batch: arrivals during the hold wake nobody. Tokio registers its UDP sockets for reading
//! whatever the task polls, so the held socket is registered with Tokio for writability
//! only, and readability comes from a one-shot epoll set (`EPOLLONESHOT`) that Tokio
//! watches in its place: it reports the first arrival and is silent until armed again. The
//! hold's timerfd is registered with Tokio on its own.

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Why [`Sock::readable`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// The socket reported an arrival.
    Arrived,
    /// A receive hold is over. Datagrams that came during it are likely waiting, unreported:
    /// reading at once saves re-arming the socket's entry and a wait that would return at
    /// once (three system calls and a pass through the runtime per turn at a busy server).
    /// Receive holds exist on Linux only; the driver's match on it is the same everywhere.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    HoldOver,
}

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
    /// read turn disarmed it and no hold runs; a hold's end is reported as such
    /// ([`Ready::HoldOver`]) without arming it: the caller reads at once, and calls
    /// [`end_hold`](Self::end_hold) if nothing came.
    pub(crate) async fn readable(&self) -> io::Result<Ready> {
        match self {
            Sock::Plain(s) => s.readable().await.map(|()| Ready::Arrived),
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

    /// Starts a receive hold of `d` (a held socket only): until it ends, arrivals wake
    /// nobody and [`readable`](Self::readable) waits.
    pub(crate) fn hold(&self, d: std::time::Duration) -> io::Result<()> {
        match self {
            Sock::Plain(_) => {
                let _ = d;
                Ok(())
            }
            #[cfg(target_os = "linux")]
            Sock::Held(h) => h.hold(d),
        }
    }

    /// Ends a hold early (a held socket only): a read at a hold's end found nothing, so the
    /// next [`readable`](Self::readable) waits for an arrival instead of for the hold's timer
    /// (an idle socket would otherwise wake once per hold).
    pub(crate) fn end_hold(&self) -> io::Result<()> {
        match self {
            Sock::Plain(_) => Ok(()),
            #[cfg(target_os = "linux")]
            Sock::Held(h) => h.end_hold(),
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
    use std::time::Duration;

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    use super::Ready;

    /// The set's entry for the socket.
    const SOCKET: u64 = 0;

    /// A UDP socket Tokio watches for writability only, the epoll set that reports its
    /// arrivals (a one-shot entry), and the timer that ends a hold (a timerfd, microsecond
    /// resolution where Tokio's timers have milliseconds), which Tokio watches directly:
    /// its expiry needs no look into the set to tell it from an arrival (a system call per
    /// turn saved), and no read either (Tokio's edge-triggered registration reports every
    /// expiry, and setting the timer again clears the count).
    pub(crate) struct Held {
        socket: AsyncFd<std::net::UdpSocket>,
        set: AsyncFd<OwnedFd>,
        timer: AsyncFd<OwnedFd>,
        /// Whether the socket's entry in `set` is armed (it disarms when it reports).
        armed: AtomicBool,
        /// Whether a hold runs (the timer is set and has not been seen to fire).
        holding: AtomicBool,
    }

    fn ctl(set: RawFd, op: libc::c_int, fd: RawFd, events: i32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: data,
        };
        // SAFETY: `set` and `fd` are open descriptors owned by `Held`; `ev` lives across
        // the call.
        if unsafe { libc::epoll_ctl(set, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// A new descriptor from a system call's result.
    fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    impl Held {
        pub(super) fn new(socket: UdpSocket) -> io::Result<Held> {
            // Out of Tokio's reactor, back in for writability only.
            let socket = socket.into_std()?;
            socket.set_nonblocking(true)?;
            // SAFETY: plain system calls; `owned` checks the results.
            let set = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
            let timer = owned(unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            })?;
            let oneshot = libc::EPOLLIN | libc::EPOLLONESHOT;
            ctl(
                set.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                socket.as_raw_fd(),
                oneshot,
                SOCKET,
            )?;
            // SAFETY: the descriptors are owned by the values registered, which the
            // `AsyncFd`s own until they are dropped: open and the same all along.
            let (socket, set, timer) = unsafe {
                (
                    AsyncFd::register_with_interest(socket, Interest::WRITABLE)?,
                    AsyncFd::register_with_interest(set, Interest::READABLE)?,
                    AsyncFd::register_with_interest(timer, Interest::READABLE)?,
                )
            };
            Ok(Held {
                socket,
                set,
                timer,
                armed: AtomicBool::new(true),
                holding: AtomicBool::new(false),
            })
        }

        pub(super) fn socket(&self) -> &std::net::UdpSocket {
            self.socket.get_ref()
        }

        /// Sets the hold's timer to `value` (zero: disarmed).
        fn set_timer(&self, value: libc::timespec) -> io::Result<()> {
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: value,
            };
            // SAFETY: the timer is open; `spec` lives across the call; no old value asked.
            let r = unsafe {
                libc::timerfd_settime(
                    self.timer.get_ref().as_raw_fd(),
                    0,
                    &spec,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Starts a hold of `d`: the socket's entry is not armed again before it ends.
        pub(super) fn hold(&self, d: Duration) -> io::Result<()> {
            self.set_timer(libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                // At least 1 ns: a zero value would disarm the timer. Below 10^9, so it fits
                // a 32-bit `c_long` too.
                tv_nsec: d.subsec_nanos().max(1) as libc::c_long,
            })?;
            self.holding.store(true, Ordering::Release);
            Ok(())
        }

        /// Ends the running hold now: its timer is disarmed and the socket's entry is armed
        /// by the next wait.
        pub(super) fn end_hold(&self) -> io::Result<()> {
            self.set_timer(libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            })?;
            self.holding.store(false, Ordering::Release);
            Ok(())
        }

        pub(super) async fn readable(&self) -> io::Result<Ready> {
            if self.holding.load(Ordering::Acquire) {
                // While a hold runs the socket's entry is disarmed: only its end is awaited.
                let mut guard = self.timer.readable().await?;
                guard.clear_ready();
                self.holding.store(false, Ordering::Release);
                // The entry stays disarmed: the caller reads now, and the next wait arms it.
                return Ok(Ready::HoldOver);
            }
            let set = self.set.get_ref().as_raw_fd();
            loop {
                if !self.armed.swap(true, Ordering::AcqRel) {
                    // Arms the entry; if datagrams wait already, the set reports at once.
                    ctl(
                        set,
                        libc::EPOLL_CTL_MOD,
                        self.socket.get_ref().as_raw_fd(),
                        libc::EPOLLIN | libc::EPOLLONESHOT,
                        SOCKET,
                    )?;
                }
                let mut guard = self.set.readable().await?;
                // Takes the report (which disarms the entry) so the set is quiet.
                let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 1];
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
                    return Ok(Ready::Arrived);
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
