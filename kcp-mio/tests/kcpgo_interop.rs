//! Live interop with kcp-go v5.6.1 (Debian's package) through the kcp-perf protocol: for the
//! sample of cipher x FEC x mode (`kcp_testkit::go::SAMPLE`), a kcp-mio client against the Go
//! server (sink and source) and the Go client against a kcp-mio server (sink and echo), 1 MiB
//! each, every byte checked by both sides; and `--duration` runs (count 0, framed payload, the end-of-run frame) of
//! every test both ways.
//!
//! The Go peer is built by `interop/build-go.sh`; if Go or kcp-go is missing these tests fail
//! (run `.ci/setup.sh`), they do not skip.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::{case_config, mio_client, mio_sessions, MioServer};
use kcp_mio::perf::{ClientSession, Test};
use kcp_testkit::go::{self, Case, GoServer};

/// One Go peer at a time: in parallel the runs starve each other of the machine's 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn go_server(bin: &Path, case: &Case) -> GoServer {
    GoServer::start(bin, case, "127.0.0.1:0")
}

fn go_client(bin: &Path, addr: SocketAddr, case: &Case, test: &str) {
    let msg = if test == "echo" {
        case.msg().min(1024)
    } else {
        case.msg()
    };
    let mut cmd = case.go_client(bin, addr);
    cmd.args(["--test", test, "--bytes", "1M", "--msg", &msg.to_string()]);
    go::run_go_client(cmd, &format!("{case:?} {test}"));
}

fn both_directions(case: Case) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let bin = kcp_testkit::go::peer(None);
    let what = format!("{case:?} against the Go server");
    let server = go_server(&bin, &case);
    for test in [Test::Sink, Test::Source] {
        mio_client(
            server.addr,
            &case_config(&case),
            test,
            1 << 20,
            case.msg(),
            &what,
        );
    }
    drop(server);

    let server = MioServer::start(case_config(&case));
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
    both_directions(go::SAMPLE[0]);
}

#[test]
fn salsa20_without_fec_in_message_mode() {
    both_directions(go::SAMPLE[1]);
}

#[test]
fn null_cipher_with_fec_in_message_mode() {
    both_directions(go::SAMPLE[2]);
}

#[test]
fn sm4_without_fec_in_stream_mode() {
    both_directions(go::SAMPLE[3]);
}

#[test]
fn none_cipher_with_fec_in_stream_mode() {
    both_directions(go::SAMPLE[4]);
}

/// The Go client's `--duration` run against `addr`; returns the payload bytes it reports.
fn go_client_for(bin: &Path, addr: SocketAddr, case: &Case, test: &str, secs: &str) -> u64 {
    let mut cmd = case.go_client(bin, addr);
    cmd.args(["--test", test, "--duration", secs, "--json"]);
    let out = go::run_go_client(cmd, &format!("{case:?} {test} --duration {secs}"));
    go::reported_bytes(&out.stdout)
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
        let r = mio_sessions(
            server.addr,
            &case_config(&case),
            1,
            Duration::from_secs(20),
            |_| ClientSession::for_duration(test, msg, !case.stream, Duration::from_millis(500)),
        )
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

    let server = MioServer::start(case_config(&case));
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
    duration_runs(go::SAMPLE[0]);
}

#[test]
fn duration_runs_with_salsa20_without_fec_in_message_mode() {
    duration_runs(go::SAMPLE[1]);
}
