//! Admission: which datagrams may open a half-open entry (the first-flight rule).

use core::fmt;

use crate::wire::{Command, Datagram, WireError, HEADER_LEN};

use super::{Endpoint, PeerAddr, SessionId};

/// Why a datagram for an unknown conversation could not be a peer's first flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FirstFlightError {
    /// A segment header is malformed (truncated, payload overrun, unknown command).
    Malformed(WireError),
    /// Bytes follow the last segment (kcp-go and ikcp.c send exact datagrams).
    TrailingBytes,
    /// Segments of more than one conversation.
    ConvMismatch,
    /// A segment other than PUSH: a new peer has received nothing, so it has nothing to
    /// acknowledge and no window to probe or tell.
    NotPush,
    /// `una` is not 0: the peer claims to have received data this endpoint never sent.
    Una,
    /// A sequence number (or a message's fragment count) beyond the receive window of a
    /// session that starts at 0.
    OutsideWindow,
}

impl fmt::Display for FirstFlightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirstFlightError::Malformed(e) => write!(f, "malformed segment: {e}"),
            FirstFlightError::TrailingBytes => write!(f, "bytes after the last segment"),
            FirstFlightError::ConvMismatch => write!(f, "segments of several conversations"),
            FirstFlightError::NotPush => write!(f, "a segment other than PUSH"),
            FirstFlightError::Una => write!(f, "una is not 0"),
            FirstFlightError::OutsideWindow => write!(f, "sequence number outside the window"),
        }
    }
}

impl core::error::Error for FirstFlightError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            FirstFlightError::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether `kcp` (a KCP datagram, codec layers removed) could be the first flight of a new
/// peer of conversation `conv`, for a session whose receive window is `rcv_wnd` segments.
///
/// The rule, met by every datagram kcp-go v5.6.1 and ikcp.c send before they have heard
/// from the other side (both number segments from 0):
/// * every segment header is valid (known command, payload inside the datagram) and the
///   segments fill the datagram exactly;
/// * every segment is a PUSH of conversation `conv`;
/// * `una == 0` (the peer has received nothing from us);
/// * `sn < rcv_wnd` and `frg < rcv_wnd` (a new session accepts nothing else: its receive
///   window starts at 0, and a message of more fragments than the window never completes).
///
/// A peer that lost its session (our side timed out, the server restarted) sends datagrams
/// that fail this rule; kcp-go would create a session that can never deliver them, the
/// endpoint drops them and counts them (`not_first_flight`).
pub fn first_flight(kcp: &[u8], conv: u32, rcv_wnd: u32) -> Result<(), FirstFlightError> {
    if kcp.len() < HEADER_LEN {
        return Err(FirstFlightError::Malformed(WireError::Truncated));
    }
    let mut used = 0usize;
    for item in Datagram::new(kcp) {
        let (seg, payload) = item.map_err(FirstFlightError::Malformed)?;
        used += HEADER_LEN + payload.len();
        if seg.conv != conv {
            return Err(FirstFlightError::ConvMismatch);
        }
        if seg.cmd != Command::Push {
            return Err(FirstFlightError::NotPush);
        }
        if seg.una != 0 {
            return Err(FirstFlightError::Una);
        }
        if seg.sn >= rcv_wnd || u32::from(seg.frg) >= rcv_wnd {
            return Err(FirstFlightError::OutsideWindow);
        }
    }
    if used != kcp.len() {
        return Err(FirstFlightError::TrailingBytes);
    }
    Ok(())
}

impl<A: PeerAddr> Endpoint<A> {
    /// Takes the session out of the accept queue (it ended before `accept`).
    pub(super) fn unqueue(&mut self, id: SessionId) {
        if let Some(pos) = self.accept_queue.iter().position(|&x| x == id) {
            self.accept_queue.remove(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SegmentRepr;

    fn seg(cmd: Command, sn: u32, una: u32, payload: &[u8]) -> alloc::vec::Vec<u8> {
        let mut d = alloc::vec![0u8; HEADER_LEN + payload.len()];
        SegmentRepr {
            conv: 7,
            cmd,
            frg: 0,
            wnd: 32,
            ts: 123,
            sn,
            una,
            len: payload.len() as u32,
        }
        .emit(&mut d)
        .unwrap();
        d[HEADER_LEN..].copy_from_slice(payload);
        d
    }

    #[test]
    fn a_new_peers_pushes_are_a_first_flight() {
        let mut d = seg(Command::Push, 0, 0, b"hello");
        d.extend(seg(Command::Push, 1, 0, b""));
        assert_eq!(first_flight(&d, 7, 32), Ok(()));
    }

    #[test]
    fn anything_else_is_not() {
        let ok = seg(Command::Push, 3, 0, b"x");
        assert_eq!(
            first_flight(&ok, 8, 32),
            Err(FirstFlightError::ConvMismatch)
        );
        assert_eq!(
            first_flight(&seg(Command::Ack, 0, 0, b""), 7, 32),
            Err(FirstFlightError::NotPush)
        );
        assert_eq!(
            first_flight(&seg(Command::Push, 0, 5, b""), 7, 32),
            Err(FirstFlightError::Una)
        );
        assert_eq!(
            first_flight(&seg(Command::Push, 32, 0, b""), 7, 32),
            Err(FirstFlightError::OutsideWindow)
        );
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(
            first_flight(&trailing, 7, 32),
            Err(FirstFlightError::TrailingBytes)
        );
        let mut bad = ok.clone();
        bad[4] = 99;
        assert!(matches!(
            first_flight(&bad, 7, 32),
            Err(FirstFlightError::Malformed(WireError::UnknownCommand(99)))
        ));
        assert!(first_flight(&ok[..10], 7, 32).is_err());
    }
}
