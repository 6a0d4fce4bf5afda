//! A live loopback capture of kcp-go v5.6.1 (plain KCP, conv 0x01020304; the client writes
//! "hello" at 50 ms, the server echoes; `docs/protocol.md`, "A live exchange"). The engines must
//! put the same bytes on the wire at the same (virtual) times.

use kcp_core::{Config, Kcp, Millis};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn drain(
    k: &mut Kcp,
    now: Millis,
    log: &mut Vec<(u32, &'static str, String)>,
    who: &'static str,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some(n) = k.poll_transmit(now, &mut buf) {
        log.push((now.0, who, hex(&buf[..n])));
        out.push(buf[..n].to_vec());
    }
    out
}

#[test]
fn echo_capture_matches_kcp_go() {
    let conv = 0x0102_0304;
    let mut log = Vec::new();
    // The client session exists from t = 0 (its creation-time timer flush sends nothing).
    let mut client = Kcp::new(conv, Config::default(), Millis(0)).unwrap();
    client.handle_timeout(Millis(0));
    assert!(drain(&mut client, Millis(0), &mut log, "C").is_empty());

    // t = 50: the client writes "hello"; Write flushes at once.
    let t50 = Millis(50);
    client.send(b"hello").unwrap();
    let to_server = drain(&mut client, t50, &mut log, "C");

    // The listener creates the server session on the first datagram and feeds it; the new
    // session's timer flush (scheduled at creation) sends the ACK; the echo Write then flushes.
    let mut server = Kcp::new(conv, Config::default(), t50).unwrap();
    for d in &to_server {
        server.handle_datagram(t50, d).unwrap();
    }
    // The echo application has read the data by the time the timer flush runs (the ACK
    // advertises a window of 32), and writes it back after.
    let mut buf = [0u8; 64];
    let n = server.recv(&mut buf).unwrap();
    server.handle_timeout(t50);
    let mut to_client = drain(&mut server, t50, &mut log, "S");
    server.send(&buf[..n]).unwrap();
    to_client.extend(drain(&mut server, t50, &mut log, "S"));

    for d in &to_client {
        // Drained after every input, as the engine's contract asks: the ACK datagram slides
        // the window (a flush with nothing to send), the PUSH's ACK then waits for the timer.
        client.handle_datagram(t50, d).unwrap();
        assert!(drain(&mut client, t50, &mut log, "C").is_empty(), "{log:?}");
    }
    // The client's ACK leaves at its next 100 ms tick (the capture shows 101 ms).
    let tick = client.poll_timeout().unwrap();
    assert_eq!(tick, Millis(100));
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    client.handle_timeout(tick);
    drain(&mut client, tick, &mut log, "C");

    let want = [
        (
            50,
            "C",
            "04030201510020003200000000000000000000000500000068656c6c6f",
        ),
        (50, "S", "040302015200200032000000000000000100000000000000"),
        (
            50,
            "S",
            "04030201510020003200000000000000010000000500000068656c6c6f",
        ),
        (100, "C", "040302015200200032000000000000000100000000000000"),
    ];
    let got: Vec<(u32, &str, &str)> = log.iter().map(|(t, w, h)| (*t, *w, h.as_str())).collect();
    assert_eq!(got, want);
}
