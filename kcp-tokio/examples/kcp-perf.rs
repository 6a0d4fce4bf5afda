//! kcp-perf: an iperf-like tool for the KCP stack (server, client, impairment proxy, demo).
//!
//! ```text
//! kcp-perf server --listen ADDR [--json]
//! kcp-perf client --connect ADDR --test echo|sink|source [--bytes SIZE] [--msg SIZE]
//!                 [--conns N] [--rate MSGS_PER_SEC] [--duration SECS] [--timeout SECS] [--json]
//! kcp-perf proxy  --listen ADDR --forward ADDR [--loss PCT] [--delay MS] [--jitter MS]
//!                 [--reorder PCT] [--dup PCT] [--rate-mbps R] [--seed S]
//! kcp-perf demo
//! shared: --crypt NAME --key KEY --datashard N --parityshard N
//!         --mode normal|fast|fast2|fast3|manual [--nodelay N --interval MS --resend N --nc N]
//!         --mtu N --sndwnd N --rcvwnd N --stream[=false] --acknodelay --sockbuf BYTES --dscp N
//! ```
//! Sizes accept K, M, G suffixes (powers of 1024). The protocol is `kcp_tokio::perf`'s; the
//! Go peer in `interop/kcpperf-go` speaks it too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use kcp_core::Config;
use kcp_tokio::impair::{ImpairConfig, Proxy};
use kcp_tokio::perf::{self, Report, Test};
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::AsyncWriteExt;

const USAGE: &str =
    "usage: kcp-perf server|client|proxy|demo [flags]  (see the file's header or README)";

struct Args {
    cmd: String,
    flags: HashMap<String, String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or(USAGE)?;
    let mut flags = HashMap::new();
    let rest: Vec<String> = it.collect();
    let mut i = 0;
    const BOOLS: [&str; 3] = ["json", "stream", "acknodelay"];
    while i < rest.len() {
        let a = rest[i].trim_start_matches('-').to_string();
        if !rest[i].starts_with('-') {
            return Err(format!("unexpected argument {:?}\n{USAGE}", rest[i]));
        }
        if let Some((k, v)) = a.split_once('=') {
            flags.insert(k.to_string(), v.to_string());
        } else if BOOLS.contains(&a.as_str()) {
            flags.insert(a, "true".into());
        } else {
            let v = rest.get(i + 1).ok_or(format!("--{a} needs a value"))?;
            flags.insert(a, v.clone());
            i += 1;
        }
        i += 1;
    }
    Ok(Args { cmd, flags })
}

impl Args {
    fn str(&mut self, k: &str, default: &str) -> String {
        self.flags.remove(k).unwrap_or_else(|| default.to_string())
    }
    fn num<T: std::str::FromStr>(&mut self, k: &str, default: T) -> Result<T, String> {
        match self.flags.remove(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{k}: not a number: {v:?}")),
        }
    }
    fn size(&mut self, k: &str, default: u64) -> Result<u64, String> {
        match self.flags.remove(k) {
            None => Ok(default),
            Some(v) => parse_size(&v).ok_or(format!("--{k}: bad size {v:?} (use e.g. 64K, 16M)")),
        }
    }
    fn bool(&mut self, k: &str, default: bool) -> Result<bool, String> {
        match self.flags.remove(k).as_deref() {
            None => Ok(default),
            Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(v) => Err(format!("--{k}: expected true or false, got {v:?}")),
        }
    }
    fn addr(&mut self, k: &str, default: &str) -> Result<SocketAddr, String> {
        let v = self.str(k, default);
        v.parse().map_err(|_| format!("--{k}: bad address {v:?}"))
    }
    fn done(&self) -> Result<(), String> {
        match self.flags.keys().next() {
            Some(k) => Err(format!("unknown flag --{k}\n{USAGE}")),
            None => Ok(()),
        }
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// The kcptun-named flags shared by server and client.
fn kcp_config(a: &mut Args) -> Result<(KcpConfig, bool), String> {
    let mode = a.str("mode", "fast");
    let mut engine = match mode.as_str() {
        "manual" => {
            let nd: u32 = a.num("nodelay", 0)?;
            Config::default().with_nodelay(
                nd != 0,
                a.num("interval", 50)?,
                a.num("resend", 0)?,
                a.num::<u32>("nc", 0)? != 0,
            )
        }
        m => Config::by_name(m).ok_or(format!(
            "--mode: unknown {m:?} (normal, fast, fast2, fast3, manual)"
        ))?,
    };
    engine.mtu = a.num("mtu", 1350)?;
    engine = engine.with_windows(a.num("sndwnd", 128)?, a.num("rcvwnd", 512)?);
    let stream = a.bool("stream", true)?;
    engine.stream = stream;
    engine.ack_nodelay = a.bool("acknodelay", false)?;
    engine
        .validate()
        .map_err(|e| format!("bad KCP settings: {e}"))?;
    let (ds, ps): (usize, usize) = (a.num("datashard", 10)?, a.num("parityshard", 3)?);
    let crypt = a.str("crypt", "aes");
    let key = a.str("key", "it's a secrect");
    let sockbuf: usize = a.num("sockbuf", 4 << 20)?;
    let dscp: u8 = a.num("dscp", 0)?;
    let cfg = KcpConfig::new(engine)
        .fec(ds, ps)
        .crypt(&crypt, &key)
        .map_err(|e| e.to_string())?
        .sockbuf(Some(sockbuf))
        .dscp((dscp != 0).then_some(dscp));
    Ok((cfg, stream))
}

/// Process CPU seconds and peak RSS (KiB) from /proc (0 where unavailable).
fn resources() -> (f64, u64) {
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    (cpu, rss)
}

fn print_report(role: &str, r: &Report, ok: bool, json: bool) {
    if json {
        let (cpu, rss) = resources();
        println!("{}", perf::json(role, r, ok, cpu, rss));
    } else {
        let rtt = if r.rtts_us.is_empty() {
            String::new()
        } else {
            format!(", rtt p50 {} us p99 {} us", r.rtt_us(0.5), r.rtt_us(0.99))
        };
        println!(
            "{role} {}: {} bytes in {:.3} s = {:.2} MB/s{rtt}, retrans {}, fec recovered {}: {}",
            r.test.name(),
            r.bytes,
            r.seconds,
            r.mbps(),
            r.retrans,
            r.fec_recovered,
            if ok { "ok" } else { "FAILED" }
        );
    }
}

async fn server(mut a: Args) -> Result<bool, String> {
    let listen = a.addr("listen", "127.0.0.1:0")?;
    let json = a.bool("json", false)?;
    let (cfg, stream) = kcp_config(&mut a)?;
    a.done()?;
    let l = KcpListener::bind(listen, cfg)
        .await
        .map_err(|e| format!("bind {listen}: {e}"))?;
    eprintln!("listening {}", l.local_addr());
    loop {
        let (mut s, peer) = l.accept().await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            match perf::serve(&mut s, !stream).await {
                Ok(r) => {
                    let _ = s.shutdown().await;
                    print_report("server", &r, true, json);
                }
                Err(e) => eprintln!("session from {peer}: {e}"),
            }
        });
    }
}

