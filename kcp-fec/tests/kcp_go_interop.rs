//! Live vectors from kcp-go v5.6.1: `interop/fec-vectors/run.sh` feeds random datagrams
//! through kcp-go's own FEC encoder; the Rust encoder must produce the same bytes, and the Rust
//! decoder must recover Go's streams under every erasure pattern of at most `ps` per group.
//!
//! Needs Go and Debian's kcp-go (`.ci/setup.sh` installs them); without them this test fails.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use kcp_core::{Codec, Millis};
use kcp_fec::{Fec, FecConfig, FecDecoder, FecEncoder, PacketKind};

/// (KCP datagram, data packet, parity packets after it)
type Step = (Vec<u8>, Vec<u8>, Vec<Vec<u8>>);
/// (packets of a complete group in wire order, the group's KCP datagrams)
type Group = (Vec<Vec<u8>>, Vec<Vec<u8>>);

struct Case {
    name: String,
    ds: usize,
    ps: usize,
    start: u32,
    steps: Vec<Step>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn go_cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let script = root.join("interop/fec-vectors/run.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} (bash missing?)", script.display()));
        assert!(
            out.status.success(),
            "kcp-go FEC vectors could not be produced; Go and Debian's kcp-go v5.6.1 are \
             required (run .ci/setup.sh).\n{} exited with {}:\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        parse(&String::from_utf8(out.stdout).expect("utf-8 output"))
    })
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut cur: Option<Case> = None;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        match it.next() {
            Some("case") => {
                let f: Vec<&str> = it.collect();
                cur = Some(Case {
                    name: f[0].to_string(),
                    ds: f[1].parse().unwrap(),
                    ps: f[2].parse().unwrap(),
                    start: f[3].parse().unwrap(),
                    steps: Vec::new(),
                });
            }
            Some("in") => {
                cur.as_mut()
                    .unwrap()
                    .steps
                    .push((hex(it.next().unwrap()), vec![], vec![]))
            }
            Some("data") => {
                cur.as_mut().unwrap().steps.last_mut().unwrap().1 = hex(it.next().unwrap())
            }
            Some("parity") => cur
                .as_mut()
                .unwrap()
                .steps
                .last_mut()
                .unwrap()
                .2
                .push(hex(it.next().unwrap())),
            Some("end") => cases.push(cur.take().unwrap()),
            _ => panic!("unexpected line from fec-vectors: {line}"),
        }
    }
    assert!(
        cases.len() >= 5,
        "expected 5 cases from fec-vectors, got {}",
        cases.len()
    );
    cases
}

#[test]
fn rust_encoder_produces_kcp_go_bytes() {
    for case in go_cases() {
        let mut enc = FecEncoder::new(case.ds, case.ps).unwrap();
        enc.set_next_seqid(case.start);
        let mut parity_seen = 0;
        for (i, (kcp, data, parity)) in case.steps.iter().enumerate() {
            let mut buf = vec![0u8; 1500];
            buf[8..8 + kcp.len()].copy_from_slice(kcp);
            let n = enc.seal(&mut buf, 8 + kcp.len()).unwrap();
            assert_eq!(&buf[..n], &data[..], "{} data packet {i}", case.name);
            let mut got = Vec::new();
            while let Some(r) = enc.poll_parity(&mut buf) {
                got.push(buf[..r.unwrap()].to_vec());
            }
            assert_eq!(&got, parity, "{} parity after packet {i}", case.name);
            parity_seen += got.len();
        }
        assert!(parity_seen >= 2 * case.ps, "{}: too few groups", case.name);
    }
}

/// The packets of each complete group, in wire order, with the group's KCP datagrams.
fn groups(case: &Case) -> Vec<Group> {
    let mut out = Vec::new();
    let (mut pkts, mut kcps) = (Vec::new(), Vec::new());
    for (kcp, data, parity) in &case.steps {
        pkts.push(data.clone());
        kcps.push(kcp.clone());
        if !parity.is_empty() {
            pkts.extend(parity.iter().cloned());
            out.push((std::mem::take(&mut pkts), std::mem::take(&mut kcps)));
        }
    }
    out
}

/// Every subset of `0..n` with at most `k` members, as bitmasks.
fn erasures(n: usize, k: usize) -> Vec<u32> {
    (0u32..1 << n)
        .filter(|m| m.count_ones() as usize <= k)
        .collect()
}

/// Feeds `pkts` minus the erased ones to `dec`; returns the KCP datagrams delivered directly
/// and those rebuilt.
fn feed(
    dec: &mut FecDecoder,
    pkts: &[Vec<u8>],
    erased: u32,
    now: Millis,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut direct, mut rebuilt) = (Vec::new(), Vec::new());
    let mut out = [0u8; 1500];
    for (i, p) in pkts.iter().enumerate() {
        if erased & (1 << i) != 0 {
            continue;
        }
        if let PacketKind::Data { .. } = dec.handle_packet(p, now).unwrap() {
            direct.push(p[8..].to_vec());
        }
        while let Some(n) = dec.poll_recovered(&mut out) {
            rebuilt.push(out[..n].to_vec());
        }
    }
    (direct, rebuilt)
}

#[test]
fn rust_decoder_recovers_kcp_go_groups_under_every_erasure_of_at_most_ps() {
    let mut patterns = 0;
    for case in go_cases() {
        let total = case.ds + case.ps;
        for (g, (pkts, kcps)) in groups(case).iter().enumerate().take(4) {
            assert_eq!(pkts.len(), total);
            for erased in erasures(total, case.ps) {
                let mut dec = FecDecoder::new(case.ds, case.ps, FecConfig::default()).unwrap();
                let (direct, rebuilt) = feed(&mut dec, pkts, erased, Millis(0));
                let mut all: Vec<Vec<u8>> =
                    direct.into_iter().chain(rebuilt.iter().cloned()).collect();
                all.sort();
                let mut want = kcps.clone();
                want.sort();
                assert_eq!(all, want, "{} group {g} erasures {erased:#b}", case.name);
                let lost_data = (0..case.ds).filter(|i| erased & (1 << i) != 0).count();
                assert_eq!(
                    rebuilt.len(),
                    lost_data,
                    "{} group {g} erasures {erased:#b}",
                    case.name
                );
                patterns += 1;
            }
        }
    }
    assert!(patterns > 1000, "only {patterns} patterns checked");
}

#[test]
fn rust_codec_recovers_a_whole_kcp_go_stream_across_the_seqid_wrap() {
    for case in go_cases() {
        let mut fec = Fec::new(case.ds, case.ps).unwrap();
        let mut out = [0u8; 1500];
        let (mut delivered, mut sent) = (Vec::new(), Vec::new());
        let mut now = Millis(u32::MAX - 500);
        for (g, (pkts, kcps)) in groups(case).iter().enumerate() {
            sent.extend(kcps.iter().cloned());
            // Lose `ps` packets of every group, at a position that moves with the group.
            for (i, p) in pkts.iter().enumerate() {
                if (i + g) % (case.ds + case.ps) < case.ps {
                    continue;
                }
                let mut p = p.clone();
                if let Some(r) = fec.open(&mut p, now).unwrap() {
                    delivered.push(p[r].to_vec());
                }
                while let Some(n) = fec.poll_recovered(&mut out) {
                    delivered.push(out[..n].to_vec());
                }
                now += 7;
            }
        }
        delivered.sort();
        sent.sort();
        assert_eq!(delivered, sent, "{}", case.name);
        assert_eq!(fec.stats().seqid_jumps, 0);
    }
}
