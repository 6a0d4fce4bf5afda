//! Writes seed corpora for the wire, engine, FEC, endpoint and stack fuzz targets from real
//! traffic: a kcp-go v5.6.1 client (the Go peer in `interop/kcpperf-go`) runs kcp-perf
//! sessions against our server through an in-process UDP relay that records every datagram,
//! with FEC 10/3 and without, no encryption (the stack targets seal what they are given
//! themselves). Each target's input format is documented at the top of its source in
//! `fuzz/fuzz_targets/`; this tool follows it.
//!
//! ```text
//! bash interop/build-go.sh
//! cargo run --release -p kcpx-tokio --example fuzz_seeds -- interop/bin/kcp-perf-go fuzz/corpus
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcp_core::Config;
use kcp_tokio::{perf, KcpConfig, KcpListener};
use tokio::net::UdpSocket;

/// Datagrams a relay saw: (from the client, bytes).
type Capture = Arc<Mutex<Vec<(bool, Vec<u8>)>>>;

/// Relays between one client and `server`, recording both directions.
async fn relay(server: SocketAddr, capture: Capture) -> std::io::Result<SocketAddr> {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    back.connect(server).await?;
    let addr = front.local_addr()?;
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    {
        let (front, back, client, capture) =
            (front.clone(), back.clone(), client.clone(), capture.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                capture.lock().unwrap().push((true, buf[..n].to_vec()));
                let _ = back.send(&buf[..n]).await;
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            capture.lock().unwrap().push((false, buf[..n].to_vec()));
            let to = *client.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    Ok(addr)
}

/// Runs the Go client's `test` against our server through a recording relay.
async fn capture(go: &Path, test: &str, fec: bool, stream: bool) -> Vec<(bool, Vec<u8>)> {
    let (ds, ps) = if fec { (10, 3) } else { (0, 0) };
    let cfg = KcpConfig::new(Config {
        stream,
        ..Config::fast3().with_windows(128, 128)
    })
    .fec(ds, ps)
    .crypt("null", "")
    .expect("null cipher");
    let l = KcpListener::bind("127.0.0.1:0", cfg).await.expect("bind");
    let server = l.local_addr();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = perf::serve(&mut s, !stream).await;
            });
        }
    });
    let cap: Capture = Arc::default();
    let front = relay(server, cap.clone()).await.expect("relay");
    let status = tokio::process::Command::new(go)
        .args([
            "client",
            "-connect",
            &front.to_string(),
            "-mode",
            "fast3",
            "-crypt",
            "null",
            "-datashard",
            &ds.to_string(),
            "-parityshard",
            &ps.to_string(),
            "-sndwnd",
            "128",
            "-rcvwnd",
            "128",
            "-test",
            test,
            "-bytes",
            "64K",
            "-msg",
            "3000",
        ])
        .arg(format!("-stream={stream}"))
        .stdout(Stdio::null())
        .status()
        .await
        .expect("run the Go client");
    assert!(status.success(), "the Go client failed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v = cap.lock().unwrap().clone();
    v
}

/// The KCP datagram inside a plain datagram (FEC data shards carry it after 8 bytes).
fn kcp_part(d: &[u8]) -> Option<&[u8]> {
    match d.get(4..6) {
        Some([0xF1, 0]) => d.get(8..),
        Some([0xF2, 0]) => None,
        _ => Some(d),
    }
}

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus dir");
    std::fs::write(d.join(name), data).expect("write seed");
}

/// Records of `len` bytes rounded up to `unit` behind a length byte (`len / unit`), padded.
fn records(out: &mut Vec<u8>, head: &[u8], d: &[u8], unit: usize) {
    let n = d.len().div_ceil(unit).min(255);
    out.extend_from_slice(head);
    out.push(n as u8);
    let take = (n * unit).min(d.len());
    out.extend_from_slice(&d[..take]);
    out.resize(out.len() + n * unit - take, 0);
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let go = PathBuf::from(args.next().expect("usage: fuzz_seeds GO_PEER CORPUS_DIR"));
    let dir = PathBuf::from(args.next().expect("usage: fuzz_seeds GO_PEER CORPUS_DIR"));
    let mut written = 0;
    for (i, (test, fec, stream)) in [
        ("echo", true, true),
        ("sink", false, true),
        ("echo", false, false),
        ("source", true, false),
    ]
    .into_iter()
    .enumerate()
    {
        let cap = capture(&go, test, fec, stream).await;
        // A seed per target from the first datagrams of the exchange (first flights,
        // ACKs, FEC groups and parity), in each target's format.
        let head: Vec<&(bool, Vec<u8>)> = cap.iter().take(40).collect();
        let name = format!("go-{test}-{}-{}", if fec { "fec" } else { "plain" }, i);
        let (mut wire, mut engine, mut fecs) = (Vec::new(), vec![u8::from(stream)], vec![0u8]);
        let (mut ep, mut sess, mut eps) = (Vec::new(), Vec::new(), Vec::new());
        for (from_client, d) in &head {
            if let Some(k) = kcp_part(d) {
                if wire.is_empty() {
                    wire = k.to_vec();
                }
                if *from_client {
                    records(&mut engine, &[], k, 8);
                }
            }
            if *from_client {
                records(&mut fecs, &[], d, 8);
                records(&mut ep, &[1], d, 4);
                records(&mut sess, &[0], d, 6);
                records(&mut eps, &[0, 1], d, 6);
            }
        }
        write(&dir, "wire_datagram", &name, &wire);
        write(&dir, "engine_input", &name, &engine);
        write(&dir, "fec_decode", &name, &fecs);
        write(&dir, "endpoint_input", &name, &ep);
        write(&dir, "session_stack", &name, &sess);
        write(&dir, "endpoint_stack", &name, &eps);
        written += 6;
        eprintln!("{name}: {} datagrams captured", cap.len());
    }
    eprintln!("{written} seeds written under {}", dir.display());
}
