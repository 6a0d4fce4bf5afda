//! Steady state allocates nothing: a counting global allocator watches encode, decode with
//! loss and recovery once the pools are warm.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kcp_core::{Codec, Millis};
use kcp_fec::Fec;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            COUNT.with(|n| n.set(n.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            COUNT.with(|n| n.set(n.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `groups` groups of (10,3) through sender and receiver, losing up to 3 packets of each
/// group at moving positions; returns how many datagrams were rebuilt.
fn run(tx: &mut Fec, rx: &mut Fec, kcps: &[Vec<u8>], groups: usize, now: &mut Millis) -> usize {
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 1500];
    let mut rebuilt = 0;
    let mut sent = 0usize;
    for g in 0..groups {
        for i in 0..10 {
            let k = &kcps[(g * 10 + i) % kcps.len()];
            buf[8..8 + k.len()].copy_from_slice(k);
            let mut n = tx.seal(&mut buf, 8 + k.len(), *now).unwrap();
            loop {
                let lost = (sent + g) % 13 < (g % 4) && (sent + g) % 13 != 12;
                sent += 1;
                if !lost {
                    let _ = rx.open(&mut buf[..n], *now).unwrap();
                    while let Some(m) = rx.poll_recovered(&mut out) {
                        rebuilt += m.min(1);
                    }
                }
                match tx.poll_extra(&mut buf, *now) {
                    Some(r) => n = r.unwrap(),
                    None => break,
                }
            }
            *now += 3;
        }
    }
    rebuilt
}

#[test]
fn steady_state_encode_decode_and_recovery_allocate_nothing() {
    let kcps = common::datagrams(97, 7);
    let mut tx = Fec::new(10, 3).unwrap();
    let mut rx = Fec::new(10, 3).unwrap();
    let mut now = Millis(u32::MAX - 5000);
    // Warm up: pools and the inverse cache fill.
    assert!(run(&mut tx, &mut rx, &kcps, 200, &mut now) > 0);
    COUNTING.with(|c| c.set(true));
    let rebuilt = run(&mut tx, &mut rx, &kcps, 1000, &mut now);
    COUNTING.with(|c| c.set(false));
    let allocs = COUNT.with(|n| n.get());
    assert!(
        rebuilt > 500,
        "the run must exercise recovery, rebuilt {rebuilt}"
    );
    assert_eq!(allocs, 0, "allocations in steady state");
}
