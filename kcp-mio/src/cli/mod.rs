//! The command line the project's tools share (feature `cli`): kcptun's KCP flags, defined
//! once ([`KCP_FLAGS`], [`KcpFlags`]) with kcptun 20210922's names, aliases, defaults and help,
//! read as Go reads them ([`parse_go_int`], [`go_arg`], [`normalize_go_args`]) and turned into
//! a [`KcpConfig`](crate::KcpConfig) by kcp-go's rules; [`KcpArgs`], the same flags as a clap
//! argument group for kcp-perf and the kcp-mio examples, and a server's admission limits as
//! another ([`AdmissionArgs`]); sizes with K/M/G suffixes, seconds,
//! rates, addresses with a default port or kcptun's `:port`, and the `--json` resource fields.
//! The tunnel (kcp-tokio's `tunnel`) adds its own flags (smux, compression, sessions, logs) to
//! [`KCP_FLAGS`], so a KCP flag means the same in every tool.

mod admission;
mod args;
mod flags;
mod go;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub use admission::{AdmissionArgs, RefusalWatch};
pub use args::KcpArgs;
pub use flags::{Flag, FlagKind, FlagValue, KcpFlags, Side, KCP_FLAGS};
pub use go::{go_arg, matched, normalize_go_args, parse_go_bool, parse_go_int};

/// The port client and server use when an address has none.
pub const DEFAULT_PORT: u16 = 4000;

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
