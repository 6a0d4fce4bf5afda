//! Ready-made scenarios: a checked bulk transfer and a sparse echo between two nodes.
//!
//! These are test harnesses: they panic (assert) when a check fails or when given a
//! configuration the engine refuses, instead of returning errors; nothing here runs on
//! untrusted input.

use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use super::{LinkConfig, Node, Rng, Sim};
use crate::time::Millis;
use crate::{Config, Kcp, Session};

/// A node a scenario can play an application on: it exposes its engine.
pub trait Peer: Node {
    /// The engine (send, recv, stats).
    fn engine(&mut self) -> &mut Kcp<'static>;
}

impl Peer for Kcp<'static> {
    fn engine(&mut self) -> &mut Kcp<'static> {
        self
    }
}

impl Peer for Session<'static> {
    fn engine(&mut self) -> &mut Kcp<'static> {
        self.kcp_mut()
    }
}

/// Deterministic payload byte at stream offset `i`, used by [`Transfer`] to check content.
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 9)) as u8
}

/// Where clocks and sequence numbers start in a [`Transfer`]: just below the `u32` wrap, so
/// every scenario crosses it.
pub const START: Millis = Millis(u32::MAX - 3_000);
/// Initial sequence number of both engines in a [`Transfer`].
pub const START_SN: u32 = u32::MAX - 40;

/// A one-way bulk transfer from `a` to `b`.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Engine configuration (both sides).
    pub config: Config,
    /// Impairments of both directions.
    pub link: LinkConfig,
    /// Seed for the links and message sizes.
    pub seed: u64,
    /// Bytes to move.
    pub bytes: u64,
    /// Messages are `1..=max_msg` bytes (random).
    pub max_msg: usize,
    /// Give up after this much virtual time.
    pub limit_ms: u64,
}

/// What a [`Transfer`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Whether every byte arrived within the time limit.
    pub completed: bool,
    /// Virtual time until the last byte was read.
    pub elapsed_ms: u64,
    /// Bytes read by the receiver.
    pub bytes: u64,
    /// Median time from `send` to `recv` of a message.
    pub p50_ms: u64,
    /// 99th percentile of the same.
    pub p99_ms: u64,
    /// Retransmissions by the sender.
    pub retrans: u64,
    /// Segments the sender emitted.
    pub sent_segs: u64,
    /// The sender's engine counters at the end.
    pub sender: crate::Stats,
    /// The receiver's engine counters at the end.
    pub receiver: crate::Stats,
}

impl Report {
    /// Goodput in KiB/s of virtual time.
    pub fn goodput_kib_s(&self) -> u64 {
        (self.bytes * 1000)
            .checked_div(self.elapsed_ms * 1024)
            .unwrap_or(0)
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or(0)
}

impl Transfer {
    /// Runs the transfer. The writer keeps the send window full (as an application blocked
    /// on write would); the reader checks that every byte arrives exactly once and in order,
    /// and in message mode that every message arrives whole.
    ///
    /// # Panics
    /// On corrupted, duplicated or reordered data, a broken message boundary, or an invalid
    /// configuration: this is a test harness.
    pub fn run(&self) -> Report {
        self.run_with(|cfg| Kcp::new(0xC0FFEE, cfg, START).expect("valid config"))
    }

