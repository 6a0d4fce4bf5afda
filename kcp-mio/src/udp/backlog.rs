//! The send backlog: what the kernel refused, kept in preallocated slots.

use std::net::SocketAddr;

use super::SLOT;

/// Datagrams the kernel had no room for, in preallocated slots: a ring that grows (doubling)
/// up to `max` slots and is then reused.
pub(super) struct Backlog {
    pub(super) buf: Vec<u8>,
    pub(super) lens: Vec<u16>,
    pub(super) addrs: Vec<SocketAddr>,
    pub(super) head: usize,
    pub(super) len: usize,
    pub(super) max: usize,
}

impl Backlog {
    pub(super) fn new(max: usize) -> Backlog {
        Backlog {
            buf: Vec::new(),
            lens: Vec::new(),
            addrs: Vec::new(),
            head: 0,
            len: 0,
            max,
        }
    }

    pub(super) fn cap(&self) -> usize {
        self.lens.len()
    }

    /// Keeps a copy of `d`; false if the backlog is full.
    pub(super) fn push(&mut self, to: SocketAddr, d: &[u8]) -> bool {
        if self.len == self.cap() && !self.grow() {
            return false;
        }
        let i = (self.head + self.len) % self.cap();
        let n = d.len().min(SLOT);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(i * SLOT..i * SLOT + n), d.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.lens[i] = n as u16;
        self.addrs[i] = to;
        self.len += 1;
        true
    }

    /// Doubles the ring (at least 8 slots, at most `max`), keeping the order.
    pub(super) fn grow(&mut self) -> bool {
        let cap = self.cap();
        let new = (cap * 2).max(8).min(self.max);
        if new <= cap {
            return false;
        }
        let mut buf = vec![0u8; new * SLOT];
        let mut lens = vec![0u16; new];
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut addrs = vec![unspecified; new];
        for k in 0..self.len {
            let i = (self.head + k) % cap;
            buf[k * SLOT..(k + 1) * SLOT].copy_from_slice(&self.buf[i * SLOT..(i + 1) * SLOT]);
            lens[k] = self.lens[i];
            addrs[k] = self.addrs[i];
        }
        self.buf = buf;
        self.lens = lens;
        self.addrs = addrs;
        self.head = 0;
        true
    }

    pub(super) fn front(&self) -> Option<(SocketAddr, &[u8])> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        let n = usize::from(self.lens[i]);
        Some((self.addrs[i], self.buf.get(i * SLOT..i * SLOT + n)?))
    }

    pub(super) fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.cap();
            self.len -= 1;
        }
    }
}
