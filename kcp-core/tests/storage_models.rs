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

/// Runs a lossy transfer (writes of `1..=max_write` bytes) and returns every datagram both
/// sides sent.
fn run(
    make: &dyn Fn(&Config) -> Kcp<'static>,
    stream: bool,
    max_write: u64,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let cfg = Config {
        stream,
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
            let len = (1 + (sent * 31) % max_write).min(total - sent);
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

fn same_datagrams(stream: bool, max_write: u64) {
    let heap = run(&|cfg| Kcp::new(7, *cfg, START).unwrap(), stream, max_write);
    let fixed = run(
        &|cfg| Kcp::with_buffers(7, *cfg, START, leaked_buffers(cfg)).unwrap(),
        stream,
        max_write,
    );
    assert!(
        heap.0.len() > 100,
        "the transfer should take many datagrams"
    );
    assert_eq!(heap.0.len(), fixed.0.len());
    assert!(heap.0 == fixed.0, "sender datagrams differ");
    assert!(heap.1 == fixed.1, "receiver datagrams differ");
}

#[test]
fn no_alloc_engine_emits_the_same_datagrams_as_the_heap_engine() {
    same_datagrams(false, 3000);
}

/// The heap engine stores small payloads in small chunks, and a stream-mode segment that is
/// topped up past one moves to a full-size chunk: the fixed-chunk engine shows that neither
/// changes a byte on the wire, in either direction.
#[test]
fn small_chunks_change_nothing_on_the_wire() {
    // Messages of 1-300 bytes: most fit a small chunk, many do not.
    same_datagrams(false, 300);
    // Stream writes of 1-300 bytes, merged into full segments while they wait.
    same_datagrams(true, 300);
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
