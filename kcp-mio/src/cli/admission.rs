//! [`AdmissionArgs`]: a server's admission limits as a clap argument group, for kcp-perf's
//! server and the kcp-mio example server.

use clap::{value_parser, Arg, ArgMatches, Command};

use crate::KcpConfig;

/// A server's admission limits (`#[command(flatten)]`): `--half-open-per-host`,
/// `--sessions-per-host`, `--max-half-open` and `--backlog`, with the endpoint's defaults
/// (64, 4096, 1024 and kcp-go's 128). A benchmark client opening thousands of sessions from
/// one address needs the per-host limits raised; a server facing the internet keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionArgs {
    /// Most half-open entries from one host (plus one per session it confirmed).
    pub half_open_per_host: u32,
    /// Most sessions peers opened from one host at once.
    pub sessions_per_host: u32,
    /// Most half-open entries in all.
    pub max_half_open: u32,
    /// Sessions waiting for accept.
    pub backlog: u32,
}

impl Default for AdmissionArgs {
    /// The endpoint's own defaults (kcp-core's `EndpointConfig`).
    fn default() -> Self {
        let ep = kcp_core::endpoint::EndpointConfig::new(kcp_core::Config::default());
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        AdmissionArgs {
            half_open_per_host: n(ep.max_half_open_per_host),
            sessions_per_host: n(ep.max_sessions_per_host),
            max_half_open: n(ep.max_half_open),
            backlog: n(ep.backlog),
        }
    }
}

/// Watches a server endpoint's `refused` counter and, at most once per [`every`](Self::new)
/// and only when it grew, gives a line for the server's stderr
/// ([`AdmissionArgs::refusal_notice`]). For kcp-perf's server and the kcp-mio example server.
#[derive(Debug, Clone)]
pub struct RefusalWatch {
    limits: AdmissionArgs,
    every: std::time::Duration,
    seen: u64,
    since: std::time::Instant,
}

impl RefusalWatch {
    /// A watch for a server with `limits`, started at `now`, speaking at most once per
    /// `every`.
    pub fn new(
        limits: AdmissionArgs,
        every: std::time::Duration,
        now: std::time::Instant,
    ) -> RefusalWatch {
        RefusalWatch {
            limits,
            every,
            seen: 0,
            since: now,
        }
    }

    /// Whether a check is due at `now` (so a caller reads its counters only then).
    pub fn due(&self, now: std::time::Instant) -> bool {
        now.duration_since(self.since) >= self.every
    }

    /// Takes the endpoint's `refused` counter at `now`: the notice if a check is due and the
    /// counter grew since the last one.
    pub fn check(&mut self, refused: u64, now: std::time::Instant) -> Option<String> {
        if !self.due(now) {
            return None;
        }
        let secs = now.duration_since(self.since).as_secs().max(1);
        let grew = refused.saturating_sub(self.seen);
        self.seen = refused;
        self.since = now;
        (grew > 0).then(|| self.limits.refusal_notice(grew, secs))
    }
}

impl AdmissionArgs {
    /// One line for a server's stderr when its endpoint's `refused` counter grew by `refused`
    /// in the last `secs` seconds: which limits turned peers away and what a refused peer
    /// sees. KCP has no refusal message: a peer refused for good retransmits until its
    /// session ends as a dead link, which says nothing about the server's limits.
    pub fn refusal_notice(&self, refused: u64, secs: u64) -> String {
        format!(
            "refused {refused} first flights or sessions in the last {secs} s at the admission \
             limits (--half-open-per-host {}, --max-half-open {}, --sessions-per-host {}, \
             --backlog {}): a refused peer retransmits, one refused for good ends with \
             \"dead link\"; raise the limits for many sessions from one address",
            self.half_open_per_host, self.max_half_open, self.sessions_per_host, self.backlog
        )
    }

    /// `config` with these limits (its half-open timeout kept).
    pub fn apply(&self, config: KcpConfig) -> KcpConfig {
        let timeout = config.half_open_timeout();
        config
            .half_open(
                timeout,
                self.max_half_open as usize,
                self.half_open_per_host as usize,
            )
            .backlog(self.backlog as usize)
            .max_sessions_per_host(self.sessions_per_host as usize)
    }
}

