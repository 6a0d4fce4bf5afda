//! The receive hold (`KcpConfig::receive_hold`, Linux): after a receive turn the driver
//! leaves its socket unwatched for the hold, then reads what arrived in one batch. Turns are
//! therefore at least a hold apart whatever the peers send, no datagram is lost or
//! reordered by it, and a hold the adapter cannot honour is refused.

#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cfg, echo_all, pattern};
use kcp_tokio::{KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// Clients that each send a small message every few ms for a while, all echoed back in
/// full; returns the server's receive turns and how long the run took.
async fn run(hold: Option<Duration>, clients: usize, messages: usize) -> (u64, Duration) {
    let listener = KcpListener::bind("127.0.0.1:0", cfg().receive_hold(hold))
        .await
        .unwrap();
    let addr = listener.local_addr();
    let listener = Arc::new(listener);
    tokio::spawn(echo_all(listener.clone()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let s = KcpStream::connect(addr, cfg()).await.unwrap();
            let (mut r, mut w) = s.into_split();
            // Message sizes vary per client and message: 1..=300 bytes.
            let sizes: Vec<usize> = (0..messages).map(|m| 1 + (c * 37 + m * 11) % 300).collect();
            let total: usize = sizes.iter().sum();
            let writer = tokio::spawn(async move {
                let mut at = 0;
                for n in sizes {
                    let msg: Vec<u8> = (at..at + n).map(pattern).collect();
                    w.write_all(&msg).await.unwrap();
                    at += n;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                w
            });
            let mut got = vec![0u8; total];
            r.read_exact(&mut got).await.unwrap();
            assert!(
                got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
                "client {c}: echo corrupted or reordered"
            );
            writer.await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (listener.socket_stats().receive_turns, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_are_at_least_a_hold_apart_and_every_byte_arrives() {
    let hold = Duration::from_millis(20);
    let (turns, took) = timeout(Duration::from_secs(60), run(Some(hold), 8, 100))
        .await
        .expect("echoes finished");
    // Tokio's timers never fire early: one turn per started hold, plus the first.
    let bound = took.as_millis() as u64 / hold.as_millis() as u64 + 2;
    assert!(
        turns <= bound,
        "{turns} receive turns in {took:?} with a {hold:?} hold (at most {bound})"
    );
    eprintln!("hold: {turns} turns in {took:?}");
    assert!(turns > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_hold_the_driver_reads_as_datagrams_come() {
    // The same traffic without a hold takes several turns per hold's worth of time: what
    // the bound above rules out.
    let (turns, took) = timeout(Duration::from_secs(60), run(None, 8, 100))
        .await
        .expect("echoes finished");
    let bound = took.as_millis() as u64 / 20 + 2;
    eprintln!("no hold: {turns} turns in {took:?}");
    assert!(
        turns > 2 * bound,
        "only {turns} receive turns in {took:?} without a hold"
    );
}

#[tokio::test]
async fn a_hold_longer_than_50_ms_is_refused() {
    let Err(err) = KcpListener::bind(
        "127.0.0.1:0",
        cfg().receive_hold(Some(Duration::from_millis(51))),
    )
    .await
    else {
        panic!("a 51 ms hold was accepted");
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("50 ms"), "{err}");
    // A zero hold is no hold.
    let l = KcpListener::bind("127.0.0.1:0", cfg().receive_hold(Some(Duration::ZERO)))
        .await
        .unwrap();
    drop(l);
}

/// A session timer that falls due during a hold waits for the hold's end instead of waking
/// the driver on its own. The server's application reads nothing after the first message,
/// so each later ping owes an ACK at the server session's next tick (at most 10 ms in
/// fast3), and nothing else sends it: the client sees it only when the hold that began
/// with the turn that read the ping is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_due_during_a_hold_wait_for_its_end() {
    let hold = Duration::from_millis(50);
    let listener = KcpListener::bind("127.0.0.1:0", cfg().receive_hold(Some(hold)))
        .await
        .unwrap();
    let mut client = KcpStream::connect(listener.local_addr(), cfg())
        .await
        .unwrap();
    client.write_all(b"hello").await.unwrap();
    let (mut server, _) = timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("accepted")
        .unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).await.unwrap();
    let acks = |c: &KcpStream| c.stats().expect("session open").kcp.acks_in;
    for ping in 0..5 {
        // Past any hold a turn started: the ping is read as it comes and starts a hold.
        tokio::time::sleep(hold * 2).await;
        let before = acks(&client);
        let sent = Instant::now();
        client.write_all(b"ping").await.unwrap();
        let limit = sent + Duration::from_secs(10);
        while acks(&client) == before {
            assert!(Instant::now() < limit, "ping {ping} never acknowledged");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = sent.elapsed();
        eprintln!("ping {ping}: acknowledged after {took:?}");
        assert!(
            took >= hold,
            "ping {ping} acknowledged after {took:?}, inside the {hold:?} hold"
        );
    }
    drop(server);
}

/// A hold that ends with nothing to read leaves the socket watched for the next arrival:
/// an idle server sleeps until a datagram comes instead of waking at every hold's end.
/// Each round sends one stray datagram (the listener drops it) and then lets the server idle
/// for fifty holds: it may wake for the arrival and the hold's end, not per hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_held_socket_sleeps_until_a_datagram_comes() {
    let hold = Duration::from_millis(4);
    let listener = KcpListener::bind("127.0.0.1:0", cfg().receive_hold(Some(hold)))
        .await
        .unwrap();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stats = || listener.socket_stats();
    for round in 0..3u8 {
        let before = stats();
        // Varied strays: too short for a KCP header, and one as long as a datagram may be.
        let len = [1usize, 23, 1400][round as usize];
        peer.send_to(&vec![round; len], listener.local_addr())
            .unwrap();
        let limit = Instant::now() + Duration::from_secs(10);
        while stats().datagrams_received == before.datagrams_received {
            assert!(Instant::now() < limit, "round {round}: stray never read");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(hold * 50).await;
        let after = stats();
        let woke = after.wakeups - before.wakeups;
        eprintln!("round {round}: {woke} wake-ups over {:?}", hold * 50);
        assert!(
            woke <= 6,
            "round {round}: {woke} wake-ups while idle for {:?} with a {hold:?} hold",
            hold * 50
        );
        assert_eq!(
            after.receive_turns - before.receive_turns,
            1,
            "round {round}"
        );
    }
}
