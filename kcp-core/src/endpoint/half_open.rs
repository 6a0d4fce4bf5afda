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
    /// Datagrams kept from the first flight on, as records (see [`Kept`]), the entry within
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

/// The length of a probe sealed by `layers` (their headers, the KCP header, their trailers).
fn probe_len(layers: &[Layer]) -> usize {
    layers
        .iter()
        .map(|l| l.header_len() + l.trailer_len())
        .sum::<usize>()
        + HEADER_LEN
}

/// Writes a probe (WASK) of conversation `conv` into `buf` (at least the layers' headers,
/// the KCP header and the layers' trailers long), sealed by `layers` innermost first, each
/// layer over the part that starts at its header; trims the layers after. Returns its length.
fn seal_probe(
    layers: &mut [Layer],
    conv: u32,
    wnd: u16,
    now: Millis,
    buf: &mut [u8],
) -> Option<usize> {
    let head: usize = layers.iter().map(|l| l.header_len()).sum();
    let wask = SegmentRepr {
        conv,
        cmd: Command::WindowAsk,
        frg: 0,
        wnd,
        ts: now.0,
        sn: 0,
        una: 0,
        len: 0,
    };
    wask.emit(buf.get_mut(head..)?).ok()?;
    let mut end = head + HEADER_LEN;
    let mut off = head;
    let mut ok = true;
    let mut scratch = [0u8; crate::config::MAX_MTU as usize + 64];
    for layer in layers.iter_mut() {
        off -= layer.header_len();
        let Some(part) = buf.get_mut(off..) else {
            ok = false;
            break;
        };
        match layer.seal(part, end - off, now) {
            Ok(n) => end = off + n,
            Err(_) => {
                ok = false;
                break;
            }
        }
        // Parity a layer queued is not sent to an unconfirmed peer.
        while layer.poll_extra(&mut scratch, now).is_some() {}
    }
    for layer in layers.iter_mut() {
        layer.trim();
    }
    ok.then_some(end)
}

