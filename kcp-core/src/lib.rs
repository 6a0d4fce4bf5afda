//! kcp-core: a `no_std`, sans-IO KCP engine, wire-compatible with kcp-go v5.6.1 and ikcp.c.
//!
//! The engine ([`Kcp`]) consumes datagrams and timestamps and emits datagrams; it never reads a
//! clock, opens a socket or spawns anything, so it runs on a microcontroller without an
//! allocator ([`Kcp::with_buffers`]), inside any event loop, or in a deterministic simulator.
//!
//! ```
//! use kcp_core::{Config, Kcp, Millis};
//!
//! let mut client = Kcp::new(0x11223344, Config::fast3(), Millis(0)).unwrap();
//! let mut server = Kcp::new(0x11223344, Config::fast3(), Millis(0)).unwrap();
//! client.send(b"ping").unwrap();
//!
//! // Move every datagram `from` wants to send into `to` (a perfect link).
//! fn pump(from: &mut Kcp, to: &mut Kcp, now: Millis) {
//!     let mut datagram = [0u8; 1500];
//!     from.handle_timeout(now);
//!     while let Some(n) = from.poll_transmit(now, &mut datagram) {
//!         to.handle_datagram(now, &datagram[..n]).unwrap();
//!     }
//! }
//!
//! let mut now = Millis(0);
//! let mut got = Vec::new();
//! while got.is_empty() {
//!     pump(&mut client, &mut server, now);
//!     pump(&mut server, &mut client, now);
//!     let mut buf = [0u8; 64];
//!     if let Ok(n) = server.recv(&mut buf) {
//!         got.extend_from_slice(&buf[..n]);
//!     }
//!     now = now + 10;
//! }
//! assert_eq!(got, b"ping");
//! ```
//!
//! # Modules
//! * [`wire`]: segment format, checked views and a datagram iterator;
//! * [`time`]: the wrapping millisecond clock;
//! * [`config`]: knobs, kcptun's presets and validation;
//! * [`congestion`]: congestion controllers behind a trait;
//! * [`codec`]: the boundary that FEC and crypto layers implement;
//! * [`endpoint`] (feature `alloc`): many sessions on one socket, accept decisions, timers;
//! * [`session`] (feature `alloc`): an engine plus its codec stack, in kcp-go's order;
//! * [`stats`][mod@stats]: counters.
//!
//! # Features
//! * `alloc` (default): [`Kcp::new`] with heap buffers that grow with the data in flight.
//! * `std`: implies `alloc`.
//! * `sim`: the deterministic network simulator in `kcp_core::sim`, for tests.
#![no_std]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod codec;
pub mod config;
pub mod congestion;
#[cfg(feature = "alloc")]
pub mod endpoint;
mod engine;
#[cfg(feature = "alloc")]
pub mod session;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stats;
mod storage;
pub mod time;
pub mod wire;

pub use codec::{Codec, CodecError, LayerCounters, Reserve, Route};
pub use config::{Backoff, Config, ConfigError};
pub use engine::{
    AckEntry, Buffers, InputError, Kcp, RecvError, RecvSlot, SendError, SendSlot, StaticBuffers,
};
#[cfg(feature = "alloc")]
pub use engine::{HEAP_CHUNK, SMALL_CHUNK};
#[cfg(feature = "alloc")]
pub use session::{Layer, Session, SessionError, SessionStats};
pub use stats::Stats;
#[cfg(feature = "alloc")]
pub use storage::{Chunk, ChunkCache, SmallChunk};
pub use time::Millis;
