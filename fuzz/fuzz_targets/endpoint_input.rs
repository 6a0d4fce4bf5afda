//! A listening endpoint fed arbitrary datagrams from arbitrary addresses: no panic, sessions
//! bounded by the backlog, poll_transmit terminates, and `readable` tells what `recv` finds.
#![no_main]

use kcp_core::endpoint::{Endpoint, EndpointConfig, EndpointError};
use kcp_core::{Config, Millis, RecvError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = EndpointConfig {
        accept: true,
        backlog: 4,
        max_sessions: 8,
        ..EndpointConfig::new(Config::fast3())
    };
    let mut ep: Endpoint<u8> = Endpoint::new(cfg).unwrap();
    let mut now = Millis(u32::MAX - 10);
    let mut out = [0u8; 1500];
    // Room for the largest message (255 fragments of the largest segment).
    let mut app = vec![0u8; 255 * 1500];
    let mut rest = data;
    while rest.len() >= 2 {
        let (from, len) = (rest[0], rest[1] as usize * 4);
        let len = len.min(rest.len() - 2);
        let mut d = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        let _ = ep.handle_datagram(now, from % 8, &mut d);
        ep.handle_timeout(now);
        let mut n = 0;
        while ep.poll_transmit(now, &mut out).is_some() {
            n += 1;
            assert!(n < 100_000);
        }
        while ep.poll_event().is_some() {}
        assert!(ep.len() <= 4);
        // Every other datagram, the application reads what `readable` says is there.
        if from & 1 == 1 {
            for id in ep.sessions() {
                match ep.readable(id) {
                    Ok(true) => assert!(matches!(ep.recv(id, &mut app), Ok(n) if n > 0)),
                    Ok(false) => assert_eq!(
                        ep.recv(id, &mut app),
                        Err(EndpointError::Recv(RecvError::WouldBlock))
                    ),
                    Err(_) => {}
                }
            }
        }
        now += 13;
    }
});
