//! kcp-mio against kcp-tokio over loopback, both directions, through the kcp-perf protocol
//! (every byte checked against the pattern, sink and source also by CRC): a subset of the
//! cipher x FEC x mode matrix, and several client sessions sharing one kcp-mio socket.

#[path = "../../kcp-mio/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{mio_client, mio_clients, MioServer};
use kcp_core::Config;
use kcp_mio::perf::Test;
use kcp_mio::KcpConfig;
use kcp_tokio::perf as tperf;

const KEY: &str = "mio tokio interop";
const MIB: u64 = 1 << 20;

#[derive(Clone, Copy, Debug)]
struct Case {
    crypt: &'static str,
    fec: bool,
    stream: bool,
}

const CASES: [Case; 7] = [
    Case {
        crypt: "aes",
        fec: true,
        stream: true,
    },
    Case {
        crypt: "salsa20",
        fec: false,
        stream: false,
    },
    Case {
        crypt: "null",
        fec: true,
        stream: false,
    },
    Case {
        crypt: "twofish",
        fec: false,
        stream: true,
    },
    // The authenticated modes, by name.
    Case {
        crypt: "aes-128-gcm",
        fec: true,
        stream: true,
    },
    Case {
        crypt: "chacha20-poly1305-replay",
        fec: false,
        stream: false,
    },
    Case {
        crypt: "aes-128-gcm-replay",
        fec: true,
        stream: true,
    },
];

impl Case {
    fn engine(&self) -> Config {
        Config {
            mtu: 1350,
            stream: self.stream,
            ..Config::fast3().with_windows(256, 256)
        }
    }
    fn mio(&self) -> KcpConfig {
        let (ds, ps) = if self.fec { (10, 3) } else { (0, 0) };
        KcpConfig::new(self.engine())
            .crypt(self.crypt, KEY)
            .unwrap()
            .fec(ds, ps)
    }
    fn tokio(&self) -> kcp_tokio::KcpConfig {
        let (ds, ps) = if self.fec { (10, 3) } else { (0, 0) };
        kcp_tokio::KcpConfig::new(self.engine())
            .crypt(self.crypt, KEY)
            .unwrap()
            .fec(ds, ps)
    }
    /// In message mode kcp-go keeps boundaries only within one segment.
    fn msg(&self, test: Test) -> usize {
        if self.stream {
            if test == Test::Echo {
                1024
            } else {
                16 * 1024
            }
        } else {
            let crypt = match self.crypt {
                "null" => 0,
                "aes-128-gcm" | "chacha20-poly1305" => 12 + 16,
                c if c.ends_with("-replay") => 16 + 16,
                _ => 20,
            };
            1350 - 24 - crypt - if self.fec { 8 } else { 0 }
        }
    }
    fn bytes(&self, test: Test) -> u64 {
        if test == Test::Echo {
            128 << 10
        } else {
            MIB
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A kcp-tokio kcp-perf listener on the runtime, until the runtime is dropped.
fn tokio_server(rt: &tokio::runtime::Runtime, case: Case) -> SocketAddr {
    let l = rt
        .block_on(kcp_tokio::KcpListener::bind("127.0.0.1:0", case.tokio()))
        .unwrap();
    let addr = l.local_addr();
    rt.spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if tperf::serve(&mut s, !case.stream).await.is_ok() {
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut s).await;
                }
            });
        }
    });
    addr
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
        let addr = tokio_server(&rt, case);
        for test in [Test::Sink, Test::Source, Test::Echo] {
            let what = format!("{case:?}");
            let r = mio_client(
                addr,
                &case.mio(),
                test,
                case.bytes(test),
                case.msg(test),
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
        let server = MioServer::start(case.mio());
        for test in [Test::Sink, Test::Source, Test::Echo] {
            let addr = server.addr;
            let (count, msg) = (case.bytes(test), case.msg(test));
            let r = rt
                .block_on(async move {
                    let mut s = kcp_tokio::KcpStream::connect(addr, case.tokio()).await?;
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
    let l = rt
        .block_on(kcp_tokio::KcpListener::bind("[::1]:0", case.tokio()))
        .unwrap();
    let addr = l.local_addr();
    assert!(addr.is_ipv6());
    rt.spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if tperf::serve(&mut s, !case.stream).await.is_ok() {
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut s).await;
                }
            });
        }
    });
    for test in [Test::Sink, Test::Echo] {
        mio_client(
            addr,
            &case.mio(),
            test,
            case.bytes(test),
            case.msg(test),
            "mio to tokio over ::1",
        );
    }
    let server = MioServer::start_at("[::1]:0".parse().unwrap(), case.mio());
    assert!(server.addr.is_ipv6());
    let addr = server.addr;
    let r = rt
        .block_on(async move {
            let mut s = kcp_tokio::KcpStream::connect(addr, case.tokio()).await?;
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
    let addr = tokio_server(&rt, case);
    let results = mio_clients(
        addr,
        &case.mio(),
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
    let server = MioServer::start(case.mio());
    for r in mio_clients(
        server.addr,
        &case.mio(),
        Test::Source,
        256 << 10,
        16 << 10,
        8,
        Duration::from_secs(30),
    ) {
        assert_eq!(r.unwrap().bytes, 256 << 10);
    }
}
