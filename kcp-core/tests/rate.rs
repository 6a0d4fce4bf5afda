//! The per-session rate limit (`Config::rate_limit`): a sender with an unbounded backlog
//! delivers 1 MB/s within 10 % over 10 s of simulated time, evenly (every 100 ms carries about
//! a tenth of that), and without the limit the same link carries far more.

use std::collections::VecDeque;

use kcp_core::{Config, Kcp, Millis, SendError};

/// Bytes the receiver got in each 100 ms of a 10 s run (2 ms one-way delay, no loss).
fn run(rate_limit: u32) -> Vec<usize> {
    let cfg = Config {
        rate_limit,
        ..Config::fast3().with_windows(1024, 1024)
    };
    let mut a = Kcp::new(7, cfg, Millis(0)).unwrap();
    let mut b = Kcp::new(7, cfg, Millis(0)).unwrap();
    let chunk = vec![0x5au8; 16 * 1024];
    let mut wire: VecDeque<(u32, bool, Vec<u8>)> = VecDeque::new();
    let mut buf = [0u8; 1500];
    let mut got = vec![0usize; 100];
    let mut rbuf = vec![0u8; 1 << 16];
    for t in 0..10_000u32 {
        let now = Millis(t);
        // An application that always has more to send.
        loop {
            match a.send(&chunk) {
                Ok(_) => {}
                Err(SendError::Full) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        for (k, to_b) in [(&mut a, true), (&mut b, false)] {
            if k.poll_timeout().is_some_and(|d| now.reached(d)) {
                k.handle_timeout(now);
            }
            while let Some(n) = k.poll_transmit(now, &mut buf) {
                wire.push_back((t + 2, to_b, buf[..n].to_vec()));
            }
        }
        while wire.front().is_some_and(|w| w.0 <= t) {
            let (_, to_b, d) = wire.pop_front().unwrap();
            let k = if to_b { &mut b } else { &mut a };
            k.handle_datagram(now, &d).unwrap();
        }
        while let Ok(n) = b.recv(&mut rbuf) {
            got[(t / 100) as usize] += n;
        }
    }
    got
}

#[test]
fn a_rate_limit_of_1_mb_per_s_holds_within_10_percent_and_is_paced() {
    let got = run(1_000_000);
    let total: usize = got.iter().sum();
    eprintln!("1 MB/s limit: {total} bytes in 10 s; per 100 ms: {got:?}");
    assert!(
        (9_000_000..=11_000_000).contains(&total),
        "{total} bytes in 10 s"
    );
    // Paced: after the first 100 ms, every 100 ms carries 100 kB within 20 %.
    for (i, &n) in got.iter().enumerate().skip(1) {
        assert!((80_000..=120_000).contains(&n), "{n} bytes in slot {i}");
    }
    let free: usize = run(0).iter().sum();
    assert!(free > 5 * total, "without the limit {free} bytes");
}
