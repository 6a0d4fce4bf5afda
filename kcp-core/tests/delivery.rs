//! Every byte arrives exactly once and in order (stream mode), or with message boundaries
//! intact (message mode), for presets normal and fast3 at 0..30% loss with reordering and
//! duplication; clocks and sequence numbers start near u32::MAX.

mod common;

use common::{lossy, transfer};
use kcp_core::Config;

const LOSSES: [f64; 6] = [0.0, 0.01, 0.05, 0.10, 0.20, 0.30];

fn check(name: &str, cfg: Config, max_msg: usize, total: u64) {
    for (i, &loss) in LOSSES.iter().enumerate() {
        let out = transfer(cfg, lossy(loss), 1000 + i as u64, total, max_msg, 600_000);
        assert!(
            out.completed,
            "{name} at {}% loss: only {} of {total} bytes in {} ms",
            loss * 100.0,
            out.bytes,
            out.elapsed_ms
        );
    }
}

#[test]
fn stream_normal_delivers_in_order_exactly_once() {
    check("normal/stream", Config::normal(), 3000, 200_000);
}

#[test]
fn stream_fast3_delivers_in_order_exactly_once() {
    check("fast3/stream", Config::fast3(), 3000, 200_000);
}

#[test]
fn message_normal_keeps_boundaries() {
    let cfg = Config {
        stream: false,
        ..Config::normal()
    };
    check("normal/message", cfg, 5000, 150_000);
}

#[test]
fn message_fast3_keeps_boundaries() {
    let cfg = Config {
        stream: false,
        ..Config::fast3()
    };
    check("fast3/message", cfg, 5000, 150_000);
}

#[test]
fn library_defaults_with_congestion_control_deliver() {
    // kcp-go's library defaults: nodelay off, interval 100, cwnd on, windows 32.
    check("default/message", Config::default(), 2000, 60_000);
}

#[test]
fn ikcp_flavour_delivers() {
    let cfg = Config::ikcp().with_nodelay(true, 10, 2, true);
    check("ikcp/message", cfg, 5000, 100_000);
}
