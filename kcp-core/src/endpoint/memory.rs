//! Memory: the receive budget all sessions share, and the heap the endpoint accounts for.

use alloc::boxed::Box;

use super::slot::Slot;
use super::{keyed, Endpoint, PeerAddr};

impl<A: PeerAddr> Endpoint<A> {
    /// Counts a session's receive-side heap again after it changed, and tells whether the
    /// endpoint is now past its receive budget.
    pub(super) fn recount_recv(&mut self, idx: u32) {
        if let Some(Some(slot)) = self.slots.get_mut(idx as usize) {
            let now = slot.session.receive_heap_bytes().min(u32::MAX as usize);
            let was = slot.recv_bytes as usize;
            self.recv_total = self.recv_total - was.min(self.recv_total) + now;
            slot.recv_bytes = now as u32;
        }
    }

    /// Whether the sessions together hold the receive budget or more.
    pub(super) fn recv_limited(&self) -> bool {
        self.recv_total >= self.cfg.recv_budget_bytes
    }

    /// Receive-side heap bytes all sessions hold, as counted against
    /// [`recv_budget_bytes`](super::EndpointConfig::recv_budget_bytes).
    pub fn receive_heap_bytes(&self) -> usize {
        self.recv_total
    }

    /// Heap bytes the endpoint's sessions and half-open entries hold (engines, codec state,
    /// session tables, kept first-flight segments) and those kept for reuse, as
    /// [`Session::heap_bytes`](crate::Session::heap_bytes) and [`ChunkCache::heap_bytes`](crate::storage::ChunkCache::heap_bytes) count them; for memory
    /// accounting. The fixed replay record is apart
    /// ([`replay_record_bytes`](Self::replay_record_bytes)).
    pub fn heap_bytes(&self) -> (usize, usize) {
        let sessions = self.slots.capacity() * core::mem::size_of::<Option<Box<Slot<A>>>>()
            + self
                .slots
                .iter()
                .flatten()
                .map(|s| core::mem::size_of::<Slot<A>>() + s.session.heap_bytes())
                .sum::<usize>()
            + self.by_key.heap_bytes()
            + keyed::map_bytes(&self.attach_route)
            + self.half_open_heap_bytes();
        (sessions, self.cache.heap_bytes())
    }
}
