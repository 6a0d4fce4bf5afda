//! [`KcpError`]: why a stream or listener call failed, inside the `io::Error` it returns.

use std::fmt;
use std::io;

use kcp_core::endpoint::CloseReason;

/// Why a [`KcpStream`](crate::KcpStream) or [`KcpListener`](crate::KcpListener) call failed.
///
/// Every error these types return is an [`io::Error`] whose inner error is a `KcpError`
/// (get it back with [`KcpError::of`], or `get_ref()` and `downcast_ref`), and whose
/// [`kind`](io::Error::kind) follows from it ([`KcpError::kind`]):
///
/// | how | kind |
/// |---|---|
/// | the session ended: idle timeout | `TimedOut` |
/// | the session ended: dead link | `ConnectionAborted` |
/// | the session ended: closed by us | `NotConnected` |
/// | a write after `shutdown` | `BrokenPipe` |
/// | `shutdown` gave up waiting for acknowledgements | `TimedOut` |
/// | a per-call read or write timeout (the session goes on) | `TimedOut` |
/// | the socket failed | the socket error's kind |
///
/// A per-call timeout and an idle timeout share the `TimedOut` kind; the `KcpError` tells
/// them apart ([`KcpError::is_session_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KcpError {
    /// The session ended and every call on it fails (reads after a local `shutdown` and an
    /// idle timeout read as end of stream instead).
    Ended(CloseReason),
    /// A write after [`shutdown`](tokio::io::AsyncWriteExt::shutdown): the write side is
    /// closed (TCP's `EPIPE`).
    WriteShutdown,
    /// [`shutdown`](tokio::io::AsyncWriteExt::shutdown) waited
    /// [`KcpConfig::shutdown_timeout`](crate::KcpConfig::shutdown_timeout) and data was still
    /// unacknowledged. The write side stays closed; the session and reading go on.
    ShutdownTimeout,
    /// A read waited longer than the read timeout. The session goes on.
    ReadTimeout,
    /// A write waited longer than the write timeout (for room in the send window). The
    /// session goes on.
    WriteTimeout,
    /// The socket failed with an error of this kind; its driver stopped and every session on
    /// it ended.
    Socket(io::ErrorKind),
}

impl KcpError {
    /// The `io::ErrorKind` of the `io::Error` that carries this error.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            KcpError::Ended(r) => match r {
                CloseReason::IdleTimeout | CloseReason::ShutdownTimeout => io::ErrorKind::TimedOut,
                CloseReason::DeadLink => io::ErrorKind::ConnectionAborted,
                CloseReason::Closed | CloseReason::Shutdown => io::ErrorKind::NotConnected,
                _ => io::ErrorKind::ConnectionAborted,
            },
            KcpError::WriteShutdown => io::ErrorKind::BrokenPipe,
            KcpError::ShutdownTimeout | KcpError::ReadTimeout | KcpError::WriteTimeout => {
                io::ErrorKind::TimedOut
            }
            KcpError::Socket(k) => *k,
        }
    }

    /// Whether the session is over (as opposed to one call failing).
    pub fn is_session_end(&self) -> bool {
        matches!(self, KcpError::Ended(_) | KcpError::Socket(_))
    }

    /// The `KcpError` inside an `io::Error` returned by this crate, if it carries one.
    pub fn of(e: &io::Error) -> Option<KcpError> {
        e.get_ref()?.downcast_ref::<KcpError>().copied()
    }
}

impl fmt::Display for KcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KcpError::Ended(r) => write!(f, "session ended: {r}"),
            KcpError::WriteShutdown => f.write_str("write after shutdown"),
            KcpError::ShutdownTimeout => f.write_str("shutdown timed out with data unacknowledged"),
            KcpError::ReadTimeout => f.write_str("read timed out"),
            KcpError::WriteTimeout => f.write_str("write timed out"),
            KcpError::Socket(k) => write!(f, "socket failed: {k}"),
        }
    }
}

impl std::error::Error for KcpError {}

impl From<KcpError> for io::Error {
    fn from(e: KcpError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_downcast() {
        let cases = [
            (
                KcpError::Ended(CloseReason::IdleTimeout),
                io::ErrorKind::TimedOut,
            ),
            (
                KcpError::Ended(CloseReason::DeadLink),
                io::ErrorKind::ConnectionAborted,
            ),
            (
                KcpError::Ended(CloseReason::Closed),
                io::ErrorKind::NotConnected,
            ),
            (KcpError::WriteShutdown, io::ErrorKind::BrokenPipe),
            (KcpError::ReadTimeout, io::ErrorKind::TimedOut),
            (
                KcpError::Socket(io::ErrorKind::PermissionDenied),
                io::ErrorKind::PermissionDenied,
            ),
        ];
        for (e, kind) in cases {
            let io: io::Error = e.into();
            assert_eq!(io.kind(), kind);
            assert_eq!(KcpError::of(&io), Some(e));
        }
        assert!(!KcpError::ReadTimeout.is_session_end());
        assert!(KcpError::Ended(CloseReason::IdleTimeout).is_session_end());
    }
}
