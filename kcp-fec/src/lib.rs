//! kcp-go compatible Reed-Solomon forward error correction, as a [`kcp_core`]-style codec layer.
//!
//! This crate is a placeholder until its issue lands: it will hold the FEC encoder and decoder
//! that put kcp-go v5.6.1's 8-byte FEC header (seqid, type, size) on the wire and rebuild lost
//! packets with the same Reed-Solomon code as kcp-go (klauspost's matrix over GF(2^8)).
#![no_std]
#![deny(missing_docs)]
