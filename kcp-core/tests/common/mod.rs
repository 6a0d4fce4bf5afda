//! Shared test harness (the scenarios live in `kcp_core::sim::scenario`).
#![allow(dead_code, unused_imports)]

pub use kcp_core::sim::scenario::{lossy, pattern, Report, Transfer, START, START_SN};
use kcp_core::sim::LinkConfig;
use kcp_core::Config;

pub fn transfer(
    cfg: Config,
    link: LinkConfig,
    seed: u64,
    total: u64,
    max_msg: usize,
    limit_ms: u64,
) -> Report {
    Transfer {
        config: cfg,
        link,
        seed,
        bytes: total,
        max_msg,
        limit_ms,
    }
    .run()
}
