//! The engine fed arbitrary datagrams (interleaved with sends, receives, timers and flushes):
//! no panic, memory within the configured bound, poll_transmit terminates.
#![no_main]

use kcp_core::{Config, Kcp, Millis};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let cfg = Config {
        stream: mode & 1 == 1,
        ..Config::fast3().with_windows(16, 16)
    };
    let mut k = Kcp::new(0, cfg, Millis(u32::MAX - 50)).unwrap();
    let bound = (cfg.snd_wnd + cfg.send_queue + 2 * cfg.rcv_wnd) as usize;
    let mut now = Millis(u32::MAX - 50);
    let mut out = [0u8; 1500];
    let mut app = [0u8; 8192];
    // Datagrams are length-prefixed by one byte (x 8) so one input holds several.
    let mut rest = rest;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize * 8).min(tail.len());
        let (d, tail) = tail.split_at(len);
        rest = tail;
        let _ = k.handle_datagram(now, d);
        if len % 3 == 0 {
            let _ = k.send(&app[..len % 4000 + 1]);
        }
        while k.recv(&mut app).is_ok() {}
        k.handle_timeout(now);
        let mut n = 0;
        while k.poll_transmit(now, &mut out).is_some() {
            n += 1;
            assert!(n < 100_000);
        }
        assert!(k.buffered_segments() <= bound);
        now += (len % 50) as u32;
    }
});
