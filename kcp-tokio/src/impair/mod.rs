//! A userspace UDP impairment proxy: loss, delay, jitter, reordering, duplication and a
//! bandwidth limit with a bounded drop-tail queue, for kernels without `tc netem`.
//!
//! [`Proxy`] listens on one UDP socket for clients and forwards each client's datagrams to a
//! fixed `forward` address through an upstream socket of its own (bound to an ephemeral port),
//! so the server sees one address per client, as behind a NAT. Datagrams going client → server
//! are impaired according to the `up` [`ImpairConfig`], and server → client according to
//! `down`.
//!
//! The impairments are kcp-core's link model ([`kcp_core::sim::LinkModel`]), the same one
//! the deterministic simulator uses, driven here on Tokio's clock with microsecond arrival
//! times: the proxy and the simulator impair by the same rules, with the same generator.
//! [`ImpairConfig::link_config`] is the translation. Each direction draws its decisions from
//! its own seeded generator (`up` uses `seed`, `down` uses `seed ^` [`DOWN_SEED_XOR`]), so two
//! runs that see the same datagrams in the same order make the same loss, jitter, reorder and
//! duplicate decisions. Drops of the bandwidth queue depend on wall-clock arrival times and so
//! are only as reproducible as the traffic's timing.
//!
//! All delayed datagrams of a proxy sit in one binary heap ordered by due time, served by a
//! single timer, so thousands of datagrams in flight cost one heap entry each and no task.
//!
//! # Pipeline
//!
//! For every datagram, in order (the rules and the reasons for them are in
//! [`kcp_core::sim::link`]):
//!
//! 1. **loss**: dropped with probability [`ImpairConfig::loss`] (counted in
//!    [`DirectionStats::lost`]);
//! 2. **bandwidth**: with [`ImpairConfig::rate_mbps`] set, the datagram joins a FIFO
//!    bottleneck served at that rate. If the link is busy and the bytes waiting plus this
//!    datagram would exceed [`ImpairConfig::queue_bytes`], it is dropped
//!    ([`DirectionStats::queue_drops`]); a datagram reaching an idle link is always accepted.
//!    Otherwise it leaves the bottleneck when its last bit has been serialised;
//! 3. **duplication**: with probability [`ImpairConfig::dup`], a second copy travels too
//!    ([`DirectionStats::duplicated`]); it does not use bandwidth;
//! 4. the datagram and its copy, each on its own: **delay** [`ImpairConfig::delay_ms`] plus a
//!    uniform **jitter** in `0..=jitter_ms` (jitter only adds: the delay is the floor, and
//!    jitter on its own can reorder), then **reorder**: with probability
//!    [`ImpairConfig::reorder`], held another [`ImpairConfig::reorder_ms`]
//!    ([`DirectionStats::reordered`]), so later datagrams overtake it. A copy may therefore
//!    arrive before or after its original.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use kcp_tokio::impair::{ImpairConfig, Proxy};
//! use tokio::net::UdpSocket;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let server = UdpSocket::bind("127.0.0.1:0").await?;
//! let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
//!
//! // 20 ms each way, 1% loss client -> server, reproducible with seed 7.
//! let up = ImpairConfig { delay_ms: 20, loss: 0.01, seed: 7, ..ImpairConfig::default() };
//! let down = ImpairConfig { delay_ms: 20, seed: 7, ..ImpairConfig::default() };
//! let proxy = Proxy::bind(any, server.local_addr()?, up, down).await?;
//! let proxy_addr = proxy.local_addr();
//! let handle = proxy.spawn();
//!
//! // Clients talk to the proxy instead of the server.
//! let client = UdpSocket::bind("127.0.0.1:0").await?;
//! client.send_to(b"ping", proxy_addr).await?;
//!
//! println!("{:?}", handle.stats().up);
//! handle.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kcp_core::sim::{Arrival, LinkConfig, LinkModel, Verdict, REVERSE_SEED_XOR};

mod config;
mod stats;

pub use config::{ImpairConfig, ImpairError};
use stats::{bump, Counters, DirCounters};
pub use stats::{DirectionStats, ProxyStats};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Largest datagram the proxy relays: the UDP length field's maximum.
pub const MAX_DATAGRAM: usize = 65_535;

/// How long a client mapping lives without traffic either way, unless changed with
/// [`Proxy::set_idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many client mappings a proxy keeps at most, unless changed with
/// [`Proxy::set_max_clients`]; a new client beyond it evicts the least recently active one.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;

