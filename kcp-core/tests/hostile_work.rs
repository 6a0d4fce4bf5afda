//! What a peer's datagrams may make one engine hold and do, whatever its windows (the cost
//! itself is measured by `benches/engine.rs`, `input_empty_push_run` and `input_ack_flood`):
//! * empty PUSH segments never pile up in the receive queue (so `peek_size` never walks them);
//! * the fast-ack counting of one datagram's ACKs is bounded;
//! * a receive-limited engine refuses out-of-order data without acknowledging it, and still
//!   takes the segment its application needs next.

use kcp_core::wire::{Command, Datagram, SegmentRepr, HEADER_LEN};
use kcp_core::{Config, Kcp, Millis};

fn seg(cmd: Command, sn: u32, frg: u8, ts: u32, wnd: u32, data: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN + data.len()];
    SegmentRepr {
        conv: 1,
        cmd,
        frg,
        wnd: wnd.min(u16::MAX as u32) as u16,
        ts,
        sn,
        una: 0,
        len: data.len() as u32,
    }
    .emit(&mut d)
    .unwrap();
    d[HEADER_LEN..].copy_from_slice(data);
    d
}

/// The ACKed sequence numbers in what the engine sends now.
fn acked(k: &mut Kcp, now: Millis) -> Vec<u32> {
    let mut buf = [0u8; 1500];
    let mut v = Vec::new();
    k.flush();
    while let Some(n) = k.poll_transmit(now, &mut buf) {
        for (s, _) in Datagram::new(&buf[..n]).flatten() {
            if s.cmd == Command::Ack {
                v.push(s.sn);
            }
        }
    }
    v
}

#[test]
fn empty_segments_never_pile_up_in_the_receive_queue() {
    for stream in [true, false] {
        let cfg = Config {
            stream,
            ..Config::fast3().with_windows(32, 32_768)
        };
        let mut k = Kcp::new(1, cfg, Millis(0)).unwrap();
        let mut sn = 0;
        for _ in 0..2_000 {
            let mut d = Vec::new();
            for _ in 0..58 {
                d.extend(seg(Command::Push, sn, 0, 0, 32, &[]));
                sn += 1;
            }
            k.handle_datagram(Millis(1), &d).unwrap();
            assert_eq!(k.peek_size(), None);
            let _ = acked(&mut k, Millis(1));
        }
        assert_eq!(k.stats().empty_messages, 116_000, "stream {stream}");
        // The queue is empty: the next real segment is readable at once.
        k.handle_datagram(Millis(2), &seg(Command::Push, sn, 0, 0, 32, b"x"))
            .unwrap();
        assert_eq!(k.peek_size(), Some(1));
        let mut buf = [0u8; 8];
        assert_eq!(k.recv(&mut buf), Ok(1));
    }
}

#[test]
fn one_datagram_of_acks_counts_a_bounded_number_of_fast_acks() {
    let window = 8_192;
    let cfg = Config {
        stream: false,
        send_queue: 0,
        ..Config::fast3().with_windows(window, 32)
    };
    let mut k = Kcp::new(1, cfg, Millis(0)).unwrap();
    k.handle_datagram(Millis(0), &seg(Command::WindowTell, 0, 0, 0, window, &[]))
        .unwrap();
    for _ in 0..window {
        k.send(&[7]).unwrap();
    }
    let mut buf = [0u8; 1500];
    while k.poll_transmit(Millis(0), &mut buf).is_some() {}
    let mut flood = Vec::new();
    while flood.len() + HEADER_LEN <= 65_536 {
        flood.extend(seg(Command::Ack, window - 1, 0, 1_000, window, &[]));
    }
    k.handle_datagram(Millis(1), &flood).unwrap();
    // 2,048 visits: the first ACK walks 2,048 of the 8,191 holes, the other 2,729 none.
    assert_eq!(k.stats().acks_in, 2_730);
    assert_eq!(k.stats().fastack_skipped, 2_730);
    // The acknowledged segment is gone from the unacknowledged ones all the same.
    assert_eq!(k.wait_snd(), window as usize);
}

#[test]
fn a_receive_limited_engine_refuses_out_of_order_data_but_never_deadlocks() {
    let cfg = Config {
        stream: false,
        ..Config::fast3().with_windows(32, 64)
    };
    let mut k = Kcp::new(1, cfg, Millis(0)).unwrap();
    // Stored before the limit: out of order, behind a gap at 0..2 (a 3-fragment message).
    k.handle_datagram(Millis(0), &seg(Command::Push, 5, 0, 0, 32, b"f"))
        .unwrap();
    assert_eq!(acked(&mut k, Millis(0)), [5]);
    k.set_receive_limited(true);
    // More out-of-order data: refused, not acknowledged, counted.
    k.handle_datagram(Millis(1), &seg(Command::Push, 6, 0, 0, 32, b"g"))
        .unwrap();
    assert_eq!(acked(&mut k, Millis(1)), Vec::<u32>::new());
    assert_eq!(k.stats().in_over_budget, 1);
    // A copy of what is stored is acknowledged again (nothing accepted is lost).
    k.handle_datagram(Millis(1), &seg(Command::Push, 5, 0, 0, 32, b"f"))
        .unwrap();
    assert_eq!(acked(&mut k, Millis(1)), [5]);
    // The gap: the message's fragments come in order and are taken one by one, since the
    // application has nothing to read until the message is whole.
    for (sn, frg) in [(0u32, 2u8), (1, 1), (2, 0)] {
        k.handle_datagram(
            Millis(2),
            &seg(Command::Push, sn, frg, 0, 32, &[b'a' + sn as u8]),
        )
        .unwrap();
        assert_eq!(acked(&mut k, Millis(2)), [sn]);
    }
    assert_eq!(k.peek_size(), Some(3));
    // Something is readable: even the next in-order segment waits.
    k.handle_datagram(Millis(3), &seg(Command::Push, 3, 0, 0, 32, b"d"))
        .unwrap();
    assert_eq!(acked(&mut k, Millis(3)), Vec::<u32>::new());
    let mut buf = [0u8; 8];
    assert_eq!(k.recv(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"abc");
    // Read: the next in-order segment is taken.
    k.handle_datagram(Millis(4), &seg(Command::Push, 3, 0, 0, 32, b"d"))
        .unwrap();
    assert_eq!(acked(&mut k, Millis(4)), [3]);
    assert_eq!(k.recv(&mut buf), Ok(1));
    k.set_receive_limited(false);
    for sn in [4u32, 6] {
        k.handle_datagram(
            Millis(5),
            &seg(Command::Push, sn, 0, 0, 32, &[b'a' + sn as u8]),
        )
        .unwrap();
    }
    let mut got = Vec::new();
    while let Ok(n) = k.recv(&mut buf) {
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"efg");
}
