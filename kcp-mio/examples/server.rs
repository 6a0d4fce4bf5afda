//! A kcp-perf server on kcp-mio: one thread, one `mio::Poll` loop, any number of sessions on
//! one UDP socket. `kcp-perf client` (kcp-tokio's example) and the Go peer in
//! `interop/kcpperf-go` drive it:
//!
//! ```text
//! cargo run --release -p kcp-mio --example server -- --listen 127.0.0.1:4000 --crypt aes --mode fast3
//! cargo run --release -p kcp-tokio --example kcp-perf -- client --connect 127.0.0.1:4000 \
//!     --crypt aes --mode fast3 --test sink --bytes 64M
//! ```
//!
//! Flags: `--listen ADDR` (default 127.0.0.1:0; prints `listening ADDR` on stderr once bound),
//! `--json`, `--max-sessions N`, and kcp-perf's shared flags (see `examples/common`). Each
//! session runs the test its header asks for (echo, sink, source; see `kcp_mio::perf`) and
//! is then closed gracefully (its last bytes acknowledged, at most the shutdown timeout).

mod common;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use kcp_mio::perf::{self, Report, ServerSession, Status};
use kcp_mio::{Endpoint, Event, SessionId};
use lexopt::prelude::*;
use mio::{Events, Poll, Token};

const USAGE: &str = "usage: server [--listen ADDR] [--json] [--max-sessions N] [shared flags]";

struct Opts {
    listen: SocketAddr,
    json: bool,
    max_sessions: usize,
    kcp: common::KcpFlags,
}

fn parse() -> Result<Opts, lexopt::Error> {
    let mut o = Opts {
        listen: "127.0.0.1:0".parse().map_err(|_| "default address")?,
        json: false,
        max_sessions: 65_536,
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
            "listen" => o.listen = p.value()?.parse()?,
            "json" => o.json = common::boolean(&mut p)?,
            "max-sessions" => o.max_sessions = p.value()?.parse()?,
            "help" => {
                println!("{USAGE}\n{}", common::SHARED_USAGE);
                std::process::exit(0);
            }
            _ => return Err(Long(&name).unexpected()),
        }
    }
    Ok(o)
}

fn print_report(r: &Report, peer: Option<SocketAddr>, json: bool) {
    if json {
        println!(
            "{{\"role\":\"server\",\"test\":\"{}\",\"bytes\":{},\"seconds\":{:.6},\"mb_per_s\":{:.3},\"mbit_per_s\":{:.3},\"retrans\":{},\"fec_recovered\":{},\"ok\":true,\"remote\":\"{}\"}}",
            r.test.name(),
            r.bytes,
            r.seconds,
            r.mbps(),
            r.mbps() * 8.0,
            r.retrans,
            r.fec_recovered,
            peer.map(|p| p.to_string()).unwrap_or_default()
        );
    } else {
        println!("{}", r.line("server", true));
    }
}

/// Runs a session's test as far as it can go now; ends the session when it is done or failed.
fn drive(
    ep: &mut Endpoint,
    sessions: &mut HashMap<SessionId, ServerSession>,
    id: SessionId,
    buf: &mut [u8],
    json: bool,
) {
    let Some(s) = sessions.get_mut(&id) else {
        return;
    };
    match s.drive(ep, id, buf) {
        Status::Pending => {}
        Status::Done(r) => {
            print_report(&r, ep.remote(id), json);
            sessions.remove(&id);
            // Closed once the peer acknowledged the last bytes (KCP has no FIN).
            let _ = ep.shutdown(id);
        }
        Status::Failed(e) => {
            eprintln!("session from {:?}: {e}; closing it", ep.remote(id));
            sessions.remove(&id);
            let _ = ep.close(id);
        }
    }
}

fn run(o: Opts) -> io::Result<()> {
    let config = o
        .kcp
        .config()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .max_sessions(o.max_sessions);
    let message_mode = !o.kcp.stream;

    let mut poll = Poll::new()?;
    let mut ep = Endpoint::listen(o.listen, &config, poll.registry(), Token(0))?;
    eprintln!("listening {}", ep.local_addr()?);

    let mut events = Events::with_capacity(1024);
    let mut sessions: HashMap<SessionId, ServerSession> = HashMap::new();
    let mut buf = vec![0u8; perf::READ_BUF];
    loop {
        // 1. Sleep until the socket is ready or a session timer is due.
        match poll.poll(&mut events, ep.poll_timeout()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        }
        // 2. Let the endpoint read, write and run its timers.
        for event in events.iter() {
            ep.handle_event(event)?;
        }
        ep.handle_timeout()?;
        // 3. Act on what changed.
        while let Some(event) = ep.poll_event() {
            match event {
                Event::Incoming => {
                    while let Some(id) = ep.accept() {
                        sessions.insert(id, ServerSession::new(message_mode));
                        drive(&mut ep, &mut sessions, id, &mut buf, o.json);
                    }
                }
                Event::Readable(id) | Event::Writable(id) => {
                    drive(&mut ep, &mut sessions, id, &mut buf, o.json)
                }
                Event::Closed(id, reason) => {
                    if let Some(s) = sessions.remove(&id) {
                        // A `--duration` client's test ends when its session does.
                        match s.test() {
                            Some(t) if s.moved() > 0 => {
                                println!("server {}: {} bytes, then {reason}", t.name(), s.moved())
                            }
                            _ => eprintln!("session ended before its test: {reason}"),
                        }
                    }
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}
