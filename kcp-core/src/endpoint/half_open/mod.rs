//! Half-open entries (a SYN cache): a first flight is answered with a window probe and kept
//! in a small entry; the session is created only when the peer answers the probe.
//!
//! An entry holds the future session's codec stack (so the probe is sealed as the session
//! will seal, and a replay-protected layer pins its peer on the first datagram), at most
//! `half_open_bytes` of the first flight and of the datagrams after it (delivered at
//! confirmation, never acknowledged before), and a few counters.
//!
//! # What an entry keeps of a datagram
//!
//! A datagram is kept as its demux layers opened it, the inner layers' headers (FEC) still in
//! place, so that at confirmation it goes through the session's own inner layers exactly as
//! if the session had existed when it came: an FEC decoder then knows every data shard of the
//! first groups and never "rebuilds" one that arrived (which it would if it saw only the
//! parity that follows). With inner layers every datagram is kept so, a retransmission too
//! (it is an FEC shard of its own); the parity that comes for a half-open conversation is
//! kept as well (see `half_parity`), so a shard lost in the first group can be rebuilt. When
//! a datagram does not fit whole, its leading segments (or new segments) are kept bare, as
//! without inner layers, where a datagram that adds no new PUSH is not kept at all. Entries are evicted oldest first when the table
//! or a host's share is full, so spoofed first flights cannot lock real peers out. Replies to
//! an entry's address stay within [`AMPLIFICATION`] times the bytes received for it.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::ops::Range;

use crate::session::Layer;
use crate::time::Millis;
use crate::wire::{Command, Datagram, SegmentRepr, HEADER_LEN};

use super::admission::first_flight;
use super::input::{chunks_needed, note_push, scan, Opened};
use super::kept::{keep_first, kept_kcp, new_pushes, push_record, record_at, Keep, RECORD_HEADER};
use super::replay_record::fingerprint;
use super::slot::GROUP_REACH;
use super::{DropReason, Endpoint, EndpointError, Event, PeerAddr, AMPLIFICATION};

mod confirm;
mod probe;
mod table;

use probe::answers_probe;

/// How often a half-open entry asks its peer again (window probe) when it heard nothing.
const ASK_PERIOD_MS: u64 = 1_000;
/// A half-open entry answers a retransmitted first flight with a new probe at most this often.
const ASK_GAP_MS: u64 = 200;

/// Datagrams of a half-open entry whose fingerprints it keeps for the replay record.
const SEEN: usize = 6;

/// Probes for refused first flights waiting to be sent, at most (beyond, a refused first
/// flight gets none, as before).
pub(super) const REFUSAL_PROBES: usize = 256;

/// A host's half-open entries, and a smoothed estimate of how long its peers take to answer
/// a probe (from the first flight to the answer), kept while the host has entries.
#[derive(Clone, Copy, Default)]
pub(super) struct HostHalf {
    entries: u32,
    /// Smoothed answer time, ms (0: no answer seen yet).
    answer_ms: u32,
    /// Its mean deviation, ms.
    answer_var_ms: u32,
}

impl HostHalf {
    /// Adds the answer time of an entry opened at `opened_at`, answered at `t` (ms), as TCP
    /// smooths round trips (gains 1/8 and 1/4).
    fn sample(&mut self, opened_at: u64, t: u64) {
        let ms = t.saturating_sub(opened_at).min(u64::from(u32::MAX)) as u32;
        if self.answer_ms == 0 {
            self.answer_ms = ms.max(1);
            self.answer_var_ms = ms / 2;
        } else {
            let err = self.answer_ms.abs_diff(ms);
            self.answer_var_ms = self.answer_var_ms - self.answer_var_ms / 4 + err / 4;
            self.answer_ms = (self.answer_ms - self.answer_ms / 8 + ms / 8).max(1);
        }
    }

    /// How long this host's peers may take to answer: the smoothed answer time plus four
    /// deviations (0: not known yet).
    fn answer_bound_ms(&self) -> u64 {
        if self.answer_ms == 0 {
            return 0;
        }
        u64::from(self.answer_ms) + 4 * u64::from(self.answer_var_ms)
    }
}

