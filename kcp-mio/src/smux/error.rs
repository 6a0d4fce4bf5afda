//! What ends a session and what a stream operation can fail with.

use std::fmt;

/// Input that breaks the protocol; it ends the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolError {
    /// A frame's version byte is not the session's.
    Version {
        /// The session's version.
        expected: u8,
        /// The byte received.
        got: u8,
    },
    /// A frame's command byte is not a known command.
    Command(u8),
    /// The underlying stream ended inside a frame.
    Truncated,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Version { expected, got } => {
                write!(f, "smux version {got} received, session speaks {expected}")
            }
            ProtocolError::Command(c) => write!(f, "unknown smux command {c}"),
            ProtocolError::Truncated => write!(f, "underlying stream ended inside a smux frame"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// [`Session::close`](super::Session::close) was called.
    Local,
    /// Nothing arrived for a whole keepalive timeout.
    Timeout,
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// The underlying stream ended between frames ([`Session::handle_eof`](super::Session::handle_eof)).
    Eof,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => write!(f, "smux session closed"),
            CloseReason::Timeout => write!(f, "smux session timed out (nothing received)"),
            CloseReason::Protocol(e) => e.fmt(f),
            CloseReason::Eof => write!(f, "underlying stream of the smux session ended"),
        }
    }
}

/// Errors of stream operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Nothing to read yet, or no room to write: wait for [`Event::Readable`](super::Event::Readable) or
    /// [`Event::Writable`](super::Event::Writable).
    WouldBlock,
    /// No such stream (never opened, or closed and forgotten).
    UnknownStream,
    /// The stream was closed locally with [`Session::close_stream`](super::Session::close_stream).
    StreamClosed,
    /// The peer closed the stream (its `FIN` arrived): a write can no longer reach it.
    PeerClosed,
    /// Version 2: the peer claims to have consumed more than was sent on this stream.
    Consumed,
    /// All stream ids of this side are used ([`Session::open`](super::Session::open)); start a new session.
    GoAway,
    /// [`Config::max_streams`](super::Config::max_streams) streams are open ([`Session::open`](super::Session::open)).
    TooManyStreams,
    /// The session has ended.
    Session(CloseReason),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WouldBlock => write!(f, "smux stream operation would block"),
            Error::UnknownStream => write!(f, "unknown smux stream"),
            Error::StreamClosed => write!(f, "smux stream closed"),
            Error::PeerClosed => write!(f, "smux stream closed by the peer"),
            Error::Consumed => write!(f, "smux peer consumed more than was sent"),
            Error::GoAway => write!(f, "smux stream ids exhausted, start a new session"),
            Error::TooManyStreams => write!(f, "too many smux streams"),
            Error::Session(r) => r.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match e {
            Error::WouldBlock => ErrorKind::WouldBlock,
            Error::UnknownStream | Error::StreamClosed => ErrorKind::NotConnected,
            Error::PeerClosed => ErrorKind::BrokenPipe,
            Error::Consumed | Error::Session(CloseReason::Protocol(_)) => ErrorKind::InvalidData,
            Error::GoAway | Error::TooManyStreams => ErrorKind::Other,
            Error::Session(CloseReason::Timeout) => ErrorKind::TimedOut,
            Error::Session(CloseReason::Local) => ErrorKind::NotConnected,
            Error::Session(CloseReason::Eof) => ErrorKind::UnexpectedEof,
        };
        std::io::Error::new(kind, e)
    }
}
