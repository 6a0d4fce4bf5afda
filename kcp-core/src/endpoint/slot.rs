//! One session's record in the endpoint's table: its state, its timestamps and flags, kept
//! small so an idle session costs little.

use crate::session::Session;

use super::CloseReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Open,
    /// The write side is shut down; reading goes on.
    WriteClosed,
    /// Closing once everything is acknowledged, or at the deadline (elapsed ms).
    Draining(u64),
    /// Ending: sends what it owes (ACKs) once, then goes with this reason (`Closed` after
    /// `close`, `Shutdown` after a graceful close finished).
    Closing(CloseReason),
}

pub(super) struct Slot<A> {
    pub(super) session: Session<'static>,
    pub(super) addr: A,
    pub(super) conv: u32,
    pub(super) gen: u32,
    pub(super) state: State,
    pub(super) last_heard: u64,
    /// When the last keepalive probe was asked for.
    pub(super) last_probe: u64,
    pub(super) opened_at: u64,
    /// Since when the session has held no data (for trimming its codec layers), or
    /// [`NOT_IDLE`].
    pub(super) idle_since: u64,
    /// Opened by the peer (listener mode).
    pub(super) passive: bool,
    /// Handed out by `accept`.
    pub(super) accepted: bool,
    pub(super) writable: bool,
    /// [`TRIMMED`], [`READABLE`], [`QUEUED`], [`RESCHED_QUEUED`], [`ATTACHED`], [`PEER_TS`],
    /// [`SHARED`] (bits, so
    /// an idle session's slot stays small).
    pub(super) flags: u8,
    /// Receive-side heap bytes counted for this session in the endpoint's budget.
    pub(super) recv_bytes: u32,
    /// The FEC group of the latest data this session received (`NO_GROUP`: none yet), so
    /// parity from the same address reaches the session that owns its group.
    pub(super) group: u32,
    /// The timestamp of the newest PUSH the session took from its peer (in the peer's
    /// clock), when [`PEER_TS`] is set: a datagram from a new address that carries a newer
    /// one is fresh (see `EndpointConfig::migration`). Fits in the padding of the slot.
    pub(super) peer_ts: u32,
}

/// `Slot::idle_since` of a session that holds data.
pub(super) const NOT_IDLE: u64 = u64::MAX;
/// `Slot::flags`: codec layers trimmed since the session last held data.
pub(super) const TRIMMED: u8 = 1;
/// `Slot::flags`: the application was told the session is readable.
pub(super) const READABLE: u8 = 2;
/// `Slot::flags`: in `dirty` (output to drain, lifecycle to check).
pub(super) const QUEUED: u8 = 4;
/// `Slot::flags`: in `resched` (deadline to recompute at the next `poll_timeout`).
pub(super) const RESCHED_QUEUED: u8 = 8;
/// `Slot::flags`: listed in `attach_route` for its address.
pub(super) const ATTACHED: u8 = 16;
/// `Slot::flags`: `peer_ts` holds a timestamp.
pub(super) const PEER_TS: u8 = 32;
/// `Slot::flags`: attached, with another attached session on its address, so listed in
/// `attach_groups` by its latest group.
pub(super) const SHARED: u8 = 64;

impl<A> Slot<A> {
    /// The record of a session just opened at `t` (the endpoint's tick), generation `gen`.
    pub(super) fn new(session: Session<'static>, addr: A, conv: u32, gen: u32, t: u64) -> Self {
        Slot {
            session,
            addr,
            conv,
            gen,
            state: State::Open,
            last_heard: t,
            last_probe: t,
            opened_at: t,
            idle_since: NOT_IDLE,
            passive: false,
            accepted: false,
            writable: true,
            flags: 0,
            recv_bytes: 0,
            group: NO_GROUP,
            peer_ts: 0,
        }
    }

    pub(super) fn flag(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub(super) fn set_flag(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }
}

/// How far (in FEC seqids) parity's group may lie from a session's latest data group and
/// still be that session's, when several sessions on one address use FEC: far beyond any
/// reordering, far below the distance between random starting points of two sessions.
pub(super) const GROUP_REACH: u32 = 1 << 16;
/// `Slot::group` before any FEC data (a group that never occurs: seqids stay below it).
pub(super) const NO_GROUP: u32 = u32::MAX;
