//! The deterministic lossy, reordering link between the two engines.

use super::*;

struct XorShift(u32);
impl XorShift {
    pub(crate) fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

pub(crate) struct Link {
    pub(crate) data: [[u8; MTU]; LINK_SLOTS],
    pub(crate) len: [u16; LINK_SLOTS],
    pub(crate) due: [u32; LINK_SLOTS],
    pub(crate) order: [u32; LINK_SLOTS],
    pub(crate) busy: [bool; LINK_SLOTS],
    rng: XorShift,
    pub(crate) pushed: u32,
    pub(crate) last_delivered: u32,
    pub(crate) sent: u32,
    pub(crate) lost: u32,
    pub(crate) overflow: u32,
    pub(crate) delivered: u32,
    pub(crate) reordered: u32,
}

impl Link {
    pub(crate) const fn new(seed: u32) -> Link {
        Link {
            data: [[0; MTU]; LINK_SLOTS],
            len: [0; LINK_SLOTS],
            due: [0; LINK_SLOTS],
            order: [0; LINK_SLOTS],
            busy: [false; LINK_SLOTS],
            rng: XorShift(seed),
            pushed: 0,
            last_delivered: 0,
            sent: 0,
            lost: 0,
            overflow: 0,
            delivered: 0,
            reordered: 0,
        }
    }

    pub(crate) fn reset(&mut self, seed: u32) {
        self.busy = [false; LINK_SLOTS];
        self.rng = XorShift(seed);
        self.pushed = 0;
        self.last_delivered = 0;
        self.sent = 0;
        self.lost = 0;
        self.overflow = 0;
        self.delivered = 0;
        self.reordered = 0;
    }

    pub(crate) fn push(&mut self, now: u32, datagram: &[u8]) {
        self.sent += 1;
        let r = self.rng.next();
        if r & 0xFFFF < LOSS {
            self.lost += 1;
            return;
        }
        let Some(i) = self.busy.iter().position(|b| !b) else {
            self.overflow += 1;
            return;
        };
        let n = datagram.len().min(MTU);
        self.data[i][..n].copy_from_slice(&datagram[..n]);
        self.len[i] = n as u16;
        self.due[i] = now + DELAY_MS + (r >> 16) % JITTER_MS;
        self.pushed += 1;
        self.order[i] = self.pushed;
        self.busy[i] = true;
    }

    /// The slot of the next datagram due at `now` (earliest first, then in sending order).
    pub(crate) fn pop_due(&mut self, now: u32) -> Option<usize> {
        let mut best: Option<usize> = None;
        for i in 0..LINK_SLOTS {
            if self.busy[i] && self.due[i] <= now {
                best = match best {
                    Some(b) if (self.due[b], self.order[b]) <= (self.due[i], self.order[i]) => {
                        Some(b)
                    }
                    _ => Some(i),
                };
            }
        }
        let i = best?;
        self.busy[i] = false;
        self.delivered += 1;
        if self.order[i] < self.last_delivered {
            self.reordered += 1;
        }
        self.last_delivered = self.last_delivered.max(self.order[i]);
        Some(i)
    }

    pub(crate) fn next_due(&self) -> Option<u32> {
        (0..LINK_SLOTS)
            .filter(|&i| self.busy[i])
            .map(|i| self.due[i])
            .min()
    }
}
