//! A session's settings: protocol version, role, keepalive and memory caps.

use std::fmt;
use std::time::Duration;

use super::MAX_FRAME_DATA;

/// The smux protocol version of a session (both ends must use the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Version 1: no per-stream flow control.
    V1 = 1,
    /// Version 2: per-stream windows with `UPD` frames.
    V2 = 2,
}

/// Which end of the session this is; it decides the parity of the stream ids it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opens odd stream ids: 3, 5, 7, ...
    Client,
    /// Opens even stream ids: 2, 4, 6, ...
    Server,
}

/// Keepalive timing (both of Go's tickers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// How often a `NOP` is sent (kcptun's `--keepalive`, 10 s by default).
    pub interval: Duration,
    /// How often the session checks that something arrived since the last check, and
    /// closes if nothing did (30 s in Go, not configurable in kcptun).
    pub timeout: Duration,
}

/// Session configuration. [`Config::default`] is Go smux's `DefaultConfig` plus this
/// implementation's own memory caps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Protocol version (kcptun's `--smuxver`, 1 by default).
    pub version: Version,
    /// Keepalive `NOP`s and the dead-peer check; `None` disables both.
    pub keepalive: Option<Keepalive>,
    /// The most data one outgoing frame carries: 1 to 65535, 32768 by default.
    pub max_frame_size: usize,
    /// The session-wide receive bucket in bytes (kcptun's `--smuxbuf`); 4194304 by default.
    pub max_receive_buffer: usize,
    /// Version 2: the window this end advertises per stream (kcptun's `--streambuf`);
    /// 65536 by default (kcptun passes 2097152). At most `max_receive_buffer` and
    /// `i32::MAX`.
    pub max_stream_buffer: usize,
    /// Bytes a stream's [`Session::write`](super::Session::write) may queue before the caller pulls them as frames
    /// (or, in version 2, before the peer's window lets them go); 65536 by default.
    pub stream_send_buffer: usize,
    /// Streams open at once, either side's; 65535 by default.
    pub max_streams: usize,
    /// Incoming streams waiting in [`Session::accept`](super::Session::accept); 1024 by default (Go's backlog).
    pub accept_backlog: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            version: Version::V1,
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(30),
            }),
            max_frame_size: 32768,
            max_receive_buffer: 4_194_304,
            max_stream_buffer: 65536,
            stream_send_buffer: 65536,
            max_streams: 65535,
            accept_backlog: 1024,
        }
    }
}

impl Config {
    /// Checks the values, with Go's rules plus this implementation's caps.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(k) = self.keepalive {
            if k.interval.is_zero() {
                return Err(ConfigError("keepalive interval must be positive"));
            }
            if k.timeout < k.interval {
                return Err(ConfigError(
                    "keepalive timeout must be at least the interval",
                ));
            }
        }
        if self.max_frame_size == 0 || self.max_frame_size > MAX_FRAME_DATA {
            return Err(ConfigError("max frame size must be 1 to 65535"));
        }
        if self.max_receive_buffer == 0 || self.max_receive_buffer > i32::MAX as usize {
            return Err(ConfigError("max receive buffer must be 1 to 2147483647"));
        }
        if self.max_stream_buffer == 0 {
            return Err(ConfigError("max stream buffer must be positive"));
        }
        if self.max_stream_buffer > self.max_receive_buffer {
            return Err(ConfigError(
                "max stream buffer must not exceed max receive buffer",
            ));
        }
        if self.stream_send_buffer == 0 {
            return Err(ConfigError("stream send buffer must be positive"));
        }
        if self.max_streams == 0 {
            return Err(ConfigError("max streams must be positive"));
        }
        if self.accept_backlog == 0 {
            return Err(ConfigError("accept backlog must be positive"));
        }
        Ok(())
    }
}

/// An invalid [`Config`] value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid smux config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}
