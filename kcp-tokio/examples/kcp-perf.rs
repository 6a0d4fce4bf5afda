//! kcp-perf: an iperf-like tool for the KCP stack (server, client, impairment proxy, demo).
//!
//! `kcp-perf --help` and `kcp-perf SUBCOMMAND --help` list every option. Client and server
//! default to port 4000; addresses may be `host:port`, `ip:port` or kcptun's `:port`. The
//! protocol is `kcp_tokio::perf`'s, stated in `interop/kcpperf-go/README.md`; the Go peer
//! there speaks it too.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kcp_mio::cli::{
    self, parse_duration, parse_pct, parse_rate, parse_secs, parse_size, resources, AdmissionArgs,
    KcpArgs,
};
use kcp_tokio::impair::{ImpairConfig, Proxy};
use kcp_tokio::perf::{self, Report, Test};
use kcp_tokio::{Config, KcpConfig, KcpListener, KcpStream};

#[derive(Parser)]
#[command(
    name = "kcp-perf",
    version,
    about = "Throughput and latency of KCP sessions"
)]
struct Cli {
    /// Runtime threads: 1 runs everything on one thread (Tokio's current-thread runtime: no
    /// wake-ups between workers; about a quarter less server CPU per message with many
    /// small-message sessions); 0 (default): one worker per core.
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve kcp-perf sessions until killed.
    Server(ServerArgs),
    /// Run echo, sink or source sessions against a server.
    Client(ClientArgs),
    /// A UDP relay that loses, delays, reorders, duplicates and rate-limits datagrams.
    Proxy(ProxyArgs),
    /// A server, a lossy link and a client in one process.
    Demo,
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on (`:PORT` = all IPv4 interfaces, as kcptun; `[::]:PORT` = IPv6
    /// and, where the system maps them (Linux by default), IPv4 too).
    #[arg(long, default_value = ":4000")]
    listen: String,
    /// One JSON object per session on stdout.
    #[arg(long)]
    json: bool,
    /// UDP sockets bound to the address with SO_REUSEPORT, each with its own driver task (the
    /// kernel spreads peers over them by address); 1: one plain socket.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    sockets: u16,
    /// Every SECS seconds, one line of the listener's counters on stderr (`stats {...}`:
    /// endpoint counters as kcp-go's SNMP plus admission, and the sockets' I/O counters).
    /// On unix, SIGUSR1 prints the line too.
    #[arg(long, value_parser = parse_secs)]
    stats: Option<Duration>,
    #[command(flatten)]
    admission: AdmissionArgs,
    /// Receive hold in microseconds (0: off; Linux): after a receive turn the socket is left
    /// unwatched this long, then everything that arrived is read in one batch. Trades up to
    /// the hold of latency for fewer wake-ups: for servers with thousands of sessions (about
    /// 1000 there), not for one busy session (see KcpConfig::receive_hold).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=50_000))]
    receive_hold_us: u32,
    #[command(flatten)]
    kcp: KcpArgs,
}

#[derive(Args)]
struct ClientArgs {
    /// Server address (`host:port`; `:PORT` = localhost).
    #[arg(long, default_value = ":4000")]
    connect: String,
    /// The test to run.
    #[arg(long, value_parser = ["echo", "sink", "source"])]
    test: String,
    /// Bytes per session (suffix K, M, G: powers of 1024).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    bytes: u64,
    /// Message (echo) or write size; default 1K for echo, 16K otherwise.
    #[arg(long, value_parser = parse_size)]
    msg: Option<u64>,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    conns: u32,
    /// Share this many UDP sockets among the sessions (0: a socket of its own per session,
    /// as kcp-go's Dial does). Saves a socket, a driver and its wake-ups per session.
    #[arg(long, default_value_t = 0)]
    client_sockets: u32,
    /// Spread the start of the sessions evenly over this many seconds.
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    ramp: Duration,
    /// Echo messages per second per session (paced latency test; 0 = back to back).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    rate: f64,
    /// Run each session this many seconds (or `inf`) instead of --bytes.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seconds a read or write may wait without progress before the session fails.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    timeout: Duration,
    /// One JSON object per session and a summary on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kcp: KcpArgs,
}

#[derive(Args)]
struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: String,
    /// Address to forward to.
    #[arg(long)]
    forward: String,
    /// Loss in percent, each way.
    #[arg(long, default_value = "0", value_parser = parse_pct)]
    loss: f64,
    /// Delay in ms, each way.
    #[arg(long, default_value_t = 0)]
    delay: u32,
    /// Jitter in ms: each datagram is held delay..=delay+jitter ms (uniform).
    #[arg(long, default_value_t = 0)]
    jitter: u32,
    /// Reordering in percent.
    #[arg(long, default_value = "0", value_parser = parse_pct)]
    reorder: f64,
    /// Duplication in percent (a copy travels with its own jitter).
    #[arg(long, default_value = "0", value_parser = parse_pct)]
    dup: f64,
    /// Rate limit in Mbit/s (0: none).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    rate_mbps: f64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Resolves an address as [`cli::resolve`] does, off the runtime's threads.
async fn resolve(s: &str, any: &str) -> Result<SocketAddr, String> {
    let (s, any) = (s.to_string(), any.to_string());
    tokio::task::spawn_blocking(move || cli::resolve(&s, &any))
        .await
        .map_err(|e| e.to_string())?
}

/// The configuration and whether it is stream mode.
fn kcp_config(a: &KcpArgs) -> Result<(KcpConfig, bool), String> {
    let cfg = a.config()?;
    if let Some(note) = cfg.receive_buffer_note() {
        eprintln!("kcp-perf: warning: {note}");
    }
    Ok((cfg, a.stream()))
}

fn print_report(role: &str, r: &Report, ok: bool, json: bool) {
    if json {
        let (cpu, rss) = resources();
        println!("{}", r.json(role, ok, cpu, rss, ""));
    } else {
        println!("{}", r.line(role, ok));
    }
}

async fn server(a: ServerArgs) -> Result<bool, String> {
    let listen = resolve(&a.listen, "0.0.0.0").await?;
    let (cfg, stream) = kcp_config(&a.kcp)?;
    let cfg = a.admission.apply(cfg).receive_hold(
        Some(Duration::from_micros(a.receive_hold_us.into())).filter(|d| !d.is_zero()),
    );
    let l = bind_listener(listen, cfg, a.sockets)
        .await
        .map_err(|e| format!("bind {listen}: {e}"))?;
    install_stats_signal();
    eprintln!("listening {}", l.local_addr());
    let l = std::sync::Arc::new(l);
    let every = a.stats.filter(|d| !d.is_zero());
    let l2 = l.clone();
    let mut refusals = kcp_mio::cli::RefusalWatch::new(
        a.admission.clone(),
        Duration::from_secs(5),
        std::time::Instant::now(),
    );
    tokio::spawn(async move {
        // Every `--stats` interval, and (unix) whenever SIGUSR1 arrived: a script's way to
        // read the counters once, at the end of a run, without disturbing it before.
        let poll = Duration::from_millis(50);
        let mut next = every.map(|e| tokio::time::Instant::now() + e);
        loop {
            tokio::time::sleep(poll).await;
            // Peers turned away at the admission limits: KCP tells them nothing.
            let now = std::time::Instant::now();
            if refusals.due(now) {
                if let Some(line) = refusals.check(l2.own_stats().refused, now) {
                    eprintln!("{line}");
                }
            }
            let due = next.is_some_and(|n| tokio::time::Instant::now() >= n);
            if due || stats_requested() {
                if let (Some(n), Some(e)) = (next.as_mut(), every) {
                    *n += e;
                }
                // Summing the sessions' counters holds each driver's lock: say for how long.
                let t = std::time::Instant::now();
                let (ep, sock) = (l2.stats(), l2.socket_stats());
                let took = t.elapsed().as_micros();
                eprintln!("stats {ep:?} {sock:?} took_us {took}");
            }
        }
    });
    let json = a.json;
    loop {
        // Only a failed socket ends this loop; sessions that ended unaccepted are skipped.
        let (mut s, peer) = l.accept().await.map_err(|e| e.to_string())?;
        if a.sockets > 1 {
            // How the kernel spread the peers (benchmarks of several drivers report it).
            eprintln!("sessions per socket {:?}", l.sessions_per_socket());
        }
        tokio::spawn(async move {
            match perf::serve(&mut s, !stream).await {
                // Dropping the stream delivers the tail (the answer, the CRC) before the
                // session goes (KcpConfig::linger).
                Ok(r) => print_report("server", &r, true, json),
                Err(e) => eprintln!("session from {peer}: {e}"),
            }
        });
    }
}

#[cfg(unix)]
static STATS_WANTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_sigusr1(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STATS_WANTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Makes SIGUSR1 ask the server for one line of counters.
fn install_stats_signal() {
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the function
    // pointer stays valid for the life of the process.
    unsafe {
        libc::signal(
            libc::SIGUSR1,
            on_sigusr1 as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// Whether SIGUSR1 arrived since the last call.
fn stats_requested() -> bool {
    #[cfg(unix)]
    let wanted = STATS_WANTED.swap(false, std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(unix))]
    let wanted = false;
    wanted
}

/// One plain socket, or `sockets` SO_REUSEPORT sockets with a driver each.
async fn bind_listener(
    listen: SocketAddr,
    cfg: KcpConfig,
    sockets: u16,
) -> std::io::Result<KcpListener> {
    if sockets <= 1 {
        return KcpListener::bind(listen, cfg).await;
    }
    #[cfg(unix)]
    let l = KcpListener::bind_reuseport(listen, cfg, sockets.into()).await;
    #[cfg(not(unix))]
    let l = Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "--sockets > 1 needs SO_REUSEPORT (unix)",
    ));
    l
}

async fn client(a: ClientArgs) -> Result<bool, String> {
    let connect = resolve(&a.connect, "127.0.0.1").await?;
    let test = Test::from_name(&a.test).ok_or("--test: echo, sink or source")?;
    let msg = a
        .msg
        .unwrap_or(if test == Test::Echo { 1024 } else { 16 << 10 });
    if msg == 0 || msg > 1 << 30 {
        return Err("--msg must be between 1 and 1G".into());
    }
    if a.rate > 0.0 && test != Test::Echo {
        return Err("--rate applies to --test echo".into());
    }
    if a.bytes == 0 && a.duration.is_none() {
        return Err("--bytes 0 needs --duration".into());
    }
    let (cfg, stream) = kcp_config(&a.kcp)?;
    let json = a.json;
    let conns = a.conns as usize;
    use std::io::IsTerminal;
    let show_progress = !json && conns == 1 && std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    // --timeout: how long a read or write may wait without progress (as the Go peer).
    let t = (!a.timeout.is_zero()).then_some(a.timeout);
    let cfg = cfg.read_timeout(t).write_timeout(t);
    let bind = if connect.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let mut connectors = Vec::new();
    for _ in 0..a.client_sockets {
        let c = kcp_tokio::KcpConnector::bind(bind, cfg.clone())
            .await
            .map_err(|e| format!("bind {bind}: {e}"))?;
        connectors.push(std::sync::Arc::new(c));
    }
    let mut tasks = Vec::new();
    for i in 0..conns {
        let cfg = cfg.clone();
        let connector = connectors.get(i % connectors.len().max(1)).cloned();
        let delay = a.ramp.mul_f64(i as f64 / conns as f64);
        let (bytes, rate, duration) = (a.bytes, a.rate, a.duration);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut s = match connector {
                Some(c) => c.connect(connect).await?,
                None => KcpStream::connect(connect, cfg).await?,
            };
            let progress = show_progress.then(|| spawn_progress(s.monitor()));
            let msg = if stream {
                msg as usize
            } else {
                (msg as usize).min(s.mss())
            };
            let pace = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
            let r = match duration {
                Some(d) => perf::client_for(&mut s, test, msg, !stream, pace, d).await,
                None => perf::client_paced(&mut s, test, bytes, msg, !stream, pace).await,
            };
            if let Some(p) = progress {
                p.abort();
                eprint!("\r{:70}\r", "");
            }
            r
        }));
    }
    let mut ok = true;
    let mut total = Report {
        test,
        bytes: 0,
        seconds: 0.0,
        rtt: Default::default(),
        retrans: 0,
        fec_recovered: 0,
    };
    for t in tasks {
        match t.await {
            Ok(Ok(r)) => {
                print_report("client", &r, true, json);
                total.bytes += r.bytes;
                total.retrans += r.retrans;
                total.fec_recovered += r.fec_recovered;
                total.rtt.merge(&r.rtt);
            }
            Ok(Err(e)) => {
                eprintln!("session failed: {e}");
                ok = false;
            }
            Err(e) => {
                eprintln!("session task failed: {e}");
                ok = false;
            }
        }
    }
    if conns > 1 || json {
        // One summary line per run (all sessions), as the Go peer prints.
        total.seconds = started.elapsed().as_secs_f64();
        if json {
            let (cpu, rss) = resources();
            let line = total.json("client", ok, cpu, rss, "");
            println!(
                "{},\"summary\":true,\"conns\":{conns}}}",
                &line[..line.len() - 1]
            );
        } else {
            print!("total ({conns} conns): ");
            print_report("client", &total, ok, false);
        }
    }
    Ok(ok)
}

