//! Two robustness properties at the edges of the configuration and of time:
//! * storage growth never panics, for any valid configuration (windows of 1 segment and up),
//!   heap-backed or on caller-provided buffers;
//! * after an idle gap of 2^31 ms or more on the wrapping millisecond clock, engine and
//!   endpoint timers re-anchor on the new time: data flows again within a few intervals and
//!   no loop spins on a deadline that stays in the past; with the idle timeout on, sessions
//!   time out (that much time passed) and new ones open;
//! * after a jump of just under 2^32 ms (which reads as a clock a little behind, like a stale
//!   reading), timers keep firing on the new clock: data flows at once, and the idle timeout
//!   fires when it is due on the new clock, not once the clock has caught up.

use std::collections::VecDeque;

use kcp_core::endpoint::{Endpoint, EndpointConfig};
use kcp_core::{AckEntry, Buffers, Config, Kcp, Millis, RecvSlot, SendSlot, HEAP_CHUNK};
use proptest::prelude::*;

fn buffers_for(cfg: &Config) -> Buffers<'static> {
    let snd = (cfg.snd_wnd + cfg.send_queue) as usize;
    let rcv = (cfg.rcv_wnd * 2) as usize;
    let chunks = snd + rcv;
    Buffers {
        send: vec![SendSlot::EMPTY; snd].leak(),
        recv: vec![RecvSlot::EMPTY; rcv].leak(),
        acks: vec![AckEntry::EMPTY; rcv.max(1)].leak(),
        transmit: vec![0u32; snd].leak(),
        arena: vec![0u8; chunks * HEAP_CHUNK].leak(),
        free: vec![0u32; chunks].leak(),
        chunk_len: HEAP_CHUNK,
    }
}

/// Moves datagrams from `a` to `b`, dropping those `drop` selects.
fn pump(a: &mut Kcp, b: &mut Kcp, now: Millis, drop: &mut impl FnMut() -> bool) {
    let mut buf = [0u8; 1500];
    a.handle_timeout(now);
    while let Some(n) = a.poll_transmit(now, &mut buf) {
        if !drop() {
            let _ = b.handle_datagram(now, &buf[..n]);
        }
    }
}

fn exchange(mut a: Kcp, mut b: Kcp, msgs: &[Vec<u8>], seed: u64) -> Vec<u8> {
    let mut rng = seed | 1;
    let mut drop = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng.is_multiple_of(10)
    };
    let mut now = Millis(u32::MAX - 500);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut pending: VecDeque<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    for _ in 0..3_000 {
        while let Some(m) = pending.front_mut() {
            // Stream mode may queue part of a write.
            match a.send(m) {
                Ok(n) if n < m.len() => {
                    *m = &m[n..];
                    break;
                }
                Ok(_) => {
                    pending.pop_front();
                }
                Err(_) => break,
            }
        }
        pump(&mut a, &mut b, now, &mut drop);
        pump(&mut b, &mut a, now, &mut drop);
        while let Ok(n) = b.recv(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        now += 10;
    }
    got
}

