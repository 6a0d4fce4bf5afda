//! Writes seed corpora for the crypto fuzz targets from real traffic: KCP datagrams produced
//! by a kcp-core `Session` (data and acknowledgements) sealed with every cipher under the fuzz
//! targets' key, optionally kcp-go's own packets, and operation programs for the targets that
//! read them.
//!
//! ```text
//! cargo run -p kcpx-crypto --example fuzz_corpus -- fuzz/corpus [go-vectors.txt]
//! ```
//!
//! `go-vectors.txt` is the output of `interop/crypto-vectors` (same password as the fuzz
//! targets): `GOPATH=$(bash interop/gopath.sh) GO111MODULE=off go run
//! ./interop/crypto-vectors > /tmp/go-vectors.txt`. Each target's input format is documented
//! at the top of its source in `fuzz/fuzz_targets/`; this tool must follow it.

use std::fs;
use std::path::{Path, PathBuf};

use kcp_core::{Config, Layer, Millis, Session};
use kcp_crypto::{
    AeadCrypt, AeadKind, BlockCrypt, CipherKind, PacketCrypt, PacketKey, Pass, ReplayAeadCrypt,
    ReplayKey, ReplayWindow,
};

/// The fuzz targets' password (also interop/crypto-vectors').
const PASSWORD: &[u8] = b"kcp-rs live vectors";
const NOW: Millis = Millis(0);

// The test kit's seeded generator (SplitMix64) as a stand-in for an OS RNG: the seeds are
// reproducible. Not a CSPRNG; corpus generation only.
use kcp_testkit::rng::Rng;

fn rng(seed: u64) -> rand_core::UnwrapErr<Rng> {
    rand_core::UnwrapErr(Rng::new(seed))
}

/// Real KCP traffic through `layer`: a data datagram (`len` bytes of payload) from one
/// session, and the acknowledgement the peer session sends back, both sealed.
fn traffic(make: &mut dyn FnMut() -> Layer, len: usize) -> Vec<Vec<u8>> {
    let mut tx = Session::new(0x0102_0304, Config::fast3(), vec![make()], NOW).expect("session");
    let mut rx = Session::new(0x0102_0304, Config::fast3(), vec![make()], NOW).expect("session");
    let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    tx.kcp_mut().send(&payload).expect("send");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1500];
    let mut t = NOW;
    for _ in 0..20 {
        while let Some(n) = tx.poll_transmit(t, &mut buf) {
            let d = buf[..n].to_vec();
            let mut copy = d.clone();
            rx.handle_datagram(t, &mut copy).expect("peer opens it");
            out.push(d);
        }
        rx.kcp_mut().flush();
        while let Some(n) = rx.poll_transmit(t, &mut buf) {
            out.push(buf[..n].to_vec());
        }
        if out.len() >= 2 {
            break;
        }
        t += 10;
    }
    out.truncate(2);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn crypto_open(dir: &Path, pass: &Pass, go: Option<&str>) {
    for (i, &kind) in CipherKind::ALL.iter().enumerate() {
        let key = std::sync::Arc::new(PacketKey::new(
            BlockCrypt::from_pass(kind, pass),
            &mut rng(i as u64),
        ));
        let mut make = || Box::new(PacketCrypt::with_key(std::sync::Arc::clone(&key))) as Layer;
        for (j, d) in traffic(&mut make, 300).iter().enumerate() {
            let mut seed = vec![i as u8];
            seed.extend_from_slice(d);
            write(dir, &format!("{}-kcp-{j}", kind.name()), &seed);
        }
    }
    // One packet per cipher from kcp-go itself (a mid-sized one).
    if let Some(go) = go {
        for line in go.lines().skip(1) {
            let f: Vec<&str> = line.split(' ').collect();
            let (Some(name), Some(enc)) = (f.first(), f.get(2)) else {
                continue;
            };
            let Ok(kind) = CipherKind::from_name(name) else {
                continue;
            };
            let Some(i) = CipherKind::ALL.iter().position(|&k| k == kind) else {
                continue;
            };
            let name = format!("{}-go", kind.name());
            let bytes = hex::decode(enc).expect("hex");
            if !(60..400).contains(&bytes.len()) || dir.join(&name).exists() {
                continue;
            }
            let mut seed = vec![i as u8];
            seed.extend_from_slice(&bytes);
            write(dir, &name, &seed);
        }
    }
}

