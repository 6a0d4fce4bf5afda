//! kcptun-rs-server: a drop-in for kcptun's server (same flags, `-c` JSON and wire).
//! `kcptun-rs-server --help` lists the flags.

fn main() -> std::process::ExitCode {
    kcp_tokio::tunnel::server_main(std::env::args_os().collect())
}