/// Which limit a new first flight may have to make room in.
#[derive(Clone, Copy)]
enum Share {
    /// The source host's share (`max_half_open_per_host`).
    Host,
    /// The whole table (`max_half_open`).
    All,
}

/// A first flight answered, waiting for the peer's answer.
pub(super) struct HalfOpen<H> {
    /// The future session's codec stack (innermost first).
    layers: Vec<Layer>,
    /// Datagrams kept from the first flight on, as records (see [`Kept`](super::kept::Kept)), the entry within
    /// `half_open_bytes`, all entries within `half_open_pool_bytes`.
    stored: Vec<u8>,
    host: H,
    serial: u64,
    opened_at: u64,
    next_ask: u64,
    last_ask: Option<u64>,
    /// The deadline in `half_timers` that is current for this entry.
    deadline: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Fingerprints of the first flight and of the next datagrams (0: none), remembered
    /// endpoint-wide once confirmed.
    seen: [u64; SEEN],
    /// A probe waits in `half_tx`.
    ask_queued: bool,
    /// A layer asked to route packets without a conversation id to this address's session.
    attach: bool,
    /// The FEC group of the latest data kept ([`Codec::group`](crate::Codec::group)), if
    /// any: parity of a nearby group is this entry's.
    group: Option<u32>,
    /// The peer answered while the accept backlog was full: the session opens as soon as
    /// the backlog has room (the entry waits in `half_answered`).
    answered: bool,
}

/// What the endpoint remembers of an evicted half-open entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gone {
    /// When the entry was opened (elapsed ms).
    pub(super) opened_at: u64,
    /// Whether its probe went out: only then can an answer come.
    pub(super) probed: bool,
    /// When the last probe for it went out or was queued (elapsed ms).
    pub(super) asked_at: u64,
    /// Its peer's answer came while the accept backlog was full: the session opens as soon
    /// as the backlog has room (the key waits in `half_answered`).
    pub(super) answered: bool,
    /// Whether its inner layers ask for attachment (FEC), for that session.
    pub(super) attach: bool,
}

/// A session to open: its peer answered a probe.
struct Confirmed<A, H> {
    key: (A, u32),
    host: H,
    layers: Vec<Layer>,
    /// Fingerprints of the datagrams that opened it (0: none), for the replay record.
    prints: [u64; SEEN],
    /// What its half-open entry kept (records), fed to it first.
    stored: Vec<u8>,
    /// Whether its inner layers ask for attachment (FEC).
    attach: bool,
    /// The FEC group of the latest data its entry kept, if any.
    group: Option<u32>,
}

impl<A, H> Confirmed<A, H> {
    /// The session of half-open entry `h` (of `key`), with what it kept.
    fn of_entry(key: (A, u32), h: HalfOpen<H>) -> Self {
        Confirmed {
            key,
            host: h.host,
            layers: h.layers,
            prints: h.seen,
            stored: h.stored,
            attach: h.attach,
            group: h.group,
        }
    }
}

/// The datagram that answered a probe, fed to the new session after what its entry kept.
struct Answer<'a> {
    /// Its fingerprint, for the replay record.
    print: u64,
    datagram: &'a mut [u8],
    /// The opened plaintext within the datagram.
    plain: Range<usize>,
    /// Its KCP part within the datagram.
    kcp: Range<usize>,
    /// The FEC group of its data, if any.
    group: Option<u32>,
}

/// A datagram from an (address, conversation) with no session and no half-open entry.
#[derive(Debug, Clone)]
pub(super) struct Stranger<A> {
    pub(super) from: A,
    pub(super) conv: u32,
    /// The opened plaintext within the datagram.
    pub(super) plain: Range<usize>,
    /// Its KCP part within the datagram.
    pub(super) kcp: Range<usize>,
    /// Whether its inner layers ask for attachment (FEC).
    pub(super) attach: bool,
    /// The FEC group of its data, if any.
    pub(super) group: Option<u32>,
}

impl<A: PeerAddr> Endpoint<A> {
    pub(super) fn host_of(&self, addr: &A) -> A::Host {
        addr.host_prefix(self.cfg.host_prefix_v4, self.cfg.host_prefix_v6)
    }

