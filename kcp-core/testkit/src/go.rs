//! The Go peers the interop tests run against (kcp-go's kcp-perf peer and the smux peer),
//! built in GOPATH mode against Debian's packages by `interop/build-go.sh`, and what the
//! adapters' interop tests share about them: the case matrix (cipher x FEC x mode) with the
//! matching kcp-go flags, the Go server's and client's command lines, and the smux peer's
//! payload format. Each adapter keeps its own driving code (its config, its client and server).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

/// The address in a peer's first line, `listening ADDR` (the Go peers and `ikcp_peer.py` say
/// where they listen that way). Panics with the line if it is not one.
pub fn listening(line: &str) -> String {
    line.trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
        .to_string()
}

/// The password both sides derive the key from.
pub const KEY: &str = "interop test key";
/// Every cipher name kcp-go's `--crypt` takes.
pub const CIPHERS: [&str; 14] = [
    "aes", "aes-128", "aes-192", "salsa20", "blowfish", "twofish", "cast5", "3des", "tea", "xtea",
    "xor", "sm4", "none", "null",
];
/// The MTU of every case.
pub const MTU: u32 = 1350;
/// The send and receive windows of every case, in segments.
pub const WINDOW: u32 = 256;
/// Data and parity shards of the cases with FEC.
pub const FEC: (usize, usize) = (10, 3);

/// One interop case: a cipher, FEC 10/3 or none, stream or message mode, in kcp-go's `fast3`
/// mode with [`MTU`] and [`WINDOW`] (the adapter builds its config from these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// kcp-go's name of the cipher (`--crypt`).
    pub crypt: &'static str,
    /// FEC with [`FEC`] shards, or none.
    pub fec: bool,
    /// Stream mode (kcp-go's `--stream=true`), or message mode.
    pub stream: bool,
}

/// A sample of the matrix that covers each kind of layer once: a block cipher with FEC in
/// stream mode, a stream cipher without FEC in message mode, the null cipher (no crypto
/// header) with FEC in message mode, then sm4 and `none` (a crypto header, no cipher).
pub const SAMPLE: [Case; 5] = [
    Case::new("aes", true, true),
    Case::new("salsa20", false, false),
    Case::new("null", true, false),
    Case::new("sm4", false, true),
    Case::new("none", true, true),
];

impl Case {
    /// A case.
    pub const fn new(crypt: &'static str, fec: bool, stream: bool) -> Case {
        Case { crypt, fec, stream }
    }

    /// Every cipher of [`CIPHERS`] in one mode, with or without FEC.
    pub fn every_cipher(stream: bool, fec: bool) -> impl Iterator<Item = Case> {
        CIPHERS
            .into_iter()
            .map(move |crypt| Case { crypt, fec, stream })
    }

    /// Data and parity shards: [`FEC`], or `(0, 0)` without FEC.
    pub fn shards(&self) -> (usize, usize) {
        if self.fec {
            FEC
        } else {
            (0, 0)
        }
    }

