//! Layers built from one shared key: nonces stay unique across sessions, per-session state is
//! independent, and the replay-protected layer's endpoint hooks (`demux_open`, its bounded
//! sender-key cache, `accept_demuxed`, `trim`) keep their promises.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{open, seal, TestRng};
use kcp_core::{Codec, CodecError, Millis};
use kcp_crypto::{
    AeadCrypt, AeadKey, AeadKind, BlockCrypt, CipherKind, PacketCrypt, PacketKey, Pass,
    ReplayAeadCrypt, ReplayKey, ReplayWindow, AEAD_NONCE_LEN, NONCE_LEN, REPLAY_HEADER_LEN,
};

const NOW: Millis = Millis(0);

fn pass() -> Pass {
    Pass::from_bytes(core::array::from_fn(|i| (i as u8).wrapping_mul(91) ^ 0x5c))
}

/// Opens like an endpoint: `endpoint` authenticates, `session` checks its peer and window.
fn demux(
    endpoint: &mut dyn Codec,
    session: &mut dyn Codec,
    sealed: &[u8],
) -> Result<Vec<u8>, CodecError> {
    let mut buf = sealed.to_vec();
    let inner = endpoint.demux_open(&mut buf, NOW)?.expect("delivers");
    session.accept_demuxed(&buf, inner.clone(), NOW)?;
    Ok(buf[inner].to_vec())
}

#[test]
fn sessions_of_one_packet_key_never_share_a_nonce() {
    // `none` leaves the nonce in clear, so the wire shows the generator's output.
    let key = Arc::new(PacketKey::new(
        BlockCrypt::from_pass(CipherKind::None, &pass()),
        &mut TestRng(1),
    ));
    let mut sessions: Vec<PacketCrypt<Arc<PacketKey>>> = (0..8)
        .map(|_| PacketCrypt::with_key(Arc::clone(&key)))
        .collect();
    let mut seen = HashSet::new();
    for round in 0..200 {
        for s in sessions.iter_mut() {
            let p = seal(s, &[round as u8; 10]);
            assert!(seen.insert(p[..NONCE_LEN].to_vec()), "nonce repeated");
        }
    }
    // Batches take the same stream.
    let mut bufs = vec![vec![0u8; 40]; 20];
    let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    sessions[0].seal_many(&mut refs).expect("seal");
    for b in &bufs {
        assert!(
            seen.insert(b[..NONCE_LEN].to_vec()),
            "batched nonce repeated"
        );
    }
}

#[test]
fn sessions_of_one_aead_key_never_share_a_nonce_and_open_each_other() {
    let key = Arc::new(AeadKey::from_pass(
        AeadKind::Aes128Gcm,
        &pass(),
        &mut TestRng(2),
    ));
    let mut a = AeadCrypt::with_key(Arc::clone(&key));
    let mut b = AeadCrypt::with_key(Arc::clone(&key));
    let mut seen = HashSet::new();
    for i in 0..500u32 {
        let pa = seal(&mut a, &i.to_le_bytes());
        let pb = seal(&mut b, &i.to_le_bytes());
        assert!(seen.insert(pa[..AEAD_NONCE_LEN].to_vec()));
        assert!(seen.insert(pb[..AEAD_NONCE_LEN].to_vec()));
        assert_eq!(open(&mut b, &pa), Ok(i.to_le_bytes().to_vec()));
        assert_eq!(open(&mut a, &pb), Ok(i.to_le_bytes().to_vec()));
    }
}

#[test]
fn a_static_reference_shares_a_key_without_an_allocator() {
    static KEY: std::sync::OnceLock<PacketKey> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        PacketKey::new(
            BlockCrypt::from_pass(CipherKind::Aes128, &pass()),
            &mut TestRng(3),
        )
    });
    let mut tx: PacketCrypt<&PacketKey> = PacketCrypt::with_key(key);
    let mut rx = PacketCrypt::with_key(key);
    assert_eq!(
        open(&mut rx, &seal(&mut tx, b"static")),
        Ok(b"static".to_vec())
    );
}

fn replay_key(cache: usize) -> Arc<ReplayKey> {
    Arc::new(ReplayKey::from_pass(AeadKind::Aes128Gcm, &pass()).with_demux_cache(cache))
}