    /// How many half-open entries `host` may hold: `max_half_open_per_host`, plus one for
    /// each confirmed session the host's peers opened and still hold, up to half the table.
    /// A host earns room only by answering probes, so a burst of real clients behind one
    /// address (a NAT, a load test) is admitted ever faster while a flood from one address
    /// that answers nothing stays within the fixed share; the other half of the table is
    /// always left to other hosts.
    fn host_share(&self, host: &A::Host) -> usize {
        let base = self.cfg.max_half_open_per_host;
        let earned = self.host_sessions.get(host).copied().unwrap_or(0) as usize;
        base.max(base.saturating_add(earned).min(self.cfg.max_half_open / 2))
    }

    /// Runs the session-side check of the demux layers (`accept_demuxed`) on `layers`.
    fn accept_on(
        layers: &mut [Layer],
        first_demux: usize,
        opened: &Opened,
        datagram: &[u8],
        now: Millis,
    ) -> Result<(), crate::codec::CodecError> {
        let total = layers.len();
        for (k, i) in (first_demux..total).rev().enumerate() {
            let (Some((packet, inner)), Some(layer)) = (opened.get(k), layers.get_mut(i)) else {
                break;
            };
            let packet = datagram.get(packet.clone()).unwrap_or(&[]);
            layer.accept_demuxed(packet, inner.clone(), now)?;
        }
        Ok(())
    }

