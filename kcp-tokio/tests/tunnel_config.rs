//! The tunnel's command line and `-c` JSON against kcptun 20210922's rules: every flag of the
//! Debian binaries' `--help` with its aliases and default, Go-style flag spellings, the JSON
//! override and mode preset order, kcptun's cipher fallback, and the shipped example files.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use kcp_tokio::tunnel::config::{self, parse_go_int, Parsed, Side, TunnelConfig};
use kcp_tokio::CipherKind;

fn args(list: &[&str]) -> Vec<OsString> {
    std::iter::once("prog")
        .chain(list.iter().copied())
        .map(OsString::from)
        .collect()
}

fn run(side: Side, list: &[&str]) -> TunnelConfig {
    match config::parse(side, "prog", args(list)) {
        Parsed::Run(c) => *c,
        Parsed::Print(t) | Parsed::Usage(t) => panic!("{list:?}: {t}"),
    }
}

fn usage(side: Side, list: &[&str]) -> String {
    match config::parse(side, "prog", args(list)) {
        Parsed::Usage(t) => t,
        other => panic!("{list:?}: expected a usage error, got {other:?}"),
    }
}

/// (names, default, from $KCPTUN_KEY) of every flag in a kcptun `--help` output: `--a value, -b value  text
/// (default: X)`.
fn go_flags(bin: &str) -> Vec<(Vec<String>, Option<String>, bool)> {
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: install Debian's kcptun (.ci/setup.sh)"
    );
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .expect("run kcptun --help");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags = Vec::new();
    let mut in_opts = false;
    for line in text.lines() {
        if line.starts_with("GLOBAL OPTIONS") {
            in_opts = true;
            continue;
        }
        let l = line.trim();
        if !in_opts || !l.starts_with('-') {
            continue;
        }
        let spec = l.split("  ").next().unwrap_or("");
        let names: Vec<String> = spec
            .split(", ")
            .map(|n| {
                n.split(' ')
                    .next()
                    .unwrap_or("")
                    .trim_start_matches('-')
                    .to_owned()
            })
            .collect();
        let default = l.split("(default: ").nth(1).map(|d| {
            d.split(')')
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .to_owned()
        });
        let env = l.contains("[$KCPTUN_KEY]");
        flags.push((names, default, env));
    }
    assert!(flags.len() > 25, "could not read {bin} --help:\n{text}");
    flags
}

