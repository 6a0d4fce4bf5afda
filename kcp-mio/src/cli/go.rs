//! Flags as Go's `flag` package reads them: clap arguments, Go-style spellings, integers and
//! booleans.

use std::ffi::OsString;

use clap::{Arg, ArgMatches};

use super::flags::{Flag, FlagKind, FlagValue};

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
