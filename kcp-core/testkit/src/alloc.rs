//! A global allocator that forwards to the system's and counts, for tests that measure heap
//! use or assert that a steady state allocates nothing.
//!
//! It keeps two views, both always on:
//! * **per thread** ([`thread_live`], [`thread_peak`], [`thread_allocs`],
//!   [`thread_live_blocks`]): what the calling thread allocated and freed, so the test
//!   harness's other threads do not show up;
//! * **process-wide** ([`live`], [`live_blocks`], [`allocs`]): for code that allocates on other
//!   threads (a runtime's workers, a driver task), counted only while [`count_allocs`] is on,
//!   or always for live bytes and blocks.
//!
//! Live blocks (allocations not freed yet) matter beside live bytes: a C allocator adds its
//! own header to each block and rounds it up (glibc: 8 bytes of header, 16-byte steps, 32 bytes
//! at least), so many small blocks cost more resident memory than their bytes.
//!
//! Install it in a test binary with `#[global_allocator] static A: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

/// The counting allocator (a unit struct: all state is in statics).
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
static CHUNKS: AtomicIsize = AtomicIsize::new(0);
// usize, not u64: 32-bit targets without 64-bit atomics run these tests too.
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static COUNT_ALL: AtomicBool = AtomicBool::new(false);

thread_local! {
    static T_LIVE: Cell<isize> = const { Cell::new(0) };
    static T_BLOCKS: Cell<isize> = const { Cell::new(0) };
    static T_CHUNKS: Cell<isize> = const { Cell::new(0) };
    static T_PEAK: Cell<isize> = const { Cell::new(0) };
    static T_ALLOCS: Cell<u64> = const { Cell::new(0) };
    static T_COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// What glibc's malloc takes for a block of `size` bytes on a 64-bit target: the size plus its
/// 8-byte header, rounded up to 16, at least 32 (blocks of 128 KiB and more are mapped pages,
/// rounded to 4 KiB).
pub fn glibc_chunk(size: usize) -> usize {
    if size >= 128 * 1024 {
        (size + 16).div_ceil(4096) * 4096
    } else {
        ((size + 8).div_ceil(16) * 16).max(32)
    }
}

/// Counts a block more (`1`), less (`-1`) or the same (`0`, a reallocation), and the change of
/// the live blocks' [`glibc_chunk`] footprint.
fn track_block(delta: isize, chunk_delta: isize) {
    if delta != 0 {
        LIVE_BLOCKS.fetch_add(delta, Ordering::Relaxed);
        let _ = T_BLOCKS.try_with(|b| b.set(b.get() + delta));
    }
    CHUNKS.fetch_add(chunk_delta, Ordering::Relaxed);
    let _ = T_CHUNKS.try_with(|b| b.set(b.get() + chunk_delta));
}

fn track(delta: isize, is_alloc: bool) {
    LIVE.fetch_add(delta, Ordering::Relaxed);
    // try_with: the allocator runs while thread-locals are being torn down too.
    let _ = T_LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = T_PEAK.try_with(|p| p.set(p.get().max(v)));
    });
    if is_alloc {
        let _ = T_ALLOCS.try_with(|n| n.set(n.get() + 1));
        let counted = T_COUNTED.try_with(|c| c.get()).unwrap_or(false);
        if counted || COUNT_ALL.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; only sizes are counted,
// and only for calls that succeeded.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize, true);
            track_block(1, glibc_chunk(layout.size()) as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize, true);
            track_block(1, glibc_chunk(layout.size()) as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize), false);
        track_block(-1, -(glibc_chunk(layout.size()) as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize, true);
            track_block(
                0,
                glibc_chunk(new_size) as isize - glibc_chunk(layout.size()) as isize,
            );
        }
        p
    }
}

/// Bytes the process holds now (allocations minus frees, every thread).
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Bytes the calling thread holds now (what it allocated minus what it freed; a block
/// another thread frees counts there).
pub fn thread_live() -> isize {
    T_LIVE.with(|l| l.get())
}

/// Blocks the process holds now (allocations minus frees, every thread).
pub fn live_blocks() -> isize {
    LIVE_BLOCKS.load(Ordering::Relaxed)
}

/// Blocks the calling thread holds now (allocations it made minus blocks it freed).
pub fn thread_live_blocks() -> isize {
    T_BLOCKS.with(|b| b.get())
}

/// What glibc's malloc would hold for the process's live blocks: each one's [`glibc_chunk`].
pub fn live_footprint() -> isize {
    CHUNKS.load(Ordering::Relaxed)
}

/// [`live_footprint`] of the calling thread's blocks.
pub fn thread_footprint() -> isize {
    T_CHUNKS.with(|b| b.get())
}

/// The calling thread's largest [`thread_live`] since the last [`reset_thread_peak`].
pub fn thread_peak() -> isize {
    T_PEAK.with(|p| p.get())
}

/// Starts a new peak measurement at the current [`thread_live`].
pub fn reset_thread_peak() {
    T_PEAK.with(|p| p.set(thread_live()));
}

/// Allocations (and reallocations) the calling thread made.
pub fn thread_allocs() -> u64 {
    T_ALLOCS.with(|n| n.get())
}

/// Allocations counted process-wide: those of threads that called [`count_this_thread`], and
/// of every thread while [`count_allocs`] is on.
pub fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed) as u64
}

/// Whether the calling thread's allocations count in [`allocs`].
pub fn count_this_thread(on: bool) {
    T_COUNTED.with(|c| c.set(on));
}

/// Whether every thread's allocations count in [`allocs`].
pub fn count_allocs(on: bool) {
    COUNT_ALL.store(on, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static A: Counting = Counting;

    #[test]
    fn counts_live_bytes_peaks_and_allocations_of_this_thread() {
        let live0 = thread_live();
        let blocks0 = thread_live_blocks();
        let allocs0 = thread_allocs();
        reset_thread_peak();
        let mut v = vec![1u8; 4096];
        assert!(thread_live() - live0 >= 4096);
        assert_eq!(thread_live_blocks(), blocks0 + 1);
        v.reserve_exact(8192);
        assert_eq!(
            thread_live_blocks(),
            blocks0 + 1,
            "a reallocation is the same block"
        );
        drop(v);
        assert_eq!(thread_live(), live0);
        assert_eq!(thread_live_blocks(), blocks0);
        let foot0 = thread_footprint();
        let b = Box::new([0u8; 24]);
        assert_eq!(thread_footprint() - foot0, 32);
        drop(b);
        assert_eq!(thread_footprint(), foot0);
        assert_eq!(glibc_chunk(1), 32);
        assert_eq!(glibc_chunk(25), 48);
        assert_eq!(glibc_chunk(366), 384);
        assert!(thread_peak() - live0 >= 4096);
        assert!(thread_allocs() > allocs0);

        count_this_thread(true);
        let a0 = allocs();
        let b = Box::new(7u64);
        assert!(allocs() > a0);
        count_this_thread(false);
        drop(b);
    }
}
