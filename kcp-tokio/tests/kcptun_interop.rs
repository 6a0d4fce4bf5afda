//! The tunnel against Debian's kcptun 20210922 (`kcptun-client`, `kcptun-server`): Go client ->
//! our server -> a TCP echo target, and our client -> Go server, over the matrix of smux
//! versions, compression, FEC and ciphers, `--conn 4`, session rotation, an unreachable and a
//! unix-socket target, a lossy link, mismatched versions and keys; Go <-> Go and ours <-> ours
//! run in the same harness as controls. Every byte is checked. Fails (never skips) when the Go
//! binaries are missing.
//!
//! Each cell starts one client and one server process on loopback and a TCP echo target in
//! this process; cells run a few at a time. The two long checks (an idle stream survives 65 s,
//! a vanished peer is noticed within 60 s) are separate tests that each run both roles at once.

#![cfg(unix)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kcp_testkit::rng::Rng;
use kcp_tokio::impair::{ImpairConfig, Proxy, ProxyHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const GO_CLIENT: &str = "/usr/bin/kcptun-client";
const GO_SERVER: &str = "/usr/bin/kcptun-server";
const RS_CLIENT: &str = env!("CARGO_BIN_EXE_kcptun-rs-client");
const RS_SERVER: &str = env!("CARGO_BIN_EXE_kcptun-rs-server");

fn require_go() {
    for b in [GO_CLIENT, GO_SERVER] {
        assert!(
            Path::new(b).exists(),
            "{b} is missing: install Debian's kcptun package (.ci/setup.sh does)"
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Imp {
    Go,
    Rs,
}

impl Imp {
    fn client(self) -> &'static str {
        match self {
            Imp::Go => GO_CLIENT,
            Imp::Rs => RS_CLIENT,
        }
    }
    fn server(self) -> &'static str {
        match self {
            Imp::Go => GO_SERVER,
            Imp::Rs => RS_SERVER,
        }
    }
}

/// A scratch directory for one cell's logs and sockets, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("kcptun-interop-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process whose stdout and stderr go to a log file; killed when dropped. A task
/// owns the child and records when it exits, so a cell notices a dead process at once.
struct Proc {
    exited: tokio::sync::watch::Receiver<bool>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    log: PathBuf,
    args: Vec<String>,
}

impl Proc {
    fn spawn(bin: &str, args: &[String], log: PathBuf) -> Proc {
        Proc::spawn_env(bin, args, log, None)
    }

    /// With `KCPTUN_KEY` set to `key` (and unset without).
    fn spawn_env(bin: &str, args: &[String], log: PathBuf, key: Option<&str>) -> Proc {
        let f = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin);
        match key {
            Some(k) => cmd.env("KCPTUN_KEY", k),
            None => cmd.env_remove("KCPTUN_KEY"),
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let (exit_tx, exited) = tokio::sync::watch::channel(false);
        let (kill, kill_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(watch_child(child, kill_rx, exit_tx));
        Proc {
            exited,
            kill: Some(kill),
            log,
            args: args.to_vec(),
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self, n: usize) -> String {
        let t = self.text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until the log contains `needle` (polling), up to `limit`.
    async fn wait_for(&self, needle: &str, limit: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.text().contains(needle) {
                return Some(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn alive(&self) -> bool {
        !*self.exited.borrow()
    }

    /// Resolves when the process has exited.
    async fn exit(&self) {
        let mut rx = self.exited.clone();
        let _ = rx.wait_for(|e| *e).await;
    }

    /// Kills the process (SIGKILL) and waits for it to exit.
    async fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        self.exit().await;
    }
}

/// Owns a child: kills it on request or when its `Proc` is dropped, and reports its exit.
async fn watch_child(
    mut child: Child,
    kill: tokio::sync::oneshot::Receiver<()>,
    exited: tokio::sync::watch::Sender<bool>,
) {
    tokio::select! {
        _ = child.wait() => {}
        _ = kill => {
            let _ = child.kill().await;
        }
    }
    let _ = exited.send(true);
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    s.local_addr().expect("addr").port()
}

fn free_tcp_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp bind");
    s.local_addr().expect("addr").port()
}

/// A TCP echo target in this process.
async fn echo_tcp() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("echo bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(serve_echo_tcp(l));
    addr
}

async fn serve_echo_tcp(l: TcpListener) {
    while let Ok((s, _)) = l.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// A unix-socket echo target in this process.
async fn echo_unix(path: &Path) {
    let l = tokio::net::UnixListener::bind(path).expect("unix bind");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// Sends `len` bytes through the tunnel and checks the echo, byte for byte; then closes.
async fn echo_once(addr: SocketAddr, seed: u64, len: usize) -> Result<(), String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    let (mut r, mut w) = s.into_split();
    let sent = Rng::new(seed).bytes(len);
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move { w.write_all(&sent).await.map(|_| w) })
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    while got < len {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| format!("read after {got}/{len} bytes: {e}"))?;
        if n == 0 {
            return Err(format!("end of stream after {got}/{len} bytes"));
        }
        if n > len - got || buf[..n] != sent[got..got + n] {
            return Err(format!("wrong bytes at offset {got} of {len}"));
        }
        got += n;
    }
    let _w = writer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("write: {e}"))?;
    Ok(())
}

/// The standard load: 8 concurrent connections of 1 to 4 MiB and 100 short ones (1 to 8 KiB,
/// 10 at a time), all checked.
async fn load(addr: SocketAddr, seed: u64) -> Result<(), String> {
    let mut set = JoinSet::new();
    for i in 0..8u64 {
        let len = (1 << 20) + (i as usize) * (3 << 20) / 7;
        set.spawn(async move {
            echo_once(addr, seed ^ (i + 1), len)
                .await
                .map_err(|e| format!("bulk {i} ({len} B): {e}"))
        });
    }
    let sem = Arc::new(Semaphore::new(10));
    for i in 0..100u64 {
        let sem = sem.clone();
        let len = 1024 + (i as usize * 7919) % (7 * 1024);
        set.spawn(async move {
            let _p = sem.acquire().await.map_err(|e| e.to_string())?;
            echo_once(addr, seed ^ (1000 + i), len)
                .await
                .map_err(|e| format!("short {i} ({len} B): {e}"))
        });
    }
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        let r = r.map_err(|e| e.to_string()).and_then(|x| x);
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Waits until a TCP listener accepts at `addr`.
async fn wait_listening(addr: SocketAddr) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(format!("nothing listens on {addr} after 10 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the server's streams go.
#[derive(Clone, Debug)]
enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// One tunnel: client and server processes (and maybe an impairment proxy between them).
struct Tunnel {
    client: Proc,
    server: Proc,
    /// The client's TCP listen address.
    entry: SocketAddr,
    _proxy: Option<ProxyHandle>,
}

impl Tunnel {
    async fn start(
        dir: &Path,
        client: Imp,
        server: Imp,
        common: &[&str],
        client_extra: &[&str],
        target: &Target,
        loss: Option<f64>,
    ) -> Tunnel {
        let kcp_port = free_udp_port();
        let entry: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let server_addr: SocketAddr = format!("127.0.0.1:{kcp_port}").parse().unwrap();
        let target = match target {
            Target::Tcp(a) => a.to_string(),
            Target::Unix(p) => p.display().to_string(),
        };
        let mut sargs: Vec<String> =
            vec!["-l".into(), server_addr.to_string(), "-t".into(), target];
        sargs.extend(common.iter().map(|s| s.to_string()));
        let server = Proc::spawn(server.server(), &sargs, dir.join("server.log"));
        let (remote, proxy) = match loss {
            Some(p) => {
                let up = ImpairConfig {
                    loss: p,
                    seed: 5,
                    ..ImpairConfig::default()
                };
                let down = ImpairConfig {
                    loss: p,
                    seed: 6,
                    ..ImpairConfig::default()
                };
                let proxy = Proxy::bind("127.0.0.1:0".parse().unwrap(), server_addr, up, down)
                    .await
                    .expect("proxy");
                let a = proxy.local_addr();
                (a, Some(proxy.spawn()))
            }
            None => (server_addr, None),
        };
        let mut cargs: Vec<String> = vec![
            "-l".into(),
            entry.to_string(),
            "-r".into(),
            remote.to_string(),
        ];
        cargs.extend(common.iter().map(|s| s.to_string()));
        cargs.extend(client_extra.iter().map(|s| s.to_string()));
        let client = Proc::spawn(client.client(), &cargs, dir.join("client.log"));
        Tunnel {
            client,
            server,
            entry,
            _proxy: proxy,
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- client log (tail):\n{}\n--- server log (tail):\n{}",
            self.client.tail(15),
            self.server.tail(15)
        )
    }
}

/// What a cell checks beyond the load.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Check {
    /// The standard load only.
    Load,
    /// `--conn 4`: four sessions were dialled.
    FourSessions,
    /// `--autoexpire`: sessions rotate (the scavenger closed one by TTL) while connections
    /// keep passing.
    Rotation,
    /// The target is unreachable at first: connections close, the session survives, and once
    /// the target listens, data passes over the same session.
    Unreachable,
}

#[derive(Clone, Debug)]
struct Cell {
    name: String,
    client: Imp,
    server: Imp,
    args: Vec<&'static str>,
    client_extra: Vec<&'static str>,
    unix: bool,
    loss: Option<f64>,
    check: Check,
}

fn cell(name: &str, client: Imp, server: Imp, args: &[&'static str]) -> Cell {
    Cell {
        name: name.to_owned(),
        client,
        server,
        args: args.to_vec(),
        client_extra: Vec::new(),
        unix: false,
        loss: None,
        check: Check::Load,
    }
}

/// Both mixed pairs of a configuration.
fn both(name: &str, args: &[&'static str]) -> Vec<Cell> {
    vec![
        cell(
            &format!("go-client/rs-server {name}"),
            Imp::Go,
            Imp::Rs,
            args,
        ),
        cell(
            &format!("rs-client/go-server {name}"),
            Imp::Rs,
            Imp::Go,
            args,
        ),
    ]
}

/// Runs a cell; a second time if a port picked for it was taken meanwhile (ports are picked
/// by binding port 0 and releasing it, so another socket may grab one before the process
/// binds it).
async fn run_cell(c: Cell, echo: SocketAddr, seed: u64) -> Result<Duration, String> {
    let first = run_cell_once(c.clone(), echo, seed).await;
    match first {
        Err(e) if e.to_lowercase().contains("address already in use") => {
            eprintln!("{}: a port was taken, running the cell again", c.name);
            run_cell_once(c, echo, seed).await
        }
        r => r,
    }
}

async fn run_cell_once(c: Cell, echo: SocketAddr, seed: u64) -> Result<Duration, String> {
    let t0 = Instant::now();
    let dir = Scratch::new(&c.name.replace(['/', ' ', '='], "_"));
    let target = if c.unix {
        let p = dir.0.join("echo.sock");
        echo_unix(&p).await;
        Target::Unix(p)
    } else if c.check == Check::Unreachable {
        Target::Tcp(format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap())
    } else {
        Target::Tcp(echo)
    };
    let t = Tunnel::start(
        &dir.0,
        c.client,
        c.server,
        &c.args,
        &c.client_extra,
        &target,
        c.loss,
    )
    .await;
    let work = async {
        wait_listening(t.entry).await?;
        match c.check {
            Check::Load => load(t.entry, seed).await,
            Check::FourSessions => {
                load(t.entry, seed).await?;
                let n = t.client.text().matches("on connection:").count();
                if n != 4 {
                    return Err(format!("--conn 4 dialled {n} sessions"));
                }
                Ok(())
            }
            Check::Rotation => {
                // Short connections across several expiries (long transfers would die with
                // their session at expiry + TTL, as in kcptun).
                let t1 = Instant::now();
                let mut i = 0;
                while t1.elapsed() < Duration::from_secs(7) {
                    echo_once(t.entry, seed ^ (5000 + i), 4096)
                        .await
                        .map_err(|e| format!("connection {i} during rotation: {e}"))?;
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let sessions = t.client.text().matches("on connection:").count();
                if sessions < 3 {
                    return Err(format!(
                        "only {sessions} sessions dialled with --autoexpire 2"
                    ));
                }
                if t.client
                    .wait_for("closed due to ttl", Duration::from_secs(5))
                    .await
                    .is_none()
                {
                    return Err("the scavenger closed no session".into());
                }
                Ok(())
            }
            Check::Unreachable => {
                let Target::Tcp(dead) = &target else {
                    unreachable!()
                };
                let dead = *dead;
                for i in 0..3 {
                    let mut s = TcpStream::connect(t.entry)
                        .await
                        .map_err(|e| e.to_string())?;
                    let _ = s.write_all(b"anyone there?").await;
                    let mut b = [0u8; 16];
                    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => {}
                        Ok(Ok(n)) => {
                            return Err(format!("connection {i}: {n} bytes from a dead target"))
                        }
                        Err(_) => {
                            return Err(format!(
                                "connection {i} to a dead target still open after 10 s"
                            ))
                        }
                    }
                }
                if !t.server.alive() || !t.client.alive() {
                    return Err("a tunnel process exited".into());
                }
                // The target comes up: the same session carries data.
                let l = TcpListener::bind(dead)
                    .await
                    .map_err(|e| format!("bind {dead}: {e}"))?;
                tokio::spawn(serve_echo_tcp(l));
                load(t.entry, seed).await?;
                let sessions = t.client.text().matches("on connection:").count();
                if sessions != 1 {
                    return Err(format!(
                        "{sessions} sessions: the unreachable target ended one"
                    ));
                }
                if !t
                    .server
                    .text()
                    .to_lowercase()
                    .contains("connection refused")
                {
                    return Err("the server logged no dial error".into());
                }
                Ok(())
            }
        }
    };
    let died = async {
        tokio::select! {
            _ = t.client.exit() => {}
            _ = t.server.exit() => {}
        }
        // Let its last log lines land.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let result = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(150), work) => {
            r.unwrap_or_else(|_| Err("cell timed out after 150 s".into()))
        }
        _ = died => Err("a tunnel process exited".into()),
    };
    if let Err(e) = result {
        return Err(format!("{e}\n{}", t.logs()));
    }
    if !t.server.alive() || !t.client.alive() {
        return Err(format!("a tunnel process exited\n{}", t.logs()));
    }
    Ok(t0.elapsed())
}

fn matrix() -> Vec<Cell> {
    let mut cells = Vec::new();
    // smux version x compression x FEC, aes.
    for ver in ["1", "2"] {
        for comp in [true, false] {
            for fec in [("10", "3"), ("0", "0")] {
                let mut args = vec![
                    "--crypt",
                    "aes",
                    "--key",
                    "k1",
                    "--smuxver",
                    ver,
                    "--ds",
                    fec.0,
                    "--ps",
                    fec.1,
                ];
                if !comp {
                    args.push("--nocomp");
                }
                let name = format!(
                    "v{ver} {} fec{}/{}",
                    if comp { "comp" } else { "nocomp" },
                    fec.0,
                    fec.1
                );
                cells.extend(both(&name, &args));
            }
        }
    }
    for crypt in ["none", "xor", "salsa20", "3des", "sm4", "aes-128", "null"] {
        cells.extend(both(
            &format!("crypt {crypt}"),
            &["--crypt", crypt, "--key", "k2"],
        ));
    }
    for mut c in both("conn 4", &["--key", "k3"]) {
        c.client_extra = vec!["--conn", "4"];
        c.check = Check::FourSessions;
        cells.push(c);
    }
    for mut c in both("rotation", &["--key", "k4"]) {
        c.client_extra = vec!["--autoexpire", "2", "--scavengettl", "1"];
        c.check = Check::Rotation;
        cells.push(c);
    }
    for mut c in both("unreachable target", &["--key", "k5"]) {
        c.check = Check::Unreachable;
        cells.push(c);
    }
    for mut c in both("unix target", &["--key", "k6"]) {
        c.unix = true;
        cells.push(c);
    }
    for mut c in both("5% loss", &["--key", "k7", "--mode", "fast2"]) {
        c.loss = Some(0.05);
        cells.push(c);
    }
    // Controls.
    cells.push(cell(
        "go-client/go-server control",
        Imp::Go,
        Imp::Go,
        &["--key", "k8"],
    ));
    cells.push(cell(
        "rs-client/rs-server control",
        Imp::Rs,
        Imp::Rs,
        &["--key", "k8"],
    ));
    cells.push(cell(
        "rs-client/rs-server control v2 nocomp",
        Imp::Rs,
        Imp::Rs,
        &["--key", "k8", "--smuxver", "2", "--nocomp"],
    ));
    cells
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_with_debian_kcptun() {
    require_go();
    let echo = echo_tcp().await;
    // KCPTUN_CELLS=substring runs only the matching cells (for debugging one).
    let only = std::env::var("KCPTUN_CELLS").unwrap_or_default();
    let cells: Vec<Cell> = matrix()
        .into_iter()
        .filter(|c| c.name.contains(&only))
        .collect();
    let sem = Arc::new(Semaphore::new(3));
    let mut set = JoinSet::new();
    for (i, c) in cells.into_iter().enumerate() {
        let sem = sem.clone();
        set.spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore");
            let name = c.name.clone();
            (i, name, run_cell(c, echo, 0xC0FFEE + i as u64).await)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        results.push(r.expect("cell task"));
    }
    results.sort_by_key(|r| r.0);
    let mut failed = Vec::new();
    for (_, name, r) in &results {
        match r {
            Ok(d) => eprintln!("ok    {name:50} {:6.1} s", d.as_secs_f64()),
            Err(e) => {
                eprintln!("FAIL  {name}: {e}");
                failed.push(name.clone());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cells failed: {failed:?}",
        failed.len(),
        results.len()
    );
}

/// A peer with another smux version or key: our server logs why, and a good client on the
/// same server is not disturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_peers_get_a_clear_log_line() {
    require_go();
    let echo = echo_tcp().await;
    let dir = Scratch::new("mismatch");
    let port = free_udp_port();
    let server_addr = format!("127.0.0.1:{port}");
    let server = Proc::spawn(
        RS_SERVER,
        &[
            "-l",
            &server_addr,
            "-t",
            &echo.to_string(),
            "--key",
            "right",
            "--smuxver",
            "1",
        ]
        .map(String::from),
        dir.0.join("server.log"),
    );
    let spawn_client = |name: &str, extra: &[&str]| {
        let entry: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let mut args: Vec<String> = ["-l", &entry.to_string(), "-r", &server_addr]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        (entry, Proc::spawn(GO_CLIENT, &args, dir.0.join(name)))
    };
    let (good, _good_client) = spawn_client("good.log", &["--key", "right", "--smuxver", "1"]);
    let (v2, _v2_client) = spawn_client("v2.log", &["--key", "right", "--smuxver", "2"]);
    let (badkey, _badkey_client) =
        spawn_client("badkey.log", &["--key", "wrong", "--smuxver", "1"]);
    let (plain, _plain_client) = spawn_client("plain.log", &["--key", "right", "--nocomp"]);
    // A second server without compression, and a compressing client.
    let port2 = free_udp_port();
    let server2_addr = format!("127.0.0.1:{port2}");
    let server2 = Proc::spawn(
        RS_SERVER,
        &[
            "-l",
            &server2_addr,
            "-t",
            &echo.to_string(),
            "--key",
            "right",
            "--nocomp",
        ]
        .map(String::from),
        dir.0.join("server2.log"),
    );
    let comp_entry = format!("127.0.0.1:{}", free_tcp_port());
    let _comp_client = Proc::spawn(
        GO_CLIENT,
        &["-l", &comp_entry, "-r", &server2_addr, "--key", "right"].map(String::from),
        dir.0.join("comp.log"),
    );
    let comp: SocketAddr = comp_entry.parse().unwrap();
    wait_listening(good).await.unwrap();
    wait_listening(v2).await.unwrap();
    wait_listening(badkey).await.unwrap();
    wait_listening(plain).await.unwrap();
    wait_listening(comp).await.unwrap();
    // Traffic from the mismatched clients while the good one runs its load.
    let noise = tokio::spawn(async move {
        for i in 0..3 {
            let _ = tokio::time::timeout(Duration::from_secs(3), echo_once(v2, i, 1000)).await;
            let _ = tokio::time::timeout(Duration::from_secs(3), echo_once(badkey, i, 1000)).await;
            let _ = tokio::time::timeout(Duration::from_secs(3), echo_once(plain, i, 1000)).await;
            let _ = tokio::time::timeout(Duration::from_secs(3), echo_once(comp, i, 1000)).await;
        }
    });
    load(good, 42)
        .await
        .unwrap_or_else(|e| panic!("good client: {e}\n{}", server.tail(20)));
    noise.await.unwrap();
    assert!(
        server
            .wait_for(
                "smux version 2 received, session speaks 1",
                Duration::from_secs(10)
            )
            .await
            .is_some(),
        "no log line for the version-2 client:\n{}",
        server.tail(30)
    );
    assert!(
        server
            .wait_for("failed the integrity check", Duration::from_secs(15))
            .await
            .is_some(),
        "no log line for the wrong key:\n{}",
        server.tail(30)
    );
    assert!(
        server
            .wait_for("(the client does not compress", Duration::from_secs(10))
            .await
            .is_some(),
        "no hint for a client with --nocomp:\n{}",
        server.tail(30)
    );
    assert!(
        server2
            .wait_for("(the client compresses", Duration::from_secs(10))
            .await
            .is_some(),
        "no hint for a compressing client:\n{}",
        server2.tail(30)
    );
    load(good, 43)
        .await
        .unwrap_or_else(|e| panic!("good client after: {e}\n{}", server.tail(20)));
}

/// Reads one echo of `msg` on an open connection.
async fn ping(s: &mut TcpStream, msg: &[u8]) -> Result<(), String> {
    s.write_all(msg).await.map_err(|e| e.to_string())?;
    let mut b = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut b))
        .await
        .map_err(|_| "no echo within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    if b != msg {
        return Err("wrong echo".into());
    }
    Ok(())
}

/// An idle stream survives 65 s against the Go peer, in both roles at once: our keepalives
/// satisfy Go's 30 s timeout, and Go's keep ours alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stream_survives_65s_both_roles() {
    require_go();
    let echo = echo_tcp().await;
    let roles = [(Imp::Go, Imp::Rs), (Imp::Rs, Imp::Go)];
    let mut set = JoinSet::new();
    for (i, (c, s)) in roles.into_iter().enumerate() {
        set.spawn(async move {
            let dir = Scratch::new(&format!("idle{i}"));
            let t = Tunnel::start(
                &dir.0,
                c,
                s,
                &["--key", "idle"],
                &[],
                &Target::Tcp(echo),
                None,
            )
            .await;
            wait_listening(t.entry).await?;
            let mut conn = TcpStream::connect(t.entry)
                .await
                .map_err(|e| e.to_string())?;
            ping(&mut conn, b"before the pause").await?;
            tokio::time::sleep(Duration::from_secs(65)).await;
            ping(&mut conn, b"after 65 idle seconds")
                .await
                .map_err(|e| format!("{c:?} client, {s:?} server: {e}\n{}", t.logs()))
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
}

/// A peer that vanishes (SIGKILL, so it sends nothing more) is noticed within 60 s, in both
/// roles at once: our client closes the tunnelled connection when the Go server is gone, and
/// our server closes the target connection when the Go client is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_peer_noticed_within_60s_both_roles() {
    require_go();
    let echo = echo_tcp().await;
    // Our client, Go server: the Go server is killed; the tunnelled connection must close.
    let a = tokio::spawn(async move {
        let dir = Scratch::new("vanish-a");
        let mut t = Tunnel::start(
            &dir.0,
            Imp::Rs,
            Imp::Go,
            &["--key", "v"],
            &[],
            &Target::Tcp(echo),
            None,
        )
        .await;
        wait_listening(t.entry).await?;
        let mut conn = TcpStream::connect(t.entry)
            .await
            .map_err(|e| e.to_string())?;
        ping(&mut conn, b"hello").await?;
        t.server.kill().await;
        let t0 = Instant::now();
        let mut b = [0u8; 8];
        match tokio::time::timeout(Duration::from_secs(75), conn.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(_)) => return Err("data from a dead server".to_string()),
            Err(_) => {
                return Err(format!(
                    "still open 75 s after the server vanished\n{}",
                    t.logs()
                ))
            }
        }
        let took = t0.elapsed();
        if took > Duration::from_secs(61) {
            return Err(format!("noticed after {took:?}\n{}", t.logs()));
        }
        // A new server on the same address: the next connection dials a new session.
        let args: Vec<String> = t.server.args.clone();
        let _again = Proc::spawn(GO_SERVER, &args, dir.0.join("server2.log"));
        echo_once(t.entry, 9, 200_000)
            .await
            .map_err(|e| format!("after the server came back: {e}\n{}", t.logs()))?;
        let sessions = t.client.text().matches("on connection:").count();
        if sessions != 2 {
            return Err(format!(
                "{sessions} sessions dialled, expected a second one\n{}",
                t.logs()
            ));
        }
        Ok(took)
    });
    // Go client, our server: the Go client is killed; the target connection must close.
    let b = tokio::spawn(async move {
        let dir = Scratch::new("vanish-b");
        let target = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let taddr = target.local_addr().map_err(|e| e.to_string())?;
        let mut t = Tunnel::start(
            &dir.0,
            Imp::Go,
            Imp::Rs,
            &["--key", "v"],
            &[],
            &Target::Tcp(taddr),
            None,
        )
        .await;
        wait_listening(t.entry).await?;
        // The readiness probe's stream reaches the target first; take streams until one
        // carries our hello.
        let mut conn = TcpStream::connect(t.entry)
            .await
            .map_err(|e| e.to_string())?;
        conn.write_all(b"hello").await.map_err(|e| e.to_string())?;
        let mut far = loop {
            let (mut s, _) = tokio::time::timeout(Duration::from_secs(10), target.accept())
                .await
                .map_err(|_| "no stream reached the target".to_string())?
                .map_err(|e| e.to_string())?;
            let mut b = [0u8; 5];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b)).await
            {
                if &b == b"hello" {
                    break s;
                }
            }
        };
        t.client.kill().await;
        let t0 = Instant::now();
        let mut b = [0u8; 8];
        match tokio::time::timeout(Duration::from_secs(75), far.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(_)) => return Err("data from a dead client".to_string()),
            Err(_) => {
                return Err(format!(
                    "target connection still open 75 s after the client vanished\n{}",
                    t.logs()
                ))
            }
        }
        let took = t0.elapsed();
        if took > Duration::from_secs(61) {
            return Err(format!("noticed after {took:?}\n{}", t.logs()));
        }
        drop(conn);
        Ok(took)
    });
    // Our client with another key than the Go server's: the session times out, and the log
    // says nothing ever arrived and what to check.
    let c = tokio::spawn(async move {
        let dir = Scratch::new("vanish-c");
        let t = Tunnel::start(
            &dir.0,
            Imp::Rs,
            Imp::Go,
            &["--key", "v"],
            &[],
            &Target::Tcp(echo),
            None,
        )
        .await;
        // Replace the tunnel's client by one with another key.
        let Tunnel {
            client: own,
            server,
            ..
        } = t;
        drop(own);
        let entry = format!("127.0.0.1:{}", free_tcp_port());
        let remote = server.args[1].clone();
        let client = Proc::spawn(
            RS_CLIENT,
            &["-l", &entry, "-r", &remote, "--key", "other"].map(String::from),
            dir.0.join("client-other.log"),
        );
        let entry: SocketAddr = entry.parse().unwrap();
        wait_listening(entry).await?;
        let mut conn = TcpStream::connect(entry).await.map_err(|e| e.to_string())?;
        let _ = conn.write_all(b"hello?").await;
        let found = client
            .wait_for(
                "nothing ever arrived from the server",
                Duration::from_secs(70),
            )
            .await;
        drop(server);
        found.ok_or_else(|| format!("no hint about the key\n{}", client.tail(20)))
    });
    let ta = a.await.unwrap().unwrap();
    c.await.unwrap().unwrap();
    let tb = b.await.unwrap().unwrap();
    eprintln!("vanished Go server noticed by our client after {ta:?}; vanished Go client noticed by our server after {tb:?}");
}

/// `KCPTUN_KEY` from the environment, `--log`, `--quiet` and `--snmplog` (kcptun's CSV with a Go
/// time layout in the file name), on our binaries against the Go ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_from_environment_log_file_quiet_and_snmplog() {
    require_go();
    let echo = echo_tcp().await;
    let dir = Scratch::new("envlog");
    let d = dir.0.display().to_string();
    // Our server takes its key from KCPTUN_KEY and logs to a file, quietly, with SNMP CSV.
    let port = free_udp_port();
    let saddr = format!("127.0.0.1:{port}");
    let server = Proc::spawn_env(
        RS_SERVER,
        &[
            "-l",
            &saddr,
            "-t",
            &echo.to_string(),
            "--quiet",
            "--log",
            &format!("{d}/own.log"),
            "--snmplog",
            &format!("{d}/snmp-20060102.log"),
            "--snmpperiod",
            "1",
        ]
        .map(String::from),
        dir.0.join("server.out"),
        Some("from-env"),
    );
    let entry = format!("127.0.0.1:{}", free_tcp_port());
    let _go_client = Proc::spawn(
        GO_CLIENT,
        &["-l", &entry, "-r", &saddr, "--key", "from-env"].map(String::from),
        dir.0.join("go-client.log"),
    );
    // Our client takes its key from KCPTUN_KEY too, against a Go server.
    let gport = free_udp_port();
    let gaddr = format!("127.0.0.1:{gport}");
    let _go_server = Proc::spawn(
        GO_SERVER,
        &["-l", &gaddr, "-t", &echo.to_string(), "--key", "from-env"].map(String::from),
        dir.0.join("go-server.log"),
    );
    let entry2 = format!("127.0.0.1:{}", free_tcp_port());
    let client = Proc::spawn_env(
        RS_CLIENT,
        &["-l", &entry2, "-r", &gaddr].map(String::from),
        dir.0.join("client.log"),
        Some("from-env"),
    );
    for e in [&entry, &entry2] {
        let a: SocketAddr = e.parse().unwrap();
        wait_listening(a).await.unwrap();
        for i in 0..5 {
            echo_once(a, i, 100_000)
                .await
                .unwrap_or_else(|err| panic!("{e}: {err}"));
        }
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let own = std::fs::read_to_string(dir.0.join("own.log")).expect("--log file");
    assert!(own.contains("listening on: 127.0.0.1"), "{own}");
    assert!(!own.contains("stream opened"), "--quiet:\n{own}");
    assert!(
        server.text().trim().is_empty(),
        "server wrote past --log: {}",
        server.text()
    );
    assert!(
        client.text().contains("stream opened"),
        "{}",
        client.tail(10)
    );
    let csv: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snmp-")
        })
        .collect();
    assert_eq!(csv.len(), 1, "{csv:?}");
    let name = csv[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.len() == "snmp-20060102.log".len() && name[5..13].bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    let text = std::fs::read_to_string(&csv[0]).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "Unix,BytesSent,BytesReceived,MaxConn,ActiveOpens,PassiveOpens,CurrEstab,InErrs,\
         InCsumErrors,KCPInErrors,InPkts,OutPkts,InSegs,OutSegs,InBytes,OutBytes,RetransSegs,\
         FastRetransSegs,EarlyRetransSegs,LostSegs,RepeatSegs,FECParityShards,FECErrs,\
         FECRecovered,FECShortShards"
    );
    let row: Vec<u64> = lines
        .last()
        .expect("a data row")
        .split(',')
        .map(|f| f.parse().expect("numeric field"))
        .collect();
    assert_eq!(row.len(), 25);
    assert!(
        row[1] >= 500_000 && row[2] >= 500_000,
        "bytes sent/received: {row:?}"
    );
    assert_eq!(row[5], 1, "one passive open: {row:?}");
}

/// A listen address in use: both of our binaries exit with a line naming it (as kcptun's do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_is_a_clear_fatal_error() {
    let dir = Scratch::new("inuse");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uaddr = udp.local_addr().unwrap().to_string();
    let taddr = tcp.local_addr().unwrap().to_string();
    let server = Proc::spawn(
        RS_SERVER,
        &["-l", &uaddr].map(String::from),
        dir.0.join("s.log"),
    );
    let client = Proc::spawn(
        RS_CLIENT,
        &["-l", &taddr, "-r", &uaddr].map(String::from),
        dir.0.join("c.log"),
    );
    for (p, addr) in [(&server, &uaddr), (&client, &taddr)] {
        tokio::time::timeout(Duration::from_secs(10), p.exit())
            .await
            .unwrap_or_else(|_| panic!("still running:\n{}", p.tail(5)));
        let text = p.text().to_lowercase();
        assert!(
            text.contains(&format!("listen {addr}")) && text.contains("address already in use"),
            "{text}"
        );
    }
}
