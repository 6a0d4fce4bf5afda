//! The per-session rate limit (`Config::rate_limit`): a sender with an unbounded backlog
//! delivers 1 MB/s within 10 % over 10 s of simulated time, evenly (every 100 ms carries about
//! a tenth of that), and without the limit the same link carries far more. A sender that
//! gets to run only every 13 ms (a loaded machine's late timers and wake-ups) keeps the rate
//! too: the time its waiting segments lost to the late flushes is made up.

use std::collections::VecDeque;

use kcp_core::{Config, Kcp, Millis, SendError};

/// Bytes the receiver got in each 100 ms of a 10 s run (2 ms one-way delay, no loss).
fn run(rate_limit: u32) -> Vec<usize> {
    run_when(rate_limit, 1)
}

/// `run` with a sender that runs (timers, input, output, its application) only every
/// `every` ms.
fn run_when(rate_limit: u32, every: u32) -> Vec<usize> {
    let cfg = Config {
        rate_limit,
        ..Config::fast3().with_windows(1024, 1024)
    };
    let mut a = Kcp::new(7, cfg, Millis(0)).unwrap();
    let mut b = Kcp::new(7, cfg, Millis(0)).unwrap();
    let chunk = vec![0x5au8; 16 * 1024];
    // Datagrams in flight to the receiver and to the sender, each in arrival order.
    let mut wire: [VecDeque<(u32, Vec<u8>)>; 2] = Default::default();
    let mut buf = [0u8; 1500];
    let mut got = vec![0usize; 100];
    let mut rbuf = vec![0u8; 1 << 16];
    for t in 0..10_000u32 {
        let now = Millis(t);
        let sender_runs = t % every == 0;
        // An application that always has more to send.
        if sender_runs {
            loop {
                match a.send(&chunk) {
                    Ok(_) => {}
                    Err(SendError::Full) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        for (to_b, k) in [(true, &mut a), (false, &mut b)] {
            if to_b && !sender_runs {
                continue;
            }
            if k.poll_timeout().is_some_and(|d| now.reached(d)) {
                k.handle_timeout(now);
            }
            while let Some(n) = k.poll_transmit(now, &mut buf) {
                wire[usize::from(to_b)].push_back((t + 2, buf[..n].to_vec()));
            }
        }
        for (to_b, k) in [(true, &mut b), (false, &mut a)] {
            if !to_b && !sender_runs {
                continue;
            }
            let w = &mut wire[usize::from(to_b)];
            while w.front().is_some_and(|w| w.0 <= t) {
                k.handle_datagram(now, &w.pop_front().unwrap().1).unwrap();
            }
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

#[test]
fn a_sender_that_runs_late_keeps_the_rate() {
    // fast3's timer ticks every 10 ms; the sender gets to run every 13 ms. A bucket that
    // held one interval's worth would deliver 10/13 of the rate.
    let got = run_when(1_000_000, 13);
    let total: usize = got.iter().sum();
    eprintln!("1 MB/s limit, sender every 13 ms: {total} bytes in 10 s; per 100 ms: {got:?}");
    assert!(
        (9_500_000..=10_500_000).contains(&total),
        "{total} bytes in 10 s"
    );
    for (i, &n) in got.iter().enumerate().skip(1) {
        assert!((80_000..=120_000).contains(&n), "{n} bytes in slot {i}");
    }
}
