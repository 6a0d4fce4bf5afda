//! The receive hold (`KcpConfig::receive_hold`) on the mio endpoint: after a receive turn that
//! read datagrams, the socket leaves the poll's read interest for the hold, and
//! `handle_timeout` reads what came meanwhile once it is over. Turns are therefore at least a
//! hold apart whatever the peers send, and no byte is lost or reordered by it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kcp_core::Config;
use kcp_mio::{Endpoint, Event, KcpConfig, SessionId, Work};
use mio::{Events, Poll, Token};

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 7)) as u8
}

/// What the server saw: its receive turns, and when it first and last saw one happen
/// (after the loop iteration that read).
struct Turns {
    count: u64,
    span: Duration,
    /// The shortest time between two turns seen.
    min_gap: Duration,
}

/// An echo server on its own thread until `stop`.
fn echo_server(
    config: KcpConfig,
    stop: Arc<AtomicBool>,
) -> (std::net::SocketAddr, thread::JoinHandle<Turns>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = thread::spawn(move || {
        let mut poll = Poll::new().unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        let mut ep = Endpoint::listen(addr, &config, poll.registry(), Token(1)).unwrap();
        tx.send(ep.local_addr().unwrap()).unwrap();
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 4096];
        let mut seen: Option<(Instant, Instant)> = None;
        let mut min_gap = Duration::MAX;
        let mut last: Work = ep.work();
        while !stop.load(Ordering::Relaxed) {
            let t = ep.poll_timeout().map_or(Duration::from_millis(50), |t| {
                t.min(Duration::from_millis(50))
            });
            poll.poll(&mut events, Some(t)).unwrap();
            for e in events.iter() {
                ep.handle_event(e).unwrap();
            }
            ep.handle_timeout().unwrap();
            if ep.work().receive_turns != last.receive_turns {
                let now = Instant::now();
                if let Some((_, prev)) = seen {
                    min_gap = min_gap.min(now - prev);
                }
                seen = Some(seen.map_or((now, now), |(first, _)| (first, now)));
            }
            last = ep.work();
            while let Some(ev) = ep.poll_event() {
                match ev {
                    Event::Incoming => while ep.accept().is_some() {},
                    Event::Readable(id) => {
                        while let Ok(n) = ep.recv(id, &mut buf) {
                            assert_eq!(ep.send(id, &buf[..n]).unwrap(), n);
                        }
                    }
                    Event::Writable(_) => {}
                    Event::Closed(_, r) => panic!("server session closed: {r}"),
                }
            }
        }
        Turns {
            count: ep.work().receive_turns,
            span: seen.map_or(Duration::ZERO, |(first, last)| last - first),
            min_gap,
        }
    });
    (rx.recv_timeout(Duration::from_secs(10)).unwrap(), t)
}

/// A client endpoint on loopback under `Token(2)` of `poll`.
fn client_endpoint(config: &KcpConfig, poll: &Poll) -> Endpoint {
    Endpoint::client(
        "127.0.0.1:0".parse().unwrap(),
        config,
        poll.registry(),
        Token(2),
    )
    .unwrap()
}

