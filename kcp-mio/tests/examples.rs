//! The `server` and `client` examples as a new user meets them: `--help`, bad flags and
//! values (a message on stderr, exit code 2), kcptun's `:PORT` and host names, a
//! `--duration` run of every test and a multi-session run by byte count between the two,
//! and a client with no server (exit code 1 after `--timeout`). Loopback only; every child
//! is bounded in time and killed on the way out.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// The example binary `name`, built (once per test binary) with the profile of the tests, so
/// that the tests never run stale examples.
fn example(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "--profile",
                "test",
                "-p",
                "kcpx-mio",
                "--examples",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo");
        assert!(status.success(), "building the examples failed");
    });
    // target/<dir>/deps/examples-HASH -> target/<dir>/examples/NAME
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// Kills the child when dropped (a failed assertion must not leave a process running).
struct Killed(Option<Child>);

impl Killed {
    fn spawn(cmd: &mut Command) -> Killed {
        Killed(Some(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ))
    }
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
    fn output(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs an example to its end, at most `limit`.
fn run(name: &str, args: &[&str], limit: Duration) -> Output {
    let mut child = Killed::spawn(Command::new(example(name)).args(args));
    let end = Instant::now() + limit;
    while child.child().try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < end,
            "{name} {args:?} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.output()
}

const QUICK: Duration = Duration::from_secs(10);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_kcp_perfs_flags_and_defaults_and_exits_0() {
    let out = run("server", &["--help"], QUICK);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for s in [
        "--listen",
        "[default: :4000]",
        "--json",
        "--crypt",
        "--mode",
        "--stream",
    ] {
        assert!(help.contains(s), "server --help lacks {s}:\n{help}");
    }
    let out = run("client", &["--help"], QUICK);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for s in [
        "--connect",
        "[default: :4000]",
        "--test",
        "--duration",
        "--bytes",
        "--conns",
        "--ramp",
        "--rate",
        "--timeout",
        "--datashard",
    ] {
        assert!(help.contains(s), "client --help lacks {s}:\n{help}");
    }
}

#[test]
fn bad_flags_and_values_are_reported_with_exit_code_2() {
    let cases: [(&str, &[&str], &str); 9] = [
        ("server", &["--bogus"], "--bogus"),
        ("server", &["--mtu", "5000"], "5000"),
        (
            "server",
            &["--listen", "no-such-host.invalid:4000"],
            "no-such-host",
        ),
        ("client", &[], "--test"),
        ("client", &["--test", "ping"], "ping"),
        (
            "client",
            &["--test", "sink", "--bytes", "12Q"],
            "not a size",
        ),
        ("client", &["--test", "sink", "--duration", "0"], "positive"),
        ("client", &["--test", "sink", "--rate", "5"], "--rate"),
        ("client", &["--test", "sink", "--crypt", "rot13"], "rot13"),
    ];
    for (name, args, says) in cases {
        let out = run(name, args, QUICK);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
        assert!(
            err.contains(says),
            "{name} {args:?} should mention {says}: {err}"
        );
    }
}

/// Reads a JSON line's numeric `key`.
fn number(line: &str, key: &str) -> f64 {
    line.split(&format!("\"{key}\":"))
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn the_client_example_runs_every_test_against_the_server_example() {
    let mut server = Killed::spawn(Command::new(example("server")).args([
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--mode",
        "fast3",
    ]));
    let mut line = String::new();
    BufReader::new(server.child().stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = kcp_testkit::go::listening(&line);
    let port = addr.rsplit(':').next().unwrap().to_string();

    // kcptun's `:PORT` (localhost), and a host name.
    let mut client_bytes = Vec::new();
    for (test, connect) in [
        ("echo", format!(":{port}")),
        ("sink", format!("localhost:{port}")),
        ("source", format!(":{port}")),
    ] {
        let args = [
            "--connect",
            &connect,
            "--test",
            test,
            "--duration",
            "0.5",
            "--json",
            "--mode",
            "fast3",
        ];
        let t = Instant::now();
        let out = run("client", &args, Duration::from_secs(20));
        assert!(
            t.elapsed() >= Duration::from_millis(500),
            "{test} ended early"
        );
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{test}: {stdout}{}",
            text(&out.stderr)
        );
        let session = stdout.lines().find(|l| l.contains("\"conn\":0")).unwrap();
        assert!(session.contains("\"ok\":true"), "{session}");
        assert!(number(session, "seconds") > 0.0, "{session}");
        client_bytes.push(number(session, "bytes") as u64);
        let summary = stdout
            .lines()
            .find(|l| l.contains("\"summary\":true"))
            .unwrap();
        assert!(summary.contains("\"ok\":true"), "{summary}");
    }
    let out = run(
        "client",
        &[
            "--connect",
            &addr,
            "--test",
            "sink",
            "--bytes",
            "200K",
            "--conns",
            "3",
            "--mode",
            "fast3",
        ],
        Duration::from_secs(20),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("total (3 conns): client sink: 614400 bytes"),
        "{stdout}"
    );

    // The server printed one JSON line per session, with the bytes its client counted.
    std::thread::sleep(Duration::from_millis(300));
    let _ = server.child().kill();
    let served = text(&server.output().stdout);
    let lines: Vec<&str> = served.lines().collect();
    assert_eq!(lines.len(), 6, "{served}");
    for (k, test) in ["echo", "sink", "source"].into_iter().enumerate() {
        assert!(
            lines[k].contains(&format!("\"test\":\"{test}\"")),
            "{}",
            lines[k]
        );
        assert_eq!(
            number(lines[k], "bytes") as u64,
            client_bytes[k],
            "{}",
            lines[k]
        );
    }
    for l in &lines[3..] {
        assert_eq!(number(l, "bytes") as u64, 200 << 10, "{l}");
    }
}

#[test]
fn a_client_without_a_server_fails_with_exit_code_1_after_its_timeout() {
    // A port that never answers: bound here for the whole run and never read, so no other
    // socket (another test's server) can take it meanwhile.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // `run` bounds the client's own run time (not the build of the examples): it must give
    // up by its one-second timeout rather than wait for ever.
    let out = run(
        "client",
        &[
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--test",
            "echo",
            "--timeout",
            "1",
        ],
        QUICK,
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no progress"), "{err}");
}
