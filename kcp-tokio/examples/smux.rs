//! smux over KCP in one process: a server that echoes every stream, a client that opens three
//! streams over one KCP session (snappy framing, smux v2, kcptun's settings), the Tokio face of
//! what `kcptun-rs-client` and `kcptun-rs-server` run.
//!
//! `cargo run -p kcpx-tokio --features smux --example smux`

use kcp_tokio::smux::{Framing, SmuxConfig, SmuxSession, Version};
use kcp_tokio::{Config, KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // kcptun's defaults: mode fast, FEC 10/3, aes with a shared key; smux v2 windows of
    // --streambuf 2097152 within --smuxbuf 4194304.
    let kcp = KcpConfig::new(Config::fast())
        .fec(10, 3)
        .crypt("aes", "it's a secrect")?;
    let smux = SmuxConfig {
        version: Version::V2,
        max_receive_buffer: 4 << 20,
        max_stream_buffer: 2 << 20,
        ..SmuxConfig::default()
    };

    let listener = KcpListener::bind("127.0.0.1:0", kcp.clone()).await?;
    let addr = listener.local_addr();
    let server_smux = smux.clone();
    tokio::spawn(async move {
        while let Ok((kcp, peer)) = listener.accept().await {
            let session = SmuxSession::server(kcp, server_smux.clone(), Framing::Snappy)?;
            println!("server: session from {peer}");
            tokio::spawn(async move {
                while let Ok(stream) = session.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = tokio::io::split(stream);
                        tokio::io::copy(&mut r, &mut w).await
                    });
                }
            });
        }
        Ok::<(), std::io::Error>(())
    });

    let session = SmuxSession::client(KcpStream::connect(addr, kcp).await?, smux, Framing::Snappy)?;
    for text in ["first stream", "second stream", "third stream"] {
        let mut stream = session.open()?;
        stream.write_all(text.as_bytes()).await?;
        let mut echo = vec![0u8; text.len()];
        stream.read_exact(&mut echo).await?;
        println!(
            "client: stream {} echoed {:?}",
            stream.id(),
            String::from_utf8_lossy(&echo)
        );
    }
    Ok(())
}