#[test]
fn demux_open_accepts_every_sender_and_pins_nothing() {
    let key = replay_key(8);
    let mut endpoint = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(100));
    let mut clients: Vec<_> = (0..5)
        .map(|i| ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(i)))
        .collect();
    for round in 0..3u8 {
        for (i, c) in clients.iter_mut().enumerate() {
            let p = seal(c, &[round, i as u8]);
            let mut buf = p.clone();
            let inner = endpoint
                .demux_open(&mut buf, NOW)
                .expect("authenticates")
                .expect("delivers");
            assert_eq!(buf[inner], [round, i as u8]);
            // The same bytes again: the endpoint's instance keeps no window.
            let mut again = p.clone();
            assert!(endpoint.demux_open(&mut again, NOW).is_ok());
        }
    }
    assert_eq!(endpoint.peer_id(), None);
    assert_eq!(endpoint.stats().replays, 0);
    assert_eq!(endpoint.stats().opened, 30);
    assert_eq!(
        endpoint.stats().key_cache_misses,
        5,
        "one derivation per sender"
    );
}

#[test]
fn the_sender_key_cache_is_bounded_and_evicts_the_least_recently_used() {
    let key = replay_key(3);
    let mut endpoint = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(100));
    let mut clients: Vec<_> = (0..4)
        .map(|i| ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(i)))
        .collect();
    let mut push = |endpoint: &mut ReplayAeadCrypt<Arc<ReplayKey>>, c: usize| {
        let mut p = seal(&mut clients[c], b"x");
        endpoint.demux_open(&mut p, NOW).expect("authenticates");
    };
    for c in 0..3 {
        push(&mut endpoint, c);
    }
    assert_eq!(endpoint.stats().key_cache_misses, 3);
    let full = endpoint.heap_bytes();
    push(&mut endpoint, 0); // hit: 0 is now the most recently used
    assert_eq!(endpoint.stats().key_cache_misses, 3);
    push(&mut endpoint, 3); // miss: evicts 1, the least recently used
    assert_eq!(endpoint.stats().key_cache_misses, 4);
    push(&mut endpoint, 0);
    push(&mut endpoint, 2);
    assert_eq!(endpoint.stats().key_cache_misses, 4, "0 and 2 stayed");
    push(&mut endpoint, 1);
    assert_eq!(endpoint.stats().key_cache_misses, 5, "1 was evicted");
    assert_eq!(endpoint.heap_bytes(), full, "never more than three keys");
    endpoint.trim();
    assert_eq!(endpoint.heap_bytes(), 0);
    push(&mut endpoint, 1);
    assert_eq!(endpoint.stats().key_cache_misses, 6, "rebuilt after trim");
}

#[test]
fn forged_senders_cost_a_derivation_but_never_enter_the_cache() {
    let key = replay_key(4);
    let mut endpoint = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(100));
    let mut client = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(1));
    let mut p = seal(&mut client, b"x");
    endpoint.demux_open(&mut p, NOW).expect("authenticates");
    let one = endpoint.heap_bytes();
    let genuine = seal(&mut client, b"y");
    for i in 0..200u64 {
        let mut forged = genuine.clone();
        forged[..8].copy_from_slice(&i.to_le_bytes());
        assert_eq!(
            endpoint.demux_open(&mut forged, NOW),
            Err(CodecError::Integrity)
        );
    }
    assert_eq!(endpoint.heap_bytes(), one, "no entry for forgeries");
    assert_eq!(endpoint.stats().key_cache_misses, 201);
    assert_eq!(endpoint.stats().integrity_errors, 200);
    let mut p = genuine.clone();
    assert!(endpoint.demux_open(&mut p, NOW).is_ok());
    assert_eq!(
        endpoint.stats().key_cache_misses,
        201,
        "the genuine sender is cached"
    );
}

#[test]
fn a_cache_of_zero_derives_every_packet() {
    let key = replay_key(0);
    let mut endpoint = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(100));
    let mut client = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(1));
    for _ in 0..5 {
        let mut p = seal(&mut client, b"x");
        assert!(endpoint.demux_open(&mut p, NOW).is_ok());
    }
    assert_eq!(endpoint.stats().key_cache_misses, 5);
    assert_eq!(endpoint.heap_bytes(), 0);
}

