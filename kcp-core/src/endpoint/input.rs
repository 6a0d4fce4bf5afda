//! Receiving: open the demux layers, route through the inner layers, hand the datagram to its
//! session (or admit a new one).

use core::ops::Range;

use crate::codec::{CodecError, Route};
use crate::storage::SMALL_CHUNK;
use crate::time::{seq_diff, Millis};
use crate::wire::{Command, Datagram, HEADER_LEN};

use super::migration::Arrived;
use super::slot::{Slot, ATTACHED, GROUP_REACH, NO_GROUP, PEER_TS, SHARED};
use super::{DropReason, Endpoint, EndpointError, PeerAddr, MAX_DEMUX_LAYERS};

/// What the endpoint's demux layers opened: per layer, outermost first, the packet's range in
/// the datagram and its inner packet's range within the packet.
pub(super) type Opened = [(Range<usize>, Range<usize>); MAX_DEMUX_LAYERS];

/// Where the codec stack said a datagram belongs.
enum Routed {
    /// The KCP datagram lies at `kcp` (relative to the plaintext); `attach` when a layer
    /// asked to remember the address's session for packets without a conversation id.
    Conv {
        conv: u32,
        kcp: Range<usize>,
        attach: bool,
        group: Option<u32>,
    },
    /// No conversation id (FEC parity): the session on the same address that received data
    /// of the same group.
    Attach { group: Option<u32> },
}

/// Payload chunks a KCP datagram may need to store: one per PUSH with data.
pub(super) fn chunks_needed(kcp: &[u8]) -> Chunks {
    scan(kcp).chunks
}

/// Payload chunks of each size some segments need (see
/// [`Kcp::stock_storage`](crate::Kcp::stock_storage)).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Chunks {
    /// Full-size chunks: for payloads over [`SMALL_CHUNK`].
    pub(super) full: usize,
    /// Small chunks.
    pub(super) small: usize,
}

impl core::ops::AddAssign for Chunks {
    fn add_assign(&mut self, other: Chunks) {
        self.full += other.full;
        self.small += other.small;
    }
}

/// What one pass over a KCP datagram's segment headers finds.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Scan {
    /// Payload chunks it may need to store: one per PUSH with data.
    pub(super) chunks: Chunks,
    /// PUSH segments.
    pub(super) pushes: usize,
    /// The newest timestamp of its PUSH segments (the peer's clock).
    pub(super) newest_push: Option<u32>,
    /// The newest timestamp its ACK segments echo (this side's clock).
    pub(super) newest_ack: Option<u32>,
    /// It carries a window answer (WINS).
    pub(super) wins: bool,
}

/// Reads the segment headers of `kcp` once (see [`Scan`]).
pub(super) fn scan(kcp: &[u8]) -> Scan {
    let newer = |a: Option<u32>, ts: u32| match a {
        Some(n) if seq_diff(ts, n) <= 0 => Some(n),
        _ => Some(ts),
    };
    let mut s = Scan::default();
    for (seg, p) in Datagram::new(kcp).map_while(Result::ok) {
        match seg.cmd {
            Command::Push => {
                if p.len() > SMALL_CHUNK {
                    s.chunks.full += 1;
                } else if !p.is_empty() {
                    s.chunks.small += 1;
                }
                s.pushes += 1;
                s.newest_push = newer(s.newest_push, seg.ts);
            }
            Command::Ack => s.newest_ack = newer(s.newest_ack, seg.ts),
            Command::WindowTell => s.wins = true,
            Command::WindowAsk => {}
        }
    }
    s
}

/// Remembers the newest PUSH timestamp a session took from its peer.
pub(super) fn note_push<A>(slot: &mut Slot<A>, newest: Option<u32>) {
    if let Some(ts) = newest {
        if !slot.flag(PEER_TS) || seq_diff(ts, slot.peer_ts) > 0 {
            slot.peer_ts = ts;
            slot.set_flag(PEER_TS, true);
        }
    }
}

impl<A: PeerAddr> Endpoint<A> {
    /// Processes one datagram from `from`. Dropped datagrams are counted and reported.
    pub fn handle_datagram(
        &mut self,
        now: Millis,
        from: A,
        datagram: &mut [u8],
    ) -> Result<(), EndpointError> {
        let wire_len = datagram.len();
        self.input(now, from, datagram, wire_len)
    }

