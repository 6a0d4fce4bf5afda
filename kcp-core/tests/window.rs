//! Flow-control windows: a closed peer window is probed even when nothing is queued, soon,
//! and a receiver that grows its window tells its peer at once. (kcp-go v5.6.1 leaves a writer
//! blocked for 7 s when its peer grows the window after a full queue without telling: the
//! interop stall that made a kcp-go server look dead to our clients.)

use kcp_core::wire::{Command, Datagram, SegmentRepr, HEADER_LEN};
use kcp_core::{Config, Kcp, Millis};

fn seg(cmd: Command, sn: u32, una: u32, wnd: u16, ts: u32) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN];
    SegmentRepr {
        conv: 9,
        cmd,
        frg: 0,
        wnd,
        ts,
        sn,
        una,
        len: 0,
    }
    .emit(&mut d)
    .unwrap();
    d
}

fn commands(k: &mut Kcp, now: Millis) -> Vec<Command> {
    let mut buf = [0u8; 1500];
    let mut out = Vec::new();
    while let Some(n) = k.poll_transmit(now, &mut buf) {
        out.extend(Datagram::new(&buf[..n]).flatten().map(|(s, _)| s.cmd));
    }
    out
}

#[test]
fn a_closed_peer_window_is_probed_soon_with_nothing_queued() {
    let cfg = Config::fast3();
    let mut a = Kcp::new(9, cfg, Millis(0)).unwrap();
    let mut now = Millis(0);
    a.send(&[1u8; 3000]).unwrap();
    let sent = commands(&mut a, now);
    assert!(sent.iter().all(|&c| c == Command::Push) && !sent.is_empty());
    // The peer acknowledges everything (una 3) with a full receive queue: window 0.
    now += 5;
    let mut ack = Vec::new();
    for sn in 0..3 {
        ack.extend(seg(Command::Ack, sn, 3, 0, 0));
    }
    a.handle_datagram(now, &ack).unwrap();
    commands(&mut a, now);
    assert!(a.is_idle(), "everything acknowledged");
    assert_eq!(a.remote_window(), 0);
    assert!(!a.is_writable(), "a closed window blocks the writer");
    // Nothing is queued, but the engine keeps its timer and probes within a second.
    let mut probed_at = None;
    for _ in 0..200 {
        now += 5;
        if let Some(t) = a.poll_timeout() {
            if now.reached(t) {
                a.handle_timeout(now);
            }
        }
        if commands(&mut a, now).contains(&Command::WindowAsk) {
            probed_at = Some(now);
            break;
        }
    }
    let at = probed_at.expect("a window probe within a second");
    assert!(
        at.since(Millis(5)) <= 1_000,
        "probed after {} ms",
        at.since(Millis(5))
    );
    // The peer's answer opens the window again.
    a.handle_datagram(now, &seg(Command::WindowTell, 0, 3, 128, 0))
        .unwrap();
    assert!(a.is_writable());
    commands(&mut a, now);
    assert_eq!(a.poll_timeout(), None, "idle again once the window is open");
}

#[test]
fn growing_the_receive_window_tells_the_peer() {
    let cfg = Config::fast3().with_windows(32, 4);
    let mut b = Kcp::new(9, cfg, Millis(0)).unwrap();
    let now = Millis(0);
    commands(&mut b, now);
    b.reconfigure(Config::fast3().with_windows(32, 256))
        .unwrap();
    assert!(
        commands(&mut b, now).contains(&Command::WindowTell),
        "a WINS tells the peer about the larger window"
    );
}
