//! Encode and decode cost per packet for (10,3), the shape of kcp-go's BenchmarkFECEncode and
//! BenchmarkFECDecode (1500-byte packets there; 1400 is kcp-go's default MTU).
//! `interop/bench-fec.sh` runs this next to kcp-go's benchmarks and prints the ratios.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kcp_core::sim::Rng;
use kcp_core::Millis;
use kcp_fec::{FecConfig, FecDecoder, FecEncoder};

const DS: usize = 10;
const PS: usize = 3;

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for len in [1400usize, 1500] {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::from_parameter(len), |b| {
            let mut enc = FecEncoder::new(DS, PS).unwrap();
            let mut rng = Rng::new(1);
            let mut buf = vec![0u8; 1500];
            for x in buf.iter_mut() {
                *x = rng.next_u64() as u8;
            }
            let mut parity = vec![0u8; 1500];
            b.iter(|| {
                let n = enc.seal(&mut buf, len).unwrap();
                let mut sent = n;
                while let Some(r) = enc.poll_parity(&mut parity) {
                    sent += r.unwrap();
                }
                sent
            });
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for len in [1400usize, 1500] {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::from_parameter(len), |b| {
            // As kcp-go's benchmark: seqid i, type by position, one packet in 13 lost at random.
            let mut dec = FecDecoder::new(DS, PS, FecConfig::default()).unwrap();
            let mut rng = Rng::new(2);
            let mut pkt = vec![0u8; len];
            for x in pkt.iter_mut().skip(8) {
                *x = rng.next_u64() as u8;
            }
            let mut out = vec![0u8; 1500];
            let mut i = 0u32;
            let now = Millis(0);
            b.iter(|| {
                let seqid = i;
                i = i.wrapping_add(1);
                if rng.next_u64().is_multiple_of(13) {
                    return 0;
                }
                pkt[..4].copy_from_slice(&seqid.to_le_bytes());
                let data = (seqid as usize) % (DS + PS) < DS;
                pkt[4] = if data { 0xf1 } else { 0xf2 };
                pkt[6..8].copy_from_slice(&((len - 6) as u16).to_le_bytes());
                let _ = dec.handle_packet(&pkt, now);
                let mut got = 0;
                while let Some(n) = dec.poll_recovered(&mut out) {
                    got += n;
                }
                got
            });
        });
    }
    g.finish();
}

/// The oracle crate (reed-solomon-erasure 6, galois_8, default features) encoding one (10,3)
/// group of 1500-byte shards, for the record in docs/benchmarks-fec.md.
fn oracle(c: &mut Criterion) {
    let mut g = c.benchmark_group("rse_encode_group");
    let rs = reed_solomon_erasure::galois_8::ReedSolomon::new(DS, PS).unwrap();
    let mut shards: Vec<Vec<u8>> = (0..DS + PS).map(|i| vec![i as u8; 1494]).collect();
    g.throughput(Throughput::Bytes((DS * 1500) as u64));
    g.bench_function(BenchmarkId::from_parameter(1500), |b| {
        b.iter(|| rs.encode(&mut shards).unwrap());
    });
    g.finish();
}

/// The Reed-Solomon work of one (10,3) group of 1494-byte shards (30 multiply-accumulates)
/// with each GF(2^8) kernel this CPU has (needs the `bench-internals` feature).
#[cfg(feature = "bench-internals")]
fn kernels(c: &mut Criterion) {
    use kcp_fec::gf::{self, Kernel};
    let mut g = c.benchmark_group("rs_group_kernel");
    let data: Vec<Vec<u8>> = (0..DS).map(|i| vec![i as u8 ^ 0x5a; 1494]).collect();
    let mut parity: Vec<Vec<u8>> = (0..PS).map(|_| vec![0u8; 1494]).collect();
    let best = gf::kernel();
    for k in [Kernel::Table, Kernel::Avx2, Kernel::Gfni512] {
        if k == Kernel::Gfni512 && best != Kernel::Gfni512
            || k == Kernel::Avx2 && best == Kernel::Table
        {
            continue;
        }
        g.bench_function(
            BenchmarkId::from_parameter(format!("{k:?}-pairwise")),
            |b| {
                b.iter(|| {
                    for (p, out) in parity.iter_mut().enumerate() {
                        for (i, d) in data.iter().enumerate() {
                            gf::mul_with(k, (p * 16 + i + 2) as u8, d, out, i > 0);
                        }
                    }
                });
            },
        );
        let coefs: Vec<u8> = (0..PS * DS).map(|x| (x + 2) as u8).collect();
        g.bench_function(BenchmarkId::from_parameter(format!("{k:?}-matmul")), |b| {
            b.iter(|| {
                let ins: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
                let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(|p| &mut p[..]).collect();
                gf::matmul(k, &coefs, &ins, &mut outs);
            });
        });
    }
    g.finish();
}

#[cfg(feature = "bench-internals")]
criterion_group!(benches, encode, decode, oracle, kernels);
#[cfg(not(feature = "bench-internals"))]
criterion_group!(benches, encode, decode, oracle);
criterion_main!(benches);
