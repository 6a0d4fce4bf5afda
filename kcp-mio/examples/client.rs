//! A kcp-perf client on kcp-mio: one thread, one `mio::Poll` loop, `--conns` sessions that
//! share one UDP socket (told apart by conversation id). It drives kcp-perf servers (this
//! crate's `server` example, kcp-tokio's `kcp-perf server`, the Go peer) and checks every
//! byte:
//!
//! ```text
//! cargo run --release -p kcp-mio --example client -- --connect 127.0.0.1:4000 \
//!     --crypt aes --mode fast3 --test sink --bytes 64M
//! ```
//!
//! Flags: `--connect ADDR`, `--test echo|sink|source`, `--bytes SIZE` (default 1M), `--msg
//! SIZE` (default 1K for echo, 16K otherwise; capped at the mss in message mode), `--conns N`,
//! `--timeout SECS` (a session fails after that long without progress, default 30), `--json`,
//! and kcp-perf's shared flags. kcp-go's listener keeps one session per source address, so
//! against the Go server use `--conns 1`.

mod common;

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kcp_mio::perf::{self, ClientSession, Report, Status, Test};
use kcp_mio::{Endpoint, Event, SessionId};
use lexopt::prelude::*;
use mio::{Events, Poll, Token};

const USAGE: &str = "usage: client --connect ADDR --test echo|sink|source [--bytes SIZE] [--msg SIZE] [--conns N] [--timeout SECS] [--json] [shared flags]";

struct Opts {
    connect: SocketAddr,
    test: Test,
    bytes: u64,
    msg: Option<u64>,
    conns: usize,
    timeout: Duration,
    json: bool,
    kcp: common::KcpFlags,
}

fn parse() -> Result<Opts, lexopt::Error> {
    let mut connect = None;
    let mut test = None;
    let mut o = Opts {
        connect: "127.0.0.1:4000".parse().map_err(|_| "default address")?,
        test: Test::Echo,
        bytes: 1 << 20,
        msg: None,
        conns: 1,
        timeout: Duration::from_secs(30),
        json: false,
        kcp: common::KcpFlags::default(),
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        let name = match arg {
            Long(n) => n.to_string(),
            Short('h') => "help".to_string(),
            other => return Err(other.unexpected()),
        };
        if o.kcp.take(&name, &mut p)? {
            continue;
        }
        match name.as_str() {
            "connect" => connect = Some(p.value()?.parse()?),
            "test" => {
                let v: String = p.value()?.parse()?;
                test = Some(
                    Test::from_name(&v)
                        .ok_or(format!("--test: expected echo, sink or source, got {v:?}"))?,
                );
            }
            "bytes" => o.bytes = common::parse_size(&p.value()?.parse::<String>()?)?,
            "msg" => o.msg = Some(common::parse_size(&p.value()?.parse::<String>()?)?),
            "conns" => o.conns = p.value()?.parse()?,
            "timeout" => o.timeout = Duration::from_secs_f64(p.value()?.parse()?),
            "json" => o.json = common::boolean(&mut p)?,
            "help" => {
                println!("{USAGE}\n{}", common::SHARED_USAGE);
                std::process::exit(0);
            }
            _ => return Err(Long(&name).unexpected()),
        }
    }
    o.connect = connect.ok_or("--connect is required")?;
    o.test = test.ok_or("--test is required")?;
    Ok(o)
}

struct Conn {
    id: SessionId,
    perf: ClientSession,
    last_progress: Instant,
    moved: u64,
    result: Option<Result<Report, io::Error>>,
}

fn print_report(r: &Report, conn: Option<usize>, json: bool, ok: bool) {
    if json {
        println!(
            "{{\"role\":\"client\",\"test\":\"{}\",\"bytes\":{},\"seconds\":{:.6},\"mb_per_s\":{:.3},\"mbit_per_s\":{:.3},\"rtt_p50_us\":{},\"rtt_p99_us\":{},\"rtt_max_us\":{},\"retrans\":{},\"fec_recovered\":{},\"ok\":{ok},{}}}",
            r.test.name(),
            r.bytes,
            r.seconds,
            r.mbps(),
            r.mbps() * 8.0,
            r.rtt_us(0.5),
            r.rtt_us(0.99),
            r.rtts_us.last().copied().unwrap_or(0),
            r.retrans,
            r.fec_recovered,
            match conn {
                Some(c) => format!("\"conn\":{c}"),
                None => "\"summary\":true".to_string(),
            }
        );
    } else {
        let who = conn.map_or("total".to_string(), |c| format!("conn {c}"));
        println!("{who}: {}", r.line("client", ok));
    }
}