/// A one-line progress display on stderr (terminals only), updated twice a second.
fn spawn_progress(m: kcp_tokio::StreamMonitor) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Some(st) = m.stats() else { return };
            let secs = start.elapsed().as_secs_f64();
            let moved = st.kcp.bytes_sent + st.kcp.bytes_received;
            eprint!(
                "\r{:>8.1} MB in {:>5.1} s ({:>7.2} MB/s), rtt {:>4} ms, retrans {}   ",
                moved as f64 / 1e6,
                secs,
                moved as f64 / 1e6 / secs,
                st.srtt_ms,
                st.kcp.retrans_segs
            );
        }
    })
}

async fn proxy(a: ProxyArgs) -> Result<bool, String> {
    let listen = resolve(&a.listen, "0.0.0.0").await?;
    let forward = resolve(&a.forward, "127.0.0.1").await?;
    let up = ImpairConfig {
        loss: a.loss / 100.0,
        delay_ms: a.delay,
        jitter_ms: a.jitter,
        reorder: a.reorder / 100.0,
        dup: a.dup / 100.0,
        rate_mbps: (a.rate_mbps > 0.0).then_some(a.rate_mbps),
        seed: a.seed,
        ..ImpairConfig::default()
    };
    let down = ImpairConfig {
        seed: a.seed ^ 0x5EED,
        ..up.clone()
    };
    let p = Proxy::bind(listen, forward, up, down)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("listening {}", p.local_addr());
    p.run().await;
    Ok(true)
}

