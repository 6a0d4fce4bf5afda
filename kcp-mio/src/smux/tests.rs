use super::*;
use proptest::prelude::*;

fn t0() -> Instant {
    Instant::now()
}

fn cfg(version: Version) -> Config {
    Config {
        version,
        ..Config::default()
    }
}

fn pair(config: Config) -> (Session, Session) {
    let now = t0();
    (
        Session::new(config.clone(), Role::Client, now).unwrap(),
        Session::new(config, Role::Server, now).unwrap(),
    )
}

/// All frames `from` has, in one buffer.
fn drain(from: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    while from.poll_transmit(&mut out).is_some() {}
    out
}

/// Moves frames both ways until neither side has any (all input must be consumed).
fn pump(a: &mut Session, b: &mut Session) {
    loop {
        let ab = drain(a);
        let ba = drain(b);
        if ab.is_empty() && ba.is_empty() {
            return;
        }
        assert_eq!(b.handle_input(&ab).unwrap(), ab.len());
        assert_eq!(a.handle_input(&ba).unwrap(), ba.len());
    }
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn frame(version: u8, cmd: u8, sid: u32, data: &[u8]) -> Vec<u8> {
    let mut v = FrameHeader {
        version,
        cmd,
        len: data.len() as u16,
        sid,
    }
    .encode()
    .to_vec();
    v.extend_from_slice(data);
    v
}

fn read_all(s: &mut Session, id: StreamId) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 7000];
    loop {
        match s.read(id, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Error::WouldBlock) => return out,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn stream_ids_by_role() {
    let (mut c, mut s) = pair(cfg(Version::V1));
    let ids: Vec<u32> = (0..3).map(|_| c.open().unwrap().get()).collect();
    assert_eq!(ids, [3, 5, 7]);
    let ids: Vec<u32> = (0..3).map(|_| s.open().unwrap().get()).collect();
    assert_eq!(ids, [2, 4, 6]);
}

#[test]
fn go_away_when_ids_run_out() {
    let (mut c, mut s) = pair(cfg(Version::V1));
    c.next_id = u32::MAX - 2;
    assert_eq!(c.open().unwrap().get(), u32::MAX);
    assert_eq!(c.open(), Err(Error::GoAway));
    assert_eq!(c.open(), Err(Error::GoAway));
    s.next_id = u32::MAX - 3;
    assert_eq!(s.open().unwrap().get(), u32::MAX - 1);
    assert_eq!(s.open(), Err(Error::GoAway));
}

#[test]
fn open_skips_an_id_the_peer_took() {
    let (mut c, _) = pair(cfg(Version::V1));
    c.handle_input(&frame(1, 0, 3, &[])).unwrap();
    assert_eq!(c.open().unwrap().get(), 5);
}

#[test]
fn wire_bytes_of_each_frame() {
    let (mut c, mut s) = pair(cfg(Version::V2));
    let id = c.open().unwrap();
    c.write(id, b"abc").unwrap();
    let wire = drain(&mut c);
    assert_eq!(wire, [frame(2, 0, 3, &[]), frame(2, 2, 3, b"abc")].concat());
    s.handle_input(&wire).unwrap();
    let a = s.accept().unwrap();
    let mut buf = [0u8; 2];
    assert_eq!(s.read(a, &mut buf).unwrap(), 2);
    // The first read sends UPD(consumed 2, window 65536).
    let mut upd = 2u32.to_le_bytes().to_vec();
    upd.extend_from_slice(&65536u32.to_le_bytes());
    assert_eq!(drain(&mut s), frame(2, 4, 3, &upd));
    s.close_stream(a).unwrap();
    assert_eq!(drain(&mut s), frame(2, 1, 3, &[]));
    // The stream is forgotten once its FIN is out.
    assert_eq!(s.read(a, &mut buf), Err(Error::UnknownStream));
}

#[test]
fn round_trip_both_versions() {
    for v in [Version::V1, Version::V2] {
        let (mut c, mut s) = pair(Config {
            stream_send_buffer: 1 << 20,
            ..cfg(v)
        });
        let id = c.open().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        assert_eq!(c.write(id, &data).unwrap(), data.len());
        // Frames carry at most 32768 bytes.
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        while let Some(n) = c.poll_transmit(&mut out) {
            sizes.push(n - HEADER_SIZE);
        }
        assert_eq!(sizes, [0, 32768, 32768, 32768, 1696]);
        s.handle_input(&out).unwrap();
        let a = s.accept().unwrap();
        assert_eq!(read_all(&mut s, a), data);
        c.close_stream(id).unwrap();
        pump(&mut c, &mut s);
        assert!(events(&mut s).contains(&Event::Finished(a)));
        assert_eq!(s.read(a, &mut [0u8; 4]), Ok(0));
        assert_eq!(s.write(a, b"x"), Err(Error::PeerClosed));
    }
}

#[test]
fn fin_follows_queued_data() {
    let (mut c, mut s) = pair(cfg(Version::V1));
    let id = c.open().unwrap();
    c.write(id, &[1; 50_000]).unwrap();
    c.close_stream(id).unwrap();
    assert_eq!(c.write(id, b"x"), Err(Error::StreamClosed));
    let wire = drain(&mut c);
    s.handle_input(&wire).unwrap();
    let a = s.accept().unwrap();
    assert_eq!(read_all(&mut s, a).len(), 50_000);
    assert!(s.is_finished(a));
    assert_eq!(c.num_streams(), 0);
}

#[test]
fn wrong_version_ends_session() {
    let (_, mut s) = pair(cfg(Version::V1));
    let r = s.handle_input(&frame(2, 3, 0, &[]));
    let reason = CloseReason::Protocol(ProtocolError::Version {
        expected: 1,
        got: 2,
    });
    assert_eq!(r, Err(reason));
    assert_eq!(events(&mut s), [Event::Closed(reason)]);
    assert_eq!(s.handle_input(&frame(1, 3, 0, &[])), Err(reason));
    assert_eq!(s.open(), Err(Error::Session(reason)));
}

#[test]
fn unknown_command_ends_session() {
    let (_, mut s) = pair(cfg(Version::V2));
    assert_eq!(
        s.handle_input(&frame(2, 5, 0, &[])),
        Err(CloseReason::Protocol(ProtocolError::Command(5)))
    );
}

#[test]
fn duplicate_syn_ignored_unknown_frames_dropped() {
    let (_, mut s) = pair(cfg(Version::V1));
    let input = [
        frame(1, 0, 3, &[]),
        frame(1, 2, 3, b"one"),
        frame(1, 0, 3, &[]),
        frame(1, 2, 9, b"lost"),
        frame(1, 1, 9, &[]),
        frame(1, 2, 3, b"two"),
    ]
    .concat();
    assert_eq!(s.handle_input(&input).unwrap(), input.len());
    let a = s.accept().unwrap();
    assert_eq!(s.accept(), None);
    assert_eq!(read_all(&mut s, a), b"onetwo");
    let st = s.stats();
    assert_eq!(
        (st.duplicate_syn, st.dropped_frames, st.dropped_bytes),
        (1, 2, 4)
    );
    assert_eq!(s.receive_bucket(), 4_194_304);
}

#[test]
fn length_parsed_as_go_parses_it() {
    // SYN, FIN and NOP carry no data whatever their length says; UPD always 8 bytes.
    let (_, mut s) = pair(cfg(Version::V2));
    let mut syn = frame(2, 0, 3, &[]);
    syn[2] = 8; // length 8, but nothing follows in Go's reading
    let mut upd = frame(2, 4, 3, &[]);
    upd.extend_from_slice(&[0; 8]); // length 0, yet 8 bytes follow
    let input = [syn, upd, frame(2, 2, 3, b"hi")].concat();
    assert_eq!(s.handle_input(&input).unwrap(), input.len());
    let a = s.accept().unwrap();
    assert_eq!(read_all(&mut s, a), b"hi");
}

#[test]
fn upd_in_v1_is_parsed_and_ignored() {
    let (_, mut s) = pair(cfg(Version::V1));
    let input = [
        frame(1, 0, 3, &[]),
        frame(1, 4, 3, &[9; 8]),
        frame(1, 2, 3, b"x"),
    ]
    .concat();
    assert_eq!(s.handle_input(&input).unwrap(), input.len());
    let a = s.accept().unwrap();
    assert_eq!(read_all(&mut s, a), b"x");
}

#[test]
fn accepts_frames_up_to_65535() {
    let (_, mut s) = pair(cfg(Version::V1));
    let big = vec![7u8; 65535];
    let input = [frame(1, 0, 3, &[]), frame(1, 2, 3, &big)].concat();
    assert_eq!(s.handle_input(&input).unwrap(), input.len());
    let a = s.accept().unwrap();
    assert_eq!(read_all(&mut s, a), big);
}

#[test]
fn bucket_back_pressure() {
    let config = Config {
        max_receive_buffer: 1000,
        max_stream_buffer: 1000,
        ..cfg(Version::V1)
    };
    let (_, mut s) = pair(config);
    let mut input = frame(1, 0, 3, &[]);
    for _ in 0..5 {
        input.extend(frame(1, 2, 3, &[5; 600]));
    }
    // Two frames fit (the bucket goes below zero by the second), then input stops.
    let n = s.handle_input(&input).unwrap();
    assert_eq!(n, 8 + 2 * 608);
    assert_eq!(s.receive_bucket(), -200);
    assert!(!s.wants_input());
    assert_eq!(s.handle_input(&input[n..]).unwrap(), 0);
    let a = s.accept().unwrap();
    let mut buf = [0u8; 100];
    s.read(a, &mut buf).unwrap();
    assert_eq!(s.receive_bucket(), -100);
    assert!(!events(&mut s).contains(&Event::InputResumed));
    let mut buf = [0u8; 150];
    s.read(a, &mut buf).unwrap();
    assert!(events(&mut s).contains(&Event::InputResumed));
    let mut pos = n;
    let mut got = 250;
    while pos < input.len() {
        let k = s.handle_input(&input[pos..]).unwrap();
        pos += k;
        got += read_all(&mut s, a).len();
        assert!(s.readable_bytes(a) as i64 <= 1000 + 65535);
    }
    assert_eq!(got, 3000);
}

#[test]
fn closing_a_stream_returns_its_tokens() {
    let config = Config {
        max_receive_buffer: 1000,
        max_stream_buffer: 1000,
        ..cfg(Version::V1)
    };
    let (_, mut s) = pair(config);
    let input = [
        frame(1, 0, 3, &[]),
        frame(1, 2, 3, &[1; 1000]),
        frame(1, 2, 3, b"z"),
    ]
    .concat();
    assert_eq!(s.handle_input(&input).unwrap(), 1008 + 8);
    let a = s.accept().unwrap();
    s.close_stream(a).unwrap();
    assert_eq!(s.receive_bucket(), 1000);
    // Data for the closed stream is dropped, not charged.
    assert_eq!(s.handle_input(&input[1016..]).unwrap(), 9);
    assert_eq!(s.receive_bucket(), 1000);
}

#[test]
fn v2_window_limits_the_sender() {
    let config = Config {
        stream_send_buffer: 1 << 20,
        ..cfg(Version::V2)
    };
    let (mut c, mut s) = pair(config);
    let id = c.open().unwrap();
    c.write(id, &vec![3u8; 600_000]).unwrap();
    let wire = drain(&mut c);
    // SYN plus exactly the initial window of 262144.
    assert_eq!(wire.len(), 8 + 262_144 + 8 * 262_144usize.div_ceil(32768));
    assert_eq!(c.queued_bytes(id), 600_000 - 262_144);
    s.handle_input(&wire).unwrap();
    let a = s.accept().unwrap();
    // First read: UPD(1, 65536). Window 65536 with 262143 in flight: nothing can go.
    s.read(a, &mut [0u8; 1]).unwrap();
    let upd = drain(&mut s);
    assert_eq!(&upd[8..], [1, 0, 0, 0, 0, 0, 1, 0]);
    c.handle_input(&upd).unwrap();
    assert!(drain(&mut c).is_empty());
    // Reading another 32768 bytes (half of 65536, counted after the first UPD) sends the next.
    s.read(a, &mut vec![0u8; 32767]).unwrap();
    assert!(drain(&mut s).is_empty());
    s.read(a, &mut [0u8; 1]).unwrap();
    let upd = drain(&mut s);
    assert_eq!(&upd[8..12], 32769u32.to_le_bytes());
    // Read everything; the sender never has more than the window in flight.
    let mut total = 32769;
    loop {
        let n = read_all(&mut s, a).len();
        total += n;
        let up = drain(&mut s);
        c.handle_input(&up).unwrap();
        let down = drain(&mut c);
        let st = &c.streams[&id.0];
        let inflight = st.num_written.wrapping_sub(st.peer_consumed);
        assert!(inflight <= st.peer_window.max(262_144));
        if n == 0 && up.is_empty() && down.is_empty() {
            break;
        }
        s.handle_input(&down).unwrap();
    }
    assert_eq!(total, 600_000);
}

#[test]
fn v2_counters_wrap() {
    let config = Config {
        stream_send_buffer: 1 << 20,
        ..cfg(Version::V2)
    };
    let (mut c, mut s) = pair(config);
    let id = c.open().unwrap();
    pump(&mut c, &mut s);
    let a = s.accept().unwrap();
    c.streams.get_mut(&id.0).unwrap().num_written = u32::MAX - 1000;
    c.streams.get_mut(&id.0).unwrap().peer_consumed = u32::MAX - 1000;
    s.streams.get_mut(&a.0).unwrap().num_read = u32::MAX - 1000;
    let data = vec![9u8; 300_000];
    let mut sent = 0;
    let mut got = 0;
    for _ in 0..1000 {
        if sent < data.len() {
            sent += c.write(id, &data[sent..]).unwrap_or(0);
        }
        pump(&mut c, &mut s);
        got += read_all(&mut s, a).len();
        if got == data.len() {
            break;
        }
    }
    assert_eq!(got, data.len());
    let st = &c.streams[&id.0];
    assert!(st.num_written < 300_000, "wrapped: {}", st.num_written);
}

#[test]
fn v2_peer_consumed_too_much() {
    let (mut c, mut s) = pair(cfg(Version::V2));
    let id = c.open().unwrap();
    c.write(id, b"abc").unwrap();
    pump(&mut c, &mut s);
    let mut upd = 100u32.to_le_bytes().to_vec();
    upd.extend_from_slice(&65536u32.to_le_bytes());
    c.handle_input(&frame(2, 4, id.get(), &upd)).unwrap();
    assert_eq!(c.write(id, b"x"), Err(Error::Consumed));
    let mut upd = 3u32.to_le_bytes().to_vec();
    upd.extend_from_slice(&65536u32.to_le_bytes());
    c.handle_input(&frame(2, 4, id.get(), &upd)).unwrap();
    assert!(events(&mut c).contains(&Event::Writable(id)));
    assert_eq!(c.write(id, b"x"), Ok(1));
}

#[test]
fn write_back_pressure_and_writable() {
    let config = Config {
        stream_send_buffer: 1000,
        ..cfg(Version::V1)
    };
    let (mut c, _) = pair(config);
    let id = c.open().unwrap();
    assert_eq!(c.write(id, &[0; 1500]), Ok(1000));
    assert_eq!(c.write(id, &[0; 10]), Err(Error::WouldBlock));
    assert_eq!(c.write_capacity(id), 0);
    drain(&mut c);
    assert_eq!(events(&mut c), [Event::Writable(id)]);
    assert_eq!(c.write_capacity(id), 1000);
}

#[test]
fn keepalive_nop_and_timeout() {
    let now = t0();
    let mut s = Session::new(cfg(Version::V1), Role::Server, now).unwrap();
    let sec = Duration::from_secs(1);
    assert_eq!(s.poll_timeout(), Some(now + 10 * sec));
    s.handle_timeout(now + 9 * sec);
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(now + 10 * sec);
    assert_eq!(drain(&mut s), frame(1, 3, 0, &[]));
    assert_eq!(s.poll_timeout(), Some(now + 20 * sec));
    s.handle_timeout(now + 20 * sec);
    // Something arrives before the first check at 30 s: the session survives it.
    s.handle_input(&frame(1, 3, 0, &[])).unwrap();
    s.handle_timeout(now + 30 * sec);
    assert_eq!(s.close_reason(), None);
    // The NOP of 20 s was not pulled yet: the one of 30 s joins it.
    assert_eq!(drain(&mut s), frame(1, 3, 0, &[]));
    // Nothing between 30 s and 60 s: closed at the 60 s check.
    s.handle_timeout(now + 59 * sec);
    assert_eq!(s.close_reason(), None);
    s.handle_timeout(now + 60 * sec);
    assert_eq!(s.close_reason(), Some(CloseReason::Timeout));
    assert!(events(&mut s).contains(&Event::Closed(CloseReason::Timeout)));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn missed_ticks_are_dropped() {
    let now = t0();
    let mut s = Session::new(cfg(Version::V1), Role::Server, now).unwrap();
    s.handle_input(&frame(1, 3, 0, &[])).unwrap();
    s.handle_timeout(now + Duration::from_secs(35));
    // One NOP for the missed ticks at 10, 20 and 30 s; next ping at 40 s.
    assert_eq!(drain(&mut s), frame(1, 3, 0, &[]));
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(40)));
}