/// `clients` sessions on one client endpoint, each sending `messages` messages of varying
/// size 2 ms apart, every byte echoed back in order. Returns what the server saw of its
/// receive turns.
fn run(hold: Option<Duration>, clients: usize, messages: usize) -> Turns {
    let config = KcpConfig::new(Config::fast3());
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, server) = echo_server(config.clone().receive_hold(hold), stop.clone());
    let mut poll = Poll::new().unwrap();
    let mut client = client_endpoint(&config, &poll);
    let ids: Vec<SessionId> = (0..clients)
        .map(|_| client.connect(addr).unwrap())
        .collect();
    // Message sizes vary per session and message: 1..=300 bytes.
    let sizes: Vec<Vec<usize>> = (0..clients)
        .map(|c| (0..messages).map(|m| 1 + (c * 37 + m * 11) % 300).collect())
        .collect();
    let totals: Vec<usize> = sizes.iter().map(|s| s.iter().sum()).collect();
    let mut sent = vec![(0usize, 0usize); clients]; // (messages, bytes)
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); clients];
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    let mut next_send = start;
    let limit = start + Duration::from_secs(60);
    while got.iter().zip(&totals).any(|(g, &t)| g.len() < t) {
        assert!(Instant::now() < limit, "echoes did not finish");
        if Instant::now() >= next_send {
            for (c, &id) in ids.iter().enumerate() {
                let (m, at) = sent[c];
                if m < messages {
                    let n = sizes[c][m];
                    let msg: Vec<u8> = (at..at + n).map(pattern).collect();
                    assert_eq!(client.send(id, &msg).unwrap(), n);
                    sent[c] = (m + 1, at + n);
                }
            }
            next_send += Duration::from_millis(2);
        }
        let wait = next_send.saturating_duration_since(Instant::now());
        let t = client.poll_timeout().map_or(wait, |t| t.min(wait));
        poll.poll(&mut events, Some(t)).unwrap();
        for e in events.iter() {
            client.handle_event(e).unwrap();
        }
        client.handle_timeout().unwrap();
        while let Some(ev) = client.poll_event() {
            if let Event::Readable(id) = ev {
                let c = ids.iter().position(|x| *x == id).unwrap();
                while let Ok(n) = client.recv(id, &mut buf) {
                    got[c].extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    for (c, g) in got.iter().enumerate() {
        assert!(
            g.iter().enumerate().all(|(i, &b)| b == pattern(i)),
            "session {c}: echo corrupted or reordered"
        );
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap()
}

/// One test, the two runs one after the other: run side by side on two cores they would
/// delay each other's threads by more than the slack below allows.
#[test]
fn turns_are_at_least_a_hold_apart_and_every_byte_arrives() {
    let hold = Duration::from_millis(20);
    let Turns {
        count,
        span,
        min_gap,
    } = run(Some(hold), 8, 100);
    eprintln!("hold: {count} turns in {span:?}, at least {min_gap:?} apart");
    // Holds never end early, so n turns span at least n - 1 holds. Each turn is seen after
    // its loop iteration, which may end later than its read (a descheduled thread): the
    // bounds allow for that (a turn cut short by its bound of system calls goes on without
    // a wait and counts once).
    let bound = span.as_millis() as u64 / hold.as_millis() as u64 + 2;
    assert!(
        count <= bound,
        "{count} receive turns in {span:?} with a {hold:?} hold (at most {bound})"
    );
    assert!(
        min_gap >= hold / 4,
        "two receive turns {min_gap:?} apart with a {hold:?} hold"
    );
    assert!(count > 2);

    // The same traffic without a hold takes several turns per hold's worth of time: what the
    // bounds above rule out.
    let Turns {
        count,
        span,
        min_gap,
    } = run(None, 8, 100);
    let bound = span.as_millis() as u64 / 20 + 2;
    eprintln!("no hold: {count} turns in {span:?}, at least {min_gap:?} apart");
    assert!(
        count > 2 * bound,
        "only {count} receive turns in {span:?} without a hold"
    );
    assert!(min_gap < hold / 4);
}

/// A session timer that falls due during a hold waits for the hold's end instead of waking
/// the loop on its own: right after a receive turn, `poll_timeout` is the hold's end even
/// though the datagram just read owes an ACK at the session's next tick (at most 10 ms in
/// fast3; the server's application does not answer, so nothing else sends it).
#[test]
fn timers_due_during_a_hold_wait_for_its_end() {
    let hold = Duration::from_millis(50);
    let config = KcpConfig::new(Config::fast3());
    let mut poll = Poll::new().unwrap();
    let mut server = Endpoint::listen(
        "127.0.0.1:0".parse().unwrap(),
        &config.clone().receive_hold(Some(hold)),
        poll.registry(),
        Token(1),
    )
    .unwrap();
    let mut client = client_endpoint(&config, &poll);
    let id = client.connect(server.local_addr().unwrap()).unwrap();
    let mut events = Events::with_capacity(64);
    let mut buf = [0u8; 256];
    let mut opened = None;
    let mut checked = 0;
    let limit = Instant::now() + Duration::from_secs(20);
    let mut next_send = Instant::now();
    while checked < 5 {
        assert!(Instant::now() < limit, "only {checked} turns checked");
        if Instant::now() >= next_send {
            client.send(id, b"ping").unwrap();
            next_send += Duration::from_millis(120);
        }
        let wait = [client.poll_timeout(), server.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_millis(10))
            .min(next_send.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, Some(wait)).unwrap();
        let turns = server.work().receive_turns;
        for e in events.iter() {
            client.handle_event(e).unwrap();
            server.handle_event(e).unwrap();
        }
        client.handle_timeout().unwrap();
        server.handle_timeout().unwrap();
        while let Some(ev) = server.poll_event() {
            if let Event::Incoming = ev {
                opened = server.accept();
            }
        }
        while client.poll_event().is_some() {}
        while client.recv(id, &mut buf).is_ok() {}
        let owes_ack =
            opened.is_some_and(|s| server.session_info(s).is_some_and(|i| i.kcp.in_segs > 1));
        if server.work().receive_turns > turns && owes_ack {
            // A turn just read the ping (the application never reads it): a hold runs, and
            // the session's ACK is due within 10 ms.
            let t = server.poll_timeout().unwrap();
            assert!(
                t > Duration::from_millis(20),
                "the loop would wake after {t:?}, inside the {hold:?} hold"
            );
            checked += 1;
        }
    }
}
