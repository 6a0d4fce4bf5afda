//! Many concurrent TCP connections through a tunnel, each echoing small messages, with the
//! echo latency distribution and every byte checked. Two roles:
//!
//! ```text
//! tunnel-load echo 127.0.0.1:7000            # TCP echo target (runs until killed)
//! tunnel-load run 127.0.0.1:12948 --conns 1000 --secs 30
//! ```
//!
//! `run` opens `--conns` TCP connections to the address (a tunnel client's listen port), checks
//! each with one echo, waits until every connection is up (or has failed), then for `--secs`
//! seconds each connection sleeps a random gap in `--gap-ms MIN..MAX`, writes one message of a
//! random size in `--size MIN..MAX` bytes (content from a per-connection generator) and reads the
//! echo back, timing write-to-last-byte and comparing the bytes. It prints one summary line
//! (`key=value` pairs: connections up and failed, messages, mismatches, errors, latency
//! percentiles in ms) and exits 1 when any connection failed, any echo was wrong or late, or
//! nothing was measured.
//!
//! Used by `interop/bench-tunnel-conns.sh` for both our tunnel and kcptun's, so both pairs
//! see the same load generator and the same echo target.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

/// The load's shape, from the command line.
#[derive(Clone, Debug)]
struct Load {
    addr: SocketAddr,
    conns: usize,
    secs: f64,
    size: (usize, usize),
    gap_ms: (u64, u64),
    seed: u64,
    timeout: Duration,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Echo latencies in microseconds.
    lat: Vec<u32>,
    bytes: u64,
    mismatches: u64,
    /// The error that ended the connection early, if any.
    error: Option<String>,
}

