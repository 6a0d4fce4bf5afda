//! Admission at the server edge: which datagrams create state, half-open sessions, their
//! limits and reaping, and the WASK that makes a real peer confirm its session.
//!
//! `edge.rs`: what creates state, the half-open table, reaping, host caps.
//! `first_flight.rs`: first messages held whole, the shared pool, answer times, bursts.

pub(crate) use std::collections::VecDeque;
pub(crate) use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub(crate) use kcp_core::endpoint::{
    first_flight, CloseReason, DropReason, Endpoint, EndpointConfig, EndpointError, Event,
    FirstFlightError, PeerAddr,
};
pub(crate) use kcp_core::wire::{Command, Datagram, SegmentRepr, HEADER_LEN};
pub(crate) use kcp_core::{Config, Millis};
pub(crate) use kcp_testkit::rng::Rng;

fn addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip)), port)
}

fn server_cfg() -> EndpointConfig {
    EndpointConfig {
        accept: true,
        ..EndpointConfig::new(Config::fast3())
    }
}

fn push(conv: u32, sn: u32, una: u32, data: &[u8]) -> Vec<u8> {
    seg(conv, Command::Push, sn, una, data)
}

fn seg(conv: u32, cmd: Command, sn: u32, una: u32, data: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN + data.len()];
    SegmentRepr {
        conv,
        cmd,
        frg: 0,
        wnd: 32,
        ts: 5,
        sn,
        una,
        len: data.len() as u32,
    }
    .emit(&mut d)
    .unwrap();
    d[HEADER_LEN..].copy_from_slice(data);
    d
}

/// Drains everything the endpoint sends; returns (destination, datagram) pairs.
fn drain<A: PeerAddr>(ep: &mut Endpoint<A>, now: Millis) -> Vec<(A, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some((to, n)) = ep.poll_transmit(now, &mut buf) {
        out.push((to, buf[..n].to_vec()));
    }
    out
}

fn events<A: PeerAddr>(ep: &mut Endpoint<A>) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

/// Runs the endpoint's timers alone (no peer answers) for `ms`, 10 ms at a time.
fn idle<A: PeerAddr>(ep: &mut Endpoint<A>, now: &mut Millis, ms: u32) -> Vec<Event> {
    let mut ev = Vec::new();
    for _ in 0..ms / 10 {
        *now += 10;
        ep.handle_timeout(*now);
        drain(ep, *now);
        ev.extend(events(ep));
    }
    ev
}

mod edge;
mod first_flight;
