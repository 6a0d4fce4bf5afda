//! KcpStream flow control over loopback UDP: writes wait on a full window, read and write
//! timeouts, a slow reader or a slow receiver slows the sender without retransmission storms,
//! and settings that change at run time.

mod common;

use std::time::{Duration, Instant};

use common::{cfg, echo_server, pair, pattern};
use kcp_tokio::{KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// The slow reader's and the slow receiver's transfers run one at a time: the slow receiver
/// spins a core for each datagram it opens, and beside it the slow reader's sender would see
/// its ACKs late and count retransmissions its window did not cause.
static ONE_SLOW_PEER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn writes_wait_while_the_window_is_full() {
    // The server accepts but never reads: its receive window fills, then ours.
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let addr = listener.local_addr();
    let hold = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(s);
    });
    let mut c = KcpStream::connect(addr, cfg()).await.unwrap();
    let chunk = vec![1u8; 64 * 1024];
    let mut written = 0usize;
    let r = timeout(Duration::from_secs(1), async {
        loop {
            c.write_all(&chunk).await.unwrap();
            written += chunk.len();
        }
    })
    .await;
    assert!(r.is_err(), "writes never blocked");
    // Bounded: the peer's window (256) + our send window and queue, in 1376-byte segments.
    assert!(
        written < (256 + 256 + 255 + 64) * 1376,
        "{written} bytes accepted"
    );
    hold.abort();
}

#[tokio::test]
async fn read_and_write_timeouts() {
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let addr = listener.local_addr();
    let mut c = KcpStream::connect(addr, cfg().write_timeout(Some(Duration::from_millis(300))))
        .await
        .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)));
    c.write_all(b"hi").await.unwrap();
    let (_s, _) = timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 4];
    let e = c.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_millis(190) && t.elapsed() < Duration::from_secs(2));
    // The server never reads: writes stall once the windows are full, then time out.
    let chunk = vec![0u8; 64 * 1024];
    let e = loop {
        if let Err(e) = c.write_all(&chunk).await {
            break e;
        }
    };
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    // The session itself is still alive after a timeout.
    assert!(c.stats().is_some());
}

/// An application that reads slowly closes its receive window: the sender waits instead
/// of retransmitting into a full receiver, and every byte arrives.
#[tokio::test]
async fn a_slow_reader_slows_the_sender_through_its_window() {
    let _one = ONE_SLOW_PEER_AT_A_TIME.lock().await;
    let listener = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    // Open the session first and count from there. A sender that does not know the peer's
    // window yet sends a first flight of 32 segments, of which the listener's half-open entry
    // keeps only what fits its byte budget; the rest are retransmitted once the session is
    // confirmed. That is admission, not the window this test is about, and it used most of
    // the margin below.
    let (mut c, mut s) = pair(&listener, cfg(), b"hello").await;
    let before = c.stats().unwrap().kcp;
    const TOTAL: usize = 1_000_000;
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        c.write_all(&data).await.unwrap();
        c
    });
    let mut got = 0usize;
    let mut b = vec![0u8; 16 * 1024];
    while got < TOTAL {
        let n = timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(b[..n]
            .iter()
            .enumerate()
            .all(|(k, &x)| x == pattern(got + k)));
        got += n;
        tokio::time::sleep(Duration::from_millis(2)).await; // ~8 MB/s at most
    }
    let c = writer.await.unwrap();
    let st = c.stats().unwrap().kcp;
    let retrans = st.retrans_segs - before.retrans_segs;
    let out = st.out_segs - before.out_segs;
    assert!(
        retrans < out / 20,
        "the sender retransmitted into a full window: {retrans} of {out} segments, {st:?}"
    );
}

/// A codec layer with no header whose `open` costs ~300 µs: a receiver that decrypts slowly
/// (a debug build's 3DES).
struct SlowOpen;

impl kcp_core::Codec for SlowOpen {
    fn header_len(&self) -> usize {
        0
    }
    fn seal(
        &mut self,
        _buf: &mut [u8],
        len: usize,
        _now: kcp_core::Millis,
    ) -> Result<usize, kcp_core::CodecError> {
        Ok(len)
    }
    fn open(
        &mut self,
        buf: &mut [u8],
        _now: kcp_core::Millis,
    ) -> Result<Option<std::ops::Range<usize>>, kcp_core::CodecError> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(300) {
            std::hint::spin_loop();
        }
        Ok(Some(0..buf.len()))
    }
}

/// A receiver whose socket driver is slower than the sender keeps acknowledging while it
/// works through its backlog (timers run between chunks of received datagrams), so its ACK
/// list never overflows and the sender, clocked by those ACKs, does not collapse into
/// retransmitting whole windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_keeps_acknowledging_while_it_catches_up() {
    let _one = ONE_SLOW_PEER_AT_A_TIME.lock().await;
    let slow = cfg().layers(|| vec![Box::new(SlowOpen) as kcp_core::Layer], 0);
    let listener = KcpListener::bind("127.0.0.1:0", slow).await.unwrap();
    let addr = listener.local_addr();
    let mut c = KcpStream::connect(addr, cfg()).await.unwrap();
    let total = 1_500_000usize;
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..total).map(pattern).collect();
        c.write_all(&data).await.unwrap();
        c
    });
    let (mut s, _) = timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = vec![0u8; total];
    timeout(Duration::from_secs(40), s.read_exact(&mut got))
        .await
        .expect("the transfer collapsed")
        .unwrap();
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    let st = s.stats().unwrap();
    assert_eq!(st.kcp.ack_list_full, 0, "ACKs were dropped: {:?}", st.kcp);
    let c = writer.await.unwrap();
    let sent = c.stats().unwrap().kcp;
    assert!(
        sent.retrans_segs < sent.out_segs,
        "more retransmissions than new segments: {sent:?}"
    );
}

#[tokio::test]
async fn settings_change_at_run_time() {
    let addr = echo_server(cfg()).await;
    let c = KcpStream::connect(addr, cfg()).await.unwrap();
    c.set_config(|c| {
        c.snd_wnd = 1024;
        c.ack_nodelay = true;
    })
    .unwrap();
    c.set_dscp(46).unwrap();
    c.set_sockbuf(1 << 20).unwrap();
    assert!(c.set_dscp(64).is_err());
    c.set_config(|c| c.mtu = 500).unwrap();
    assert_eq!(c.mss(), 500 - 24);
    assert!(c.set_config(|c| c.mtu = 40).is_err());
    assert!(c.set_config(|c| c.stream = false).is_err());
    assert!(c.set_config(|c| c.interval = 1).is_err());
}

#[tokio::test]
async fn invalid_fec_is_refused() {
    let r = KcpListener::bind("127.0.0.1:0", cfg().fec(200, 100)).await;
    assert!(r.is_err());
}
