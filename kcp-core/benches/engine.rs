//! Engine micro-benchmarks: segment encode/decode, input of an ACK batch, flush with nothing
//! due at windows 32 / 1024 / 8192, and flush of a full window; and the cost of one hostile
//! datagram at windows 32 to 32,768: a run of empty PUSH segments (`input_empty_push_run`)
//! and 64 KiB of ACKs beyond a window of holes (`input_ack_flood`), which must not grow with
//! the window.
//!
//! Run: `cargo bench -p kcpx-core --bench engine`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use kcp_core::wire::{Command, Segment, SegmentRepr, HEADER_LEN};
use kcp_core::{Config, Kcp, Millis};

fn repr() -> SegmentRepr {
    SegmentRepr {
        conv: 0x11223344,
        cmd: Command::Push,
        frg: 0,
        wnd: 256,
        ts: 1000,
        sn: 5,
        una: 3,
        len: 1376,
    }
}

/// A window-tell from the peer announcing `window` free slots (the initial guess is 32).
fn tell(window: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    SegmentRepr {
        conv: 1,
        cmd: Command::WindowTell,
        frg: 0,
        wnd: window as u16,
        ts: 0,
        sn: 0,
        una: 0,
        len: 0,
    }
    .emit(&mut h)
    .unwrap();
    h
}

fn codec(c: &mut Criterion) {
    let mut buf = [0u8; 1400];
    let r = repr();
    r.emit(&mut buf).unwrap();
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(r).emit(black_box(&mut buf[..])).unwrap())
    });
    g.bench_function("decode", |b| {
        b.iter(|| SegmentRepr::parse(&Segment::new_checked(black_box(&buf[..])).unwrap()).unwrap())
    });
    g.finish();
}

/// A sender with `window` segments in flight (all sent at t = 0) and ACK datagrams for all of
/// them but the first (lost), packed as many per datagram as the MTU allows: every ACK is
/// explicit, the hole keeps `una` at 0, and each ACK adds a fast-ack to the hole.
fn in_flight(window: u32) -> (Kcp<'static>, Vec<Vec<u8>>) {
    let cfg = Config {
        stream: false,
        ..Config::fast3().with_windows(window, window)
    };
    let mut k = Kcp::new(1, cfg, Millis(0)).unwrap();
    k.handle_datagram(Millis(0), &tell(window)).unwrap();
    let msg = [7u8; 1000];
    for _ in 0..window {
        k.send(&msg).unwrap();
    }
    let mut buf = [0u8; 1500];
    while k.poll_transmit(Millis(0), &mut buf).is_some() {}
    let mut acks = Vec::new();
    let mut d = Vec::new();
    for sn in 1..window {
        if d.len() + HEADER_LEN > 1400 {
            acks.push(std::mem::take(&mut d));
        }
        let mut h = [0u8; HEADER_LEN];
        SegmentRepr {
            conv: 1,
            cmd: Command::Ack,
            frg: 0,
            wnd: window as u16,
            ts: 0,
            sn,
            una: 0,
            len: 0,
        }
        .emit(&mut h)
        .unwrap();
        d.extend_from_slice(&h);
    }
    acks.push(d);
    (k, acks)
}

