//! KcpStream works with tokio_util codecs (Framed over AsyncRead + AsyncWrite).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kcp_core::Config;
use kcp_tokio::{KcpConfig, KcpListener, KcpStream};
use tokio_util::codec::{Framed, LinesCodec};

#[tokio::test]
async fn lines_codec_round_trip() {
    let cfg = KcpConfig::new(Config::fast3());
    let l = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = l.local_addr();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, LinesCodec::new());
        while let Some(Ok(line)) = f.next().await {
            if line == "bye" {
                break;
            }
            f.send(line.to_uppercase()).await.unwrap();
        }
    });
    let c = KcpStream::connect(addr, cfg).await.unwrap();
    let mut f = Framed::new(c, LinesCodec::new());
    for word in ["hello", "kcp", "over", "udp"] {
        f.send(word).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), f.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back, word.to_uppercase());
    }
    f.send("bye").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}