/// `aead_open` programs: see fuzz/fuzz_targets/aead_open.rs for the operations.
fn aead_open(dir: &Path, pass: &Pass) {
    for sel in 0u8..6 {
        let kind = [AeadKind::Aes128Gcm, AeadKind::ChaCha20Poly1305][sel as usize % 2];
        // Real datagrams of a third session under the fuzz key, as raw operations.
        let mut make: Box<dyn FnMut() -> Layer> = if sel < 2 {
            let key = std::sync::Arc::new(kcp_crypto::AeadKey::from_pass(kind, pass, &mut rng(5)));
            Box::new(move || Box::new(AeadCrypt::with_key(std::sync::Arc::clone(&key))) as Layer)
        } else {
            let key = std::sync::Arc::new(ReplayKey::from_pass(kind, pass));
            let mut r = rng(77);
            Box::new(move || {
                Box::new(ReplayAeadCrypt::with_key(
                    std::sync::Arc::clone(&key),
                    &mut r,
                )) as Layer
            })
        };
        let mut raw = Vec::new();
        for d in traffic(&mut *make, 100) {
            raw.push(0u8);
            raw.extend_from_slice(&(d.len() as u16).to_le_bytes());
            raw.extend_from_slice(&d);
        }
        let programs: [(&str, Vec<u8>); 3] = [
            // Seal three, deliver out of order, replay one, tamper one, reflect, trim.
            (
                "reorder",
                vec![
                    1, 4, b'k', b'c', b'p', b'!', 1, 0, 1, 2, 7, 7, 2, 2, 2, 0, 2, 1, 2, 0, 3, 1,
                    17, 0, 3, 6, 7, 2, 1,
                ],
            ),
            // Two senders: the second is refused once the first is pinned; skips past the
            // window.
            (
                "senders",
                vec![
                    1, 1, b'a', 4, 1, b'b', 2, 0, 2, 1, 5, 0xff, 0x07, 1, 1, b'c', 2, 2, 2, 0,
                ],
            ),
            ("raw", raw),
        ];
        for (name, ops) in programs {
            let mut seed = vec![sel];
            seed.extend_from_slice(&ops);
            write(dir, &format!("{sel}-{name}"), &seed);
        }
    }
}

/// `replay_window` programs: 4-byte operations `[op, how, delta LE]`.
fn replay_window(dir: &Path) {
    let op = |accept: bool, how: u8, delta: u16| {
        let d = delta.to_le_bytes();
        [accept as u8, how, d[0], d[1]]
    };
    let size = ReplayWindow::SIZE as u16;
    let programs: Vec<(&str, Vec<[u8; 4]>)> = vec![
        ("in-order", (0..40).map(|_| op(true, 0, 1)).collect()),
        (
            "reorder",
            vec![
                op(true, 0, 10),
                op(true, 1, 3),
                op(true, 1, 5),
                op(true, 1, 3),
                op(false, 1, 5),
            ],
        ),
        (
            "edge-of-window",
            vec![
                op(true, 0, 150),
                op(true, 2, 40),
                op(false, 1, size - 1),
                op(true, 1, size),
                op(true, 1, size - 1),
            ],
        ),
        (
            "jumps",
            vec![
                op(true, 2, 1),
                op(true, 2, 31),
                op(true, 2, 32),
                op(true, 1, 64),
                op(true, 4, 1),
            ],
        ),
        (
            "near-max",
            vec![
                op(true, 3, 200),
                op(true, 3, 1),
                op(true, 3, 0),
                op(false, 3, 5),
            ],
        ),
        (
            "alias",
            vec![op(true, 5, 5000), op(true, 1, 2000), op(false, 0, 48)],
        ),
    ];
    for (name, ops) in programs {
        write(dir, name, &ops.concat());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().unwrap_or_else(|| "fuzz/corpus".into()));
    let go = args
        .next()
        .map(|p| fs::read_to_string(p).expect("read Go vectors"));
    let pass = Pass::derive(PASSWORD);
    for (target, f) in [("crypto_open", 0), ("aead_open", 1), ("replay_window", 2)] {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        match f {
            0 => crypto_open(&dir, &pass, go.as_deref()),
            1 => aead_open(&dir, &pass),
            _ => replay_window(&dir),
        }
        let n = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        println!("{}: {n} files", dir.display());
    }
}
