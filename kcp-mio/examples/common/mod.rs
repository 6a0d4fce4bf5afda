//! The kcptun-named flags both examples take (the same names and defaults as kcp-tokio's
//! `kcp-perf` and the Go peer in `interop/kcpperf-go`).

use kcp_core::Config;
use kcp_mio::KcpConfig;
use lexopt::ValueExt;

/// Shared flags, with kcp-perf's defaults.
pub struct KcpFlags {
    mode: String,
    nodelay: u32,
    interval: u32,
    resend: u32,
    nc: u32,
    mtu: u32,
    sndwnd: u32,
    rcvwnd: u32,
    pub stream: bool,
    acknodelay: bool,
    datashard: usize,
    parityshard: usize,
    crypt: String,
    key: String,
    sockbuf: usize,
    dscp: u8,
}

pub const SHARED_USAGE: &str = "shared: --crypt NAME --key KEY --datashard N --parityshard N
        --mode normal|fast|fast2|fast3|manual [--nodelay N --interval MS --resend N --nc N]
        --mtu N --sndwnd N --rcvwnd N --stream[=false] --acknodelay --sockbuf BYTES --dscp N";

impl Default for KcpFlags {
    fn default() -> Self {
        KcpFlags {
            mode: "fast".into(),
            nodelay: 0,
            interval: 50,
            resend: 0,
            nc: 0,
            mtu: 1350,
            sndwnd: 128,
            rcvwnd: 512,
            stream: true,
            acknodelay: false,
            datashard: 10,
            parityshard: 3,
            crypt: "aes".into(),
            key: "it's a secrect".into(),
            sockbuf: 4 << 20,
            dscp: 0,
        }
    }
}

/// `--flag` alone is true; `--flag=true|false|1|0` sets it.
pub fn boolean(p: &mut lexopt::Parser) -> Result<bool, lexopt::Error> {
    match p.optional_value() {
        None => Ok(true),
        Some(v) => match v.to_str() {
            Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            _ => Err(format!("expected true or false, got {v:?}").into()),
        },
    }
}

impl KcpFlags {
    /// Takes `--name` if it is a shared flag; `Ok(false)` if it is not one.
    pub fn take(&mut self, name: &str, p: &mut lexopt::Parser) -> Result<bool, lexopt::Error> {
        match name {
            "mode" => self.mode = p.value()?.parse()?,
            "nodelay" => self.nodelay = p.value()?.parse()?,
            "interval" => self.interval = p.value()?.parse()?,
            "resend" => self.resend = p.value()?.parse()?,
            "nc" => self.nc = p.value()?.parse()?,
            "mtu" => self.mtu = p.value()?.parse()?,
            "sndwnd" => self.sndwnd = p.value()?.parse()?,
            "rcvwnd" => self.rcvwnd = p.value()?.parse()?,
            "stream" => self.stream = boolean(p)?,
            "acknodelay" => self.acknodelay = boolean(p)?,
            "datashard" => self.datashard = p.value()?.parse()?,
            "parityshard" => self.parityshard = p.value()?.parse()?,
            "crypt" => self.crypt = p.value()?.parse()?,
            "key" => self.key = p.value()?.parse()?,
            "sockbuf" => self.sockbuf = parse_size(&p.value()?.parse::<String>()?)? as usize,
            "dscp" => self.dscp = p.value()?.parse()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The endpoint configuration these flags describe.
    pub fn config(&self) -> Result<KcpConfig, String> {
        let mut engine = match self.mode.as_str() {
            "manual" => Config::default().with_nodelay(
                self.nodelay != 0,
                self.interval,
                self.resend,
                self.nc != 0,
            ),
            m => Config::by_name(m).ok_or(format!(
                "--mode: unknown {m:?} (normal, fast, fast2, fast3, manual)"
            ))?,
        };
        engine.mtu = self.mtu;
        engine = engine.with_windows(self.sndwnd, self.rcvwnd);
        engine.stream = self.stream;
        engine.ack_nodelay = self.acknodelay;
        engine
            .validate()
            .map_err(|e| format!("bad KCP settings: {e}"))?;
        let cfg = KcpConfig::new(engine)
            .fec(self.datashard, self.parityshard)
            .crypt(&self.crypt, &self.key)
            .map_err(|e| e.to_string())?
            .sockbuf(Some(self.sockbuf))
            .dscp((self.dscp != 0).then_some(self.dscp));
        cfg.check().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

/// Sizes with K, M, G suffixes (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or(format!("bad size {s:?} (use e.g. 64K, 16M)"))
}
