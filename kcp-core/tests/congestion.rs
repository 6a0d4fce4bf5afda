//! A user's congestion controller plugged into the engine: it bounds what is in flight, sees
//! every event, and configuration changes do not replace it.

use std::sync::{Arc, Mutex};

use kcp_core::congestion::{Congestion, Controller, FlushEvent};
use kcp_core::{Config, Kcp, Millis};

#[derive(Debug, Default)]
struct Seen {
    acks: u32,
    flushes: u32,
    rtts: Vec<u32>,
}

/// A fixed window that records what the engine tells it.
struct Recording {
    wnd: u32,
    seen: Arc<Mutex<Seen>>,
}

impl Controller for Recording {
    fn window(&self) -> Option<u32> {
        Some(self.wnd)
    }
    fn on_ack(&mut self, _mss: u32, _rmt_wnd: u32) {
        self.seen.lock().unwrap().acks += 1;
    }
    fn on_flush(&mut self, _ev: FlushEvent) {
        self.seen.lock().unwrap().flushes += 1;
    }
    fn on_rtt(&mut self, rtt_ms: u32) {
        self.seen.lock().unwrap().rtts.push(rtt_ms);
    }
}

#[test]
fn a_boxed_controller_bounds_the_window_and_sees_acks_and_rtt() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let cfg = Config::fast3().with_windows(128, 128);
    let mut a = Kcp::new(1, cfg, Millis(0)).unwrap();
    let mut b = Kcp::new(1, cfg, Millis(0)).unwrap();
    a.set_controller(Congestion::Boxed(Box::new(Recording {
        wnd: 5,
        seen: seen.clone(),
    })));
    // nc on/off must not swap the user's controller back to a shipped one.
    a.reconfigure(Config { nc: !cfg.nc, ..cfg }).unwrap();
    assert!(a.controller().is_custom());
    a.send(&[7u8; 100_000]).unwrap();
    let mut buf = [0u8; 1500];
    let mut now = Millis(0);
    let mut got = 0;
    let mut out = vec![0u8; 1 << 17];
    for _ in 0..400 {
        a.handle_timeout(now);
        let mut flight = 0;
        while let Some(n) = a.poll_transmit(now, &mut buf) {
            flight += 1;
            b.handle_datagram(now, &buf[..n]).unwrap();
        }
        assert!(flight <= 5, "{flight} datagrams in one flush, window 5");
        now += 7;
        b.handle_timeout(now);
        while let Some(n) = b.poll_transmit(now, &mut buf) {
            a.handle_datagram(now, &buf[..n]).unwrap();
        }
        while let Ok(n) = b.recv(&mut out) {
            got += n;
        }
        now += 3;
    }
    assert_eq!(got, 100_000);
    let s = seen.lock().unwrap();
    assert!(s.acks > 10 && s.flushes > 10, "{s:?}");
    assert!(
        !s.rtts.is_empty() && s.rtts.iter().all(|&r| r <= 20),
        "{s:?}"
    );
}