    /// Counts a datagram of `wire_len` bytes that a layer running outside the endpoint
    /// rejected (an adapter that decrypts outside its lock, whose sessions carry a
    /// [`Reserve`](crate::Reserve) for that layer), as the endpoint counts its own layers'
    /// rejections: `in_pkts`, `in_bytes`, and `in_csum_errors` for a failed integrity check,
    /// `in_errs` otherwise. The datagrams that layer opens go to
    /// [`handle_datagram`](Self::handle_datagram) whole, opened in place.
    pub fn handle_rejected(&mut self, wire_len: usize, error: CodecError) -> EndpointError {
        self.stats.in_pkts += 1;
        self.stats.in_bytes += wire_len as u64;
        self.codec_drop(error)
    }

    fn input(
        &mut self,
        now: Millis,
        from: A,
        datagram: &mut [u8],
        wire_len: usize,
    ) -> Result<(), EndpointError> {
        let t = self.tick(now);
        let now = self.clock(now);
        self.stats.in_pkts += 1;
        self.stats.in_bytes += wire_len as u64;
        if wire_len > self.cfg.max_datagram {
            self.stats.in_errs += 1;
            self.stats.oversize += 1;
            return Err(EndpointError::Rejected(DropReason::TooLong));
        }
        // Open the outer layers (crypto) with the endpoint's own instances, outermost first,
        // remembering each opened packet for the session's instances.
        let total = self.demux.len();
        let first_demux = total - self.cfg.demux_layers;
        let mut opened: Opened = core::array::from_fn(|_| (0..0, 0..0));
        let mut range = 0..datagram.len();
        for (k, i) in (first_demux..total).rev().enumerate() {
            let part = datagram.get_mut(range.clone()).unwrap_or(&mut []);
            let Some(layer) = self.demux.get_mut(i) else {
                break;
            };
            match layer.demux_open(part, now) {
                Ok(Some(inner)) if inner.start <= inner.end && inner.end <= part.len() => {
                    if let Some(o) = opened.get_mut(k) {
                        *o = (range.clone(), inner.clone());
                    }
                    range = range.start + inner.start..range.start + inner.end;
                }
                Ok(Some(_)) => return Err(self.codec_drop(CodecError::Malformed)),
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.codec_drop(e)),
            }
        }
        let plain_range = range;
        let plain = datagram.get(plain_range.clone()).unwrap_or(&[]);
        // Ask the inner layers where the KCP datagram lies.
        let routed = match self.route(first_demux, plain) {
            Ok(r) => r,
            Err(reason) => {
                self.stats.in_errs += 1;
                return Err(EndpointError::Rejected(reason));
            }
        };
        let (idx, scan) = match routed {
            Routed::Attach { group } => match self.attached_session(from, group) {
                Some(i) => (
                    i,
                    // A parity packet may rebuild a segment of any size; a full-size
                    // chunk serves a small one too.
                    Scan {
                        chunks: Chunks { full: 1, small: 0 },
                        ..Scan::default()
                    },
                ),
                None => {
                    if let Some(key) = self.half_parity_owner(from, group) {
                        return self.half_parity(now, key, datagram, &opened, plain_range);
                    }
                    if self.attach_route.contains_key(&from) {
                        self.parity_elsewhere(from);
                    }
                    self.stats.in_errs += 1;
                    return Err(EndpointError::Rejected(DropReason::NoSession));
                }
            },
            Routed::Conv {
                conv,
                kcp,
                attach,
                group,
            } => {
                let idx = match self.by_key.get(&self.slots, &from, conv) {
                    Some(i) => i,
                    None => {
                        // `kcp` is relative to the plaintext; make it relative to the datagram.
                        let kcp = plain_range.start + kcp.start..plain_range.start + kcp.end;
                        if self.half.contains_key(&(from, conv)) {
                            return self.half_input(
                                t,
                                now,
                                (from, conv),
                                datagram,
                                &opened,
                                plain_range,
                                kcp,
                                group,
                            );
                        }
                        if self.cfg.migration.is_on() {
                            let arrived = Arrived {
                                t,
                                now,
                                from,
                                conv,
                                wire_len,
                                plain: plain_range.clone(),
                                kcp: kcp.clone(),
                                group,
                            };
                            if let Some(r) = self.migrate(arrived, datagram, &opened) {
                                return r;
                            }
                        }
                        let arrived = super::half_open::Stranger {
                            from,
                            conv,
                            plain: plain_range,
                            kcp,
                            attach,
                            group,
                        };
                        return self.admit(t, now, arrived, datagram, &opened);
                    }
                };
                if attach {
                    self.attach(from, idx, group);
                }
                (idx, scan(plain.get(kcp).unwrap_or(&[])))
            }
        };
        let r = self.deliver(idx, now, datagram, &opened, plain_range, scan.chunks);
        if r.is_ok() {
            if let Some(Some(slot)) = self.slots.get_mut(idx as usize) {
                slot.last_heard = t;
                note_push(slot, scan.newest_push);
            }
            if !self.moves.is_empty() {
                self.heard_at_new_address(idx, wire_len, &scan);
            }
        }
        self.recount_recv(idx);
        self.after_io(idx);
        r
    }

    /// Gives an opened datagram to session `idx`: its own instances of the demux layers see
    /// what the endpoint opened (replay windows live there), then its inner layers and its
    /// engine take it. `chunks`: payload chunks to stock it with first.
    pub(super) fn deliver(
        &mut self,
        idx: u32,
        now: Millis,
        datagram: &mut [u8],
        opened: &Opened,
        plain_range: Range<usize>,
        chunks: Chunks,
    ) -> Result<(), EndpointError> {
        let total = self.demux.len();
        let first_demux = total - self.cfg.demux_layers;
        let limited = self.recv_limited();
        let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
            return Err(EndpointError::Rejected(DropReason::NoSession));
        };
        slot.session.set_receive_limited(limited);
        let mut r = Ok(());
        for (k, i) in (first_demux..total).rev().enumerate() {
            let Some((packet, inner)) = opened.get(k).cloned() else {
                break;
            };
            let packet = datagram.get(packet).unwrap_or(&[]);
            r = slot.session.accept_demuxed(i, packet, inner, now);
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() && !limited {
            slot.session
                .kcp_mut()
                .stock_storage(&mut self.cache, chunks.full, chunks.small);
        }
        if r.is_ok() {
            let plain = datagram.get_mut(plain_range).unwrap_or(&mut []);
            r = slot
                .session
                .handle_opened(now, plain, self.cfg.demux_layers);
        }
        // Over the budget, spare chunks (read or acknowledged data) go back at once.
        if limited && slot.session.kcp().spare_chunks() > 0 {
            slot.session.kcp_mut().release_storage(&mut self.cache);
        }
        r.map_err(|e| EndpointError::Rejected(DropReason::Session(e)))
    }

    /// Lists session `idx` as a destination of packets without a conversation id from
    /// `from`, and notes the group of the packet it just received.
    pub(super) fn attach(&mut self, from: A, idx: u32, group: Option<u32>) {
        let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let was = slot.group;
        if let Some(g) = group {
            slot.group = g;
        }
        let now = slot.group;
        if slot.flag(ATTACHED) {
            // Only sessions sharing their address are indexed by group.
            if was != now && slot.flag(SHARED) {
                if was != NO_GROUP {
                    self.attach_groups.remove(&(from, was, idx));
                }
                self.attach_groups.insert((from, now, idx));
            }
            return;
        }
        slot.set_flag(ATTACHED, true);
        let first = match self.attach_route.entry(from) {
            hashbrown::hash_map::Entry::Vacant(v) => {
                v.insert(idx);
                return;
            }
            hashbrown::hash_map::Entry::Occupied(o) => *o.get(),
        };
        let more = self.attach_more.entry(from).or_default();
        let second = more.is_empty();
        more.push(idx);
        if second {
            // The address's first session was alone: it joins the index now.
            self.index_group(from, first, true);
        }
        self.index_group(from, idx, true);
    }

    /// Lists (`on`) or unlists session `idx`, attached on `from`, in the index by group.
    pub(super) fn index_group(&mut self, from: A, idx: u32, on: bool) {
        let Some(Some(slot)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        slot.set_flag(SHARED, on);
        if slot.group != NO_GROUP {
            if on {
                self.attach_groups.insert((from, slot.group, idx));
            } else {
                self.attach_groups.remove(&(from, slot.group, idx));
            }
        }
    }

    /// The session a packet without a conversation id from `from` belongs to: the only one
    /// there whose latest data group lies within [`GROUP_REACH`] of
    /// `group` (sessions sharing a socket number their groups from far-apart random points;
    /// parity may overtake its group's data, or come late). A session alone on its address
    /// also takes parity of unknown group, or before it knows a group of its own; parity of
    /// a group far from its own belongs to another conversation of the address (one still
    /// half-open, say) and is not its. Several or none: the packet is dropped (counted),
    /// never given to a session it may not belong to. Costs a range lookup in the index of
    /// the address's sessions by group, whatever their number.
    fn attached_session(&mut self, from: A, group: Option<u32>) -> Option<u32> {
        let first = *self.attach_route.get(&from)?;
        // The latest data group of session `i`, if it knows one.
        let latest = |slots: &[Option<alloc::boxed::Box<Slot<A>>>], i: u32| {
            slots
                .get(i as usize)
                .and_then(Option::as_deref)
                .map(|s| s.group)
                .filter(|&n| n != NO_GROUP)
        };
        let near = |n: u32, g: u32| (g.wrapping_sub(n) as i32).unsigned_abs() <= GROUP_REACH;
        if !self.attach_more.contains_key(&from) {
            return match (group, latest(&self.slots, first)) {
                (Some(g), Some(n)) if !near(n, g) => None,
                _ => Some(first),
            };
        };
        let mut found = None;
        if let Some(g) = group {
            // The sessions whose latest group is within reach of `g`, wrapping around: one
            // range of the index, or two across the end of the group numbers.
            let (lo, hi) = (g.wrapping_sub(GROUP_REACH), g.wrapping_add(GROUP_REACH));
            let (a, b) = if lo <= hi {
                ((lo, hi), (1, 0))
            } else {
                ((lo, u32::MAX), (0, hi))
            };
            let candidates = self
                .attach_groups
                .range((from, a.0, 0)..=(from, a.1, u32::MAX))
                .chain(if b.0 <= b.1 {
                    self.attach_groups
                        .range((from, b.0, 0)..=(from, b.1, u32::MAX))
                } else {
                    self.attach_groups.range((from, 1, 0)..(from, 1, 0))
                });
            for &(_, n, i) in candidates {
                if latest(&self.slots, i) == Some(n) && near(n, g) {
                    if found.is_some() {
                        found = None;
                        break;
                    }
                    found = Some(i);
                }
            }
        }
        found
    }

    /// Counts parity from `from` that no session on the address owns: while a conversation
    /// of the address is half-open, most likely its parity (dropped unacknowledged like the
    /// rest of its datagrams before the peer answers), else `parity_unrouted`.
    fn parity_elsewhere(&mut self, from: A) {
        let half_open = self
            .half
            .range((from, 0)..=(from, u32::MAX))
            .next()
            .is_some();
        if half_open {
            self.stats.half_open_dropped += 1;
        } else {
            self.stats.parity_unrouted += 1;
        }
    }

    pub(super) fn codec_drop(&mut self, e: CodecError) -> EndpointError {
        if e == CodecError::Integrity {
            self.stats.in_csum_errors += 1;
        } else {
            self.stats.in_errs += 1;
        }
        EndpointError::Rejected(DropReason::Codec(e))
    }

    /// Finds the conversation of a datagram whose outer layers are open: layers
    /// `..first_demux` (innermost first) are asked, outermost first, where their inner packet
    /// lies; the KCP datagram then carries the conversation id in its first four bytes.
    fn route(&self, first_demux: usize, plain: &[u8]) -> Result<Routed, DropReason> {
        let mut range = 0..plain.len();
        let mut attach = false;
        let mut group = None;
        for layer in self.demux.get(..first_demux).unwrap_or(&[]).iter().rev() {
            let part = plain.get(range.clone()).unwrap_or(&[]);
            if group.is_none() {
                group = layer.group(part);
            }
            match layer.route(part).map_err(DropReason::Codec)? {
                Route::Inner(inner) => {
                    if inner.start > inner.end || inner.end > part.len() {
                        return Err(DropReason::Codec(CodecError::Malformed));
                    }
                    if inner != (0..part.len()) {
                        attach = true;
                    }
                    range = range.start + inner.start..range.start + inner.end;
                }
                Route::Attach => return Ok(Routed::Attach { group }),
            }
        }
        let kcp = plain.get(range.clone()).unwrap_or(&[]);
        let Some(c) = kcp.get(..4) else {
            return Err(DropReason::Short);
        };
        if kcp.len() < HEADER_LEN {
            return Err(DropReason::Short);
        }
        let conv = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        Ok(Routed::Conv {
            conv,
            kcp: range,
            attach,
            group,
        })
    }
}