    /// The kcp-perf-go flags of this case (mode, MTU, windows, cipher, key, FEC, stream mode
    /// and a 20 s timeout).
    pub fn go_flags(&self) -> Vec<String> {
        let (ds, ps) = self.shards();
        [
            "--mode",
            "fast3",
            "--mtu",
            &MTU.to_string(),
            "--sndwnd",
            &WINDOW.to_string(),
            "--rcvwnd",
            &WINDOW.to_string(),
            "--crypt",
            self.crypt,
            "--key",
            KEY,
            "--datashard",
            &ds.to_string(),
            "--parityshard",
            &ps.to_string(),
            &format!("--stream={}", self.stream),
            "--timeout",
            "20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Message size: 16 KiB in stream mode; in message mode one segment's payload (kcp-go keeps
    /// message boundaries only within one segment).
    pub fn msg(&self) -> usize {
        if self.stream {
            16 * 1024
        } else {
            let crypto = if self.crypt == "null" { 0 } else { 20 };
            let fec = if self.fec { 8 } else { 0 };
            MTU as usize - 24 - crypto - fec
        }
    }

    /// The Go client's command line for this case, connecting to `to`; the caller adds the
    /// test's own flags (`--test`, `--bytes` or `--duration`, `--msg`).
    pub fn go_client(&self, bin: &Path, to: SocketAddr) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("client")
            .args(["--connect", &to.to_string()])
            .args(self.go_flags());
        cmd
    }
}

/// Runs a Go client to its end; panics with its output (and `what`) unless it succeeded.
pub fn run_go_client(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().expect("kcp-perf-go");
    assert!(
        out.status.success(),
        "Go client {what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The payload bytes a Go client's `--json` report gives for its first session.
pub fn reported_bytes(stdout: &[u8]) -> u64 {
    let stdout = String::from_utf8_lossy(stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("\"conn\":0"))
        .unwrap_or_else(|| panic!("no session line in {stdout}"));
    line.split("\"bytes\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bytes in {line}"))
}

/// A kcp-perf-go server, killed when dropped.
pub struct GoServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl GoServer {
    /// Starts the Go server `bin` for `case` on `listen` (`127.0.0.1:0`, `[::1]:0`), lingering
    /// 2 s after each session; returns once it listens.
    pub fn start(bin: &Path, case: &Case, listen: &str) -> GoServer {
        let mut child = Command::new(bin)
            .arg("server")
            .args(["--listen", listen, "--linger", "2"])
            .args(case.go_flags())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kcp-perf-go");
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("the Go server's first line");
        let addr = listening(&line).parse().expect("an address");
        GoServer { child, addr }
    }
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The smux peer (`interop/smux-peer`): its options and the payload format of its streams.
pub mod smux {
    use std::process::{Command, Stdio};

    /// The keepalive interval both sides use, in ms.
    pub const KEEPALIVE_MS: u64 = 200;
    /// The keepalive timeout both sides use, in ms.
    pub const TIMEOUT_MS: u64 = 1500;
    /// An idle pause longer than two keepalive timeouts: only `NOP`s keep the sessions alive.
    pub const IDLE_MS: u64 = 3200;

    /// The smux peer's command line: `go_opens` (it opens the streams; else it accepts them),
    /// smux `version`, snappy framing (`comp`), `streams` streams of up to 1 MiB from `seed`,
    /// the keepalive above, 256 KiB session and 64 KiB stream buffers, and an idle pause of
    /// [`IDLE_MS`] when `idle`. The caller adds `-listen` or `-connect` (and `-frame`).
    pub fn command(
        go_opens: bool,
        version: u8,
        comp: bool,
        streams: usize,
        seed: u64,
        idle: bool,
    ) -> Command {
        let mut cmd = Command::new(super::peer(Some("smux-peer")));
        cmd.args(["-mode", if go_opens { "open" } else { "accept" }])
            .args(["-ver", &version.to_string()])
            .args(["-streams", &streams.to_string(), "-max", "1048576"])
            .args(["-seed", &seed.to_string()])
            .args(["-keepalive", &KEEPALIVE_MS.to_string()])
            .args(["-timeout", &TIMEOUT_MS.to_string()])
            .args(["-smuxbuf", "262144", "-streambuf", "65536"])
            .args(["-idle", if idle { "3200" } else { "0" }])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if comp {
            cmd.arg("-comp");
        }
        cmd
    }

    /// The Go peer's byte generator (xorshift32): the next payload byte from state `x`.
    pub fn next_byte(x: &mut u32) -> u8 {
        *x ^= *x << 13;
        *x ^= *x >> 17;
        *x ^= *x << 5;
        *x as u8
    }

    /// A whole stream: `size u32 LE | seed u32 LE | size bytes from seed`.
    pub fn payload(size: usize, seed: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + size);
        v.extend_from_slice(&(size as u32).to_le_bytes());
        v.extend_from_slice(&seed.to_le_bytes());
        let mut x = seed;
        v.extend((0..size).map(|_| next_byte(&mut x)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_message_sizes_follow_the_case() {
        let c = Case::new("aes", true, false);
        let f = c.go_flags();
        let at = |k: &str| f[f.iter().position(|x| x == k).unwrap() + 1].clone();
        assert_eq!(at("--crypt"), "aes");
        assert_eq!(
            (at("--datashard"), at("--parityshard")),
            ("10".into(), "3".into())
        );
        assert!(f.contains(&"--stream=false".to_string()));
        assert_eq!(c.msg(), 1350 - 24 - 20 - 8);
        assert_eq!(Case::new("null", false, false).msg(), 1350 - 24);
        assert_eq!(Case::new("null", false, true).msg(), 16384);
        assert_eq!(Case::every_cipher(true, false).count(), CIPHERS.len());
    }

    #[test]
    fn reads_the_listening_line_and_the_json_report() {
        assert_eq!(listening("listening 127.0.0.1:5000\n"), "127.0.0.1:5000");
        let out = b"{\"conn\":1,\"bytes\":5}\n{\"conn\":0,\"test\":\"sink\",\"bytes\":1234}\n";
        assert_eq!(reported_bytes(out), 1234);
    }

    #[test]
    fn smux_payload_is_header_then_xorshift32() {
        let p = smux::payload(3, 1);
        assert_eq!(p[..8], [3, 0, 0, 0, 1, 0, 0, 0]);
        // xorshift32 from 1: 270369, 67634689, 2647435461.
        assert_eq!(
            p[8..],
            [270369u32 as u8, 67634689u32 as u8, 2647435461u32 as u8]
        );
    }
}
