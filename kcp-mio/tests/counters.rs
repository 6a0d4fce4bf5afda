//! The endpoint's counters two ways: `stats` sums every session's, `own_stats` reads only
//! what the endpoint counts itself (no walk over sessions), and both agree on those.

mod common;

use std::time::Duration;

use common::{mio_clients, MioServer};
use kcp_core::Config;
use kcp_mio::perf::Test;
use kcp_mio::KcpConfig;

#[test]
fn own_stats_has_the_endpoints_counters_without_the_sessions() {
    // Room for two sessions; four clients at once: some first flights are refused, and those
    // clients get in once the first sessions are done.
    let cfg = KcpConfig::new(Config::fast3());
    let server = MioServer::start(cfg.clone().max_sessions(2));
    let results = mio_clients(
        server.addr,
        &cfg,
        Test::Echo,
        16 << 10,
        1024,
        4,
        Duration::from_secs(30),
    );
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 2, "{results:?}");
    // The server refreshes both readings together every 50 ms.
    std::thread::sleep(Duration::from_millis(150));
    let served = server.served();
    let (own, all) = (served.own_stats, served.stats);
    assert!(own.refused > 0, "{own:?}");
    assert_eq!(own.refused, all.refused);
    assert_eq!(own.in_pkts, all.in_pkts);
    assert_eq!(own.max_conn, all.max_conn);
    // What sessions count themselves is only in the sum.
    assert!(all.bytes_received >= 16 << 10, "{all:?}");
    assert_eq!(own.bytes_received, 0, "{own:?}");
    assert_eq!(own.in_segs, 0, "{own:?}");
}
