//! A kcptun-compatible TCP tunnel over smux over KCP: the library behind the binaries
//! `kcptun-rs-client` and `kcptun-rs-server` (feature `tunnel`).
//!
//! The client listens on TCP (`-l`), and carries each accepted connection as one smux stream
//! over a KCP session to the server (`-r`); the server accepts KCP sessions (`-l`) and dials
//! the target (`-t`, `host:port` or a unix socket path) for each stream. Flags, the `-c` JSON
//! file and the wire are kcptun 20210922's (see [`config`]), so either end can replace
//! Debian's `kcptun-client` or `kcptun-server` and talk to the other.
//!
//! What differs from kcptun: `--tcp` (fake-TCP) and `--pprof` are not available (the first is
//! refused, the second ignored with a warning); values kcptun silently ignores or crashes on
//! (`--mtu 9000`, `--conn 0`, `--keepalive 0`) are refused with a message naming the flag; a
//! `:port` address listens on all IPv4 addresses (write `[::]:port` for IPv6).

pub mod config;
pub mod gotime;
pub mod log;

mod client;
mod pipe;
mod server;
mod snmp;

use std::ffi::OsString;
use std::process::ExitCode;

use self::log::tlog;
use config::{Parsed, Resolved, Side, TunnelConfig};

/// The client binary: parses `args` (program name first) and runs until killed; the exit
/// code is 2 for a usage error, 1 for a fatal error.
pub fn client_main(args: Vec<OsString>) -> ExitCode {
    main(Side::Client, "kcptun-rs-client", args)
}

/// The server binary: as [`client_main`].
pub fn server_main(args: Vec<OsString>) -> ExitCode {
    main(Side::Server, "kcptun-rs-server", args)
}

fn main(side: Side, name: &'static str, args: Vec<OsString>) -> ExitCode {
    let cfg = match config::parse(side, name, args) {
        Parsed::Run(c) => *c,
        Parsed::Print(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Usage(text) => {
            eprintln!("{}", text.trim_end());
            return ExitCode::from(2);
        }
    };
    if !cfg.log.is_empty() {
        if let Err(e) = log::to_file(&cfg.log) {
            eprintln!("--log {}: {e}", cfg.log);
            return ExitCode::from(1);
        }
    }
    let resolved = match cfg.resolve() {
        Ok(r) => r,
        Err(e) => {
            tlog!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tlog!("tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        match side {
            Side::Client => client::run(cfg, resolved).await,
            Side::Server => server::run(cfg, resolved).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tlog!("{e}");
            ExitCode::from(1)
        }
    }
}

/// The settings both binaries log at start, as kcptun does.
fn log_common(cfg: &TunnelConfig, r: &Resolved) {
    tlog!("encryption: {}", r.crypt);
    tlog!(
        "nodelay parameters: {} {} {} {}",
        cfg.kcp.nodelay,
        cfg.kcp.interval,
        cfg.kcp.resend,
        cfg.kcp.nc
    );
    tlog!("sndwnd: {} rcvwnd: {}", cfg.kcp.sndwnd, cfg.kcp.rcvwnd);
    tlog!("compression: {}", r.compression);
    tlog!("mtu: {}", cfg.kcp.mtu);
    tlog!(
        "datashard: {} parityshard: {}",
        cfg.kcp.datashard,
        cfg.kcp.parityshard
    );
    tlog!("acknodelay: {}", cfg.kcp.acknodelay);
    tlog!("dscp: {}", cfg.kcp.dscp);
    tlog!("sockbuf: {}", cfg.kcp.sockbuf);
    if let Some(note) = r.kcp.receive_buffer_note() {
        tlog!("warning: {note}");
    }
    tlog!("smuxbuf: {}", cfg.smuxbuf);
    tlog!("streambuf: {}", cfg.streambuf);
    tlog!("keepalive: {}", cfg.keepalive);
}

/// A listen address in kcptun's form: `:port` means every (IPv4) address.
fn listen_addr(a: &str) -> String {
    match a.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => a.to_owned(),
    }
}

/// A dial address in kcptun's form: `:port` means this host.
fn dial_addr(a: &str) -> String {
    match a.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => a.to_owned(),
    }
}