/// Whether `kcp` carries a WINS of conversation `conv` (a peer's answer to a window probe).
fn answers_probe(kcp: &[u8], conv: u32) -> bool {
    Datagram::new(kcp)
        .map_while(Result::ok)
        .any(|(s, _)| s.conv == conv && s.cmd == Command::WindowTell)
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

    /// Opens the sessions of entries whose peer answered while the accept backlog was full,
    /// in the order the answers came, while the backlog has room (`accept` calls it, and
    /// `poll_transmit` after sessions nobody accepted went). An entry whose other limits
    /// are full by then goes back to waiting for an answer to its next probe.
    pub(super) fn open_answered(&mut self) {
        while let Some(&key) = self.half_answered.front() {
            let entry = self.half.get(&key).is_some_and(|h| h.answered);
            let late = !entry && self.half_gone.get(&key).is_some_and(|g| g.answered);
            if !entry && !late {
                // Gone (evicted, timed out, forgotten) since it answered.
                self.half_answered.pop_front();
                continue;
            }
            if self.backlog_full() {
                return;
            }
            self.half_answered.pop_front();
            let host = self.host_of(&key.0);
            if !self.room_beside_backlog(&host) {
                // Another limit filled meanwhile: the peer answers the next probe (or
                // retransmits its first flight) again.
                if let Some(h) = self.half.get_mut(&key) {
                    h.answered = false;
                }
                if let Some(g) = self.half_gone.get_mut(&key) {
                    g.answered = false;
                }
                self.stats.refused += 1;
                continue;
            }
            let confirmed = if entry {
                let Some(h) = self.take_half(key) else {
                    continue;
                };
                Confirmed::of_entry(key, *h)
            } else {
                let Some(g) = self.half_gone.remove(&key) else {
                    continue;
                };
                self.stats.half_open_late_opens += 1;
                Confirmed {
                    key,
                    host,
                    layers: (self.cfg.layers)(),
                    prints: [0; SEEN],
                    stored: Vec::new(),
                    attach: g.attach,
                    group: None,
                }
            };
            // The time of the endpoint's latest call (`accept` is given none).
            let (t, now) = (self.elapsed, self.last_now.unwrap_or(Millis(0)));
            let _ = self.open_confirmed(t, now, confirmed, None);
        }
    }

    /// Drops the keys of `half_answered` whose entry is gone, once they outnumber the live
    /// ones (a backlog that stays full while entries come and go).
    fn compact_answered(&mut self) {
        if self.half_answered.len() > 2 * (self.half.len() + self.half_gone.len()) + 64 {
            let (half, gone) = (&self.half, &self.half_gone);
            self.half_answered.retain(|k| {
                half.get(k).is_some_and(|h| h.answered) || gone.get(k).is_some_and(|g| g.answered)
            });
        }
    }

    /// Whether the limits on sessions let one more from `host` in (all sessions, the
    /// accept backlog, the host's).
    fn room_for_session(&self, host: &A::Host) -> bool {
        !self.backlog_full() && self.room_beside_backlog(host)
    }

    /// Whether the accept backlog holds as many sessions as it may.
    fn backlog_full(&self) -> bool {
        self.accept_queue.len() >= self.cfg.backlog
    }

    /// Opens the session a peer confirmed by answering a probe (`print`: the answer's
    /// fingerprint; `datagram`, `plain`, `kcp`: the answer, `group`: its FEC group): records
    /// the datagrams that opened it, counts it against its host, queues it for `accept`,
    /// and feeds it what was kept, then the answer, in the order they came: whole datagrams
    /// through the session's inner layers (its FEC decoder learns their shards), bare
    /// segments straight to the engine.
    fn open_confirmed(
        &mut self,
        t: u64,
        now: Millis,
        c: Confirmed<A, A::Host>,
        answer: Option<Answer<'_>>,
    ) -> Result<(), EndpointError> {
        let key = c.key;
        let demux_layers = self.cfg.demux_layers;
        let id = self
            .create(now, t, key.0, key.1, c.layers)
            .map_err(EndpointError::Config)?;
        for &p in c.prints.iter().filter(|&&p| p != 0) {
            self.record.insert(p);
        }
        if let Some(a) = &answer {
            self.record.insert(a.print);
        }
        *self.host_sessions.entry(c.host).or_insert(0) += 1;
        if c.attach {
            // The answer's group (without an answer, the latest kept data's): parity of the
            // session's groups finds it from now on.
            let group = match &answer {
                Some(a) => a.group,
                None => c.group,
            };
            self.attach(key.0, id.idx, group);
        }
        self.stats.passive_opens += 1;
        self.accept_queue.push_back(id);
        self.events.push_back(Event::Incoming);
        let limited = self.recv_limited();
        let cache = &mut self.cache;
        let Some(Some(slot)) = self.slots.get_mut(id.idx as usize) else {
            return Err(EndpointError::Rejected(DropReason::NoSession));
        };
        slot.passive = true;
        // The endpoint-wide receive budget applies from the first byte.
        slot.session.set_receive_limited(limited);
        let kcp_bytes = answer
            .as_ref()
            .and_then(|a| a.datagram.get(a.kcp.clone()))
            .unwrap_or(&[]);
        let mut chunks = chunks_needed(kcp_bytes);
        for part in kept_kcp(&c.stored) {
            note_push(slot, scan(part).newest_push);
            chunks += chunks_needed(part);
        }
        note_push(slot, scan(kcp_bytes).newest_push);
        slot.session.kcp_mut().stock_storage(cache, chunks);
        let mut stored = c.stored;
        let mut at = 0;
        while let Some(k) = record_at(&stored, at) {
            at = k.bytes.end;
            let Some(bytes) = stored.get_mut(k.bytes) else {
                break;
            };
            if k.whole {
                let _ = slot.session.handle_opened(now, bytes, demux_layers);
            } else if let Some(segments) = bytes.get(k.kcp) {
                let _ = slot.session.kcp_mut().handle_datagram(now, segments);
            }
        }
        let r = match answer {
            Some(a) => {
                let plain = a.datagram.get_mut(a.plain).unwrap_or(&mut []);
                slot.session.handle_opened(now, plain, demux_layers)
            }
            None => Ok(()),
        };
        self.recount_recv(id.idx);
        self.after_io(id.idx);
        r.map_err(|e| EndpointError::Rejected(DropReason::Session(e)))
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

    /// Whether the half-open entry `key` has had the time a real peer needs to answer: the
    /// configured minimum age, or longer where its host's peers have been answering slower
    /// (a loaded client, a long path): the smoothed answer time plus four deviations, at
    /// most half the entry's timeout. A host learns that only from answers, which a spoofed
    /// flood does not send.
    fn old_enough(&self, key: (A, u32), t: u64) -> bool {
        self.half.get(&key).is_none_or(|h| {
            let learned = self
                .half_open_hosts
                .get(&h.host)
                .map_or(0, HostHalf::answer_bound_ms)
                .min(u64::from(self.cfg.half_open_timeout_ms) / 2);
            let min_age = u64::from(self.cfg.half_open_min_age_ms).max(learned);
            t.saturating_sub(h.opened_at) >= min_age
        })
    }

    /// Removes a half-open entry from every index and returns it.
    fn take_half(&mut self, key: (A, u32)) -> Option<Box<HalfOpen<A::Host>>> {
        let h = self.half.remove(&key)?;
        self.half_pool = self.half_pool.saturating_sub(h.stored.len());
        self.half_age.remove(&h.serial);
        self.half_by_host.remove(&(h.host, h.serial));
        if let Some(n) = self.half_open_hosts.get_mut(&h.host) {
            n.entries = n.entries.saturating_sub(1);
            if n.entries == 0 {
                self.half_open_hosts.remove(&h.host);
            }
        }
        Some(h)
    }

    /// Drops a half-open entry whose peer never answered (evicted or timed out).
    fn drop_half(&mut self, key: (A, u32)) {
        if self.take_half(key).is_some() {
            self.stats.unconfirmed += 1;
        }
    }

    /// Evicts a half-open entry for a newer first flight, remembering when it was opened
    /// (the last `8 * max_half_open` of them) in case its answer still comes.
    fn evict_half(&mut self, key: (A, u32)) {
        let Some(h) = self.take_half(key) else {
            return;
        };
        self.stats.unconfirmed += 1;
        self.stats.half_open_evicted += 1;
        self.remember_gone(
            key,
            Gone {
                opened_at: h.opened_at,
                probed: h.last_ask.is_some(),
                asked_at: h.last_ask.unwrap_or(h.opened_at),
                // An entry whose peer answered while the backlog was full stays answered:
                // its session opens when the backlog has room, without what it kept.
                answered: h.answered,
                attach: h.attach,
            },
        );
    }

    /// Remembers `key` as gone (the last `8 * max_half_open` of them) in case its answer
    /// still comes.
    fn remember_gone(&mut self, key: (A, u32), gone: Gone) {
        if let Some(g) = self.half_gone.get_mut(&key) {
            // Already in the queue: it keeps its place.
            *g = gone;
            return;
        }
        if self.half_gone_order.len() >= 8 * self.cfg.max_half_open {
            if let Some(old) = self.half_gone_order.pop_front() {
                self.half_gone.remove(&old);
            }
        }
        self.half_gone.insert(key, gone);
        self.half_gone_order.push_back(key);
    }

    /// A first flight refused because entries too young to evict fill its host's share or
    /// the table. If its host has shown that its peers answer probes (it holds confirmed
    /// sessions, or its answer time is known), the first flight is answered with a probe
    /// all the same, sealed by a codec stack built for it and then dropped, and only its
    /// address, conversation and time are remembered, with the evicted entries: the peer's
    /// answer opens the session as a late answer to an evicted entry does, and the first
    /// flight's data comes with the peer's retransmission. Without it a loaded client
    /// behind one address (slow to answer, so its entries cannot be evicted yet) waits out
    /// its retransmission back-off for every refusal. A host that has answered nothing (a
    /// spoofed flood) gets no probe; one probe per conversation per `ASK_GAP_MS`; at most
    /// [`REFUSAL_PROBES`] waiting; each no larger than the first flight it answers.
    #[allow(clippy::too_many_arguments)]
    fn probe_refused(
        &mut self,
        t: u64,
        now: Millis,
        key: (A, u32),
        host: A::Host,
        attach: bool,
        datagram: &[u8],
        opened: &Opened,
    ) {
        let answers = self.host_sessions.get(&host).is_some_and(|&n| n > 0)
            || self
                .half_open_hosts
                .get(&host)
                .is_some_and(|h| h.answer_ms > 0);
        if !answers || self.refusal_probes.len() >= REFUSAL_PROBES {
            return;
        }
        let earlier = self.half_gone.get(&key).copied();
        if earlier.is_some_and(|g| g.probed && t < g.asked_at + ASK_GAP_MS) {
            return;
        }
        let mut layers = (self.cfg.layers)();
        let first_demux = layers.len().saturating_sub(self.cfg.demux_layers);
        if Self::accept_on(&mut layers, first_demux, opened, datagram, now).is_err() {
            return;
        }
        // Room as a datagram slot gives a layer (it may use more than its trailer while
        // sealing).
        let mut buf = alloc::vec![0u8; probe_len(&layers).max(datagram.len())];
        let Some(n) = seal_probe(&mut layers, key.1, self.probe_wnd(), now, &mut buf) else {
            return;
        };
        if n > datagram.len() {
            self.stats.amplification_limited += 1;
            return;
        }
        buf.truncate(n);
        self.remember_gone(
            key,
            Gone {
                opened_at: earlier.map_or(t, |g| g.opened_at),
                probed: true,
                asked_at: t,
                answered: false,
                attach,
            },
        );
        self.refusal_probes.push_back((key.0, buf));
        self.stats.half_open_refusal_probes += 1;
    }

    /// The answer to a probe of an evicted entry: the session opens as at the entry's
    /// confirmation, under the same limits and checks (replay record, the session's own
    /// demux layers), without the first flight's segments (the entry dropped them; the peer
    /// retransmits what is not acknowledged).
    fn late_answer(
        &mut self,
        t: u64,
        now: Millis,
        arrived: Stranger<A>,
        datagram: &mut [u8],
        opened: &Opened,
    ) -> Result<(), EndpointError> {
        let Stranger {
            from,
            conv,
            plain,
            kcp,
            attach,
            group,
        } = arrived;
        let print = fingerprint(datagram);
        if self.record.contains(print) {
            self.stats.in_errs += 1;
            self.stats.replayed += 1;
            return Err(EndpointError::Rejected(DropReason::Replayed));
        }
        let host = self.host_of(&from);
        if !self.room_for_session(&host) {
            if self.backlog_full() && self.room_beside_backlog(&host) {
                // Only the backlog is full: as for an entry's answer, the session opens
                // when the application makes room (without this answer's data, which the
                // peer retransmits; its fingerprint is recorded now).
                self.record.insert(print);
                self.remember_gone(
                    (from, conv),
                    Gone {
                        opened_at: t,
                        probed: true,
                        asked_at: t,
                        answered: true,
                        attach,
                    },
                );
                self.half_answered.push_back((from, conv));
                self.compact_answered();
                self.stats.half_open_deferred += 1;
                return Ok(());
            }
            self.stats.refused += 1;
            return Err(EndpointError::Rejected(DropReason::Refused));
        }
        let mut layers = (self.cfg.layers)();
        let first_demux = layers.len().saturating_sub(self.cfg.demux_layers);
        if let Err(e) = Self::accept_on(&mut layers, first_demux, opened, datagram, now) {
            return Err(self.codec_drop(e));
        }
        self.stats.half_open_late_opens += 1;
        let confirmed = Confirmed {
            key: (from, conv),
            host,
            layers,
            prints: [0; SEEN],
            stored: Vec::new(),
            attach,
            group: None,
        };
        let answer = Answer {
            print,
            datagram,
            plain,
            kcp,
            group,
        };
        self.open_confirmed(t, now, confirmed, Some(answer))
    }

    /// A passive session ended: it no longer counts against its host.
    pub(super) fn forget_session_host(&mut self, addr: A) {
        let host = self.host_of(&addr);
        if let Some(n) = self.host_sessions.get_mut(&host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.host_sessions.remove(&host);
            }
        }
    }

    /// Half-open timers due at `t`: probes to repeat, entries to drop.
    pub(super) fn half_timeouts(&mut self, t: u64) {
        let timeout = u64::from(self.cfg.half_open_timeout_ms);
        while let Some(&Reverse((at, serial))) = self.half_timers.peek() {
            if at > t {
                break;
            }
            self.half_timers.pop();
            let Some(&key) = self.half_age.get(&serial) else {
                continue;
            };
            let Some(h) = self.half.get_mut(&key) else {
                continue;
            };
            if h.deadline != at {
                continue;
            }
            if t >= h.opened_at + timeout {
                self.drop_half(key);
                continue;
            }
            if t >= h.next_ask {
                h.next_ask = t + ASK_PERIOD_MS;
                if !h.ask_queued {
                    h.ask_queued = true;
                    self.half_tx.push_back(key);
                }
            }
            h.deadline = h.next_ask.min(h.opened_at + timeout);
            self.half_timers.push(Reverse((h.deadline, serial)));
        }
    }

    /// The earliest half-open deadline.
    pub(super) fn half_next(&mut self) -> Option<u64> {
        while let Some(&Reverse((at, serial))) = self.half_timers.peek() {
            let live = self
                .half_age
                .get(&serial)
                .and_then(|k| self.half.get(k))
                .is_some_and(|h| h.deadline == at);
            if live {
                return Some(at);
            }
            self.half_timers.pop();
        }
        None
    }

    fn compact_half_timers(&mut self) {
        if self.half_timers.len() > 2 * self.half.len() + 64 {
            let live: Vec<_> = self
                .half
                .values()
                .map(|h| Reverse((h.deadline, h.serial)))
                .collect();
            self.half_timers = live.into();
        }
    }

    /// The window a probe advertises: the sessions' receive window, as a u16.
    fn probe_wnd(&self) -> u16 {
        self.cfg.session.rcv_wnd.min(u32::from(u16::MAX)) as u16
    }

    /// Writes the next probe of a half-open entry into `buf`: a WASK sealed by the entry's
    /// layers, if the amplification budget allows it. Returns its destination and length.
    pub(super) fn half_transmit(&mut self, now: Millis, buf: &mut [u8]) -> Option<(A, usize)> {
        let t = self.elapsed;
        let wnd = self.probe_wnd();
        while let Some((to, probe)) = self.refusal_probes.pop_front() {
            let Some(region) = buf.get_mut(..probe.len()) else {
                continue;
            };
            region.copy_from_slice(&probe);
            self.stats.out_pkts += 1;
            self.stats.out_bytes += probe.len() as u64;
            return Some((to, probe.len()));
        }
        while let Some(key) = self.half_tx.pop_front() {
            // Gone (evicted, confirmed), or queued twice (evicted and opened again).
            let Some(h) = self.half.get_mut(&key).filter(|h| h.ask_queued) else {
                continue;
            };
            h.ask_queued = false;
            let len = probe_len(&h.layers);
            if h.bytes_out + len as u64 > AMPLIFICATION * h.bytes_in {
                self.stats.amplification_limited += 1;
                continue;
            }
            if buf.len() < len {
                continue;
            }
            let Some(end) = seal_probe(&mut h.layers, key.1, wnd, now, buf) else {
                continue;
            };
            h.bytes_out += end as u64;
            h.last_ask = Some(t);
            self.stats.out_pkts += 1;
            self.stats.out_bytes += end as u64;
            return Some((key.0, end));
        }
        None
    }

    /// What an entry holds besides its kept segments: the entry, its places in the three
    /// indexes (B-tree nodes counted half full), its codec stack.
    fn entry_fixed_bytes(layers: &[Layer]) -> usize {
        // Allocator rounding, B-tree nodes fuller or emptier than half, a layer's state that
        // grows after its first seal and trim.
        const SLACK: usize = 128;
        SLACK
            + core::mem::size_of::<HalfOpen<A::Host>>()
            + 2 * (core::mem::size_of::<((A, u32), Box<HalfOpen<A::Host>>)>()
                + core::mem::size_of::<(u64, (A, u32))>()
                + core::mem::size_of::<(A::Host, u64)>())
            + core::mem::size_of_val(layers)
            + layers
                .iter()
                .map(|l| core::mem::size_of_val(&**l) + l.heap_bytes())
                .sum::<usize>()
    }

    /// Heap bytes of the half-open entries (the replay record, a fixed table, is not
    /// counted: see [`Endpoint::replay_record_bytes`]).
    pub(super) fn half_open_heap_bytes(&self) -> usize {
        // Evicted entries remembered for their late answers: a B-tree entry (nodes counted
        // half full) and a queue slot each.
        let gone = self.half_gone.len() * 2 * core::mem::size_of::<((A, u32), Gone)>()
            + self.half_gone_order.capacity() * core::mem::size_of::<(A, u32)>()
            + self.refusal_probes.capacity() * core::mem::size_of::<(A, Vec<u8>)>()
            + self.half_answered.capacity() * core::mem::size_of::<(A, u32)>()
            + self
                .refusal_probes
                .iter()
                .map(|(_, p)| p.capacity())
                .sum::<usize>();
        self.half
            .values()
            .map(|h| Self::entry_fixed_bytes(&h.layers) + h.stored.len())
            .sum::<usize>()
            + gone
    }

    /// Heap bytes of the endpoint-wide replay record (fixed while the endpoint lives; see
    /// [`EndpointConfig::replay_record`](super::EndpointConfig::replay_record)).
    pub fn replay_record_bytes(&self) -> usize {
        self.record.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_wins_of_the_conversation_answers_a_probe() {
        assert!(!answers_probe(&[], 1));
    }
}
