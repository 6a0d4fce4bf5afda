//! Packet crypto throughput: raw cipher encrypt/decrypt of 1400-byte packets for every kcp-go
//! cipher, full codec seal/open, nonce generation and CRC-32, and what a listener pays to open
//! a replay-protected packet with a cached sender key and with a derived one.
//!
//! `interop/bench-crypto.sh` runs this next to kcp-go's own Go benchmarks and prints ratios.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kcp_core::{Codec, Millis};
use kcp_crypto::{
    AeadCrypt, AeadKind, BlockCrypt, CipherKind, NonceGen, PacketCrypt, Pass, ReplayAeadCrypt,
    ReplayKey,
};

const PACKET: usize = 1400;

// The test kit's seeded generator as the CSPRNG the constructors ask for (keys and nonces do
// not change what is measured). Benchmarks only: it is not a CSPRNG.
use kcp_testkit::rng::Rng as BenchRng;

fn data() -> Vec<u8> {
    (0..PACKET).map(|i| (i * 131 + 7) as u8).collect()
}

fn ciphers(c: &mut Criterion) {
    let pass = Pass::derive(b"it's a secrect");
    let kinds = CipherKind::ALL
        .into_iter()
        .filter(|k| *k != CipherKind::Null);
    let mut enc = c.benchmark_group("encrypt");
    enc.throughput(Throughput::Bytes(PACKET as u64));
    for kind in kinds.clone() {
        let cipher = BlockCrypt::from_pass(kind, &pass);
        let mut buf = data();
        enc.bench_function(kind.name(), |b| {
            b.iter(|| cipher.encrypt(black_box(&mut buf)))
        });
    }
    enc.finish();
    // The same packets, eight at a time with interleaved CFB chains (BlockCrypt::encrypt_many).
    let mut batch = c.benchmark_group("encrypt-batch8");
    batch.throughput(Throughput::Bytes(PACKET as u64 * 8));
    for kind in kinds.clone() {
        let cipher = BlockCrypt::from_pass(kind, &pass);
        let mut bufs: Vec<Vec<u8>> = (0..8).map(|_| data()).collect();
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|p| p.as_mut_slice()).collect();
        batch.bench_function(kind.name(), |b| {
            b.iter(|| cipher.encrypt_many(black_box(&mut refs)))
        });
    }
    batch.finish();
    let mut dec = c.benchmark_group("decrypt");
    dec.throughput(Throughput::Bytes(PACKET as u64));
    for kind in kinds {
        let cipher = BlockCrypt::from_pass(kind, &pass);
        let mut buf = data();
        dec.bench_function(kind.name(), |b| {
            b.iter(|| cipher.decrypt(black_box(&mut buf)))
        });
    }
    dec.finish();
}

fn codecs(c: &mut Criterion) {
    let pass = Pass::derive(b"it's a secrect");
    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Bytes(PACKET as u64));
    let mut aes = PacketCrypt::new(
        BlockCrypt::from_pass(CipherKind::Aes128, &pass),
        &mut BenchRng::new(1),
    );
    let mut buf = data();
    g.bench_function("aes-128", |b| {
        b.iter(|| aes.seal(black_box(&mut buf), PACKET, Millis(0)))
    });
    for kind in [AeadKind::Aes128Gcm, AeadKind::ChaCha20Poly1305] {
        let mut codec = AeadCrypt::from_pass(kind, &pass, &mut BenchRng::new(1));
        let mut buf = vec![0u8; PACKET + 16];
        g.bench_function(kind.name(), |b| {
            b.iter(|| codec.seal(black_box(&mut buf), PACKET, Millis(0)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("open");
    g.throughput(Throughput::Bytes(PACKET as u64));
    let mut tx = PacketCrypt::new(
        BlockCrypt::from_pass(CipherKind::Aes128, &pass),
        &mut BenchRng::new(1),
    );
    let mut rx = PacketCrypt::new(
        BlockCrypt::from_pass(CipherKind::Aes128, &pass),
        &mut BenchRng::new(2),
    );
    let mut sealed = data();
    let _ = tx.seal(&mut sealed, PACKET, Millis(0));
    g.bench_function("aes-128", |b| {
        b.iter_batched_ref(
            || sealed.clone(),
            |p| rx.open(black_box(p), Millis(0)),
            criterion::BatchSize::SmallInput,
        )
    });
    for kind in [AeadKind::Aes128Gcm, AeadKind::ChaCha20Poly1305] {
        let mut tx = AeadCrypt::from_pass(kind, &pass, &mut BenchRng::new(1));
        let mut rx = AeadCrypt::from_pass(kind, &pass, &mut BenchRng::new(2));
        let mut sealed = vec![0u8; PACKET + 16];
        let _ = tx.seal(&mut sealed, PACKET, Millis(0));
        g.bench_function(kind.name(), |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |p| rx.open(black_box(p), Millis(0)),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn nonce_and_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("nonce");
    g.throughput(Throughput::Bytes(16));
    let mut gen = NonceGen::new(&mut BenchRng::new(3));
    g.bench_function("aes-ctr", |b| b.iter(|| black_box(gen.next_nonce())));
    g.finish();

    let mut g = c.benchmark_group("crc32");
    for len in [1024usize, PACKET] {
        let buf = vec![0x5au8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(len.to_string(), |b| {
            b.iter(|| crc32fast::hash(black_box(&buf)))
        });
    }
    g.finish();
}

/// `ReplayAeadCrypt::demux_open` of a 100-byte packet on an endpoint's instance: the sender's
/// key cached (`hit`), and derived for every packet (`miss`: a cache of zero entries, what an
/// evicted or forged sender costs).
fn replay_demux(c: &mut Criterion) {
    let pass = Pass::derive(b"it's a secrect");
    let mut g = c.benchmark_group("replay-demux-open");
    for (name, cache) in [("hit", 8), ("miss", 0)] {
        let key = ReplayKey::from_pass(AeadKind::Aes128Gcm, &pass).with_demux_cache(cache);
        let mut sender = ReplayAeadCrypt::with_key(&key, &mut BenchRng::new(1));
        let mut endpoint = ReplayAeadCrypt::with_key(&key, &mut BenchRng::new(2));
        let mut sealed = vec![0u8; 16 + 100 + 16];
        let n = sender.seal(&mut sealed, 16 + 100, Millis(0)).expect("seal");
        sealed.truncate(n);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |p| endpoint.demux_open(black_box(p), Millis(0)),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, ciphers, codecs, nonce_and_crc, replay_demux);
criterion_main!(benches);
