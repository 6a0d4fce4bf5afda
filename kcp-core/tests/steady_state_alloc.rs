//! With `alloc`, a steady-state transfer allocates nothing: buffers grow while the window
//! fills, then are reused. A counting global allocator checks it (on this thread:
//! the test harness's other threads do not count).

use std::collections::VecDeque;

use kcp_core::{Config, Kcp, Millis};

#[global_allocator]
static GLOBAL: kcp_testkit::alloc::Counting = kcp_testkit::alloc::Counting;

/// A perfect link with a fixed delay, on preallocated storage.
#[allow(clippy::vec_box)]
struct Wire {
    q: VecDeque<(Millis, usize, Box<[u8; 1500]>)>,
    spare: Vec<Box<[u8; 1500]>>,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            q: VecDeque::with_capacity(4096),
            spare: (0..4096).map(|_| Box::new([0u8; 1500])).collect(),
        }
    }
    fn send_all(&mut self, k: &mut Kcp, now: Millis) {
        loop {
            let mut b = self.spare.pop().expect("spare buffers");
            match k.poll_transmit(now, &mut b[..]) {
                Some(n) => self.q.push_back((now + 15, n, b)),
                None => {
                    self.spare.push(b);
                    break;
                }
            }
        }
    }
    fn deliver(&mut self, k: &mut Kcp, now: Millis) {
        while self.q.front().is_some_and(|(t, _, _)| now.reached(*t)) {
            let (_, n, b) = self.q.pop_front().unwrap();
            k.handle_datagram(now, &b[..n]).unwrap();
            self.spare.push(b);
        }
    }
}

#[test]
fn steady_state_transfer_allocates_nothing() {
    let cfg = Config::fast3().with_windows(256, 256);
    let mut a = Kcp::new(1, cfg, Millis(0)).unwrap();
    let mut b = Kcp::new(1, cfg, Millis(0)).unwrap();
    let (mut ab, mut ba) = (Wire::new(), Wire::new());
    let chunk = vec![0x5Au8; 16 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    let mut now = Millis(0);
    let mut received = 0u64;
    let mut measure = |ms: u32, now: &mut Millis, received: &mut u64| {
        for _ in 0..ms {
            while a.is_writable() {
                if a.send(&chunk).is_err() {
                    break;
                }
            }
            a.handle_timeout(*now);
            b.handle_timeout(*now);
            ab.send_all(&mut a, *now);
            ba.send_all(&mut b, *now);
            ab.deliver(&mut b, *now);
            ba.deliver(&mut a, *now);
            ab.send_all(&mut a, *now);
            ba.send_all(&mut b, *now);
            while let Ok(n) = b.recv(&mut sink) {
                *received += n as u64;
            }
            *now += 1;
        }
    };
    // Warm-up: windows fill, buffers grow to their working size.
    measure(3_000, &mut now, &mut received);
    let warm = received;
    let before = kcp_testkit::alloc::thread_allocs();
    measure(5_000, &mut now, &mut received);
    let allocs = kcp_testkit::alloc::thread_allocs() - before;
    assert!(
        received - warm > 20_000_000,
        "too little traffic: {} bytes",
        received - warm
    );
    assert_eq!(allocs, 0, "allocations during steady state");
}
