//! Live interop with kcp-go v5.6.1 (Debian's package) through the kcp-perf protocol: for a
//! subset of cipher x FEC x mode, a kcp-mio client against the Go server (sink and source)
//! and the Go client against a kcp-mio server (sink and echo), 1 MiB each, every byte checked
//! by both sides; and `--duration` runs (count 0, framed payload, the end-of-run frame) of
//! every test both ways.
//!
//! The Go peer is built by `interop/build-go.sh`; if Go or kcp-go is missing these tests fail
//! (run `.ci/setup.sh`), they do not skip.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::{mio_client, mio_sessions, MioServer};
use kcp_core::Config;
use kcp_mio::perf::{ClientSession, Test};
use kcp_mio::KcpConfig;

const KEY: &str = "interop test key";

/// One Go peer at a time: in parallel the runs starve each other of the machine's 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, Debug)]
struct Case {
    crypt: &'static str,
    fec: bool,
    stream: bool,
}

impl Case {
    fn mio(&self) -> KcpConfig {
        let engine = Config {
            mtu: 1350,
            stream: self.stream,
            ..Config::fast3().with_windows(256, 256)
        };
        let (ds, ps) = if self.fec { (10, 3) } else { (0, 0) };
        KcpConfig::new(engine)
            .crypt(self.crypt, KEY)
            .unwrap()
            .fec(ds, ps)
    }
    fn go_flags(&self) -> Vec<String> {
        let (ds, ps) = if self.fec { (10, 3) } else { (0, 0) };
        [
            "--mode",
            "fast3",
            "--mtu",
            "1350",
            "--sndwnd",
            "256",
            "--rcvwnd",
            "256",
            "--crypt",
            self.crypt,
            "--key",
            KEY,
            "--datashard",
            &ds.to_string(),
            "--parityshard",
            &ps.to_string(),
            &format!("--stream={}", self.stream),
            "--timeout",
            "20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
    /// Message size: in message mode kcp-go keeps boundaries only within one segment.
    fn msg(&self) -> usize {
        if self.stream {
            16 * 1024
        } else {
            1350 - 24 - if self.crypt == "null" { 0 } else { 20 } - if self.fec { 8 } else { 0 }
        }
    }
}

struct GoServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn go_server(bin: &PathBuf, case: &Case) -> GoServer {
    let mut child = Command::new(bin)
        .arg("server")
        .args(["--listen", "127.0.0.1:0", "--linger", "2"])
        .args(case.go_flags())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcp-perf-go");
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    GoServer { child, addr }
}

fn go_client(bin: &PathBuf, addr: SocketAddr, case: &Case, test: &str) {
    let msg = if test == "echo" {
        case.msg().min(1024)
    } else {
        case.msg()
    };
    let out = Command::new(bin)
        .arg("client")
        .args([
            "--connect",
            &addr.to_string(),
            "--test",
            test,
            "--bytes",
            "1M",
        ])
        .args(["--msg", &msg.to_string()])
        .args(case.go_flags())
        .output()
        .expect("kcp-perf-go");
    assert!(
        out.status.success(),
        "Go client {case:?} {test}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn both_directions(case: Case) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let bin = kcp_testkit::go::peer(None);
    let what = format!("{case:?} against the Go server");
    let server = go_server(&bin, &case);
    for test in [Test::Sink, Test::Source] {
        mio_client(server.addr, &case.mio(), test, 1 << 20, case.msg(), &what);
    }
    drop(server);

    let server = MioServer::start(case.mio());
    go_client(&bin, server.addr, &case, "sink");
    go_client(&bin, server.addr, &case, "echo");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.served().done.len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let served = server.served();
    assert_eq!(served.done.len(), 2, "{case:?}: {served:?}");
    assert!(served.failed.is_empty(), "{case:?}: {served:?}");
    assert!(served.done.iter().all(|r| r.bytes == 1 << 20));
}

#[test]
fn aes_with_fec_in_stream_mode() {
    both_directions(Case {
        crypt: "aes",
        fec: true,
        stream: true,
    });
}

#[test]
fn salsa20_without_fec_in_message_mode() {
    both_directions(Case {
        crypt: "salsa20",
        fec: false,
        stream: false,
    });
}

#[test]
fn null_cipher_with_fec_in_message_mode() {
    both_directions(Case {
        crypt: "null",
        fec: true,
        stream: false,
    });
}

#[test]
fn sm4_without_fec_in_stream_mode() {
    both_directions(Case {
        crypt: "sm4",
        fec: false,
        stream: true,
    });
}

#[test]
fn none_cipher_with_fec_in_stream_mode() {
    both_directions(Case {
        crypt: "none",
        fec: true,
        stream: true,
    });
}

/// The Go client's `--duration` run against `addr`; returns the payload bytes it reports.
fn go_client_for(bin: &PathBuf, addr: SocketAddr, case: &Case, test: &str, secs: &str) -> u64 {
    let out = Command::new(bin)
        .arg("client")
        .args(["--connect", &addr.to_string(), "--test", test])
        .args(["--duration", secs, "--json"])
        .args(case.go_flags())
        .output()
        .expect("kcp-perf-go");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Go client {case:?} {test} --duration {secs}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("\"conn\":0"))
        .unwrap_or_else(|| panic!("no session line in {stdout}"));
    let bytes = line
        .split("\"bytes\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bytes in {line}"));
    bytes
}

/// Count 0 both ways: the mio client's framed runs against the Go server (which checks the
/// frames and answers by count and CRC, which the mio client checks), and the Go client's
/// against a kcp-mio server, which must count the payload bytes the Go client reports.
fn duration_runs(case: Case) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let bin = kcp_testkit::go::peer(None);
    let server = go_server(&bin, &case);
    for test in [Test::Echo, Test::Sink, Test::Source] {
        let msg = if test == Test::Echo {
            case.msg().min(1024)
        } else {
            case.msg()
        };
        let t = std::time::Instant::now();
        let r = mio_sessions(server.addr, &case.mio(), 1, Duration::from_secs(20), |_| {
            ClientSession::for_duration(test, msg, !case.stream, Duration::from_millis(500))
        })
        .pop()
        .unwrap()
        .unwrap_or_else(|e| panic!("{case:?} {test:?} against the Go server: {e}"));
        // The run lasts its duration (a source's interval starts at the first byte received,
        // whenever the Go server starts sending, so only the wall time is checked).
        assert!(
            t.elapsed() >= Duration::from_millis(500),
            "{case:?} {test:?}"
        );
        assert!(r.bytes > 0 && r.seconds > 0.0, "{case:?} {test:?}: {r:?}");
    }
    drop(server);

    let server = MioServer::start(case.mio());
    let mut bytes = Vec::new();
    for test in ["echo", "sink", "source"] {
        bytes.push(go_client_for(&bin, server.addr, &case, test, "0.5"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.served().done.len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (done, failed) = {
        let s = server.served();
        (s.done.clone(), s.failed.clone())
    };
    assert!(failed.is_empty(), "{case:?}: {failed:?}");
    let got: Vec<_> = done.iter().map(|r| (r.test, r.bytes)).collect();
    assert_eq!(
        got,
        vec![
            (Test::Echo, bytes[0]),
            (Test::Sink, bytes[1]),
            (Test::Source, bytes[2])
        ],
        "{case:?}"
    );
}

#[test]
fn duration_runs_with_aes_and_fec_in_stream_mode() {
    duration_runs(Case {
        crypt: "aes",
        fec: true,
        stream: true,
    });
}

#[test]
fn duration_runs_with_salsa20_without_fec_in_message_mode() {
    duration_runs(Case {
        crypt: "salsa20",
        fec: false,
        stream: false,
    });
}
