//! The tunnel's command line and `-c` JSON file, with kcptun 20210922's names, aliases,
//! defaults and override rules, and their translation into the stack's settings.
//!
//! Order of precedence, as kcptun's: built-in defaults, then `KCPTUN_KEY` (for `--key`), then
//! the command line, then the keys of the `-c` JSON file (any key present and not `null`
//! replaces the flag's value), then the `--mode` preset (which replaces `nodelay`, `interval`,
//! `resend` and `nc` unless the mode is `manual` or unknown).
//!
//! Flags are read as Go's `flag` package reads them: `--name value`, `--name=value`,
//! `-name value` and `-name=value` are the same; boolean flags take no value or `=true` /
//! `=false`; integers may be written in decimal, `0x` hexadecimal, `0o`/leading-`0` octal or
//! `0b` binary. JSON keys match case-insensitively (Go's `encoding/json` rule) and unknown keys
//! are ignored.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::Value;

use crate::{Config, KcpConfig};
use kcp_mio::smux;

/// Which binary a configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client: TCP listener in front, KCP dialer behind.
    Client,
    /// The server: KCP listener in front, TCP (or unix socket) dialer behind.
    Server,
}

/// A configuration error: a bad flag value, an unreadable or malformed `-c` file, a value the
/// stack cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Every setting of either binary, with kcptun's JSON key names. Integers are `i64` as Go's
/// `int`, so out-of-range values reach [`TunnelConfig::resolve`] and get a clear message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Which binary this is for (decides the defaults and the keys that apply).
    pub side: Side,
    /// Client: local TCP listen address (`localaddr`, `-l`).
    pub localaddr: String,
    /// Client: KCP server address (`remoteaddr`, `-r`).
    pub remoteaddr: String,
    /// Server: KCP listen address (`listen`, `-l`).
    pub listen: String,
    /// Server: target `host:port`, or a unix socket path (`target`, `-t`).
    pub target: String,
    /// Pre-shared secret (`key`, `$KCPTUN_KEY`).
    pub key: String,
    /// Cipher name (`crypt`); unknown names mean aes, as in kcptun.
    pub crypt: String,
    /// Profile: `fast3`, `fast2`, `fast`, `normal`, `manual` (`mode`).
    pub mode: String,
    /// Client: KCP sessions used round-robin (`conn`).
    pub conn: i64,
    /// Client: seconds after which a session takes no new streams, 0 = never (`autoexpire`).
    pub autoexpire: i64,
    /// Client: seconds an expired session lives on for its streams (`scavengettl`).
    pub scavengettl: i64,
    /// UDP payload size (`mtu`).
    pub mtu: i64,
    /// Send window in packets (`sndwnd`).
    pub sndwnd: i64,
    /// Receive window in packets (`rcvwnd`).
    pub rcvwnd: i64,
    /// Reed-Solomon data shards (`datashard`, `--ds`).
    pub datashard: i64,
    /// Reed-Solomon parity shards (`parityshard`, `--ps`).
    pub parityshard: i64,
    /// DSCP code point, 6 bits (`dscp`).
    pub dscp: i64,
    /// No snappy compression (`nocomp`).
    pub nocomp: bool,
    /// ACK at once (`acknodelay`, hidden).
    pub acknodelay: bool,
    /// `nodelay` (hidden, `manual` mode).
    pub nodelay: i64,
    /// `interval` in ms (hidden, `manual` mode).
    pub interval: i64,
    /// `resend` (hidden, `manual` mode).
    pub resend: i64,
    /// `nc`: no congestion control (hidden, `manual` mode).
    pub nc: i64,
    /// UDP socket buffers in bytes (`sockbuf`).
    pub sockbuf: i64,
    /// smux version, 1 or 2 (`smuxver`).
    pub smuxver: i64,
    /// smux session receive buffer (`smuxbuf`).
    pub smuxbuf: i64,
    /// smux v2 per-stream window (`streambuf`).
    pub streambuf: i64,
    /// Seconds between smux keepalives (`keepalive`).
    pub keepalive: i64,
    /// Log file, empty = stderr (`log`).
    pub log: String,
    /// SNMP CSV path with a Go time layout in its file name, empty = off (`snmplog`).
    pub snmplog: String,
    /// Seconds between SNMP lines (`snmpperiod`).
    pub snmpperiod: i64,
    /// Server: Go's pprof HTTP server (`pprof`; not available here, warned about).
    pub pprof: bool,
    /// No stream open/close lines (`quiet`).
    pub quiet: bool,
    /// Fake-TCP transport (`tcp`; refused here).
    pub tcp: bool,
}

