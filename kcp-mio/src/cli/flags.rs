//! kcptun's KCP flags: the table ([`KCP_FLAGS`]), their values ([`KcpFlags`]) and the
//! configuration they describe.

use std::fmt;

use clap::{Arg, ArgMatches};

use super::go::{go_arg, matched};
use crate::{Config, KcpConfig};

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
    /// A Go `int` ([`parse_go_int`](super::parse_go_int)).
    Int,
    /// A boolean: `--name`, `--name=true`, `--name=false`
    /// ([`parse_go_bool`](super::parse_go_bool)).
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

impl FlagValue {
    /// The string of a string flag; `Err` names the type expected.
    pub fn into_str(self) -> Result<String, &'static str> {
        match self {
            FlagValue::Str(s) => Ok(s),
            _ => Err("expected a string"),
        }
    }

    /// The value of an integer flag; `Err` names the type expected.
    pub fn into_int(self) -> Result<i64, &'static str> {
        match self {
            FlagValue::Int(i) => Ok(i),
            _ => Err("expected an integer"),
        }
    }

    /// The value of a boolean flag; `Err` names the type expected.
    pub fn into_bool(self) -> Result<bool, &'static str> {
        match self {
            FlagValue::Bool(b) => Ok(b),
            _ => Err("expected true or false"),
        }
    }
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
        "pacing",
        &[],
        "pace new data at the delivery rate the acknowledgements show, within an in-flight \
         bound, instead of sending a window at once (our extension, see docs/tuning.md)",
        true,
        FlagKind::Bool,
        27,
    ),
    flag(
        "sockbuf",
        &[],
        "per-socket buffer in bytes (the receive buffer holds at least --rcvwnd x --mtu)",
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
    /// Pacing (`--pacing`, hidden, our extension: kcp-core's `Config::pacing`).
    pub pacing: bool,
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
            pacing: false,
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
            "pacing" => Bool(self.pacing),
            "sockbuf" => Int(self.sockbuf),
            _ => return None,
        })
    }

    /// Sets the flag `name`. `Ok(false)`: not one of [`KCP_FLAGS`]; `Err`: the value has the
    /// wrong type (the message names the type expected).
    pub fn set(&mut self, name: &str, v: FlagValue) -> Result<bool, &'static str> {
        let (s, i, b) = (
            FlagValue::into_str,
            FlagValue::into_int,
            FlagValue::into_bool,
        );
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
            "pacing" => self.pacing = b(v)?,
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
        engine.pacing = self.pacing;
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

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::cli::normalize_go_args;

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
}
