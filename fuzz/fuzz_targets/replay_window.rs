//! `ReplayWindow` against the simplest model of its documented semantics: the set of
//! accepted sequence numbers and the highest of them (`check(s)`: nothing accepted yet, or
//! `s > top`, or `top - s < SIZE` and `s` unseen; `accept(s)`: records `s` unless it is
//! older than the window, raising `top`).
//!
//! Input: 4-byte operations `[op, how, delta (u16 LE)]`: `op & 1` accepts after checking,
//! `how` picks the sequence number relative to the current top (ahead, behind, far ahead,
//! near `u64::MAX`, small absolute).
#![no_main]

use kcp_crypto::ReplayWindow;
use kcp_testkit::replay::{pick, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut w = ReplayWindow::new();
    let mut m = Model::new(ReplayWindow::SIZE);
    for op in data.chunks_exact(4) {
        let s = pick(
            m.top,
            op[1],
            u16::from_le_bytes([op[2], op[3]]),
            ReplayWindow::SIZE,
        );
        assert_eq!(w.check(s), m.check(s), "check({s})");
        if op[0] & 1 == 1 {
            w.accept(s);
            m.accept(s);
            assert_eq!(w.top(), m.top);
        }
    }
    if let Some(top) = m.top {
        for s in top.saturating_sub(ReplayWindow::SIZE + 2)..=top.saturating_add(2) {
            assert_eq!(w.check(s), m.check(s), "final check({s})");
        }
    }
});
