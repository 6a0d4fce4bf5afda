//! Live vectors from kcp-go v5.6.1 itself: builds and runs `interop/crypto-vectors` (a Go
//! program compiled against Debian's kcp-go in GOPATH mode), then checks that this crate
//! produces the same bytes for every cipher and decrypts kcp-go's packets.
//!
//! This test never skips: without Go or kcp-go it fails, pointing at `.ci/setup.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{unhex, TestRng};
use kcp_core::{Codec, Millis};
use kcp_crypto::{
    AeadCrypt, AeadKind, BlockCrypt, CipherKind, PacketCrypt, Pass, AEAD_NONCE_LEN, HEADER_LEN,
    NONCE_LEN,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives in the repo")
        .to_path_buf()
}

/// Builds the Go program and returns its output.
fn kcp_go_vectors() -> String {
    let root = repo_root();
    let hint = "install Go and Debian's golang-github-xtaci-kcp-dev with `bash .ci/setup.sh`";
    let gopath = Command::new("bash")
        .arg(root.join("interop/gopath.sh"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run interop/gopath.sh ({e}); {hint}"));
    assert!(
        gopath.status.success(),
        "interop/gopath.sh failed: {}; {hint}",
        String::from_utf8_lossy(&gopath.stderr)
    );
    let gopath = String::from_utf8(gopath.stdout)
        .expect("utf-8 GOPATH")
        .trim()
        .to_string();

    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let exe = tmp.join("kcp-go-crypto-vectors");
    let mut build = Command::new("go");
    build
        .current_dir(&root)
        .env("GOPATH", &gopath)
        .env("GO111MODULE", "off")
        .args(["build", "-o"])
        .arg(&exe)
        .arg("./interop/crypto-vectors");
    if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
        build.env("GOCACHE", tmp.join("gocache"));
    }
    let out = build
        .output()
        .unwrap_or_else(|e| panic!("cannot run `go` ({e}); {hint}"));
    assert!(
        out.status.success(),
        "building interop/crypto-vectors against kcp-go failed:\n{}\n{hint}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe)
        .output()
        .expect("run the built Go program");
    assert!(
        run.status.success(),
        "interop/crypto-vectors failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8(run.stdout).expect("hex output")
}

#[test]
fn every_cipher_matches_kcp_go_v5_6_1_live() {
    let output = kcp_go_vectors();
    let mut lines = output.lines();
    let first: Vec<&str> = lines.next().expect("pass line").split(' ').collect();
    assert_eq!(first[0], "pass");
    let pass = Pass::derive(&unhex(first[1]));
    assert_eq!(
        pass.as_bytes()[..],
        unhex(first[2])[..],
        "kcptun key derivation"
    );

    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 3, "malformed line {line:.60}");
        let (name, plain, sealed) = (f[0], unhex(f[1]), unhex(f[2]));
        *seen.entry(name.to_string()).or_default() += 1;

        if let Ok(kind) = CipherKind::from_name(name) {
            let mut codec = PacketCrypt::new(BlockCrypt::from_pass(kind, &pass), &mut TestRng(1));
            let nonce: [u8; NONCE_LEN] = plain[..NONCE_LEN].try_into().unwrap();
            let mut buf = plain.clone();
            buf[..HEADER_LEN].fill(0);
            let n = codec
                .seal_with_nonce(&mut buf, plain.len(), &nonce)
                .unwrap();
            assert_eq!(
                buf[..n],
                sealed[..],
                "{name}: sealing a {}-byte packet",
                plain.len()
            );
            let mut rx = sealed.clone();
            let inner = codec.open(&mut rx, Millis(0)).unwrap().unwrap();
            assert_eq!(
                rx[inner],
                plain[HEADER_LEN..],
                "{name}: opening kcp-go's packet"
            );
        } else {
            let kind = AeadKind::from_name(name).unwrap_or_else(|_| panic!("unknown {name}"));
            let mut codec = AeadCrypt::from_pass(kind, &pass, &mut TestRng(1));
            let nonce: [u8; AEAD_NONCE_LEN] = plain[..AEAD_NONCE_LEN].try_into().unwrap();
            let mut buf = plain.clone();
            buf.resize(plain.len() + 16, 0);
            let n = codec
                .seal_with_nonce(&mut buf, plain.len(), &nonce)
                .unwrap();
            assert_eq!(
                buf[..n],
                sealed[..],
                "{name}: sealing a {}-byte packet",
                plain.len()
            );
            let mut rx = sealed.clone();
            let inner = codec.open(&mut rx, Millis(0)).unwrap().unwrap();
            assert_eq!(
                rx[inner],
                plain[AEAD_NONCE_LEN..],
                "{name}: opening Go's packet"
            );
        }
    }
    let expected = CipherKind::ALL
        .iter()
        .filter(|k| **k != CipherKind::Null)
        .count()
        + 2;
    assert_eq!(seen.len(), expected, "ciphers covered: {seen:?}");
    assert!(
        seen.values().all(|n| *n >= 50),
        "packets per cipher: {seen:?}"
    );
}