impl TunnelConfig {
    /// kcptun 20210922's defaults for `side`.
    pub fn defaults(side: Side) -> TunnelConfig {
        let (snd, rcv) = match side {
            Side::Client => (128, 512),
            Side::Server => (1024, 1024),
        };
        TunnelConfig {
            side,
            localaddr: ":12948".into(),
            remoteaddr: "vps:29900".into(),
            listen: ":29900".into(),
            target: "127.0.0.1:12948".into(),
            key: "it's a secrect".into(),
            crypt: "aes".into(),
            mode: "fast".into(),
            conn: 1,
            autoexpire: 0,
            scavengettl: 600,
            mtu: 1350,
            sndwnd: snd,
            rcvwnd: rcv,
            datashard: 10,
            parityshard: 3,
            dscp: 0,
            nocomp: false,
            acknodelay: false,
            nodelay: 0,
            interval: 50,
            resend: 0,
            nc: 0,
            sockbuf: 4_194_304,
            smuxver: 1,
            smuxbuf: 4_194_304,
            streambuf: 2_097_152,
            keepalive: 10,
            log: String::new(),
            snmplog: String::new(),
            snmpperiod: 60,
            pprof: false,
            quiet: false,
            tcp: false,
        }
    }

    /// Replaces settings by the keys of a `-c` JSON document (kcptun's rule: a key that is
    /// present and not `null` wins over the command line; unknown keys are ignored; keys
    /// match case-insensitively, an exact match first).
    pub fn apply_json(&mut self, text: &str) -> Result<(), ConfigError> {
        // Go's json.Decoder reads the first value and ignores what follows it.
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let value = match stream.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return err(format!("invalid JSON: {e}")),
            None => return err("invalid JSON: empty file"),
        };
        let Value::Object(map) = value else {
            return err("invalid JSON: the configuration must be an object");
        };
        let names = self.json_keys();
        for (k, v) in &map {
            let Some(name) = names
                .iter()
                .find(|n| **n == k.as_str())
                .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(k)))
            else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            self.set_json(name, v)
                .map_err(|want| ConfigError(format!("JSON key {k:?}: {want}, found {v}")))?;
        }
        Ok(())
    }

    fn json_keys(&self) -> Vec<&'static str> {
        let mut keys = COMMON_KEYS.to_vec();
        keys.extend_from_slice(match self.side {
            Side::Client => CLIENT_KEYS,
            Side::Server => SERVER_KEYS,
        });
        keys
    }

    /// Sets one setting by its JSON key; `Err` names the expected type.
    fn set_json(&mut self, name: &str, v: &Value) -> Result<(), &'static str> {
        let s = |v: &Value| v.as_str().map(str::to_owned).ok_or("expected a string");
        let i = |v: &Value| v.as_i64().ok_or("expected an integer");
        let b = |v: &Value| v.as_bool().ok_or("expected true or false");
        match name {
            "localaddr" => self.localaddr = s(v)?,
            "remoteaddr" => self.remoteaddr = s(v)?,
            "listen" => self.listen = s(v)?,
            "target" => self.target = s(v)?,
            "key" => self.key = s(v)?,
            "crypt" => self.crypt = s(v)?,
            "mode" => self.mode = s(v)?,
            "conn" => self.conn = i(v)?,
            "autoexpire" => self.autoexpire = i(v)?,
            "scavengettl" => self.scavengettl = i(v)?,
            "mtu" => self.mtu = i(v)?,
            "sndwnd" => self.sndwnd = i(v)?,
            "rcvwnd" => self.rcvwnd = i(v)?,
            "datashard" => self.datashard = i(v)?,
            "parityshard" => self.parityshard = i(v)?,
            "dscp" => self.dscp = i(v)?,
            "nocomp" => self.nocomp = b(v)?,
            "acknodelay" => self.acknodelay = b(v)?,
            "nodelay" => self.nodelay = i(v)?,
            "interval" => self.interval = i(v)?,
            "resend" => self.resend = i(v)?,
            "nc" => self.nc = i(v)?,
            "sockbuf" => self.sockbuf = i(v)?,
            "smuxver" => self.smuxver = i(v)?,
            "smuxbuf" => self.smuxbuf = i(v)?,
            "streambuf" => self.streambuf = i(v)?,
            "keepalive" => self.keepalive = i(v)?,
            "log" => self.log = s(v)?,
            "snmplog" => self.snmplog = s(v)?,
            "snmpperiod" => self.snmpperiod = i(v)?,
            "pprof" => self.pprof = b(v)?,
            "quiet" => self.quiet = b(v)?,
            "tcp" => self.tcp = b(v)?,
            _ => {}
        }
        Ok(())
    }

    /// Applies the `--mode` preset (kcptun does this after reading the JSON file): `normal`,
    /// `fast`, `fast2` and `fast3` set `nodelay`, `interval`, `resend` and `nc`; any other
    /// mode (`manual`) keeps them.
    pub fn apply_mode(&mut self) {
        let p = match self.mode.as_str() {
            "normal" => (0, 40, 2, 1),
            "fast" => (0, 30, 2, 1),
            "fast2" => (1, 20, 2, 1),
            "fast3" => (1, 10, 2, 1),
            _ => return,
        };
        (self.nodelay, self.interval, self.resend, self.nc) = p;
    }

    /// The cipher kcptun 20210922 would use for `crypt`: the known names as they are, any
    /// other name (`null` included) `aes`.
    pub fn effective_crypt(&self) -> &str {
        match self.crypt.as_str() {
            c @ ("sm4" | "tea" | "xor" | "none" | "aes-128" | "aes-192" | "blowfish"
            | "twofish" | "cast5" | "3des" | "xtea" | "salsa20") => c,
            _ => "aes",
        }
    }

    /// Checks every value and builds the stack's settings. Where kcptun would silently ignore
    /// a value its library refuses (an MTU above 1500, a window of 0) or crash (`conn 0`), this
    /// returns an error naming the setting.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        if self.tcp {
            return err("--tcp (fake-TCP transport) is not supported by this implementation; run over UDP (drop --tcp)");
        }
        let positive = |name: &str, v: i64| -> Result<(), ConfigError> {
            if v <= 0 {
                return err(format!("--{name} {v}: must be positive"));
            }
            Ok(())
        };
        if !(50..=1500).contains(&self.mtu) {
            return err(format!("--mtu {}: must be 50 to 1500", self.mtu));
        }
        let max_window = i64::from(kcp_mio::kcp_core::config::MAX_WINDOW);
        for (name, v) in [("sndwnd", self.sndwnd), ("rcvwnd", self.rcvwnd)] {
            if !(1..=max_window).contains(&v) {
                return err(format!("--{name} {v}: must be 1 to {max_window}"));
            }
        }
        if self.datashard > 0 && self.parityshard > 0 && self.datashard + self.parityshard > 256 {
            return err(format!(
                "--datashard {} --parityshard {}: at most 256 shards in all",
                self.datashard, self.parityshard
            ));
        }
        positive("sockbuf", self.sockbuf)?;
        positive("smuxbuf", self.smuxbuf)?;
        positive("streambuf", self.streambuf)?;
        positive("keepalive", self.keepalive)?;
        if !(0..=63).contains(&self.dscp) {
            return err(format!("--dscp {}: must be 0 to 63 (6 bits)", self.dscp));
        }
        if self.snmpperiod < 0 {
            return err(format!(
                "--snmpperiod {}: must not be negative",
                self.snmpperiod
            ));
        }
        if self.side == Side::Client && !(1..=65535).contains(&self.conn) {
            return err(format!("--conn {}: must be 1 to 65535", self.conn));
        }
        let version = match self.smuxver {
            1 => smux::Version::V1,
            2 => smux::Version::V2,
            v => {
                return err(format!(
                    "unsupported smux version: {v} (--smuxver takes 1 or 2)"
                ))
            }
        };
        // Go smux's fixed dead-peer timeout; the keepalive interval may not exceed it.
        let timeout = Duration::from_secs(30);
        let interval = Duration::from_secs(self.keepalive as u64);
        if interval > timeout {
            return err(format!(
                "--keepalive {}: must be at most 30 (smux's fixed keepalive timeout)",
                self.keepalive
            ));
        }
        let to_usize = |name: &str, v: i64| -> Result<usize, ConfigError> {
            usize::try_from(v).or_else(|_| err(format!("--{name} {v}: out of range")))
        };
        let smux_config = smux::Config {
            version,
            keepalive: Some(smux::Keepalive { interval, timeout }),
            max_receive_buffer: to_usize("smuxbuf", self.smuxbuf)?,
            max_stream_buffer: to_usize("streambuf", self.streambuf)?,
            ..smux::Config::default()
        };
        smux_config.validate().map_err(|e| {
            ConfigError(format!(
                "{e} (--smuxbuf {}, --streambuf {})",
                self.smuxbuf, self.streambuf
            ))
        })?;

        // kcp-go's NoDelay: negative values leave its defaults (0, 100, 0, 0); the interval
        // is clamped to 10..=5000.
        let nodelay = self.nodelay > 0;
        let interval_ms = if self.interval < 0 {
            100
        } else {
            self.interval.clamp(10, 5000)
        } as u32;
        let resend = self.resend.clamp(0, i64::from(u32::MAX)) as u32;
        let nc = self.nc > 0;
        let mut engine = Config::fast()
            .with_nodelay(nodelay, interval_ms, resend, nc)
            .with_windows(
                self.sndwnd.min(i64::from(u32::MAX)) as u32,
                self.rcvwnd.min(i64::from(u32::MAX)) as u32,
            );
        engine.stream = true;
        engine.write_delay = false;
        engine.mtu = self.mtu as u32;
        engine.ack_nodelay = self.acknodelay;
        let ds = self.datashard.clamp(0, 1 << 16) as usize;
        let ps = self.parityshard.clamp(0, 1 << 16) as usize;
        let crypt = self.effective_crypt();
        let kcp = KcpConfig::new(engine)
            .fec(ds, ps)
            .crypt(crypt, &self.key)
            .map_err(|e| ConfigError(e.to_string()))?
            .sockbuf(Some(self.sockbuf as usize))
            .dscp((self.dscp > 0).then_some(self.dscp as u8))
            // smux's keepalive notices a dead peer; the session's own idle timeout stays as
            // a backstop above smux's 30 s.
            .idle_timeout(Some(Duration::from_secs(90)));
        kcp.check().map_err(|e| {
            ConfigError(format!(
                "{e} (--mtu {}, --datashard {}, --parityshard {}, --crypt {crypt})",
                self.mtu, self.datashard, self.parityshard
            ))
        })?;
        Ok(Resolved {
            kcp,
            smux: smux_config,
            compression: !self.nocomp,
            crypt: crypt.to_owned(),
        })
    }
}

