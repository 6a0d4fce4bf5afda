//! What Tokio users expect of a transport: `poll_accept` in a hand-written future, the socket
//! through `AsFd`/`AsRawFd` (a socket option set through it), vectored writes (one message
//! per call in message mode), IPv6 loopback sessions.

mod common;

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use kcp_core::Config;
use kcp_tokio::{KcpConfig, KcpConnector, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn cfg(stream: bool) -> KcpConfig {
    KcpConfig::new(Config {
        stream,
        ..Config::fast3().with_windows(256, 256)
    })
}

/// A future written by hand around `poll_accept`.
struct AcceptOne<'a> {
    listener: &'a KcpListener,
    polls: usize,
}

impl Future for AcceptOne<'_> {
    type Output = io::Result<(KcpStream, SocketAddr)>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls += 1;
        self.listener.poll_accept(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_accept_drives_a_hand_written_future() {
    let l = KcpListener::bind("127.0.0.1:0", cfg(true)).await.unwrap();
    let addr = l.local_addr();
    // Nothing to accept yet: the future is pending (and woken later, not spun).
    let mut fut = AcceptOne {
        listener: &l,
        polls: 0,
    };
    assert!(timeout(Duration::from_millis(200), &mut fut).await.is_err());
    let before = fut.polls;
    let mut c = KcpStream::connect(addr, cfg(true)).await.unwrap();
    c.write_all(b"over poll_accept").await.unwrap();
    let (mut s, peer) = timeout(Duration::from_secs(10), &mut fut)
        .await
        .expect("woken when the session arrived")
        .unwrap();
    assert!(fut.polls - before <= 3, "{} polls", fut.polls - before);
    assert_eq!(peer.port(), c.local_addr().port());
    let mut b = [0u8; 16];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"over poll_accept");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_options_through_as_fd() {
    use std::os::fd::{AsFd, AsRawFd};
    let l = KcpListener::bind("127.0.0.1:0", cfg(true).sockbuf(None))
        .await
        .unwrap();
    let connector = KcpConnector::bind("127.0.0.1:0", cfg(true).sockbuf(None))
        .await
        .unwrap();
    let mut c = connector.connect(l.local_addr()).await.unwrap();
    c.write_all(b"x").await.unwrap();
    let (s, _) = timeout(Duration::from_secs(10), l.accept())
        .await
        .unwrap()
        .unwrap();
    // A stream's socket is its listener's or connector's.
    assert_eq!(s.as_raw_fd(), l.as_raw_fd());
    assert_eq!(c.as_raw_fd(), connector.as_raw_fd());
    assert_ne!(l.as_raw_fd(), connector.as_raw_fd());
    // Set options through the borrowed descriptors and read them back.
    for (what, fd) in [("listener", l.as_fd()), ("connector", connector.as_fd())] {
        let sock = socket2::SockRef::from(&fd);
        sock.set_recv_buffer_size(300_000).unwrap();
        assert!(sock.recv_buffer_size().unwrap() >= 300_000, "{what}");
        sock.set_tos_v4(46 << 2).unwrap();
        assert_eq!(sock.tos_v4().unwrap(), 46 << 2, "{what}");
    }
    let own = KcpStream::connect(l.local_addr(), cfg(true)).await.unwrap();
    let sock = socket2::SockRef::from(&own);
    sock.set_tos_v4(10 << 2).unwrap();
    assert_eq!(
        socket2::SockRef::from(&own.as_fd()).tos_v4().unwrap(),
        10 << 2
    );
}

async fn pair(stream: bool) -> (KcpStream, KcpStream, KcpListener) {
    let l = KcpListener::bind("127.0.0.1:0", cfg(stream)).await.unwrap();
    let (c, s) = common::pair(&l, cfg(stream), b"hi").await;
    (c, s, l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectored_writes_keep_one_message_per_call_in_message_mode() {
    let (mut c, s, _l) = pair(false).await;
    assert!(tokio::io::AsyncWrite::is_write_vectored(&c));
    let n = c
        .write_vectored(&[
            IoSlice::new(b"ab"),
            IoSlice::new(b""),
            IoSlice::new(b"cd"),
            IoSlice::new(b"e"),
        ])
        .await
        .unwrap();
    assert_eq!(n, 5);
    let n = c
        .write_vectored(&[IoSlice::new(b"fg"), IoSlice::new(b"hi")])
        .await
        .unwrap();
    assert_eq!(n, 4);
    // One slice: as a plain write.
    assert_eq!(c.write_vectored(&[IoSlice::new(b"j")]).await.unwrap(), 1);
    let mut buf = [0u8; 64];
    for want in [&b"abcde"[..], b"fghi", b"j"] {
        let n = timeout(Duration::from_secs(10), s.recv_message(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], want, "one message per vectored write");
    }
    // The split halves write vectored the same way.
    let (_r, mut w) = c.into_split();
    let n = w
        .write_vectored(&[IoSlice::new(b"kl"), IoSlice::new(b"mn")])
        .await
        .unwrap();
    assert_eq!(n, 4);
    let n = timeout(Duration::from_secs(10), s.recv_message(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"klmn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectored_writes_in_stream_mode() {
    let (mut c, mut s, _l) = pair(true).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut want = Vec::new();
    let mut sent = 0;
    while sent < big.len() {
        let (a, b) = big[sent..].split_at((big.len() - sent) / 2);
        let n = c
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await
            .unwrap();
        assert!(n > 0);
        want.extend_from_slice(&big[sent..sent + n]);
        sent += n;
    }
    let mut got = vec![0u8; want.len()];
    timeout(Duration::from_secs(20), s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, want);
}

/// IPv6 loopback, both roles of the Tokio adapter and its connector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_sessions() {
    let cfg = cfg(true).crypt("aes-128", "v6").unwrap().fec(10, 3);
    let l = KcpListener::bind("[::1]:0", cfg.clone()).await.unwrap();
    let addr = l.local_addr();
    assert!(addr.is_ipv6());
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut s, peer) = l.accept().await.unwrap();
            assert!(peer.is_ipv6());
            tokio::spawn(async move {
                let mut b = vec![0u8; 100_000];
                s.read_exact(&mut b).await.unwrap();
                s.write_all(&b).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let connector = KcpConnector::bind("[::1]:0", cfg.clone()).await.unwrap();
    for mut c in [
        KcpStream::connect(addr, cfg.clone()).await.unwrap(),
        connector.connect(addr).await.unwrap(),
    ] {
        assert!(c.local_addr().is_ipv6());
        c.write_all(&data).await.unwrap();
        let mut back = vec![0u8; data.len()];
        timeout(Duration::from_secs(20), c.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, data);
    }
    timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}

/// `[::]:PORT` takes IPv4 peers too where the system maps them (Linux by default), as the
/// listener's documentation says; they appear as IPv4-mapped IPv6 addresses.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unspecified_ipv6_listener_takes_both_families() {
    let l = KcpListener::bind("[::]:0", cfg(true)).await.unwrap();
    let port = l.local_addr().port();
    for to in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let mut c = KcpStream::connect(to.as_str(), cfg(true)).await.unwrap();
        c.write_all(b"family").await.unwrap();
        let (mut s, peer) = timeout(Duration::from_secs(10), l.accept())
            .await
            .unwrap()
            .unwrap();
        assert!(peer.is_ipv6(), "{to}: {peer}");
        let mut b = [0u8; 6];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"family");
        s.write_all(b"back").await.unwrap();
        let mut b = [0u8; 4];
        timeout(Duration::from_secs(10), c.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b, b"back", "{to}");
    }
}
