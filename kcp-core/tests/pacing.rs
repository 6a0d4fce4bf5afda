//! Pacing (`Config::pacing`), in the simulator.
//!
//! * A window of 8192 over a path whose receiver drains 40 MB/s (a bottleneck with a queue
//!   large enough never to drop): without pacing the whole window waits in the queue, longer
//!   than the retransmission timeout, and segments that were never lost are resent; with
//!   pacing none is, and the transfer runs at the bottleneck's rate.
//! * The new data a paced sender emits in any millisecond stays within what its pacing rate
//!   allows (plus the bucket), so the window is spread in time, not sent at once.
//! * A connecting sender sends one segment until it hears the peer, then opens its window.

use std::collections::VecDeque;

use kcp_core::sim::{LinkConfig, LinkModel, Verdict};
use kcp_core::wire::{Command, Datagram};
use kcp_core::{Config, Kcp, Millis, SendError};
use proptest::prelude::*;

const MIB: usize = 1 << 20;

fn config(window: u32, pacing: bool) -> Config {
    Config {
        pacing,
        ..Config::fast3().with_windows(window, window)
    }
}

/// The forward path: `rate` bytes per second (nanosecond-exact), a queue that holds 64 MiB,
/// then 1 ms; the way back: 1 ms, no bottleneck.
fn bottleneck(rate: u64, delay_ms: u32) -> LinkConfig {
    LinkConfig {
        delay_ms,
        bandwidth: Some(rate),
        queue_bytes: 64 * MIB,
        ..LinkConfig::default()
    }
}

/// One direction: a link model and the datagrams on it, in arrival order (no jitter, so
/// arrivals keep the sending order).
struct Path {
    config: LinkConfig,
    model: LinkModel,
    wire: VecDeque<(u64, Vec<u8>)>,
    drops: u64,
}

impl Path {
    fn new(config: LinkConfig, seed: u64) -> Path {
        Path {
            config,
            model: LinkModel::new(seed),
            wire: VecDeque::new(),
            drops: 0,
        }
    }
    fn send(&mut self, t_ms: u64, d: &[u8]) {
        match self.model.decide(&self.config, t_ms * 1000, d.len()) {
            Verdict::Deliver { first, .. } => self.wire.push_back((first.at_us, d.to_vec())),
            _ => self.drops += 1,
        }
    }
    fn due(&mut self, t_ms: u64) -> Option<Vec<u8>> {
        if self.wire.front().is_some_and(|w| w.0 <= t_ms * 1000) {
            self.wire.pop_front().map(|w| w.1)
        } else {
            None
        }
    }
}

/// Runs `a` and `b` over `bottleneck(rate)` (and a plain 1 ms way back) one millisecond at a
/// time, as an adapter with a 1 ms timer does; `app` plays both applications every
/// millisecond, `each` sees every datagram `a` sends; stops when `app` returns true or after
/// `limit_ms`. Returns the elapsed ms and the bottleneck's drops.
#[allow(clippy::too_many_arguments)]
fn drive(
    a: &mut Kcp<'static>,
    b: &mut Kcp<'static>,
    rate: u64,
    delay_ms: u32,
    seed: u64,
    limit_ms: u64,
    mut app: impl FnMut(&mut Kcp<'static>, &mut Kcp<'static>) -> bool,
    mut each: impl FnMut(u64, &[u8]),
) -> (u64, u64) {
    let start = Millis(u32::MAX - 500);
    let mut fwd = Path::new(bottleneck(rate, delay_ms), seed);
    let mut back = Path::new(
        LinkConfig {
            delay_ms,
            ..LinkConfig::default()
        },
        seed ^ 1,
    );
    let mut buf = [0u8; 1500];
    for t in 0..limit_ms {
        let now = start + t as u32;
        while let Some(d) = fwd.due(t) {
            let _ = b.handle_datagram(now, &d);
        }
        while let Some(d) = back.due(t) {
            let _ = a.handle_datagram(now, &d);
        }
        if app(a, b) {
            return (t, fwd.drops);
        }
        for k in [&mut *a, &mut *b] {
            if k.poll_timeout().is_some_and(|d| now.reached(d)) {
                k.handle_timeout(now);
            }
        }
        while let Some(n) = a.poll_transmit(now, &mut buf) {
            each(t, &buf[..n]);
            fwd.send(t, &buf[..n]);
        }
        while let Some(n) = b.poll_transmit(now, &mut buf) {
            back.send(t, &buf[..n]);
        }
    }
    (limit_ms, fwd.drops)
}