/// What a [`TunnelConfig`] resolves to: the stack's settings.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// KCP, FEC, encryption and socket settings.
    pub kcp: KcpConfig,
    /// smux settings.
    pub smux: smux::Config,
    /// Snappy framing between smux and KCP.
    pub compression: bool,
    /// The cipher name in effect (after kcptun's fallback to aes).
    pub crypt: String,
}

const COMMON_KEYS: &[&str] = &[
    "key",
    "crypt",
    "mode",
    "mtu",
    "sndwnd",
    "rcvwnd",
    "datashard",
    "parityshard",
    "dscp",
    "nocomp",
    "acknodelay",
    "nodelay",
    "interval",
    "resend",
    "nc",
    "sockbuf",
    "smuxver",
    "smuxbuf",
    "streambuf",
    "keepalive",
    "log",
    "snmplog",
    "snmpperiod",
    "quiet",
    "tcp",
];
const CLIENT_KEYS: &[&str] = &[
    "localaddr",
    "remoteaddr",
    "conn",
    "autoexpire",
    "scavengettl",
];
const SERVER_KEYS: &[&str] = &["listen", "target", "pprof"];

/// What parsing a command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Run with this configuration.
    Run(Box<TunnelConfig>),
    /// Print this text on stdout (`--help`, `--version`) and exit 0.
    Print(String),
    /// Print this usage error on stderr and exit 2.
    Usage(String),
}

