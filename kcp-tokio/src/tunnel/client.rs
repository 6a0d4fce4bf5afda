//! The client: TCP listener, round-robin over `--conn` smux sessions, each over one KCP session
//! on its own UDP socket; lazy dial with a 1 s redial; `--autoexpire` rotation with the
//! `--scavengettl` scavenger.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{lookup_host, TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::smux::{Framing, SmuxSession};
use crate::{EndpointStats, KcpConnector};

use super::config::{Resolved, TunnelConfig};
use super::log::tlog;
use super::pipe::pipe;
use super::{dial_addr, listen_addr, log_common, snmp};

/// The counters of every session's endpoint: live ones, plus what ended ones counted.
#[derive(Default)]
struct Counters {
    live: Vec<(u64, Arc<KcpConnector>)>,
    ended: EndpointStats,
    next: u64,
}

impl Counters {
    fn total(&self) -> EndpointStats {
        self.live
            .iter()
            .fold(self.ended, |acc, (_, c)| acc.merged(&c.stats()))
    }

    fn retire(&mut self, key: u64) {
        if let Some(i) = self.live.iter().position(|(k, _)| *k == key) {
            let (_, c) = self.live.swap_remove(i);
            let mut s = c.stats();
            // Gauges describe live sessions only.
            s.max_conn = 0;
            s.curr_estab = 0;
            s.half_open = 0;
            s.pooled_bytes = 0;
            self.ended = self.ended.merged(&s);
        }
    }
}

type Shared = Arc<Mutex<Counters>>;

fn lock(c: &Shared) -> std::sync::MutexGuard<'_, Counters> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) async fn run(cfg: TunnelConfig, r: Resolved) -> io::Result<()> {
    tlog!("version: {}", env!("CARGO_PKG_VERSION"));
    let listener = TcpListener::bind(listen_addr(&cfg.localaddr))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("listen {}: {e}", cfg.localaddr)))?;
    tlog!("smux version: {}", cfg.smuxver);
    tlog!("listening on: {}", listener.local_addr()?);
    log_common(&cfg, &r);
    tlog!("remote address: {}", cfg.remoteaddr);
    tlog!("conn: {}", cfg.conn);
    tlog!("autoexpire: {}", cfg.autoexpire);
    tlog!("scavengettl: {}", cfg.scavengettl);
    tlog!("snmplog: {}", cfg.snmplog);
    tlog!("snmpperiod: {}", cfg.snmpperiod);
    tlog!("quiet: {}", cfg.quiet);
    tlog!("tcp: {}", cfg.tcp);

    let counters: Shared = Arc::default();
    {
        let c = counters.clone();
        tokio::spawn(snmp::logger(
            cfg.snmplog.clone(),
            cfg.snmpperiod as u64,
            move || lock(&c).total(),
        ));
    }
    #[cfg(unix)]
    {
        let c = counters.clone();
        tokio::spawn(async move { sigusr1(move || lock(&c).total()).await });
    }
    let scavenger = if cfg.autoexpire > 0 {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(scavenge(rx, cfg.scavengettl));
        Some(tx)
    } else {
        None
    };

    let conn = cfg.conn as usize;
    let mut muxes: Vec<Option<(SmuxSession, Instant)>> = (0..conn).map(|_| None).collect();
    let mut rr = 0usize;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: keep serving the streams that exist.
                tlog!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let idx = rr % conn;
        let now = Instant::now();
        let renew = match &muxes[idx] {
            None => true,
            Some((s, expiry)) => s.is_closed() || (cfg.autoexpire > 0 && now > *expiry),
        };
        if renew {
            let session = wait_conn(&cfg, &r, &counters).await;
            let expiry = Instant::now() + Duration::from_secs(cfg.autoexpire.max(0) as u64);
            if let Some(tx) = &scavenger {
                let _ = tx.send((session.clone(), expiry));
            }
            muxes[idx] = Some((session, expiry));
        }
        if let Some((session, _)) = &muxes[idx] {
            tokio::spawn(handle_client(session.clone(), tcp, peer, cfg.quiet));
        }
        rr = rr.wrapping_add(1);
    }
}

