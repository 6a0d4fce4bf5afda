//! Test support shared by every crate of the workspace (not published), instead of a copy per
//! test file: one counting global allocator ([`alloc`]), one deterministic generator ([`rng`]),
//! KCP segments written as a scripted peer sends them ([`wire`]), a model of the replay window
//! ([`replay`]), and the Go interop peers with the case matrix the adapters run against them
//! ([`go`]).
//!
//! It depends on no crate of the workspace, so every crate (kcp-core included) can use it in
//! its tests without a dependency loop.
//!
//! ```
//! use kcp_testkit::alloc::{self, Counting};
//!
//! #[global_allocator]
//! static A: Counting = Counting;
//!
//! let before = alloc::thread_live();
//! let v = vec![0u8; 1000];
//! assert!(alloc::thread_live() - before >= 1000);
//! drop(v);
//! ```
#![deny(missing_docs)]

pub mod alloc;
pub mod go;
pub mod replay;
pub mod rng;
pub mod wire;
