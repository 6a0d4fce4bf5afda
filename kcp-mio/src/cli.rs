//! The command line the project's tools share (feature `cli`): kcptun's KCP flags, defined
//! once ([`KCP_FLAGS`], [`KcpFlags`]) with kcptun 20210922's names, aliases, defaults and help,
//! read as Go reads them ([`parse_go_int`], [`go_arg`], [`normalize_go_args`]) and turned into
//! a [`KcpConfig`] by kcp-go's rules; [`KcpArgs`], the same flags as a clap argument group for
//! kcp-perf and the kcp-mio examples; sizes with K/M/G suffixes, seconds, rates, addresses
//! with a default port or kcptun's `:port`, and the `--json` resource fields. The tunnel
//! (kcp-tokio's `tunnel`) adds its own flags (smux, compression, sessions, logs) to
//! [`KCP_FLAGS`], so a KCP flag means the same in every tool.

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Arg, ArgMatches, Command};

use crate::{Config, KcpConfig};

/// The port client and server use when an address has none.
pub const DEFAULT_PORT: u16 = 4000;

/// Which kcptun binary's defaults apply (they differ in the windows only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client (`--sndwnd 128 --rcvwnd 512`).
    Client,
    /// The server (`--sndwnd 1024 --rcvwnd 1024`).
    Server,
}

/// The type of a flag's value, as Go's `flag` package has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagKind {
    /// A string.
    Str,
    /// A Go `int` ([`parse_go_int`]).
    Int,
    /// A boolean: `--name`, `--name=true`, `--name=false` ([`parse_go_bool`]).
    Bool,
}

/// One flag of a kcptun-style command line.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    /// The long name, also the key of the `-c` JSON file.
    pub name: &'static str,
    /// Other names: one letter is a short flag (`-l`), longer ones a visible alias (`--ds`).
    pub aliases: &'static [&'static str],
    /// The help line (kcptun's wording).
    pub help: &'static str,
    /// Hidden from kcptun's `--help`.
    pub hidden: bool,
    /// The value's type.
    pub kind: FlagKind,
    /// The environment variable that replaces the default, if any.
    pub env: Option<&'static str>,
    /// The flag's place in kcptun's `--help` (the tunnel's flags fill the gaps).
    pub help_order: usize,
}

/// A flag's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagValue {
    /// A string flag's value.
    Str(String),
    /// An integer flag's value.
    Int(i64),
    /// A boolean flag's value.
    Bool(bool),
}

impl fmt::Display for FlagValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagValue::Str(s) => f.write_str(s),
            FlagValue::Int(i) => write!(f, "{i}"),
            FlagValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

const fn flag(
    name: &'static str,
    aliases: &'static [&'static str],
    help: &'static str,
    hidden: bool,
    kind: FlagKind,
    help_order: usize,
) -> Flag {
    Flag {
        name,
        aliases,
        help,
        hidden,
        kind,
        env: None,
        help_order,
    }
}

