//! Readiness without a buffer over loopback UDP: `readable`/`try_read` and
//! `writable`/`try_write` move every byte, report what a read or write would, honour the
//! timeouts, wake several waiters, survive cancellation, and report a session's end.

mod common;

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use common::{cfg, pair, pattern};
use kcp_tokio::{Config, KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

/// An echo served only through readiness and the `try_` calls, with a stack buffer and no
/// waiting write: the client writes pieces of varying sizes (1 byte to several segments)
/// faster than a small window drains, so `try_write` also meets a full queue.
#[tokio::test]
async fn a_readiness_echo_moves_every_byte() {
    let small = || KcpConfig::new(Config::fast3().with_windows(16, 16));
    let listener = KcpListener::bind("127.0.0.1:0", small()).await.unwrap();
    let (c, s) = pair(&listener, small(), b"go").await;
    const TOTAL: usize = 600_000;
    let server = tokio::spawn(async move {
        let (mut moved, mut full) = (0usize, 0u32);
        let mut pending: Vec<u8> = Vec::new();
        while moved < TOTAL {
            if !pending.is_empty() {
                s.writable().await.unwrap();
                match s.try_write(&pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => full += 1,
                    Err(e) => panic!("{e}"),
                }
                continue;
            }
            s.readable().await.unwrap();
            let mut buf = [0u8; 700];
            let n = match s.try_read(&mut buf) {
                Ok(0) => panic!("end of stream after {moved} bytes"),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            };
            moved += n;
            match s.try_write(&buf[..n]) {
                Ok(w) => pending.extend_from_slice(&buf[w..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    full += 1;
                    pending.extend_from_slice(&buf[..n]);
                }
                Err(e) => panic!("{e}"),
            }
        }
        while !pending.is_empty() {
            s.writable().await.unwrap();
            if let Ok(n) = s.try_write(&pending) {
                pending.drain(..n);
            }
        }
        (s, full)
    });
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        let mut at = 0;
        let mut size = 1;
        while at < TOTAL {
            let end = (at + size).min(TOTAL);
            w.write_all(&data[at..end]).await.unwrap();
            at = end;
            size = size * 7 % 4099 + 1;
        }
        w
    });
    let mut got = vec![0u8; TOTAL];
    timeout(LIMIT, r.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "echo corrupted"
    );
    let _w = writer.await.unwrap();
    let (_s, full) = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(
        full > 0,
        "the send queue never filled: the waiting path did not run"
    );
}

#[tokio::test]
async fn readable_reads_nothing_and_try_read_takes_what_is_there() {
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let (mut c, s) = pair(&listener, cfg(), b"x").await;
    let mut buf = [0u8; 16];
    let e = s.try_read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    c.write_all(b"abc").await.unwrap();
    timeout(LIMIT, s.readable()).await.unwrap().unwrap();
    timeout(LIMIT, s.readable()).await.unwrap().unwrap();
    assert_eq!(s.try_read(&mut buf[..2]).unwrap(), 2);
    assert_eq!(s.try_read(&mut buf[2..]).unwrap(), 1);
    assert_eq!(&buf[..3], b"abc");
    assert_eq!(
        s.try_read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    // The waiter registered now is woken by the next data.
    let waiter = {
        let s = Arc::new(s);
        let s2 = s.clone();
        (s, tokio::spawn(async move { s2.readable().await }))
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.1.is_finished());
    c.write_all(b"d").await.unwrap();
    timeout(LIMIT, waiter.1).await.unwrap().unwrap().unwrap();
    assert_eq!(waiter.0.try_read(&mut buf).unwrap(), 1);
}

/// Several tasks wait at once (each with its own waker), and a cancelled wait leaves
/// nothing behind that keeps a later one from being woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_waiters_are_woken_after_cancelled_waits() {
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let (mut c, s) = pair(&listener, cfg(), b"x").await;
    let s = Arc::new(s);
    // Cancelled waits, many of them.
    for _ in 0..20 {
        assert!(timeout(Duration::from_millis(2), s.readable())
            .await
            .is_err());
    }
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.readable().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(b"wake").await.unwrap();
    for w in waiters {
        timeout(LIMIT, w).await.unwrap().unwrap().unwrap();
    }
    let mut buf = [0u8; 8];
    assert_eq!(s.try_read(&mut buf).unwrap(), 4);
}

#[tokio::test]
async fn readiness_honours_the_timeouts() {
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let config = cfg().write_timeout(Some(Duration::from_millis(300)));
    let (mut c, mut s) = pair(&listener, config, b"x").await;
    c.set_read_timeout(Some(Duration::from_millis(200)));
    let e = timeout(LIMIT, c.readable()).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    // The server never reads: fill the queue with `try_write`, then `writable` times out.
    let chunk = [7u8; 1 << 14];
    let mut taken = 0usize;
    loop {
        match c.try_write(&chunk) {
            Ok(n) => taken += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        // Let the driver send (the queue drains into the peer's window first).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(taken > 0);
    let e = timeout(LIMIT, c.writable()).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    // Once the server reads, the queue drains and `writable` returns.
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        while got < taken {
            got += s.read(&mut buf).await.unwrap();
        }
        s
    });
    timeout(LIMIT, c.writable()).await.unwrap().unwrap();
    assert!(c.try_write(b"more").unwrap() > 0);
    let _s = timeout(LIMIT, reader).await.unwrap().unwrap();
}

/// A session that ends is ready: `try_read` then reports how it ended.
#[tokio::test]
async fn readable_returns_at_the_end_and_try_read_reports_it() {
    let config = cfg().idle_timeout(Some(Duration::from_millis(300)));
    let listener = KcpListener::bind("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let (c, s) = pair(&listener, config, b"hello").await;
    let (r, w) = s.into_split();
    drop(c); // the client goes away without a word (KCP has no FIN)
    timeout(LIMIT, r.readable()).await.unwrap().unwrap();
    let e = r.try_read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    timeout(LIMIT, w.writable()).await.unwrap().unwrap();
    assert!(w.try_write(b"late").is_err());
}

/// `try_read` in message mode behaves as `AsyncRead`: a message that does not fit comes in
/// parts, with no byte lost.
#[tokio::test]
async fn try_read_splits_a_message_that_does_not_fit() {
    let mc = common::message_cfg;
    let listener = KcpListener::bind("127.0.0.1:0", mc()).await.unwrap();
    let c = KcpStream::connect(listener.local_addr(), mc())
        .await
        .unwrap();
    c.send_message(b"first").await.unwrap();
    let (s, _) = timeout(LIMIT, listener.accept()).await.unwrap().unwrap();
    let msg: Vec<u8> = (0..3000).map(pattern).collect();
    c.send_message(&msg).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1000];
    while got.len() < 5 + msg.len() {
        timeout(LIMIT, s.readable()).await.unwrap().unwrap();
        match s.try_read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(&got[..5], b"first");
    assert_eq!(&got[5..], &msg[..]);
}
