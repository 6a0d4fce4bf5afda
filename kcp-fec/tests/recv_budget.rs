//! The endpoint-wide receive budget under the attack it exists for: 1,000 confirmed sessions
//! (FEC 10/3, receive window 1024, message mode) each filled with out-of-order fragments up to
//! the edge of its window behind one missing message, plus parity shards of groups whose
//! data never comes. Without a budget that is 2 x 1024 chunks per session (about 1.5 GB);
//! with one, the heap (a counting allocator, this thread only) stays within the budget plus
//! a fixed slack over what the established sessions held before, and once the gaps are
//! filled every session delivers every message, in order, exactly once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kcp_core::endpoint::{Endpoint, EndpointConfig, SessionId};
use kcp_core::wire::{Command, Datagram, SegmentRepr, HEADER_LEN};
use kcp_core::{Config, Layer, Millis};
use kcp_fec::{Fec, FecCode, FecConfig, TYPE_DATA, TYPE_PARITY};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.with(|l| l.get())
}

const SESSIONS: u32 = 1_000;
const WINDOW: u32 = 1_024;
/// Fragments per message, one byte each.
const FRAGS: u32 = 8;
const BUDGET: usize = 24 << 20;
const POOL: usize = 1 << 20;
/// What may come on top of the budget: the endpoint's pool of spare chunks, one datagram's
/// worth per session past the limit at most once (the check is per datagram), ACK rings and
/// chunk tables that the budget does not count (a few hundred bytes per session).
const SLACK: usize = POOL + (3 << 20);
/// Segments per datagram (25 bytes each).
const PER_DATAGRAM: u32 = 50;
/// The last sequence number a session can hold: `rcv_nxt` stays at 16 (message 2 missing).
const LAST: u32 = 2 * FRAGS + WINDOW - 1;

fn byte(addr: u32, sn: u32) -> u8 {
    (sn as u8) ^ (addr as u8).rotate_left(3)
}

struct Attacker {
    ep: Endpoint<u32>,
    now: Millis,
    /// Next FEC seqid per session (data groups), far from every other session's.
    seqid: Vec<u32>,
    out: Vec<u8>,
    peak: isize,
    /// Window probes the endpoint sent to the address of the last datagram sent.
    asked: u32,
}

impl Attacker {
    /// One FEC data shard carrying PUSH segments `sns` of session `addr`.
    fn push(&mut self, addr: u32, sns: impl Iterator<Item = u32>) {
        let mut d = vec![0u8; 8];
        for sn in sns {
            let at = d.len();
            d.resize(at + HEADER_LEN + 1, 0);
            SegmentRepr {
                conv: addr,
                cmd: Command::Push,
                frg: (FRAGS - 1 - sn % FRAGS) as u8,
                wnd: 256,
                ts: self.now.0,
                sn,
                una: 0,
                len: 1,
            }
            .emit(&mut d[at..])
            .unwrap();
            d[at + HEADER_LEN] = byte(addr, sn);
        }
        self.shard(addr, d);
    }

    /// The peer's answer to the endpoint's window probe (WASK): a WINS in a data shard,
    /// which turns the half-open entry into a session.
    fn tell_window(&mut self, addr: u32) {
        let mut d = vec![0u8; 8 + HEADER_LEN];
        SegmentRepr {
            conv: addr,
            cmd: Command::WindowTell,
            frg: 0,
            wnd: 256,
            ts: self.now.0,
            sn: 0,
            una: 0,
            len: 0,
        }
        .emit(&mut d[8..])
        .unwrap();
        self.shard(addr, d);
    }

    /// Fills in the FEC header of data shard `d` (KCP datagram at 8..) and sends it.
    fn shard(&mut self, addr: u32, mut d: Vec<u8>) {
        let s = &mut self.seqid[addr as usize];
        let size = (d.len() - 6) as u16;
        d[..4].copy_from_slice(&s.to_le_bytes());
        d[4..6].copy_from_slice(&TYPE_DATA.to_le_bytes());
        d[6..8].copy_from_slice(&size.to_le_bytes());
        *s = s.wrapping_add(1);
        if *s % 13 == 10 {
            *s += 3;
        }
        self.send(addr, d);
    }

