//! Tokio adapter for the KCP stack.
//!
//! This crate is a placeholder until its issue lands: it will hold `KcpStream` (`AsyncRead` and
//! `AsyncWrite`) and `KcpListener`, driving `kcp-core`'s sans-IO `Endpoint` from one task per
//! UDP socket.
#![deny(missing_docs)]
pub mod impair;
