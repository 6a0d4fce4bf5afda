//! What both examples share with kcp-tokio's `kcp-perf`: the kcptun-named KCP flags (same
//! names, defaults and ranges), sizes, addresses with the default port, the `--json`
//! resource fields.

use std::net::{SocketAddr, ToSocketAddrs};

use clap::Args;
use kcp_core::Config;
use kcp_mio::KcpConfig;

/// The port client and server use when an address has none.
pub const DEFAULT_PORT: u16 = 4000;

/// KCP settings, with kcptun's names and defaults (both sides must agree).
#[derive(Args)]
pub struct KcpArgs {
    /// Packet encryption: aes, aes-128, aes-192, salsa20, blowfish, twofish, cast5, 3des,
    /// tea, xtea, xor, sm4, none, null.
    #[arg(long, default_value = "aes")]
    crypt: String,
    /// Pre-shared secret.
    #[arg(long, default_value = "it's a secrect")]
    key: String,
    /// FEC data shards (0 with --parityshard 0: no FEC).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8))]
    datashard: u8,
    /// FEC parity shards.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8))]
    parityshard: u8,
    /// Preset: normal, fast, fast2, fast3, manual. --nodelay, --interval, --resend and --nc
    /// override the preset's values.
    #[arg(long, default_value = "fast", value_parser = ["normal", "fast", "fast2", "fast3", "manual"])]
    mode: String,
    /// nodelay (0 or 1).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    nodelay: Option<u8>,
    /// Update interval in ms.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=5000))]
    interval: Option<u32>,
    /// Fast resend after this many skipping ACKs (0: off).
    #[arg(long)]
    resend: Option<u32>,
    /// 1 turns congestion control off.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    nc: Option<u8>,
    /// Largest UDP payload.
    #[arg(long, default_value_t = 1350, value_parser = clap::value_parser!(u32).range(78..=1500))]
    mtu: u32,
    /// Send window (segments).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65535))]
    sndwnd: u32,
    /// Receive window (segments).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65535))]
    rcvwnd: u32,
    /// Stream mode (`--stream=false`: message mode).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub stream: bool,
    /// Flush ACKs at once.
    #[arg(long)]
    acknodelay: bool,
    /// UDP socket buffers in bytes.
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    sockbuf: u64,
    /// DSCP code point (0..=63; 0 leaves it unset).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=63))]
    dscp: u8,
}

impl KcpArgs {
    /// The endpoint configuration these flags describe, or what is wrong with them.
    pub fn config(&self) -> Result<KcpConfig, String> {
        let mut engine = match self.mode.as_str() {
            "manual" => Config::default().with_nodelay(false, 50, 0, false),
            m => Config::by_name(m).ok_or(format!("--mode: unknown {m:?}"))?,
        };
        if self.nodelay.is_some()
            || self.interval.is_some()
            || self.resend.is_some()
            || self.nc.is_some()
        {
            engine = engine.with_nodelay(
                self.nodelay.map_or(engine.nodelay, |v| v != 0),
                self.interval.unwrap_or(engine.interval),
                self.resend.unwrap_or(engine.resend),
                self.nc.map_or(engine.nc, |v| v != 0),
            );
        }
        engine.mtu = self.mtu;
        engine = engine.with_windows(self.sndwnd, self.rcvwnd);
        engine.stream = self.stream;
        engine.ack_nodelay = self.acknodelay;
        engine
            .validate()
            .map_err(|e| format!("bad KCP settings: {e}"))?;
        let cfg = KcpConfig::new(engine)
            .fec(self.datashard.into(), self.parityshard.into())
            .crypt(&self.crypt, &self.key)
            .map_err(|e| e.to_string())?
            .sockbuf(Some(self.sockbuf as usize))
            .dscp((self.dscp != 0).then_some(self.dscp));
        cfg.check().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

/// Sizes with K, M, G suffixes (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (an integer, optionally with K, M or G)"))
}

/// Resolves `host:port`, `ip:port`, `[v6]:port`, `host` (port 4000) or kcptun's `:port`
/// (`any` as the host).
pub fn resolve(s: &str, any: &str) -> Result<SocketAddr, String> {
    let full = match s.strip_prefix(':') {
        Some(port) => format!("{any}:{port}"),
        None if !s.contains(':') => format!("{s}:{DEFAULT_PORT}"),
        None => s.to_string(),
    };
    full.to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: no address"))
}

/// Process CPU seconds (user + system) and peak RSS in KiB, from `getrusage`.
#[cfg(unix)]
pub fn resources() -> (f64, u64) {
    // SAFETY: an all-zero rusage is valid; getrusage writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(ru.ru_utime) + secs(ru.ru_stime);
    // Linux reports KiB, macOS bytes.
    let rss = if cfg!(target_os = "macos") {
        ru.ru_maxrss as u64 / 1024
    } else {
        ru.ru_maxrss as u64
    };
    (cpu, rss)
}

#[cfg(not(unix))]
pub fn resources() -> (f64, u64) {
    (0.0, 0)
}
