//! Live interop with kcp-go v5.6.1 (Debian's package) through the kcp-perf protocol: for every
//! cipher x FEC {0/0, 10/3} x {stream, message}, a Rust client against the Go server and the Go
//! client against a Rust listener each move 1 MiB and check it; a subset runs through the
//! impairment proxy at 5% loss and 20 ms delay; ikcp.c (siokcp) sends to a Rust listener;
//! kcp-go clients' first flights reach the Rust server sessions' FEC layer.
//!
//! The peers must be installed (`.ci/setup.sh`); if they are missing these tests fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{case_config, perf_listener};
use kcp_core::Config;
use kcp_testkit::go::{self, Case, GoServer};
use kcp_tokio::impair::{ImpairConfig, Proxy};
use kcp_tokio::perf::{self, Test};
use kcp_tokio::{KcpConfig, KcpError, KcpListener, KcpStream};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

const MIB: u64 = 1 << 20;

/// The matrices run one at a time: in parallel they would starve each other of the 2 cores and
/// turn slow runs into false failures.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn go_server(bin: &Path, case: &Case) -> GoServer {
    GoServer::start(bin, case, "127.0.0.1:0")
}

async fn rust_client(addr: std::net::SocketAddr, case: Case, test: Test) {
    let mut s = KcpStream::connect(addr, case_config(&case)).await.unwrap();
    let r = timeout(
        Duration::from_secs(30),
        perf::client(&mut s, test, MIB, case.msg(), !case.stream),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{case:?} {test:?}: timed out; session {:?}; socket {:?}",
            s.stats(),
            s.socket_stats()
        )
    })
    .unwrap_or_else(|e| panic!("{case:?} {test:?}: {e}"));
    assert_eq!(r.bytes, MIB);
}

/// A Rust listener serving kcp-perf sessions until its task is aborted.
async fn rust_server(case: Case) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    perf_listener("127.0.0.1:0", case_config(&case)).await
}

async fn go_client(bin: PathBuf, addr: std::net::SocketAddr, case: Case, test: Test) {
    let msg = case.msg().to_string();
    go_client_args(
        bin,
        addr,
        case,
        &["--test", test.name(), "--bytes", "1M", "--msg", &msg],
    )
    .await;
}

async fn both_directions(bin: &Path, case: Case) {
    let server = go_server(bin, &case);
    rust_client(server.addr, case, Test::Sink).await;
    rust_client(server.addr, case, Test::Source).await;
    drop(server);
    let (addr, task) = rust_server(case).await;
    go_client(bin.to_path_buf(), addr, case, Test::Sink).await;
    go_client(bin.to_path_buf(), addr, case, Test::Echo).await;
    task.abort();
}

