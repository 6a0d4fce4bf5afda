//! The netsim table: loss x preset -> goodput, delivery latency, retransmissions; pinned as a
//! snapshot (`tests/snapshots/netsim.txt`) so that a behaviour change shows as a readable diff.
//! Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p kcp-core --test netsim`.

mod common;

use common::{lossy, transfer};
use kcp_core::Config;
use std::fmt::Write;

pub fn table() -> String {
    let mut out = String::new();
    writeln!(
        out,
        "{:<7} {:>5} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "preset", "loss%", "goodput", "p50 ms", "p99 ms", "retrans", "segs"
    )
    .unwrap();
    for (name, cfg) in [("normal", Config::normal()), ("fast3", Config::fast3())] {
        let cfg = cfg.with_windows(128, 128);
        for loss in [0.0, 0.01, 0.05, 0.10, 0.20, 0.30] {
            let mut link = lossy(loss);
            link.bandwidth = Some(2_000_000);
            link.queue_bytes = 256 * 1024;
            let o = transfer(cfg, link, 7, 1_000_000, 16 * 1024, 600_000);
            assert!(o.completed, "{name} {loss}");
            writeln!(
                out,
                "{:<7} {:>5.0} {:>6} KiB/s {:>8} {:>8} {:>8} {:>8}",
                name,
                loss * 100.0,
                o.goodput_kbps(),
                o.p50_ms,
                o.p99_ms,
                o.retrans,
                o.sent_segs
            )
            .unwrap();
        }
    }
    out
}

#[test]
fn netsim_table_matches_snapshot() {
    let got = table();
    println!("{got}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/netsim.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
        std::fs::write(path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path)
        .expect("snapshot missing: run with UPDATE_SNAPSHOTS=1 and review the diff");
    assert_eq!(
        got, want,
        "netsim table changed; if intended, run with UPDATE_SNAPSHOTS=1"
    );
}
