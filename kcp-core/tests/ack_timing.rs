//! When ACKs leave. kcp-go holds a received segment's ACK until the session's next periodic
//! flush (every `interval` ms), so an application that answers at once sends its answer and
//! the ACK in one datagram. On a millisecond clock a datagram can arrive on the very
//! millisecond of a tick; a peer whose sends keep step with the interval (one message a
//! second, a game's 20 ms tick) brings every datagram there. That tick counts as past, so the
//! ACK does not leave alone just before the application answers.

use kcp_core::wire::{Command, Datagram};
use kcp_core::{Config, Kcp, Millis};

const T0: Millis = Millis(5_000);

fn commands(d: &[u8]) -> Vec<Command> {
    Datagram::new(d).map(|s| s.unwrap().0.cmd).collect()
}

fn drain(k: &mut Kcp, now: Millis) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 1500];
    let mut out = Vec::new();
    while let Some(n) = k.poll_transmit(now, &mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// The client writes 64 bytes at `at`; the server takes them, runs its due timers, then its
/// application echoes them. Returns the server's timer right after the input, and the
/// commands of every datagram the server sent at `at`; the client then takes those and
/// acknowledges the echo at its next tick, which leaves both idle.
fn exchange(client: &mut Kcp, server: &mut Kcp, at: Millis) -> (Option<Millis>, Vec<Vec<Command>>) {
    client.send(&[1; 64]).unwrap();
    let mut sent = Vec::new();
    for d in drain(client, at) {
        server.handle_datagram(at, &d).unwrap();
    }
    let timer = server.poll_timeout();
    // An adapter's loop: what the input produced, the timers due now, then the application.
    sent.extend(drain(server, at));
    server.handle_timeout(at);
    sent.extend(drain(server, at));
    let mut rb = [0u8; 256];
    let n = server.recv(&mut rb).unwrap();
    server.send(&rb[..n]).unwrap();
    sent.extend(drain(server, at));
    for d in &sent {
        client.handle_datagram(at, d).unwrap();
    }
    while client.recv(&mut rb).is_ok() {}
    let tick = client.poll_timeout().unwrap();
    client.handle_timeout(tick);
    for d in drain(client, tick) {
        server.handle_datagram(tick, &d).unwrap();
    }
    server.handle_timeout(tick);
    assert!(drain(server, tick).is_empty());
    assert!(server.is_idle() && server.poll_timeout().is_none());
    (timer, sent.iter().map(|d| commands(d)).collect())
}

#[test]
fn an_echo_carries_the_ack_also_on_a_tick_s_own_millisecond() {
    let cfg = Config {
        stream: false,
        ..Config::fast3()
    };
    let interval = cfg.interval;
    let mut client = Kcp::new(7, cfg, T0).unwrap();
    let mut server = Kcp::new(7, cfg, T0).unwrap();
    // Their creation-time flushes (kcp-go runs one; nothing to send).
    for k in [&mut client, &mut server] {
        k.handle_timeout(T0);
        assert!(drain(k, T0).is_empty());
    }
    // The server's schedule ticks at T0 + k * interval (kcp-go starts it at creation).
    let (timer, sent) = exchange(&mut client, &mut server, T0 + 3);
    assert_eq!(timer, Some(T0 + interval));
    assert_eq!(sent, [vec![Command::Ack, Command::Push]]);
    for k in 1..=5u32 {
        // On a tick's millisecond: the next tick is the one after it.
        let at = T0 + 1_000 * k;
        let (timer, sent) = exchange(&mut client, &mut server, at);
        assert_eq!(timer, Some(at + interval), "input on the tick at {at:?}");
        assert_eq!(
            sent,
            [vec![Command::Ack, Command::Push]],
            "input on the tick at {at:?}"
        );
        // Between ticks, as before.
        let at = T0 + 1_000 * k + 507;
        let (timer, sent) = exchange(&mut client, &mut server, at);
        assert_eq!(timer, Some(T0 + 1_000 * k + 510));
        assert_eq!(sent, [vec![Command::Ack, Command::Push]]);
    }
}

#[test]
fn an_ack_without_an_answer_still_leaves_within_one_interval() {
    let cfg = Config::fast3();
    let mut client = Kcp::new(7, cfg, T0).unwrap();
    let mut server = Kcp::new(7, cfg, T0).unwrap();
    // Their creation-time flushes (kcp-go runs one; nothing to send).
    for k in [&mut client, &mut server] {
        k.handle_timeout(T0);
        assert!(drain(k, T0).is_empty());
    }
    for at in [T0 + 1_000, T0 + 2_004] {
        client.send(&[1; 64]).unwrap();
        for d in drain(&mut client, at) {
            server.handle_datagram(at, &d).unwrap();
        }
        let tick = server.poll_timeout().unwrap();
        assert!(
            tick.since(at) > 0 && tick.since(at) <= cfg.interval as i32,
            "{tick:?}"
        );
        server.handle_timeout(tick);
        let sent = drain(&mut server, tick);
        assert_eq!(sent.len(), 1);
        assert_eq!(commands(&sent[0]), [Command::Ack]);
        client.handle_datagram(tick, &sent[0]).unwrap();
        let mut rb = [0u8; 256];
        while server.recv(&mut rb).is_ok() {}
    }
}
