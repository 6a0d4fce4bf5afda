//! A steady transfer through two kcp-mio endpoints (AES, with and without FEC 10/3, over
//! loopback, one thread) does not allocate per packet: the socket batches, the send backlog,
//! the event queues, the engines' buffers (payload chunks go through the endpoint's pool, and
//! rings keep their size until a session has been quiet for a while) and the codec layers are
//! all reused. A counting global allocator checks it over some 25,000 datagrams after a
//! warm-up. The server echoes the stream back.
//!
//! What may still allocate is growth to a bound, at a new high-water mark, whenever the
//! machine's timing makes it fall (a loaded machine lets queues reach marks an idle one does
//! not, after any warm-up). Traced runs under load (a backtrace per allocation in the measured
//! phase) show three kinds, 0 to 132 allocations per 32 MiB in all:
//! * a payload chunk (`Pool::take` making a new chunk) when more are in flight at once than
//!   ever before and the endpoint's cache is empty: most of them;
//! * an endpoint's chunk cache lists (`ChunkCache::give`, one per chunk size) doubling when
//!   more chunks than ever come back at once (both directions drained at the same moment): at
//!   most
//!   `cache_list_steps` times over an endpoint's life, bounded by its pool budget;
//! * a session's ring doubling (`SeqRing::grow`) on a new out-of-order or in-flight high-water
//!   mark, up to its window-derived bound.
//!
//! The engines count the first kind themselves (`Kcp::pool_allocations`: new chunks and the
//! pool's id-table growth), so the test takes those out and allows only the other two growth
//! steps over the life of the two endpoints and their sessions; a per-packet allocation is
//! tens of thousands, and one per flush several hundred, so either still fails it.

mod common;

use std::time::{Duration, Instant};

use kcp_core::{Config, HEAP_CHUNK, SMALL_CHUNK};
use kcp_mio::{Endpoint, Event, KcpConfig, SessionId};
use kcp_testkit::alloc;
use mio::{Events, Poll};

/// The endpoints' chunk cache budget, set explicitly so the bound below follows it.
const POOL_BYTES: usize = 4 << 20;

/// How many times an endpoint's chunk cache lists can grow over its life: one list per chunk
/// size, each holding at most `POOL_BYTES / (size + pointer)` chunks and growing by
/// `max(len, 16)`, capped there.
fn cache_list_steps() -> u64 {
    [HEAP_CHUNK, SMALL_CHUNK]
        .iter()
        .map(|size| {
            let max = POOL_BYTES / (size + std::mem::size_of::<usize>());
            let (mut cap, mut steps) = (0usize, 0u64);
            while cap < max {
                cap += cap.max(16).min(max - cap);
                steps += 1;
            }
            steps
        })
        .sum()
}

