//! The command line the project's tools share (feature `cli`): the kcptun-named KCP flags
//! (same names, defaults and ranges as kcptun's client), sizes with K/M/G suffixes, seconds,
//! rates, addresses with a default port or kcptun's `:port`, and the `--json` resource
//! fields. kcp-perf (kcp-tokio), the kcp-mio examples and the tunnel use it, so a flag means
//! the same in each.

use std::net::{SocketAddr, ToSocketAddrs};

use clap::Args;
use std::time::Duration;

use crate::{Config, KcpConfig};

/// The port client and server use when an address has none.
pub const DEFAULT_PORT: u16 = 4000;

/// KCP settings, with kcptun's names and defaults (both sides must agree).
#[derive(Args, Debug, Clone)]
pub struct KcpArgs {
    /// Use the library's defaults (`KcpConfig::default()`: fast mode, its windows, MTU 1400,
    /// no FEC, no encryption) and ignore every other KCP option.
    #[arg(long)]
    defaults: bool,
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
    stream: bool,
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
    /// Whether the flags ask for stream mode.
    pub fn stream(&self) -> bool {
        if self.defaults {
            return KcpConfig::default().engine().stream;
        }
        self.stream
    }

    /// The endpoint configuration these flags describe, or what is wrong with them.
    pub fn config(&self) -> Result<KcpConfig, String> {
        if self.defaults {
            return Ok(KcpConfig::default());
        }
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

/// Seconds as a decimal number (0 to 1e9).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("{s}: seconds must be between 0 and 1e9"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Seconds, or `inf`: until interrupted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if matches!(s, "inf" | "infinity") {
        return Ok(Duration::MAX);
    }
    let d = parse_secs(s)?;
    if d.is_zero() {
        return Err("--duration must be positive (or inf)".into());
    }
    Ok(d)
}

/// A finite number >= 0.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s}: must be a finite number >= 0"));
    }
    Ok(v)
}

/// A percentage (0 to 100).
pub fn parse_pct(s: &str) -> Result<f64, String> {
    let v = parse_rate(s)?;
    if v > 100.0 {
        return Err(format!("{s}: a percentage is at most 100"));
    }
    Ok(v)
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

/// Process CPU seconds and peak RSS (not measured on this system: zeros).
#[cfg(not(unix))]
pub fn resources() -> (f64, u64) {
    (0.0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kcp: KcpArgs,
    }

    fn parse(args: &[&str]) -> Result<KcpArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.kcp)
    }

    #[test]
    fn kcptun_defaults_and_overrides_reach_the_configuration() {
        let a = parse(&[]).unwrap();
        let cfg = a.config().unwrap();
        assert_eq!(cfg.engine().snd_wnd, 128);
        assert_eq!(cfg.engine().rcv_wnd, 512);
        assert_eq!(cfg.fec_shards(), Some((10, 3)));
        assert!(cfg.cipher().is_some());
        assert!(a.stream());

        let a = parse(&[
            "--mode",
            "fast3",
            "--interval",
            "20",
            "--sndwnd",
            "1024",
            "--crypt",
            "null",
            "--datashard",
            "0",
            "--parityshard",
            "0",
            "--stream=false",
        ])
        .unwrap();
        let cfg = a.config().unwrap();
        assert_eq!(cfg.engine().interval, 20);
        assert_eq!(cfg.engine().snd_wnd, 1024);
        assert_eq!(cfg.fec_shards(), None);
        assert_eq!(cfg.cipher(), None);
        assert!(!a.stream());
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(parse(&["--mtu", "40"]).is_err());
        assert!(parse(&["--mode", "fastest"]).is_err());
        let e = parse(&["--crypt", "rot13"]).unwrap().config().unwrap_err();
        assert!(e.contains("--crypt"), "{e}");
    }

    #[test]
    fn sizes_seconds_and_addresses() {
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size(" 16k"), Ok(16 << 10));
        assert!(parse_size("1.5M").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_secs("-1").is_err());
        assert_eq!(parse_duration("inf"), Ok(Duration::MAX));
        assert!(parse_duration("0").is_err());
        assert!(parse_pct("101").is_err());
        assert!(parse_rate("NaN").is_err());
        assert_eq!(
            resolve(":4001", "127.0.0.1"),
            Ok("127.0.0.1:4001".parse().unwrap())
        );
        assert_eq!(
            resolve("127.0.0.1", "0.0.0.0"),
            Ok(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))
        );
        assert_eq!(resolve("[::1]:9", "::"), Ok("[::1]:9".parse().unwrap()));
    }
}
