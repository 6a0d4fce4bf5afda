//! A KCP echo server and client in one program, written against `kcp-tokio` alone (with
//! `tokio`): every type comes from `kcp_tokio`, so this is all a Tokio user's `Cargo.toml`
//! needs. CI builds this file as a crate of its own with exactly those two dependencies.
//!
//! ```text
//! cargo run -p kcpx-tokio --example echo                  # server and client in one process
//! cargo run -p kcpx-tokio --example echo -- server 127.0.0.1:4000
//! cargo run -p kcpx-tokio --example echo -- client 127.0.0.1:4000 hello
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use kcp_tokio::{Config, KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// kcptun's `fast3` mode with windows of 2048 segments, FEC 10/3 and AES, as both ends must
/// agree.
fn config() -> std::io::Result<KcpConfig> {
    KcpConfig::new(Config::fast3().with_windows(2048, 2048))
        .fec(10, 3)
        .crypt("aes", "echo example key")
        .map(|c| c.read_timeout(Some(Duration::from_secs(10))))
}

/// Echoes every stream a peer opens until it ends.
async fn serve(listener: KcpListener) -> std::io::Result<()> {
    loop {
        let (mut stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            eprintln!("echo: {peer} done");
        });
    }
}

/// Sends `msg` and returns what came back.
async fn ask(server: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = KcpStream::connect(server, config()?).await?;
    stream.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).await?;
    Ok(back)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: echo [server ADDR | client ADDR MESSAGE]",
        )
    };
    match args.as_slice() {
        [] => {
            let listener = KcpListener::bind("127.0.0.1:0", config()?).await?;
            let addr = listener.local_addr();
            tokio::spawn(serve(listener));
            let back = ask(addr, b"hello over KCP").await?;
            println!("{}", String::from_utf8_lossy(&back));
            assert_eq!(back, b"hello over KCP");
            Ok(())
        }
        [mode, addr] if mode == "server" => {
            let listener = KcpListener::bind(addr.as_str(), config()?).await?;
            eprintln!("echo: listening on {}", listener.local_addr());
            serve(listener).await
        }
        [mode, addr, msg] if mode == "client" => {
            let addr: SocketAddr = addr.parse().map_err(|_| usage())?;
            let back = ask(addr, msg.as_bytes()).await?;
            println!("{}", String::from_utf8_lossy(&back));
            Ok(())
        }
        _ => Err(usage()),
    }
}
