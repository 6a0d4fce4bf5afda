//! A kcp-perf client on kcp-mio: one thread, one `mio::Poll` loop, `--conns` sessions that
//! share one UDP socket (told apart by conversation id). It drives kcp-perf servers (this
//! crate's `server` example, kcp-tokio's `kcp-perf server`, the Go peer) and checks every
//! byte by the echo or the CRC:
//!
//! ```text
//! cargo run --release -p kcpx-mio --example client -- --connect :4000 \
//!     --crypt aes --mode fast3 --test sink --duration 10
//! ```
//!
//! The flags are `kcp-perf client`'s (`--help` lists them): `--connect` (default `:4000`,
//! localhost), `--test`, `--bytes` or `--duration`, `--msg` (capped at the mss in message
//! mode), `--conns`, `--ramp`, `--rate`, `--timeout`, `--json` and the shared KCP flags. The
//! payload is a seeded random stream. kcp-go's listener keeps one session per source
//! address, so against the Go server use `--conns 1`. Exit code 0: every session verified;
//! 1: one failed (reasons on stderr); 2: bad flags or settings, or the socket failed.

use kcp_mio::cli;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use kcp_mio::perf::{self, ClientSession, Report, Status, Test};
use kcp_mio::{Endpoint, Event, SessionId};
use mio::{Events, Poll, Token};

#[derive(Parser)]
#[command(
    name = "client",
    version,
    about = "kcp-perf client on one mio loop: echo, sink or source sessions against a server"
)]
struct Args {
    /// Server address (`host:port`; `:PORT` = localhost).
    #[arg(long, default_value = ":4000")]
    connect: String,
    /// The test to run.
    #[arg(long, value_parser = ["echo", "sink", "source"])]
    test: String,
    /// Bytes per session (suffix K, M, G: powers of 1024).
    #[arg(long, default_value = "1M", value_parser = cli::parse_size)]
    bytes: u64,
    /// Message (echo) or write size; default 1K for echo, 16K otherwise; at most 1M.
    #[arg(long, value_parser = cli::parse_size)]
    msg: Option<u64>,
    /// Concurrent sessions (sharing one UDP socket).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    conns: u32,
    /// Spread the start of the sessions evenly over this many seconds.
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    ramp: Duration,
    /// Echo messages per second per session (paced latency test; 0 = back to back).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    rate: f64,
    /// Run each session this many seconds (or `inf`) instead of --bytes.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seconds a session may go without progress before it fails (0: no limit).
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    timeout: Duration,
    /// One JSON object per session and a summary on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kcp: cli::KcpArgs,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("{s}: seconds must be between 0 and 1e9"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Seconds, or `inf`: until interrupted.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if matches!(s, "inf" | "infinity") {
        return Ok(Duration::MAX);
    }
    let d = parse_secs(s)?;
    if d.is_zero() {
        return Err("--duration must be positive (or inf)".into());
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s}: must be a finite number >= 0"));
    }
    Ok(v)
}

/// One session of the run.
struct Conn {
    id: SessionId,
    perf: ClientSession,
    /// The wake-up time queued for it, so that it is queued once.
    timer: Option<Instant>,
    last_progress: Instant,
    moved: u64,
    result: Option<io::Result<Report>>,
}

/// How often sessions are checked for `--timeout`.
const CHECK: Duration = Duration::from_millis(250);