/// SplitMix64: a small, seedable generator for sizes, gaps and payload bytes.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes `msg`, reads the echo into `back` and returns the round trip, or what went wrong.
async fn echo_once(
    s: &mut TcpStream,
    msg: &[u8],
    back: &mut [u8],
    timeout: Duration,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    let io = async {
        s.write_all(msg).await?;
        s.read_exact(back).await?;
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(timeout, io).await {
        Ok(Ok(())) => Ok(t0.elapsed()),
        Ok(Err(e)) => Err(format!("echo: {e}")),
        Err(_) => Err(format!("echo: no reply within {timeout:?}")),
    }
}

/// One connection: connect, one checking echo, the shared start, then the timed load.
async fn conn(
    id: usize,
    load: Arc<Load>,
    start: Arc<Barrier>,
    up: Arc<AtomicU64>,
    deadline: Arc<std::sync::OnceLock<Instant>>,
) -> Tally {
    let mut t = Tally::default();
    let mut rng = Mix(load.seed ^ (id as u64).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut msg = vec![0u8; load.size.1];
    let mut back = vec![0u8; load.size.1];
    let opened = async {
        let mut s = tokio::time::timeout(load.timeout, TcpStream::connect(load.addr))
            .await
            .map_err(|_| format!("connect: no answer within {:?}", load.timeout))?
            .map_err(|e| format!("connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        rng.fill(&mut msg[..64]);
        echo_once(&mut s, &msg[..64], &mut back[..64], load.timeout).await?;
        if back[..64] != msg[..64] {
            return Err("first echo: wrong bytes".to_string());
        }
        Ok::<_, String>(s)
    }
    .await;
    let ok = opened.is_ok();
    if ok {
        up.fetch_add(1, Ordering::Relaxed);
    }
    // Every connection waits here, failed ones too, so the load starts once all are settled.
    start.wait().await;
    let mut s = match opened {
        Ok(s) => s,
        Err(e) => {
            t.error = Some(e);
            return t;
        }
    };
    let end = *deadline.get_or_init(|| Instant::now() + Duration::from_secs_f64(load.secs));
    // The first gap anywhere in 0..max spreads the connections over the interval.
    let mut gap = Duration::from_millis(rng.range(0, load.gap_ms.1));
    loop {
        let wake = tokio::time::Instant::now() + gap;
        if Instant::now() + gap >= end {
            break;
        }
        tokio::time::sleep_until(wake).await;
        let n = rng.range(load.size.0 as u64, load.size.1 as u64) as usize;
        rng.fill(&mut msg[..n]);
        match echo_once(&mut s, &msg[..n], &mut back[..n], load.timeout).await {
            Ok(d) => {
                if back[..n] != msg[..n] {
                    t.mismatches += 1;
                    t.error = Some(format!("echo of {n} bytes came back different"));
                    return t;
                }
                t.lat.push(d.as_micros().min(u128::from(u32::MAX)) as u32);
                t.bytes += n as u64;
            }
            Err(e) => {
                t.error = Some(e);
                return t;
            }
        }
        gap = Duration::from_millis(rng.range(load.gap_ms.0, load.gap_ms.1));
    }
    t
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

async fn run(load: Load) -> ExitCode {
    let load = Arc::new(load);
    let start = Arc::new(Barrier::new(load.conns + 1));
    let up = Arc::new(AtomicU64::new(0));
    let deadline = Arc::new(std::sync::OnceLock::new());
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..load.conns)
        .map(|id| {
            tokio::spawn(conn(
                id,
                load.clone(),
                start.clone(),
                up.clone(),
                deadline.clone(),
            ))
        })
        .collect();
    start.wait().await;
    let setup = t0.elapsed();
    let mut lat = Vec::new();
    let (mut bytes, mut mismatches, mut failed) = (0u64, 0u64, 0usize);
    let mut errors: Vec<(usize, String)> = Vec::new();
    for (id, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(t) => {
                lat.extend_from_slice(&t.lat);
                bytes += t.bytes;
                mismatches += t.mismatches;
                if let Some(e) = t.error {
                    failed += 1;
                    errors.push((id, e));
                }
            }
            Err(e) => {
                failed += 1;
                errors.push((id, format!("task: {e}")));
            }
        }
    }
    lat.sort_unstable();
    for (id, e) in errors.iter().take(10) {
        eprintln!("tunnel-load: connection {id}: {e}");
    }
    if errors.len() > 10 {
        eprintln!("tunnel-load: ... and {} more failed", errors.len() - 10);
    }
    let up = up.load(Ordering::Relaxed);
    println!(
        "conns={} up={} failed={} setup_s={:.2} msgs={} bytes={} mismatches={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2}",
        load.conns,
        up,
        failed,
        setup.as_secs_f64(),
        lat.len(),
        bytes,
        mismatches,
        pct(&lat, 50.0),
        pct(&lat, 90.0),
        pct(&lat, 99.0),
        pct(&lat, 99.9),
        lat.last().map_or(f64::NAN, |&v| f64::from(v) / 1000.0),
    );
    if failed > 0 || mismatches > 0 || lat.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn echo(addr: SocketAddr) -> std::io::Result<()> {
    let l = TcpListener::bind(addr).await?;
    loop {
        let (mut s, _) = l.accept().await?;
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("tunnel-load: {msg}");
    eprintln!(
        "usage: tunnel-load echo ADDR\n       tunnel-load run ADDR [--conns N] [--secs S] \
         [--size MIN..MAX] [--gap-ms MIN..MAX] [--seed N] [--timeout S]"
    );
    ExitCode::from(2)
}

fn pair<T: std::str::FromStr + PartialOrd>(s: &str) -> Option<(T, T)> {
    let (a, b) = s.split_once("..")?;
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(role), Some(addr)) = (args.first(), args.get(1)) else {
        return usage("a role and an address are needed");
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return usage(&format!("{addr:?} is not an ip:port"));
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tunnel-load: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match role.as_str() {
        "echo" => match rt.block_on(echo(addr)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tunnel-load: echo on {addr}: {e}");
                ExitCode::from(1)
            }
        },
        "run" => {
            let mut load = Load {
                addr,
                conns: 1000,
                secs: 30.0,
                size: (64, 1024),
                gap_ms: (100, 1000),
                seed: 1,
                timeout: Duration::from_secs(10),
            };
            let mut it = args[2..].iter();
            while let Some(flag) = it.next() {
                let Some(v) = it.next() else {
                    return usage(&format!("{flag} needs a value"));
                };
                let ok = match flag.as_str() {
                    "--conns" => v.parse().map(|n| load.conns = n).is_ok() && load.conns > 0,
                    "--secs" => v.parse().map(|s| load.secs = s).is_ok() && load.secs > 0.0,
                    "--size" => pair(v).map(|p| load.size = p).is_some() && load.size.0 >= 1,
                    "--gap-ms" => pair(v).map(|p| load.gap_ms = p).is_some(),
                    "--seed" => v.parse().map(|s| load.seed = s).is_ok(),
                    "--timeout" => v
                        .parse::<f64>()
                        .ok()
                        .filter(|s| *s > 0.0 && *s < 1e6)
                        .map(|s| load.timeout = Duration::from_secs_f64(s))
                        .is_some(),
                    _ => return usage(&format!("unknown flag {flag}")),
                };
                if !ok {
                    return usage(&format!("{flag} {v}: bad value"));
                }
            }
            // The checking echo is 64 bytes, so the buffers hold at least that.
            load.size.1 = load.size.1.max(64);
            rt.block_on(run(load))
        }
        r => usage(&format!("unknown role {r:?}")),
    }
}