#[test]
fn no_timeout_while_bucket_empty() {
    let now = t0();
    let config = Config {
        max_receive_buffer: 100,
        max_stream_buffer: 100,
        ..cfg(Version::V1)
    };
    let mut s = Session::new(config, Role::Server, now).unwrap();
    s.handle_input(&[frame(1, 0, 3, &[]), frame(1, 2, 3, &[0; 100])].concat())
        .unwrap();
    for k in 1..10 {
        s.handle_timeout(now + Duration::from_secs(30 * k));
    }
    assert_eq!(s.close_reason(), None);
}

#[test]
fn keepalive_disabled() {
    let now = t0();
    let config = Config {
        keepalive: None,
        ..cfg(Version::V1)
    };
    let mut s = Session::new(config, Role::Server, now).unwrap();
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(now + Duration::from_secs(1000));
    assert_eq!(s.close_reason(), None);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn stream_cap_refuses_with_fin() {
    let config = Config {
        max_streams: 2,
        ..cfg(Version::V1)
    };
    let (_, mut s) = pair(config);
    let input = [
        frame(1, 0, 3, &[]),
        frame(1, 0, 5, &[]),
        frame(1, 0, 7, &[]),
    ]
    .concat();
    s.handle_input(&input).unwrap();
    assert_eq!(s.num_streams(), 2);
    assert_eq!(s.stats().refused_streams, 1);
    assert_eq!(drain(&mut s), frame(1, 1, 7, &[]));
    assert_eq!(s.open(), Err(Error::TooManyStreams));
}

#[test]
fn accept_backlog_blocks_input() {
    let config = Config {
        accept_backlog: 2,
        ..cfg(Version::V1)
    };
    let (_, mut s) = pair(config);
    let input: Vec<u8> = (0..4).flat_map(|i| frame(1, 0, 3 + 2 * i, &[])).collect();
    // The third SYN's header is read, then the session waits for room.
    assert_eq!(s.handle_input(&input).unwrap(), 24);
    assert_eq!(s.handle_input(&input[24..]).unwrap(), 0);
    assert_eq!(s.accept().unwrap().get(), 3);
    assert!(events(&mut s).contains(&Event::InputResumed));
    // The fourth header is read, then the session waits again.
    assert_eq!(s.handle_input(&input[24..]).unwrap(), 8);
    assert_eq!(s.handle_input(&input[32..]).unwrap(), 0);
    assert_eq!(s.accept().unwrap().get(), 5);
    assert_eq!(s.accept().unwrap().get(), 7);
    assert_eq!(s.accept().unwrap().get(), 9);
}

#[test]
fn eof_inside_a_frame_is_truncation() {
    let (_, mut s) = pair(cfg(Version::V1));
    s.handle_input(&frame(1, 3, 0, &[])[..5]).unwrap();
    s.handle_eof();
    assert_eq!(
        s.close_reason(),
        Some(CloseReason::Protocol(ProtocolError::Truncated))
    );
    let (_, mut s) = pair(cfg(Version::V1));
    s.handle_input(&[frame(1, 0, 3, &[]), frame(1, 2, 3, b"left")].concat())
        .unwrap();
    s.handle_eof();
    assert_eq!(s.close_reason(), Some(CloseReason::Eof));
    let a = s.accept().unwrap();
    // What arrived is still read, then the session's end.
    let mut buf = [0u8; 10];
    assert_eq!(s.read(a, &mut buf), Ok(4));
    assert_eq!(s.read(a, &mut buf), Err(Error::Session(CloseReason::Eof)));
}

#[test]
fn config_validation() {
    assert!(Config::default().validate().is_ok());
    let bad = [
        Config {
            max_frame_size: 0,
            ..Config::default()
        },
        Config {
            max_frame_size: 65536,
            ..Config::default()
        },
        Config {
            max_stream_buffer: 5_000_000,
            ..Config::default()
        },
        Config {
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
            }),
            ..Config::default()
        },
    ];
    for c in bad {
        assert!(Session::new(c, Role::Client, t0()).is_err());
    }
}

