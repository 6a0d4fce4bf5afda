//! Retransmission timing matches kcp-go v5.6.1 (`docs/protocol.md`, "Sending and
//! retransmission"): first RTO, linear backoff, fast retransmit after `resend` skipping ACKs,
//! early retransmit; ikcp.c flavour differs.

use kcp_core::wire::{Command, Datagram, SegmentRepr, HEADER_LEN};
use kcp_core::{Config, Kcp, Millis};

const T0: Millis = Millis(u32::MAX - 500);

/// Drives `k` alone (its peer is silent) for `ms`, returning (time offset, sn) of every PUSH.
fn pushes_while_silent(k: &mut Kcp, ms: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut now = T0;
    let mut buf = [0u8; 1500];
    loop {
        k.handle_timeout(now);
        while let Some(n) = k.poll_transmit(now, &mut buf) {
            for seg in Datagram::new(&buf[..n]) {
                let (repr, _) = seg.unwrap();
                if repr.cmd == Command::Push {
                    out.push((now.since(T0) as u32, repr.sn));
                }
            }
        }
        let Some(next) = k.poll_timeout() else { break };
        if next.since(T0) > ms as i32 {
            break;
        }
        now = next;
    }
    out
}

#[test]
fn rto_backs_off_linearly_from_200ms() {
    // kcp-go defaults: rx_rto 200 before any sample, nodelay off: rto += rx_rto each timeout.
    let mut k = Kcp::new(1, Config::default(), T0).unwrap();
    k.send(b"x").unwrap();
    let times: Vec<u32> = pushes_while_silent(&mut k, 3_100)
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(times, [0, 200, 600, 1200, 2000, 3000]);
    assert_eq!(k.stats().lost_segs, 5);
}

#[test]
fn nodelay_backs_off_by_half_rto() {
    let cfg = Config::default().with_nodelay(true, 10, 0, true);
    let mut k = Kcp::new(1, cfg, T0).unwrap();
    k.send(b"x").unwrap();
    let times: Vec<u32> = pushes_while_silent(&mut k, 1_500)
        .iter()
        .map(|p| p.0)
        .collect();
    // rto 200, then +100 per timeout: deadlines at 200, 500, 900, 1400.
    assert_eq!(times, [0, 200, 500, 900, 1400]);
}

#[test]
fn ikcp_flavour_backs_off_exponentially() {
    let cfg = Config::ikcp().with_nodelay(false, 10, 0, true);
    let mut k = Kcp::new(1, cfg, T0).unwrap();
    k.send(b"x").unwrap();
    let times: Vec<u32> = pushes_while_silent(&mut k, 4_000)
        .iter()
        .map(|p| p.0)
        .collect();
    // First deadline 200 + 200/8; then rto doubles: 400, 800, 1600.
    assert_eq!(times, [0, 225, 625, 1425, 3025]);
}

#[test]
fn dead_link_after_twenty_transmissions() {
    let cfg = Config::default().with_nodelay(true, 10, 0, true);
    let mut k = Kcp::new(1, cfg, T0).unwrap();
    k.send(b"x").unwrap();
    pushes_while_silent(&mut k, 30_000);
    assert!(k.is_dead());
}

fn ack(conv: u32, sn: u32, ts: u32, una: u32) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    SegmentRepr {
        conv,
        cmd: Command::Ack,
        frg: 0,
        wnd: 128,
        ts,
        sn,
        una,
        len: 0,
    }
    .emit(&mut b)
    .unwrap();
    b
}

/// A sender with segments 0..n in flight at T0, all sent in one flush.
fn in_flight(cfg: Config, n: usize) -> (Kcp<'static>, Vec<u32>) {
    let mut k = Kcp::new(9, cfg, T0).unwrap();
    for i in 0..n {
        k.send(&[i as u8; 100]).unwrap();
    }
    let mut buf = [0u8; 1500];
    let mut sns = Vec::new();
    while let Some(len) = k.poll_transmit(T0, &mut buf) {
        for seg in Datagram::new(&buf[..len]) {
            sns.push(seg.unwrap().0.sn);
        }
    }
    (k, sns)
}

fn retransmitted(k: &mut Kcp, now: Millis) -> Vec<u32> {
    let mut buf = [0u8; 1500];
    let mut sns = Vec::new();
    k.handle_timeout(now);
    while let Some(len) = k.poll_transmit(now, &mut buf) {
        for seg in Datagram::new(&buf[..len]) {
            let (r, _) = seg.unwrap();
            if r.cmd == Command::Push {
                sns.push(r.sn);
            }
        }
    }
    sns
}

fn message_fast(resend: u32) -> Config {
    Config {
        stream: false,
        ..Config::default().with_nodelay(true, 10, resend, true)
    }
}

