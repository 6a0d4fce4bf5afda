//! IPv6 loopback: a kcp-mio client endpoint and a kcp-mio listener on `::1`, through the
//! kcp-perf protocol (every byte checked), with AES and FEC.

mod common;

use common::{mio_client, MioServer};
use kcp_mio::perf::Test;
use kcp_mio::{Config, KcpConfig};

#[test]
fn ipv6_loopback_sessions() {
    let config = KcpConfig::new(Config::fast3().with_windows(256, 256))
        .fec(10, 3)
        .crypt("aes", "v6")
        .unwrap();
    let server = MioServer::start_at("[::1]:0".parse().unwrap(), config.clone());
    assert!(server.addr.is_ipv6());
    for test in [Test::Sink, Test::Source, Test::Echo] {
        let count = if test == Test::Echo {
            64 << 10
        } else {
            1 << 20
        };
        let r = mio_client(server.addr, &config, test, count, 1024, "::1");
        assert_eq!(r.bytes, count);
    }
}