    /// A datagram for an unknown (address, conv): opens a half-open entry if it is a
    /// plausible first flight, or the session if it answers a probe of an entry evicted
    /// before the answer came. `datagram` is the whole opened datagram.
    pub(super) fn admit(
        &mut self,
        t: u64,
        now: Millis,
        arrived: Stranger<A>,
        datagram: &mut [u8],
        opened: &Opened,
    ) -> Result<(), EndpointError> {
        let (from, conv, plain, kcp, attach, group) = (
            arrived.from,
            arrived.conv,
            arrived.plain.clone(),
            arrived.kcp.clone(),
            arrived.attach,
            arrived.group,
        );
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
        if let Some(gone) = self.half_gone.get(&(from, conv)).copied() {
            if answers_probe(datagram.get(kcp.clone()).unwrap_or(&[]), conv) {
                // The answer to an entry evicted before it came: it tells how long this
                // host's peers take, and, if the entry's probe went out, the peer heard it
                // as it would have with the entry: the session opens.
                self.half_gone.remove(&(from, conv));
                self.stats.half_open_late_answers += 1;
                let host = self.host_of(&from);
                if let Some(hh) = self.half_open_hosts.get_mut(&host) {
                    hh.sample(gone.opened_at, t);
                }
                if gone.probed {
                    return self.late_answer(t, now, arrived, datagram, opened);
                }
            }
        }
        let kcp_bytes = datagram.get(kcp.clone()).unwrap_or(&[]);
        if let Err(e) = first_flight(kcp_bytes, conv, self.cfg.session.rcv_wnd) {
            self.stats.in_errs += 1;
            self.stats.not_first_flight += 1;
            return Err(EndpointError::Rejected(DropReason::NotFirstFlight(e)));
        }
        let print = fingerprint(datagram);
        if self.record.contains(print) {
            self.stats.in_errs += 1;
            self.stats.replayed += 1;
            return Err(EndpointError::Rejected(DropReason::Replayed));
        }
        let host = self.host_of(&from);
        if self.by_key.len() >= self.cfg.max_sessions
            || self.host_sessions.get(&host).copied().unwrap_or(0) as usize
                >= self.cfg.max_sessions_per_host
            || self.cfg.max_half_open == 0
            || self.cfg.max_half_open_per_host == 0
        {
            self.stats.refused += 1;
            return Err(EndpointError::Rejected(DropReason::Refused));
        }
        // SYN cache: make room by evicting the host's oldest entry, or the oldest of all, once
        // it has had the time a real peer needs to answer; a younger one stays and the new
        // first flight is refused (its sender retransmits it).
        for share in [Share::Host, Share::All] {
            let (full, oldest) = match share {
                Share::Host => (
                    self.half_open_hosts
                        .get(&host)
                        .map_or(0, |h| h.entries as usize)
                        >= self.host_share(&host),
                    self.half_by_host
                        .range((host, 0)..)
                        .next()
                        .filter(|(h, _)| *h == host)
                        .and_then(|&(_, s)| self.half_age.get(&s).copied()),
                ),
                Share::All => (
                    self.half.len() >= self.cfg.max_half_open,
                    self.half_age.first_key_value().map(|(_, &key)| key),
                ),
            };
            let Some(key) = oldest.filter(|_| full) else {
                continue;
            };
            if !self.old_enough(key, t) {
                self.stats.refused += 1;
                self.probe_refused(t, now, (from, conv), host, attach, datagram, opened);
                return Err(EndpointError::Rejected(DropReason::Refused));
            }
            self.evict_half(key);
        }
        let mut layers = (self.cfg.layers)();
        let first_demux = layers.len().saturating_sub(self.cfg.demux_layers);
        if let Err(e) = Self::accept_on(&mut layers, first_demux, opened, datagram, now) {
            return Err(self.codec_drop(e));
        }
        let budget = self
            .cfg
            .half_open_bytes
            .saturating_sub(Self::entry_fixed_bytes(&layers));
        let plain_bytes = datagram.get(plain.clone()).unwrap_or(&[]);
        let kcp_in_plain =
            kcp.start.saturating_sub(plain.start)..kcp.end.saturating_sub(plain.start);
        let want = keep_first(plain_bytes.len(), kcp_bytes, budget).cost(plain_bytes.len());
        // The pool: a first flight (one datagram) makes room by evicting the oldest entries.
        while self.half_pool + want > self.cfg.half_open_pool_bytes {
            let Some((_, &key)) = self.half_age.first_key_value() else {
                break;
            };
            if !self.old_enough(key, t) {
                // What fits in the pool is kept; the peer retransmits the rest.
                break;
            }
            self.evict_half(key);
        }
        let room = self.cfg.half_open_pool_bytes.saturating_sub(self.half_pool);
        let mut stored = Vec::new();
        match keep_first(plain_bytes.len(), kcp_bytes, budget.min(room)) {
            Keep::Whole => push_record(&mut stored, true, plain_bytes, kcp_in_plain),
            Keep::Segments(s) => push_record(&mut stored, false, s, 0..s.len()),
            Keep::Nothing => {}
        }
        self.half_pool += stored.len();
        self.half_gone.remove(&(from, conv));
        let serial = self.next_serial;
        self.next_serial += 1;
        let deadline = t + ASK_PERIOD_MS.min(u64::from(self.cfg.half_open_timeout_ms));
        self.half.insert(
            (from, conv),
            Box::new(HalfOpen {
                layers,
                stored,
                host,
                serial,
                opened_at: t,
                next_ask: t + ASK_PERIOD_MS,
                last_ask: None,
                deadline,
                bytes_in: datagram.len() as u64,
                bytes_out: 0,
                seen: {
                    let mut seen = [0; SEEN];
                    seen[0] = print;
                    seen
                },
                ask_queued: true,
                attach,
                group,
                answered: false,
            }),
        );
        self.half_age.insert(serial, (from, conv));
        self.half_by_host.insert((host, serial));
        self.half_open_hosts.entry(host).or_default().entries += 1;
        self.half_timers.push(Reverse((deadline, serial)));
        self.half_tx.push_back((from, conv));
        self.compact_half_timers();
        Ok(())
    }