/// The value-taking flags: (long name, aliases, help, hidden).
fn value_flags(side: Side) -> Vec<(&'static str, &'static [&'static str], &'static str, bool)> {
    let mut v: Vec<(&'static str, &'static [&'static str], &'static str, bool)> = Vec::new();
    match side {
        Side::Client => {
            v.push(("localaddr", &["l"], "local listen address", false));
            v.push(("remoteaddr", &["r"], "kcp server address", false));
        }
        Side::Server => {
            v.push(("listen", &["l"], "kcp server listen address", false));
            v.push((
                "target",
                &["t"],
                "target server address, or path/to/unix_socket",
                false,
            ));
        }
    }
    v.push((
        "key",
        &[],
        "pre-shared secret between client and server",
        false,
    ));
    v.push((
        "crypt",
        &[],
        "aes, aes-128, aes-192, salsa20, blowfish, twofish, cast5, 3des, tea, xtea, xor, sm4, none",
        false,
    ));
    v.push((
        "mode",
        &[],
        "profiles: fast3, fast2, fast, normal, manual",
        false,
    ));
    if side == Side::Client {
        v.push(("conn", &[], "set num of UDP connections to server", false));
        v.push((
            "autoexpire",
            &[],
            "set auto expiration time(in seconds) for a single UDP connection, 0 to disable",
            false,
        ));
        v.push((
            "scavengettl",
            &[],
            "set how long an expired connection can live (in seconds)",
            false,
        ));
    }
    v.push((
        "mtu",
        &[],
        "set maximum transmission unit for UDP packets",
        false,
    ));
    v.push(("sndwnd", &[], "set send window size(num of packets)", false));
    v.push((
        "rcvwnd",
        &[],
        "set receive window size(num of packets)",
        false,
    ));
    v.push((
        "datashard",
        &["ds"],
        "set reed-solomon erasure coding - datashard",
        false,
    ));
    v.push((
        "parityshard",
        &["ps"],
        "set reed-solomon erasure coding - parityshard",
        false,
    ));
    v.push(("dscp", &[], "set DSCP(6bit)", false));
    v.push(("nodelay", &[], "", true));
    v.push(("interval", &[], "", true));
    v.push(("resend", &[], "", true));
    v.push(("nc", &[], "", true));
    v.push(("sockbuf", &[], "per-socket buffer in bytes", false));
    v.push(("smuxver", &[], "specify smux version, available 1,2", false));
    v.push(("smuxbuf", &[], "the overall de-mux buffer in bytes", false));
    v.push((
        "streambuf",
        &[],
        "per stream receive buffer in bytes, smux v2+",
        false,
    ));
    v.push(("keepalive", &[], "seconds between heartbeats", false));
    v.push((
        "snmplog",
        &[],
        "collect snmp to file, aware of timeformat in golang, like: ./snmp-20060102.log",
        false,
    ));
    v.push(("snmpperiod", &[], "snmp collect period, in seconds", false));
    v.push((
        "log",
        &[],
        "specify a log file to output, default goes to stderr",
        false,
    ));
    v.push((
        "c",
        &[],
        "config from json file, which will override the command from shell",
        false,
    ));
    v
}

/// The boolean flags: (name, help, hidden).
fn bool_flags(side: Side) -> Vec<(&'static str, &'static str, bool)> {
    let mut v = vec![
        ("nocomp", "disable compression", false),
        (
            "acknodelay",
            "flush ack immediately when a packet is received",
            true,
        ),
    ];
    if side == Side::Server {
        v.push((
            "pprof",
            "start profiling server on :6060 (not available; ignored with a warning)",
            false,
        ));
    }
    v.push((
        "quiet",
        "to suppress the 'stream open/close' messages",
        false,
    ));
    v.push((
        "tcp",
        "to emulate a TCP connection(linux) (not available; refused)",
        false,
    ));
    v
}

fn default_of(d: &TunnelConfig, name: &str) -> Option<String> {
    Some(match name {
        "localaddr" => d.localaddr.clone(),
        "remoteaddr" => d.remoteaddr.clone(),
        "listen" => d.listen.clone(),
        "target" => d.target.clone(),
        "key" => d.key.clone(),
        "crypt" => d.crypt.clone(),
        "mode" => d.mode.clone(),
        "conn" => d.conn.to_string(),
        "autoexpire" => d.autoexpire.to_string(),
        "scavengettl" => d.scavengettl.to_string(),
        "mtu" => d.mtu.to_string(),
        "sndwnd" => d.sndwnd.to_string(),
        "rcvwnd" => d.rcvwnd.to_string(),
        "datashard" => d.datashard.to_string(),
        "parityshard" => d.parityshard.to_string(),
        "dscp" => d.dscp.to_string(),
        "nodelay" => d.nodelay.to_string(),
        "interval" => d.interval.to_string(),
        "resend" => d.resend.to_string(),
        "nc" => d.nc.to_string(),
        "sockbuf" => d.sockbuf.to_string(),
        "smuxver" => d.smuxver.to_string(),
        "smuxbuf" => d.smuxbuf.to_string(),
        "streambuf" => d.streambuf.to_string(),
        "keepalive" => d.keepalive.to_string(),
        "snmpperiod" => d.snmpperiod.to_string(),
        _ => return None,
    })
}

fn is_int_flag(name: &str) -> bool {
    !matches!(
        name,
        "localaddr"
            | "remoteaddr"
            | "listen"
            | "target"
            | "key"
            | "crypt"
            | "mode"
            | "snmplog"
            | "log"
            | "c"
    )
}

/// Go's `strconv.ParseInt(s, 0, 64)`: decimal, `0x`, `0o` or leading-`0` octal, `0b`, an
/// optional sign, underscores between digits only with a prefix.
pub fn parse_go_int(s: &str) -> Result<i64, String> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_owned(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_owned(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_owned(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_owned(), true)
    } else {
        (10, lower.clone(), false)
    };
    let digits = if prefixed {
        digits.replace('_', "")
    } else {
        digits
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(format!("invalid value {s:?}: not an integer"));
    }
    let mag = u64::from_str_radix(&digits, radix)
        .map_err(|_| format!("invalid value {s:?}: not an integer"))?;
    if neg {
        if mag > 1u64 << 63 {
            return Err(format!("invalid value {s:?}: out of range"));
        }
        Ok((mag as i64).wrapping_neg())
    } else {
        i64::try_from(mag).map_err(|_| format!("invalid value {s:?}: out of range"))
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

/// The clap command of a binary (its `--help` lists kcptun's flags with kcptun's defaults).
pub fn command(side: Side, name: &'static str) -> Command {
    let d = TunnelConfig::defaults(side);
    let about = match side {
        Side::Client => "kcptun-compatible client (with SMUX): TCP listener -> smux -> KCP",
        Side::Server => "kcptun-compatible server (with SMUX): KCP -> smux -> TCP target",
    };
    let mut cmd = Command::new(name)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .short('v')
                .long("version")
                .action(ArgAction::Version)
                .help("print the version"),
        );
    for (long, aliases, help, hidden) in value_flags(side) {
        let mut a = Arg::new(long)
            .long(long)
            .help(help)
            .hide(hidden)
            .num_args(1)
            .allow_hyphen_values(true)
            .value_name("value");
        for al in aliases {
            a = a.alias(*al);
            if al.len() == 1 {
                a = a.short(al.chars().next().unwrap_or('?'));
            } else {
                a = a.visible_alias(*al);
            }
        }
        if long == "c" {
            a = a.short('c');
        }
        if let Some(v) = default_of(&d, long) {
            a = a.default_value(v);
        }
        if long == "key" {
            a = a.env("KCPTUN_KEY");
        }
        if is_int_flag(long) {
            a = a.value_parser(|s: &str| parse_go_int(s));
        }
        cmd = cmd.arg(a);
    }
    for (long, help, hidden) in bool_flags(side) {
        cmd = cmd.arg(
            Arg::new(long)
                .long(long)
                .help(help)
                .hide(hidden)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_name("bool")
                .value_parser(|s: &str| parse_go_bool(s)),
        );
    }
    cmd
}

/// Rewrites Go-style flags for clap: `-name` and `-name=v` become `--name` and `--name=v`
/// when `name` is a flag of this command, the value after a value-taking flag is left alone,
/// and `help` or `h` where the first argument stands (urfave/cli's help command) becomes
/// `--help`. Flag parsing stops at `--` or the first non-flag argument, as in Go.
pub fn normalize_args(side: Side, args: Vec<OsString>) -> Vec<OsString> {
    let values: Vec<&str> = value_flags(side)
        .iter()
        .flat_map(|(l, a, _, _)| std::iter::once(*l).chain(a.iter().copied()))
        .collect();
    let bools: Vec<&str> = bool_flags(side).iter().map(|b| b.0).collect();
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    if let Some(argv0) = it.next() {
        out.push(argv0);
    }
    let mut first = true;
    while let Some(a) = it.next() {
        let Some(s) = a.to_str().map(str::to_owned) else {
            out.push(a);
            out.extend(it);
            break;
        };
        if s == "--" {
            out.push(a);
            out.extend(it);
            break;
        }
        if first && (s == "help" || s == "h") {
            out.push("--help".into());
            break;
        }
        first = false;
        let name_part = s.trim_start_matches('-');
        let dashes = s.len() - name_part.len();
        if dashes == 0 || dashes > 2 || name_part.is_empty() {
            out.push(a);
            out.extend(it);
            break;
        }
        let (name, has_value) = match name_part.split_once('=') {
            Some((n, _)) => (n, true),
            None => (name_part, false),
        };
        let known = values.contains(&name)
            || bools.contains(&name)
            || matches!(name, "help" | "h" | "version" | "v");
        if known {
            if dashes == 1 && name.len() == 1 {
                out.push(a);
            } else {
                out.push(format!("--{name_part}").into());
            }
            if values.contains(&name) && !has_value {
                if let Some(v) = it.next() {
                    out.push(v);
                }
            }
        } else {
            out.push(a);
        }
    }
    out
}

/// Parses a binary's command line, then the `-c` file and the mode preset, as kcptun does.
pub fn parse(side: Side, name: &'static str, args: Vec<OsString>) -> Parsed {
    let args = normalize_args(side, args);
    let m = match command(side, name).try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Parsed::Print(e.render().to_string())
                }
                _ => Parsed::Usage(e.render().to_string()),
            };
        }
    };
    match from_matches(side, &m) {
        Ok(c) => Parsed::Run(Box::new(c)),
        Err(e) => Parsed::Usage(e.0),
    }
}