#[test]
fn accept_demuxed_pins_the_first_peer_and_keeps_a_window_per_session() {
    let key = replay_key(8);
    let mut endpoint = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(100));
    let mut alice = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(1));
    let mut bob = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(2));
    let mut for_alice = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(3));
    let mut for_bob = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(4));

    let a: Vec<Vec<u8>> = (0..6u8).map(|i| seal(&mut alice, &[i])).collect();
    let b: Vec<Vec<u8>> = (0..6u8).map(|i| seal(&mut bob, &[i + 100])).collect();
    for i in [0usize, 2, 1, 5] {
        assert_eq!(
            demux(&mut endpoint, &mut for_alice, &a[i]),
            Ok(vec![i as u8])
        );
        assert_eq!(
            demux(&mut endpoint, &mut for_bob, &b[i]),
            Ok(vec![i as u8 + 100])
        );
    }
    assert_eq!(for_alice.peer_id(), Some(alice.sender_id()));
    // Duplicates, another client's packets, and a reflected packet are refused.
    assert_eq!(
        demux(&mut endpoint, &mut for_alice, &a[2]),
        Err(CodecError::Replay)
    );
    assert_eq!(
        demux(&mut endpoint, &mut for_alice, &b[3]),
        Err(CodecError::Replay)
    );
    let own = seal(&mut for_alice, b"reflected");
    assert_eq!(
        demux(&mut endpoint, &mut for_alice, &own),
        Err(CodecError::Replay)
    );
    assert_eq!(for_alice.stats().replays, 3);
    // Refusals changed nothing: the unseen ones still pass, once.
    assert_eq!(demux(&mut endpoint, &mut for_alice, &a[3]), Ok(vec![3]));
    assert_eq!(demux(&mut endpoint, &mut for_bob, &b[3]), Ok(vec![103]));
    assert_eq!(
        demux(&mut endpoint, &mut for_bob, &b[3]),
        Err(CodecError::Replay)
    );
    assert_eq!(for_bob.stats().replays, 1);
    assert_eq!(for_alice.stats().opened, 5);
}

#[test]
fn accept_demuxed_refuses_packets_too_short_for_the_layout() {
    let key = replay_key(8);
    let mut session = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(1));
    for len in [0usize, 8, 16, 31] {
        assert_eq!(
            session.accept_demuxed(&vec![0u8; len], 0..0, NOW),
            Err(CodecError::Truncated)
        );
    }
    assert_eq!(session.stats().truncated, 4);
    assert_eq!(session.peer_id(), None);
}

#[test]
fn a_reflected_packet_never_pins_the_sender_itself() {
    // Before the server answered, a client's own packet sent back to it must not make it
    // pin its own id (which would lock the real server out).
    let key = replay_key(8);
    let mut client = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(1));
    let mut server = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(2));
    let own = seal(&mut client, b"hello");
    assert_eq!(open(&mut client, &own), Err(CodecError::Replay));
    assert_eq!(client.peer_id(), None);
    let reply = seal(&mut server, b"welcome");
    assert_eq!(open(&mut client, &reply), Ok(b"welcome".to_vec()));
}

#[test]
fn trim_gives_back_derived_keys_and_the_layer_keeps_working() {
    let key = replay_key(8);
    let mut a = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(1));
    let mut b = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(2));
    assert_eq!(a.heap_bytes(), 0, "nothing derived before the first packet");
    let p = seal(&mut a, b"one");
    assert_eq!(open(&mut b, &p), Ok(b"one".to_vec()));
    assert!(a.heap_bytes() > 0 && b.heap_bytes() > 0);
    a.trim();
    b.trim();
    assert_eq!((a.heap_bytes(), b.heap_bytes()), (0, 0));
    // The pin and the window survive a trim.
    assert_eq!(open(&mut b, &p), Err(CodecError::Replay));
    let p2 = seal(&mut a, b"two");
    assert_eq!(open(&mut b, &p2), Ok(b"two".to_vec()));
    assert_eq!(a.stats().key_cache_misses, 2);
    assert_eq!(b.stats().key_cache_misses, 2);
}

#[test]
fn sequence_numbers_start_at_random_points_below_2_pow_62() {
    let key = replay_key(0);
    let mut starts = HashSet::new();
    for seed in 0..16 {
        let mut l = ReplayAeadCrypt::with_key(Arc::clone(&key), &mut TestRng(seed));
        let p = seal(&mut l, b"");
        let seq = u64::from_le_bytes(p[8..REPLAY_HEADER_LEN].try_into().unwrap());
        assert!(seq < 1 << 62);
        starts.insert(seq);
        let p2 = seal(&mut l, b"");
        assert_eq!(
            u64::from_le_bytes(p2[8..REPLAY_HEADER_LEN].try_into().unwrap()),
            seq + 1
        );
    }
    assert_eq!(starts.len(), 16);
    // The receiver's window starts wherever the sender does.
    let mut w = ReplayWindow::new();
    w.accept((1 << 62) - 5);
    assert!(w.check((1 << 62) - 6));
}