struct Outcome {
    /// Retransmissions by the sender (all kinds).
    retrans: u64,
    /// Segments the receiver got twice.
    repeats: u64,
    /// Datagrams the bottleneck dropped.
    queue_drops: u64,
    elapsed_ms: u64,
}

/// `bytes` from `a` to `b` over `bottleneck(rate)`, window `window` both ways.
fn sink(bytes: usize, window: u32, rate: u64, pacing: bool, seed: u64) -> Outcome {
    sink_on(bytes, window, rate, 1, pacing, seed)
}

/// [`sink`] over a path of `delay_ms` each way.
fn sink_on(
    bytes: usize,
    window: u32,
    rate: u64,
    delay_ms: u32,
    pacing: bool,
    seed: u64,
) -> Outcome {
    let start = Millis(u32::MAX - 500);
    let mut a = Kcp::new(3, config(window, pacing), start).unwrap();
    let mut b = Kcp::new(3, config(window, pacing), start).unwrap();
    let chunk = vec![0xa5u8; 16 * 1024];
    let mut sent = 0usize;
    let mut got = 0usize;
    let mut rbuf = vec![0u8; 64 * 1024];
    let (elapsed_ms, queue_drops) = drive(
        &mut a,
        &mut b,
        rate,
        delay_ms,
        seed,
        60_000,
        |a, b| {
            while sent < bytes {
                let n = chunk.len().min(bytes - sent);
                match a.send(&chunk[..n]) {
                    Ok(k) => sent += k,
                    Err(SendError::Full) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
            while let Ok(n) = b.recv(&mut rbuf) {
                got += n;
            }
            got == bytes
        },
        |_, _| {},
    );
    assert_eq!(got, bytes, "transfer did not complete");
    Outcome {
        retrans: a.stats().retrans_segs,
        repeats: b.stats().repeat_segs,
        queue_drops,
        elapsed_ms,
    }
}

#[test]
fn without_pacing_a_window_of_8192_is_resent_spuriously() {
    let o = sink(16 * MIB, 8192, 40_000_000, false, 1);
    eprintln!(
        "unpaced: {} retransmissions, {} repeats, {} queue drops, {} ms",
        o.retrans, o.repeats, o.queue_drops, o.elapsed_ms
    );
    assert!(o.retrans > 100, "{} retransmissions", o.retrans);
    assert!(o.repeats > 100, "{} repeats", o.repeats);
}

#[test]
fn with_pacing_a_window_of_8192_has_no_retransmission_at_the_bottleneck_rate() {
    let o = sink(16 * MIB, 8192, 40_000_000, true, 1);
    eprintln!(
        "paced: {} retransmissions, {} repeats, {} queue drops, {} ms",
        o.retrans, o.repeats, o.queue_drops, o.elapsed_ms
    );
    assert_eq!(o.queue_drops, 0);
    assert_eq!(o.retrans, 0);
    assert_eq!(o.repeats, 0);
    // 16 MiB of payload in 1400-byte datagrams at 40 MB/s takes 430 ms on the wire; allow
    // the start-up and the tail 20 % more.
    let wire_ms = (16 * MIB) as u64 * 1400 / 1376 * 1000 / 40_000_000;
    assert!(
        o.elapsed_ms <= wire_ms * 6 / 5,
        "{} ms, the bottleneck needs {wire_ms}",
        o.elapsed_ms
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any window of 1024..=8192 at any bottleneck of 5..=200 MB/s: no retransmission with
    /// pacing, and within a quarter (plus 60 ms) of the bottleneck's time.
    #[test]
    fn paced_windows_never_retransmit_on_a_loss_free_bottleneck(
        window in 1024u32..=8192,
        rate_mb in 5u64..=200,
        seed in any::<u64>(),
    ) {
        let bytes = 4 * MIB;
        let rate = rate_mb * 1_000_000;
        let o = sink(bytes, window, rate, true, seed);
        prop_assert_eq!(o.queue_drops, 0);
        prop_assert_eq!(o.retrans, 0);
        let wire_ms = bytes as u64 * 1400 / 1376 * 1000 / rate;
        prop_assert!(o.elapsed_ms <= wire_ms * 5 / 4 + 60, "{} ms for {} ms on the wire", o.elapsed_ms, wire_ms);
    }
}

/// New-data PUSH bytes (first transmissions) in a datagram, given the highest sn seen.
fn new_push_bytes(d: &[u8], highest: &mut Option<u32>) -> usize {
    let mut n = 0;
    for (seg, payload) in Datagram::new(d).flatten() {
        if seg.cmd == Command::Push && highest.is_none_or(|h| seg.sn.wrapping_sub(h) as i32 > 0) {
            *highest = Some(seg.sn);
            n += payload.len() + 24;
        }
    }
    n
}

#[test]
fn paced_segments_leave_at_the_pacing_rate_not_in_one_burst() {
    let start = Millis(u32::MAX - 500);
    let cfg = config(8192, true);
    let mut a = Kcp::new(5, cfg, start).unwrap();
    let mut b = Kcp::new(5, cfg, start).unwrap();
    let chunk = vec![1u8; 16 * 1024];
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut highest = None;
    // New bytes a sent per ms, and the pacing rate in force when they left.
    let mut per_ms: Vec<(usize, Option<u64>)> = vec![(0, None); 1000];
    let rate_now = std::cell::Cell::new(None);
    drive(
        &mut a,
        &mut b,
        20_000_000,
        1,
        9,
        1000,
        |a, b| {
            while a.send(&chunk).is_ok() {}
            while b.recv(&mut rbuf).is_ok() {}
            rate_now.set(a.pacing_rate());
            false
        },
        |t, d| {
            let slot = &mut per_ms[t as usize];
            slot.0 += new_push_bytes(d, &mut highest);
            slot.1 = rate_now.get();
        },
    );
    let mut checked = 0;
    for (t, &(bytes, rate)) in per_ms.iter().enumerate() {
        let Some(rate) = rate else { continue };
        // One millisecond of the rate, plus the bucket (2 ms of it, at least two segments)
        // and the one segment that may overdraw it.
        let allowed = (rate / 1000) as usize * 3 + 3 * 1400;
        assert!(
            bytes <= allowed,
            "{bytes} new bytes in ms {t} at {rate} B/s (allowed {allowed})"
        );
        checked += 1;
    }
    assert!(checked > 500, "paced in {checked} ms only");
    let rate = a.delivery_rate().unwrap();
    assert!(
        (16_000_000..=21_000_000).contains(&rate),
        "delivery rate {rate} B/s on a 20 MB/s path"
    );
    // The window is 11 MB; no millisecond carries more than a few tens of kB.
    let most = per_ms.iter().map(|p| p.0).max().unwrap();
    assert!(most < 100_000, "{most} bytes in one ms");
    assert_eq!(a.stats().retrans_segs, 0);
}

#[test]
fn a_connecting_sender_holds_back_until_it_hears_the_peer() {
    let start = Millis(0);
    let mut a = Kcp::new(9, config(1024, true), start).unwrap();
    a.send(&vec![7u8; 64 * 1024]).unwrap();
    let mut buf = [0u8; 1500];
    let mut first = Vec::new();
    // However often it is polled and its timer fires, it sends one segment only.
    for t in 0..100u32 {
        let now = start + t;
        if a.poll_timeout().is_some_and(|d| now.reached(d)) {
            a.handle_timeout(now);
        }
        while let Some(n) = a.poll_transmit(now, &mut buf) {
            first.push(buf[..n].to_vec());
        }
    }
    let segs: Vec<u32> = first
        .iter()
        .flat_map(|d| {
            Datagram::new(d)
                .flatten()
                .map(|(s, _)| s.sn)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!segs.is_empty());
    assert!(
        segs.iter().all(|&sn| sn == 0),
        "sent {segs:?} before hearing the peer"
    );

    // The peer answers (its ACK of sn 0): the window opens at once.
    let mut b = Kcp::new(9, config(1024, true), start).unwrap();
    b.handle_datagram(Millis(100), &first[0]).unwrap();
    b.flush();
    let mut answers = Vec::new();
    while let Some(n) = b.poll_transmit(Millis(100), &mut buf) {
        answers.push(buf[..n].to_vec());
    }
    assert!(!answers.is_empty());
    for d in &answers {
        a.handle_datagram(Millis(101), d).unwrap();
    }
    let mut sns = Vec::new();
    while let Some(n) = a.poll_transmit(Millis(101), &mut buf) {
        sns.extend(Datagram::new(&buf[..n]).flatten().map(|(s, _)| s.sn));
    }
    assert!(
        sns.len() >= 16 && sns.iter().all(|&sn| sn >= 1),
        "after the answer: {sns:?}"
    );

    // Without pacing the whole window leaves at once (the unchanged default).
    let mut c = Kcp::new(9, config(1024, false), start).unwrap();
    c.send(&vec![7u8; 64 * 1024]).unwrap();
    let mut n_segs = 0;
    while let Some(n) = c.poll_transmit(start, &mut buf) {
        n_segs += Datagram::new(&buf[..n]).flatten().count();
    }
    assert_eq!(n_segs, 32, "the peer's initial window, at once");
}

/// Longer paths (10, 25 and 50 ms each way, 10 MB/s, window 1024): start-up builds a queue
/// faster than the RTT estimate follows; a paced segment's first timeout covers what is in
/// flight ahead of it, so there is still no spurious retransmission (unpaced: about 2,000 at
/// 10 and 25 ms). Start-up costs a few round trips: within ten RTTs of the wire time.
#[test]
fn paced_long_paths_have_no_retransmission_and_ramp_within_ten_round_trips() {
    let bytes = 8 * MIB;
    let rate = 10_000_000;
    let wire_ms = bytes as u64 * 1400 / 1376 * 1000 / rate;
    for delay in [10u32, 25, 50] {
        let paced = sink_on(bytes, 1024, rate, delay, true, 3);
        let unpaced = sink_on(bytes, 1024, rate, delay, false, 3);
        eprintln!(
            "{delay} ms each way: paced {} ms, {} retransmissions; unpaced {} ms, {}",
            paced.elapsed_ms, paced.retrans, unpaced.elapsed_ms, unpaced.retrans
        );
        assert_eq!(paced.retrans, 0, "{delay} ms");
        assert_eq!(paced.queue_drops, 0);
        let rtt = 2 * u64::from(delay);
        assert!(
            paced.elapsed_ms <= wire_ms + 10 * rtt,
            "{delay} ms: {} ms for {wire_ms} ms on the wire",
            paced.elapsed_ms
        );
    }
}

/// Random loss (1 % and 5 % both ways, 10 ms each way, 10 MB/s, window 1024): the in-flight
/// bound counts segments not yet acknowledged, not those behind a hole, so repair does not
/// stall a paced sender: it finishes within 10 % of the unpaced one's time, with fewer
/// retransmissions (the losses' repair, not spurious ones).
#[test]
fn paced_sender_keeps_its_pace_through_random_loss() {
    for loss in [0.01f64, 0.05] {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for pacing in [false, true] {
            let start = Millis(u32::MAX - 500);
            let mut a = Kcp::new(3, config(1024, pacing), start).unwrap();
            let mut b = Kcp::new(3, config(1024, pacing), start).unwrap();
            let bytes = 4 * MIB;
            let mut fwd = Path::new(
                LinkConfig {
                    loss,
                    ..bottleneck(10_000_000, 10)
                },
                5,
            );
            let mut back = Path::new(
                LinkConfig {
                    loss,
                    delay_ms: 10,
                    ..LinkConfig::default()
                },
                6,
            );
            let chunk = vec![1u8; 16 * 1024];
            let mut rbuf = vec![0u8; 64 * 1024];
            let (mut sent, mut got) = (0, 0);
            let mut buf = [0u8; 1500];
            let mut t = 0u64;
            while got < bytes && t < 60_000 {
                let now = start + t as u32;
                while let Some(d) = fwd.due(t) {
                    let _ = b.handle_datagram(now, &d);
                }
                while let Some(d) = back.due(t) {
                    let _ = a.handle_datagram(now, &d);
                }
                while sent < bytes {
                    match a.send(&chunk[..chunk.len().min(bytes - sent)]) {
                        Ok(k) => sent += k,
                        Err(_) => break,
                    }
                }
                while let Ok(n) = b.recv(&mut rbuf) {
                    got += n;
                }
                for k in [&mut a, &mut b] {
                    if k.poll_timeout().is_some_and(|d| now.reached(d)) {
                        k.handle_timeout(now);
                    }
                }
                while let Some(n) = a.poll_transmit(now, &mut buf) {
                    fwd.send(t, &buf[..n]);
                }
                while let Some(n) = b.poll_transmit(now, &mut buf) {
                    back.send(t, &buf[..n]);
                }
                t += 1;
            }
            eprintln!(
                "loss {loss} pacing {pacing}: {t} ms, {} retransmissions ({} timeouts)",
                a.stats().retrans_segs,
                a.stats().lost_segs
            );
            assert_eq!(got, bytes, "loss {loss} pacing {pacing}: incomplete");
            runs.push((t, a.stats().retrans_segs));
        }
        let (unpaced, paced) = (runs[0], runs[1]);
        assert!(
            paced.0 * 10 <= unpaced.0 * 11,
            "loss {loss}: paced {} ms, unpaced {} ms",
            paced.0,
            unpaced.0
        );
        assert!(paced.1 < unpaced.1, "loss {loss}: {paced:?} vs {unpaced:?}");
    }
}
