//! The Go peers the interop tests run against (kcp-go's kcp-perf peer and the smux peer),
//! built in GOPATH mode against Debian's packages by `interop/build-go.sh`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds (if stale) and returns the Go peer `name` (`None`: the kcp-perf peer on kcp-go
/// v5.6.1; `Some("smux-peer")`: Go's smux over golang/snappy). Panics, failing the test, if Go
/// or the Debian packages are missing: interop tests fail rather than skip.
pub fn peer(name: Option<&str>) -> PathBuf {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("interop/build-go.sh"));
    if let Some(n) = name {
        cmd.arg(n);
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("bash");
    assert!(
        out.status.success(),
        "building the Go peer {name:?} failed: run .ci/setup.sh"
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}
