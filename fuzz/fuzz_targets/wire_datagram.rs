//! The datagram iterator and segment views on arbitrary bytes: never panic, never read past
//! the input, and what parses re-emits to the same bytes.
#![no_main]

use kcp_core::wire::{Datagram, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    for item in Datagram::new(data) {
        let Ok((repr, payload)) = item else { break };
        assert_eq!(repr.len as usize, payload.len());
        let mut h = [0u8; HEADER_LEN];
        repr.emit(&mut h).unwrap();
        assert_eq!(&h[..], &data[at..at + HEADER_LEN]);
        at += HEADER_LEN + payload.len();
    }
    assert!(at <= data.len());
});
