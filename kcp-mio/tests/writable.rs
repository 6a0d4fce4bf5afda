//! The send path respects writability: what the kernel refuses waits in the bounded backlog,
//! the endpoint listens for `WRITABLE` until it is sent, and beyond the bound datagrams are
//! dropped and counted while KCP retransmits them. Loopback never pushes back (it hands
//! datagrams to the receiver synchronously), so the refusals are simulated in the sender:
//! the next kernel send fails with `WouldBlock`, as when the socket buffer is full.

mod common;

use std::time::{Duration, Instant};

use kcp_core::Config;
use kcp_mio::{Endpoint, Event, KcpConfig};
use mio::{Events, Poll};

/// Moves `total` bytes client to server, refusing one kernel send of the client every
/// `every` iterations (and of the server every `every + 1`); checks every byte. Returns the
/// client's endpoint for its counters.
fn transfer(config: KcpConfig, total: u64, every: u64) -> (Endpoint, Endpoint) {
    let mut poll = Poll::new().unwrap();
    let (mut server, mut client) = common::loopback_pair(&config, &poll);
    let tx = client.connect(server.local_addr().unwrap()).unwrap();
    let data: Vec<u8> = (0..total + 256).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut got) = (0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    let mut events = Events::with_capacity(64);
    let mut writable_events = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u64;
    // Then, without refusals, until the backlogs are sent.
    while got < total || client.is_send_blocked() || server.is_send_blocked() {
        assert!(Instant::now() < deadline, "{got} of {total}");
        i += 1;
        if got < total && i.is_multiple_of(every) {
            client.sender_mut().simulate_full_socket(1);
        }
        if got < total && i.is_multiple_of(every + 1) {
            server.sender_mut().simulate_full_socket(1);
        }
        while sent < total {
            let end = (sent + 8192).min(total) as usize;
            match client.send(tx, &data[sent as usize..end]) {
                Ok(n) => sent += n as u64,
                Err(_) => break,
            }
        }
        let t = [server.poll_timeout(), client.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        poll.poll(&mut events, t.or(Some(Duration::from_millis(50))))
            .unwrap();
        for e in events.iter() {
            if e.is_writable() {
                writable_events += 1;
            }
            server.handle_event(e).unwrap();
            client.handle_event(e).unwrap();
        }
        server.handle_timeout().unwrap();
        client.handle_timeout().unwrap();
        while let Some(ev) = server.poll_event() {
            match ev {
                Event::Incoming => {
                    server.accept();
                }
                Event::Readable(id) => {
                    while let Ok(n) = server.recv(id, &mut buf) {
                        assert_eq!(&buf[..n], &data[got as usize..got as usize + n]);
                        got += n as u64;
                    }
                }
                Event::Closed(_, r) => panic!("closed: {r}"),
                Event::Writable(_) => {}
            }
        }
        while let Some(ev) = client.poll_event() {
            if let Event::Closed(_, r) = ev {
                panic!("closed: {r}");
            }
        }
    }
    assert!(
        writable_events > 0,
        "the endpoints asked for WRITABLE and got it"
    );
    (client, server)
}

#[test]
fn refused_datagrams_go_out_on_the_writable_event() {
    let config = KcpConfig::new(Config::fast3().with_windows(256, 256))
        .crypt("aes", "writable")
        .unwrap();
    let (client, server) = transfer(config, 2 << 20, 7);
    for ep in [&client, &server] {
        let s = ep.udp_stats();
        assert!(s.would_block > 0, "{s:?}");
        assert!(s.backlog_peak > 0, "{s:?}");
        assert_eq!(
            s.backlog_drops, 0,
            "the default backlog holds a refused batch: {s:?}"
        );
        assert!(
            !ep.is_send_blocked(),
            "WRITABLE interest dropped once drained"
        );
    }
}

#[test]
fn a_full_backlog_drops_and_counts_and_kcp_retransmits() {
    let config = KcpConfig::new(Config::fast3().with_windows(256, 256))
        .crypt("aes", "writable")
        .unwrap()
        .send_backlog(16);
    let (client, _server) = transfer(config, 2 << 20, 10);
    let s = client.udp_stats();
    assert!(s.backlog_drops > 0, "{s:?}");
    assert!(s.backlog_peak <= 16, "{s:?}");
    assert!(
        client.stats().retrans_segs > 0,
        "KCP resent what was dropped"
    );
    assert!(!client.is_send_blocked());
}

/// A retry that the kernel refuses again re-arms the writable event: the socket stays
/// writable throughout, so an edge-triggered poll reports it again only because the endpoint
/// registers anew; without that the backlog would wait for some other event.
#[test]
fn a_refused_retry_rearms_the_writable_event() {
    let config = KcpConfig::new(Config::fast3());
    let mut poll = Poll::new().unwrap();
    let (mut server, mut client) = common::loopback_pair(&config, &poll);
    let id = client.connect(server.local_addr().unwrap()).unwrap();
    client.sender_mut().simulate_full_socket(u64::MAX);
    assert_eq!(client.send(id, b"waits in the backlog").unwrap(), 20);
    client.flush();
    assert!(client.is_send_blocked());
    let mut events = Events::with_capacity(16);
    // Each poll must report the client's socket writable; handling the event retries the
    // backlog, which is refused again.
    for round in 0..3 {
        poll.poll(&mut events, Some(Duration::from_millis(500)))
            .unwrap();
        let writable: Vec<_> = events
            .iter()
            .filter(|e| e.token() == mio::Token(1) && e.is_writable())
            .collect();
        assert!(
            !writable.is_empty(),
            "round {round}: no writable event after a refused retry"
        );
        for e in writable {
            client.handle_event(e).unwrap();
        }
        assert!(client.is_send_blocked());
    }
    // The kernel takes datagrams again: the next writable event sends the backlog.
    client.sender_mut().simulate_full_socket(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    let got = loop {
        assert!(
            Instant::now() < deadline,
            "the backlog never reached the server"
        );
        let t = client.poll_timeout().unwrap_or(Duration::from_millis(50));
        poll.poll(&mut events, Some(t.min(Duration::from_millis(50))))
            .unwrap();
        for e in events.iter() {
            client.handle_event(e).unwrap();
            server.handle_event(e).unwrap();
        }
        client.handle_timeout().unwrap();
        server.handle_timeout().unwrap();
        let mut got = None;
        while let Some(ev) = server.poll_event() {
            match ev {
                Event::Incoming => {
                    server.accept();
                }
                Event::Readable(s) => {
                    let n = server.recv(s, &mut buf).unwrap();
                    got = Some(buf[..n].to_vec());
                }
                _ => {}
            }
        }
        if let Some(g) = got {
            break g;
        }
    };
    assert_eq!(got, b"waits in the backlog");
}
