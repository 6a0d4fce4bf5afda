//! The server: a KCP listener; one smux session per KCP session; each stream dials the target
//! (TCP `host:port`, or a unix socket path).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::smux::{CloseReason, Framing, ProtocolError, SessionEnd, SmuxSession, SmuxStream};
use crate::{KcpListener, KcpStream};

use super::config::{Resolved, TunnelConfig};
use super::log::tlog;
use super::pipe::pipe;
use super::{dial_addr, listen_addr, log_common, snmp};

/// Whether kcptun treats a target as a unix socket path: when it is not `host:port` (Go's
/// `net.SplitHostPort` fails).
pub fn is_unix_target(t: &str) -> bool {
    let Some((host, _port)) = t.rsplit_once(':') else {
        return true;
    };
    if let Some(inner) = host.strip_prefix('[') {
        return !inner.ends_with(']') || inner[..inner.len() - 1].contains(['[', ']']);
    }
    host.contains([':', '[', ']'])
}

pub(super) async fn run(cfg: TunnelConfig, r: Resolved) -> io::Result<()> {
    tlog!("version: {}", env!("CARGO_PKG_VERSION"));
    tlog!("smux version: {}", cfg.smuxver);
    tlog!("listening on: {}", cfg.listen);
    tlog!("target: {}", cfg.target);
    log_common(&cfg, &r);
    tlog!("snmplog: {}", cfg.snmplog);
    tlog!("snmpperiod: {}", cfg.snmpperiod);
    tlog!("pprof: {}", cfg.pprof);
    tlog!("quiet: {}", cfg.quiet);
    tlog!("tcp: {}", cfg.tcp);
    if cfg.pprof {
        tlog!("--pprof: Go's profiling server is not available in this implementation; ignored");
    }
    let listener = Arc::new(
        KcpListener::bind(listen_addr(&cfg.listen), r.kcp.clone())
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("listen {}: {e}", cfg.listen)))?,
    );
    {
        let l = listener.clone();
        tokio::spawn(snmp::logger(
            cfg.snmplog.clone(),
            cfg.snmpperiod as u64,
            move || l.stats(),
        ));
    }
    #[cfg(unix)]
    {
        let l = listener.clone();
        tokio::spawn(async move { super::client::sigusr1(move || l.stats()).await });
    }
    {
        // Datagrams that fail decryption or the checksum are dropped silently by KCP; say so
        // when it happens, since the usual cause is a client with another key or cipher.
        let l = listener.clone();
        tokio::spawn(async move {
            let mut last = l.stats().in_csum_errors;
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let now = l.stats().in_csum_errors;
                if now > last {
                    tlog!(
                        "{} datagrams failed the integrity check in the last 10 s: a client with another --key or --crypt?",
                        now - last
                    );
                }
                last = now;
            }
        });
    }
    let cfg = Arc::new(cfg);
    let r = Arc::new(r);
    loop {
        let (kcp, addr) = listener.accept().await?;
        tlog!("remote address: {addr}");
        tokio::spawn(handle_mux(kcp, addr, cfg.clone(), r.clone()));
    }
}

async fn handle_mux(kcp: KcpStream, addr: SocketAddr, cfg: Arc<TunnelConfig>, r: Arc<Resolved>) {
    let local = kcp.local_addr();
    tlog!(
        "smux version: {} on connection: {local} -> {addr}",
        cfg.smuxver
    );
    let framing = if r.compression {
        Framing::Snappy
    } else {
        Framing::Plain
    };
    let session = match SmuxSession::server(kcp, r.smux.clone(), framing) {
        Ok(s) => s,
        Err(e) => {
            tlog!("{e}");
            return;
        }
    };
    while let Ok(stream) = session.accept().await {
        tokio::spawn(handle_stream(stream, addr, cfg.clone()));
    }
    let end = session.end();
    let hint = match &end {
        Some(SessionEnd::Smux(CloseReason::Protocol(ProtocolError::Version {
            got: 0xff, ..
        }))) => " (the client compresses: it runs without --nocomp and this server with it)",
        Some(SessionEnd::Smux(CloseReason::Protocol(ProtocolError::Version { .. }))) => {
            " (--smuxver differs between client and server)"
        }
        Some(SessionEnd::Transport(e)) if e.contains("snappy") => {
            " (the client does not compress: it runs with --nocomp and this server without)"
        }
        _ => "",
    };
    let end = end.map(|e| e.to_string()).unwrap_or_default();
    tlog!("session from {addr} ended: {end}{hint}");
}

async fn handle_stream(stream: SmuxStream, addr: SocketAddr, cfg: Arc<TunnelConfig>) {
    let id = stream.id();
    let target = cfg.target.as_str();
    let quiet = cfg.quiet;
    if is_unix_target(target) {
        #[cfg(unix)]
        {
            match tokio::net::UnixStream::connect(target).await {
                Ok(u) => {
                    if !quiet {
                        tlog!("stream opened in: {addr}({id}) out: {target}");
                    }
                    report(pipe(stream, u).await, addr, id);
                    if !quiet {
                        tlog!("stream closed in: {addr}({id}) out: {target}");
                    }
                }
                Err(e) => tlog!("dial unix {target}: {e}"),
            }
        }
        #[cfg(not(unix))]
        tlog!("dial unix {target}: unix sockets are not available on this platform");
        return;
    }
    let dial = dial_addr(target);
    match TcpStream::connect(&dial).await {
        Ok(t) => {
            let _ = t.set_nodelay(true);
            let out = t
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| dial.clone());
            if !quiet {
                tlog!("stream opened in: {addr}({id}) out: {out}");
            }
            report(pipe(stream, t).await, addr, id);
            if !quiet {
                tlog!("stream closed in: {addr}({id}) out: {out}");
            }
        }
        Err(e) => tlog!("dial tcp {dial}: {e}"),
    }
}

fn report(e: Option<io::Error>, addr: SocketAddr, id: u32) {
    if let Some(e) = e {
        if e.kind() == io::ErrorKind::InvalidData {
            tlog!("smux {e} in: {addr}({id})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_unix_target;

    #[test]
    fn unix_targets_as_go_splits_them() {
        assert!(!is_unix_target("127.0.0.1:12948"));
        assert!(!is_unix_target(":80"));
        assert!(!is_unix_target("[::1]:80"));
        assert!(!is_unix_target("example.com:http"));
        assert!(is_unix_target("/run/app.sock"));
        assert!(is_unix_target("::1:80"));
        assert!(is_unix_target("relative.sock"));
    }
}
