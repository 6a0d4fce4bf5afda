use super::*;
use std::time::Duration;

use kcp_core::endpoint::Migration;
use kcp_core::Config;
use socket2::SockRef;

fn names(layers: &[Layer]) -> Vec<usize> {
    layers.iter().map(|l| l.header_len()).collect()
}

#[test]
fn stack_is_built_in_kcp_go_order_with_crypto_demultiplexed() {
    let cfg = KcpConfig::new(Config::fast3())
        .fec(10, 3)
        .crypt("aes", "k")
        .unwrap();
    let stack = Stack::new(&cfg).unwrap();
    // FEC header (8 incl. size field... 6 + 2) then crypto nonce + CRC (20).
    assert_eq!(names(&stack.session_layers()), [8, 20]);
    assert_eq!(stack.demux_layers(), 1);
    let ep = cfg.endpoint_config(true).unwrap();
    assert_eq!(ep.demux_layers, 1);
    assert!(ep.accept);
}

#[test]
fn fec_off_still_decodes_and_null_crypto_adds_no_layer() {
    let cfg = KcpConfig::new(Config::fast())
        .crypt("null", "k")
        .unwrap()
        .fec(0, 3);
    let stack = Stack::new(&cfg).unwrap();
    let layers = stack.session_layers();
    assert_eq!(layers.len(), 1, "a receive-only FEC decoder");
    assert_eq!(layers[0].header_len(), 0, "which sends plain KCP");
    assert_eq!(stack.demux_layers(), 0);
    assert_eq!(cfg.cipher(), None);
}

#[test]
fn custom_layers_sit_between_fec_and_crypto() {
    struct Tag;
    impl kcp_core::Codec for Tag {
        fn header_len(&self) -> usize {
            3
        }
        fn seal(
            &mut self,
            _: &mut [u8],
            len: usize,
            _: kcp_core::Millis,
        ) -> Result<usize, kcp_core::CodecError> {
            Ok(len)
        }
        fn open(
            &mut self,
            buf: &mut [u8],
            _: kcp_core::Millis,
        ) -> Result<Option<std::ops::Range<usize>>, kcp_core::CodecError> {
            Ok(Some(3..buf.len()))
        }
    }
    let cfg = KcpConfig::new(Config::fast())
        .fec(4, 2)
        .layers(|| vec![Box::new(Tag) as Layer], 1)
        .crypt("salsa20", "k")
        .unwrap();
    let stack = Stack::new(&cfg).unwrap();
    assert_eq!(names(&stack.session_layers()), [8, 3, 20]);
    assert_eq!(
        stack.demux_layers(),
        1,
        "with crypto only the cipher is demuxed"
    );
    let plain = KcpConfig::new(Config::fast()).layers(|| vec![Box::new(Tag) as Layer], 1);
    assert_eq!(Stack::new(&plain).unwrap().demux_layers(), 1);
}

#[test]
fn authenticated_modes_are_chosen_by_name() {
    for (name, header) in [
        ("aes-128-gcm", 12),
        ("chacha20-poly1305", 12),
        ("aes-128-gcm-replay", 16),
        ("chacha20-poly1305-replay", 16),
    ] {
        let cfg = KcpConfig::new(Config::fast()).crypt(name, "k").unwrap();
        assert_eq!(cfg.crypt_name(), Some(name));
        assert_eq!(cfg.cipher(), None);
        let (ep, adapter) = cfg
            .endpoint_config_with(true, CryptPlacement::Adapter)
            .unwrap();
        assert!(adapter.is_none(), "{name}: stays in the sessions");
        assert_eq!(ep.demux_layers, 1);
        let layers = Stack::new(&cfg).unwrap().session_layers();
        assert_eq!(names(&layers), [0, header], "{name}");
        assert_eq!(layers[1].trailer_len(), 16, "{name}");
    }
    let aes = KcpConfig::default().crypt("aes-128", "k").unwrap();
    assert_eq!(aes.crypt_name(), Some("aes-128"));
    assert!(KcpConfig::default().crypt("aes-replay", "k").is_err());
    assert!(KcpConfig::default().crypt("aes-128-gcm-", "k").is_err());
}

#[test]
fn migration_is_off_by_default_and_needs_a_mode_that_authenticates() {
    let off = KcpConfig::default();
    assert!(!off.get_migration());
    assert_eq!(off.endpoint_config(true).unwrap().migration, Migration::Off);
    for name in [
        "aes",
        "aes-128",
        "sm4",
        "3des",
        "aes-128-gcm",
        "chacha20-poly1305-replay",
    ] {
        let cfg = KcpConfig::default()
            .crypt(name, "k")
            .unwrap()
            .migration(true);
        assert!(cfg.check().is_ok(), "{name}");
        for placement in [CryptPlacement::Sessions, CryptPlacement::Adapter] {
            let (ep, _) = cfg.endpoint_config_with(true, placement).unwrap();
            let mode = if name.ends_with("-replay") {
                Migration::ReplayProtected
            } else {
                Migration::Fresh
            };
            assert_eq!(ep.migration, mode, "{name}");
            assert_eq!(ep.demux_layers, 1, "{name}");
        }
    }
    for name in ["salsa20", "xor", "none", "null"] {
        let cfg = KcpConfig::default()
            .crypt(name, "k")
            .unwrap()
            .migration(true);
        assert!(cfg.check().is_err(), "{name}");
        assert!(cfg.endpoint_config(true).is_err(), "{name}");
    }
    assert!(KcpConfig::default().migration(true).check().is_err());
}

