//! kcp-mio against kcp-tokio over loopback, both directions, through the kcp-perf protocol
//! (every byte checked against the pattern, sink and source also by CRC): a subset of the
//! cipher x FEC x mode matrix, and several client sessions sharing one kcp-mio socket.

mod common;

use common::mio as mio_common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{perf_listener, runtime};
use kcp_mio::perf::Test;
use kcp_testkit::go::{self, Case};
use kcp_tokio::perf as tperf;
use mio_common::{case_config, mio_client, mio_clients, MioServer};

const MIB: u64 = 1 << 20;

/// The sample of the kcp-go cases and the authenticated modes (by name), which only the two
/// adapters speak.
const CASES: [Case; 7] = [
    go::SAMPLE[0],
    go::SAMPLE[1],
    go::SAMPLE[2],
    Case::new("twofish", false, true),
    Case::new("aes-128-gcm", true, true),
    Case::new("chacha20-poly1305-replay", false, false),
    Case::new("aes-128-gcm-replay", true, true),
];

/// Message size: in message mode one segment's payload (kcp-go keeps boundaries only within
/// one segment), less the authenticated modes' longer header.
fn msg(case: &Case, test: Test) -> usize {
    if case.stream {
        if test == Test::Echo {
            1024
        } else {
            16 * 1024
        }
    } else {
        let crypt = match case.crypt {
            "null" => 0,
            "aes-128-gcm" | "chacha20-poly1305" => 12 + 16,
            c if c.ends_with("-replay") => 16 + 16,
            _ => 20,
        };
        go::MTU as usize - 24 - crypt - if case.fec { 8 } else { 0 }
    }
}

fn bytes(test: Test) -> u64 {
    if test == Test::Echo {
        128 << 10
    } else {
        MIB
    }
}

/// A kcp-tokio kcp-perf listener on the runtime, until the runtime is dropped.
fn tokio_server(rt: &tokio::runtime::Runtime, case: Case, at: &str) -> SocketAddr {
    rt.block_on(perf_listener(at, case_config(&case))).0
}

fn tokio_test(test: Test) -> tperf::Test {
    match test {
        Test::Echo => tperf::Test::Echo,
        Test::Sink => tperf::Test::Sink,
        Test::Source => tperf::Test::Source,
    }
}

#[test]
fn mio_client_to_tokio_server_for_each_cipher_fec_and_mode() {
    for case in CASES {
        let rt = runtime();
        let addr = tokio_server(&rt, case, "127.0.0.1:0");
        for test in [Test::Sink, Test::Source, Test::Echo] {
            let what = format!("{case:?}");
            let r = mio_client(
                addr,
                &case_config(&case),
                test,
                bytes(test),
                msg(&case, test),
                &what,
            );
            if test == Test::Echo {
                assert!(!r.rtt.is_empty());
            }
        }
    }
}

#[test]
fn tokio_client_to_mio_server_for_each_cipher_fec_and_mode() {
    let rt = runtime();
    for case in CASES {
        let server = MioServer::start(case_config(&case));
        for test in [Test::Sink, Test::Source, Test::Echo] {
            let addr = server.addr;
            let (count, msg) = (bytes(test), msg(&case, test));
            let r = rt
                .block_on(async move {
                    let mut s = kcp_tokio::KcpStream::connect(addr, case_config(&case)).await?;
                    let r = tokio::time::timeout(
                        Duration::from_secs(30),
                        tperf::client(&mut s, tokio_test(test), count, msg, !case.stream),
                    )
                    .await
                    .map_err(|_| std::io::Error::other("timed out"))?;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut s).await;
                    r
                })
                .unwrap_or_else(|e| panic!("{case:?} {test:?}: {e}"));
            assert_eq!(r.bytes, count, "{case:?} {test:?}");
        }
        // The server saw each test finish (its own checks passed), and nothing failed.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while server.served().done.len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let served = server.served();
        assert_eq!(served.done.len(), 3, "{case:?}: {served:?}");
        assert!(served.failed.is_empty(), "{case:?}: {served:?}");
    }
}

/// IPv6 loopback between the adapters, both directions, with AES and FEC.
#[test]
fn ipv6_loopback_both_directions() {
    let case = CASES[0];
    let rt = runtime();
    let addr = tokio_server(&rt, case, "[::1]:0");
    assert!(addr.is_ipv6());
    for test in [Test::Sink, Test::Echo] {
        mio_client(
            addr,
            &case_config(&case),
            test,
            bytes(test),
            msg(&case, test),
            "mio to tokio over ::1",
        );
    }
    let server = MioServer::start_at("[::1]:0".parse().unwrap(), case_config(&case));
    assert!(server.addr.is_ipv6());
    let addr = server.addr;
    let r = rt
        .block_on(async move {
            let mut s = kcp_tokio::KcpStream::connect(addr, case_config(&case)).await?;
            tokio::time::timeout(
                Duration::from_secs(30),
                tperf::client(&mut s, tperf::Test::Source, MIB, 16 << 10, false),
            )
            .await
            .map_err(|_| std::io::Error::other("timed out"))?
        })
        .unwrap();
    assert_eq!(r.bytes, MIB);
}

#[test]
fn client_sessions_share_one_socket() {
    let case = CASES[0];
    let rt = runtime();
    let addr = tokio_server(&rt, case, "127.0.0.1:0");
    let results = mio_clients(
        addr,
        &case_config(&case),
        Test::Sink,
        256 << 10,
        16 << 10,
        8,
        Duration::from_secs(30),
    );
    assert_eq!(results.len(), 8);
    for r in results {
        assert_eq!(r.unwrap().bytes, 256 << 10);
    }
    // And against a kcp-mio server: source, so both endpoints demultiplex by conv.
    let server = MioServer::start(case_config(&case));
    for r in mio_clients(
        server.addr,
        &case_config(&case),
        Test::Source,
        256 << 10,
        16 << 10,
        8,
        Duration::from_secs(30),
    ) {
        assert_eq!(r.unwrap().bytes, 256 << 10);
    }
}
