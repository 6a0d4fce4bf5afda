//! The table of half-open entries: ages, eviction, the record of evicted entries, timers
//! and the heap the entries hold.

use super::*;

impl<A: PeerAddr> Endpoint<A> {
    /// Whether the half-open entry `key` has had the time a real peer needs to answer: the
    /// configured minimum age, or longer where its host's peers have been answering slower
    /// (a loaded client, a long path): the smoothed answer time plus four deviations, at
    /// most half the entry's timeout. A host learns that only from answers, which a spoofed
    /// flood does not send.
    pub(super) fn old_enough(&self, key: (A, u32), t: u64) -> bool {
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
    pub(super) fn take_half(&mut self, key: (A, u32)) -> Option<Box<HalfOpen<A::Host>>> {
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
    pub(super) fn evict_half(&mut self, key: (A, u32)) {
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
    pub(super) fn remember_gone(&mut self, key: (A, u32), gone: Gone) {
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

    /// A passive session ended: it no longer counts against its host.
    pub(in crate::endpoint) fn forget_session_host(&mut self, addr: A) {
        let host = self.host_of(&addr);
        if let Some(n) = self.host_sessions.get_mut(&host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.host_sessions.remove(&host);
            }
        }
    }

    /// Half-open timers due at `t`: probes to repeat, entries to drop.
    pub(in crate::endpoint) fn half_timeouts(&mut self, t: u64) {
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
    pub(in crate::endpoint) fn half_next(&mut self) -> Option<u64> {
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

    pub(super) fn compact_half_timers(&mut self) {
        if self.half_timers.len() > 2 * self.half.len() + 64 {
            let live: Vec<_> = self
                .half
                .values()
                .map(|h| Reverse((h.deadline, h.serial)))
                .collect();
            self.half_timers = live.into();
        }
    }

    /// What an entry holds besides its kept segments: the entry, its places in the three
    /// indexes (B-tree nodes counted half full), its codec stack.
    pub(super) fn entry_fixed_bytes(layers: &[Layer]) -> usize {
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
    pub(in crate::endpoint) fn half_open_heap_bytes(&self) -> usize {
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
    /// [`EndpointConfig::replay_record`](crate::endpoint::EndpointConfig::replay_record)).
    pub fn replay_record_bytes(&self) -> usize {
        self.record.heap_bytes()
    }
}
