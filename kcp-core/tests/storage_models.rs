//! One algorithm, two memory models: the engine on caller-provided buffers (no allocator)
//! emits exactly the datagrams the heap-backed engine emits for the same inputs.

mod common;

use common::{lossy, pattern, START, START_SN};
use kcp_core::sim::Sim;
use kcp_core::{AckEntry, Buffers, Config, Kcp, RecvSlot, SendSlot, HEAP_CHUNK};

fn leaked_buffers(cfg: &Config) -> Buffers<'static> {
    let snd = (cfg.snd_wnd * 2) as usize;
    let rcv = (cfg.rcv_wnd * 2) as usize;
    let chunks = snd + rcv;
    Buffers {
        send: vec![SendSlot::EMPTY; snd].leak(),
        recv: vec![RecvSlot::EMPTY; rcv].leak(),
        acks: vec![AckEntry::EMPTY; rcv].leak(),
        transmit: vec![0u32; snd].leak(),
        arena: vec![0u8; chunks * HEAP_CHUNK].leak(),
        free: vec![0u32; chunks].leak(),
        chunk_len: HEAP_CHUNK,
    }
}

/// Runs a lossy message-mode transfer and returns every datagram both sides sent.
fn run(make: &dyn Fn(&Config) -> Kcp<'static>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let cfg = Config {
        stream: false,
        ..Config::fast3()
    };
    let mut a = make(&cfg);
    let mut b = make(&cfg);
    assert!(a.set_initial_sequence(START_SN) && b.set_initial_sequence(START_SN));
    let mut sim = Sim::new(a, b, lossy(0.1), lossy(0.1), 99, START);
    sim.record(true);
    let total = 120_000u64;
    let (mut sent, mut got) = (0u64, 0u64);
    let mut buf = vec![0u8; 8192];
    let done = sim.run_until(300_000, |s| {
        while sent < total && s.a.is_writable() {
            let len = (1 + (sent * 31) % 3000).min(total - sent);
            let msg: Vec<u8> = (sent..sent + len).map(pattern).collect();
            s.a.send(&msg).unwrap();
            sent += len;
        }
        while let Ok(n) = s.b.recv(&mut buf) {
            got += n as u64;
        }
        (got == total).then_some(())
    });
    assert!(done.is_some());
    (
        std::mem::take(&mut sim.sent_by_a),
        std::mem::take(&mut sim.sent_by_b),
    )
}

#[test]
fn no_alloc_engine_emits_the_same_datagrams_as_the_heap_engine() {
    let heap = run(&|cfg| Kcp::new(7, *cfg, START).unwrap());
    let fixed = run(&|cfg| Kcp::with_buffers(7, *cfg, START, leaked_buffers(cfg)).unwrap());
    assert!(
        heap.0.len() > 100,
        "the transfer should take many datagrams"
    );
    assert_eq!(heap.0.len(), fixed.0.len());
    assert!(heap.0 == fixed.0, "sender datagrams differ");
    assert!(heap.1 == fixed.1, "receiver datagrams differ");
}

#[test]
fn undersized_buffers_are_rejected() {
    let cfg = Config::fast3();
    let mut b = leaked_buffers(&cfg);
    b.recv = vec![RecvSlot::EMPTY; 10].leak();
    assert!(Kcp::with_buffers(1, cfg, START, b).is_err());
    let mut b = leaked_buffers(&cfg);
    b.chunk_len = 100;
    assert!(Kcp::with_buffers(1, cfg, START, b).is_err());
}
