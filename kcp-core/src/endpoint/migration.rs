//! Session migration (opt-in, [`EndpointConfig::migration`](super::EndpointConfig::migration)):
//! which datagram from a new address may move a live session there, and what the session may
//! send to that address before the peer answers from it.
//!
//! A datagram from an address without a session or half-open entry, that is no plausible first
//! flight and carries the conversation id of exactly one session, is given to that session if
//! it passed the endpoint's demux layers (crypto) and is no copy the replay record holds; the
//! session's own layers check it (a replay-protected layer's pinned sender and window). It
//! moves the session only if it is *fresh*: with `Migration::ReplayProtected` the session's
//! layers' acceptance proves it; with `Migration::Fresh`, a PUSH newer than every PUSH the
//! session took (the peer's clock), a PUSH the engine takes as new data, or acknowledgements
//! that release data in flight. A copy of an earlier datagram is none of these: the original already raised the
//! newest PUSH, delivered its data and released what it acknowledged. What a non-fresh datagram carries is applied as if it had come from the
//! session's own address (which, for a copy, changes nothing), and the session stays.
//!
//! After a move, the new address has not shown that it receives: the session sends there at
//! most [`AMPLIFICATION`] times the bytes received from there, until a datagram from there
//! acknowledges a segment sent after the move (its ACK echoes a later timestamp of ours) or
//! answers the window probe (WASK) the session sends there when it moves: a KCP peer answers
//! a WASK with a WINS at its next flush, as a new peer confirms its half-open entry.
//! A fresh datagram from the address the session moved from moves it back at once.

use core::ops::Range;

use crate::time::{seq_diff, Millis};

use super::admission::first_flight;
use super::input::{note_push, scan, Opened, Scan};
use super::replay_record::fingerprint;
use super::slot::{ATTACHED, PEER_TS};
use super::{DropReason, Endpoint, EndpointError, Migration, PeerAddr, AMPLIFICATION};

/// A datagram from an address that has no session or half-open entry for its conversation,
/// as `input` found it (its demux layers open, its KCP part located).
pub(super) struct Arrived<A> {
    pub(super) t: u64,
    pub(super) now: Millis,
    pub(super) from: A,
    pub(super) conv: u32,
    pub(super) wire_len: usize,
    /// The plaintext the demux layers left, within the datagram.
    pub(super) plain: Range<usize>,
    /// The KCP datagram, within the datagram.
    pub(super) kcp: Range<usize>,
    /// The FEC group of its data, if any.
    pub(super) group: Option<u32>,
}

/// A session that moved to an address that has not answered yet.
#[derive(Debug)]
pub(super) struct Move<A> {
    /// The last address that answered (where the session was before it moved).
    from: A,
    /// Bytes received from the new address since the move.
    bytes_in: u64,
    /// Bytes sent to it since the move.
    bytes_out: u64,
    /// The session's clock at the move: an ACK echoing a later timestamp answers.
    at: u32,
}

/// How many of the datagrams of lengths `lens` (in order) a moved session may still send to
/// its unconfirmed address; counts them as sent.
pub(super) fn within_budget<A>(m: &mut Move<A>, lens: &[usize]) -> usize {
    let mut k = 0;
    for &len in lens {
        if m.bytes_out + len as u64 > AMPLIFICATION * m.bytes_in {
            break;
        }
        m.bytes_out += len as u64;
        k += 1;
    }
    k
}

/// PUSH segments an engine did not take as new data (repeats, and those it had no room
/// for), counted so far.
fn pushes_not_taken(s: &crate::Stats) -> u64 {
    s.repeat_segs
        .wrapping_add(s.in_no_buffer)
        .wrapping_add(s.in_over_budget)
        .wrapping_add(s.in_oversized)
}