    /// A datagram for a half-open entry: the peer's answer to the probe creates the session;
    /// anything else is dropped unacknowledged (a retransmitted first flight may get a new
    /// probe). `group` is the FEC group of the datagram's data, if any.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn half_input(
        &mut self,
        t: u64,
        now: Millis,
        key: (A, u32),
        datagram: &mut [u8],
        opened: &Opened,
        plain: Range<usize>,
        kcp: Range<usize>,
        group: Option<u32>,
    ) -> Result<(), EndpointError> {
        let print = fingerprint(datagram);
        let replayed = self.record.contains(print);
        let demux_layers = self.cfg.demux_layers;
        let Some(h) = self.half.get_mut(&key) else {
            return Err(EndpointError::Rejected(DropReason::NoSession));
        };
        h.bytes_in += datagram.len() as u64;
        if replayed {
            self.stats.in_errs += 1;
            self.stats.replayed += 1;
            return Err(EndpointError::Rejected(DropReason::Replayed));
        }
        let first_demux = h.layers.len().saturating_sub(demux_layers);
        if let Err(e) = Self::accept_on(&mut h.layers, first_demux, opened, datagram, now) {
            return Err(self.codec_drop(e));
        }
        let kcp_bytes = datagram.get(kcp.clone()).unwrap_or(&[]);
        if let Some(free) = h.seen.iter_mut().find(|s| **s == 0) {
            *free = print;
        }
        if !answers_probe(kcp_bytes, key.1) {
            // A retransmitted or further first flight: ask again if the last probe is old.
            if h.last_ask.is_some_and(|a| t >= a + ASK_GAP_MS) && !h.ask_queued {
                h.ask_queued = true;
                self.half_tx.push_back(key);
            }
            if self.keep_datagram(key, datagram, plain, kcp, group) {
                self.stats.half_open_held += 1;
                return Ok(());
            }
            self.stats.half_open_dropped += 1;
            return Err(EndpointError::Rejected(DropReason::Unconfirmed));
        }
        // The peer heard the probe: the session may exist, if the limits allow.
        let (host, opened_at) = (h.host, h.opened_at);
        if !self.room_for_session(&host) {
            if self.backlog_full() && self.room_beside_backlog(&host) {
                // Only the backlog is full, and the application empties it as it accepts:
                // the answer is remembered (with its new data, as the entry keeps a
                // further datagram) and the session opens as soon as there is room,
                // instead of when the peer answers the next probe, a second later.
                let first = self.half.get(&key).is_some_and(|h| !h.answered);
                if first {
                    // The answer time counts once (a later answer is to a later probe).
                    if let Some(hh) = self.half_open_hosts.get_mut(&host) {
                        hh.sample(opened_at, t);
                    }
                }
                self.keep_datagram(key, datagram, plain, kcp, group);
                if let Some(h) = self.half.get_mut(&key).filter(|_| first) {
                    h.answered = true;
                    self.half_answered.push_back(key);
                    self.compact_answered();
                    self.stats.half_open_deferred += 1;
                }
                return Ok(());
            }
            // The entry stays; the peer answers the next probe again.
            self.stats.refused += 1;
            return Err(EndpointError::Rejected(DropReason::Refused));
        }
        if let Some(hh) = self.half_open_hosts.get_mut(&host) {
            hh.sample(opened_at, t);
        }
        let Some(h) = self.take_half(key) else {
            return Err(EndpointError::Rejected(DropReason::NoSession));
        };
        let confirmed = Confirmed::of_entry(key, *h);
        let answer = Answer {
            print,
            datagram,
            plain,
            kcp,
            group,
        };
        self.open_confirmed(t, now, confirmed, Some(answer))
    }

    /// Keeps a datagram of a half-open entry that is not the session's first: whole with
    /// inner layers (FEC), else its new PUSH segments, within the entry's byte budget and
    /// the pool. Returns whether anything was kept.
    ///
    /// What the peer sent before it heard the probe (a request written in two parts, the
    /// next message) is kept while the budget allows: dropping it would cost the peer a
    /// retransmission timeout (200 ms before its first RTT sample) once the session exists.
    /// Without inner layers only new segments are kept (a retransmission adds nothing);
    /// with them (FEC) the whole datagram, a retransmission too, since the session's inner
    /// layers must see every one of their packets (an FEC decoder would otherwise rebuild
    /// it from parity).
    fn keep_datagram(
        &mut self,
        key: (A, u32),
        datagram: &[u8],
        plain: Range<usize>,
        kcp: Range<usize>,
        group: Option<u32>,
    ) -> bool {
        let room = self.cfg.half_open_pool_bytes.saturating_sub(self.half_pool);
        let Some(h) = self.half.get_mut(&key) else {
            return false;
        };
        let budget = self
            .cfg
            .half_open_bytes
            .saturating_sub(Self::entry_fixed_bytes(&h.layers) + h.stored.len())
            .min(room);
        let kcp_bytes = datagram.get(kcp.clone()).unwrap_or(&[]);
        let plain_bytes = datagram.get(plain.clone()).unwrap_or(&[]);
        let kcp_in_plain =
            kcp.start.saturating_sub(plain.start)..kcp.end.saturating_sub(plain.start);
        let wrapped = kcp_in_plain != (0..plain_bytes.len());
        let before = h.stored.len();
        if wrapped && RECORD_HEADER + plain_bytes.len() <= budget {
            push_record(&mut h.stored, true, plain_bytes, kcp_in_plain);
        } else {
            let more = new_pushes(kcp_bytes, &h.stored, budget.saturating_sub(RECORD_HEADER));
            if !more.is_empty() {
                push_record(&mut h.stored, false, &more, 0..more.len());
            }
        }
        if h.stored.len() == before {
            return false;
        }
        if group.is_some() {
            h.group = group;
        }
        self.half_pool += h.stored.len() - before;
        true
    }

    /// Whether the limits other than the accept backlog let one more session from `host` in.
    fn room_beside_backlog(&self, host: &A::Host) -> bool {
        self.by_key.len() < self.cfg.max_sessions
            && (self.host_sessions.get(host).copied().unwrap_or(0) as usize)
                < self.cfg.max_sessions_per_host
    }

    /// The half-open entry that parity from `from` of `group` (no conversation id, and no
    /// session of the address took it) belongs to: the only entry of the address whose
    /// datagrams a layer routes by group, and whose latest data is of a nearby group (or
    /// either group is unknown). Several or none: `None`.
    pub(super) fn half_parity_owner(&self, from: A, group: Option<u32>) -> Option<(A, u32)> {
        let near = |n: u32, g: u32| (g.wrapping_sub(n) as i32).unsigned_abs() <= GROUP_REACH;
        let mut found = None;
        for (&key, h) in self.half.range((from, 0)..=(from, u32::MAX)) {
            let fits = match (group, h.group) {
                (Some(g), Some(n)) => near(n, g),
                _ => true,
            };
            if h.attach && fits {
                if found.is_some() {
                    return None;
                }
                found = Some(key);
            }
        }
        found
    }

    /// Parity for the half-open entry `key`: kept whole within the entry's budgets, so that
    /// the session's FEC decoder gets it with the first flight's data shards at confirmation
    /// (and can rebuild one of them that was lost). Never answered or acknowledged.
    pub(super) fn half_parity(
        &mut self,
        now: Millis,
        key: (A, u32),
        datagram: &[u8],
        opened: &Opened,
        plain: Range<usize>,
    ) -> Result<(), EndpointError> {
        let demux_layers = self.cfg.demux_layers;
        let Some(h) = self.half.get_mut(&key) else {
            return Err(EndpointError::Rejected(DropReason::NoSession));
        };
        h.bytes_in += datagram.len() as u64;
        let first_demux = h.layers.len().saturating_sub(demux_layers);
        if let Err(e) = Self::accept_on(&mut h.layers, first_demux, opened, datagram, now) {
            return Err(self.codec_drop(e));
        }
        let budget = self
            .cfg
            .half_open_bytes
            .saturating_sub(Self::entry_fixed_bytes(&h.layers) + h.stored.len())
            .min(self.cfg.half_open_pool_bytes.saturating_sub(self.half_pool));
        let bytes = datagram.get(plain).unwrap_or(&[]);
        if RECORD_HEADER + bytes.len() > budget {
            self.stats.half_open_dropped += 1;
            return Err(EndpointError::Rejected(DropReason::Unconfirmed));
        }
        let before = h.stored.len();
        push_record(&mut h.stored, true, bytes, bytes.len()..bytes.len());
        self.half_pool += h.stored.len() - before;
        self.stats.half_open_held += 1;
        Ok(())
    }
}