fn from_matches(side: Side, m: &ArgMatches) -> Result<TunnelConfig, ConfigError> {
    let mut c = TunnelConfig::defaults(side);
    let s = |n: &str| m.get_one::<String>(n).cloned().unwrap_or_default();
    let i = |n: &str| m.get_one::<i64>(n).copied().unwrap_or_default();
    let b = |n: &str| m.get_one::<bool>(n).copied().unwrap_or(false);
    match side {
        Side::Client => {
            c.localaddr = s("localaddr");
            c.remoteaddr = s("remoteaddr");
            c.conn = i("conn");
            c.autoexpire = i("autoexpire");
            c.scavengettl = i("scavengettl");
        }
        Side::Server => {
            c.listen = s("listen");
            c.target = s("target");
            c.pprof = b("pprof");
        }
    }
    c.key = s("key");
    c.crypt = s("crypt");
    c.mode = s("mode");
    c.mtu = i("mtu");
    c.sndwnd = i("sndwnd");
    c.rcvwnd = i("rcvwnd");
    c.datashard = i("datashard");
    c.parityshard = i("parityshard");
    c.dscp = i("dscp");
    c.nocomp = b("nocomp");
    c.acknodelay = b("acknodelay");
    c.nodelay = i("nodelay");
    c.interval = i("interval");
    c.resend = i("resend");
    c.nc = i("nc");
    c.sockbuf = i("sockbuf");
    c.smuxver = i("smuxver");
    c.smuxbuf = i("smuxbuf");
    c.streambuf = i("streambuf");
    c.keepalive = i("keepalive");
    c.log = s("log");
    c.snmplog = m.get_one::<String>("snmplog").cloned().unwrap_or_default();
    c.snmpperiod = i("snmpperiod");
    c.quiet = b("quiet");
    c.tcp = b("tcp");
    if let Some(path) = m.get_one::<String>("c").filter(|p| !p.is_empty()) {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("-c {path}: {e}")))?;
        c.apply_json(&text)
            .map_err(|e| ConfigError(format!("-c {path}: {e}")))?;
    }
    c.apply_mode();
    Ok(c)
}