async fn matrix(stream: bool, fec: bool) {
    let _serial = SERIAL.lock().await;
    let bin = go::peer(None);
    for case in Case::every_cipher(stream, fec) {
        both_directions(&bin, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cipher_stream_mode_without_fec() {
    matrix(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cipher_stream_mode_with_fec() {
    matrix(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cipher_message_mode_without_fec() {
    matrix(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cipher_message_mode_with_fec() {
    matrix(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_lossy_delayed_link() {
    let _serial = SERIAL.lock().await;
    let bin = go::peer(None);
    for case in &go::SAMPLE[..3] {
        let case = *case;
        let server = go_server(&bin, &case);
        let imp = ImpairConfig {
            loss: 0.05,
            delay_ms: 20,
            seed: 11,
            ..ImpairConfig::default()
        };
        let proxy = Proxy::bind(
            "127.0.0.1:0".parse().unwrap(),
            server.addr,
            imp.clone(),
            ImpairConfig { seed: 12, ..imp },
        )
        .await
        .unwrap();
        let paddr = proxy.local_addr();
        let handle = proxy.spawn();
        rust_client(paddr, case, Test::Sink).await;
        rust_client(paddr, case, Test::Source).await;
        assert!(handle.stats().up.lost > 0);
        drop(server);

        // And the Go client through the proxy to a Rust listener.
        let (addr, task) = rust_server(case).await;
        let proxy = Proxy::bind(
            "127.0.0.1:0".parse().unwrap(),
            addr,
            imp.clone(),
            ImpairConfig { seed: 13, ..imp },
        )
        .await
        .unwrap();
        let paddr = proxy.local_addr();
        let _h = proxy.spawn();
        go_client(bin.clone(), paddr, case, Test::Sink).await;
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ikcp_c_sends_to_a_rust_listener() {
    let _serial = SERIAL.lock().await;
    for stream in [true, false] {
        // ikcp.c speaks plain KCP: no crypto header (null), no FEC.
        let engine = Config {
            stream,
            ..Config::ikcp()
                .with_nodelay(true, 10, 2, true)
                .with_windows(128, 128)
        };
        let l = KcpListener::bind("127.0.0.1:0", KcpConfig::new(engine))
            .await
            .unwrap();
        let addr = l.local_addr();
        let total: usize = 300_000;
        let mode = if stream { "stream" } else { "message" };
        let mut child = tokio::process::Command::new("python3")
            .arg(go::repo_root().join("interop/ikcp_peer.py"))
            .args([
                "send",
                "--connect",
                &addr.to_string(),
                "--mode",
                mode,
                "--bytes",
                &total.to_string(),
            ])
            .args(["--msg", "3000", "--timeout", "40"])
            .spawn()
            .expect("python3 with siokcp: run .ci/setup.sh");
        let (s, _) = timeout(Duration::from_secs(20), l.accept())
            .await
            .unwrap()
            .unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 65536];
        while got < total {
            let n = timeout(Duration::from_secs(20), s.recv_message(&mut buf))
                .await
                .unwrap()
                .unwrap();
            if !stream {
                assert_eq!(n, 3000.min(total - got), "message boundary");
            }
            for (k, &b) in buf[..n].iter().enumerate() {
                assert_eq!(
                    b as u64,
                    perf::pattern((got + k) as u64) as u64,
                    "byte {}",
                    got + k
                );
            }
            got += n;
        }
        let status = timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "ikcp.c sender failed");
    }
}

/// Reads exactly `buf.len()` bytes with reads of at most `chunk` bytes.
async fn read_in_chunks(s: &mut KcpStream, buf: &mut [u8], chunk: usize) {
    use tokio::io::AsyncReadExt;
    let mut got = 0;
    while got < buf.len() {
        let end = (got + chunk).min(buf.len());
        let n = s.read(&mut buf[got..end]).await.unwrap();
        assert!(n > 0, "end of stream");
        got += n;
    }
}

/// A reported hang, reproduced: a server that reads 1 or 2 bytes at a time (and one that uses
/// read_exact) answers a kcp-go client in message mode (salsa20, FEC 10/3) that writes
/// 7-byte messages and waits for each echo. Reading into 64 KiB always worked; small
/// reads hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_reads_answer_a_kcp_go_client() {
    let _serial = SERIAL.lock().await;
    let bin = go::peer(None);
    let case = Case::new("salsa20", true, false);
    for chunk in [1usize, 2, 7] {
        let l = KcpListener::bind("127.0.0.1:0", case_config(&case))
            .await
            .unwrap();
        let addr = l.local_addr();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut h = [0u8; 16];
            read_in_chunks(&mut s, &mut h, chunk).await;
            assert_eq!(&h[..4], b"KPRF");
            let count = u64::from_le_bytes(h[8..].try_into().unwrap());
            let mut echoed = 0u64;
            while echoed < count {
                let mut m = [0u8; 7];
                if chunk == 7 {
                    use tokio::io::AsyncReadExt;
                    s.read_exact(&mut m).await.unwrap();
                } else {
                    read_in_chunks(&mut s, &mut m, chunk).await;
                }
                s.write_all(&m).await.unwrap();
                echoed += 7;
            }
            s
        });
        timeout(
            Duration::from_secs(30),
            go_client_args(
                bin.clone(),
                addr,
                case,
                &["--test", "echo", "--msg", "7", "--bytes", "700"],
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("reads of {chunk} bytes: the kcp-go client never got its echo"));
        timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }
}

/// The Go client's `--duration` runs against a Rust listener end with the end-of-run
/// frame: both sides check the CRC, in both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_runs_with_a_kcp_go_client() {
    let _serial = SERIAL.lock().await;
    let bin = go::peer(None);
    for stream in [true, false] {
        let case = Case::new("aes", true, stream);
        let (addr, task) = rust_server(case).await;
        for test in ["echo", "sink", "source"] {
            timeout(
                Duration::from_secs(30),
                go_client_args(
                    bin.clone(),
                    addr,
                    case,
                    &["--test", test, "--duration", "0.5"],
                ),
            )
            .await
            .unwrap();
        }
        task.abort();
    }
}

async fn go_client_args(bin: PathBuf, addr: std::net::SocketAddr, case: Case, extra: &[&str]) {
    let mut cmd = case.go_client(&bin, addr);
    cmd.args(extra);
    tokio::task::spawn_blocking(move || go::run_go_client(cmd, &format!("{case:?}")))
        .await
        .unwrap();
}

/// A Rust session with a 2 s idle timeout and this keepalive, against the Go peer (`case`).
fn quiet_config(case: &Case, keepalive: Option<Duration>) -> KcpConfig {
    case_config(case)
        .idle_timeout(Some(Duration::from_secs(2)))
        .keepalive(keepalive)
}

/// Keepalive against kcp-go in both roles: a session with a 2 s idle timeout and a 500 ms
/// keepalive stays quiet for 10 s (kcp-go sends nothing on its own meanwhile) and then
/// carries data; kcp-go answers the window probes. Without the keepalive, the same silence
/// ends the session at the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_keeps_a_quiet_session_with_kcp_go() {
    use tokio::io::AsyncReadExt;
    let _serial = SERIAL.lock().await;
    let bin = go::peer(None);
    let case = Case::new("aes", false, true);
    let silence = Duration::from_secs(10);

    // A Rust client and the Go server: one echo, silence, another echo.
    let server = go_server(&bin, &case);
    for keepalive in [Some(Duration::from_millis(500)), None] {
        let mut s = KcpStream::connect(server.addr, quiet_config(&case, keepalive))
            .await
            .unwrap();
        s.write_all(&perf::header(Test::Echo, 14)).await.unwrap();
        let mut m = [0u8; 7];
        s.write_all(b"message").await.unwrap();
        timeout(Duration::from_secs(10), s.read_exact(&mut m))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&m, b"message");
        tokio::time::sleep(if keepalive.is_some() {
            silence
        } else {
            Duration::from_secs(4)
        })
        .await;
        let r = s.write_all(b"another").await;
        match keepalive {
            Some(_) => {
                r.unwrap();
                timeout(Duration::from_secs(10), s.read_exact(&mut m))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(&m, b"another");
            }
            None => {
                let e = r.expect_err("without keepalive the quiet session ends");
                assert_eq!(
                    KcpError::of(&e),
                    Some(KcpError::Ended(kcp_tokio::CloseReason::IdleTimeout))
                );
            }
        }
    }
    drop(server);

    // The Go client and a Rust listener that holds back its second echo for 10 s: the Go
    // client waits in silence, the listener's keepalive probes it.
    let l = KcpListener::bind(
        "127.0.0.1:0",
        quiet_config(&case, Some(Duration::from_millis(500))),
    )
    .await
    .unwrap();
    let addr = l.local_addr();
    let l = std::sync::Arc::new(l);
    let listener = l.clone();
    let served = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut h = [0u8; 16];
        s.read_exact(&mut h).await.unwrap();
        assert_eq!(&h[..4], b"KPRF");
        let mut m = [0u8; 7];
        for k in 0..2 {
            s.read_exact(&mut m).await.unwrap();
            if k == 1 {
                tokio::time::sleep(silence).await;
            }
            s.write_all(&m).await.unwrap();
        }
        s
    });
    timeout(
        Duration::from_secs(40),
        go_client_args(
            bin.clone(),
            addr,
            case,
            &["--test", "echo", "--msg", "7", "--bytes", "14"],
        ),
    )
    .await
    .expect("the kcp-go client got its delayed echo");
    let _s = timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap();
    let probes = l.stats().keepalives;
    assert!(probes >= 10, "{probes} keepalive probes");
}

/// IPv6 loopback against kcp-go, both roles: a Rust client to the Go server on `::1`, and the
/// Go client to a Rust listener on `::1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_with_kcp_go() {
    let _serial = SERIAL.lock().await;
    let bin = go::peer(None);
    let case = Case::new("aes", true, true);
    let server = GoServer::start(&bin, &case, "[::1]:0");
    assert!(server.addr.is_ipv6(), "{}", server.addr);
    rust_client(server.addr, case, Test::Sink).await;
    rust_client(server.addr, case, Test::Source).await;
    drop(server);
    let (addr, task) = perf_listener("[::1]:0", case_config(&case)).await;
    assert!(addr.is_ipv6());
    go_client(bin.clone(), addr, case, Test::Sink).await;
    go_client(bin, addr, case, Test::Echo).await;
    task.abort();
}

/// Keepalive against ikcp.c (siokcp's echo peer, which exits after 4 s without a datagram):
/// a Rust client with a 2 s idle timeout and a 500 ms keepalive stays quiet for 10 s, then
/// its next message still comes back. ikcp.c answers the window probes, and the probes keep
/// the echo peer from its own idle exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_keeps_a_quiet_session_with_ikcp_c() {
    use tokio::io::AsyncReadExt;
    let _serial = SERIAL.lock().await;
    let mut child = tokio::process::Command::new("python3")
        .arg(go::repo_root().join("interop/ikcp_peer.py"))
        .args(["echo", "--mode", "stream", "--idle", "4", "--timeout", "40"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with siokcp: run .ci/setup.sh");
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    timeout(
        Duration::from_secs(10),
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
    )
    .await
    .unwrap()
    .unwrap();
    let port: u16 = go::listening(&line).parse().unwrap();
    let engine = Config::ikcp()
        .with_nodelay(true, 10, 2, true)
        .with_windows(128, 128);
    let cfg = KcpConfig::new(engine)
        .idle_timeout(Some(Duration::from_secs(2)))
        .keepalive(Some(Duration::from_millis(500)));
    let connector = kcp_tokio::KcpConnector::bind("127.0.0.1:0", cfg)
        .await
        .unwrap();
    let mut s = connector
        .connect_with_conv(([127, 0, 0, 1], port).into(), 0x1122_3344)
        .unwrap();
    let mut m = [0u8; 7];
    for (k, msg) in [b"message", b"another"].into_iter().enumerate() {
        if k == 1 {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        s.write_all(msg).await.unwrap();
        timeout(Duration::from_secs(10), s.read_exact(&mut m))
            .await
            .unwrap_or_else(|_| panic!("no echo of message {k}"))
            .unwrap();
        assert_eq!(&m, msg);
    }
    assert!(connector.stats().keepalives >= 10);
}

/// Paced sessions (`KcpConfig::pacing`) with kcp-go: our paced client against kcp-go's server
/// in both directions (a connecting client holds back after its first segment until kcp-go's
/// first ACK, then paces), and kcp-go's client against our paced server, plain and through
/// the lossy, delayed proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_sessions_with_kcp_go() {
    let _serial = SERIAL.lock().await;
    let bin = go::peer(None);
    for case in &go::SAMPLE[..3] {
        let case = *case;
        let paced = || case_config(&case).pacing(true);
        let server = go_server(&bin, &case);
        for test in [Test::Sink, Test::Source] {
            let mut s = KcpStream::connect(server.addr, paced()).await.unwrap();
            let r = timeout(
                Duration::from_secs(30),
                perf::client(&mut s, test, 4 * MIB, case.msg(), !case.stream),
            )
            .await
            .unwrap_or_else(|_| panic!("{case:?} {test:?}: timed out; {:?}", s.stats()))
            .unwrap_or_else(|e| panic!("{case:?} {test:?}: {e}"));
            assert_eq!(r.bytes, 4 * MIB);
        }
        drop(server);
        let (addr, task) = perf_listener("127.0.0.1:0", paced()).await;
        go_client(bin.clone(), addr, case, Test::Source).await;
        go_client(bin.clone(), addr, case, Test::Echo).await;
        let imp = ImpairConfig {
            loss: 0.05,
            delay_ms: 20,
            seed: 21,
            ..ImpairConfig::default()
        };
        let proxy = Proxy::bind(
            "127.0.0.1:0".parse().unwrap(),
            addr,
            imp.clone(),
            ImpairConfig { seed: 22, ..imp },
        )
        .await
        .unwrap();
        let paddr = proxy.local_addr();
        let _h = proxy.spawn();
        go_client(bin.clone(), paddr, case, Test::Source).await;
        task.abort();
    }
}

/// kcp-go clients (FEC 10/3, loopback, nothing lost) open echo sessions on a Rust listener:
/// each client's first datagrams reach the new server session through the endpoint's
/// half-open entry, and its FEC layer must learn their shards there, so that no session
/// rebuilds a shard that arrived when the first group's parity comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcp_go_first_flights_reach_the_server_sessions_fec_layer() {
    let _serial = SERIAL.lock().await;
    let bin = go::peer(None);
    for case in [Case::new("aes", true, false), Case::new("null", true, true)] {
        let l = std::sync::Arc::new(
            KcpListener::bind("127.0.0.1:0", case_config(&case))
                .await
                .unwrap(),
        );
        let addr = l.local_addr();
        let listener = l.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let message = !case.stream;
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let r = perf::serve(&mut s, message).await;
                    let _ = s.shutdown().await;
                    let _ = tx.send(r.map(|r| r.fec_recovered).map_err(|e| e.to_string()));
                });
            }
        });
        const CONNS: usize = 8;
        go_client_args(
            bin.clone(),
            addr,
            case,
            &[
                "--test", "echo", "--bytes", "32K", "--msg", "256", "--conns", "8",
            ],
        )
        .await;
        let mut recovered: Vec<u64> = Vec::new();
        for _ in 0..CONNS {
            let r = timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("every session served")
                .expect("a report");
            recovered.push(r.unwrap_or_else(|e| panic!("{case:?}: {e}")));
        }
        task.abort();
        // Loopback loses nothing and each Go client session encrypts with a block of its
        // own (kcp-go's CFB ciphers corrupt datagrams now and then when sessions share
        // one): no datagram fails its check and nothing is rebuilt. (`in_errs` may count
        // a client's last ACKs, which arrive after its server session closed.)
        let st = listener.stats();
        assert_eq!(
            st.in_csum_errors, 0,
            "{case:?}: datagrams failed the CRC check: {st:?}"
        );
        assert!(
            recovered.iter().all(|&r| r == 0),
            "{case:?}: FEC-rebuilt datagrams per server session {recovered:?}; listener {st:?}"
        );
    }
}
