//! Loops shared by the integration tests: a kcp-perf server on a kcp-mio endpoint in its own
//! thread, a kcp-perf client session run to completion in the calling thread, and the
//! configuration of an interop case.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kcp_mio::mio::{Events, Poll, Token};
use kcp_mio::perf::{self, ClientSession, Report, ServerSession, Status, Test};
use kcp_mio::{Endpoint, Event, KcpConfig, SessionId};
use kcp_testkit::go::{self, Case};

/// The configuration of an interop case (kcp-tokio's tests use it too: the adapters take the
/// same `KcpConfig`): `fast3` with its MTU and windows, its cipher under the interop key, its
/// FEC.
pub fn case_config(case: &Case) -> KcpConfig {
    let engine = kcp_core::Config {
        mtu: go::MTU,
        stream: case.stream,
        ..kcp_core::Config::fast3().with_windows(go::WINDOW, go::WINDOW)
    };
    let (ds, ps) = case.shards();
    KcpConfig::new(engine)
        .crypt(case.crypt, go::KEY)
        .unwrap()
        .fec(ds, ps)
}

/// A listening endpoint (token 0) and a client endpoint (token 1) on loopback, both on `poll`.
pub fn loopback_pair(config: &KcpConfig, poll: &Poll) -> (Endpoint, Endpoint) {
    let at = "127.0.0.1:0".parse().unwrap();
    let server = Endpoint::listen(at, config, poll.registry(), Token(0)).unwrap();
    let client = Endpoint::client(at, config, poll.registry(), Token(1)).unwrap();
    (server, client)
}

/// What a server saw: finished tests and failures.
#[derive(Default, Debug)]
pub struct Served {
    pub done: Vec<Report>,
    pub failed: Vec<String>,
    /// Sessions accepted so far.
    pub accepted: usize,
    /// Most sessions live at once.
    pub peak_sessions: usize,
    /// Live sessions and the endpoint's counters, refreshed every 50 ms.
    pub sessions: usize,
    pub stats: kcp_mio::EndpointStats,
    /// `own_stats` read at the same moment as `stats`.
    pub own_stats: kcp_mio::EndpointStats,
}

/// A kcp-perf server on one kcp-mio endpoint, in a thread, until dropped.
pub struct MioServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub served: Arc<Mutex<Served>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl MioServer {
    pub fn start(config: KcpConfig) -> MioServer {
        MioServer::start_at("127.0.0.1:0".parse().unwrap(), config)
    }

    /// A server bound at `at` (`[::1]:0` for IPv6).
    pub fn start_at(at: SocketAddr, config: KcpConfig) -> MioServer {
        let message = !config.engine().stream;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(Mutex::new(Served::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (s2, v2) = (stop.clone(), served.clone());
        let thread = std::thread::spawn(move || -> io::Result<()> {
            let mut poll = Poll::new()?;
            let mut ep = Endpoint::listen(at, &config, poll.registry(), Token(7))?;
            tx.send(ep.local_addr()?).unwrap();
            let mut events = Events::with_capacity(256);
            let mut sessions: HashMap<SessionId, ServerSession> = HashMap::new();
            let mut buf = vec![0u8; perf::READ_BUF];
            let mut refreshed = Instant::now();
            while !s2.load(Ordering::Relaxed) {
                {
                    let mut v = v2.lock().unwrap();
                    v.peak_sessions = v.peak_sessions.max(ep.len());
                    if refreshed.elapsed() > Duration::from_millis(50) {
                        refreshed = Instant::now();
                        v.sessions = ep.len();
                        v.stats = ep.stats();
                        v.own_stats = ep.own_stats();
                    }
                }
                let t = ep.poll_timeout().map_or(Duration::from_millis(20), |t| {
                    t.min(Duration::from_millis(20))
                });
                poll.poll(&mut events, Some(t))?;
                for e in events.iter() {
                    ep.handle_event(e)?;
                }
                ep.handle_timeout()?;
                while let Some(ev) = ep.poll_event() {
                    let id = match ev {
                        Event::Incoming => {
                            while let Some(id) = ep.accept() {
                                v2.lock().unwrap().accepted += 1;
                                sessions.insert(id, ServerSession::new(message));
                                drive_server(&mut ep, &mut sessions, id, &mut buf, &v2);
                            }
                            continue;
                        }
                        Event::Readable(id) | Event::Writable(id) => id,
                        Event::Closed(id, reason) => {
                            if sessions.remove(&id).is_some() {
                                v2.lock().unwrap().failed.push(format!("closed: {reason}"));
                            }
                            continue;
                        }
                    };
                    drive_server(&mut ep, &mut sessions, id, &mut buf, &v2);
                }
            }
            Ok(())
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server bound");
        MioServer {
            addr,
            stop,
            served,
            thread: Some(thread),
        }
    }

    pub fn served(&self) -> std::sync::MutexGuard<'_, Served> {
        self.served.lock().unwrap()
    }
}

fn drive_server(
    ep: &mut Endpoint,
    sessions: &mut HashMap<SessionId, ServerSession>,
    id: SessionId,
    buf: &mut [u8],
    served: &Mutex<Served>,
) {
    let Some(s) = sessions.get_mut(&id) else {
        return;
    };
    match s.drive(ep, id, buf) {
        Status::Pending => {}
        Status::Done(r) => {
            served.lock().unwrap().done.push(r);
            sessions.remove(&id);
            let _ = ep.close_after_flush(id);
        }
        Status::Failed(e) => {
            served.lock().unwrap().failed.push(e.to_string());
            sessions.remove(&id);
            let _ = ep.close(id);
        }
    }
}

impl Drop for MioServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join().expect("server thread");
            if !std::thread::panicking() {
                r.expect("server loop");
            }
        }
    }
}

