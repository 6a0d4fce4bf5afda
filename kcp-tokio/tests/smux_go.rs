//! The Tokio face of smux against Go's smux 1.5.16 (`interop/smux-peer`, built by
//! `interop/build-go.sh`; the test fails when Go or the smux sources are missing): versions 1
//! and 2, plain and snappy framing, Go opening the streams or accepting them, and an idle
//! pause of more than two keepalive timeouts that only keepalives bridge. Each stream carries
//! `length u32 LE | seed u32 LE | xorshift32 bytes`; the acceptor checks and echoes, the
//! opener checks the echo; every byte is compared.

use std::time::Duration;

use kcp_testkit::go::smux::{self as peer, IDLE_MS, KEEPALIVE_MS, TIMEOUT_MS};
use kcp_tokio::smux::{Framing, Keepalive, SmuxConfig, SmuxSession, SmuxStream, Version};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::task::JoinSet;

const STREAMS: usize = 8;

/// We opened the stream: send a payload, check the echo, close.
async fn open_one(session: &SmuxSession, size: usize, seed: u32) -> Result<(), String> {
    let s = session.open().map_err(|e| e.to_string())?;
    let id = s.id();
    let data = peer::payload(size, seed);
    let (mut r, mut w) = tokio::io::split(s);
    let out = data.clone();
    let writer = tokio::spawn(async move { w.write_all(&out).await.map(|_| w) });
    let mut got = vec![0u8; data.len()];
    r.read_exact(&mut got)
        .await
        .map_err(|e| format!("stream {id} echo: {e}"))?;
    if got != data {
        return Err(format!("stream {id}: wrong echo"));
    }
    let w = writer.await.unwrap().map_err(|e| e.to_string())?;
    drop(r.unsplit(w));
    Ok(())
}

/// Go opened the stream: read the header, check and echo everything, expect end of stream.
async fn accept_one(s: SmuxStream) -> Result<(), String> {
    let id = s.id();
    let (mut r, mut w) = tokio::io::split(s);
    let mut hdr = [0u8; 8];
    r.read_exact(&mut hdr)
        .await
        .map_err(|e| format!("stream {id} header: {e}"))?;
    let size = u32::from_le_bytes(hdr[..4].try_into().unwrap()) as usize;
    let want = peer::payload(size, u32::from_le_bytes(hdr[4..].try_into().unwrap()));
    w.write_all(&hdr).await.map_err(|e| e.to_string())?;
    let mut got = 8;
    let mut buf = vec![0u8; 50_000];
    while got < want.len() {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| format!("stream {id}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "stream {id}: end after {got} of {} bytes",
                want.len()
            ));
        }
        if n > want.len() - got || buf[..n] != want[got..got + n] {
            return Err(format!("stream {id}: wrong bytes at {got}"));
        }
        w.write_all(&buf[..n]).await.map_err(|e| e.to_string())?;
        got += n;
    }
    let n = r.read(&mut buf).await.map_err(|e| e.to_string())?;
    if n != 0 {
        return Err(format!("stream {id}: {n} bytes after the payload"));
    }
    Ok(())
}

async fn case(version: Version, framing: Framing, go_opens: bool, idle: bool) {
    let mut cmd = Command::from(peer::command(
        go_opens,
        version as u8,
        framing == Framing::Snappy,
        STREAMS,
        7,
        idle,
    ));
    cmd.args(["-listen", "127.0.0.1:0"]).kill_on_drop(true);
    let mut child = cmd.spawn().expect("run smux-peer");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let addr = kcp_testkit::go::listening(&line);
    let sock = TcpStream::connect(addr).await.unwrap();
    sock.set_nodelay(true).unwrap();
    let config = SmuxConfig {
        version,
        keepalive: Some(Keepalive {
            interval: Duration::from_millis(KEEPALIVE_MS),
            timeout: Duration::from_millis(TIMEOUT_MS),
        }),
        max_receive_buffer: 200_000,
        max_stream_buffer: 65536,
        ..SmuxConfig::default()
    };
    let session = if go_opens {
        SmuxSession::client(sock, config, framing).unwrap()
    } else {
        SmuxSession::server(sock, config, framing).unwrap()
    };
    let total = STREAMS + usize::from(idle);
    let work = async {
        let mut set = JoinSet::new();
        if go_opens {
            for _ in 0..total {
                let s = session.accept().await.map_err(|e| format!("accept: {e}"))?;
                set.spawn(accept_one(s));
            }
        } else {
            let sizes = [0usize, 1, 32768, 65535, 300_000, 1 << 20, 123_457, 777_777];
            for (i, size) in sizes.into_iter().enumerate().take(STREAMS) {
                let session = session.clone();
                set.spawn(
                    async move { open_one(&session, size, 0x1234_5678 ^ i as u32 | 1).await },
                );
            }
        }
        while let Some(r) = set.join_next().await {
            r.unwrap()?;
        }
        if idle && !go_opens {
            tokio::time::sleep(Duration::from_millis(IDLE_MS)).await;
            open_one(&session, 4096, 99).await?;
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout(Duration::from_secs(90), work)
        .await
        .expect("timed out")
        .unwrap_or_else(|e| panic!("{version:?} {framing:?} go_opens={go_opens}: {e}"));
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("Go peer did not exit")
        .unwrap();
    assert!(status.success(), "Go peer failed: {status}");
    assert!(!session.is_closed() || session.end().is_some());
}

macro_rules! cases {
    ($($name:ident: $v:expr, $f:expr, $go_opens:expr, $idle:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            case($v, $f, $go_opens, $idle).await;
        }
    )*};
}

cases! {
    go_opens_v1_plain: Version::V1, Framing::Plain, true, false;
    go_opens_v1_snappy_idle: Version::V1, Framing::Snappy, true, true;
    go_opens_v2_plain_idle: Version::V2, Framing::Plain, true, true;
    go_opens_v2_snappy: Version::V2, Framing::Snappy, true, false;
    we_open_v1_plain_idle: Version::V1, Framing::Plain, false, true;
    we_open_v1_snappy: Version::V1, Framing::Snappy, false, false;
    we_open_v2_plain: Version::V2, Framing::Plain, false, false;
    we_open_v2_snappy_idle: Version::V2, Framing::Snappy, false, true;
}
