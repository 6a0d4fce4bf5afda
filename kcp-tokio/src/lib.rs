//! Tokio adapter for the KCP stack: [`KcpStream`] and [`KcpListener`], kcp-go's `net.Conn`
//! and `net.Listener` in Tokio's terms; [`KcpConnector`] dials many sessions from one socket,
//! and [`KcpEndpoint`] both accepts and dials on one socket (peer-to-peer, hole punching).
//!
//! Each UDP socket has one driver task, whatever the number of sessions on it; all protocol
//! state is kcp-core's sans-IO [`Endpoint`](kcp_core::endpoint::Endpoint), shared with the
//! streams behind a mutex, and streams are woken through wakers (no channel per packet).
//!
//! Optional parts (cargo features): `kcp_tokio::smux` (`smux`) multiplexes streams over a
//! `KcpStream` as kcptun does, with kcptun's snappy framing; `tunnel` is the kcptun-compatible
//! tunnel behind the `kcptun-rs-client` and `kcptun-rs-server` binaries; `perf` and `impair`
//! are the kcp-perf protocol and a UDP impairment proxy.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kcp_tokio::{Config, KcpConfig, KcpListener, KcpStream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // kcptun's fast3 mode with windows for a WAN (see docs/tuning.md), FEC 10/3.
//! let config = KcpConfig::new(Config::fast3().with_windows(2048, 2048)).fec(10, 3);
//! let listener = KcpListener::bind("127.0.0.1:0", config.clone()).await?;
//! let addr = listener.local_addr();
//! tokio::spawn(async move {
//!     let (mut s, _) = listener.accept().await.unwrap();
//!     let mut buf = [0u8; 5];
//!     s.read_exact(&mut buf).await.unwrap();
//!     s.write_all(&buf).await.unwrap();
//! });
//! let mut c = KcpStream::connect(addr, config).await?;
//! c.write_all(b"hello").await?;
//! let mut buf = [0u8; 5];
//! c.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"hello");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels the items that need a cargo feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod connector;
mod driver;
mod endpoint;
mod error;
mod fd;
#[cfg(feature = "impair")]
pub mod impair;
mod listener;
#[cfg(feature = "perf")]
pub mod perf;
#[cfg(feature = "smux")]
pub mod smux;
mod stats;
mod stream;
#[cfg(feature = "tunnel")]
pub mod tunnel;

pub use config::{KcpConfig, Timeouts};
pub use connector::KcpConnector;
pub use endpoint::KcpEndpoint;
// What a Tokio user touches below the adapter, so `kcp-tokio` (with `tokio`) is the one
// dependency a stream needs: the engine presets, the codec layer types, the close reasons.
pub use error::KcpError;
pub use kcp_core::endpoint::{CloseReason, EndpointStats};
/// The runtime-free std layer under this adapter (the shared configuration, batched UDP I/O).
pub use kcp_mio;
pub use kcp_mio::{kcp_core, kcp_crypto, kcp_fec, CipherKind, Config, Layer, DEFAULT_WINDOW};
pub use listener::KcpListener;
pub use stats::SocketStats;
pub use stream::{KcpStream, OwnedReadHalf, OwnedWriteHalf, StreamMonitor, StreamStats};

/// Every handle can move between tasks and threads and be shared (`&self` methods): checked
/// at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<KcpStream>();
    send_sync::<OwnedReadHalf>();
    send_sync::<OwnedWriteHalf>();
    send_sync::<KcpListener>();
    send_sync::<KcpConnector>();
    send_sync::<KcpEndpoint>();
    send_sync::<StreamMonitor>();
    send_sync::<KcpConfig>();
    send_sync::<KcpError>();
};
