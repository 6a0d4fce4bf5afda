//! The tunnel's command line and `-c` JSON file, with kcptun 20210922's names, aliases,
//! defaults and override rules, and their translation into the stack's settings. The KCP
//! flags (`--key`, `--crypt`, `--mode`, windows, MTU, FEC, the hidden nodelay knobs,
//! `--sockbuf`, `--dscp`) are the shared set of [`kcp_mio::cli`] ([`KCP_FLAGS`],
//! [`KcpFlags`]); this module adds the tunnel's own ([`tunnel_flags`]: addresses, sessions,
//! smux, compression, logs).
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

use clap::{ArgAction, ArgMatches, Command};
use kcp_mio::cli::{self, Flag, FlagKind, FlagValue, KcpFlags, KCP_FLAGS};
use serde_json::Value;

use crate::KcpConfig;
use kcp_mio::smux;

pub use kcp_mio::cli::{parse_go_int, Side};

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

/// Every setting of either binary, with kcptun's JSON key names: the shared KCP flags in
/// [`kcp`](Self::kcp), the tunnel's own beside them. Integers are `i64` as Go's `int`, so
/// out-of-range values reach [`TunnelConfig::resolve`] and get a clear message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Which binary this is for (decides the defaults and the keys that apply).
    pub side: Side,
    /// The KCP flags, shared with kcp-perf ([`KCP_FLAGS`]).
    pub kcp: KcpFlags,
    /// Client: local TCP listen address (`localaddr`, `-l`).
    pub localaddr: String,
    /// Client: KCP server address (`remoteaddr`, `-r`).
    pub remoteaddr: String,
    /// Server: KCP listen address (`listen`, `-l`).
    pub listen: String,
    /// Server: target `host:port`, or a unix socket path (`target`, `-t`).
    pub target: String,
    /// Client: KCP sessions used round-robin (`conn`).
    pub conn: i64,
    /// Client: seconds after which a session takes no new streams, 0 = never (`autoexpire`).
    pub autoexpire: i64,
    /// Client: seconds an expired session lives on for its streams (`scavengettl`).
    pub scavengettl: i64,
    /// No snappy compression (`nocomp`).
    pub nocomp: bool,
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

const fn tflag(
    name: &'static str,
    aliases: &'static [&'static str],
    help: &'static str,
    kind: FlagKind,
    help_order: usize,
) -> Flag {
    Flag {
        name,
        aliases,
        help,
        hidden: false,
        kind,
        env: None,
        help_order,
    }
}

const CLIENT_ADDRS: &[Flag] = &[
    tflag(
        "localaddr",
        &["l"],
        "local listen address",
        FlagKind::Str,
        1,
    ),
    tflag("remoteaddr", &["r"], "kcp server address", FlagKind::Str, 2),
];
const SERVER_ADDRS: &[Flag] = &[
    tflag(
        "listen",
        &["l"],
        "kcp server listen address",
        FlagKind::Str,
        1,
    ),
    tflag(
        "target",
        &["t"],
        "target server address, or path/to/unix_socket",
        FlagKind::Str,
        2,
    ),
];
const CLIENT_SESSIONS: &[Flag] = &[
    tflag(
        "conn",
        &[],
        "set num of UDP connections to server",
        FlagKind::Int,
        13,
    ),
    tflag(
        "autoexpire",
        &[],
        "set auto expiration time(in seconds) for a single UDP connection, 0 to disable",
        FlagKind::Int,
        14,
    ),
    tflag(
        "scavengettl",
        &[],
        "set how long an expired connection can live (in seconds)",
        FlagKind::Int,
        15,
    ),
];
const COMMON: &[Flag] = &[
    tflag("nocomp", &[], "disable compression", FlagKind::Bool, 26),
    tflag(
        "smuxver",
        &[],
        "specify smux version, available 1,2",
        FlagKind::Int,
        31,
    ),
    tflag(
        "smuxbuf",
        &[],
        "the overall de-mux buffer in bytes",
        FlagKind::Int,
        32,
    ),
    tflag(
        "streambuf",
        &[],
        "per stream receive buffer in bytes, smux v2+",
        FlagKind::Int,
        33,
    ),
    tflag(
        "keepalive",
        &[],
        "seconds between heartbeats",
        FlagKind::Int,
        34,
    ),
    tflag(
        "snmplog",
        &[],
        "collect snmp to file, aware of timeformat in golang, like: ./snmp-20060102.log",
        FlagKind::Str,
        35,
    ),
    tflag(
        "snmpperiod",
        &[],
        "snmp collect period, in seconds",
        FlagKind::Int,
        36,
    ),
    tflag(
        "log",
        &[],
        "specify a log file to output, default goes to stderr",
        FlagKind::Str,
        38,
    ),
    tflag(
        "quiet",
        &[],
        "to suppress the 'stream open/close' messages",
        FlagKind::Bool,
        39,
    ),
    tflag(
        "tcp",
        &[],
        "to emulate a TCP connection(linux) (not available; refused)",
        FlagKind::Bool,
        40,
    ),
    tflag(
        "c",
        &[],
        "config from json file, which will override the command from shell",
        FlagKind::Str,
        41,
    ),
];
const SERVER_ONLY: &[Flag] = &[tflag(
    "pprof",
    &[],
    "start profiling server on :6060 (not available; ignored with a warning)",
    FlagKind::Bool,
    37,
)];