fn run(a: Args) -> Result<bool, String> {
    let connect = cli::resolve(&a.connect, "127.0.0.1")?;
    let test = Test::from_name(&a.test).ok_or("--test: echo, sink or source")?;
    let msg = a
        .msg
        .unwrap_or(if test == Test::Echo { 1024 } else { 16 << 10 });
    if msg == 0 || msg > u64::from(perf::MAX_FRAME) {
        return Err("--msg must be between 1 and 1M (the largest frame)".into());
    }
    if a.rate > 0.0 && test != Test::Echo {
        return Err("--rate applies to --test echo".into());
    }
    if a.bytes == 0 && a.duration.is_none() {
        return Err("--bytes 0 needs --duration".into());
    }
    let config = a.kcp.config()?;
    let message_mode = !a.kcp.stream();
    let bind: SocketAddr = if connect.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };

    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut ep = Endpoint::client(bind, &config, poll.registry(), Token(0))
        .map_err(|e| format!("bind {bind}: {e}"))?;
    let started = Instant::now();
    let pace = (a.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / a.rate));
    let n = a.conns as usize;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let id = ep.connect(connect).map_err(|e| e.to_string())?;
        let mut msg = msg as usize;
        if message_mode {
            // kcp-go keeps message boundaries only within one segment.
            let mss = ep.session_info(id).map_or(msg, |s| s.mss);
            if msg > mss && i == 0 {
                eprintln!("note: --msg {msg} capped at the mss, {mss} bytes (message mode)");
            }
            msg = msg.min(mss);
        }
        let perf = match a.duration {
            Some(d) => ClientSession::for_duration(test, msg, message_mode, d),
            None => ClientSession::new(test, a.bytes, msg, message_mode),
        };
        // KCP has no handshake: a session sends nothing before its start time.
        let at = started + a.ramp.mul_f64(i as f64 / n as f64);
        conns.push(Conn {
            id,
            perf: perf.paced(pace).start_at(at),
            timer: None,
            last_progress: at,
            moved: 0,
            result: None,
        });
    }
    // Session ids to positions, to find a connection from an event without a scan.
    let index: HashMap<SessionId, usize> =
        conns.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    // Sessions' own wake-up times (start, paced echo, end of a --duration run), earliest first.
    let mut timers = BinaryHeap::new();
    let mut buf = vec![0u8; perf::READ_BUF];
    let mut left = conns.len();
    for (i, c) in conns.iter_mut().enumerate() {
        drive(&mut ep, c, i, &mut buf, &mut timers, &mut left);
    }

    let mut events = Events::with_capacity(1024);
    let mut next_check = Instant::now() + CHECK;
    while left > 0 {
        // 1. Sleep until the socket is ready, a session timer is due, a session's own time
        //    comes, or the next --timeout check.
        let wake = timers
            .peek()
            .map_or(next_check, |Reverse((t, _))| next_check.min(*t));
        let until = wake.saturating_duration_since(Instant::now());
        let timeout = ep.poll_timeout().map_or(until, |t| t.min(until));
        match poll.poll(&mut events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r.map_err(|e| e.to_string())?,
        }
        // 2. Let the endpoint read, write and run its timers.
        for event in events.iter() {
            ep.handle_event(event).map_err(|e| e.to_string())?;
        }
        ep.handle_timeout().map_err(|e| e.to_string())?;
        // 3. Act on what changed.
        while let Some(event) = ep.poll_event() {
            match event {
                Event::Readable(id) | Event::Writable(id) => {
                    if let Some(&i) = index.get(&id) {
                        drive(&mut ep, &mut conns[i], i, &mut buf, &mut timers, &mut left);
                    }
                }
                Event::Closed(id, reason) => {
                    if let Some(&i) = index.get(&id) {
                        let c = &mut conns[i];
                        if c.result.is_none() {
                            c.result =
                                Some(Err(io::Error::other(format!("session ended: {reason}"))));
                            left -= 1;
                        }
                    }
                }
                Event::Incoming => {}
            }
        }
        // 4. Sessions whose own time came.
        let now = Instant::now();
        while let Some(&Reverse((t, i))) = timers.peek() {
            if t > now {
                break;
            }
            timers.pop();
            drive(&mut ep, &mut conns[i], i, &mut buf, &mut timers, &mut left);
        }
        // 5. --timeout: a session that made no progress for that long fails.
        if now >= next_check {
            next_check = now + CHECK;
            for c in conns.iter_mut().filter(|c| c.result.is_none()) {
                if c.perf.moved() != c.moved {
                    c.moved = c.perf.moved();
                    c.last_progress = now;
                } else if !a.timeout.is_zero()
                    && now.saturating_duration_since(c.last_progress) > a.timeout
                {
                    c.result = Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no progress for {:?} at offset {}", a.timeout, c.moved),
                    )));
                    let _ = ep.close(c.id);
                    left -= 1;
                }
            }
        }
    }
    // The server needs nothing more from us: close at once (kcp-go's client does the same).
    for c in &conns {
        let _ = ep.close(c.id);
    }
    ep.flush();

    let mut ok = true;
    let mut total = Report {
        test,
        bytes: 0,
        seconds: started.elapsed().as_secs_f64(),
        rtt: Default::default(),
        retrans: 0,
        fec_recovered: 0,
    };
    for (k, c) in conns.into_iter().enumerate() {
        match c.result {
            Some(Ok(r)) => {
                print_report(&r, true, a.json, &format!(",\"conn\":{k}"));
                total.bytes += r.bytes;
                total.retrans += r.retrans;
                total.fec_recovered += r.fec_recovered;
                total.rtt.merge(&r.rtt);
            }
            Some(Err(e)) => {
                eprintln!("session {k} failed: {e}");
                ok = false;
            }
            None => ok = false,
        }
    }
    if n > 1 || a.json {
        // One summary line per run (all sessions), as kcp-perf and the Go peer print.
        if !a.json {
            print!("total ({n} conns): ");
        }
        print_report(
            &total,
            ok,
            a.json,
            &format!(",\"summary\":true,\"conns\":{n}"),
        );
    }
    Ok(ok)
}

fn print_report(r: &Report, ok: bool, json: bool, extra: &str) {
    if json {
        let (cpu, rss) = cli::resources();
        println!("{}", r.json("client", ok, cpu, rss, extra));
    } else {
        println!("{}", r.line("client", ok));
    }
}

/// Runs a session as far as it can go now; records its result, or queues its wake-up time.
fn drive(
    ep: &mut Endpoint,
    c: &mut Conn,
    i: usize,
    buf: &mut [u8],
    timers: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    left: &mut usize,
) {
    if c.result.is_some() {
        return;
    }
    match c.perf.drive(ep, c.id, buf) {
        Status::Pending => {
            if let Some(t) = c.perf.wake_at().filter(|&t| c.timer != Some(t)) {
                c.timer = Some(t);
                timers.push(Reverse((t, i)));
            }
            return;
        }
        Status::Done(r) => c.result = Some(Ok(r)),
        Status::Failed(e) => c.result = Some(Err(e)),
    }
    *left -= 1;
}

fn main() -> ExitCode {
    // Bad flags: clap prints the error and the usage, exit code 2.
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::from(2)
        }
    }
}
