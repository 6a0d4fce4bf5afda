//! Confirmation: a peer answered its entry's probe, and the session opens with what the
//! entry kept, once the backlog and the host's share have room.

use super::*;

impl<A: PeerAddr> Endpoint<A> {
    /// Opens the sessions of entries whose peer answered while the accept backlog was full,
    /// in the order the answers came, while the backlog has room (`accept` calls it, and
    /// `poll_transmit` after sessions nobody accepted went). An entry whose other limits
    /// are full by then goes back to waiting for an answer to its next probe.
    pub(in crate::endpoint) fn open_answered(&mut self) {
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
    pub(super) fn compact_answered(&mut self) {
        if self.half_answered.len() > 2 * (self.half.len() + self.half_gone.len()) + 64 {
            let (half, gone) = (&self.half, &self.half_gone);
            self.half_answered.retain(|k| {
                half.get(k).is_some_and(|h| h.answered) || gone.get(k).is_some_and(|g| g.answered)
            });
        }
    }

    /// Whether the limits on sessions let one more from `host` in (all sessions, the
    /// accept backlog, the host's).
    pub(super) fn room_for_session(&self, host: &A::Host) -> bool {
        !self.backlog_full() && self.room_beside_backlog(host)
    }

    /// Whether the accept backlog holds as many sessions as it may.
    pub(super) fn backlog_full(&self) -> bool {
        self.accept_queue.len() >= self.cfg.backlog
    }

    /// Opens the session a peer confirmed by answering a probe (`print`: the answer's
    /// fingerprint; `datagram`, `plain`, `kcp`: the answer, `group`: its FEC group): records
    /// the datagrams that opened it, counts it against its host, queues it for `accept`,
    /// and feeds it what was kept, then the answer, in the order they came: whole datagrams
    /// through the session's inner layers (its FEC decoder learns their shards), bare
    /// segments straight to the engine.
    pub(super) fn open_confirmed(
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
        slot.session
            .kcp_mut()
            .stock_storage(cache, chunks.full, chunks.small);
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
}
