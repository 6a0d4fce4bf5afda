//! Per-session heap of the crypto layers when they are built the shared way (one key per
//! endpoint, `with_key` per session), measured with a counting allocator, and checked
//! against what `Codec::heap_bytes` reports.
//!
//! Print the table: `cargo test -p kcpx-crypto --test session_heap -- --nocapture`.

mod common;

use std::sync::Arc;

use common::TestRng;
use kcp_core::{Codec, Config, Layer, Millis, Session};
use kcp_crypto::{
    AeadCrypt, AeadKey, AeadKind, BlockCrypt, CipherKind, PacketCrypt, PacketKey, Pass,
    ReplayAeadCrypt, ReplayKey,
};

/// The bytes the current thread holds (allocations minus deallocations), so that nothing
/// another thread does (the test harness) shows up.
fn live() -> isize {
    kcp_testkit::alloc::thread_live()
}

#[global_allocator]
static ALLOC: kcp_testkit::alloc::Counting = kcp_testkit::alloc::Counting;

const NOW: Millis = Millis(0);
const PACKETS: usize = 20;
/// What one session's crypto layer may hold when idle, the box it lives in included. The
/// whole idle session (engine and every layer) must stay within 2 KiB.
const LAYER_BUDGET: usize = 512;

fn pass() -> Pass {
    Pass::from_bytes(core::array::from_fn(|i| i as u8))
}

/// Sealed packets for a layer to open, and room for it to seal into, made before measuring.
struct Traffic {
    inbound: Vec<Vec<u8>>,
    outbound: Vec<Vec<u8>>,
    payload: usize,
}

impl Traffic {
    fn new(peer: &mut dyn Codec) -> Traffic {
        let payload = 200;
        let h = peer.header_len();
        let inbound = (0..PACKETS)
            .map(|i| {
                let mut b = vec![i as u8; h + payload + peer.trailer_len()];
                let n = peer.seal(&mut b, h + payload, NOW).expect("seal");
                b.truncate(n);
                b
            })
            .collect();
        let outbound = vec![vec![0u8; 2048]; PACKETS];
        Traffic {
            inbound,
            outbound,
            payload,
        }
    }
}

/// One row of the report.
struct Row {
    name: &'static str,
    active: isize,
    idle: isize,
}

/// Builds a session's layer with `make`, drives it (seals, and opens or accepts `traffic`),
/// then trims it; returns the bytes it held while active and once idle. Checks that
/// `heap_bytes` plus the boxed layer itself is exactly what the allocator saw.
fn measure(
    name: &'static str,
    make: &mut dyn FnMut() -> Layer,
    traffic: &mut Traffic,
    demuxed: bool,
) -> Row {
    let before = live();
    let mut layer = make();
    let h = layer.header_len();
    for b in traffic.outbound.iter_mut() {
        layer.seal(b, h + traffic.payload, NOW).expect("seal");
    }
    for p in traffic.inbound.iter_mut() {
        if demuxed {
            let inner = h..p.len() - layer.trailer_len();
            layer.accept_demuxed(p, inner, NOW).expect("accept");
        } else {
            layer.open(p, NOW).expect("open");
        }
    }
    let active = live() - before;
    let own = core::mem::size_of_val(&*layer) as isize;
    assert_eq!(
        active,
        own + layer.heap_bytes() as isize,
        "{name}: heap_bytes when active"
    );
    layer.trim();
    let idle = live() - before;
    assert_eq!(
        idle,
        own + layer.heap_bytes() as isize,
        "{name}: heap_bytes when idle"
    );
    drop(layer);
    assert_eq!(live(), before, "{name}: nothing left behind");
    Row { name, active, idle }
}

