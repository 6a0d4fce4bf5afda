//! Shared test harness: a transfer between two engines over the simulator.
#![allow(dead_code)]

use kcp_core::sim::{LinkConfig, Rng, Sim};
use kcp_core::{Config, Kcp, Millis};

/// Clocks and sequence numbers start just below the wrap so every test crosses it.
pub const START: Millis = Millis(u32::MAX - 3_000);
pub const START_SN: u32 = u32::MAX - 40;

/// Deterministic payload byte at stream offset `i`.
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 9)) as u8
}

pub fn engine(conv: u32, cfg: Config) -> Kcp<'static> {
    let mut k = Kcp::new(conv, cfg, START).expect("valid config");
    assert!(k.set_initial_sequence(START_SN));
    k
}

#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub completed: bool,
    pub elapsed_ms: u64,
    pub bytes: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub retrans: u64,
    pub sent_segs: u64,
}

impl Outcome {
    pub fn goodput_kbps(&self) -> u64 {
        if self.elapsed_ms == 0 {
            return 0;
        }
        self.bytes * 1000 / self.elapsed_ms / 1024
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Sends `total` bytes from `a` to `b` as messages of random size (1..=max_msg) and checks
/// that every byte arrives exactly once, in order, and (message mode) with boundaries intact.
/// Panics on any corruption; returns whether it completed within `limit_ms` of virtual time.
pub fn transfer(
    cfg: Config,
    link: LinkConfig,
    seed: u64,
    total: u64,
    max_msg: usize,
    limit_ms: u64,
) -> Outcome {
    let a = engine(0xC0FFEE, cfg);
    let b = engine(0xC0FFEE, cfg);
    let mut sim = Sim::new(a, b, link, link, seed, START);
    let mut rng = Rng::new(seed ^ 0xABCDEF);

    let mut sent = 0u64; // bytes handed to a
    let mut recvd = 0u64; // bytes read from b
    let mut pending: Option<Vec<u8>> = None;
    // (end offset, send time) per message, for latency; message lengths for boundaries.
    let mut marks: std::collections::VecDeque<(u64, u64)> = Default::default();
    let mut latencies = Vec::new();
    let mut buf = vec![0u8; 300 * 1400];

    let done = sim.run_until(limit_ms, |s| {
        // Writer: keep the send window full, as an application blocked on write would.
        while sent < total && s.a.is_writable() {
            let msg = match pending.take() {
                Some(m) => m,
                None => {
                    let len = (1 + rng.below_incl(max_msg as u32 - 1) as u64).min(total - sent);
                    (sent..sent + len).map(pattern).collect::<Vec<u8>>()
                }
            };
            match s.a.send(&msg) {
                Ok(n) if n == msg.len() => {
                    sent += n as u64;
                    marks.push_back((sent, s.elapsed_ms()));
                }
                Ok(n) => {
                    // Stream mode took part of it.
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
        // Reader.
        while let Ok(n) = s.b.recv(&mut buf) {
            {
                for (k, &byte) in buf[..n].iter().enumerate() {
                    assert_eq!(
                        byte,
                        pattern(recvd + k as u64),
                        "corrupt byte at {}",
                        recvd + k as u64
                    );
                }
                recvd += n as u64;
                if !cfg.stream {
                    let (end, _) = marks.front().copied().expect("message without a send");
                    assert_eq!(recvd, end, "message boundary lost");
                }
                while let Some(&(end, t)) = marks.front() {
                    if end > recvd {
                        break;
                    }
                    latencies.push(s.elapsed_ms() - t);
                    marks.pop_front();
                }
            }
        }
        assert!(recvd <= sent, "received more than was sent");
        (recvd == total).then_some(())
    });
    let elapsed = sim.elapsed_ms();
    // Nothing more may arrive afterwards (no duplicates delivered late).
    if done.is_some() {
        sim.run_until(2_000, |s| {
            assert!(s.b.recv(&mut buf).is_err(), "data delivered twice");
            None::<()>
        });
    }
    latencies.sort_unstable();
    Outcome {
        completed: done.is_some(),
        elapsed_ms: elapsed,
        bytes: recvd,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        retrans: sim.a.stats().retrans_segs,
        sent_segs: sim.a.stats().out_segs,
    }
}

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
