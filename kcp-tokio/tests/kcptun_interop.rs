//! The tunnel against Debian's kcptun 20210922 (`kcptun-client`, `kcptun-server`): Go client ->
//! our server -> a TCP echo target, and our client -> Go server, over the matrix of smux
//! versions, compression, FEC and ciphers, `--conn 4`, session rotation, an unreachable and a
//! unix-socket target, a lossy link, mismatched versions and keys; Go <-> Go and ours <-> ours
//! run in the same harness as controls. Every byte is checked. Fails (never skips) when the Go
//! binaries are missing.
//!
//! Each cell starts one client and one server process on loopback and a TCP echo target in
//! this process; cells run a few at a time. The two long checks (an idle stream survives 65 s,
//! a vanished peer is noticed within 60 s) are separate tests that each run both roles at once.

#![cfg(unix)]

mod kcptun;
