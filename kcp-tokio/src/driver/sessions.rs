//! The adapter's per-session entries, in a table indexed by the endpoint's slot number.

use std::collections::HashMap;

use kcp_core::endpoint::SessionId;

use super::Sess;

/// Entries kept per session some stream refers to, at the index of the session's slot in
/// the endpoint ([`SessionId::index`]: small and dense). Finding a session's entry is one
/// memory access; a hash map cost a hash and a probe of its table besides, a cache miss more
/// at thousands of sessions, on every read, write and wake-up. A slot is reused once its
/// session has ended, so each entry keeps its id and lookups compare it.
///
/// A session's entry outlives the session while a stream refers to it (it records why the
/// session ended), so a new session can take the slot while the old entry is still wanted:
/// the old entry then moves to a small map of its own (`displaced`), where its stream still
/// finds it, until that stream lets go.
#[derive(Default)]
pub(crate) struct Sessions {
    slots: Vec<Option<(SessionId, Sess)>>,
    /// Entries of ended sessions whose slot a later session took.
    displaced: HashMap<SessionId, Sess>,
}

impl Sessions {
    /// Adds (or replaces) `id`'s entry. An entry of another (ended) session in the same slot
    /// moves aside.
    pub(crate) fn insert(&mut self, id: SessionId, sess: Sess) {
        let i = id.index();
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        if let Some((old, entry)) = self.slots[i].replace((id, sess)) {
            if old != id {
                self.displaced.insert(old, entry);
            }
        }
    }

    pub(crate) fn get(&self, id: &SessionId) -> Option<&Sess> {
        match self.slots.get(id.index()) {
            Some(Some((k, s))) if k == id => Some(s),
            _ if self.displaced.is_empty() => None,
            _ => self.displaced.get(id),
        }
    }

    pub(crate) fn get_mut(&mut self, id: &SessionId) -> Option<&mut Sess> {
        match self.slots.get_mut(id.index()) {
            Some(Some((k, s))) if k == id => Some(s),
            _ if self.displaced.is_empty() => None,
            _ => self.displaced.get_mut(id),
        }
    }

    pub(crate) fn contains_key(&self, id: &SessionId) -> bool {
        self.get(id).is_some()
    }

    /// Removes `id`'s entry. The table shrinks with the highest slot in use, and gives its
    /// room back once it is a quarter full.
    pub(crate) fn remove(&mut self, id: &SessionId) -> Option<Sess> {
        let Some(slot) = self
            .slots
            .get_mut(id.index())
            .filter(|s| matches!(s, Some((k, _)) if k == id))
        else {
            let sess = self.displaced.remove(id)?;
            if self.displaced.is_empty() {
                self.displaced = HashMap::new();
            }
            return Some(sess);
        };
        let (_, sess) = slot.take()?;
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        if self.slots.len() < self.slots.capacity() / 4 {
            self.slots.shrink_to(self.slots.capacity() / 2);
        }
        Some(sess)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Sess> {
        self.slots
            .iter_mut()
            .flatten()
            .map(|(_, s)| s)
            .chain(self.displaced.values_mut())
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        // `remove` drops the trailing empty slots, so an emptied table has none.
        self.slots.is_empty() && self.displaced.is_empty()
    }

    /// Entries the table has room for (its heap).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.capacity()
    }
}