/// Splits `data` at the given cut points.
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in cuts.into_iter().chain([data.len()]) {
        out.push(data[prev..c].to_vec());
        prev = c;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Streams' bytes arrive intact however the byte stream is cut, in both versions.
    #[test]
    fn round_trip_any_chunking(
        v2 in any::<bool>(),
        writes in prop::collection::vec((0usize..3, prop::collection::vec(any::<u8>(), 0..5000)), 1..20),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        frame_size in 1usize..40000,
    ) {
        let version = if v2 { Version::V2 } else { Version::V1 };
        let config = Config { max_frame_size: frame_size, stream_send_buffer: 1 << 20, ..cfg(version) };
        let (mut c, mut s) = pair(config);
        let ids: Vec<StreamId> = (0..3).map(|_| c.open().unwrap()).collect();
        let mut expect = vec![Vec::new(); 3];
        for (i, data) in &writes {
            prop_assert_eq!(c.write(ids[*i], data).unwrap_or(0), data.len());
            expect[*i].extend_from_slice(data);
        }
        for id in &ids {
            c.close_stream(*id).unwrap();
        }
        let wire = drain(&mut c);
        for piece in chunks(&wire, &cuts) {
            prop_assert_eq!(s.handle_input(&piece).unwrap(), piece.len());
        }
        for (i, e) in expect.iter().enumerate() {
            let a = s.accept().unwrap();
            prop_assert_eq!(a, ids[i]);
            prop_assert_eq!(&read_all(&mut s, a), e);
            prop_assert!(s.is_finished(a));
        }
    }

    /// Arbitrary input never panics; memory stays within the bucket plus one frame.
    #[test]
    fn arbitrary_input(v2 in any::<bool>(), data in prop::collection::vec(any::<u8>(), 0..4000), cuts in prop::collection::vec(any::<usize>(), 0..10)) {
        let version = if v2 { Version::V2 } else { Version::V1 };
        let config = Config { max_receive_buffer: 1000, max_stream_buffer: 1000, max_streams: 8, accept_backlog: 4, ..cfg(version) };
        let (_, mut s) = pair(config);
        for piece in chunks(&data, &cuts) {
            let _ = s.handle_input(&piece);
            let _ = drain(&mut s);
            while s.accept().is_some() {}
            let buffered: usize = s.streams.values().map(|st| st.recv.len()).sum();
            prop_assert!(buffered <= 1000 + 65535);
            prop_assert!(s.num_streams() <= 8);
        }
    }

    /// Flow control under random read sizes, write sizes and delivery cuts: the receiver
    /// buffers at most its bucket plus one frame, a v2 sender never has more than the
    /// peer's window in flight, and every byte arrives in order.
    #[test]
    fn flow_control_random_schedule(
        v2 in any::<bool>(),
        bucket in 1usize..200_000,
        window in 1usize..100_000,
        steps in prop::collection::vec((0usize..70_000, 0usize..70_000, 1usize..5000), 1..60),
    ) {
        let version = if v2 { Version::V2 } else { Version::V1 };
        let config = Config {
            max_receive_buffer: bucket.max(window),
            max_stream_buffer: window,
            stream_send_buffer: 100_000,
            ..cfg(version)
        };
        let limit = config.max_receive_buffer + 65535;
        let (mut c, mut s) = pair(config);
        let id = c.open().unwrap();
        // The byte at stream offset `p`.
        let byte = |p: usize| (p.wrapping_mul(31) ^ (p >> 9)) as u8;
        let mut sent = 0usize;
        let mut received = 0usize;
        let mut wire: Vec<u8> = Vec::new();
        let mut acc = None;
        let mut buf = vec![0u8; 70_000];
        // Then only reads until everything arrived. With a window of one byte a v2 sender
        // moves about a byte per step, and up to its send buffer (100,000) plus what the
        // steps wrote past it may be queued: the tail allows for all of that.
        let tail = std::iter::repeat_n(&(0, 70_000, 5000), 200_000);
        for (i, &(w, r, cut)) in steps.iter().chain(tail).enumerate() {
            let data: Vec<u8> = (sent..sent + w).map(byte).collect();
            sent += c.write(id, &data).unwrap_or(0);
            while c.poll_transmit(&mut wire).is_some() {}
            let n = cut.min(wire.len());
            let k = s.handle_input(&wire[..n]).unwrap();
            wire.drain(..k);
            if acc.is_none() {
                acc = s.accept();
            }
            if let Some(a) = acc {
                prop_assert!(s.readable_bytes(a) <= limit);
                match s.read(a, &mut buf[..r.max(1)]) {
                    Ok(k) => {
                        for (j, &b) in buf[..k].iter().enumerate() {
                            prop_assert_eq!(b, byte(received + j));
                        }
                        received += k;
                    }
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let mut up = Vec::new();
            while s.poll_transmit(&mut up).is_some() {}
            c.handle_input(&up).unwrap();
            if v2 {
                let st = &c.streams[&id.0];
                let inflight = st.num_written.wrapping_sub(st.peer_consumed);
                prop_assert!(inflight <= st.peer_window.max(INITIAL_PEER_WINDOW));
            }
            if i >= steps.len() && received == sent {
                break;
            }
        }
        prop_assert_eq!(received, sent);
    }
}

#[test]
fn a_stream_that_waits_holds_no_buffers() {
    for version in [Version::V1, Version::V2] {
        let (mut c, mut s) = pair(cfg(version));
        let id = c.open().unwrap();
        pump(&mut c, &mut s);
        let sid = s.accept().unwrap();
        for len in [1usize, 700, 5000, 70_000, 300_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut at = 0;
            let mut got = Vec::new();
            while got.len() < len {
                if let Some(d) = data.get(at..).filter(|d| !d.is_empty()) {
                    at += c.write(id, d).unwrap_or(0);
                }
                // A buffer while there is something in it, none once it is empty.
                let held = |c: &Session, s: &Session| {
                    assert_eq!(
                        c.buffer_capacities(id).1 > 0,
                        c.queued_bytes(id) > 0,
                        "{version:?} {len}: send"
                    );
                    assert_eq!(
                        s.buffer_capacities(sid).0 > 0,
                        s.readable_bytes(sid) > 0,
                        "{version:?} {len}: receive"
                    );
                };
                held(&c, &s);
                pump(&mut c, &mut s);
                held(&c, &s);
                got.extend(read_all(&mut s, sid));
                held(&c, &s);
                pump(&mut c, &mut s);
            }
            assert_eq!(got, data);
            // All delivered and read: the stream waits, and holds nothing.
            assert_eq!(c.buffer_capacities(id), (0, 0), "{version:?} {len}");
            assert_eq!(s.buffer_capacities(sid), (0, 0), "{version:?} {len}");
        }
    }
}