    /// A parity shard of a group that never gets data (far ahead of the session's data).
    fn parity(&mut self, addr: u32, k: u32) {
        let mut d = vec![0x5au8; 1400];
        let seqid = self.seqid[addr as usize].wrapping_add(13 * 4_000 + 10 + k % 3 + 13 * k);
        d[..4].copy_from_slice(&seqid.to_le_bytes());
        d[4..6].copy_from_slice(&TYPE_PARITY.to_le_bytes());
        self.send(addr, d);
    }

    /// Time passes as an adapter lets it: every due timer runs (ACKs go out, sessions that
    /// hold nothing give their buffers back).
    fn wait(&mut self, ms: u32) {
        for _ in 0..ms / 10 {
            self.now += 10;
            self.ep.handle_timeout(self.now);
            while self.ep.poll_transmit(self.now, &mut self.out).is_some() {}
            while self.ep.poll_event().is_some() {}
            self.peak = self.peak.max(live());
        }
    }

    fn send(&mut self, addr: u32, mut d: Vec<u8>) {
        let _ = self.ep.handle_datagram(self.now, addr, &mut d);
        drop(d);
        self.asked = 0;
        while let Some((to, n)) = self.ep.poll_transmit(self.now, &mut self.out) {
            // A data shard carrying a window probe of the address's conversation?
            let data = self.out[4..6] == TYPE_DATA.to_le_bytes();
            let kcp = &self.out[8.min(n)..n];
            if to == addr
                && data
                && Datagram::new(kcp)
                    .map_while(Result::ok)
                    .any(|(s, _)| s.conv == addr && s.cmd == Command::WindowAsk)
            {
                self.asked += 1;
            }
        }
        self.peak = self.peak.max(live());
    }
}