/// Dials until a session is up, 1 s apart (kcptun's `waitConn`).
async fn wait_conn(cfg: &TunnelConfig, r: &Resolved, counters: &Shared) -> SmuxSession {
    loop {
        match create_conn(cfg, r, counters).await {
            Ok(s) => return s,
            Err(e) => {
                tlog!("re-connecting: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn create_conn(
    cfg: &TunnelConfig,
    r: &Resolved,
    counters: &Shared,
) -> io::Result<SmuxSession> {
    let remote = dial_addr(&cfg.remoteaddr);
    let addr: SocketAddr = lookup_host(&remote)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("dial {remote}: {e}")))?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("dial {remote}: no address"),
            )
        })?;
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let connector = Arc::new(KcpConnector::bind(local, r.kcp.clone()).await?);
    let kcp = connector.connect(addr).await?;
    let local = connector.local_addr();
    tlog!(
        "smux version: {} on connection: {local} -> {addr}",
        cfg.smuxver
    );
    let framing = if r.compression {
        Framing::Snappy
    } else {
        Framing::Plain
    };
    let session = SmuxSession::client(kcp, r.smux.clone(), framing)?;
    let key = {
        let mut c = lock(counters);
        c.next += 1;
        let key = c.next;
        c.live.push((key, connector));
        key
    };
    // Says why the session ended, and moves its counters to the ended total.
    let watch = session.clone();
    let counters = counters.clone();
    tokio::spawn(async move {
        let end = watch.closed().await;
        let hint = if watch.stats().frames_in == 0 {
            " (nothing ever arrived from the server: is it running, with the same --key, --crypt, --smuxver and --nocomp?)"
        } else {
            ""
        };
        tlog!("session {local} -> {addr} ended: {end}{hint}");
        drop(watch);
        // Let the KCP session deliver its last datagrams before its counters are read.
        tokio::time::sleep(Duration::from_secs(1)).await;
        lock(&counters).retire(key);
    });
    Ok(session)
}

async fn handle_client(session: SmuxSession, tcp: TcpStream, peer: SocketAddr, quiet: bool) {
    let _ = tcp.set_nodelay(true);
    let stream = match session.open() {
        Ok(s) => s,
        Err(e) => {
            tlog!("open stream for {peer}: {e}");
            return;
        }
    };
    let id = stream.id();
    drop(session);
    if !quiet {
        tlog!("stream opened in: {peer} out: ({id})");
    }
    if let Some(e) = pipe(tcp, stream).await {
        if e.kind() == io::ErrorKind::InvalidData {
            tlog!("smux {e} in: {peer} out: ({id})");
        }
    }
    if !quiet {
        tlog!("stream closed in: {peer} out: ({id})");
    }
}

/// Closes expired sessions `ttl` seconds after their expiry (kcptun's scavenger).
async fn scavenge(mut rx: mpsc::UnboundedReceiver<(SmuxSession, Instant)>, ttl: i64) {
    let mut list: Vec<(SmuxSession, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some((s, expiry)) => {
                    let at = if ttl >= 0 {
                        expiry + Duration::from_secs(ttl as u64)
                    } else {
                        expiry.checked_sub(Duration::from_secs(ttl.unsigned_abs())).unwrap_or(expiry)
                    };
                    list.push((s, at));
                }
                None => return,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                list.retain(|(s, at)| {
                    if s.is_closed() {
                        tlog!("scavenger: session normally closed");
                        false
                    } else if now > *at {
                        s.close();
                        tlog!("scavenger: session closed due to ttl");
                        false
                    } else {
                        true
                    }
                });
            }
        }
    }
}

/// SIGUSR1 prints the counters, as kcptun.
#[cfg(unix)]
pub(super) async fn sigusr1(stats: impl Fn() -> EndpointStats) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut sig) = signal(SignalKind::user_defined1()) else {
        return;
    };
    while sig.recv().await.is_some() {
        tlog!("KCP SNMP:{:?}", stats());
    }
}