    /// [`run`](Self::run) between nodes that `make` builds from the configuration (for
    /// example sessions with a codec stack). Sequence numbers are set to [`START_SN`].
    pub fn run_with<N: Peer>(&self, mut make: impl FnMut(Config) -> N) -> Report {
        let cfg = self.config;
        let mut mk = || {
            let mut n = make(cfg);
            n.engine().set_initial_sequence(START_SN);
            n
        };
        let (a, b) = (mk(), mk());
        let mut sim = Sim::new(a, b, self.link, self.link, self.seed, START);
        let mut rng = Rng::new(self.seed ^ 0xABCDEF);
        let total = self.bytes;
        let (mut sent, mut recvd) = (0u64, 0u64);
        let mut pending: Option<Vec<u8>> = None;
        let mut marks: VecDeque<(u64, u64)> = VecDeque::new();
        let mut latencies = Vec::new();
        let mut buf = vec![0u8; 300 * 1400];
        let max_msg = self.max_msg.max(1) as u32;

        let done = sim.run_until(self.limit_ms, |s| {
            while sent < total && s.a.engine().is_writable() {
                let msg = match pending.take() {
                    Some(m) => m,
                    None => {
                        let len = (1 + rng.below_incl(max_msg - 1) as u64).min(total - sent);
                        (sent..sent + len).map(pattern).collect::<Vec<u8>>()
                    }
                };
                match s.a.engine().send(&msg) {
                    Ok(n) if n == msg.len() => {
                        sent += n as u64;
                        marks.push_back((sent, s.elapsed_ms()));
                    }
                    Ok(n) => {
                        sent += n as u64;
                        pending = Some(msg[n..].to_vec());
                        break;
                    }
                    Err(_) => {
                        pending = Some(msg);
                        break;
                    }
                }
            }
            while let Ok(n) = s.b.engine().recv(&mut buf) {
                for (k, &byte) in buf[..n].iter().enumerate() {
                    let at = recvd + k as u64;
                    assert_eq!(byte, pattern(at), "corrupt byte at offset {at}");
                }
                recvd += n as u64;
                if !cfg.stream {
                    let end = marks.front().map(|m| m.0);
                    assert_eq!(Some(recvd), end, "message boundary lost");
                }
                while let Some(&(end, t)) = marks.front() {
                    if end > recvd {
                        break;
                    }
                    latencies.push(s.elapsed_ms() - t);
                    marks.pop_front();
                }
            }
            assert!(recvd <= sent, "received more than was sent");
            (recvd == total).then_some(())
        });
        let elapsed = sim.elapsed_ms();
        if done.is_some() {
            // Nothing more may arrive afterwards (no late duplicate delivery).
            sim.run_until(2_000, |s| {
                assert!(s.b.engine().recv(&mut buf).is_err(), "data delivered twice");
                None::<()>
            });
        }
        latencies.sort_unstable();
        Report {
            completed: done.is_some(),
            elapsed_ms: elapsed,
            bytes: recvd,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
            retrans: sim.a.engine().stats().retrans_segs,
            sent_segs: sim.a.engine().stats().out_segs,
            sender: *sim.a.engine().stats(),
            receiver: *sim.b.engine().stats(),
        }
    }
}

/// Sparse request/response traffic: `a` sends a `size`-byte message every `every_ms`, `b`
/// echoes it, `a` times each round trip (from `send` to the echo's `recv`).
#[derive(Debug, Clone, Copy)]
pub struct Echo {
    /// Engine configuration (both sides).
    pub config: Config,
    /// Impairments of both directions.
    pub link: LinkConfig,
    /// Seed for the links.
    pub seed: u64,
    /// Messages to exchange.
    pub messages: u32,
    /// Bytes per message.
    pub size: usize,
    /// Interval between messages (ms of virtual time).
    pub every_ms: u64,
}

/// Round-trip times of an [`Echo`] run, in ms, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReport {
    /// One entry per echoed message, ascending.
    pub rtts: Vec<u64>,
    /// Retransmissions by `a`.
    pub retrans: u64,
}

impl EchoReport {
    /// The `p`-quantile (0.0..=1.0) of the round-trip times.
    pub fn percentile(&self, p: f64) -> u64 {
        percentile(&self.rtts, p)
    }
}

