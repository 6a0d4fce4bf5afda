//! The netsim table (preset x loss -> goodput, delivery latency, retransmissions) pinned as a
//! snapshot (`tests/snapshots/netsim.txt`) so that a behaviour change shows as a readable diff.
//! Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p kcpx-core --test netsim`, and review it.

use kcp_core::sim::scenario::netsim_table;

#[test]
fn netsim_table_matches_snapshot() {
    let got = netsim_table();
    println!("{got}");
    assert!(
        !got.contains("stalled"),
        "a transfer did not complete:\n{got}"
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/netsim.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &got).unwrap();
        return;
    }
    let want =
        std::fs::read_to_string(path).expect("snapshot missing: run with UPDATE_SNAPSHOTS=1");
    assert_eq!(
        got, want,
        "netsim table changed; if intended, run with UPDATE_SNAPSHOTS=1 and review the diff"
    );
}
