//! mio adapter for the KCP stack, and the runtime-free parts both adapters share.
//!
//! * [`Endpoint`]: every KCP session of one UDP socket, driven from a `mio::Poll` loop the
//!   user owns: no threads, no async, no allocation per packet in steady state. It serves
//!   sessions peers open and opens its own (several may share the socket).
//! * [`stack`]: the configuration ([`KcpConfig`]: engine presets, FEC, cipher and key,
//!   custom layers, lifecycle, admission limits, socket options) turned into kcp-core's
//!   endpoint settings with the codec stack in kcp-go's order. kcp-tokio uses it too.
//! * [`udp`]: batched socket I/O (`recvmmsg`/`sendmmsg`, UDP GSO and GRO on Linux, a plain
//!   path elsewhere) for any non-blocking socket. kcp-tokio uses it too.
//! * `smux` (feature `smux`): smux v1/v2 stream multiplexing as a sans-IO state machine,
//!   wire-compatible with Go's smux as kcptun runs it over a KCP stream.
//! * `snappy` (feature `snappy`): the snappy framing format as a sans-IO encoder and decoder
//!   (kcptun's compression layer between smux and the KCP stream).
//! * [`perf`]: the kcp-perf test protocol as per-session state machines over an `Endpoint`
//!   (the examples and the interop tests use it).
//!
//! The `server` and `client` examples are kcp-perf on one mio loop each, with `kcp-perf`'s
//! flags and defaults (port 4000, `--help`); kcp-tokio's `kcp-perf client` measures the
//! server, and the client drives any kcp-perf server:
//!
//! ```text
//! cargo run --release -p kcpx-mio --example server -- --mode fast3
//! cargo run --release -p kcpx-tokio --features perf,impair --example kcp-perf -- client --mode fast3 --test sink --duration 10
//! cargo run --release -p kcpx-mio --example client -- --mode fast3 --test echo --conns 100 --duration 10
//! ```
//!
//! # The loop
//!
//! A server and a client endpoint in one loop exchange a message over loopback:
//!
//! ```
//! use std::time::Duration;
//! use kcp_core::Config;
//! use kcp_mio::{Endpoint, Event, KcpConfig};
//! use mio::{Events, Poll, Token};
//!
//! # fn main() -> std::io::Result<()> {
//! let engine = Config::fast3().with_windows(2048, 2048);
//! let config = KcpConfig::new(engine).fec(10, 3).crypt("aes", "secret")?;
//! let mut poll = Poll::new()?;
//! let mut server = Endpoint::listen("127.0.0.1:0".parse().unwrap(), &config, poll.registry(), Token(0))?;
//! let mut client = Endpoint::client("127.0.0.1:0".parse().unwrap(), &config, poll.registry(), Token(1))?;
//!
//! let to_server = client.connect(server.local_addr()?)?;
//! client.send(to_server, b"hello")?;
//!
//! let mut events = Events::with_capacity(64);
//! let mut buf = [0u8; 2048];
//! let mut reply = Vec::new();
//! for _ in 0..1000 {
//!     // Sleep until a socket is ready or the earliest session timer is due.
//!     let timeout = [server.poll_timeout(), client.poll_timeout()].into_iter().flatten().min();
//!     poll.poll(&mut events, timeout.or(Some(Duration::from_millis(100))))?;
//!     for event in events.iter() {
//!         server.handle_event(event)?; // events of other tokens are ignored
//!         client.handle_event(event)?;
//!     }
//!     server.handle_timeout()?;
//!     client.handle_timeout()?;
//!
//!     // What changed: no scan over the sessions.
//!     while let Some(event) = server.poll_event() {
//!         match event {
//!             Event::Incoming => while server.accept().is_some() {},
//!             Event::Readable(id) => loop {
//!                 match server.recv(id, &mut buf) {
//!                     Ok(n) => { server.send(id, &buf[..n])?; } // echo
//!                     Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
//!                     Err(e) => return Err(e),
//!                 }
//!             },
//!             Event::Writable(_) | Event::Closed(..) => {}
//!         }
//!     }
//!     while let Some(event) = client.poll_event() {
//!         if let Event::Readable(id) = event {
//!             while let Ok(n) = client.recv(id, &mut buf) {
//!                 reply.extend_from_slice(&buf[..n]);
//!             }
//!         }
//!     }
//!     if reply == b"hello" {
//!         break;
//!     }
//! }
//! assert_eq!(reply, b"hello");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels the items that need a cargo feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "cli")]
pub mod cli;
pub mod diag;
#[cfg(feature = "mio")]
mod endpoint;
pub mod histogram;
#[cfg(feature = "perf")]
pub mod perf;
#[cfg(feature = "smux")]
pub mod smux;
#[cfg(feature = "snappy")]
pub mod snappy;
pub mod stack;
pub mod udp;

#[cfg(feature = "mio")]
pub use endpoint::{Endpoint, SessionInfo, Work};
pub use kcp_core::endpoint::{CloseReason, EndpointStats, Event, SessionId};
pub use stack::{KcpConfig, Timeouts, DEFAULT_WINDOW};

// What a user of either adapter touches below it, so one dependency line is enough.
/// The sans-IO engine, endpoint and codec trait (the `kcp-core` crate).
pub use kcp_core;
pub use kcp_core::{Config, Layer, Millis};
/// kcp-go compatible packet encryption (the `kcp-crypto` crate).
pub use kcp_crypto;
pub use kcp_crypto::CipherKind;
/// kcp-go compatible Reed-Solomon FEC (the `kcp-fec` crate).
pub use kcp_fec;
/// The mio version the [`Endpoint`] registers with (its `Poll`, `Token` and `Events`).
#[cfg(feature = "mio")]
pub use mio;
