//! [`KcpArgs`]: the KCP flags as a clap argument group for kcp-perf and the kcp-mio examples.

use clap::{Arg, ArgMatches, Command};

use super::flags::{KcpFlags, Side};
use crate::KcpConfig;

/// kcptun's KCP flags ([`KCP_FLAGS`](super::KCP_FLAGS), the client's defaults) as a clap
/// argument group, for kcp-perf and the kcp-mio examples (`#[command(flatten)]`), with two
/// flags of their own: `--defaults` and `--stream`. Differences from the tunnel: `--mode`
/// takes only the five names, the hidden flags are listed in `--help`, and `--crypt` names
/// follow [`KcpConfig::crypt`] (`null`: no encryption layer), as kcp-go's own tools have them.
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
        assert!(
            !a.config().unwrap().engine().pacing,
            "pacing is off by default"
        );
        // Our extension: pacing, in any mode.
        let a = parse(&["--mode", "fast3", "--pacing"]).unwrap();
        let e = *a.config().unwrap().engine();
        assert!(e.pacing && e.nc && e.interval == 10);
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
}
