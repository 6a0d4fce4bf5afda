//! Errors of the engine's calls.

use core::fmt;

use crate::config::MAX_FRAGMENTS;
use crate::wire::WireError;

/// Why `send` did not queue data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// Nothing to send: an empty buffer (KCP cannot carry empty messages; `docs/protocol.md`,
    /// hazard H6).
    Empty,
    /// The message needs more than 255 fragments (message mode).
    TooLarge {
        /// Fragments the message would need.
        fragments: usize,
    },
    /// The send queue (or payload storage) is full; retry after `poll_transmit` and `handle_datagram`
    /// have drained it. Nothing was queued.
    Full,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Empty => write!(f, "empty send"),
            SendError::TooLarge { fragments } => write!(
                f,
                "message needs {fragments} fragments, at most {MAX_FRAGMENTS} allowed"
            ),
            SendError::Full => write!(f, "send queue full"),
        }
    }
}

impl core::error::Error for SendError {}

/// Why `recv` returned no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// No complete message (message mode) or no byte (stream mode) is ready.
    WouldBlock,
    /// The next message is longer than the buffer (message mode); nothing was consumed.
    BufferTooSmall {
        /// Size of the next message.
        needed: usize,
    },
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::WouldBlock => write!(f, "no data ready"),
            RecvError::BufferTooSmall { needed } => {
                write!(f, "next message needs a buffer of {needed} bytes")
            }
        }
    }
}

impl core::error::Error for RecvError {}

/// Why `handle_datagram` rejected (the rest of) a datagram. Segments before the bad one stay applied,
/// as in kcp-go and ikcp.c; every rejection is counted in [`Stats`](crate::Stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// The datagram or a segment is malformed.
    Wire(WireError),
    /// A segment belongs to another conversation.
    ConvMismatch {
        /// This engine's conversation id.
        expected: u32,
        /// The segment's.
        found: u32,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Wire(e) => write!(f, "malformed datagram: {e}"),
            InputError::ConvMismatch { expected, found } => {
                write!(f, "conversation {found:#x} is not {expected:#x}")
            }
        }
    }
}

impl core::error::Error for InputError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            InputError::Wire(e) => Some(e),
            InputError::ConvMismatch { .. } => None,
        }
    }
}

impl From<WireError> for InputError {
    fn from(e: WireError) -> Self {
        InputError::Wire(e)
    }
}
