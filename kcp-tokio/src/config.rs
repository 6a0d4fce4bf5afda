//! What the Tokio adapter reads from the shared [`KcpConfig`]: one configuration type for
//! both adapters, defined in kcp-mio's runtime-free stack and re-exported here.

use std::io;

use kcp_core::endpoint::EndpointConfig;
use kcp_mio::stack::{AdapterCrypt, CryptPlacement};
use socket2::SockRef;

pub use kcp_mio::{KcpConfig, Timeouts};

/// The linger of dropped streams in ms (`None`: discard at once).
pub(crate) fn linger_ms(config: &KcpConfig) -> Option<u32> {
    let t = config.timeouts().linger;
    (!t.is_zero()).then(|| t.as_millis().min(u32::MAX as u128) as u32)
}

/// `shutdown`'s bound in ms.
pub(crate) fn shutdown_ms(config: &KcpConfig) -> u32 {
    config.timeouts().shutdown.as_millis().min(u32::MAX as u128) as u32
}

/// Applies socket options to a socket this configuration will drive.
pub(crate) fn apply_socket(config: &KcpConfig, socket: SockRef<'_>) -> io::Result<()> {
    config.apply_socket(socket)
}

/// The endpoint's settings, with encryption left to the driver (sessions reserve the
/// header; the returned maker builds the driver's sealing and opening layers).
pub(crate) fn endpoint_config(
    config: &KcpConfig,
    accept: bool,
) -> io::Result<(EndpointConfig, Option<AdapterCrypt>)> {
    config.endpoint_config_with(accept, CryptPlacement::Adapter)
}

/// Sets both socket buffers (the kernel may cap them at `net.core.rmem_max`/`wmem_max`).
pub(crate) fn set_sockbuf(socket: SockRef<'_>, bytes: usize) -> io::Result<()> {
    kcp_mio::stack::set_sockbuf(socket, bytes)
}

/// Sets the DSCP code point (IPv4 TOS or IPv6 traffic class = dscp << 2).
pub(crate) fn set_dscp(socket: SockRef<'_>, dscp: u8) -> io::Result<()> {
    kcp_mio::stack::set_dscp(socket, dscp)
}

#[cfg(test)]
thread_local! {
    /// Where drivers spawned from this thread start their millisecond clock (tests of the
    /// 2^32 ms wrap; `#[tokio::test]` runs on the test's own thread).
    pub(crate) static CLOCK_OFFSET_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The clock offset for a driver spawned now (0 outside tests).
pub(crate) fn clock_offset_ms() -> u64 {
    #[cfg(test)]
    {
        CLOCK_OFFSET_MS.with(|c| c.get())
    }
    #[cfg(not(test))]
    {
        0
    }
}
