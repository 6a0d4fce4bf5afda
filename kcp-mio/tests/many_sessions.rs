//! 5,000 sessions on one kcp-mio endpoint in one thread: once they are idle, a loop iteration
//! that serves one active session costs the same work as with 10 idle sessions. Work is
//! counted, not timed: the endpoint's own counters (datagrams handed to kcp-core, calls of
//! its transmit poll, events handed out) and a probe codec layer in every session's stack
//! that records which session's layers the iteration touched.

mod common;

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kcp_core::{Codec, CodecError, Config, Layer, Millis};
use kcp_mio::{Endpoint, Event, KcpConfig, SessionId, Work};
use mio::{Events, Poll};

static NEXT_PROBE: AtomicU32 = AtomicU32::new(0);
/// Probe instances touched since the last drain.
static TOUCHED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A layer without header that records every call on it.
struct Probe(u32);

impl Probe {
    fn layer() -> Vec<Layer> {
        vec![Box::new(Probe(NEXT_PROBE.fetch_add(1, Ordering::Relaxed))) as Layer]
    }
    fn touch(&self) {
        TOUCHED.lock().unwrap().push(self.0);
    }
}

impl Codec for Probe {
    fn header_len(&self) -> usize {
        0
    }
    fn seal(&mut self, _: &mut [u8], len: usize, _: Millis) -> Result<usize, CodecError> {
        self.touch();
        Ok(len)
    }
    fn open(&mut self, buf: &mut [u8], _: Millis) -> Result<Option<Range<usize>>, CodecError> {
        self.touch();
        Ok(Some(0..buf.len()))
    }
    fn route(&self, packet: &[u8]) -> Result<kcp_core::Route, CodecError> {
        self.touch();
        Ok(kcp_core::Route::Inner(0..packet.len()))
    }
}

fn touched() -> usize {
    let mut t = TOUCHED.lock().unwrap();
    let n = t.iter().collect::<HashSet<_>>().len();
    t.clear();
    n
}

fn config() -> KcpConfig {
    KcpConfig::new(Config::fast3())
        .crypt("aes", "many sessions")
        .unwrap()
        .layers(Probe::layer, 0)
        .idle_timeout(Some(Duration::from_secs(300)))
        .backlog(10_000)
        .half_open(Duration::from_secs(60), 10_000, 10_000)
        // Every session comes from 127.0.0.1.
        .max_sessions_per_host(10_000)
}

fn work_sum(w: Work) -> u64 {
    w.datagrams_in + w.transmit_polls + w.app_events
}

struct Net {
    poll: Poll,
    events: Events,
    server: Endpoint,
    client: Endpoint,
    buf: Vec<u8>,
    /// Server sessions accepted.
    accepted: usize,
    /// Client sessions that got their reply.
    replied: HashSet<SessionId>,
    /// Echo bytes the active client session got back.
    echoed: usize,
}

impl Net {
    fn new() -> Net {
        let poll = Poll::new().unwrap();
        let (server, client) = common::loopback_pair(&config(), &poll);
        Net {
            poll,
            events: Events::with_capacity(256),
            server,
            client,
            buf: vec![0; 4096],
            accepted: 0,
            replied: HashSet::new(),
            echoed: 0,
        }
    }

