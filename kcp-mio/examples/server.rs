//! A kcp-perf server on kcp-mio: one thread, one `mio::Poll` loop, any number of sessions on
//! one UDP socket. `kcp-perf client` (kcp-tokio's example), this crate's `client` example and
//! the Go peer in `interop/kcpperf-go` drive it:
//!
//! ```text
//! cargo run --release -p kcpx-mio --example server -- --crypt aes --mode fast3
//! cargo run --release -p kcpx-tokio --features perf,impair --example kcp-perf -- client \
//!     --connect :4000 --crypt aes --mode fast3 --test sink --duration 10
//! ```
//!
//! The flags are `kcp-perf server`'s (`--help` lists them): `--listen` (default `:4000`, all
//! interfaces; prints `listening ADDR` on stderr once bound), `--json`, the shared KCP flags,
//! `--max-sessions`, `--receive-hold-us` and the admission limits (`--sessions-per-host` and
//! the others of `kcp_mio::cli::AdmissionArgs`: a benchmark client opening thousands of
//! sessions from one address needs the per-host ones raised). Each session runs the test its
//! header asks for (echo, sink, source, by byte count or for a duration; see
//! `kcp_mio::perf`), prints one line, and is then closed gracefully (its last bytes
//! acknowledged, at most the shutdown timeout). Exit code 2: bad flags or settings, or the
//! socket failed.

use kcp_mio::cli;

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kcp_mio::perf::{self, Report, ServerSession, Status};
use kcp_mio::{Endpoint, Event, SessionId};
use mio::{Events, Poll, Token};

#[derive(Parser)]
#[command(
    name = "server",
    version,
    about = "kcp-perf server on one mio loop (kcp-perf client drives it)"
)]
struct Args {
    /// Address to listen on (`:PORT` = all interfaces).
    #[arg(long, default_value = ":4000")]
    listen: String,
    /// One JSON object per session on stdout.
    #[arg(long)]
    json: bool,
    /// Most sessions at once; further peers are refused until some end.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions: u32,
    /// Receive hold in microseconds (0: off): after a receive turn the socket is left
    /// unwatched this long, then everything that arrived is read in one batch. Trades up to
    /// the hold of latency for fewer wake-ups: for servers with thousands of sessions (about
    /// 1000 there), not for one busy session (see KcpConfig::receive_hold).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=50_000))]
    receive_hold_us: u32,
    #[command(flatten)]
    admission: cli::AdmissionArgs,
    #[command(flatten)]
    kcp: cli::KcpArgs,
}

fn print_report(r: &Report, peer: Option<SocketAddr>, json: bool) {
    if json {
        let (cpu, rss) = cli::resources();
        let remote = peer
            .map(|p| format!(",\"remote\":\"{p}\""))
            .unwrap_or_default();
        println!("{}", r.json("server", true, cpu, rss, &remote));
    } else {
        println!("{}", r.line("server", true));
    }
}

/// Per-session state in a `Vec` indexed by the session's slot (`SessionId::index`), the id
/// kept beside it: a slot is reused by later sessions. At thousands of sessions a map keyed by
/// the id cost a cache miss per event more.
#[derive(Default)]
struct Sessions(Vec<Option<(SessionId, ServerSession)>>);

impl Sessions {
    fn insert(&mut self, id: SessionId, s: ServerSession) {
        let i = id.index();
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some((id, s));
    }

    fn get_mut(&mut self, id: SessionId) -> Option<&mut ServerSession> {
        match self.0.get_mut(id.index()) {
            Some(Some((k, s))) if *k == id => Some(s),
            _ => None,
        }
    }

    fn remove(&mut self, id: SessionId) -> Option<ServerSession> {
        let slot = self.0.get_mut(id.index())?;
        if slot.as_ref().is_some_and(|(k, _)| *k == id) {
            slot.take().map(|(_, s)| s)
        } else {
            None
        }
    }
}

/// Runs a session's test as far as it can go now; ends the session when it is done or failed.
fn drive(ep: &mut Endpoint, sessions: &mut Sessions, id: SessionId, buf: &mut [u8], json: bool) {
    let Some(s) = sessions.get_mut(id) else {
        return;
    };
    match s.drive(ep, id, buf) {
        Status::Pending => {}
        Status::Done(r) => {
            print_report(&r, ep.remote(id), json);
            sessions.remove(id);
            // Closed once the peer acknowledged the last bytes (KCP has no FIN).
            let _ = ep.close_after_flush(id);
        }
        Status::Failed(e) => {
            eprintln!("session from {}: {e}", peer(ep, id));
            sessions.remove(id);
            let _ = ep.close(id);
        }
    }
}

fn peer(ep: &Endpoint, id: SessionId) -> String {
    ep.remote(id).map_or("?".into(), |a| a.to_string())
}

fn run(a: Args) -> Result<(), String> {
    let listen = cli::resolve(&a.listen, "0.0.0.0")?;
    let hold = Duration::from_micros(a.receive_hold_us.into());
    let config = a
        .admission
        .apply(a.kcp.config()?)
        .max_sessions(a.max_sessions as usize)
        .receive_hold(Some(hold).filter(|d| !d.is_zero()));
    let message_mode = !a.kcp.stream();

    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut ep = Endpoint::listen(listen, &config, poll.registry(), Token(0))
        .map_err(|e| format!("bind {listen}: {e}"))?;
    eprintln!("listening {}", ep.local_addr().map_err(|e| e.to_string())?);

    let mut events = Events::with_capacity(1024);
    let mut sessions = Sessions::default();
    let mut buf = vec![0u8; perf::READ_BUF];
    let mut refusals = cli::RefusalWatch::new(
        a.admission.clone(),
        Duration::from_secs(5),
        std::time::Instant::now(),
    );
    loop {
        // 1. Sleep until the socket is ready or a session timer is due.
        match poll.poll(&mut events, ep.poll_timeout()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r.map_err(|e| e.to_string())?,
        }
        // 2. Let the endpoint read, write and run its timers.
        for event in events.iter() {
            ep.handle_event(event).map_err(|e| e.to_string())?;
        }
        ep.handle_timeout().map_err(|e| e.to_string())?;
        // Peers turned away at the admission limits (checked when the loop wakes: refusals
        // come with datagrams, which wake it): KCP tells them nothing.
        let now = std::time::Instant::now();
        if refusals.due(now) {
            if let Some(line) = refusals.check(ep.own_stats().refused, now) {
                eprintln!("{line}");
            }
        }
        // 3. Act on what changed.
        while let Some(event) = ep.poll_event() {
            match event {
                Event::Incoming => {
                    while let Some(id) = ep.accept() {
                        sessions.insert(id, ServerSession::new(message_mode));
                        drive(&mut ep, &mut sessions, id, &mut buf, a.json);
                    }
                }
                Event::Readable(id) | Event::Writable(id) => {
                    drive(&mut ep, &mut sessions, id, &mut buf, a.json)
                }
                Event::Closed(id, reason) => {
                    if let Some(s) = sessions.remove(id) {
                        let what = s.test().map_or("its header", |t| t.name());
                        eprintln!(
                            "session ended before {what} finished ({} bytes): {reason}",
                            s.moved()
                        );
                    }
                }
            }
        }
    }
}

fn main() -> ExitCode {
    // Bad flags: clap prints the error and the usage, exit code 2.
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::from(2)
        }
    }
}
