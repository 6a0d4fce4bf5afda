//! mio adapter for the KCP stack.
//!
//! This crate is a placeholder until its issue lands: it will drive `kcp-core`'s sans-IO
//! `Endpoint` from a mio `Poll` loop that the user owns.
#![deny(missing_docs)]
