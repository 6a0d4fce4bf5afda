//! Test support shared by every crate of the workspace (not published): one counting global
//! allocator and one builder of the Go interop peers, instead of a copy per test file.
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