/// Allocations allowed besides the payload pools' own (which the engines count, see
/// `Kcp::pool_allocations`, and the test subtracts): growth to the bounds (see the module
/// docs) for two endpoints, each with one session whose rings (send, receive, ACK list,
/// transmit queue, their links) can each double at most 8 times (4 -> 1024 slots at these
/// windows). Nothing per datagram.
fn growth_bound() -> u64 {
    2 * cache_list_steps() + 2 * 6 * 8
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

struct Loop {
    poll: Poll,
    events: Events,
    server: Endpoint,
    client: Endpoint,
    tx: SessionId,
    rx: Option<SessionId>,
    chunk: Vec<u8>,
    buf: Vec<u8>,
    received: u64,
    sent: u64,
    /// What the server read and has not yet echoed (capacity reserved once).
    out: Vec<u8>,
    out_off: usize,
}

impl Loop {
    fn iterate(&mut self) {
        // Keep the send queue full (it goes out at poll_timeout).
        while let Ok(n) = self.client.send(
            self.tx,
            &self.chunk[(self.sent % 256) as usize..][..16 * 1024],
        ) {
            self.sent += n as u64;
        }
        let t = [self.server.poll_timeout(), self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_millis(10));
        self.poll.poll(&mut self.events, Some(t)).unwrap();
        for e in self.events.iter() {
            self.server.handle_event(e).unwrap();
            self.client.handle_event(e).unwrap();
        }
        self.server.handle_timeout().unwrap();
        self.client.handle_timeout().unwrap();
        while let Some(ev) = self.server.poll_event() {
            match ev {
                Event::Incoming => self.rx = self.server.accept(),
                Event::Closed(_, r) => panic!("server session closed: {r}"),
                _ => {}
            }
        }
        // The server echoes: it reads only when its echo went out.
        if let Some(id) = self.rx {
            loop {
                if self.out_off < self.out.len() {
                    match self.server.send(id, &self.out[self.out_off..]) {
                        Ok(n) => self.out_off += n,
                        Err(_) => break,
                    }
                    continue;
                }
                match self.server.recv(id, &mut self.buf) {
                    Ok(n) => {
                        self.out.clear();
                        self.out.extend_from_slice(&self.buf[..n]);
                        self.out_off = 0;
                    }
                    Err(_) => break,
                }
            }
        }
        // The client checks every echoed byte against what it sent (a counter pattern).
        while let Ok(n) = self.client.recv(self.tx, &mut self.buf) {
            for (k, &b) in self.buf[..n].iter().enumerate() {
                assert_eq!(b, (self.received + k as u64) as u8);
            }
            self.received += n as u64;
        }
        while let Some(ev) = self.client.poll_event() {
            if let Event::Closed(_, r) = ev {
                panic!("client session closed: {r}");
            }
        }
    }

    fn run_until(&mut self, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.received < bytes {
            assert!(
                Instant::now() < deadline,
                "{} of {bytes} bytes",
                self.received
            );
            self.iterate();
        }
    }
}

/// Warms a transfer up over `warm` bytes, then counts allocations over `measure` bytes;
/// returns them and the datagrams the server received meanwhile.
fn steady(config: KcpConfig, warm: u64, measure: u64) -> (u64, u64) {
    // The counter is global: one measurement at a time.
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let poll = Poll::new().unwrap();
    let (server, mut client) = common::loopback_pair(&config, &poll);
    let tx = client.connect(server.local_addr().unwrap()).unwrap();
    let mut l = Loop {
        poll,
        events: Events::with_capacity(256),
        server,
        client,
        tx,
        rx: None,
        // A counter pattern that repeats every 256 bytes, so any offset is a valid slice start.
        chunk: (0..16 * 1024 + 256).map(|i| i as u8).collect(),
        buf: vec![0; 64 * 1024],
        received: 0,
        sent: 0,
        out: Vec::with_capacity(64 * 1024),
        out_off: 0,
    };
    l.run_until(warm);
    assert!(l.rx.is_some());
    let datagrams = l.server.udp_stats().datagrams_received;
    // The counter sees this thread's allocations (the test harness has threads too).
    let probe = alloc::thread_allocs();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(8)));
    assert_eq!(alloc::thread_allocs(), probe + 1);
    let pools = |l: &Loop| {
        let rx = l.rx.and_then(|id| l.server.session(id));
        let tx = l.client.session(l.tx);
        [rx, tx]
            .into_iter()
            .flatten()
            .map(|s| u64::from(s.kcp().pool_allocations()))
            .sum::<u64>()
    };
    let pools_before = pools(&l);
    let before = alloc::thread_allocs();
    let received = l.received;
    l.run_until(received + measure);
    let allocs = alloc::thread_allocs() - before;
    // Payload chunks and chunk-table growth are counted by the engines themselves: take
    // them out, so what remains is everything else (which must stay within the growth steps).
    let pooled = pools(&l) - pools_before;
    eprintln!("of which {pooled} by the engines' payload pools (new in-flight high-water marks)");
    assert_eq!(l.server.stats().in_csum_errors, 0);
    (
        allocs - pooled,
        l.server.udp_stats().datagrams_received - datagrams,
    )
}

#[test]
fn steady_transfer_allocates_nothing_per_packet() {
    let config = KcpConfig::new(Config::fast3().with_windows(256, 256))
        .crypt("aes", "steady")
        .unwrap()
        .pool_bytes(POOL_BYTES);
    let (allocs, datagrams) = steady(config, 64 << 20, 32 << 20);
    eprintln!("AES: {allocs} allocations for {datagrams} datagrams");
    assert!(datagrams > 20_000);
    assert!(
        allocs <= growth_bound(),
        "{allocs} allocations for {datagrams} datagrams"
    );
}

#[test]
fn steady_transfer_with_fec_allocates_nothing_per_packet() {
    let config = KcpConfig::new(Config::fast3().with_windows(256, 256))
        .fec(10, 3)
        .crypt("aes", "steady")
        .unwrap()
        .pool_bytes(POOL_BYTES);
    let (allocs, datagrams) = steady(config, 64 << 20, 32 << 20);
    eprintln!("FEC 10/3: {allocs} allocations for {datagrams} datagrams");
    assert!(datagrams > 20_000);
    assert!(
        allocs <= growth_bound(),
        "{allocs} allocations for {datagrams} datagrams"
    );
}
