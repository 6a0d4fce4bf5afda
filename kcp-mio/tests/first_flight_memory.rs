//! The memory a flood of first flights costs a listener over real loopback sockets, as an
//! attacker without the key would send them to a kcp-perf server (no crypto, windows 1024):
//! 1,024 sources (16 addresses 127.0.2.x x 64 ports) each send the largest first flight a
//! datagram can carry (1500 bytes: sixty one-byte PUSHes) and one 25,600-byte datagram of
//! 1,024 one-byte PUSHes. The server's peak RSS grows by less than 4 MiB.
//!
//! One test function: peak RSS is process-wide, and tests of one binary run in parallel.
#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use common::{mio_client, MioServer};
use kcp_core::wire::{Command, SegmentRepr, HEADER_LEN};
use kcp_core::Config;
use kcp_mio::perf::Test;
use kcp_mio::KcpConfig;

/// Peak resident set of this process in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb * 1024
}

fn pushes(conv: u32, count: u32) -> Vec<u8> {
    let mut d = Vec::new();
    for sn in 0..count {
        let at = d.len();
        d.resize(at + HEADER_LEN + 1, 0);
        SegmentRepr {
            conv,
            cmd: Command::Push,
            frg: 0,
            wnd: 1024,
            ts: 1,
            sn,
            una: 0,
            len: 1,
        }
        .emit(&mut d[at..])
        .unwrap();
        d[at + HEADER_LEN] = b'x';
    }
    d
}

#[test]
fn a_thousand_spoofed_first_flights_cost_under_4_mib() {
    let config = KcpConfig::new(Config::fast3().with_windows(1024, 1024));
    let server = MioServer::start(config.clone());
    // Warm up: one real session (the endpoint's tables, the pool, the socket buffers).
    mio_client(
        server.addr,
        &config,
        Test::Sink,
        256 << 10,
        16 << 10,
        "warm-up",
    );
    let mut sources = Vec::new();
    for h in 0..16u8 {
        for _ in 0..64 {
            sources.push(UdpSocket::bind((Ipv4Addr::new(127, 0, 2, 1 + h), 0)).unwrap());
        }
    }
    let largest: Vec<Vec<u8>> = (0..1024u32).map(|i| pushes(0x1000 + i, 60)).collect();
    let huge = pushes(0x9999, 1024);
    assert_eq!(largest[0].len(), 1500);
    assert_eq!(huge.len(), 25_600);
    thread::sleep(Duration::from_millis(200));
    let before = peak_rss();
    let in_before = server.served().stats.in_pkts;
    for (i, s) in sources.iter().enumerate() {
        s.send_to(&largest[i], server.addr).unwrap();
        s.send_to(&huge, server.addr).unwrap();
        if i % 64 == 63 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = server.served().stats;
        if st.half_open >= 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "first flights not seen: {st:?}");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(300));
    let grown = peak_rss().saturating_sub(before);
    let served = server.served();
    let st = served.stats;
    eprintln!(
        "1,024 first flights of 1500 B and 1,024 of 25,600 B: peak RSS grew by {:.2} MiB; \
         half_open {} oversize {} datagrams in {}",
        grown as f64 / (1 << 20) as f64,
        st.half_open,
        st.oversize,
        st.in_pkts - in_before
    );
    assert!(grown < 4 << 20, "peak RSS grew by {grown} bytes");
    assert_eq!(served.accepted, 1, "no spoofed session: {served:?}");
}