/// The flags: id, help, default.
fn flags() -> [(&'static str, &'static str, u32); 4] {
    let d = AdmissionArgs::default();
    [
        (
            "half-open-per-host",
            "Most half-open entries (peers that sent a first flight and have not answered the \
             server's probe yet) from one host (an IPv4 address, an IPv6 /64), plus one per \
             session the host's peers confirmed, up to half of --max-half-open; beyond it a new \
             first flight evicts the host's oldest entry once that has had time to answer, \
             else it is refused and its peer retransmits it",
            d.half_open_per_host,
        ),
        (
            "sessions-per-host",
            "Most sessions peers opened from one host at once; raise it for a benchmark client \
             opening more sessions than this from one address",
            d.sessions_per_host,
        ),
        (
            "max-half-open",
            "Most half-open entries in all (beyond it as per host: the oldest evicted once it \
             has had time to answer, else the new first flight refused)",
            d.max_half_open,
        ),
        (
            "backlog",
            "Sessions waiting for accept (kcp-go: 128)",
            d.backlog,
        ),
    ]
}

impl clap::FromArgMatches for AdmissionArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let d = AdmissionArgs::default();
        let get = |id: &str, default: u32| m.get_one::<u32>(id).copied().unwrap_or(default);
        Ok(AdmissionArgs {
            half_open_per_host: get("half-open-per-host", d.half_open_per_host),
            sessions_per_host: get("sessions-per-host", d.sessions_per_host),
            max_half_open: get("max-half-open", d.max_half_open),
            backlog: get("backlog", d.backlog),
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for AdmissionArgs {
    fn augment_args(cmd: Command) -> Command {
        cmd.args(flags().into_iter().map(|(id, help, default)| {
            Arg::new(id)
                .long(id)
                .value_name("N")
                .help(help)
                .default_value(default.to_string())
                .value_parser(value_parser!(u32).range(1..))
        }))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        admission: AdmissionArgs,
    }

    fn parse(args: &[&str]) -> Result<AdmissionArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.admission)
    }

    #[test]
    fn defaults_are_the_endpoints() {
        let a = parse(&[]).unwrap();
        assert_eq!(a, AdmissionArgs::default());
        let ep = kcp_core::endpoint::EndpointConfig::new(kcp_core::Config::default());
        assert_eq!(a.half_open_per_host as usize, ep.max_half_open_per_host);
        assert_eq!(a.sessions_per_host as usize, ep.max_sessions_per_host);
        assert_eq!(a.max_half_open as usize, ep.max_half_open);
        assert_eq!(a.backlog as usize, ep.backlog);
    }

    #[test]
    fn limits_reach_the_endpoint_configuration() {
        let a = parse(&[
            "--half-open-per-host",
            "7",
            "--sessions-per-host",
            "1000000",
            "--max-half-open",
            "20000",
            "--backlog",
            "9",
        ])
        .unwrap();
        let ep = a.apply(KcpConfig::default()).endpoint_config(true).unwrap();
        assert_eq!(ep.max_half_open_per_host, 7);
        assert_eq!(ep.max_sessions_per_host, 1_000_000);
        assert_eq!(ep.max_half_open, 20_000);
        assert_eq!(ep.backlog, 9);
        assert_eq!(ep.half_open_timeout_ms, 5_000);
        // A timeout set before is kept.
        let custom = KcpConfig::default().half_open(std::time::Duration::from_secs(2), 10, 10);
        let ep = a.apply(custom).endpoint_config(true).unwrap();
        assert_eq!(ep.half_open_timeout_ms, 2_000);
        assert_eq!(ep.max_half_open, 20_000);
    }

    #[test]
    fn zero_and_junk_are_refused() {
        for bad in [
            &["--backlog", "0"][..],
            &["--sessions-per-host", "-1"],
            &["--max-half-open", "lots"],
            &["--half-open-per-host"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_refusal_watch_speaks_once_per_interval_and_only_when_refusals_grew() {
        let limits = AdmissionArgs {
            half_open_per_host: 3,
            sessions_per_host: 7,
            max_half_open: 11,
            backlog: 13,
        };
        let t0 = std::time::Instant::now();
        let mut w = RefusalWatch::new(limits, std::time::Duration::from_secs(5), t0);
        // Not due yet, whatever the counter says.
        assert_eq!(w.check(40, t0 + std::time::Duration::from_secs(1)), None);
        let line = w
            .check(40, t0 + std::time::Duration::from_secs(6))
            .expect("due and grown");
        assert!(line.starts_with("refused 40 first flights or sessions in the last 6 s"));
        for flag in [
            "--half-open-per-host 3",
            "--max-half-open 11",
            "--sessions-per-host 7",
            "--backlog 13",
            "dead link",
        ] {
            assert!(line.contains(flag), "{flag}: {line}");
        }
        // The next interval: only what is new counts; nothing new, nothing said.
        assert_eq!(w.check(45, t0 + std::time::Duration::from_secs(8)), None);
        let line = w
            .check(45, t0 + std::time::Duration::from_secs(11))
            .unwrap();
        assert!(line.starts_with("refused 5 "), "{line}");
        assert_eq!(w.check(45, t0 + std::time::Duration::from_secs(17)), None);
    }
}