/// Constant XORed into [`ImpairConfig::seed`] for the down direction's generator (the
/// simulator's, [`kcp_core::sim::REVERSE_SEED_XOR`], for its second direction).
pub const DOWN_SEED_XOR: u64 = REVERSE_SEED_XOR;

/// Longest hold the proxy schedules for one datagram; longer computed delays are cut to it
/// so that no arithmetic on instants can overflow.
const MAX_HOLD: Duration = Duration::from_secs(365 * 24 * 3600);

/// Depth of the channel carrying datagrams from the upstream readers to the proxy task.
const DOWN_CHANNEL: usize = 1024;

/// One direction's impairments: kcp-core's link model on this proxy's clock.
struct Impairer {
    cfg: LinkConfig,
    model: LinkModel,
}

impl Impairer {
    fn new(cfg: &ImpairConfig, seed: u64) -> Self {
        Impairer {
            cfg: cfg.link_config(),
            model: LinkModel::new(seed),
        }
    }

    /// The model's verdict on a datagram of `len` bytes arriving at `now_us`.
    fn decide(&mut self, len: usize, now_us: u64) -> Verdict {
        self.model.decide(&self.cfg, now_us, len)
    }
}

/// The proxy's clock: microseconds since it started, and back to instants.
#[derive(Clone, Copy)]
struct Clock {
    origin: Instant,
}

impl Clock {
    fn us(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    /// The instant `at_us`, seen from `now` (= `now_us`); holds are cut to [`MAX_HOLD`].
    fn instant(&self, now: Instant, now_us: u64, at_us: u64) -> Instant {
        add(now, Duration::from_micros(at_us.saturating_sub(now_us)))
    }
}

fn add(t: Instant, d: Duration) -> Instant {
    t.checked_add(d.min(MAX_HOLD))
        .or_else(|| t.checked_add(Duration::from_secs(3600)))
        .unwrap_or(t)
}

/// Where a scheduled datagram goes.
enum Route {
    /// Client → server through that client's upstream socket (kept alive by this `Arc` even
    /// if the mapping is evicted meanwhile).
    Up(Arc<UdpSocket>),
    /// Server → client through the listening socket.
    Down(SocketAddr),
}

struct Scheduled {
    at: Instant,
    seq: u64,
    copy: bool,
    route: Route,
    data: Arc<[u8]>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest due, then first queued.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A client's NAT entry: its upstream socket and the task reading it.
struct Mapping {
    socket: Arc<UdpSocket>,
    last_seen: Instant,
    reader: JoinHandle<()>,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A UDP impairment proxy between clients and one server; see the [module docs](self).
///
/// Create it with [`Proxy::bind`], then drive it with [`Proxy::run`] or [`Proxy::spawn`].
pub struct Proxy {
    listen: Arc<UdpSocket>,
    local_addr: SocketAddr,
    forward: SocketAddr,
    up: ImpairConfig,
    down: ImpairConfig,
    idle_timeout: Duration,
    max_clients: usize,
    counters: Arc<Counters>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("local_addr", &self.local_addr)
            .field("forward", &self.forward)
            .field("up", &self.up)
            .field("down", &self.down)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_clients", &self.max_clients)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds the client-facing socket on `listen` (port 0 picks a free one) and prepares to
    /// forward to `forward`, impairing client → server traffic with `up` and server → client
    /// traffic with `down`.
    ///
    /// Nothing is relayed until the proxy is driven by [`run`](Self::run) or
    /// [`spawn`](Self::spawn).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] wrapping an [`ImpairError`] if either config fails
    /// [`ImpairConfig::validate`]; otherwise whatever binding the socket returns.
    pub async fn bind(
        listen: SocketAddr,
        forward: SocketAddr,
        up: ImpairConfig,
        down: ImpairConfig,
    ) -> io::Result<Proxy> {
        up.validate()?;
        down.validate()?;
        let socket = UdpSocket::bind(listen).await?;
        enlarge_buffers(&socket);
        let local_addr = socket.local_addr()?;
        Ok(Proxy {
            listen: Arc::new(socket),
            local_addr,
            forward,
            up,
            down,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_clients: DEFAULT_MAX_CLIENTS,
            counters: Arc::new(Counters::default()),
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server address datagrams are forwarded to.
    pub fn forward_addr(&self) -> SocketAddr {
        self.forward
    }

    /// Sets how long a client mapping may go without traffic, either way, before its upstream
    /// socket is closed ([`DEFAULT_IDLE_TIMEOUT`] unless set). A zero duration is raised to
    /// one millisecond.
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle_timeout = timeout.max(Duration::from_millis(1));
    }

    /// Sets how many client mappings are kept at most ([`DEFAULT_MAX_CLIENTS`] unless set;
    /// at least 1). A new client beyond it evicts the least recently active mapping.
    pub fn set_max_clients(&mut self, max: usize) {
        self.max_clients = max.max(1);
    }

    /// A snapshot of the counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.counters.snapshot()
    }

    /// Spawns [`run`](Self::run) on the current Tokio runtime and returns a handle to watch
    /// and stop it.
    ///
    /// # Panics
    ///
    /// Like [`tokio::spawn`], if called outside a Tokio runtime.
    pub fn spawn(self) -> ProxyHandle {
        let local_addr = self.local_addr;
        let counters = Arc::clone(&self.counters);
        let task = tokio::spawn(self.run());
        ProxyHandle {
            local_addr,
            counters,
            task,
        }
    }

    /// Relays datagrams until the returned future is dropped; it never completes on its own.
    ///
    /// Receive and send errors are counted or ignored, never fatal. Dropping the future
    /// closes every upstream socket and discards datagrams still delayed.
    pub fn run(self) -> impl Future<Output = ()> + Send + 'static {
        self.run_inner()
    }