/// kcptun 20210922's KCP flags (both binaries have them; only the windows' defaults differ
/// by [`Side`]), in the order of its `--help`. The hidden ones count only with `--mode manual`.
pub const KCP_FLAGS: &[Flag] = &[
    Flag {
        env: Some("KCPTUN_KEY"),
        ..flag(
            "key",
            &[],
            "pre-shared secret between client and server",
            false,
            FlagKind::Str,
            10,
        )
    },
    flag(
        "crypt",
        &[],
        "aes, aes-128, aes-192, salsa20, blowfish, twofish, cast5, 3des, tea, xtea, xor, sm4, none",
        false,
        FlagKind::Str,
        11,
    ),
    flag(
        "mode",
        &[],
        "profiles: fast3, fast2, fast, normal, manual",
        false,
        FlagKind::Str,
        12,
    ),
    flag(
        "mtu",
        &[],
        "set maximum transmission unit for UDP packets",
        false,
        FlagKind::Int,
        20,
    ),
    flag(
        "sndwnd",
        &[],
        "set send window size(num of packets)",
        false,
        FlagKind::Int,
        21,
    ),
    flag(
        "rcvwnd",
        &[],
        "set receive window size(num of packets)",
        false,
        FlagKind::Int,
        22,
    ),
    flag(
        "datashard",
        &["ds"],
        "set reed-solomon erasure coding - datashard",
        false,
        FlagKind::Int,
        23,
    ),
    flag(
        "parityshard",
        &["ps"],
        "set reed-solomon erasure coding - parityshard",
        false,
        FlagKind::Int,
        24,
    ),
    flag("dscp", &[], "set DSCP(6bit)", false, FlagKind::Int, 25),
    flag(
        "acknodelay",
        &[],
        "flush ack immediately when a packet is received",
        true,
        FlagKind::Bool,
        27,
    ),
    flag(
        "nodelay",
        &[],
        "nodelay 0 or 1 (with --mode manual)",
        true,
        FlagKind::Int,
        27,
    ),
    flag(
        "interval",
        &[],
        "update interval in ms (with --mode manual)",
        true,
        FlagKind::Int,
        27,
    ),
    flag(
        "resend",
        &[],
        "fast resend after this many skipping ACKs, 0 off (with --mode manual)",
        true,
        FlagKind::Int,
        27,
    ),
    flag(
        "nc",
        &[],
        "1 turns congestion control off (with --mode manual)",
        true,
        FlagKind::Int,
        27,
    ),
    flag(
        "sockbuf",
        &[],
        "per-socket buffer in bytes",
        false,
        FlagKind::Int,
        30,
    ),
];

/// The values of [`KCP_FLAGS`], named after them. Integers are `i64` as Go's `int`, so
/// out-of-range values reach [`config`](Self::config) and get a message naming the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcpFlags {
    /// Pre-shared secret (`--key`, `$KCPTUN_KEY`).
    pub key: String,
    /// Cipher name (`--crypt`).
    pub crypt: String,
    /// Profile: `fast3`, `fast2`, `fast`, `normal`, `manual` (`--mode`).
    pub mode: String,
    /// UDP payload size (`--mtu`).
    pub mtu: i64,
    /// Send window in packets (`--sndwnd`).
    pub sndwnd: i64,
    /// Receive window in packets (`--rcvwnd`).
    pub rcvwnd: i64,
    /// Reed-Solomon data shards (`--datashard`, `--ds`).
    pub datashard: i64,
    /// Reed-Solomon parity shards (`--parityshard`, `--ps`).
    pub parityshard: i64,
    /// DSCP code point, 6 bits (`--dscp`).
    pub dscp: i64,
    /// ACK at once (`--acknodelay`, hidden).
    pub acknodelay: bool,
    /// `nodelay` (hidden, `manual` mode).
    pub nodelay: i64,
    /// `interval` in ms (hidden, `manual` mode).
    pub interval: i64,
    /// `resend` (hidden, `manual` mode).
    pub resend: i64,
    /// `nc`: no congestion control (hidden, `manual` mode).
    pub nc: i64,
    /// UDP socket buffers in bytes (`--sockbuf`).
    pub sockbuf: i64,
}

impl KcpFlags {
    /// kcptun 20210922's defaults for `side`.
    pub fn defaults(side: Side) -> KcpFlags {
        let (sndwnd, rcvwnd) = match side {
            Side::Client => (128, 512),
            Side::Server => (1024, 1024),
        };
        KcpFlags {
            key: "it's a secrect".into(),
            crypt: "aes".into(),
            mode: "fast".into(),
            mtu: 1350,
            sndwnd,
            rcvwnd,
            datashard: 10,
            parityshard: 3,
            dscp: 0,
            acknodelay: false,
            nodelay: 0,
            interval: 50,
            resend: 0,
            nc: 0,
            sockbuf: 4_194_304,
        }
    }

