//! Probes: sealing the window probe that answers a first flight, recognising the peer's
//! answer, probing refused first flights and late answers, and sending what entries owe.

use super::*;

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
pub(super) fn answers_probe(kcp: &[u8], conv: u32) -> bool {
    Datagram::new(kcp)
        .map_while(Result::ok)
        .any(|(s, _)| s.conv == conv && s.cmd == Command::WindowTell)
}

impl<A: PeerAddr> Endpoint<A> {
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
    pub(super) fn probe_refused(
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
    pub(super) fn late_answer(
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

    /// The window a probe advertises: the sessions' receive window, as a u16.
    fn probe_wnd(&self) -> u16 {
        self.cfg.session.rcv_wnd.min(u32::from(u16::MAX)) as u16
    }

    /// Writes the next probe of a half-open entry into `buf`: a WASK sealed by the entry's
    /// layers, if the amplification budget allows it. Returns its destination and length.
    pub(in crate::endpoint) fn half_transmit(
        &mut self,
        now: Millis,
        buf: &mut [u8],
    ) -> Option<(A, usize)> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_wins_of_the_conversation_answers_a_probe() {
        assert!(!answers_probe(&[], 1));
    }
}
