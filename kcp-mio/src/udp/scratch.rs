//! Batch buffers lent per batch.
//!
//! A socket needs its slots only while a batch is read and handed out, or filled and sent;
//! between batches a [`Sender`](super::Sender) and a GRO-less [`Receiver`](super::Receiver)
//! give them back to a small stock kept per thread, and take one again for the next batch.
//! A process with thousands of client sockets (one per session, as kcp-go's `Dial` makes
//! them) then holds a few buffers per thread instead of 16 KiB per socket, and a new socket
//! touches no fresh pages until it has something to send or receive. A busy socket takes
//! back the buffer it gave: a thread-local list of at most [`KEPT`] entries, no lock.

use std::cell::RefCell;

use super::{BATCH, SLOT};

/// Buffers a thread keeps for the next batch.
const KEPT: usize = 4;
/// Larger buffers are freed, not kept (a full non-GRO batch is the largest lent).
const KEPT_MAX_BYTES: usize = BATCH * SLOT;

thread_local! {
    static STOCK: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of at least `len` bytes: the smallest of the thread's stock that is large
/// enough, else a new one (zeroed). Its bytes past what a caller writes are stale datagram
/// bytes of some socket of this process, never sent or handed out: callers send and pass
/// on only the lengths they wrote or the kernel reported.
pub(super) fn take(len: usize) -> Vec<u8> {
    let kept = STOCK
        .try_with(|s| {
            let mut s = s.borrow_mut();
            let best = s
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len)
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i)?;
            Some(s.swap_remove(best))
        })
        .ok()
        .flatten();
    kept.unwrap_or_else(|| vec![0; len])
}

/// Gives `buf` back to the thread's stock (freed if the stock is full or `buf` is larger
/// than a batch).
pub(super) fn give(buf: Vec<u8>) {
    if buf.is_empty() || buf.len() > KEPT_MAX_BYTES {
        return;
    }
    let _ = STOCK.try_with(move |s| {
        let mut s = s.borrow_mut();
        if s.len() < KEPT {
            s.push(buf);
        }
    });
}

/// Buffers the calling thread keeps now (tests).
#[cfg(test)]
pub(super) fn kept() -> usize {
    STOCK.with(|s| s.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again() {
        // Each test runs on its own thread: the stock starts empty.
        let b = take(4 * SLOT);
        assert_eq!(b.len(), 4 * SLOT);
        let p = b.as_ptr();
        give(b);
        assert_eq!(kept(), 1);
        let again = take(2 * SLOT);
        assert_eq!(again.as_ptr(), p, "a large enough kept buffer is reused");
        assert_eq!(kept(), 0);
    }

    #[test]
    fn the_smallest_large_enough_buffer_is_taken() {
        let big = take(16 * SLOT);
        let small = take(4 * SLOT);
        let tiny = take(SLOT);
        let (pb, ps) = (big.as_ptr(), small.as_ptr());
        give(big);
        give(small);
        give(tiny);
        let fits_small = take(3 * SLOT);
        assert_eq!(fits_small.as_ptr(), ps);
        let fits_big = take(8 * SLOT);
        assert_eq!(fits_big.as_ptr(), pb);
        // Nothing kept is large enough: a new buffer, zeroed.
        let fresh = take(BATCH * SLOT);
        assert_eq!(fresh.len(), BATCH * SLOT);
        assert!(fresh.iter().all(|&b| b == 0));
    }

    #[test]
    fn the_stock_is_bounded() {
        give(vec![0; KEPT_MAX_BYTES + 1]);
        give(Vec::new());
        assert_eq!(kept(), 0, "oversized and empty buffers are not kept");
        let bufs: Vec<Vec<u8>> = (0..KEPT + 3).map(|_| take(SLOT)).collect();
        for b in bufs {
            give(b);
        }
        assert_eq!(kept(), KEPT);
    }
}