impl Echo {
    /// Runs the exchange between nodes built by `make`; every echo is checked.
    ///
    /// # Panics
    /// On a corrupted echo, a refused send, or an exchange that does not finish: this is a
    /// test harness.
    pub fn run_with<N: Peer>(&self, mut make: impl FnMut(Config) -> N) -> EchoReport {
        let cfg = Config {
            stream: false,
            ..self.config
        };
        let mut sim = Sim::new(make(cfg), make(cfg), self.link, self.link, self.seed, START);
        sim.max_step_ms = 1;
        let mut sent_at: VecDeque<(u32, u64)> = VecDeque::new();
        let (mut next_id, mut rtts) = (0u32, Vec::new());
        let mut buf = vec![0u8; 64 * 1024];
        let size = self.size.max(4);
        let limit = self.every_ms * self.messages as u64 + 120_000;
        let done = sim.run_until(limit, |s| {
            if next_id < self.messages && s.elapsed_ms() >= next_id as u64 * self.every_ms {
                let mut msg = vec![(next_id % 251) as u8; size];
                msg[..4].copy_from_slice(&next_id.to_le_bytes());
                s.a.engine().send(&msg).expect("send");
                sent_at.push_back((next_id, s.elapsed_ms()));
                next_id += 1;
            }
            while let Ok(n) = s.b.engine().recv(&mut buf) {
                let m = buf[..n].to_vec();
                s.b.engine().send(&m).expect("echo");
            }
            while let Ok(n) = s.a.engine().recv(&mut buf) {
                let (id, t) = sent_at.pop_front().expect("echo without a request");
                assert_eq!(n, size);
                assert_eq!(buf[..4], id.to_le_bytes(), "echoes out of order");
                assert!(
                    buf[4..n].iter().all(|&b| b == (id % 251) as u8),
                    "corrupt echo"
                );
                rtts.push(s.elapsed_ms() - t);
            }
            (rtts.len() == self.messages as usize).then_some(())
        });
        assert!(
            done.is_some(),
            "echo did not finish: {} of {}",
            rtts.len(),
            self.messages
        );
        rtts.sort_unstable();
        EchoReport {
            rtts,
            retrans: sim.a.engine().stats().retrans_segs,
        }
    }
}

/// The impairments the delivery tests and the netsim table use at a given loss rate: 20 ms
/// delay, 5 ms jitter, 2% reordering, 1% duplication.
pub fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        loss,
        delay_ms: 20,
        jitter_ms: 5,
        reorder: 0.02,
        reorder_ms: 15,
        duplicate: 0.01,
        ..LinkConfig::default()
    }
}

/// The netsim table: preset x loss -> goodput, delivery latency, retransmissions, for a 1 MB
/// stream over a 2 MB/s link. Deterministic: the same text on every run.
pub fn netsim_table() -> std::string::String {
    use core::fmt::Write;
    let mut out = std::string::String::new();
    let _ = writeln!(
        out,
        "{:<7} {:>5} {:>12} {:>8} {:>8} {:>8} {:>8}",
        "preset", "loss%", "goodput", "p50 ms", "p99 ms", "retrans", "segs"
    );
    for (name, cfg) in [("normal", Config::normal()), ("fast3", Config::fast3())] {
        for loss in [0.0, 0.01, 0.05, 0.10, 0.20, 0.30] {
            let mut link = lossy(loss);
            link.bandwidth = Some(2_000_000);
            link.queue_bytes = 256 * 1024;
            let r = Transfer {
                config: cfg.with_windows(128, 128),
                link,
                seed: 7,
                bytes: 1_000_000,
                max_msg: 16 * 1024,
                limit_ms: 600_000,
            }
            .run();
            let goodput = if r.completed {
                std::format!("{} KiB/s", r.goodput_kib_s())
            } else {
                "stalled".into()
            };
            let _ = writeln!(
                out,
                "{:<7} {:>5.0} {:>12} {:>8} {:>8} {:>8} {:>8}",
                name,
                loss * 100.0,
                goodput,
                r.p50_ms,
                r.p99_ms,
                r.retrans,
                r.sent_segs
            );
        }
    }
    out
}