    async fn run_inner(self) {
        let Proxy {
            listen,
            forward,
            up,
            down,
            idle_timeout,
            max_clients,
            counters,
            ..
        } = self;
        let down_seed = down.seed ^ DOWN_SEED_XOR;
        let mut up_imp = Impairer::new(&up, up.seed);
        let mut down_imp = Impairer::new(&down, down_seed);
        let clock = Clock {
            origin: Instant::now(),
        };
        let (down_tx, mut down_rx) = mpsc::channel::<(SocketAddr, Vec<u8>)>(DOWN_CHANNEL);
        let mut mappings: HashMap<SocketAddr, Mapping> = HashMap::new();
        let mut heap: BinaryHeap<Scheduled> = BinaryHeap::new();
        let mut seq: u64 = 0;
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];

        let sweep_every =
            (idle_timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let timer = tokio::time::sleep(MAX_HOLD);
        tokio::pin!(timer);

        loop {
            flush_due(&mut heap, &listen, &counters).await;
            if let Some(head) = heap.peek() {
                if timer.deadline() != head.at {
                    timer.as_mut().reset(head.at);
                }
            }
            let armed = !heap.is_empty();

            tokio::select! {
                r = listen.recv_from(&mut buf) => {
                    let (n, client) = match r {
                        Ok(x) => x,
                        Err(_) => continue,
                    };
                    let n = n.min(MAX_DATAGRAM);
                    bump(&counters.up.received, 1);
                    let now = Instant::now();
                    let socket = match mappings.get_mut(&client) {
                        Some(m) => {
                            m.last_seen = now;
                            Arc::clone(&m.socket)
                        }
                        None => {
                            if mappings.len() >= max_clients {
                                evict_oldest(&mut mappings, &counters);
                            }
                            match open_mapping(forward, client, down_tx.clone(), now).await {
                                Ok(m) => {
                                    let s = Arc::clone(&m.socket);
                                    mappings.insert(client, m);
                                    counters.clients.store(mappings.len() as u64, Ordering::Relaxed);
                                    s
                                }
                                Err(_) => {
                                    bump(&counters.up.send_errors, 1);
                                    continue;
                                }
                            }
                        }
                    };
                    schedule(&mut up_imp, &counters.up, &mut heap, &mut seq, Route::Up(socket), &buf[..n], clock, now);
                }
                Some((client, data)) = down_rx.recv() => {
                    bump(&counters.down.received, 1);
                    let now = Instant::now();
                    if let Some(m) = mappings.get_mut(&client) {
                        m.last_seen = now;
                    }
                    schedule(&mut down_imp, &counters.down, &mut heap, &mut seq, Route::Down(client), &data, clock, now);
                }
                () = &mut timer, if armed => {}
                _ = sweep.tick() => {
                    let now = Instant::now();
                    let before = mappings.len();
                    mappings.retain(|_, m| now.saturating_duration_since(m.last_seen) < idle_timeout);
                    let gone = before - mappings.len();
                    if gone > 0 {
                        bump(&counters.expired, gone as u64);
                        counters.clients.store(mappings.len() as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// Applies a direction's impairments to one datagram and queues what survives.
#[allow(clippy::too_many_arguments)]
fn schedule(
    imp: &mut Impairer,
    c: &DirCounters,
    heap: &mut BinaryHeap<Scheduled>,
    seq: &mut u64,
    route: Route,
    data: &[u8],
    clock: Clock,
    now: Instant,
) {
    let now_us = clock.us(now);
    let (first, copy) = match imp.decide(data.len(), now_us) {
        // No datagram exceeds the model's MTU here (it is the UDP maximum); count it as lost
        // should that ever change.
        Verdict::Lost | Verdict::TooBig => return bump(&c.lost, 1),
        Verdict::QueueDrop => return bump(&c.queue_drops, 1),
        Verdict::Deliver { first, copy } => (first, copy),
    };
    let data: Arc<[u8]> = Arc::from(data);
    let mut push = |arrival: Arrival, is_copy: bool, route: Route| {
        if arrival.reordered {
            bump(&c.reordered, 1);
        }
        heap.push(Scheduled {
            at: clock.instant(now, now_us, arrival.at_us),
            seq: *seq,
            copy: is_copy,
            route,
            data: Arc::clone(&data),
        });
        *seq = seq.wrapping_add(1);
    };
    if let Some(copy) = copy {
        let copy_route = match &route {
            Route::Up(s) => Route::Up(Arc::clone(s)),
            Route::Down(a) => Route::Down(*a),
        };
        push(first, false, route);
        push(copy, true, copy_route);
    } else {
        push(first, false, route);
    }
}

/// Sends every datagram that is due.
async fn flush_due(heap: &mut BinaryHeap<Scheduled>, listen: &UdpSocket, counters: &Counters) {
    let now = Instant::now();
    while heap.peek().is_some_and(|h| h.at <= now) {
        let Some(item) = heap.pop() else { break };
        let (c, result) = match &item.route {
            Route::Up(s) => (&counters.up, s.send(&item.data).await),
            Route::Down(client) => (&counters.down, listen.send_to(&item.data, *client).await),
        };
        match result {
            Ok(_) => {
                bump(
                    if item.copy {
                        &c.duplicated
                    } else {
                        &c.forwarded
                    },
                    1,
                );
                bump(&c.bytes, item.data.len() as u64);
            }
            Err(_) => bump(&c.send_errors, 1),
        }
    }
}

fn evict_oldest(mappings: &mut HashMap<SocketAddr, Mapping>, counters: &Counters) {
    let oldest = mappings
        .iter()
        .min_by_key(|(_, m)| m.last_seen)
        .map(|(a, _)| *a);
    if let Some(addr) = oldest {
        mappings.remove(&addr);
        bump(&counters.expired, 1);
    }
}

/// Opens an upstream socket for `client`, connected to `forward`, and spawns its reader.
async fn open_mapping(
    forward: SocketAddr,
    client: SocketAddr,
    tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    now: Instant,
) -> io::Result<Mapping> {
    let local: SocketAddr = match forward {
        SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    enlarge_buffers(&socket);
    socket.connect(forward).await?;
    let socket = Arc::new(socket);
    let reader = tokio::spawn(read_upstream(Arc::clone(&socket), client, tx));
    Ok(Mapping {
        socket,
        last_seen: now,
        reader,
    })
}

/// Reads the server's replies for one client and hands them to the proxy task.
async fn read_upstream(
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        match socket.recv(&mut buf).await {
            Ok(n) => {
                let n = n.min(MAX_DATAGRAM);
                if tx.send((client, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
            // An ICMP port unreachable from an earlier send: the server is not there (yet).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                ) => {}
            // Anything else: back off a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A running [`Proxy`], from [`Proxy::spawn`]. Dropping it stops the proxy too.
#[derive(Debug)]
pub struct ProxyHandle {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl ProxyHandle {
    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.counters.snapshot()
    }

    /// Stops the proxy and waits until its task is gone, with every socket closed; datagrams
    /// still delayed are discarded.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asks for 4 MiB socket buffers so that bursts are shaped by the configured impairments, not
/// by the kernel's default buffer (the kernel may cap the request; failures are ignored).
fn enlarge_buffers(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
}

#[cfg(test)]
mod tests;