#[test]
fn early_retransmit_after_one_skipping_ack_when_nothing_new() {
    let (mut k, sns) = in_flight(message_fast(2), 4);
    assert_eq!(sns, [0, 1, 2, 3]);
    // sn 1 acknowledged, sn 0 still missing: sn 0 gets one fast-ack.
    k.handle_datagram(T0 + 5, &ack(9, 1, T0.0, 0)).unwrap();
    let now = T0 + 10;
    assert_eq!(
        retransmitted(&mut k, now),
        [0],
        "kcp-go early-retransmits at the next flush"
    );
    assert_eq!(k.stats().early_retrans_segs, 1);
    assert_eq!(k.stats().fast_retrans_segs, 0);
}

#[test]
fn ikcp_flavour_has_no_early_retransmit() {
    let cfg = Config {
        early_retransmit: false,
        ..message_fast(2)
    };
    let (mut k, _) = in_flight(cfg, 4);
    k.handle_datagram(T0 + 5, &ack(9, 1, T0.0, 0)).unwrap();
    assert_eq!(retransmitted(&mut k, T0 + 10), Vec::<u32>::new());
}

#[test]
fn fast_retransmit_after_resend_skipping_acks() {
    let (mut k, _) = in_flight(message_fast(2), 4);
    // Two ACKs in one datagram (for sn 1 and 2): kcp-go counts once per ACK segment.
    let mut d = ack(9, 1, T0.0, 0).to_vec();
    d.extend_from_slice(&ack(9, 2, T0.0, 0));
    k.handle_datagram(T0 + 5, &d).unwrap();
    // New data admitted in the same flush: early retransmit is off, fast retransmit is not.
    k.send(&[9; 100]).unwrap();
    let sns = retransmitted(&mut k, T0 + 10);
    assert_eq!(
        sns,
        [0, 4],
        "sn 0 fast-retransmitted, sn 4 sent for the first time"
    );
    assert_eq!(k.stats().fast_retrans_segs, 1);
    assert_eq!(k.stats().early_retrans_segs, 0);
}

#[test]
fn fast_ack_ignores_acks_of_segments_sent_earlier() {
    // ts-conservative counting: an ACK echoing a ts older than the hole's last transmission
    // does not count against it.
    let (mut k, _) = in_flight(message_fast(1), 3);
    let d = ack(9, 2, T0.0.wrapping_sub(1), 0);
    k.handle_datagram(T0 + 5, &d).unwrap();
    k.send(&[9; 100]).unwrap();
    assert_eq!(retransmitted(&mut k, T0 + 10), [3]);
}

#[test]
fn rtt_sample_sets_rto_like_kcp_go() {
    let (mut k, _) = in_flight(message_fast(0), 1);
    // One 40 ms sample: srtt 40, rttvar 20, rto = 40 + max(10, 80) = 120.
    k.handle_datagram(T0 + 40, &ack(9, 0, T0.0, 1)).unwrap();
    assert_eq!((k.srtt(), k.rttvar(), k.rto()), (40, 20, 120));
    assert!(k.is_idle());
}

#[test]
fn retransmit_hold_delays_fast_retransmit_until_srtt_plus_hold() {
    let cfg = Config {
        retransmit_hold_ms: 30,
        ..message_fast(1)
    };
    let (mut k, _) = in_flight(cfg, 3);
    // sn 1 acked at +5 (srtt 5): sn 0 has a fast-ack but has only been out 10 ms < 5 + 30.
    k.handle_datagram(T0 + 5, &ack(9, 1, T0.0, 0)).unwrap();
    assert_eq!(retransmitted(&mut k, T0 + 10), Vec::<u32>::new());
    // The timer wakes the engine when the hold ends, and the segment goes then.
    let wake = k.poll_timeout().unwrap();
    assert!(wake.since(T0) <= 35, "wakes at {wake:?}");
    assert_eq!(retransmitted(&mut k, T0 + 35), [0]);
}

#[test]
fn mtu_changes_at_run_time_apply_to_new_segments() {
    let mut k = Kcp::new(
        1,
        Config {
            stream: false,
            ..Config::fast3()
        },
        T0,
    )
    .unwrap();
    k.send(&[1u8; 1000]).unwrap();
    let smaller = Config {
        mtu: 500,
        ..*k.config()
    };
    assert!(
        k.reconfigure(smaller).is_err(),
        "a queued 1000-byte segment would not fit"
    );
    let mut buf = [0u8; 1500];
    while k.poll_transmit(T0, &mut buf).is_some() {}
    k.handle_datagram(T0 + 5, &ack(1, 0, T0.0, 1)).unwrap();
    k.reconfigure(smaller).unwrap();
    assert_eq!(k.mss(), 476);
    k.send(&[2u8; 1000]).unwrap();
    let mut sizes = Vec::new();
    while let Some(n) = k.poll_transmit(T0 + 6, &mut buf) {
        sizes.push(n);
    }
    assert!(sizes.iter().all(|&n| n <= 500), "{sizes:?}");
}
