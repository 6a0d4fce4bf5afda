//! kcptun-rs-client: a drop-in for kcptun's client (same flags, `-c` JSON and wire).
//! `kcptun-rs-client --help` lists the flags.

fn main() -> std::process::ExitCode {
    kcp_tokio::tunnel::client_main(std::env::args_os().collect())
}