#[test]
fn per_session_heap_of_each_layer_built_from_a_shared_key() {
    let p = pass();
    let mut rows = Vec::new();

    for (name, kind) in [
        ("PacketCrypt aes-128", CipherKind::Aes128),
        ("PacketCrypt aes (256)", CipherKind::Aes256),
        ("PacketCrypt salsa20", CipherKind::Salsa20),
        ("PacketCrypt twofish", CipherKind::Twofish),
    ] {
        let key = Arc::new(PacketKey::new(
            BlockCrypt::from_pass(kind, &p),
            &mut TestRng(1),
        ));
        let mut traffic = Traffic::new(&mut PacketCrypt::with_key(Arc::clone(&key)));
        let mut make = || Box::new(PacketCrypt::with_key(Arc::clone(&key))) as Layer;
        rows.push(measure(name, &mut make, &mut traffic, false));
    }

    for (name, kind) in [
        ("AeadCrypt aes-128-gcm", AeadKind::Aes128Gcm),
        ("AeadCrypt chacha20-poly1305", AeadKind::ChaCha20Poly1305),
    ] {
        let key = Arc::new(AeadKey::from_pass(kind, &p, &mut TestRng(2)));
        let mut traffic = Traffic::new(&mut AeadCrypt::with_key(Arc::clone(&key)));
        let mut make = || Box::new(AeadCrypt::with_key(Arc::clone(&key))) as Layer;
        rows.push(measure(name, &mut make, &mut traffic, false));
    }

    for (name, kind) in [
        ("ReplayAeadCrypt aes-128-gcm", AeadKind::Aes128Gcm),
        (
            "ReplayAeadCrypt chacha20-poly1305",
            AeadKind::ChaCha20Poly1305,
        ),
    ] {
        let key = Arc::new(ReplayKey::from_pass(kind, &p));
        let mut peer = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(3));
        let mut traffic = Traffic::new(&mut peer);
        // As on a listener: the endpoint's instance authenticates, the session accepts.
        let mut endpoint = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(4));
        for pkt in traffic.inbound.iter_mut() {
            endpoint.demux_open(pkt, NOW).expect("authenticates");
        }
        let mut rng = TestRng(5);
        let mut make = || Box::new(ReplayAeadCrypt::with_key(Arc::clone(&key), &mut rng)) as Layer;
        rows.push(measure(name, &mut make, &mut traffic, true));
    }

    eprintln!("per-session crypto layer heap (bytes, boxed layer included):");
    eprintln!("{:<36} {:>8} {:>10}", "layer", "active", "idle/trim");
    for r in &rows {
        eprintln!("{:<36} {:>8} {:>10}", r.name, r.active, r.idle);
    }
    for r in &rows {
        assert!(
            r.idle as usize <= LAYER_BUDGET,
            "{}: {} bytes idle, budget {LAYER_BUDGET}",
            r.name,
            r.idle
        );
    }
}

#[test]
fn a_layer_that_owns_its_key_costs_a_key_schedule_per_session() {
    // The contrast that motivates sharing: the same layer built the old way.
    let p = pass();
    let before = live();
    let owned: Layer = Box::new(PacketCrypt::new(
        BlockCrypt::from_pass(CipherKind::Twofish, &p),
        &mut TestRng(1),
    ));
    let owned_bytes = live() - before;
    let key = Arc::new(PacketKey::new(
        BlockCrypt::from_pass(CipherKind::Twofish, &p),
        &mut TestRng(1),
    ));
    let before = live();
    let shared: Layer = Box::new(PacketCrypt::with_key(Arc::clone(&key)));
    let shared_bytes = live() - before;
    eprintln!("twofish layer: owned key {owned_bytes} bytes, shared key {shared_bytes} bytes");
    assert!(owned_bytes > 4096);
    assert!(shared_bytes <= 160);
    drop((owned, shared));
}

#[test]
fn a_new_session_with_a_shared_key_layer() {
    // For the record: the engine and session buffers are kcp-core's; the crypto layer's share
    // is the difference between the two (its box, and the session's per-layer bookkeeping).
    let key = Arc::new(ReplayKey::from_pass(AeadKind::Aes128Gcm, &pass()));
    let before = live();
    let bare = Session::new(1, Config::fast3(), Vec::new(), NOW).expect("session");
    let bare_bytes = live() - before;
    let before = live();
    let with = Session::new(
        1,
        Config::fast3(),
        vec![Box::new(ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(9))) as Layer],
        NOW,
    )
    .expect("session");
    let with_bytes = live() - before;
    eprintln!(
        "new session: no layers {bare_bytes} bytes, with a shared-key ReplayAeadCrypt \
         {with_bytes} bytes"
    );
    assert!(with_bytes > bare_bytes);
    assert!((with_bytes - bare_bytes) as usize <= LAYER_BUDGET);
    drop((bare, with));
}

#[test]
fn an_endpoint_instance_holds_at_most_its_cache_of_sender_keys() {
    let key = Arc::new(ReplayKey::from_pass(AeadKind::Aes128Gcm, &pass()).with_demux_cache(4));
    let mut packets: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            let mut sender = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(i));
            let mut b = vec![0u8; 64];
            let n = sender.seal(&mut b, 40, NOW).expect("seal");
            b.truncate(n);
            b
        })
        .collect();
    let before = live();
    let mut endpoint: Layer = Box::new(ReplayAeadCrypt::with_key(
        Arc::clone(&key),
        &mut TestRng(99),
    ));
    let mut peak = 0;
    for p in packets.iter_mut() {
        endpoint.demux_open(p, NOW).expect("authenticates");
        peak = peak.max(live() - before);
    }
    let held = live() - before;
    let own = core::mem::size_of_val(&*endpoint) as isize;
    assert_eq!(held, own + endpoint.heap_bytes() as isize);
    assert_eq!(peak, held, "the cache stops growing at 4 keys");
    endpoint.trim();
    assert_eq!(live() - before, own);
    // Printing grows the harness's capture buffer on this thread: only after measuring.
    eprintln!("endpoint instance with 4 cached aes-128-gcm sender keys: {held} bytes");
}

