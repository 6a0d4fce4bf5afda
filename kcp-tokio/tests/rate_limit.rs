//! The per-session rate limit as a kcp-tokio user sets it (`KcpConfig::rate_limit`): a
//! session limited to 1 MB/s that writes as fast as it can delivers 10 MB (±10 %) in the 10 s
//! after its first byte arrives, every byte checked, over loopback in real time. An
//! unlimited session on the same path moves far more in a fraction of that time (the limit,
//! not the path, is what the first measurement sees).

use std::time::{Duration, Instant};

use kcp_core::Config;
use kcp_tokio::perf::pattern;
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const RATE: u32 = 1_000_000;
const WINDOW: Duration = Duration::from_secs(10);

fn cfg() -> KcpConfig {
    KcpConfig::new(Config::fast3().with_windows(512, 512))
}

/// Writes the pattern stream as fast as the session takes it, until the reader is done.
async fn blast(mut c: KcpStream) {
    let mut off = 0u64;
    let mut buf = vec![0u8; 32 << 10];
    loop {
        for (k, b) in buf.iter_mut().enumerate() {
            *b = pattern(off + k as u64);
        }
        if c.write_all(&buf).await.is_err() {
            return;
        }
        off += buf.len() as u64;
    }
}

/// Bytes the listener's session receives in `window` from its first byte, each checked.
async fn measure(l: &KcpListener, window: Duration) -> u64 {
    let (mut s, _) = timeout(Duration::from_secs(10), l.accept())
        .await
        .expect("the sender connects")
        .unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0u64;
    let mut end: Option<Instant> = None;
    loop {
        let left = match end {
            None => Duration::from_secs(10),
            Some(end) => match end.checked_duration_since(Instant::now()) {
                Some(d) if !d.is_zero() => d,
                _ => break,
            },
        };
        let n = match timeout(left, s.read(&mut buf)).await {
            Err(_) if end.is_some() => break,
            Err(_) => panic!("nothing arrived"),
            Ok(r) => r.unwrap(),
        };
        assert!(n > 0, "end of stream after {got} bytes");
        if end.is_none() {
            end = Some(Instant::now() + window);
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pattern(got + k as u64), "byte {}", got + k as u64);
        }
        got += n as u64;
    }
    s.abort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mb_per_s_limit_holds_within_10_percent_over_10_s() {
    let l = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let c = KcpStream::connect(l.local_addr(), cfg().rate_limit(Some(RATE)))
        .await
        .unwrap();
    let sender = tokio::spawn(blast(c));
    let got = measure(&l, WINDOW).await;
    sender.abort();
    let want = u64::from(RATE) * WINDOW.as_secs();
    let ratio = got as f64 / want as f64;
    eprintln!("rate-limited: {got} bytes in {WINDOW:?} ({ratio:.3} of the limit)");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{got} bytes in {WINDOW:?}: {ratio:.3} of {want}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_limit_the_same_path_is_much_faster() {
    let l = KcpListener::bind("127.0.0.1:0", cfg()).await.unwrap();
    let c = KcpStream::connect(l.local_addr(), cfg()).await.unwrap();
    let sender = tokio::spawn(blast(c));
    let window = Duration::from_secs(2);
    let got = measure(&l, window).await;
    sender.abort();
    eprintln!("unlimited: {got} bytes in {window:?}");
    // Three times the limit in a fifth of the time: fifteen times the limited rate.
    assert!(got > 3 * u64::from(RATE), "{got} bytes in {window:?}");
}