/// Every flag of `side`'s binary in kcptun's `--help` order: the shared [`KCP_FLAGS`] and
/// the tunnel's own (addresses, sessions, smux, compression, logs, `-c`).
pub fn tunnel_flags(side: Side) -> Vec<Flag> {
    let own: &[&[Flag]] = match side {
        Side::Client => &[CLIENT_ADDRS, CLIENT_SESSIONS, COMMON],
        Side::Server => &[SERVER_ADDRS, SERVER_ONLY, COMMON],
    };
    let mut v: Vec<Flag> = KCP_FLAGS
        .iter()
        .chain(own.iter().flat_map(|f| f.iter()))
        .copied()
        .collect();
    v.sort_by_key(|f| f.help_order);
    v
}

impl TunnelConfig {
    /// kcptun 20210922's defaults for `side`.
    pub fn defaults(side: Side) -> TunnelConfig {
        TunnelConfig {
            side,
            kcp: KcpFlags::defaults(side),
            localaddr: ":12948".into(),
            remoteaddr: "vps:29900".into(),
            listen: ":29900".into(),
            target: "127.0.0.1:12948".into(),
            conn: 1,
            autoexpire: 0,
            scavengettl: 600,
            nocomp: false,
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

    /// The value of the setting `name` (a flag's long name), `None` for an unknown name or
    /// `-c`.
    pub fn get(&self, name: &str) -> Option<FlagValue> {
        use FlagValue::{Bool, Int, Str};
        Some(match name {
            "localaddr" => Str(self.localaddr.clone()),
            "remoteaddr" => Str(self.remoteaddr.clone()),
            "listen" => Str(self.listen.clone()),
            "target" => Str(self.target.clone()),
            "conn" => Int(self.conn),
            "autoexpire" => Int(self.autoexpire),
            "scavengettl" => Int(self.scavengettl),
            "nocomp" => Bool(self.nocomp),
            "smuxver" => Int(self.smuxver),
            "smuxbuf" => Int(self.smuxbuf),
            "streambuf" => Int(self.streambuf),
            "keepalive" => Int(self.keepalive),
            "log" => Str(self.log.clone()),
            "snmplog" => Str(self.snmplog.clone()),
            "snmpperiod" => Int(self.snmpperiod),
            "pprof" => Bool(self.pprof),
            "quiet" => Bool(self.quiet),
            "tcp" => Bool(self.tcp),
            n => return self.kcp.get(n),
        })
    }

    /// Sets the setting `name`; `Ok(false)` for an unknown name, `Err` names the type the
    /// value should have.
    pub fn set(&mut self, name: &str, v: FlagValue) -> Result<bool, &'static str> {
        let (s, i, b) = (
            FlagValue::into_str,
            FlagValue::into_int,
            FlagValue::into_bool,
        );
        match name {
            "localaddr" => self.localaddr = s(v)?,
            "remoteaddr" => self.remoteaddr = s(v)?,
            "listen" => self.listen = s(v)?,
            "target" => self.target = s(v)?,
            "conn" => self.conn = i(v)?,
            "autoexpire" => self.autoexpire = i(v)?,
            "scavengettl" => self.scavengettl = i(v)?,
            "nocomp" => self.nocomp = b(v)?,
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
            n => return self.kcp.set(n, v),
        }
        Ok(true)
    }

    /// Replaces settings by the keys of a `-c` JSON document (kcptun's rule: a key that is
    /// present and not `null` wins over the command line; unknown keys are ignored; keys
    /// match case-insensitively, an exact match first). The keys are the flags' long names
    /// (`-c` aside) of this side's binary.
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
        let keys: Vec<Flag> = tunnel_flags(self.side)
            .into_iter()
            .filter(|f| f.name != "c")
            .collect();
        for (k, v) in &map {
            let Some(f) = keys
                .iter()
                .find(|f| f.name == k.as_str())
                .or_else(|| keys.iter().find(|f| f.name.eq_ignore_ascii_case(k)))
            else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            let value = match f.kind {
                FlagKind::Str => v.as_str().map(|s| FlagValue::Str(s.to_owned())),
                FlagKind::Int => v.as_i64().map(FlagValue::Int),
                FlagKind::Bool => v.as_bool().map(FlagValue::Bool),
            };
            let set = match value {
                Some(value) => self.set(f.name, value).map(|_| ()),
                None => Err(match f.kind {
                    FlagKind::Str => "expected a string",
                    FlagKind::Int => "expected an integer",
                    FlagKind::Bool => "expected true or false",
                }),
            };
            set.map_err(|want| ConfigError(format!("JSON key {k:?}: {want}, found {v}")))?;
        }
        Ok(())
    }

