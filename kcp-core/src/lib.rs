//! kcp-core: a `no_std`, sans-IO KCP engine (work in progress).
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod codec;
pub mod time;

pub use codec::{Codec, CodecError};
pub use time::Millis;
