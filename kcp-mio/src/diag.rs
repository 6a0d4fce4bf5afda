//! Diagnostic events of both adapters through the [`log`](https://docs.rs/log) crate, behind
//! the `log` feature (kcp-tokio's `log` feature turns it on). Without the feature these
//! functions are empty and inlined away: no cost. With it, any `log` backend (env_logger,
//! `tracing` through tracing-log) receives, under the target `kcp`:
//!
//! | event | level | fields |
//! |---|---|---|
//! | a session opened (connect) or accepted | debug | session id, peer, direction |
//! | a session ended | debug | session id, [`CloseReason`] |
//! | a datagram refused by admission (backlog, session limit, half-open limits) | debug | source, reason |
//! | any other datagram dropped (authentication, not a first flight, late, malformed) | trace | source, reason |
//! | a socket's receive buffer granted smaller than the receive window needs | warn | bytes granted, bytes needed |

use std::net::SocketAddr;

use kcp_core::endpoint::{CloseReason, EndpointError, SessionId};

/// A session opened: `passive` when a peer opened it (accepted), else by `connect`.
#[inline]
pub fn session_opened(id: SessionId, peer: SocketAddr, passive: bool) {
    #[cfg(feature = "log")]
    log::debug!(
        target: "kcp",
        "session {id:?} {} {peer}",
        if passive { "accepted from" } else { "opened to" }
    );
    #[cfg(not(feature = "log"))]
    let _ = (id, peer, passive);
}

/// A session ended.
#[inline]
pub fn session_closed(id: SessionId, reason: CloseReason) {
    #[cfg(feature = "log")]
    log::debug!(target: "kcp", "session {id:?} closed: {reason}");
    #[cfg(not(feature = "log"))]
    let _ = (id, reason);
}

/// What the endpoint did with a datagram from `from`: refusals and drops are logged.
#[inline]
pub fn datagram(from: SocketAddr, result: &Result<(), EndpointError>) {
    #[cfg(feature = "log")]
    if let Err(e) = result {
        use kcp_core::endpoint::DropReason;
        match e {
            EndpointError::Rejected(DropReason::Refused) => {
                log::debug!(target: "kcp", "admission refused a session from {from}")
            }
            e => log::trace!(target: "kcp", "datagram from {from} dropped: {e}"),
        }
    }
    #[cfg(not(feature = "log"))]
    let _ = (from, result);
}

/// The kernel granted a socket's receive buffer `granted` bytes where a full receive window
/// needs `wanted` (the system's cap, `net.core.rmem_max` on Linux, is lower).
#[inline]
pub fn receive_buffer_short(granted: usize, wanted: usize) {
    #[cfg(feature = "log")]
    log::warn!(
        target: "kcp",
        "socket receive buffer {granted} bytes, a full receive window needs {wanted}: \
         datagrams are lost when the receiver stalls (raise net.core.rmem_max)"
    );
    #[cfg(not(feature = "log"))]
    let _ = (granted, wanted);
}