    /// Applies the `--mode` preset (kcptun does this after reading the JSON file); see
    /// [`KcpFlags::apply_mode`].
    pub fn apply_mode(&mut self) {
        self.kcp.apply_mode();
    }

    /// The cipher kcptun 20210922 would use for `crypt`: the known names as they are, any
    /// other name (`null` included) `aes`.
    pub fn effective_crypt(&self) -> &str {
        match self.kcp.crypt.as_str() {
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
        positive("smuxbuf", self.smuxbuf)?;
        positive("streambuf", self.streambuf)?;
        positive("keepalive", self.keepalive)?;
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

        // The KCP flags as kcptun 20210922 reads them: an unknown cipher name means aes.
        let crypt = self.effective_crypt().to_owned();
        let kcp_flags = KcpFlags {
            crypt: crypt.clone(),
            ..self.kcp.clone()
        };
        let kcp = kcp_flags
            .config()
            .map_err(ConfigError)?
            // smux's keepalive notices a dead peer; the session's own idle timeout stays as
            // a backstop above smux's 30 s.
            .idle_timeout(Some(Duration::from_secs(90)));
        Ok(Resolved {
            kcp,
            smux: smux_config,
            compression: !self.nocomp,
            crypt,
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

/// The clap command of a binary (its `--help` lists kcptun's flags with kcptun's defaults,
/// in kcptun's order).
pub fn command(side: Side, name: &'static str) -> Command {
    let d = TunnelConfig::defaults(side);
    let about = match side {
        Side::Client => "kcptun-compatible client (with SMUX): TCP listener -> smux -> KCP",
        Side::Server => "kcptun-compatible server (with SMUX): KCP -> smux -> TCP target",
    };
    Command::new(name)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .arg(
            clap::Arg::new("version")
                .short('v')
                .long("version")
                .action(ArgAction::Version)
                .help("print the version")
                .display_order(usize::MAX),
        )
        .args(
            tunnel_flags(side)
                .iter()
                .map(|f| cli::go_arg(f, d.get(f.name).as_ref())),
        )
}

/// Rewrites Go-style flags for clap ([`cli::normalize_go_args`] with this side's flags).
pub fn normalize_args(side: Side, args: Vec<OsString>) -> Vec<OsString> {
    cli::normalize_go_args(&tunnel_flags(side), args)
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
    for f in tunnel_flags(side) {
        if let Some(v) = cli::matched(m, &f) {
            let _ = c.set(f.name, v);
        }
    }
    if let Some(path) = m.get_one::<String>("c").filter(|p| !p.is_empty()) {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("-c {path}: {e}")))?;
        c.apply_json(&text)
            .map_err(|e| ConfigError(format!("-c {path}: {e}")))?;
    }
    c.apply_mode();
    Ok(c)
}
