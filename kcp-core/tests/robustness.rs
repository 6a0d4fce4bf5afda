//! Hostile input: arbitrary datagrams never panic the engine and never grow its memory beyond
//! the bounds its configuration implies; the wire format round-trips.

use kcp_core::wire::{Command, Datagram, Segment, SegmentRepr, HEADER_LEN};
use kcp_core::{Config, Kcp, Millis, StaticBuffers};
use proptest::prelude::*;

const CONV: u32 = 0x5EED;

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Push),
        Just(Command::Ack),
        Just(Command::WindowAsk),
        Just(Command::WindowTell)
    ]
}

prop_compose! {
    fn repr()(conv in any::<u32>(), cmd in command(), frg in any::<u8>(), wnd in any::<u16>(),
              ts in any::<u32>(), sn in any::<u32>(), una in any::<u32>(), len in any::<u32>())
              -> SegmentRepr {
        SegmentRepr { conv, cmd, frg, wnd, ts, sn, una, len }
    }
}

/// A segment aimed at the engine: right conv, sequence numbers near the windows (or anywhere),
/// a payload, and sometimes a lying length field or an unknown command.
fn hostile_segment() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..8,
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        prop_oneof![0u32..300, any::<u32>()],
        prop_oneof![0u32..300, any::<u32>()],
        prop::collection::vec(any::<u8>(), 0..1600),
        prop_oneof![Just(None), any::<u32>().prop_map(Some)],
    )
        .prop_map(|(cmd, frg, wnd, ts, sn, una, payload, lie)| {
            let mut v = vec![0u8; HEADER_LEN];
            v[0..4].copy_from_slice(&CONV.to_le_bytes());
            v[4] = if cmd < 4 {
                81 + cmd
            } else if cmd < 7 {
                81
            } else {
                200
            };
            v[5] = frg;
            v[6..8].copy_from_slice(&wnd.to_le_bytes());
            v[8..12].copy_from_slice(&ts.to_le_bytes());
            v[12..16].copy_from_slice(&sn.to_le_bytes());
            v[16..20].copy_from_slice(&una.to_le_bytes());
            let len = lie.unwrap_or(payload.len() as u32);
            v[20..24].copy_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&payload);
            v
        })
}

fn hostile_datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(hostile_segment(), 1..4).prop_map(|s| s.concat()),
    ]
}

/// Feeds datagrams while also sending and reading, and checks the memory bound each step.
fn exercise(k: &mut Kcp, datagrams: &[Vec<u8>], bound: usize) -> Result<(), TestCaseError> {
    let mut now = Millis(u32::MAX - 100);
    let mut buf = [0u8; 1500];
    let mut app = [0u8; 4096];
    for (i, d) in datagrams.iter().enumerate() {
        let _ = k.handle_datagram(now, d);
        if i % 3 == 0 {
            let _ = k.send(&app[..(i * 37) % 3000 + 1]);
        }
        while k.recv(&mut app).is_ok() {}
        k.handle_timeout(now);
        let mut n = 0;
        while k.poll_transmit(now, &mut buf).is_some() {
            n += 1;
            prop_assert!(n < 10_000, "poll_transmit does not terminate");
        }
        prop_assert!(
            k.buffered_segments() <= bound,
            "{} > {bound}",
            k.buffered_segments()
        );
        now += 7;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_datagrams_never_panic_or_grow_unbounded(
        datagrams in prop::collection::vec(hostile_datagram(), 1..60),
        stream in any::<bool>(),
    ) {
        let cfg = Config { stream, ..Config::fast3() };
        let mut k = Kcp::new(CONV, cfg, Millis(u32::MAX - 100)).unwrap();
        // Send side: snd_wnd + send_queue; receive side: 2 * rcv_wnd.
        let bound = (cfg.snd_wnd + cfg.send_queue + 2 * cfg.rcv_wnd) as usize;
        exercise(&mut k, &datagrams, bound)?;
    }

    #[test]
    fn arbitrary_datagrams_into_the_no_alloc_engine(
        datagrams in prop::collection::vec(hostile_datagram(), 1..60),
    ) {
        let cfg = Config { snd_wnd: 8, rcv_wnd: 8, mtu: 576, ..Config::fast3() };
        let mut mem: StaticBuffers<16, 16, 24, 552> = StaticBuffers::new();
        let mut k = Kcp::with_buffers(CONV, cfg, Millis(0), mem.buffers()).unwrap();
        exercise(&mut k, &datagrams, 24)?;
    }

    #[test]
    fn segment_header_round_trips(r in repr(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let r = SegmentRepr { len: payload.len() as u32, ..r };
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        r.emit(&mut buf).unwrap();
        buf[HEADER_LEN..].copy_from_slice(&payload);
        let seg = Segment::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(SegmentRepr::parse(&seg).unwrap(), r);
        prop_assert_eq!(seg.payload(), &payload[..]);
        let parsed: Vec<_> = Datagram::new(&buf).collect();
        prop_assert_eq!(parsed.len(), 1);
    }

    #[test]
    fn datagram_iterator_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut total = 0;
        for item in Datagram::new(&bytes) {
            match item {
                Ok((r, p)) => { prop_assert_eq!(r.len as usize, p.len()); total += HEADER_LEN + p.len(); }
                Err(_) => break,
            }
        }
        prop_assert!(total <= bytes.len());
    }
}