fn check_against_go(side: Side, bin: &str) {
    let cmd = config::command(side, "prog");
    let defaults = TunnelConfig::defaults(side);
    for (names, default, env) in go_flags(bin) {
        let long = &names[0];
        if long == "help" || long == "version" {
            continue;
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
            .unwrap_or_else(|| panic!("--{long} of {bin} is missing"));
        assert_eq!(
            arg.get_env().is_some_and(|e| e == "KCPTUN_KEY"),
            env,
            "--{long}: $KCPTUN_KEY"
        );
        for alias in &names[1..] {
            let short_ok = alias.len() == 1 && arg.get_short() == alias.chars().next();
            let long_ok = arg
                .get_all_aliases()
                .is_some_and(|a| a.contains(&alias.as_str()));
            assert!(short_ok || long_ok, "--{long}: alias {alias} missing");
        }
        let ours: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        match default {
            Some(d) if long == "key" => assert_eq!(defaults.kcp.key, d),
            Some(d) => assert_eq!(ours, vec![d], "--{long} default"),
            None => assert!(ours.is_empty() || ours == [""], "--{long} has a default"),
        }
    }
}

#[test]
fn every_flag_of_kcptun_with_aliases_and_defaults() {
    check_against_go(Side::Client, "/usr/bin/kcptun-client");
    check_against_go(Side::Server, "/usr/bin/kcptun-server");
}

#[test]
fn defaults_and_hidden_flags() {
    let c = run(Side::Client, &[]);
    assert_eq!(
        (
            c.kcp.sndwnd,
            c.kcp.rcvwnd,
            c.conn,
            c.autoexpire,
            c.scavengettl
        ),
        (128, 512, 1, 0, 600)
    );
    assert_eq!(
        (c.smuxver, c.smuxbuf, c.streambuf, c.keepalive),
        (1, 4194304, 2097152, 10)
    );
    // Mode fast (the default) sets the hidden parameters.
    assert_eq!(
        (c.kcp.nodelay, c.kcp.interval, c.kcp.resend, c.kcp.nc),
        (0, 30, 2, 1)
    );
    let s = run(Side::Server, &[]);
    assert_eq!((s.kcp.sndwnd, s.kcp.rcvwnd), (1024, 1024));
    // The hidden flags count only with --mode manual.
    let m = run(
        Side::Client,
        &[
            "--mode",
            "manual",
            "--nodelay",
            "1",
            "--interval",
            "15",
            "--resend",
            "3",
            "--nc",
            "1",
        ],
    );
    assert_eq!(
        (m.kcp.nodelay, m.kcp.interval, m.kcp.resend, m.kcp.nc),
        (1, 15, 3, 1)
    );
    let f = run(
        Side::Client,
        &["--mode", "fast3", "--nodelay", "0", "--interval", "15"],
    );
    assert_eq!(
        (f.kcp.nodelay, f.kcp.interval, f.kcp.resend, f.kcp.nc),
        (1, 10, 2, 1)
    );
    let r = m.resolve().unwrap();
    let e = r.kcp.engine();
    assert!(e.nodelay && e.nc && e.stream);
    assert_eq!(
        (e.interval, e.resend, e.mtu, e.snd_wnd, e.rcv_wnd),
        (15, 3, 1350, 128, 512)
    );
}

#[test]
fn go_style_spellings() {
    let c = run(
        Side::Client,
        &[
            "-l",
            ":1000",
            "-r=1.2.3.4:5",
            "-key",
            "-dashed-key",
            "-crypt=salsa20",
            "-nocomp",
            "--ds",
            "0x4",
            "-ps=02",
            "-conn",
            "3",
            "--quiet=false",
            "-acknodelay=true",
        ],
    );
    assert_eq!(c.localaddr, ":1000");
    assert_eq!(c.remoteaddr, "1.2.3.4:5");
    assert_eq!(c.kcp.key, "-dashed-key");
    assert_eq!(c.kcp.crypt, "salsa20");
    assert!(c.nocomp && !c.quiet && c.kcp.acknodelay);
    assert_eq!((c.kcp.datashard, c.kcp.parityshard, c.conn), (4, 2, 3));
    let s = run(
        Side::Server,
        &["--listen", ":1", "-t", "/run/x.sock", "--pprof"],
    );
    assert_eq!(s.target, "/run/x.sock");
    assert!(s.pprof);
    // Flags of the other side, unknown flags, stray arguments and bad numbers are usage errors.
    usage(Side::Server, &["--conn", "2"]);
    usage(Side::Client, &["--bogus"]);
    usage(Side::Client, &["-nocomp", "true"]);
    assert!(usage(Side::Client, &["--mtu", "12x"]).contains("12x"));
    assert!(matches!(
        config::parse(Side::Client, "prog", args(&["help"])),
        Parsed::Print(_)
    ));
    assert!(matches!(
        config::parse(Side::Client, "prog", args(&["-v"])),
        Parsed::Print(_)
    ));
}

#[test]
fn go_integers() {
    assert_eq!(parse_go_int("10"), Ok(10));
    assert_eq!(parse_go_int("-7"), Ok(-7));
    assert_eq!(parse_go_int("0x1F"), Ok(31));
    assert_eq!(parse_go_int("010"), Ok(8));
    assert_eq!(parse_go_int("0b101"), Ok(5));
    assert_eq!(parse_go_int("0x_10"), Ok(16));
    assert!(parse_go_int("").is_err());
    assert!(parse_go_int("1_0").is_err());
    assert!(parse_go_int("99999999999999999999").is_err());
    assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
}

fn write_json(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("tunnel-config-{}-{name}.json", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn json_overrides_flags_then_mode_applies() {
    let p = write_json(
        "override",
        r#"{"KEY": "from-json", "sndwnd": 64, "nocomp": true, "crypt": null,
            "mode": "fast2", "interval": 99, "unknown": [1, 2], "Conn": 2}"#,
    );
    let c = run(
        Side::Client,
        &[
            "--key",
            "flag",
            "--sndwnd",
            "10",
            "--crypt",
            "xor",
            "-c",
            p.to_str().unwrap(),
        ],
    );
    assert_eq!(c.kcp.key, "from-json");
    assert_eq!(c.kcp.sndwnd, 64);
    assert!(c.nocomp);
    assert_eq!(c.kcp.crypt, "xor", "null keeps the flag");
    assert_eq!(c.conn, 2, "keys match case-insensitively");
    assert_eq!(c.kcp.interval, 20, "the mode preset comes after the JSON");
    // Wrong types and malformed files are clear errors.
    let bad = write_json("bad", r#"{"mtu": "1400"}"#);
    assert!(usage(Side::Client, &["-c", bad.to_str().unwrap()]).contains("\"mtu\""));
    let float = write_json("float", r#"{"mtu": 1400.5}"#);
    assert!(usage(Side::Client, &["-c", float.to_str().unwrap()]).contains("integer"));
    let broken = write_json("broken", r#"{"mtu": "#);
    assert!(usage(Side::Client, &["-c", broken.to_str().unwrap()]).contains("invalid JSON"));
    assert!(usage(Side::Client, &["-c", "/nonexistent/kcptun.json"])
        .contains("/nonexistent/kcptun.json"));
    for f in [p, bad, float, broken] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn shipped_example_files_parse() {
    let dir = Path::new("/usr/share/doc/kcptun/examples");
    for (side, file) in [(Side::Client, "local.json"), (Side::Server, "server.json")] {
        let path = dir.join(file);
        assert!(
            path.exists(),
            "{} is missing: install Debian's kcptun",
            path.display()
        );
        let c = run(side, &["-c", path.to_str().unwrap()]);
        assert_eq!(c.kcp.crypt, "aes-128");
        assert_eq!(c.kcp.mode, "fast3");
        assert_eq!(c.kcp.mtu, 1400);
        assert_eq!(c.kcp.dscp, 46);
        assert!(c.nocomp);
        assert_eq!(c.kcp.sockbuf, 16777217);
        // fast3 replaces the file's interval 40.
        assert_eq!((c.kcp.nodelay, c.kcp.interval), (1, 10));
        match side {
            Side::Client => {
                assert_eq!(c.remoteaddr, "11.22.33.44:2000");
                assert_eq!(c.autoexpire, 1800);
            }
            Side::Server => {
                assert_eq!(c.target, "127.0.0.1:9999");
                assert_eq!((c.kcp.sndwnd, c.kcp.rcvwnd), (2048, 2048));
            }
        }
        let r = c.resolve().unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(r.kcp.cipher(), Some(CipherKind::Aes128));
        assert!(!r.compression);
    }
}

#[test]
fn crypt_names_as_kcptun_maps_them() {
    let mut c = TunnelConfig::defaults(Side::Client);
    for (name, kind) in [
        ("null", CipherKind::Aes256),
        ("whatever", CipherKind::Aes256),
        ("", CipherKind::Aes256),
        ("none", CipherKind::None),
        ("aes-192", CipherKind::Aes192),
        ("3des", CipherKind::TripleDes),
        ("tea", CipherKind::Tea),
    ] {
        c.kcp.crypt = name.into();
        let r = c.resolve().unwrap();
        assert_eq!(r.kcp.cipher(), Some(kind), "{name:?}");
    }
}

#[test]
fn bad_values_name_the_flag() {
    for (flags, needle) in [
        (&["--smuxver", "3"][..], "unsupported smux version: 3"),
        (&["--smuxver", "0"][..], "smux version"),
        (&["--keepalive", "0"][..], "--keepalive"),
        (&["--keepalive", "31"][..], "--keepalive"),
        (&["--conn", "0"][..], "--conn"),
        (&["--mtu", "2000"][..], "--mtu"),
        (&["--sndwnd", "0"][..], "--sndwnd"),
        (
            &["--rcvwnd", "100000"][..],
            "--rcvwnd 100000: must be 1 to 32768",
        ),
        (
            &["--ds", "200", "--ps", "100"][..],
            "--datashard 200 --parityshard 100",
        ),
        (&["--dscp", "64"][..], "--dscp"),
        (&["--streambuf", "8388608"][..], "--streambuf"),
        (&["--tcp"][..], "--tcp"),
    ] {
        let c = run(Side::Client, flags);
        let e = c.resolve().expect_err(needle).to_string();
        assert!(e.contains(needle), "{flags:?}: {e}");
    }
}
