//! The harness: Go and our tunnel binaries as child processes, TCP echo targets, the load
//! every cell runs, and the cells' tunnel wiring.

use kcp_testkit::rng::Rng;
use kcp_tokio::impair::{ImpairConfig, Proxy, ProxyHandle};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

mod cli;
mod lifecycle;
mod matrix;

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
    /// Removes the directory, unless the test failed: then its logs stay for a look.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.0.display());
            return;
        }
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

/// A loopback port for a child process to bind, free for both TCP and UDP when picked.
///
/// Binding port 0 and handing the number on races with the kernel: until the child binds it,
/// the kernel may give the same port to any socket that connects or binds port 0 (this suite
/// opens hundreds of TCP connections at once), and the child then fails with "address already
/// in use". So the ports come from just below the kernel's ephemeral range, which it never
/// hands out by itself, each once per test process (a counter), and only if both protocols can
/// bind them at that moment.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SPAN: u32 = 8_000;
    let low = ephemeral_low();
    assert!(
        low > SPAN + 1024,
        "the ephemeral port range starts at {low}: no room below it for test ports"
    );
    // Processes running side by side start at different places in the span.
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low - SPAN + (start + n) % SPAN) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {low}");
}

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
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
        let kcp_port = free_port();
        let entry: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
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