    /// The value of the flag `name`, `None` when it is not one of [`KCP_FLAGS`].
    pub fn get(&self, name: &str) -> Option<FlagValue> {
        use FlagValue::{Bool, Int, Str};
        Some(match name {
            "key" => Str(self.key.clone()),
            "crypt" => Str(self.crypt.clone()),
            "mode" => Str(self.mode.clone()),
            "mtu" => Int(self.mtu),
            "sndwnd" => Int(self.sndwnd),
            "rcvwnd" => Int(self.rcvwnd),
            "datashard" => Int(self.datashard),
            "parityshard" => Int(self.parityshard),
            "dscp" => Int(self.dscp),
            "acknodelay" => Bool(self.acknodelay),
            "nodelay" => Int(self.nodelay),
            "interval" => Int(self.interval),
            "resend" => Int(self.resend),
            "nc" => Int(self.nc),
            "sockbuf" => Int(self.sockbuf),
            _ => return None,
        })
    }

    /// Sets the flag `name`. `Ok(false)`: not one of [`KCP_FLAGS`]; `Err`: the value has the
    /// wrong type (the message names the type expected).
    pub fn set(&mut self, name: &str, v: FlagValue) -> Result<bool, &'static str> {
        let s = |v: FlagValue| match v {
            FlagValue::Str(s) => Ok(s),
            _ => Err("expected a string"),
        };
        let i = |v: FlagValue| match v {
            FlagValue::Int(i) => Ok(i),
            _ => Err("expected an integer"),
        };
        let b = |v: FlagValue| match v {
            FlagValue::Bool(b) => Ok(b),
            _ => Err("expected true or false"),
        };
        match name {
            "key" => self.key = s(v)?,
            "crypt" => self.crypt = s(v)?,
            "mode" => self.mode = s(v)?,
            "mtu" => self.mtu = i(v)?,
            "sndwnd" => self.sndwnd = i(v)?,
            "rcvwnd" => self.rcvwnd = i(v)?,
            "datashard" => self.datashard = i(v)?,
            "parityshard" => self.parityshard = i(v)?,
            "dscp" => self.dscp = i(v)?,
            "acknodelay" => self.acknodelay = b(v)?,
            "nodelay" => self.nodelay = i(v)?,
            "interval" => self.interval = i(v)?,
            "resend" => self.resend = i(v)?,
            "nc" => self.nc = i(v)?,
            "sockbuf" => self.sockbuf = i(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The clap arguments of [`KCP_FLAGS`] with `side`'s defaults ([`go_arg`]).
    pub fn args(side: Side) -> Vec<Arg> {
        let d = KcpFlags::defaults(side);
        KCP_FLAGS
            .iter()
            .map(|f| go_arg(f, d.get(f.name).as_ref()))
            .collect()
    }

    /// Reads every flag of [`KCP_FLAGS`] that `m` has a value for (from [`args`](Self::args)).
    pub fn read_matches(&mut self, m: &ArgMatches) {
        for f in KCP_FLAGS {
            if let Some(v) = matched(m, f) {
                let _ = self.set(f.name, v);
            }
        }
    }

    /// Applies the `--mode` preset, as kcptun does after the command line and the `-c` file:
    /// `normal`, `fast`, `fast2` and `fast3` set `nodelay`, `interval`, `resend` and `nc`; any
    /// other mode (`manual`) keeps them.
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

    /// The engine settings, by kcp-go's rules (`NoDelay`: a negative value keeps kcp-go's
    /// default, the interval is clamped to 10..=5000; stream mode, no write delay), after
    /// checking the MTU and the windows. Apply the mode first ([`apply_mode`](Self::apply_mode)).
    pub fn engine(&self) -> Result<Config, String> {
        if !(50..=1500).contains(&self.mtu) {
            return Err(format!("--mtu {}: must be 50 to 1500", self.mtu));
        }
        let max_window = i64::from(kcp_core::config::MAX_WINDOW);
        for (name, v) in [("sndwnd", self.sndwnd), ("rcvwnd", self.rcvwnd)] {
            if !(1..=max_window).contains(&v) {
                return Err(format!("--{name} {v}: must be 1 to {max_window}"));
            }
        }
        let nodelay = self.nodelay > 0;
        let interval = if self.interval < 0 {
            100
        } else {
            self.interval.clamp(10, 5000)
        } as u32;
        let resend = self.resend.clamp(0, i64::from(u32::MAX)) as u32;
        let nc = self.nc > 0;
        let mut engine = Config::fast()
            .with_nodelay(nodelay, interval, resend, nc)
            .with_windows(self.sndwnd as u32, self.rcvwnd as u32);
        engine.stream = true;
        engine.write_delay = false;
        engine.mtu = self.mtu as u32;
        engine.ack_nodelay = self.acknodelay;
        Ok(engine)
    }

    /// The endpoint configuration: `engine` with FEC, encryption (`crypt` by
    /// [`KcpConfig::crypt`]'s names), socket buffers and DSCP, or what is wrong, naming the flag.
    pub fn kcp_config(&self, engine: Config) -> Result<KcpConfig, String> {
        if self.datashard > 0 && self.parityshard > 0 && self.datashard + self.parityshard > 256 {
            return Err(format!(
                "--datashard {} --parityshard {}: at most 256 shards in all",
                self.datashard, self.parityshard
            ));
        }
        if self.sockbuf <= 0 {
            return Err(format!("--sockbuf {}: must be positive", self.sockbuf));
        }
        if !(0..=63).contains(&self.dscp) {
            return Err(format!("--dscp {}: must be 0 to 63 (6 bits)", self.dscp));
        }
        engine
            .validate()
            .map_err(|e| format!("bad KCP settings: {e}"))?;
        let ds = self.datashard.clamp(0, 1 << 16) as usize;
        let ps = self.parityshard.clamp(0, 1 << 16) as usize;
        let cfg = KcpConfig::new(engine)
            .fec(ds, ps)
            .crypt(&self.crypt, &self.key)
            .map_err(|e| e.to_string())?
            .sockbuf(Some(usize::try_from(self.sockbuf).unwrap_or(usize::MAX)))
            .dscp((self.dscp > 0).then_some(self.dscp as u8));
        cfg.check().map_err(|e| {
            format!(
                "{e} (--mtu {}, --datashard {}, --parityshard {}, --crypt {})",
                self.mtu, self.datashard, self.parityshard, self.crypt
            )
        })?;
        Ok(cfg)
    }

    /// [`engine`](Self::engine), then [`kcp_config`](Self::kcp_config).
    pub fn config(&self) -> Result<KcpConfig, String> {
        self.kcp_config(self.engine()?)
    }
}

/// The clap argument of a Go-style flag: a value flag takes one value (which may begin with
/// `-`, as Go's `flag` reads it; integers by [`parse_go_int`]); a boolean flag takes none or
/// `=true`/`=false`; one-letter aliases are short flags and also long ones (Go accepts `--l`),
/// longer ones visible aliases; `default` (an empty string or a boolean: none) and the
/// environment variable as in `f`.
pub fn go_arg(f: &Flag, default: Option<&FlagValue>) -> Arg {
    let mut a = Arg::new(f.name)
        .long(f.name)
        .help(f.help)
        .hide(f.hidden)
        .display_order(f.help_order);
    a = match f.kind {
        FlagKind::Bool => a
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .value_name("bool")
            .value_parser(|s: &str| parse_go_bool(s)),
        FlagKind::Int => a
            .num_args(1)
            .allow_hyphen_values(true)
            .value_name("value")
            .value_parser(|s: &str| parse_go_int(s)),
        FlagKind::Str => a.num_args(1).allow_hyphen_values(true).value_name("value"),
    };
    if let Some(c) = one_letter(f.name) {
        a = a.short(c);
    }
    for al in f.aliases {
        a = a.alias(*al);
        match one_letter(al) {
            Some(c) => a = a.short(c),
            None => a = a.visible_alias(*al),
        }
    }
    match default {
        Some(FlagValue::Str(s)) if s.is_empty() => {}
        Some(FlagValue::Bool(_)) | None => {}
        Some(v) => a = a.default_value(v.to_string()),
    }
    if let Some(e) = f.env {
        a = a.env(e);
    }
    a
}

fn one_letter(s: &str) -> Option<char> {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// The value `m` holds for the flag `f` (an argument built by [`go_arg`]); a boolean flag
/// not given is `false`.
pub fn matched(m: &ArgMatches, f: &Flag) -> Option<FlagValue> {
    match f.kind {
        FlagKind::Str => m.get_one::<String>(f.name).cloned().map(FlagValue::Str),
        FlagKind::Int => m.get_one::<i64>(f.name).copied().map(FlagValue::Int),
        FlagKind::Bool => Some(FlagValue::Bool(
            m.get_one::<bool>(f.name).copied().unwrap_or(false),
        )),
    }
}

/// Rewrites Go-style flags for clap: `-name` and `-name=v` become `--name` and `--name=v`
/// when `name` is one of `flags` (or `help`, `h`, `version`, `v`), the value after a
/// value-taking flag is left alone, and `help` or `h` where the first argument stands
/// (urfave/cli's help command) becomes `--help`. Flag parsing stops at `--` or the first
/// non-flag argument, as in Go. `args` starts with the program name.
pub fn normalize_go_args(flags: &[Flag], args: Vec<OsString>) -> Vec<OsString> {
    let takes_value = |name: &str| {
        flags
            .iter()
            .any(|f| f.kind != FlagKind::Bool && (f.name == name || f.aliases.contains(&name)))
    };
    let known = |name: &str| {
        flags
            .iter()
            .any(|f| f.name == name || f.aliases.contains(&name))
            || matches!(name, "help" | "h" | "version" | "v")
    };
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
        if known(name) {
            if dashes == 1 && name.len() == 1 {
                out.push(a);
            } else {
                out.push(format!("--{name_part}").into());
            }
            if takes_value(name) && !has_value {
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
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

/// kcptun's KCP flags ([`KCP_FLAGS`], the client's defaults) as a clap argument group, for
/// kcp-perf and the kcp-mio examples (`#[command(flatten)]`), with two flags of their own:
/// `--defaults` and `--stream`. Differences from the tunnel: `--mode` takes only the five
/// names, the hidden flags are listed in `--help`, and `--crypt` names follow
/// [`KcpConfig::crypt`] (`null`: no encryption layer), as kcp-go's own tools have them.
#[derive(Debug, Clone)]
pub struct KcpArgs {
    defaults: bool,
    stream: bool,
    flags: KcpFlags,
}

const MODES: [&str; 5] = ["normal", "fast", "fast2", "fast3", "manual"];

impl clap::FromArgMatches for KcpArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = KcpFlags::defaults(Side::Client);
        flags.read_matches(m);
        Ok(KcpArgs {
            defaults: m.get_flag("defaults"),
            stream: m.get_one::<bool>("stream").copied().unwrap_or(true),
            flags,
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for KcpArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = cmd
            .arg(
                Arg::new("defaults")
                    .long("defaults")
                    .action(clap::ArgAction::SetTrue)
                    .help(
                        "Use the library's defaults (KcpConfig::default(): fast mode, its \
                         windows, MTU 1400, no FEC, no encryption) and ignore every other KCP \
                         option",
                    ),
            )
            .args(KcpFlags::args(Side::Client).into_iter().map(|a| {
                // Listed, in declaration order after the tool's own flags.
                let a = a.hide(false).display_order(None);
                match a.get_id().as_str() {
                    "mode" => a.value_parser(MODES),
                    "crypt" => a.help(
                        "aes, aes-128, aes-192, salsa20, blowfish, twofish, cast5, 3des, \
                         tea, xtea, xor, sm4, none, null (no encryption layer)",
                    ),
                    _ => a,
                }
            }));
        cmd.arg(
            Arg::new("stream")
                .long("stream")
                .help("Stream mode (--stream=false: message mode)")
                .default_value("true")
                .action(clap::ArgAction::Set)
                .num_args(0..=1)
                .default_missing_value("true")
                .value_parser(clap::value_parser!(bool)),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl KcpArgs {
    /// Whether the flags ask for stream mode.
    pub fn stream(&self) -> bool {
        if self.defaults {
            return KcpConfig::default().engine().stream;
        }
        self.stream
    }

    /// The KCP flags as given (before the mode preset).
    pub fn flags(&self) -> &KcpFlags {
        &self.flags
    }

    /// The endpoint configuration these flags describe (the mode preset applied as kcptun
    /// applies it), or what is wrong with them.
    pub fn config(&self) -> Result<KcpConfig, String> {
        if self.defaults {
            return Ok(KcpConfig::default());
        }
        let mut f = self.flags.clone();
        f.apply_mode();
        let mut engine = f.engine()?;
        engine.stream = self.stream;
        f.kcp_config(engine)
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
        // kcptun's rule: the preset wins over --interval unless the mode is manual.
        assert_eq!(cfg.engine().interval, 10);
        assert_eq!(cfg.engine().snd_wnd, 1024);
        assert_eq!(cfg.fec_shards(), None);
        assert_eq!(cfg.cipher(), None);
        assert!(!a.stream());

        let a = parse(&["--mode", "manual", "--interval", "20", "--nodelay", "1"]).unwrap();
        let cfg = a.config().unwrap();
        let e = cfg.engine();
        assert_eq!(
            (e.nodelay, e.interval, e.resend, e.nc),
            (true, 20, 0, false)
        );
        // kcptun's aliases, Go integers and the environment's key.
        let a = parse(&["--ds", "0x4", "--ps", "02", "--acknodelay"]).unwrap();
        assert_eq!((a.flags().datashard, a.flags().parityshard), (4, 2));
        assert!(a.flags().acknodelay);
        assert_eq!(a.config().unwrap().fec_shards(), Some((4, 2)));
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(parse(&["--mode", "fastest"]).is_err());
        assert!(parse(&["--mtu", "12x"]).is_err());
        for (args, needle) in [
            (&["--mtu", "40"][..], "--mtu 40"),
            (&["--crypt", "rot13"][..], "--crypt"),
            (&["--sndwnd", "0"][..], "--sndwnd 0"),
            (&["--dscp", "64"][..], "--dscp 64"),
            (&["--ds", "200", "--ps", "100"][..], "--datashard 200"),
            (&["--sockbuf", "-1"][..], "--sockbuf -1"),
        ] {
            let e = parse(args).unwrap().config().unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn one_flag_table_with_kcptuns_defaults_per_side() {
        let c = KcpFlags::defaults(Side::Client);
        let s = KcpFlags::defaults(Side::Server);
        assert_eq!(
            (c.sndwnd, c.rcvwnd, s.sndwnd, s.rcvwnd),
            (128, 512, 1024, 1024)
        );
        for f in KCP_FLAGS {
            let v = c.get(f.name).expect(f.name);
            let mut d = c.clone();
            assert_eq!(d.set(f.name, v.clone()), Ok(true), "{}", f.name);
            assert_eq!(d, c);
            let kind = match v {
                FlagValue::Str(_) => FlagKind::Str,
                FlagValue::Int(_) => FlagKind::Int,
                FlagValue::Bool(_) => FlagKind::Bool,
            };
            assert_eq!(kind, f.kind, "{}", f.name);
        }
        let mut d = c.clone();
        assert_eq!(d.set("conn", FlagValue::Int(2)), Ok(false));
        assert!(d.set("mtu", FlagValue::Str("1400".into())).is_err());
        let args = normalize_go_args(
            KCP_FLAGS,
            ["p", "-mtu", "-5", "-acknodelay", "-ds=3", "x", "-mtu"]
                .map(OsString::from)
                .to_vec(),
        );
        assert_eq!(
            args,
            ["p", "--mtu", "-5", "--acknodelay", "--ds=3", "x", "-mtu"]
        );
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
