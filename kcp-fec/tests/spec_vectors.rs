//! Known-answer vectors produced by kcp-go v5.6.1's own FEC encoder and decoder (ds=3, ps=2,
//! encoder from seqid 0); `docs/protocol.md`, "Known-answer vectors", lists them.

use kcp_core::{Codec, Millis};
use kcp_fec::Fec;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn payloads() -> [Vec<u8>; 3] {
    [
        (0x10..=0x2d).collect(),
        (0x20..=0x37).collect(),
        (0x30..=0x57).collect(),
    ]
}

const DATA: [&str; 3] = [
    "00000000 f100 2000 101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d",
    "01000000 f100 1a00 202122232425262728292a2b2c2d2e2f3031323334353637",
    "02000000 f100 2a00 303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f5051525354555657",
];
const PARITY: [&str; 2] = [
    "03000000 f200 1000000102030405060708090a0b0c0d0e0f50515253545556576060606060604e4f5051525354555657",
    "04000000 f200 d1004d4c4f4e49484b4a4544474641404342fdfcfffef9f8fbfa28213a330c05b9bffdfbf1f7e5e3e9ef",
];

/// Seals the three payloads; returns every packet in wire order.
fn encode() -> Vec<Vec<u8>> {
    let mut fec = Fec::new(3, 2).unwrap();
    let mut out = Vec::new();
    for p in payloads() {
        let mut buf = vec![0u8; 1500];
        buf[8..8 + p.len()].copy_from_slice(&p);
        let n = fec.seal(&mut buf, 8 + p.len(), Millis(0)).unwrap();
        out.push(buf[..n].to_vec());
        while let Some(r) = fec.poll_extra(&mut buf, Millis(0)) {
            out.push(buf[..r.unwrap()].to_vec());
        }
    }
    out
}

#[test]
fn encoder_produces_the_data_and_parity_bytes_of_kcp_go() {
    let got = encode();
    let want: Vec<Vec<u8>> = DATA.iter().chain(PARITY.iter()).map(|s| hex(s)).collect();
    assert_eq!(got, want);
    assert_eq!(
        got[3].len(),
        48,
        "parity packets are 6 + longest shard (42) bytes"
    );
}

#[test]
fn decoder_recovers_p1_from_data_0_parity_0_and_data_2() {
    let mut fec = Fec::new(3, 2).unwrap();
    let mut recovered = Vec::new();
    let mut out = [0u8; 1500];
    for s in [DATA[0], PARITY[0], DATA[2]] {
        let mut pkt = hex(s);
        let inner = fec.open(&mut pkt, Millis(0)).unwrap();
        if pkt[4] == 0xf1 {
            assert_eq!(inner, Some(8..pkt.len()));
        } else {
            assert_eq!(inner, None);
        }
        while let Some(n) = fec.poll_recovered(&mut out) {
            recovered.push(out[..n].to_vec());
        }
    }
    assert_eq!(recovered, vec![payloads()[1].clone()]);
    let stats = fec.stats();
    assert_eq!(
        (stats.recovered, stats.parity_shards, stats.data_shards),
        (1, 1, 2)
    );
}

#[test]
fn plain_kcp_passes_through_open_unchanged() {
    // The ACK segment of `docs/protocol.md`, "Known-answer vectors".
    let mut ack = hex("443322115200200004030201050000000600000000000000");
    let copy = ack.clone();
    let mut fec = Fec::new(3, 2).unwrap();
    assert_eq!(fec.open(&mut ack, Millis(0)).unwrap(), Some(0..24));
    assert_eq!(ack, copy);
    assert_eq!(fec.stats().plain_packets, 1);
}

#[test]
fn parity_matches_the_reed_solomon_erasure_oracle() {
    // The oracle crate builds klauspost's matrix too (`docs/protocol.md`, FEC, "The code");
    // compare whole groups.
    for (ds, ps) in [(1usize, 1usize), (2, 1), (3, 2), (4, 2), (10, 3), (20, 10)] {
        let rs = reed_solomon_erasure::galois_8::ReedSolomon::new(ds, ps).unwrap();
        let kcps: Vec<Vec<u8>> = (0..ds)
            .map(|i| {
                (0..(17 * i + 30) % 1392 + 1)
                    .map(|j| (i * 131 + j * 7) as u8)
                    .collect()
            })
            .collect();
        let mut fec = Fec::new(ds, ps).unwrap();
        let mut buf = vec![0u8; 1500];
        let mut parity = Vec::new();
        for k in &kcps {
            buf[8..8 + k.len()].copy_from_slice(k);
            fec.seal(&mut buf, 8 + k.len(), Millis(0)).unwrap();
            while let Some(r) = fec.poll_extra(&mut buf, Millis(0)) {
                parity.push(buf[6..r.unwrap()].to_vec());
            }
        }
        let max = kcps.iter().map(|k| k.len() + 2).max().unwrap();
        let mut shards: Vec<Vec<u8>> = kcps
            .iter()
            .map(|k| {
                let mut s = ((k.len() + 2) as u16).to_le_bytes().to_vec();
                s.extend_from_slice(k);
                s.resize(max, 0);
                s
            })
            .collect();
        shards.extend((0..ps).map(|_| vec![0u8; max]));
        rs.encode(&mut shards).unwrap();
        assert_eq!(parity, shards[ds..].to_vec(), "({ds},{ps})");
    }
}