fn small_config() -> impl Strategy<Value = Config> {
    (1u32..9, 1u32..9, 60u32..1500, any::<bool>(), 0u32..4).prop_map(
        |(snd_wnd, rcv_wnd, mtu, stream, send_queue)| Config {
            snd_wnd,
            rcv_wnd,
            mtu,
            stream,
            send_queue,
            ..Config::fast3()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Windows of 1..8 segments, any MTU: no panic (the ring bound may be below the initial
    /// ring size), and everything that can get through does, in order, over a link losing
    /// 10 %: in stream mode all of it; in message mode every message up to the first one with
    /// more fragments than the receive window or the send queue can hold (it can never be
    /// sent whole, and it blocks those after it).
    #[test]
    fn small_windows_never_panic(cfg in small_config(), seed in any::<u64>(), sizes in prop::collection::vec(1usize..300, 1..20)) {
        let msgs: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| vec![i as u8; n]).collect();
        let fits = |m: &Vec<u8>| {
            let frags = m.len().div_ceil(cfg.mss() as usize) as u32;
            cfg.stream || (frags <= cfg.rcv_wnd && frags <= cfg.snd_wnd + cfg.send_queue)
        };
        let sent: Vec<u8> = msgs.iter().take_while(|m| fits(m)).flatten().copied().collect();
        let heap = exchange(
            Kcp::new(1, cfg, Millis(0)).unwrap(),
            Kcp::new(1, cfg, Millis(0)).unwrap(),
            &msgs,
            seed,
        );
        prop_assert_eq!(heap.len(), sent.len(), "delivered on heap buffers");
        prop_assert!(heap == sent);
        let borrowed = exchange(
            Kcp::with_buffers(1, cfg, Millis(0), buffers_for(&cfg)).unwrap(),
            Kcp::with_buffers(1, cfg, Millis(0), buffers_for(&cfg)).unwrap(),
            &msgs,
            seed,
        );
        prop_assert_eq!(borrowed.len(), sent.len(), "delivered on caller buffers");
        prop_assert!(borrowed == sent);
    }
}

/// Two engines exchange a message, go idle, the clock jumps by `gap`, and a second message
/// must arrive within a second of the new time.
fn resumes_after(gap: u32) {
    let start = Millis(u32::MAX - 3_000);
    let mut a = Kcp::new(3, Config::fast3(), start).unwrap();
    let mut b = Kcp::new(3, Config::fast3(), start).unwrap();
    let mut now = start;
    let mut never = || false;
    a.send(b"before").unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..100 {
        pump(&mut a, &mut b, now, &mut never);
        pump(&mut b, &mut a, now, &mut never);
        now += 10;
    }
    assert_eq!(b.recv(&mut buf), Ok(6));
    assert_eq!(a.poll_timeout(), None, "idle before the gap");
    assert_eq!(b.poll_timeout(), None);

    now += gap;
    a.send(b"after").unwrap();
    let mut at = None;
    for step in 0..100 {
        // Drive the timer exactly as an adapter does: only when it is due.
        for k in [&mut a, &mut b] {
            if let Some(t) = k.poll_timeout() {
                let d = t.since(now);
                let interval = Config::fast3().interval as i32;
                assert!(
                    -interval <= d && d <= interval,
                    "timer {t:?} far from now {now:?} after a gap of {gap}"
                );
            }
        }
        pump(&mut a, &mut b, now, &mut never);
        pump(&mut b, &mut a, now, &mut never);
        if b.recv(&mut buf).is_ok() {
            at = Some(step);
            break;
        }
        now += 10;
    }
    let at = at.unwrap_or_else(|| panic!("no delivery within 1 s after a gap of {gap} ms"));
    assert!(at <= 10, "delivered at step {at}");
    // The acknowledgement comes back too, and both go idle again.
    for _ in 0..50 {
        pump(&mut a, &mut b, now, &mut never);
        pump(&mut b, &mut a, now, &mut never);
        now += 10;
    }
    assert!(a.is_idle(), "acknowledged after a gap of {gap}");
    assert_eq!((a.poll_timeout(), b.poll_timeout()), (None, None));
}

#[test]
fn an_idle_engine_resumes_after_gaps_of_2_31_ms_and_more() {
    for gap in [1 << 31, (1 << 31) + 12_345, 3 << 30, u32::MAX - 7] {
        resumes_after(gap);
    }
}

/// A jump of 2^32 - 1 ms (or anything down to 2^32 - 60 s) reads as a clock slightly behind:
/// the timer is still reported near the caller's clock and data flows at once.
#[test]
fn an_idle_engine_resumes_after_jumps_of_just_under_2_32_ms() {
    for gap in [u32::MAX, u32::MAX - 999, u32::MAX - 59_000] {
        resumes_after(gap);
    }
}

#[test]
fn in_flight_data_is_retransmitted_after_the_clock_jumps() {
    for jump in [(1u32 << 31) + 1, u32::MAX, u32::MAX - 30_000] {
        retransmitted_after(jump);
    }
}

fn retransmitted_after(jump: u32) {
    let start = Millis(100);
    let mut a = Kcp::new(4, Config::fast3(), start).unwrap();
    let mut b = Kcp::new(4, Config::fast3(), start).unwrap();
    let mut buf = [0u8; 1500];
    a.send(b"lost").unwrap();
    // The first transmission is lost; then nobody calls the engine for 2^31 + 1 ms.
    while a.poll_transmit(start, &mut buf).is_some() {}
    let mut now = start + jump;
    let mut never = || false;
    let mut delivered = false;
    for _ in 0..50 {
        pump(&mut a, &mut b, now, &mut never);
        pump(&mut b, &mut a, now, &mut never);
        // Once the engine has seen the new time, its timer is near it (an adapter waits for
        // it before calling again).
        if let Some(t) = a.poll_timeout() {
            assert!(
                t.since(now) <= 1_000,
                "timer {t:?} far ahead of {now:?} after a jump of {jump}"
            );
        }
        if b.recv(&mut buf).is_ok() {
            delivered = true;
            break;
        }
        now += 10;
    }
    assert!(
        delivered,
        "the lost segment is resent soon after a jump of {jump}"
    );
}

/// One iteration of an adapter's loop on both endpoints at `now`: run timers while they are
/// due (asserting that none stays due), send what they produce, deliver it; returns the
/// sessions that closed, with the endpoint (0 server, 1 client).
fn adapter_step(
    server: &mut Endpoint<u8>,
    client: &mut Endpoint<u8>,
    now: Millis,
) -> Vec<(u8, kcp_core::endpoint::CloseReason)> {
    use kcp_core::endpoint::Event;
    let mut buf = [0u8; 1500];
    let mut wire = Vec::new();
    let mut closed = Vec::new();
    for (me, ep) in [(0u8, &mut *server), (1u8, &mut *client)] {
        let mut spins = 0;
        loop {
            while let Some((to, n)) = ep.poll_transmit(now, &mut buf) {
                wire.push((me, to, buf[..n].to_vec()));
            }
            while let Some(ev) = ep.poll_event() {
                if let Event::Closed(_, r) = ev {
                    closed.push((me, r));
                }
            }
            if !ep.poll_timeout().is_some_and(|t| now.reached(t)) {
                break;
            }
            ep.handle_timeout(now);
            spins += 1;
            assert!(spins < 50, "endpoint timer stays due at {now:?}");
        }
    }
    for (from, to, mut d) in wire {
        let ep = if to == 0 { &mut *server } else { &mut *client };
        let _ = ep.handle_datagram(now, from, &mut d);
    }
    closed
}

/// Opens a session from the client, sends `msg` and waits (5 ms steps, at most 1 s) until
/// the server accepted and read it.
fn open_and_deliver(
    server: &mut Endpoint<u8>,
    client: &mut Endpoint<u8>,
    now: &mut Millis,
    conv: u32,
    msg: &[u8],
) -> (kcp_core::endpoint::SessionId, kcp_core::endpoint::SessionId) {
    let c = client.connect(*now, 0, conv).unwrap();
    client.send(c, msg).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..200 {
        let closed = adapter_step(server, client, *now);
        assert!(closed.is_empty(), "{closed:?}");
        if let Some(s) = server.accept() {
            let mut got = Vec::new();
            for _ in 0..200 {
                if let Ok(n) = server.recv(s, &mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
                if got.len() == msg.len() {
                    return (c, s);
                }
                *now += 5;
                adapter_step(server, client, *now);
            }
        }
        *now += 5;
    }
    panic!("no delivery on conv {conv} within 1 s at {now:?}");
}

/// The idle timeout stays on (60 s), keepalive off. After an idle gap of 2^31 ms or more, that much time has
/// passed: both sessions time out at once, nothing spins, and a new session works. After a
/// jump of just under 2^32 ms (read as a clock slightly behind), the sessions live on, data
/// flows at once, and the idle timeout fires 60 s later on the new clock, not 60 s plus the
/// apparent lag.
#[test]
fn an_endpoint_does_not_spin_after_a_long_gap() {
    use kcp_core::endpoint::CloseReason;
    // No keepalive: the quiet sessions must reach their idle timeout.
    let mut server: Endpoint<u8> = Endpoint::new(EndpointConfig {
        accept: true,
        keepalive_ms: None,
        ..EndpointConfig::new(Config::fast3())
    })
    .unwrap();
    let mut client: Endpoint<u8> = Endpoint::new(EndpointConfig {
        keepalive_ms: None,
        ..EndpointConfig::new(Config::fast3())
    })
    .unwrap();
    assert_eq!(server.config().idle_timeout_ms, Some(60_000));
    let mut now = Millis(u32::MAX - 1_000);
    let mut conv = 11;
    let (mut c, mut s) = open_and_deliver(&mut server, &mut client, &mut now, conv, b"one");
    for gap in [(1u32 << 31) + 99, 3 << 30] {
        // Quiet for a while (only the idle deadlines remain), then the gap.
        for _ in 0..100 {
            now += 20;
            assert!(adapter_step(&mut server, &mut client, now).is_empty());
        }
        now += gap;
        let mut closed = Vec::new();
        for _ in 0..10 {
            closed.extend(adapter_step(&mut server, &mut client, now));
            now += 5;
        }
        closed.sort_by_key(|c| c.0);
        assert_eq!(
            closed,
            [(0, CloseReason::IdleTimeout), (1, CloseReason::IdleTimeout)],
            "after a gap of {gap} ms"
        );
        conv += 1;
        (c, s) = open_and_deliver(&mut server, &mut client, &mut now, conv, b"two");
    }
    for jump in [u32::MAX, u32::MAX - 59_000] {
        now += jump;
        client.send(c, b"three").unwrap();
        let mut buf = [0u8; 64];
        let mut delivered = false;
        for _ in 0..200 {
            assert!(adapter_step(&mut server, &mut client, now).is_empty());
            if server.recv(s, &mut buf) == Ok(5) {
                delivered = true;
                break;
            }
            now += 5;
        }
        assert!(delivered, "delivery within 1 s of a jump of {jump} ms");
        // Now silence: the idle timeout must fire 60 s after the last datagram, on the new
        // clock (allowing for the acknowledgement's exchange).
        let quiet_from = now;
        let mut closed = Vec::new();
        while closed.len() < 2 && now.since(quiet_from) < 200_000 {
            now += 50;
            for (who, r) in adapter_step(&mut server, &mut client, now) {
                assert_eq!(r, CloseReason::IdleTimeout);
                closed.push((who, now.since(quiet_from)));
            }
        }
        assert_eq!(closed.len(), 2, "both timed out after a jump of {jump} ms");
        for (who, after) in closed {
            assert!(
                (59_000..=61_000).contains(&after),
                "endpoint {who} timed out {after} ms into the silence after a jump of {jump} ms"
            );
        }
        conv += 1;
        (c, s) = open_and_deliver(&mut server, &mut client, &mut now, conv, b"again");
    }
    let _ = (c, s);
}

/// Threads read the clock before they take the lock that guards an endpoint, so a call may
/// carry a `now` a few milliseconds older than the previous call's. That is not a wrap of
/// the clock: nothing times out, nothing is re-anchored.
#[test]
fn a_slightly_stale_now_is_not_a_clock_wrap() {
    let mut server: Endpoint<u8> = Endpoint::new(EndpointConfig {
        accept: true,
        ..EndpointConfig::new(Config::fast3())
    })
    .unwrap();
    let mut client: Endpoint<u8> = Endpoint::new(EndpointConfig::new(Config::fast3())).unwrap();
    let c = client.connect(Millis(5), 0, 1).unwrap();
    let mut buf = [0u8; 1500];
    let mut got = 0usize;
    let mut sink = [0u8; 4096];
    for i in 0..2_000u32 {
        let now = Millis(5 + i);
        if i % 10 == 0 {
            let _ = client.send(c, &[1u8; 500]);
        }
        // Every other call is 7 ms stale.
        let t = if i % 2 == 0 {
            now
        } else {
            Millis(now.0.wrapping_sub(7))
        };
        client.handle_timeout(t);
        server.handle_timeout(t);
        while let Some((_, n)) = client.poll_transmit(t, &mut buf) {
            let _ = server.handle_datagram(t, 1, &mut buf[..n]);
        }
        while let Some((_, n)) = server.poll_transmit(t, &mut buf) {
            let _ = client.handle_datagram(t, 0, &mut buf[..n]);
        }
        while let Some(ev) = server.poll_event() {
            assert!(
                !matches!(ev, kcp_core::endpoint::Event::Closed(..)),
                "{ev:?} at step {i}"
            );
        }
        if let Some(s) = server.accept() {
            assert_eq!(server.len(), 1);
            let _ = s;
        }
        for s in server.sessions() {
            while let Ok(n) = server.recv(s, &mut sink) {
                got += n;
            }
        }
        if let Some(t) = server.poll_timeout() {
            assert!(t.since(now) <= 70_000, "deadline {t:?} far from {now:?}");
        }
    }
    assert_eq!(server.len(), 1);
    assert_eq!(got, 200 * 500);
}