/// Runs kcp-perf client sessions on one kcp-mio endpoint (one socket) until all are done,
/// failed, or `limit` passed. Returns each session's result.
pub fn mio_clients(
    server: SocketAddr,
    config: &KcpConfig,
    test: Test,
    count: u64,
    msg: usize,
    sessions: usize,
    limit: Duration,
) -> Vec<io::Result<Report>> {
    let message = !config.engine().stream;
    mio_sessions(server, config, sessions, limit, |mss| {
        let msg = if message { msg.min(mss) } else { msg };
        ClientSession::new(test, count, msg, message)
    })
}

/// Runs the client sessions `make` returns (given the session's mss) on one kcp-mio
/// endpoint until all are done, failed, or `limit` passed, driving each also when its
/// `wake_at` comes. Returns each session's result.
pub fn mio_sessions(
    server: SocketAddr,
    config: &KcpConfig,
    sessions: usize,
    limit: Duration,
    make: impl Fn(usize) -> ClientSession,
) -> Vec<io::Result<Report>> {
    let mut poll = Poll::new().unwrap();
    // The client's socket is of the server's address family.
    let local = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let mut ep =
        Endpoint::client(local.parse().unwrap(), config, poll.registry(), Token(3)).unwrap();
    let mut buf = vec![0u8; perf::READ_BUF];
    let mut conns: Vec<(SessionId, ClientSession, Option<io::Result<Report>>)> = (0..sessions)
        .map(|_| {
            let id = ep.connect(server).unwrap();
            let mss = ep.session_info(id).unwrap().mss;
            (id, make(mss), None)
        })
        .collect();
    let index: HashMap<SessionId, usize> =
        conns.iter().enumerate().map(|(i, c)| (c.0, i)).collect();
    let drive = |ep: &mut Endpoint,
                 c: &mut (SessionId, ClientSession, Option<io::Result<Report>>),
                 buf: &mut [u8]| {
        if c.2.is_some() {
            return;
        }
        match c.1.drive(ep, c.0, buf) {
            Status::Pending => {}
            Status::Done(r) => c.2 = Some(Ok(r)),
            Status::Failed(e) => c.2 = Some(Err(e)),
        }
    };
    for c in conns.iter_mut() {
        drive(&mut ep, c, &mut buf);
    }
    let deadline = Instant::now() + limit;
    let mut events = Events::with_capacity(256);
    while conns.iter().any(|c| c.2.is_none()) && Instant::now() < deadline {
        let wake = conns
            .iter()
            .filter(|c| c.2.is_none())
            .filter_map(|c| c.1.wake_at())
            .fold(deadline, Instant::min);
        let left = wake.saturating_duration_since(Instant::now());
        let t = ep.poll_timeout().map_or(left, |t| t.min(left));
        poll.poll(&mut events, Some(t)).unwrap();
        for e in events.iter() {
            ep.handle_event(e).unwrap();
        }
        ep.handle_timeout().unwrap();
        while let Some(ev) = ep.poll_event() {
            match ev {
                Event::Readable(id) | Event::Writable(id) => {
                    if let Some(&i) = index.get(&id) {
                        drive(&mut ep, &mut conns[i], &mut buf);
                    }
                }
                Event::Closed(id, reason) => {
                    if let Some(&i) = index.get(&id) {
                        if conns[i].2.is_none() {
                            conns[i].2 = Some(Err(io::Error::other(format!("closed: {reason}"))));
                        }
                    }
                }
                Event::Incoming => {}
            }
        }
        let now = Instant::now();
        for c in conns.iter_mut() {
            if c.1.wake_at().is_some_and(|t| t <= now) {
                drive(&mut ep, c, &mut buf);
            }
        }
    }
    for c in &conns {
        let _ = ep.close(c.0);
    }
    ep.flush();
    conns
        .into_iter()
        .map(|c| {
            c.2.unwrap_or_else(|| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("not done after {limit:?}"),
                ))
            })
        })
        .collect()
}

/// One client session; panics with context unless it verified `count` bytes.
pub fn mio_client(
    server: SocketAddr,
    config: &KcpConfig,
    test: Test,
    count: u64,
    msg: usize,
    what: &str,
) -> Report {
    let r = mio_clients(server, config, test, count, msg, 1, Duration::from_secs(30))
        .pop()
        .unwrap()
        .unwrap_or_else(|e| panic!("{what} {test:?}: {e}"));
    assert_eq!(r.bytes, count, "{what} {test:?}");
    r
}
