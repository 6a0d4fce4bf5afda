//! The HTTP example's server (`examples/http.rs`, compiled in here as it is) serves real
//! HTTP/1.1 requests over KCP: hyper's client sends them through a `KcpStream`, on one
//! session with keep-alive, and checks status and body; a hand-written request gets the same
//! answer byte for byte.

#[allow(dead_code)] // its `main`
#[path = "../examples/http.rs"]
mod example;

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use kcp_tokio::{KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);

async fn server() -> std::net::SocketAddr {
    let l = KcpListener::bind("127.0.0.1:0", example::config())
        .await
        .unwrap();
    let addr = l.local_addr();
    tokio::spawn(example::serve(l));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_client_gets_answers_over_kcp() {
    let addr = server().await;
    let stream = KcpStream::connect(addr, example::config()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    // Three requests on the one session (keep-alive).
    for (path, status, body) in [
        ("/", StatusCode::OK, &b"hello over KCP\n"[..]),
        ("/echo/kcp-and-hyper", StatusCode::OK, &b"kcp-and-hyper"[..]),
        ("/nope", StatusCode::NOT_FOUND, &b"not found\n"[..]),
    ] {
        let req = Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        // HTTP/1.1 sends one request at a time: wait until the previous one is done.
        timeout(WAIT, sender.ready()).await.unwrap().unwrap();
        let resp = timeout(WAIT, sender.send_request(req))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(resp.status(), status, "{path}");
        let got = timeout(WAIT, resp.into_body().collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(&got[..], body, "{path}");
    }
    drop(sender);
    // The client connection ends cleanly once its sender is gone.
    timeout(WAIT, conn).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_request_gets_a_whole_response() {
    let addr = server().await;
    let mut s = KcpStream::connect(addr, example::config()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: kcp\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // `Connection: close`: the server answers, then ends its side; KCP has no FIN, so read
    // until the body's declared length arrived.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let want = b"hello over KCP\n";
    while !got.ends_with(want) {
        let n = timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the response")
            .unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\ncontent-length: 15\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello over KCP\n"), "{text}");
}
