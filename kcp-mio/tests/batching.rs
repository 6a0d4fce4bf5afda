//! One loop iteration's replies leave together: the endpoint reads a batch, the application
//! answers every session it made readable (which only queues data), and the next
//! `poll_timeout` sends all the replies in one `sendmmsg`, before the loop sleeps again.
//! Counted with the socket's counters, in event order (no timing).

mod common;

use std::time::{Duration, Instant};

use kcp_core::Config;
use kcp_mio::udp::BATCH;
use kcp_mio::{Endpoint, Event, KcpConfig, SessionId};
use mio::{Events, Poll};

/// One loop iteration of the server: wait for the sockets (or a timer), read, run timers,
/// and echo what every readable session has. The client's endpoint, on the same `Poll`,
/// takes its events too (`None`: the server runs alone). Returns how many bytes it echoed.
fn serve_once(
    poll: &mut Poll,
    events: &mut Events,
    server: &mut Endpoint,
    mut client: Option<&mut Endpoint>,
    wait: Duration,
) -> usize {
    poll.poll(
        events,
        Some(server.poll_timeout().map_or(wait, |t| t.min(wait))),
    )
    .unwrap();
    for e in events.iter() {
        server.handle_event(e).unwrap();
        if let Some(c) = client.as_deref_mut() {
            c.handle_event(e).unwrap();
        }
    }
    server.handle_timeout().unwrap();
    let mut buf = [0u8; 2048];
    let mut echoed = 0;
    while let Some(ev) = server.poll_event() {
        match ev {
            Event::Incoming => while server.accept().is_some() {},
            Event::Readable(id) => {
                while let Ok(n) = server.recv(id, &mut buf) {
                    assert_eq!(server.send(id, &buf[..n]).unwrap(), n);
                    echoed += n;
                }
            }
            Event::Closed(_, r) => panic!("closed: {r}"),
            Event::Writable(_) => {}
        }
    }
    echoed
}

/// The client's side of an iteration: read what arrived, without waiting.
fn client_once(client: &mut Endpoint, got: &mut [Vec<u8>], ids: &[SessionId]) {
    client.handle_timeout().unwrap();
    let _ = client.poll_timeout();
    let mut buf = [0u8; 2048];
    while let Some(ev) = client.poll_event() {
        if let Event::Readable(id) = ev {
            let i = ids.iter().position(|x| *x == id).unwrap();
            while let Ok(n) = client.recv(id, &mut buf) {
                got[i].extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// `n` sessions from one client endpoint, each echoed once, then quiet (everything
/// acknowledged).
fn sessions(n: usize) -> (Poll, Endpoint, Endpoint, Vec<SessionId>) {
    let config = KcpConfig::new(Config::fast3());
    let poll = Poll::new().unwrap();
    let (mut server, mut client) = common::loopback_pair(&config, &poll);
    let mut poll = poll;
    let ids: Vec<SessionId> = (0..n)
        .map(|_| client.connect(server.local_addr().unwrap()).unwrap())
        .collect();
    for &id in &ids {
        client.send(id, b"hi").unwrap();
    }
    let mut got = vec![Vec::new(); n];
    let mut events = Events::with_capacity(64);
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.iter().any(|g| g.len() < 2) {
        assert!(Instant::now() < deadline, "set-up: {got:?}");
        let _ = client.poll_timeout();
        serve_once(
            &mut poll,
            &mut events,
            &mut server,
            Some(&mut client),
            Duration::from_millis(5),
        );
        client_once(&mut client, &mut got, &ids);
    }
    // Quiet: let the ACKs and any retransmission settle.
    let quiet = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet {
        let _ = client.poll_timeout();
        let echoed = serve_once(
            &mut poll,
            &mut events,
            &mut server,
            Some(&mut client),
            Duration::from_millis(5),
        );
        assert_eq!(echoed, 0);
        client_once(&mut client, &mut got, &ids);
    }
    (poll, server, client, ids)
}

/// Requests of many sessions read in one iteration: their replies leave in one `sendmmsg`
/// at the next `poll_timeout`, not one system call per reply.
#[test]
fn replies_of_many_sessions_leave_in_one_send() {
    const N: usize = 16;
    const { assert!(N <= BATCH) };
    let (mut poll, mut server, mut client, ids) = sessions(N);
    for (i, &id) in ids.iter().enumerate() {
        client.send(id, &[i as u8; 8]).unwrap();
    }
    // Every request is in the server's socket before the server's iteration.
    client.flush();
    assert!(client.udp_stats().datagrams_sent > 0);
    let before = server.udp_stats();
    let mut events = Events::with_capacity(64);
    let mut echoed = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while echoed < 8 * N {
        assert!(Instant::now() < deadline, "echoed {echoed}");
        echoed += serve_once(
            &mut poll,
            &mut events,
            &mut server,
            None,
            Duration::from_millis(5),
        );
    }
    // The replies are queued, not sent, until the loop asks how long to sleep (a timer tick
    // may have sent the requests' ACKs already, all in one call).
    let queued = server.udp_stats();
    assert!(queued.send_calls - before.send_calls <= 1, "{queued:?}");
    let _ = server.poll_timeout();
    let after = server.udp_stats();
    assert_eq!(
        after.datagrams_sent - queued.datagrams_sent,
        N as u64,
        "{before:?} {after:?}"
    );
    assert_eq!(
        after.send_calls - queued.send_calls,
        1,
        "{before:?} {after:?}"
    );
    // Every reply is out: the client reads them with the server doing nothing more.
    let mut got = vec![Vec::new(); N];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.iter().any(|g| g.len() < 8) {
        assert!(Instant::now() < deadline, "{got:?}");
        poll.poll(&mut events, Some(Duration::from_millis(5)))
            .unwrap();
        for e in events.iter() {
            client.handle_event(e).unwrap();
        }
        client_once(&mut client, &mut got, &ids);
    }
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g, &[i as u8; 8]);
    }
}

/// A lone request: its reply leaves in the iteration that read it, at the `poll_timeout`
/// before the loop sleeps, and carries the request's acknowledgement (one datagram).
#[test]
fn a_lone_reply_leaves_before_the_loop_sleeps() {
    let (mut poll, mut server, mut client, ids) = sessions(1);
    let mut events = Events::with_capacity(64);
    for round in 0..3u8 {
        client.send(ids[0], &[round; 4]).unwrap();
        client.flush();
        let before = server.udp_stats();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut echoed = 0;
        while echoed == 0 {
            assert!(Instant::now() < deadline);
            echoed = serve_once(
                &mut poll,
                &mut events,
                &mut server,
                None,
                Duration::from_millis(5),
            );
        }
        assert_eq!(echoed, 4);
        let queued = server.udp_stats();
        let _ = server.poll_timeout();
        let after = server.udp_stats();
        assert_eq!(after.datagrams_sent - queued.datagrams_sent, 1, "{after:?}");
        assert_eq!(after.send_calls - queued.send_calls, 1, "{after:?}");
        assert!(
            after.send_calls - before.send_calls <= 2,
            "{before:?} {after:?}"
        );
        // The reply is out: the client reads it with the server doing nothing more.
        let mut got = vec![Vec::new()];
        while got[0].len() < 4 {
            assert!(Instant::now() < deadline);
            poll.poll(&mut events, Some(Duration::from_millis(5)))
                .unwrap();
            for e in events.iter() {
                client.handle_event(e).unwrap();
            }
            client_once(&mut client, &mut got, &ids);
        }
        assert_eq!(got[0], [round; 4]);
    }
}
