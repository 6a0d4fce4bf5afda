//! Log lines as kcptun prints them (`2006/01/02 15:04:05 message`, local time), to stderr or
//! the `--log` file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Mutex;

use super::gotime;

static SINK: Mutex<Option<File>> = Mutex::new(None);

/// Sends later lines to `path` (appended, created if missing), as kcptun's `--log`.
pub fn to_file(path: &str) -> io::Result<()> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    Ok(())
}

/// Writes one line.
pub fn line(msg: std::fmt::Arguments<'_>) {
    let now = gotime::now();
    let text = format!("{} {}\n", gotime::format(&now, "2006/01/02 15:04:05"), msg);
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    match sink.as_mut() {
        Some(f) => {
            let _ = f.write_all(text.as_bytes());
        }
        None => {
            let _ = io::stderr().write_all(text.as_bytes());
        }
    }
}

/// `tlog!("...", args)`: one log line (not named `log!`, which the `log` crate has).
macro_rules! tlog {
    ($($t:tt)*) => { $crate::tunnel::log::line(format_args!($($t)*)) };
}
pub(crate) use tlog;