fn ack_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("input_ack_batch");
    for window in [1024u32, 8192] {
        let acks = in_flight(window).1;
        g.throughput(Throughput::Elements(window as u64 - 1));
        g.bench_function(BenchmarkId::from_parameter(window), |b| {
            b.iter_batched_ref(
                || in_flight(window).0,
                |k| {
                    for a in &acks {
                        k.handle_datagram(Millis(20), a).unwrap();
                    }
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn flush_idle(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush_nothing_due");
    for window in [32u32, 1024, 8192] {
        let (mut k, _) = in_flight(window);
        let mut buf = [0u8; 1500];
        let now = Millis(1);
        g.bench_function(BenchmarkId::from_parameter(window), |b| {
            b.iter(|| {
                // A flush while the whole window is in flight and nothing is due.
                k.flush();
                black_box(k.poll_transmit(now, &mut buf))
            })
        });
    }
    g.finish();
}

fn flush_full(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush_full_window");
    for window in [1024u32, 8192] {
        let cfg = Config {
            stream: false,
            ..Config::fast3().with_windows(window, window)
        };
        let msg = [7u8; 1376];
        g.throughput(Throughput::Bytes(window as u64 * 1376));
        g.bench_function(BenchmarkId::from_parameter(window), |b| {
            b.iter_batched_ref(
                || {
                    let mut k = Kcp::new(1, cfg, Millis(0)).unwrap();
                    k.handle_datagram(Millis(0), &tell(window)).unwrap();
                    for _ in 0..window {
                        k.send(&msg).unwrap();
                    }
                    k
                },
                |k| {
                    let mut buf = [0u8; 1500];
                    let mut n = 0;
                    while let Some(len) = k.poll_transmit(Millis(0), &mut buf) {
                        n += len;
                    }
                    assert!(n >= window as usize * (1376 + HEADER_LEN));
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn header(cmd: Command, sn: u32, ts: u32, wnd: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    SegmentRepr {
        conv: 1,
        cmd,
        frg: 0,
        wnd: wnd.min(u16::MAX as u32) as u16,
        ts,
        sn,
        una: 0,
        len: 0,
    }
    .emit(&mut h)
    .unwrap();
    h
}

const HOSTILE_WINDOWS: [u32; 4] = [32, 1024, 8192, 32768];

/// One 1400-byte datagram of 58 empty PUSH segments, in order, into a stream-mode receiver
/// whose application does not read, then `peek_size` (what an endpoint asks after every
/// datagram). Before the measurement the peer has sent a whole window of them.
fn empty_push_run(c: &mut Criterion) {
    let mut g = c.benchmark_group("input_empty_push_run");
    g.throughput(Throughput::Elements(1));
    for window in HOSTILE_WINDOWS {
        let cfg = Config::fast3().with_windows(32, window);
        let mut k = Kcp::new(1, cfg, Millis(0)).unwrap();
        let mut out = [0u8; 1500];
        let mut sn = 0u32;
        let mut datagram = Vec::with_capacity(1400);
        let mut next = |k: &mut Kcp<'static>, sn: &mut u32| {
            datagram.clear();
            for _ in 0..58 {
                datagram.extend_from_slice(&header(Command::Push, *sn, 0, 32));
                *sn = sn.wrapping_add(1);
            }
            let _ = k.handle_datagram(Millis(1), &datagram);
            let size = k.peek_size();
            while k.poll_transmit(Millis(1), &mut out).is_some() {}
            size
        };
        while sn < window + 58 {
            next(&mut k, &mut sn);
        }
        g.bench_function(BenchmarkId::from_parameter(window), |b| {
            b.iter(|| black_box(next(&mut k, &mut sn)))
        });
    }
    g.finish();
}

/// A sender with a whole window of 1-byte segments in flight and none acknowledged, fed one
/// 64 KiB datagram of 2,730 ACKs of its last segment (each one, before the bound, walked
/// every hole before it to count fast-acks).
fn ack_flood(c: &mut Criterion) {
    let mut g = c.benchmark_group("input_ack_flood");
    g.throughput(Throughput::Elements(1));
    for window in HOSTILE_WINDOWS {
        let cfg = Config {
            stream: false,
            send_queue: 0,
            ..Config::fast3().with_windows(window, 32)
        };
        let mut k = Kcp::new(1, cfg, Millis(0)).unwrap();
        k.handle_datagram(Millis(0), &header(Command::WindowTell, 0, 0, window))
            .unwrap();
        for _ in 0..window {
            k.send(&[7u8]).unwrap();
        }
        let mut out = [0u8; 1500];
        while k.poll_transmit(Millis(0), &mut out).is_some() {}
        let mut flood = Vec::with_capacity(65_536);
        while flood.len() + HEADER_LEN <= 65_536 {
            flood.extend_from_slice(&header(Command::Ack, window - 1, 1_000, window));
        }
        g.bench_function(BenchmarkId::from_parameter(window), |b| {
            b.iter(|| k.handle_datagram(Millis(1), black_box(&flood)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    codec,
    ack_batch,
    flush_idle,
    flush_full,
    empty_push_run,
    ack_flood
);
criterion_main!(benches);