async fn client(mut a: Args) -> Result<bool, String> {
    let connect = a.addr("connect", "127.0.0.1:4000")?;
    let test = a.str("test", "");
    let test = Test::from_name(&test).ok_or(format!(
        "--test: expected echo, sink or source, got {test:?}"
    ))?;
    let bytes = a.size("bytes", 1 << 20)?;
    let msg = a.size("msg", if test == Test::Echo { 1024 } else { 16 << 10 })? as usize;
    let conns: usize = a.num("conns", 1)?;
    let rate: f64 = a.num("rate", 0.0)?;
    let json = a.bool("json", false)?;
    let (cfg, stream) = kcp_config(&mut a)?;
    let duration: f64 = a.num("duration", 0.0)?;
    let idle: f64 = a.num("timeout", 30.0)?;
    a.done()?;
    if rate > 0.0 && test != Test::Echo {
        return Err("--rate applies to --test echo".into());
    }
    use std::io::IsTerminal;
    let show_progress = !json && std::io::stderr().is_terminal();
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        // --timeout: seconds a read or write may wait without progress (as the Go peer).
        let t = (idle > 0.0).then(|| Duration::from_secs_f64(idle));
        let cfg = cfg.clone().read_timeout(t).write_timeout(t);
        tasks.push(tokio::spawn(async move {
            let mut s = KcpStream::connect(connect, cfg).await?;
            let progress = (show_progress && conns == 1).then(|| spawn_progress(s.monitor()));
            let msg = if stream { msg } else { msg.min(s.mss()) };
            let pace = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
            let r = if duration > 0.0 {
                let d = Duration::from_secs_f64(duration);
                perf::client_for(&mut s, test, msg, !stream, pace, d).await
            } else {
                perf::client_paced(&mut s, test, bytes, msg, !stream, pace).await
            };
            if let Some(p) = progress {
                p.abort();
                eprint!("\r{:60}\r", "");
            }
            let _ = s.shutdown().await;
            r
        }));
    }
    let mut ok = true;
    let started = std::time::Instant::now();
    let mut total = Report {
        test,
        bytes: 0,
        seconds: 0.0,
        rtts_us: Vec::new(),
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
                total.rtts_us.extend_from_slice(&r.rtts_us);
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
        total.rtts_us.sort_unstable();
        if json {
            let (cpu, rss) = resources();
            let line = perf::json("client", &total, ok, cpu, rss);
            println!(
                "{},\"summary\":true,\"conns\":{}}}",
                &line[..line.len() - 1],
                conns.max(1)
            );
        } else {
            print!("total ({} conns): ", conns);
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

fn impair(a: &mut Args, seed: u64) -> Result<ImpairConfig, String> {
    let pct = |v: f64| v / 100.0;
    let rate: f64 = a.num("rate-mbps", 0.0)?;
    Ok(ImpairConfig {
        loss: pct(a.num("loss", 0.0)?),
        delay_ms: a.num("delay", 0)?,
        jitter_ms: a.num("jitter", 0)?,
        reorder: pct(a.num("reorder", 0.0)?),
        dup: pct(a.num("dup", 0.0)?),
        rate_mbps: (rate > 0.0).then_some(rate),
        seed,
        ..ImpairConfig::default()
    })
}

async fn proxy(mut a: Args) -> Result<bool, String> {
    let listen = a.addr("listen", "127.0.0.1:0")?;
    let forward = a.addr("forward", "")?;
    let seed: u64 = a.num("seed", 1)?;
    let up = impair(&mut a, seed)?;
    a.done()?;
    let down = ImpairConfig {
        seed: seed ^ 0x5EED,
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
                if perf::serve(&mut s, false).await.is_ok() {
                    let _ = s.shutdown().await;
                }
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
        let _ = s.shutdown().await;
    }
    let st = handle.stats();
    println!(
        "\nlink: {} datagrams up ({} lost), {} down ({} lost)",
        st.up.received, st.up.lost, st.down.received, st.down.lost
    );
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kcp-perf: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match args.cmd.as_str() {
        "server" => server(args).await,
        "client" => client(args).await,
        "proxy" => proxy(args).await,
        "demo" => demo().await,
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kcp-perf: {e}");
            ExitCode::from(2)
        }
    }
}
