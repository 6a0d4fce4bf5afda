//! `--snmplog`: kcp-go's SNMP counters as CSV, one line every `--snmpperiod` seconds, into a
//! file whose name is a Go time layout (kcptun's `./snmp-20060102.log`), with kcptun's header
//! (`Unix` and kcp-go's 24 counter names) written when the file is new.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use crate::EndpointStats;

use super::gotime;
use super::log::tlog;

/// The CSV file a path with a Go layout in its file name names at `t`.
pub fn file_name(path: &str, t: &gotime::Tm) -> String {
    let (dir, file) = match path.rfind('/') {
        Some(i) => path.split_at(i + 1),
        None => ("", path),
    };
    format!("{dir}{}", gotime::format(t, file))
}

/// One CSV line for `stats` at `unix`; the header first when `header`.
pub fn lines(stats: &EndpointStats, unix: i64, header: bool) -> String {
    let mut out = String::new();
    if header {
        out.push_str("Unix");
        for h in EndpointStats::HEADER {
            out.push(',');
            out.push_str(h);
        }
        out.push('\n');
    }
    out.push_str(&unix.to_string());
    for v in stats.to_slice() {
        out.push(',');
        out.push_str(&v.to_string());
    }
    out.push('\n');
    out
}

/// Appends a line every `period` until the task is dropped (nothing when `path` is empty or
/// `period` is zero, as kcptun).
pub async fn logger(path: String, period: u64, stats: impl Fn() -> EndpointStats) {
    if path.is_empty() || period == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(period));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = gotime::now();
        let name = file_name(&path, &now);
        let mut f = match OpenOptions::new().create(true).append(true).open(&name) {
            Ok(f) => f,
            Err(e) => {
                tlog!("snmplog {name}: {e}");
                return;
            }
        };
        let header = f.metadata().map(|m| m.len() == 0).unwrap_or(false);
        if let Err(e) = f.write_all(lines(&stats(), now.unix, header).as_bytes()) {
            tlog!("snmplog {name}: {e}");
        }
    }
}
