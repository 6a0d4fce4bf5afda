//! Why an endpoint call failed, and why a received datagram was dropped.

use core::fmt;

use crate::codec::CodecError;
use crate::config::ConfigError;
use crate::engine::{RecvError, SendError};
use crate::session::SessionError;

use super::admission::FirstFlightError;

/// Why an endpoint call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    /// No such session (closed, or never existed).
    UnknownSession,
    /// The session limit is reached.
    TooManySessions,
    /// A session with this address and conversation id exists already.
    Duplicate,
    /// Building the session failed.
    Config(ConfigError),
    /// The datagram was rejected (counted in the stats).
    Rejected(DropReason),
    /// Sending failed.
    Send(SendError),
    /// Receiving failed.
    Recv(RecvError),
    /// The session's write side was shut down ([`Endpoint::shutdown_write`](super::Endpoint::shutdown_write) or
    /// [`Endpoint::close_after_flush`](super::Endpoint::close_after_flush)): no more data can be queued.
    WriteClosed,
}

/// Why a received datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The endpoint's own layers rejected it (checksum, authentication...).
    Codec(CodecError),
    /// Too short to carry a KCP header.
    Short,
    /// No session, and it could not or may not open one.
    NoSession,
    /// Its (address, conv) was closed recently (a late datagram; no phantom session).
    RecentlyClosed,
    /// An unknown conversation whose datagram could not be a peer's first flight (see
    /// [`first_flight`](super::first_flight)).
    NotFirstFlight(FirstFlightError),
    /// The accept backlog, the session limit or a per-host limit is full.
    Refused,
    /// Longer than [`EndpointConfig::max_datagram`](super::EndpointConfig::max_datagram); not parsed.
    TooLong,
    /// A copy of a datagram the endpoint remembers (a replayed first flight or
    /// confirmation).
    Replayed,
    /// For a half-open entry and not its peer's answer: dropped unacknowledged (the peer
    /// retransmits it once the session exists).
    Unconfirmed,
    /// From a new address for a live session, and it did not move the session there (see
    /// [`EndpointConfig::migration`](super::EndpointConfig::migration)): not authenticated,
    /// a copy, not fresh, or of a conversation id several sessions have. What it carried,
    /// if the session's layers accepted it, was applied as from the session's own address.
    NotMigrated,
    /// The session rejected it.
    Session(SessionError),
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::UnknownSession => write!(f, "unknown session"),
            EndpointError::TooManySessions => write!(f, "session limit reached"),
            EndpointError::Duplicate => write!(f, "session exists already"),
            EndpointError::Config(e) => write!(f, "configuration: {e}"),
            EndpointError::Rejected(d) => write!(f, "datagram dropped: {d:?}"),
            EndpointError::Send(e) => write!(f, "send: {e}"),
            EndpointError::Recv(e) => write!(f, "recv: {e}"),
            EndpointError::WriteClosed => write!(f, "write side shut down"),
        }
    }
}

impl core::error::Error for EndpointError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            EndpointError::Config(e) => Some(e),
            EndpointError::Send(e) => Some(e),
            EndpointError::Recv(e) => Some(e),
            _ => None,
        }
    }
}
