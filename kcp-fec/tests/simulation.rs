//! FEC in the simulator, through `kcp_core::Session` (KCP then FEC, as kcp-go stacks them):
//! fewer retransmissions at 10% loss, and no RTT inflation for sparse traffic.

use kcp_core::sim::scenario::{lossy, Echo, Transfer, START};
use kcp_core::sim::LinkConfig;
use kcp_core::{Config, Layer, Session};
use kcp_fec::Fec;

fn session(cfg: Config, fec: Option<(usize, usize)>) -> Session<'static> {
    let layers: Vec<Layer> = match fec {
        Some((ds, ps)) => vec![Box::new(Fec::new(ds, ps).unwrap())],
        None => vec![Box::new(Fec::receive_only(Default::default()).unwrap())],
    };
    Session::new(0xFEC, cfg, layers, START).unwrap()
}

/// 2 MB one way, fast3, windows 256, 10% random loss each way, 30 ms delay, no reordering.
fn bulk(fec: Option<(usize, usize)>, hold_ms: u32) -> kcp_core::sim::scenario::Report {
    let link = LinkConfig {
        loss: 0.10,
        delay_ms: 30,
        ..LinkConfig::default()
    };
    let t = Transfer {
        config: Config {
            retransmit_hold_ms: hold_ms,
            ..Config::fast3().with_windows(256, 256)
        },
        link,
        seed: 5,
        bytes: 2_000_000,
        max_msg: 16 * 1024,
        limit_ms: 600_000,
    };
    t.run_with(|cfg| session(cfg, fec))
}

#[test]
fn fec_10_3_needs_markedly_fewer_retransmissions_at_10_percent_loss() {
    let plain = bulk(None, 0);
    let fec = bulk(Some((10, 3)), 0);
    let held = bulk(Some((10, 3)), 20);
    println!(
        "retransmissions at 10% loss, 2 MB: without FEC {}, FEC 10/3 {} ({} rebuilt), FEC 10/3 + 20 ms hold {}",
        plain.retrans, fec.retrans, fec.receiver.in_recovered, held.retrans
    );
    println!(
        "goodput KiB/s: without {}, FEC {}, FEC + hold {}",
        plain.goodput_kib_s(),
        fec.goodput_kib_s(),
        held.goodput_kib_s()
    );
    assert!(plain.completed && fec.completed && held.completed);
    assert!(
        fec.receiver.in_recovered > 50,
        "FEC rebuilt too little to matter"
    );
    assert!(
        fec.retrans * 2 < plain.retrans,
        "FEC {} vs plain {}",
        fec.retrans,
        plain.retrans
    );
    assert!(
        held.retrans * 4 < plain.retrans,
        "FEC+hold {} vs plain {}",
        held.retrans,
        plain.retrans
    );
}

fn echo(fec: Option<(usize, usize)>) -> kcp_core::sim::scenario::EchoReport {
    // kcp-go's measurement: a 100 ms path (50 ms each way) at 10% loss, sparse echo.
    let e = Echo {
        config: Config::fast3(),
        link: LinkConfig {
            delay_ms: 50,
            ..lossy(0.10)
        },
        seed: 9,
        messages: 400,
        size: 64,
        every_ms: 250,
    };
    e.run_with(|cfg| session(cfg, fec))
}

#[test]
fn recovered_packets_do_not_inflate_rtt_for_sparse_echo() {
    let plain = echo(None);
    let fec = echo(Some((10, 3)));
    let (p50, p99) = (plain.percentile(0.5), plain.percentile(0.99));
    let (f50, f99) = (fec.percentile(0.5), fec.percentile(0.99));
    println!("echo p50/p99 ms: without FEC {p50}/{p99}, with FEC 10/3 {f50}/{f99}");
    assert!(
        f99 <= p99,
        "FEC p99 {f99} ms worse than without FEC {p99} ms"
    );
}
