//! What an endpoint tells its adapter: session ids, events, and why a session ended.

use core::fmt;

/// A session of an [`Endpoint`](super::Endpoint). Ids are not reused while the endpoint lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    pub(super) idx: u32,
    pub(super) gen: u32,
}

impl SessionId {
    /// The session's slot in its endpoint: small and dense (below the most sessions the
    /// endpoint has held at once), so an application can keep per-session state in a `Vec`
    /// indexed by it instead of a map keyed by the id (one memory access instead of a hash
    /// probe, which at thousands of sessions is a cache miss per event). A slot is reused once
    /// its session has ended: keep the id with the state and compare it, since a later session
    /// in the same slot has another id.
    pub fn index(self) -> usize {
        self.idx as usize
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// No valid datagram from the peer for the idle timeout.
    IdleTimeout,
    /// A segment was sent `dead_link` times without acknowledgement.
    DeadLink,
    /// `shutdown` finished: everything queued was acknowledged.
    Shutdown,
    /// `shutdown` gave up: data was still unacknowledged at its deadline.
    ShutdownTimeout,
    /// Closed locally with [`Endpoint::close`](super::Endpoint::close).
    Closed,
    /// Not reported any more: a first flight the peer never confirms stays a half-open
    /// entry, which is not a session (counted in `EndpointStats::unconfirmed`).
    Unconfirmed,
    /// A session a peer opened waited longer than `accept_timeout_ms` for
    /// [`Endpoint::accept`](super::Endpoint::accept).
    NotAccepted,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::IdleTimeout => "idle timeout: nothing heard from the peer",
            CloseReason::DeadLink => {
                "dead link: data not acknowledged after repeated retransmission"
            }
            CloseReason::Shutdown => "shut down: all data acknowledged",
            CloseReason::ShutdownTimeout => "shutdown timed out with data unacknowledged",
            CloseReason::Closed => "closed locally",
            CloseReason::Unconfirmed => "the peer never confirmed the session it opened",
            CloseReason::NotAccepted => "the application did not accept the session in time",
        })
    }
}

/// Something an adapter should react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A session queued for [`Endpoint::accept`](super::Endpoint::accept).
    Incoming,
    /// Data became readable.
    Readable(SessionId),
    /// Room opened in the send queue.
    Writable(SessionId),
    /// The session ended; it is gone from the endpoint.
    Closed(SessionId, CloseReason),
}
