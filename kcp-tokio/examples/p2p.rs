//! A peer-to-peer pair over KCP, one UDP socket each (`KcpEndpoint`): both peers dial each
//! other at the same time with a conversation id they agreed on, which makes one session
//! between them whoever's first datagram arrives first, then exchange a few lines. The same
//! socket still accepts sessions other peers open. Behind NATs this is hole punching: each
//! side learns the other's mapped address from a rendezvous server (not shown), then both
//! dial; the first datagrams may be dropped until both NATs have seen traffic out, and KCP
//! retransmits them.
//!
//! ```text
//! cargo run -p kcpx-tokio --example p2p                                  # both peers here
//! cargo run -p kcpx-tokio --example p2p -- 127.0.0.1:5000 127.0.0.1:5001  # terminal 1
//! cargo run -p kcpx-tokio --example p2p -- 127.0.0.1:5001 127.0.0.1:5000  # terminal 2
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use kcp_tokio::{Config, KcpConfig, KcpEndpoint};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The conversation id both peers agreed on (through the rendezvous, in a real program). Two
/// `connect` calls with random ids would make two sessions instead of one.
pub const CONV: u32 = 0x7032_7032;

pub fn config() -> KcpConfig {
    KcpConfig::new(Config::fast3().with_windows(1024, 1024))
}

/// One peer: dial `other`, send `rounds` lines `gap` apart while reading as many, then wait
/// until what was written is acknowledged. Returns the lines received
/// (`kcp-tokio/tests/endpoint.rs` runs it too).
pub async fn peer(
    ep: KcpEndpoint,
    other: SocketAddr,
    rounds: u32,
    gap: Duration,
) -> io::Result<Vec<String>> {
    let me = ep.local_addr();
    let stream = ep.connect_with_conv(other, CONV)?;
    let (r, mut w) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        let mut got = Vec::new();
        while got.len() < rounds as usize {
            match lines.next_line().await? {
                Some(line) => {
                    println!("{me} got: {line}");
                    got.push(line);
                }
                None => break,
            }
        }
        io::Result::Ok(got)
    });
    for i in 0..rounds {
        w.write_all(format!("line {i} from {me}\n").as_bytes())
            .await?;
        tokio::time::sleep(gap).await;
    }
    let got = reader.await??;
    // Everything written acknowledged by the peer, then the socket's sessions idle.
    w.shutdown().await?;
    drop(w);
    ep.wait_idle().await;
    Ok(got)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    match &args[..] {
        [] => {
            // Both peers in this process, each on its own socket.
            let a = KcpEndpoint::bind("127.0.0.1:0", config()).await?;
            let b = KcpEndpoint::bind("127.0.0.1:0", config()).await?;
            let (aa, ba) = (a.local_addr(), b.local_addr());
            let gap = Duration::from_millis(100);
            let (ra, rb) = tokio::join!(peer(a, ba, 3, gap), peer(b, aa, 3, gap));
            ra?;
            rb?;
        }
        [local, other] => {
            let ep = KcpEndpoint::bind(parse(local)?, config()).await?;
            println!("peer on {}, dialing {other}", ep.local_addr());
            peer(ep, parse(other)?, 5, Duration::from_secs(1)).await?;
        }
        _ => {
            eprintln!("usage: p2p [LOCAL_ADDR PEER_ADDR]");
            std::process::exit(2);
        }
    }
    Ok(())
}