async fn demo() -> Result<bool, String> {
    println!(
        "kcp-perf demo: a KCP server, a userspace link with 5% loss and 20 ms delay each way,"
    );
    println!("and a client, in one process (fast3, FEC 10/3, AES, windows 256).\n");
    let engine = Config {
        mtu: 1350,
        ..Config::fast3().with_windows(256, 256)
    };
    let cfg = KcpConfig::new(engine)
        .fec(10, 3)
        .crypt("aes", "demo key")
        .map_err(|e| e.to_string())?;
    let l = KcpListener::bind("127.0.0.1:0", cfg.clone())
        .await
        .map_err(|e| e.to_string())?;
    let server_addr = l.local_addr();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = perf::serve(&mut s, false).await;
            });
        }
    });
    let link = ImpairConfig {
        loss: 0.05,
        delay_ms: 20,
        seed: 1,
        ..ImpairConfig::default()
    };
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().map_err(|_| "addr")?,
        server_addr,
        link.clone(),
        ImpairConfig { seed: 2, ..link },
    )
    .await
    .map_err(|e| e.to_string())?;
    let via = proxy.local_addr();
    let handle = proxy.spawn();
    let mut ok = true;
    for (test, bytes, msg) in [
        (Test::Echo, 64 * 200, 64),
        (Test::Sink, 4 << 20, 16 << 10),
        (Test::Source, 4 << 20, 16 << 10),
    ] {
        let mut s = KcpStream::connect(via, cfg.clone())
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(
            Duration::from_secs(120),
            perf::client(&mut s, test, bytes, msg, false),
        )
        .await
        {
            Ok(Ok(r)) => print_report("client", &r, true, false),
            Ok(Err(e)) => {
                println!("{}: FAILED: {e}", test.name());
                ok = false;
            }
            Err(_) => {
                println!("{}: FAILED: timed out", test.name());
                ok = false;
            }
        }
    }
    let st = handle.stats();
    println!(
        "\nlink: {} datagrams up ({} lost), {} down ({} lost)",
        st.up.received, st.up.lost, st.down.received, st.down.lost
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match cli.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kcp-perf: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let r = rt.block_on(async {
        match cli.cmd {
            Cmd::Server(a) => server(a).await,
            Cmd::Client(a) => client(a).await,
            Cmd::Proxy(a) => proxy(a).await,
            Cmd::Demo => demo().await,
        }
    });
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kcp-perf: {e}");
            ExitCode::from(2)
        }
    }
}