#[test]
fn a_thousand_sessions_full_of_out_of_order_data_stay_within_the_budget() {
    let code = FecCode::new(10, 3).unwrap();
    let session = Config {
        stream: false,
        ..Config::fast3().with_windows(32, WINDOW)
    };
    let ep = Endpoint::new(EndpointConfig {
        accept: true,
        layers: Box::new(move || {
            vec![Box::new(Fec::with_code(code.clone(), FecConfig::default())) as Layer]
        }),
        max_half_open: SESSIONS as usize,
        max_half_open_per_host: SESSIONS as usize,
        backlog: SESSIONS as usize,
        pool_bytes: POOL,
        recv_budget_bytes: BUDGET,
        ..EndpointConfig::new(session)
    })
    .unwrap();
    let mut a = Attacker {
        ep,
        now: Millis(1_000),
        seqid: (0..=SESSIONS).map(|i| i * 13 * 100_000).collect(),
        out: vec![0u8; 1500],
        peak: 0,
        asked: 0,
    };
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); SESSIONS as usize + 1];
    let mut ids: Vec<Option<SessionId>> = vec![None; SESSIONS as usize + 1];

    // 1,000 sessions, each opened by a first flight (the first message), which the endpoint
    // answers with a window probe, and confirmed by the peer's answer to the probe; then the
    // second message. The application accepts each and reads its first two messages.
    let mut buf = [0u8; 64];
    for addr in 1..=SESSIONS {
        a.push(addr, 0..FRAGS);
        assert_eq!(
            a.asked, 1,
            "session {addr}: the first flight is answered by a probe"
        );
        assert!(
            a.ep.accept().is_none(),
            "no session before the probe is answered"
        );
        a.tell_window(addr);
        a.push(addr, FRAGS..2 * FRAGS);
        let id = a.ep.accept().expect("confirmed and queued");
        assert_eq!(a.ep.remote(id), Some(addr));
        ids[addr as usize] = Some(id);
        while let Ok(n) = a.ep.recv(id, &mut buf) {
            got[addr as usize].extend_from_slice(&buf[..n]);
        }
        while a.ep.poll_transmit(a.now, &mut a.out).is_some() {}
        // The next client comes 10 ms later.
        a.wait(10);
    }
    let read = |a: &mut Attacker, got: &mut Vec<Vec<u8>>, addr: u32, id: SessionId| {
        let mut buf = [0u8; 64];
        while let Ok(n) = a.ep.recv(id, &mut buf) {
            assert_eq!(n, FRAGS as usize, "whole messages");
            got[addr as usize].extend_from_slice(&buf[..n]);
        }
        while a.ep.poll_transmit(a.now, &mut a.out).is_some() {}
        while a.ep.poll_event().is_some() {}
    };
    a.wait(200);
    println!(
        "{SESSIONS} sessions established: {} B counted on the receive side",
        a.ep.stats().recv_bytes
    );
    assert_eq!(a.ep.len(), SESSIONS as usize);
    for addr in 1..=SESSIONS {
        assert_eq!(
            got[addr as usize].len(),
            2 * FRAGS as usize,
            "session {addr}"
        );
    }
    let base = live();
    a.peak = base;

    // The flood: message 2 (sn 16..24) withheld, everything after it up to the window's edge,
    // and after each data datagram a parity shard of a group without data.
    let mut k = 0;
    for addr in 1..=SESSIONS {
        let mut sn = 3 * FRAGS;
        while sn <= LAST {
            let end = (sn + PER_DATAGRAM).min(LAST + 1);
            a.push(addr, sn..end);
            a.parity(addr, k);
            k += 1;
            sn = end;
            assert!(
                (a.peak - base) as usize <= BUDGET + SLACK,
                "heap grew by {} B at session {addr} (budget {BUDGET})",
                a.peak - base
            );
        }
    }
    let stats = a.ep.stats();
    let flood_peak = a.peak - base;
    println!(
        "flood: heap +{flood_peak} B (budget {BUDGET} + slack {SLACK}), counted {} B, \
         {} segments refused over budget",
        stats.recv_bytes, stats.recv_over_budget
    );
    assert!(stats.recv_over_budget > 0, "the budget was reached");
    assert!(stats.recv_bytes as usize <= BUDGET + (256 << 10));

    // The gaps are filled: the peer sends everything from message 2 on again (a retransmission
    // round), the application reads, until every session has every message.
    let want = (LAST + 1) as usize;
    let mut rounds = 0;
    for round in 0..200 {
        if (1..=SESSIONS).all(|addr| got[addr as usize].len() == want) {
            break;
        }
        rounds = round + 1;
        a.wait(200);
        for addr in 1..=SESSIONS {
            let have = got[addr as usize].len() as u32;
            let mut sn = have;
            while sn <= LAST {
                let end = (sn + PER_DATAGRAM).min(LAST + 1);
                a.push(addr, sn..end);
                sn = end;
            }
            read(&mut a, &mut got, addr, ids[addr as usize].unwrap());
        }
        if (a.peak - base) as usize > BUDGET + SLACK {
            let mut v: Vec<_> =
                a.ep.sessions()
                    .into_iter()
                    .map(|id| {
                        let s = a.ep.session(id).unwrap();
                        (
                            s.heap_bytes(),
                            s.kcp().heap_bytes(),
                            s.receive_heap_bytes(),
                            s.kcp().receive_heap_bytes(),
                            s.kcp().spare_chunks(),
                            s.kcp().buffered_segments(),
                        )
                    })
                    .collect();
            v.sort();
            let sum: usize = v.iter().map(|x| x.2).sum();
            let big = v.iter().filter(|x| x.4 > 100).count();
            eprintln!("sum of receive bytes {sum}, {big} sessions with spare chunks");
            eprintln!("top: {:?}", &v[v.len() - 5..]);
            eprintln!("bottom: {:?}", &v[..5]);
        }
        assert!(
            (a.peak - base) as usize <= BUDGET + SLACK,
            "heap grew by {} B in round {round}: {:?} {:?}",
            a.peak - base,
            a.ep.heap_bytes(),
            a.ep.stats()
        );
    }
    for addr in 1..=SESSIONS {
        let expect: Vec<u8> = (0..=LAST).map(|sn| byte(addr, sn)).collect();
        assert!(
            got[addr as usize] == expect,
            "session {addr}: {} of {} bytes, in order",
            got[addr as usize].len(),
            expect.len()
        );
    }
    println!(
        "all {SESSIONS} sessions delivered {want} bytes each after {rounds} retransmission \
         rounds; peak heap +{} B over the established sessions",
        a.peak - base
    );
}
