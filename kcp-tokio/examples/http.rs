//! An HTTP/1.1 server over KCP: hyper 1.x serves every session a `KcpListener` accepts,
//! through hyper-util's `TokioIo` (a `KcpStream` is `AsyncRead + AsyncWrite`, like a
//! `TcpStream`). Any hyper service works the same way; this one answers `GET /` with a
//! greeting, `GET /echo/<text>` with the text, and 404 otherwise.
//!
//! ```text
//! cargo run -p kcpx-tokio --example http -- 127.0.0.1:8080
//! ```
//!
//! A client needs KCP too (a browser speaks TCP): hyper's client over a `KcpStream`, as
//! `kcp-tokio/tests/http.rs` does, or kcptun in front of a plain HTTP client.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kcp_tokio::{Config, KcpConfig, KcpListener};

/// The configuration both ends use (kcptun's fast3 with WAN-sized windows; the client must
/// use the same codec settings).
pub fn config() -> KcpConfig {
    KcpConfig::new(Config::fast3().with_windows(1024, 1024))
}

/// The service: one response per request.
pub async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let (status, body) = match (req.method(), path) {
        (&Method::GET, "/") => (StatusCode::OK, Bytes::from_static(b"hello over KCP\n")),
        (&Method::GET, p) if p.starts_with("/echo/") => {
            (StatusCode::OK, Bytes::copy_from_slice(&p.as_bytes()[6..]))
        }
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    Ok(resp)
}

/// Accepts sessions for ever, each served by hyper in a task of its own (HTTP/1.1 keep-alive:
/// a session carries any number of requests).
pub async fn serve(listener: KcpListener) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let conn =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle));
            if let Err(e) = conn.await {
                eprintln!("{peer}: {e}");
            }
        });
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = KcpListener::bind(addr, config()).await?;
    eprintln!("HTTP over KCP on {}", listener.local_addr());
    serve(listener).await
}
