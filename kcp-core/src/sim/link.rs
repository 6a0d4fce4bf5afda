//! One-way impaired link with a seeded random source.

use std::collections::BinaryHeap;
use std::vec::Vec;

/// Impairments of one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Probability that a datagram is lost (0.0..=1.0).
    pub loss: f64,
    /// One-way propagation delay in ms.
    pub delay_ms: u32,
    /// Extra uniform random delay in `0..=jitter_ms` (reorders datagrams naturally).
    pub jitter_ms: u32,
    /// Probability that a datagram is held back an extra `reorder_ms`.
    pub reorder: f64,
    /// Extra delay of a reordered datagram.
    pub reorder_ms: u32,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Bandwidth in bytes per second (`None`: unlimited); datagrams queue behind each other.
    pub bandwidth: Option<u64>,
    /// Bytes that may wait in the bandwidth queue; more are dropped (drop-tail).
    pub queue_bytes: usize,
    /// Largest datagram carried; larger ones are dropped.
    pub mtu: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            delay_ms: 10,
            jitter_ms: 0,
            reorder: 0.0,
            reorder_ms: 15,
            duplicate: 0.0,
            bandwidth: None,
            queue_bytes: 1 << 20,
            mtu: 1500,
        }
    }
}

/// What a link did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams offered.
    pub sent: u64,
    /// Bytes offered.
    pub sent_bytes: u64,
    /// Dropped by random loss.
    pub lost: u64,
    /// Dropped for exceeding the MTU.
    pub too_big: u64,
    /// Dropped because the bandwidth queue was full.
    pub queue_drops: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Datagrams held back by reordering.
    pub reordered: u64,
    /// Datagrams delivered (copies included).
    pub delivered: u64,
}

/// A small, fast, seedable generator (SplitMix64); good enough for impairments.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
    /// Uniform in `0..=max`.
    pub fn below_incl(&mut self, max: u32) -> u32 {
        if max == 0 {
            0
        } else {
            (self.next_u64() % (max as u64 + 1)) as u32
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct InFlight {
    at: u64,
    seq: u64,
    data: Vec<u8>,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        // Min-heap on (time, insertion order).
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One direction of the simulated network.
#[derive(Debug)]
pub struct Link {
    /// Its impairments (may be changed between steps).
    pub config: LinkConfig,
    /// What it did.
    pub stats: LinkStats,
    rng: Rng,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    busy_until: u64,
    queued_bytes: usize,
}

impl Link {
    /// A link with its own random stream.
    pub fn new(config: LinkConfig, seed: u64) -> Link {
        Link {
            config,
            stats: LinkStats::default(),
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            busy_until: 0,
            queued_bytes: 0,
        }
    }

    /// Offers a datagram at time `now` (ms since the simulation start).
    pub fn send(&mut self, now: u64, data: &[u8]) {
        let c = self.config;
        self.stats.sent += 1;
        self.stats.sent_bytes += data.len() as u64;
        if data.len() > c.mtu {
            self.stats.too_big += 1;
            return;
        }
        if self.rng.chance(c.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut depart = now;
        if let Some(bw) = c.bandwidth {
            // Serialisation: the datagram leaves when the ones before it have left.
            let backlog_ms = self.busy_until.saturating_sub(now);
            let backlog_bytes = (backlog_ms * bw / 1000) as usize;
            if backlog_bytes + data.len() > c.queue_bytes {
                self.stats.queue_drops += 1;
                return;
            }
            let start = self.busy_until.max(now);
            let tx_ms = (data.len() as u64 * 1000).div_ceil(bw.max(1));
            self.busy_until = start + tx_ms;
            depart = self.busy_until;
        }
        let copies = if self.rng.chance(c.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = depart + c.delay_ms as u64 + self.rng.below_incl(c.jitter_ms) as u64;
            if self.rng.chance(c.reorder) {
                self.stats.reordered += 1;
                at += c.reorder_ms as u64;
            }
            self.seq += 1;
            self.queued_bytes += data.len();
            self.queue.push(InFlight {
                at,
                seq: self.seq,
                data: data.to_vec(),
            });
        }
    }

    /// When the next datagram arrives.
    pub fn next_delivery(&self) -> Option<u64> {
        self.queue.peek().map(|f| f.at)
    }

    /// The next datagram due at or before `now`.
    pub fn deliver(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.queue.peek().is_some_and(|f| f.at <= now) {
            let f = self.queue.pop()?;
            self.queued_bytes -= f.data.len();
            self.stats.delivered += 1;
            Some(f.data)
        } else {
            None
        }
    }

    /// Datagrams still on the wire.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}
