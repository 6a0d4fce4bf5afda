//! Admission: which datagrams may create a session, half-open sessions and their limits.

use core::fmt;

use crate::wire::{Command, Datagram, WireError, HEADER_LEN};

use super::{
    DropReason, Endpoint, EndpointError, Event, HalfOpen, PeerAddr, SessionId, ASK_PERIOD_MS,
};

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

/// A 64-bit FNV-1a fingerprint: a half-open session is confirmed only by a datagram that
/// differs from the first one (a replayed copy confirms nothing).
pub(super) fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl<A: PeerAddr> Endpoint<A> {
    /// Decides about a datagram for an unknown (address, conv) whose KCP datagram is `kcp`
    /// and whose plaintext (after the demux layers) is `plain`.
    pub(super) fn admit(
        &mut self,
        now: crate::time::Millis,
        t: u64,
        from: A,
        conv: u32,
        kcp: &[u8],
        plain: &[u8],
    ) -> Result<u32, EndpointError> {
        if let Some(&until) = self.closed.get(&(from, conv)) {
            if t < until {
                self.stats.in_errs += 1;
                return Err(EndpointError::Rejected(DropReason::RecentlyClosed));
            }
            self.closed.remove(&(from, conv));
        }
        if !self.cfg.accept {
            self.stats.in_errs += 1;
            return Err(EndpointError::Rejected(DropReason::NoSession));
        }
        if let Err(e) = first_flight(kcp, conv, self.cfg.session.rcv_wnd) {
            self.stats.in_errs += 1;
            self.stats.not_first_flight += 1;
            return Err(EndpointError::Rejected(DropReason::NotFirstFlight(e)));
        }
        if self.accept_queue.len() >= self.cfg.backlog || self.by_key.len() >= self.cfg.max_sessions
        {
            self.stats.refused += 1;
            return Err(EndpointError::Rejected(DropReason::Refused));
        }
        let host = from.host();
        let per_host = self.half_open_hosts.get(&host).copied().unwrap_or(0);
        if self.half_open_total >= self.cfg.max_half_open
            || per_host as usize >= self.cfg.max_half_open_per_host
        {
            self.stats.refused += 1;
            self.stats.half_open_refused += 1;
            return Err(EndpointError::Rejected(DropReason::Refused));
        }
        let id = self
            .create(now, t, from, conv)
            .map_err(EndpointError::Config)?;
        self.half_open_total += 1;
        *self.half_open_hosts.entry(host).or_insert(0) += 1;
        if let Some(Some(slot)) = self.slots.get_mut(id.idx as usize) {
            slot.passive = true;
            slot.half_open = Some(HalfOpen {
                first: fingerprint(plain),
                next_ask: t + ASK_PERIOD_MS,
            });
            // Make the peer speak again: every KCP peer answers a window probe.
            slot.session.kcp_mut().ask_window();
        }
        self.stats.passive_opens += 1;
        self.accept_queue.push_back(id);
        self.events.push_back(Event::Incoming);
        Ok(id.idx)
    }

    /// A half-open session heard a datagram that is not a copy of its first one, and the
    /// session accepted it: the peer is confirmed.
    pub(super) fn confirm(&mut self, idx: u32, plain_print: u64) {
        let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        match slot.half_open {
            Some(h) if h.first != plain_print => {}
            _ => return,
        }
        slot.half_open = None;
        let host = slot.addr.host();
        self.forget_half_open(host);
    }

    /// Releases one half-open count of `host`.
    pub(super) fn forget_half_open(&mut self, host: A::Host) {
        self.half_open_total = self.half_open_total.saturating_sub(1);
        if let Some(n) = self.half_open_hosts.get_mut(&host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.half_open_hosts.remove(&host);
            }
        }
    }

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