    /// One loop iteration: the server echoes whatever it reads, the client counts replies.
    fn iterate(&mut self, max_wait: Duration) {
        let t = [self.server.poll_timeout(), self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map_or(max_wait, |t| t.min(max_wait));
        self.poll.poll(&mut self.events, Some(t)).unwrap();
        for e in self.events.iter() {
            self.server.handle_event(e).unwrap();
            self.client.handle_event(e).unwrap();
        }
        self.server.handle_timeout().unwrap();
        self.client.handle_timeout().unwrap();
        while let Some(ev) = self.server.poll_event() {
            match ev {
                Event::Incoming => {
                    while self.server.accept().is_some() {
                        self.accepted += 1;
                    }
                }
                Event::Readable(id) => {
                    while let Ok(n) = self.server.recv(id, &mut self.buf) {
                        let reply = self.buf[..n].to_vec();
                        self.server.send(id, &reply).unwrap();
                    }
                }
                Event::Writable(_) => {}
                Event::Closed(_, r) => panic!("server session closed: {r}"),
            }
        }
        while let Some(ev) = self.client.poll_event() {
            match ev {
                Event::Readable(id) => {
                    while let Ok(n) = self.client.recv(id, &mut self.buf) {
                        self.echoed += n;
                        self.replied.insert(id);
                    }
                }
                Event::Closed(_, r) => panic!("client session closed: {r}"),
                _ => {}
            }
        }
    }

    /// Opens `n` sessions (in rounds, as clients arrive) and waits until each got its echo and
    /// both endpoints are quiet.
    fn open_idle(&mut self, n: usize) {
        let server = self.server.local_addr().unwrap();
        let mut opened = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while opened < n {
            let round = (n - opened).min(250);
            for _ in 0..round {
                let id = self.client.connect(server).unwrap();
                self.client.send(id, b"hello").unwrap();
            }
            opened += round;
            while self.replied.len() < opened {
                assert!(
                    Instant::now() < deadline,
                    "{} of {opened} replied",
                    self.replied.len()
                );
                self.iterate(Duration::from_millis(50));
            }
        }
        assert_eq!(self.accepted, n);
        // Let the last ACKs go out and the engines fall idle.
        let quiet = Instant::now() + Duration::from_millis(500);
        while Instant::now() < quiet {
            self.iterate(Duration::from_millis(50));
        }
        touched();
    }

    /// One active session echoes `rounds` messages; returns per iteration the counted work
    /// and the number of distinct sessions whose layers were touched.
    fn measure(&mut self, rounds: usize) -> Vec<(u64, usize)> {
        let server = self.server.local_addr().unwrap();
        let id = self.client.connect(server).unwrap();
        let mut per_iteration = Vec::new();
        let before = self.accepted;
        let msg = [7u8; 64];
        self.echoed = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        for r in 0..rounds {
            self.client.send(id, &msg).unwrap();
            while self.echoed < (r + 1) * msg.len() {
                assert!(Instant::now() < deadline, "echo {r} timed out");
                let w0 = work_sum(self.server.work()) + work_sum(self.client.work());
                self.iterate(Duration::from_millis(50));
                let w1 = work_sum(self.server.work()) + work_sum(self.client.work());
                per_iteration.push((w1 - w0, touched()));
            }
        }
        assert_eq!(self.accepted, before + 1);
        per_iteration
    }
}

#[test]
fn a_loop_iteration_costs_the_same_with_5000_idle_sessions() {
    let mut few = Net::new();
    few.open_idle(10);
    let small = few.measure(200);
    drop(few);

    let mut many = Net::new();
    many.open_idle(5000);
    assert_eq!(many.server.len(), 5000);
    assert_eq!(many.client.len(), 5000);
    let large = many.measure(200);
    assert_eq!(many.server.len(), 5001);

    let total = |v: &[(u64, usize)]| v.iter().map(|w| w.0).sum::<u64>();
    let max_work = |v: &[(u64, usize)]| v.iter().map(|w| w.0).max().unwrap_or(0);
    let max_touched = |v: &[(u64, usize)]| v.iter().map(|w| w.1).max().unwrap_or(0);
    eprintln!(
        "10 idle: {} iterations, work {} (max {}/iteration, {} sessions touched at most); \
         5000 idle: {} iterations, work {} (max {}, {} touched)",
        small.len(),
        total(&small),
        max_work(&small),
        max_touched(&small),
        large.len(),
        total(&large),
        max_work(&large),
        max_touched(&large)
    );
    // An iteration touches the active session's layers on both endpoints (and the endpoints'
    // own demultiplexing instances), never an idle session's.
    assert!(max_touched(&large) <= 4, "{large:?}");
    // The counted work per echo is independent of the idle sessions: the same bound holds for
    // both runs, and the totals agree within timing noise (timer ticks may split an echo's
    // work over one more iteration).
    assert!(max_work(&large) <= 16, "{large:?}");
    assert!(max_work(&small) <= 16, "{small:?}");
    let (a, b) = (total(&small) as f64, total(&large) as f64);
    assert!(b <= a * 1.25 + 20.0, "10 idle: {a}, 5000 idle: {b}");
}
