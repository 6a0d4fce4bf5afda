//! A deterministic network simulator for sans-IO endpoints (feature `sim`).
//!
//! Two [`Node`]s exchange datagrams over two one-way [`Link`]s with seeded loss, delay, jitter,
//! reordering, duplication, a bandwidth limit and an MTU. Time is virtual: [`Sim::step`] jumps
//! straight to the next event (a delivery or a node's timer), so a test that simulates minutes
//! of lossy transfer runs in milliseconds and gives the same result on every run.
//!
//! Other crates reuse it to test codec stacks: anything that implements [`Node`] can be driven.
//!
//! The impairments themselves are a sans-IO model, [`LinkModel`] (see [`link`] for its rules),
//! which kcp-tokio's UDP impairment proxy drives on a real clock: the simulator and the proxy
//! impair datagrams by the same rules and the same generator, [`Rng`].
//!
//! ```
//! use kcp_core::sim::{LinkConfig, Sim};
//! use kcp_core::{Config, Kcp, Millis};
//!
//! let start = Millis(u32::MAX - 1000); // clocks wrap during the test
//! let a = Kcp::new(1, Config::fast3(), start).unwrap();
//! let b = Kcp::new(1, Config::fast3(), start).unwrap();
//! let link = LinkConfig { loss: 0.1, delay_ms: 20, ..LinkConfig::default() };
//! let mut sim = Sim::new(a, b, link, link, 42, start);
//! sim.a.send(b"across a lossy link").unwrap();
//! let mut buf = [0u8; 64];
//! let n = sim.run_until(5_000, |s| s.b.recv(&mut buf).ok()).unwrap();
//! assert_eq!(&buf[..n], b"across a lossy link");
//! ```

pub mod link;
mod rng;
pub mod scenario;

use std::vec::Vec;

pub use link::{Arrival, Link, LinkConfig, LinkModel, LinkStats, Rng, Verdict, REVERSE_SEED_XOR};

use crate::time::Millis;
use crate::Kcp;

/// Something the simulator can drive: a sans-IO endpoint.
pub trait Node {
    /// When the node next needs `handle_timeout`.
    fn poll_timeout(&self) -> Option<Millis>;
    /// Timer expiry.
    fn handle_timeout(&mut self, now: Millis);
    /// Next datagram to send.
    fn poll_transmit(&mut self, now: Millis, buf: &mut [u8]) -> Option<usize>;
    /// A datagram arrived. Errors are the node's to count; the simulator ignores them.
    fn handle_datagram(&mut self, now: Millis, datagram: &mut [u8]);
}

impl Node for Kcp<'_> {
    fn poll_timeout(&self) -> Option<Millis> {
        Kcp::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Millis) {
        Kcp::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Millis, buf: &mut [u8]) -> Option<usize> {
        Kcp::poll_transmit(self, now, buf)
    }
    fn handle_datagram(&mut self, now: Millis, datagram: &mut [u8]) {
        let _ = self.handle_datagram(now, datagram);
    }
}

impl Node for crate::Session<'_> {
    fn poll_timeout(&self) -> Option<Millis> {
        self.kcp().poll_timeout()
    }
    fn handle_timeout(&mut self, now: Millis) {
        self.kcp_mut().handle_timeout(now)
    }
    fn poll_transmit(&mut self, now: Millis, buf: &mut [u8]) -> Option<usize> {
        crate::Session::poll_transmit(self, now, buf)
    }
    fn handle_datagram(&mut self, now: Millis, datagram: &mut [u8]) {
        let _ = self.handle_datagram(now, datagram);
    }
}