impl<A: PeerAddr> Endpoint<A> {
    /// A datagram of a live session from a new address (see the module documentation).
    /// `None`: it is not one (no session has its conversation id, or it could be a new peer's
    /// first flight), and admission decides. Otherwise what became of it: `Ok` when it moved
    /// the session (or came from the address the session just left, and was applied).
    pub(super) fn migrate(
        &mut self,
        a: Arrived<A>,
        datagram: &mut [u8],
        opened: &Opened,
    ) -> Option<Result<(), EndpointError>> {
        let kcp = datagram.get(a.kcp.clone()).unwrap_or(&[]);
        // A new peer's first flight opens a half-open entry, as without migration.
        if first_flight(kcp, a.conv, self.cfg.session.rcv_wnd).is_ok() {
            return None;
        }
        let seen = scan(kcp);
        let mut sessions = self
            .by_conv
            .range((a.conv, 0)..=(a.conv, u32::MAX))
            .map(|&(_, i)| i);
        let idx = sessions.next()?;
        let several = sessions.next().is_some();
        if several || self.cfg.demux_layers == 0 {
            // Which session it would be is unknown, or nothing authenticated it.
            self.stats.in_errs += 1;
            return Some(Err(self.refuse()));
        }
        if self.record.contains(fingerprint(datagram)) {
            self.stats.in_errs += 1;
            self.stats.replayed += 1;
            return Some(Err(self.refuse()));
        }
        let slot = self.slots.get(idx as usize)?.as_deref()?;
        let back = self.moves.get(&idx).is_some_and(|m| m.from == a.from);
        let newer = seen
            .newest_push
            .is_some_and(|ts| !slot.flag(PEER_TS) || seq_diff(ts, slot.peer_ts) > 0);
        let in_flight = slot.session.kcp().wait_snd();
        let not_taken = pushes_not_taken(slot.session.kcp().stats());
        let r = self.deliver(idx, a.now, datagram, opened, a.plain.clone(), seen.chunks);
        let (released, took) = self
            .slots
            .get(idx as usize)
            .and_then(Option::as_deref)
            .map_or((false, false), |s| {
                let k = s.session.kcp();
                let refused = pushes_not_taken(k.stats()).wrapping_sub(not_taken);
                (k.wait_snd() < in_flight, refused < seen.pushes as u64)
            });
        // A layer with a replay window has already refused every copy.
        let proven = self.cfg.migration == Migration::ReplayProtected;
        let fresh = r.is_ok() && (proven || newer || released || took);
        if fresh {
            self.move_session(idx, &a, back, &seen);
        } else if !back {
            // A copy, or refused by the session's layers: the session stays where it is.
            self.refuse();
        }
        self.recount_recv(idx);
        self.after_io(idx);
        Some(match r {
            Ok(()) if fresh || back => Ok(()),
            Ok(()) => Err(EndpointError::Rejected(DropReason::NotMigrated)),
            Err(e) => Err(e),
        })
    }

    /// Counts a datagram from a new address that did not move its session.
    fn refuse(&mut self) -> EndpointError {
        self.stats.migrations_refused += 1;
        EndpointError::Rejected(DropReason::NotMigrated)
    }

    /// Moves session `idx` to the address `a` came from. `back`: to the address it moved
    /// from, which answered before.
    fn move_session(&mut self, idx: u32, a: &Arrived<A>, back: bool, seen: &Scan) {
        let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let old = slot.addr;
        slot.addr = a.from;
        slot.last_heard = a.t;
        note_push(slot, seen.newest_push);
        if !back {
            // Probe the new address: the peer's answer (a WINS) shows it receives there.
            slot.session.kcp_mut().ask_window();
        }
        let attached = slot.flag(ATTACHED);
        let group = slot.group;
        slot.set_flag(ATTACHED, false);
        let passive = slot.passive;
        self.by_key.remove(&old, a.conv, idx);
        self.by_key.insert(&self.slots, idx);
        if attached {
            // Parity without a conversation id now comes from the new address.
            self.detach(old, idx, group);
            self.attach(a.from, idx, a.group);
        }
        if passive {
            self.forget_session_host(old);
            let host = self.host_of(&a.from);
            *self.host_sessions.entry(host).or_insert(0) += 1;
        }
        if back {
            self.moves.remove(&idx);
        } else {
            let from = self.moves.get(&idx).map_or(old, |m| m.from);
            self.moves.insert(
                idx,
                Move {
                    from,
                    bytes_in: a.wire_len as u64,
                    bytes_out: 0,
                    at: a.now.0,
                },
            );
        }
        self.stats.migrations += 1;
    }

    /// A datagram the session took at its own address: if the session moved there and the
    /// peer had not answered yet, it counts toward the sending budget, and an ACK of a segment
    /// sent after the move, or a window answer (WINS, to the probe sent at the move), is the
    /// answer.
    pub(super) fn heard_at_new_address(&mut self, idx: u32, wire_len: usize, seen: &Scan) {
        let Some(m) = self.moves.get_mut(&idx) else {
            return;
        };
        m.bytes_in += wire_len as u64;
        if seen.wins || seen.newest_ack.is_some_and(|ts| seq_diff(ts, m.at) > 0) {
            self.moves.remove(&idx);
        }
    }

    /// Whether session `id` moved to an address that has not answered yet (its sends there
    /// are bounded by the anti-amplification limit).
    pub fn is_migrating(&self, id: super::SessionId) -> bool {
        self.slot(id).is_some() && self.moves.contains_key(&id.idx)
    }
}
