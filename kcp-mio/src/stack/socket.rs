//! Socket options a [`KcpConfig`](super::KcpConfig) sets, through [`SockRef`] so that std,
//! mio and Tokio sockets all take them.

use std::io;

use socket2::SockRef;

use super::invalid;

/// Sets both socket buffers (the kernel may cap them at `net.core.rmem_max`/`wmem_max`).
pub fn set_sockbuf(socket: SockRef<'_>, bytes: usize) -> io::Result<()> {
    socket.set_recv_buffer_size(bytes)?;
    socket.set_send_buffer_size(bytes)
}

/// The largest socket receive buffer the system lets an unprivileged process ask for, in
/// bytes (Linux: `net.core.rmem_max`); `None` where it cannot be read (other systems).
pub fn receive_buffer_cap() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Sets the DSCP code point (IPv4 TOS or IPv6 traffic class = dscp << 2).
pub fn set_dscp(socket: SockRef<'_>, dscp: u8) -> io::Result<()> {
    if dscp > 63 {
        return Err(invalid(format!("DSCP is 0..=63, got {dscp}")));
    }
    let tos = u32::from(dscp) << 2;
    if socket.local_addr()?.is_ipv6() {
        set_tclass_v6(&socket, tos)
    } else {
        socket.set_tos_v4(tos)
    }
}

#[cfg(any(
    target_os = "android",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "linux",
    target_os = "macos",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "illumos",
))]
fn set_tclass_v6(s: &SockRef<'_>, tclass: u32) -> io::Result<()> {
    s.set_tclass_v6(tclass)
}

/// socket2 has no `IPV6_TCLASS` setter here (Windows among others).
#[cfg(not(any(
    target_os = "android",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "linux",
    target_os = "macos",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "illumos",
)))]
fn set_tclass_v6(_: &SockRef<'_>, _: u32) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "DSCP on IPv6 sockets is not supported on this system",
    ))
}
