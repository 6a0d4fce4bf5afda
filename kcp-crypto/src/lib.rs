//! kcp-go compatible packet encryption, as a `kcp_core` codec layer.
//!
//! This crate is a placeholder until its issue lands: it will hold every kcp-go v5.6.1 packet
//! cipher (16-byte nonce, CRC-32, then the whole packet encrypted) and kcptun's key derivation.
#![no_std]
#![deny(missing_docs)]