#[test]
fn bad_settings_are_refused() {
    assert!(KcpConfig::default().crypt("rot13", "k").is_err());
    assert!(KcpConfig::default().fec(200, 200).check().is_err());
    let bad = Config {
        mtu: 20,
        ..Config::fast()
    };
    assert!(KcpConfig::new(bad).check().is_err());
    assert!(KcpConfig::default().check().is_ok());
    let e = KcpConfig::default().engine().to_owned();
    assert_eq!((e.snd_wnd, e.rcv_wnd), (DEFAULT_WINDOW, DEFAULT_WINDOW));
    assert_eq!(
        (e.nodelay, e.interval, e.resend, e.nc, e.stream),
        (false, 30, 2, true, true),
        "kcptun's fast mode"
    );
}

#[test]
fn lifecycle_and_admission_reach_the_endpoint() {
    let cfg = KcpConfig::default()
        .idle_timeout(Some(Duration::from_secs(5)))
        .keepalive(Some(Duration::from_millis(1500)))
        .backlog(7)
        .max_sessions(9)
        .closed_linger(Duration::from_millis(1234))
        .half_open(Duration::from_secs(2), 11, 3)
        .accept_timeout(None)
        .pool_bytes(1 << 10)
        .recv_budget(3 << 20);
    let ep = cfg.endpoint_config(false).unwrap();
    assert_eq!(ep.recv_budget_bytes, 3 << 20);
    let machine = KcpConfig::default().endpoint_config(false).unwrap();
    assert!((16 << 20..=1 << 30).contains(&machine.recv_budget_bytes));
    assert_eq!(ep.idle_timeout_ms, Some(5000));
    assert_eq!(ep.keepalive_ms, Some(1500));
    let limited = KcpConfig::default().rate_limit(Some(1_000_000));
    assert_eq!(
        limited.endpoint_config(false).unwrap().session.rate_limit,
        1_000_000
    );
    assert!(
        !KcpConfig::default()
            .endpoint_config(false)
            .unwrap()
            .session
            .pacing
    );
    let paced = KcpConfig::default().pacing(true);
    assert!(paced.endpoint_config(false).unwrap().session.pacing);
    let off = KcpConfig::default().keepalive(None);
    assert_eq!(off.endpoint_config(false).unwrap().keepalive_ms, None);
    assert_eq!(
        KcpConfig::default().timeouts().keepalive,
        Some(Duration::from_secs(10))
    );
    let t = KcpConfig::default()
        .shutdown_timeout(Duration::from_secs(3))
        .timeouts();
    assert_eq!(
        (t.shutdown, t.linger),
        (Duration::from_secs(3), Duration::from_secs(3))
    );
    let t = KcpConfig::default()
        .linger(Duration::from_secs(1))
        .read_timeout(Some(Duration::from_secs(2)))
        .timeouts();
    assert_eq!(
        (t.linger, t.read, t.write),
        (Duration::from_secs(1), Some(Duration::from_secs(2)), None)
    );
    assert_eq!((ep.backlog, ep.max_sessions), (7, 9));
    assert_eq!(ep.closed_linger_ms, 1234);
    assert_eq!(
        (
            ep.half_open_timeout_ms,
            ep.max_half_open,
            ep.max_half_open_per_host
        ),
        (2000, 11, 3)
    );
    assert_eq!(ep.accept_timeout_ms, None);
    assert_eq!(ep.pool_bytes, 1024);
    assert!(!ep.accept);
}

#[test]
fn socket_options_apply_through_a_sockref() {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = KcpConfig::default().sockbuf(Some(1 << 18)).dscp(Some(46));
    cfg.apply_socket(SockRef::from(&s)).unwrap();
    let r = SockRef::from(&s);
    assert!(r.recv_buffer_size().unwrap() >= 1 << 18);
    assert_eq!(r.tos_v4().unwrap(), 46 << 2);
    assert!(set_dscp(SockRef::from(&s), 64).is_err());
}

/// The receive buffer is raised to hold the receive window (the window times the MTU), up
/// to what the kernel allows; the send buffer keeps the configured size.
#[cfg(target_os = "linux")]
#[test]
fn the_receive_buffer_holds_the_receive_window() {
    let rmem_max = receive_buffer_cap().expect("rmem_max");
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let small = 1 << 16;
    let engine = Config {
        rcv_wnd: 8192,
        mtu: 1400,
        ..Config::fast()
    };
    let cfg = KcpConfig::new(engine).sockbuf(Some(small));
    assert_eq!(cfg.receive_buffer_bytes(), 8192 * 1400);
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    cfg.apply_socket(SockRef::from(&s)).unwrap();
    let r = SockRef::from(&s);
    // Linux reports twice what it granted.
    assert_eq!(
        r.recv_buffer_size().unwrap() / 2,
        (8192 * 1400).min(rmem_max),
        "rmem_max {rmem_max}"
    );
    assert_eq!(r.send_buffer_size().unwrap() / 2, small.min(wmem_max));
    // A window the configured size already holds leaves the receive buffer at that size.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = KcpConfig::new(Config {
        rcv_wnd: 32,
        ..engine
    })
    .sockbuf(Some(small));
    cfg.apply_socket(SockRef::from(&s)).unwrap();
    assert_eq!(
        SockRef::from(&s).recv_buffer_size().unwrap() / 2,
        small.min(rmem_max)
    );
}