fn run(o: Opts) -> io::Result<bool> {
    let config = o
        .kcp
        .config()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let message_mode = !o.kcp.stream;
    let bind: SocketAddr = if o.connect.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| io::ErrorKind::InvalidInput)?;

    let mut poll = Poll::new()?;
    let mut ep = Endpoint::client(bind, &config, poll.registry(), Token(0))?;
    let mut buf = vec![0u8; perf::READ_BUF];
    let default_msg = if o.test == Test::Echo { 1024 } else { 16 << 10 };
    let mut conns = Vec::with_capacity(o.conns.max(1));
    for _ in 0..o.conns.max(1) {
        let id = ep.connect(o.connect)?;
        let mut msg = o.msg.unwrap_or(default_msg) as usize;
        if message_mode {
            // kcp-go keeps message boundaries only within one segment.
            msg = msg.min(ep.session_info(id).map_or(msg, |s| s.mss));
        }
        conns.push(Conn {
            id,
            perf: ClientSession::new(o.test, o.bytes, msg, message_mode),
            last_progress: Instant::now(),
            moved: 0,
            result: None,
        });
    }
    // Session ids to positions, to find a connection from an event without a scan.
    let index: std::collections::HashMap<SessionId, usize> =
        conns.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    let started = Instant::now();
    let mut left = conns.len();
    for c in &mut conns {
        drive(&mut ep, c, &mut buf, &mut left);
    }

    let mut events = Events::with_capacity(1024);
    let mut next_check = Instant::now() + Duration::from_millis(250);
    while left > 0 {
        let until_check = next_check.saturating_duration_since(Instant::now());
        let timeout = ep
            .poll_timeout()
            .map_or(until_check, |t| t.min(until_check));
        match poll.poll(&mut events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            ep.handle_event(event)?;
        }
        ep.handle_timeout()?;
        while let Some(event) = ep.poll_event() {
            match event {
                Event::Readable(id) | Event::Writable(id) => {
                    if let Some(&i) = index.get(&id) {
                        drive(&mut ep, &mut conns[i], &mut buf, &mut left);
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
        if Instant::now() >= next_check {
            // --timeout: a session that made no progress for that long fails.
            next_check = Instant::now() + Duration::from_millis(250);
            for c in conns.iter_mut().filter(|c| c.result.is_none()) {
                if c.perf.moved() != c.moved {
                    c.moved = c.perf.moved();
                    c.last_progress = Instant::now();
                } else if c.last_progress.elapsed() > o.timeout {
                    c.result = Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no progress for {:?} at offset {}", o.timeout, c.moved),
                    )));
                    let _ = ep.close(c.id);
                    left -= 1;
                }
            }
        }
    }
    // The peer needs nothing more from us: close at once (kcp-go's client does the same).
    for c in &conns {
        let _ = ep.close(c.id);
    }
    ep.flush();

    let mut all_ok = true;
    let mut total = Report {
        test: o.test,
        bytes: 0,
        seconds: started.elapsed().as_secs_f64(),
        rtts_us: Vec::new(),
        retrans: 0,
        fec_recovered: 0,
    };
    for (k, c) in conns.into_iter().enumerate() {
        match c.result {
            Some(Ok(r)) => {
                print_report(&r, Some(k), o.json, true);
                total.bytes += r.bytes;
                total.retrans += r.retrans;
                total.fec_recovered += r.fec_recovered;
                total.rtts_us.extend_from_slice(&r.rtts_us);
            }
            Some(Err(e)) => {
                eprintln!("conn {k}: {e}");
                all_ok = false;
            }
            None => all_ok = false,
        }
    }
    if o.conns > 1 || o.json {
        total.rtts_us.sort_unstable();
        print_report(&total, None, o.json, all_ok);
    }
    Ok(all_ok)
}

fn drive(ep: &mut Endpoint, c: &mut Conn, buf: &mut [u8], left: &mut usize) {
    if c.result.is_some() {
        return;
    }
    match c.perf.drive(ep, c.id, buf) {
        Status::Pending => return,
        Status::Done(r) => c.result = Some(Ok(r)),
        Status::Failed(e) => c.result = Some(Err(e)),
    }
    *left -= 1;
}

fn main() -> ExitCode {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("client: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::FAILURE
        }
    }
}