/// Half-open entries on a listener with crypto (and FEC inside it), rcv_wnd 1024: 1,024 first
/// flights of the largest datagram a peer can send (a full-MTU datagram of a client with the
/// key, replayed from 1,024 spoofed addresses) hold under 3 MiB in all, at most 2 KiB each.
#[test]
fn half_open_entries_with_crypto_keep_their_first_flight_and_1_kib_besides() {
    use kcp_core::endpoint::{Endpoint, EndpointConfig};
    type Factory = Box<dyn FnMut() -> Vec<Layer> + Send>;
    type MakeFactory = Box<dyn Fn(u64) -> Factory>;
    let stacks: Vec<(&str, MakeFactory)> = vec![
        (
            "aes (kcp-go packet crypt)",
            Box::new(|seed| {
                let key = Arc::new(PacketKey::new(
                    BlockCrypt::from_pass(CipherKind::Aes256, &pass()),
                    &mut TestRng(seed),
                ));
                Box::new(move || vec![Box::new(PacketCrypt::with_key(Arc::clone(&key))) as Layer])
            }),
        ),
        (
            "ReplayAeadCrypt aes-128-gcm",
            Box::new(|seed| {
                let key = Arc::new(ReplayKey::from_pass(AeadKind::Aes128Gcm, &pass()));
                let mut rng = TestRng(seed);
                Box::new(move || {
                    vec![Box::new(ReplayAeadCrypt::with_key(Arc::clone(&key), &mut rng)) as Layer]
                })
            }),
        ),
        (
            "fec 10/3 + aes",
            Box::new(|seed| {
                let key = Arc::new(PacketKey::new(
                    BlockCrypt::from_pass(CipherKind::Aes256, &pass()),
                    &mut TestRng(seed),
                ));
                Box::new(move || {
                    vec![
                        Box::new(kcp_fec::Fec::new(10, 3).expect("fec")) as Layer,
                        Box::new(PacketCrypt::with_key(Arc::clone(&key))) as Layer,
                    ]
                })
            }),
        ),
    ];
    for (name, make) in stacks {
        let mut cfg = Config::fast3();
        cfg.rcv_wnd = 1024;
        let server_cfg = EndpointConfig {
            accept: true,
            demux_layers: 1,
            layers: make(1),
            // The table fills in one instant; the warm-up entry is evicted by the last.
            half_open_min_age_ms: 0,
            ..EndpointConfig::new(cfg)
        };
        let mut client = Endpoint::<u32>::new(EndpointConfig {
            demux_layers: 1,
            layers: make(2),
            ..EndpointConfig::new(Config::fast3())
        })
        .expect("client");
        let c = client.connect(NOW, 0, 77).expect("connect");
        client.send(c, &[9u8; 8_000]).expect("send");
        let mut buf = [0u8; 1500];
        let (_, n) = client.poll_transmit(NOW, &mut buf).expect("first flight");
        let first = buf[..n].to_vec();
        assert_eq!(n, 1400, "{name}: a full-MTU datagram");
        let mut server = Endpoint::<u32>::new(server_cfg).expect("server");
        // Warm the endpoint's tables with one entry the table later evicts.
        let _ = server.handle_datagram(NOW, 1_000_000, &mut first.clone());
        while server.poll_transmit(NOW, &mut buf).is_some() {}
        let before = live();
        let mut d = first.clone();
        for a in 0..1024u32 {
            d.copy_from_slice(&first);
            server
                .handle_datagram(NOW, a, &mut d)
                .expect("half-open entry");
            while server.poll_transmit(NOW, &mut buf).is_some() {}
        }
        let grown = live() - before;
        let st = server.stats();
        assert_eq!(st.half_open, 1024, "{name}");
        eprintln!(
            "{name}: 1,024 half-open entries of a {n}-byte first flight: {grown} B ({} B each)",
            grown / 1024
        );
        assert!(grown < 3 << 20, "{name}: {grown} B");
        // Each entry keeps at most its first flight's KCP segments (fewer bytes than the
        // datagram) and 1 KiB besides: bookkeeping and codec stack.
        let besides = grown - 1024 * n as isize;
        assert!(
            besides <= 1024 * 1024,
            "{name}: {} B each besides the first flight",
            besides / 1024
        );
    }
}