/// Two nodes, two links and a virtual clock.
#[derive(Debug)]
pub struct Sim<A, B> {
    /// The first node (sends over `ab`).
    pub a: A,
    /// The second node (sends over `ba`).
    pub b: B,
    /// Link from `a` to `b`.
    pub ab: Link,
    /// Link from `b` to `a`.
    pub ba: Link,
    now: Millis,
    elapsed: u64,
    buf: Vec<u8>,
    /// Every datagram `a` sent, in order, when recording is on (see [`Sim::record`]).
    pub sent_by_a: Vec<Vec<u8>>,
    /// Every datagram `b` sent, when recording is on.
    pub sent_by_b: Vec<Vec<u8>>,
    recording: bool,
    /// Longest jump of the clock in one step of [`run_until`](Self::run_until), so that an
    /// application played by its closure on a schedule of its own is polled often enough.
    /// Unlimited by default.
    pub max_step_ms: u64,
}

impl<A: Node, B: Node> Sim<A, B> {
    /// A simulation starting at `start` (pick values near `u32::MAX` to exercise wrap-around);
    /// `seed` makes every random decision of both links reproducible.
    pub fn new(a: A, b: B, ab: LinkConfig, ba: LinkConfig, seed: u64, start: Millis) -> Self {
        Sim {
            a,
            b,
            ab: Link::new(ab, seed),
            ba: Link::new(ba, seed ^ REVERSE_SEED_XOR),
            now: start,
            elapsed: 0,
            buf: std::vec![0u8; 65536],
            sent_by_a: Vec::new(),
            sent_by_b: Vec::new(),
            recording: false,
            max_step_ms: u64::MAX,
        }
    }

    /// Keeps a copy of every datagram each node sends (for byte-level comparisons).
    pub fn record(&mut self, on: bool) {
        self.recording = on;
    }

    /// The current virtual time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Virtual milliseconds since the start.
    pub fn elapsed_ms(&self) -> u64 {
        self.elapsed
    }

    /// Moves every datagram both nodes want to send now onto their links.
    pub fn transmit(&mut self) {
        let now = self.now;
        while let Some(n) = self.a.poll_transmit(now, &mut self.buf) {
            let d = &self.buf[..n];
            if self.recording {
                self.sent_by_a.push(d.to_vec());
            }
            self.ab.send(self.elapsed, d);
        }
        while let Some(n) = self.b.poll_transmit(now, &mut self.buf) {
            let d = &self.buf[..n];
            if self.recording {
                self.sent_by_b.push(d.to_vec());
            }
            self.ba.send(self.elapsed, d);
        }
    }

    /// Sends what is pending, then advances the clock to the next event (at most `max_ms`
    /// ahead) and processes it: deliveries, then timers. Returns false when no event is
    /// pending within `max_ms` (the clock still advances by `max_ms`).
    pub fn step(&mut self, max_ms: u64) -> bool {
        self.transmit();
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        for t in [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
        {
            let d = t.since(self.now).max(0) as u64;
            consider(self.elapsed + d);
        }
        for t in [self.ab.next_delivery(), self.ba.next_delivery()]
            .into_iter()
            .flatten()
        {
            consider(t.max(self.elapsed));
        }
        let limit = self.elapsed + max_ms;
        let (target, any) = match next {
            Some(t) if t <= limit => (t, true),
            _ => (limit, false),
        };
        self.now += (target - self.elapsed) as u32;
        self.elapsed = target;
        let now = self.now;
        while let Some(mut d) = self.ab.deliver(self.elapsed) {
            self.b.handle_datagram(now, &mut d);
        }
        while let Some(mut d) = self.ba.deliver(self.elapsed) {
            self.a.handle_datagram(now, &mut d);
        }
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        self.transmit();
        any
    }

    /// Steps until `f` returns `Some` (checked after every step) or `max_ms` of virtual time
    /// passed. `f` is where a test plays the applications: it may send and receive.
    pub fn run_until<T>(
        &mut self,
        max_ms: u64,
        mut f: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let end = self.elapsed + max_ms;
        loop {
            self.transmit();
            if let Some(v) = f(self) {
                return Some(v);
            }
            if self.elapsed >= end {
                return None;
            }
            let left = (end - self.elapsed).min(self.max_step_ms.max(1));
            self.step(left);
        }
    }
}