/// A window the system's cap cannot hold is reported for command-line tools to print.
#[cfg(target_os = "linux")]
#[test]
fn a_window_beyond_rmem_max_gets_a_note() {
    let rmem_max = receive_buffer_cap().expect("rmem_max");
    let big = Config {
        mtu: 1400,
        ..Config::fast().with_windows(32, (rmem_max / 1400 + 1) as u32)
    };
    assert!(
        big.validate().is_ok(),
        "rmem_max {rmem_max}: no window exceeds it"
    );
    let note = KcpConfig::new(big).receive_buffer_note().expect("a note");
    assert!(note.contains(&format!("caps it at {rmem_max}")), "{note}");
    // Within the cap, or with the system's default buffers: nothing to say.
    let small = Config {
        mtu: 1400,
        ..Config::fast().with_windows(32, 32)
    };
    assert_eq!(KcpConfig::new(small).receive_buffer_note(), None);
    assert_eq!(
        KcpConfig::new(big).sockbuf(None).receive_buffer_note(),
        None
    );
}

/// The key schedule, nonce key and FEC code are built once per configuration: every endpoint
/// made from it or from a clone shares them (a client with a socket per session kept one per
/// session), and a clone whose stack settings change gets its own.
#[test]
fn endpoints_of_one_configuration_share_its_stack() {
    let cfg = KcpConfig::new(Config::fast3())
        .fec(10, 3)
        .crypt("aes", "k")
        .unwrap();
    let adapter = |c: &KcpConfig| {
        c.endpoint_config_with(false, CryptPlacement::Adapter)
            .unwrap()
            .1
            .expect("a packet cipher")
    };
    let shares = |a: &AdapterCrypt, b: &AdapterCrypt| Arc::ptr_eq(&a.cipher.key, &b.cipher.key);
    let first = adapter(&cfg);
    assert!(shares(&first, &adapter(&cfg)));
    let clone = cfg.clone();
    assert!(shares(&first, &adapter(&clone)));
    // `check` builds what the first endpoint then uses.
    let checked = KcpConfig::new(Config::fast3()).crypt("aes", "k").unwrap();
    checked.check().unwrap();
    let a = adapter(&checked);
    assert!(shares(&a, &adapter(&checked)));
    // A setting the stack depends on, changed on a clone, gives that clone its own stack and
    // leaves the original's alone.
    let other_key = clone.clone().crypt("aes", "other").unwrap();
    assert!(!shares(&first, &adapter(&other_key)));
    let other_fec = cfg.clone().fec(5, 2);
    assert!(!shares(&first, &adapter(&other_fec)));
    let with_layers = cfg.clone().layers(Vec::new, 0);
    assert!(!shares(&first, &adapter(&with_layers)));
    assert!(shares(&first, &adapter(&cfg)));
    // A setting it does not depend on keeps sharing.
    let windows = cfg.clone().with_engine(Config::fast().with_windows(64, 64));
    assert!(shares(&first, &adapter(&windows)));
}

/// Layers of different endpoints made from one configuration share the cipher's key but
/// never a nonce stream: their sealed packets' nonces all differ, and each opens the
/// other's.
#[test]
fn endpoints_sharing_a_key_draw_distinct_nonces() {
    use kcp_core::{Codec, Millis};
    let cfg = KcpConfig::new(Config::fast3()).crypt("aes", "k").unwrap();
    let mk = || {
        cfg.endpoint_config_with(false, CryptPlacement::Adapter)
            .unwrap()
            .1
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    let mut layers = [a.layer(), a.layer(), b.layer(), b.layer()];
    let h = kcp_crypto::HEADER_LEN;
    let mut nonces = std::collections::HashSet::new();
    for round in 0..50u8 {
        for (i, l) in layers.iter_mut().enumerate() {
            let mut buf = vec![0u8; h + 3];
            buf[h..].copy_from_slice(&[round, i as u8, 7]);
            let n = l.seal(&mut buf, h + 3, Millis(0)).unwrap();
            assert!(
                nonces.insert(buf[..16].to_vec()),
                "a nonce repeated (round {round}, layer {i})"
            );
            // Another endpoint's layer opens it (kcp-go's receivers keep no nonce state).
            let mut opener = if i < 2 { b.layer() } else { a.layer() };
            let inner = opener.open(&mut buf[..n], Millis(0)).unwrap().unwrap();
            assert_eq!(&buf[inner], &[round, i as u8, 7]);
        }
    }
}
