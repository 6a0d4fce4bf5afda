//! The demo: two kcp-core engines move data across a simulated lossy link (virtual time, no
//! sockets), then the netsim table of presets x loss rates is printed.
//!
//! Run: `cargo run --release -p kcpx-core --example netsim`

use kcp_core::sim::scenario::{lossy, netsim_table, Transfer};
use kcp_core::Config;

fn main() {
    println!("kcp-core demo: 4 MB over a simulated link, fast3 preset, 10% loss each way,");
    println!("20 ms delay, 5 ms jitter, 2% reordering, 1% duplication; every byte checked.\n");
    let r = Transfer {
        config: Config::fast3().with_windows(256, 256),
        link: lossy(0.10),
        seed: 1,
        bytes: 4_000_000,
        max_msg: 64 * 1024,
        limit_ms: 600_000,
    }
    .run();
    println!(
        "  delivered {} bytes in {} ms of virtual time: {} KiB/s, p50 {} ms, p99 {} ms, {} retransmissions\n",
        r.bytes,
        r.elapsed_ms,
        r.goodput_kib_s(),
        r.p50_ms,
        r.p99_ms,
        r.retrans
    );
    assert!(r.completed, "transfer did not complete");
    println!("netsim table (1 MB stream, 2 MB/s link, windows 128):\n");
    print!("{}", netsim_table());
}
