//! The authenticated layers' receive paths (`AeadCrypt::open`, `ReplayAeadCrypt::open`, and
//! `ReplayAeadCrypt::demux_open` on an endpoint's instance followed by `accept_demuxed` on the
//! session's) fed authentic, tampered, replayed, reflected and arbitrary packets, checked
//! against a model of exactly what each must accept.
//!
//! Input: `selector || operations`. `selector % 6`: 0/1 `AeadCrypt` (AES-128-GCM /
//! ChaCha20-Poly1305), 2/3 `ReplayAeadCrypt` point to point, 4/5 `ReplayAeadCrypt` on an
//! endpoint. Operations, by first byte `% 8`:
//!
//! * `0 len_lo len_hi bytes..`: arbitrary bytes (length `len % 2048`) delivered (a genuine packet under the fuzz key
//!   authenticates and is then checked against the model like any other);
//! * `1 len bytes..`: peer A seals the payload; the packet is kept;
//! * `2 i`: kept packet `i` delivered;
//! * `3 i pos_lo pos_hi bit`: kept packet `i` with one bit flipped delivered: must be refused
//!   and change nothing;
//! * `4 len bytes..`: peer B (another session) seals the payload; kept;
//! * `5 k_lo k_hi`: peer A's sequence numbers jump `k` ahead (replay modes: A is rebuilt with
//!   the same sender id and a later first sequence number, which is what sealing `k` packets
//!   nobody sees would do, without the cost);
//! * `6`: a packet the receiver sealed itself is delivered back to it;
//! * `7`: every receiving instance trims.
//!
//! Keys are derived once per run from `"kcp-rs live vectors"`.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use kcp_core::{Codec, CodecError, Millis};
use kcp_crypto::{
    AeadCrypt, AeadKey, AeadKind, Pass, ReplayAeadCrypt, ReplayKey, ReplayWindow, REPLAY_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

const PASSWORD: &[u8] = b"kcp-rs live vectors";
const NOW: Millis = Millis(0);
const KINDS: [AeadKind; 2] = [AeadKind::Aes128Gcm, AeadKind::ChaCha20Poly1305];

// Deterministic sender ids and sequence starts, so a corpus stays meaningful.
use kcp_testkit::rng::Rng;

fn rng(seed: u64) -> rand_core::UnwrapErr<Rng> {
    rand_core::UnwrapErr(Rng::new(seed))
}

/// Hands `ReplayAeadCrypt::with_key` a chosen sender id and first sequence number (it draws
/// the id with `fill_bytes`, then the start as `next_u64() >> 2`).
struct Fixed {
    id: [u8; 8],
    seq: u64,
}
impl rand_core::TryRng for Fixed {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(0)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.seq << 2)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for (d, s) in dst.iter_mut().zip(self.id.iter().cycle()) {
            *d = *s;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Fixed {}

const A_ID: [u8; 8] = *b"sender-A";
const A_START: u64 = 1000;

fn peer_a(key: &'static ReplayKey, seq: u64) -> Box<dyn Codec> {
    Box::new(ReplayAeadCrypt::with_key(
        key,
        &mut rand_core::UnwrapErr(Fixed { id: A_ID, seq }),
    ))
}

fn pass() -> &'static Pass {
    static PASS: OnceLock<Pass> = OnceLock::new();
    PASS.get_or_init(|| Pass::derive(PASSWORD))
}

fn aead_keys() -> &'static [AeadKey] {
    static KEYS: OnceLock<Vec<AeadKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        KINDS
            .iter()
            .map(|&k| AeadKey::from_pass(k, pass(), &mut rng(1)))
            .collect()
    })
}

fn replay_keys() -> &'static [ReplayKey] {
    static KEYS: OnceLock<Vec<ReplayKey>> = OnceLock::new();
    // A cache of two sender keys: A, B and senders from raw packets evict each other.
    KEYS.get_or_init(|| {
        KINDS
            .iter()
            .map(|&k| ReplayKey::from_pass(k, pass()).with_demux_cache(2))
            .collect()
    })
}

type Replay = ReplayAeadCrypt<&'static ReplayKey>;

/// The receiving side under test (one per input: variant sizes do not matter).
#[allow(clippy::large_enum_variant)]
enum Rx {
    Aead(AeadCrypt<&'static AeadKey>),
    PointToPoint(Replay),
    Endpoint { shared: Replay, session: Replay },
}

impl Rx {
    /// Opens a copy of `packet`; the delivered payload.
    fn deliver(&mut self, packet: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut buf = packet.to_vec();
        let inner = match self {
            Rx::Aead(c) => c.open(&mut buf, NOW)?,
            Rx::PointToPoint(c) => c.open(&mut buf, NOW)?,
            Rx::Endpoint { shared, session } => {
                let inner = shared.demux_open(&mut buf, NOW)?;
                if let Some(r) = &inner {
                    session.accept_demuxed(&buf, r.clone(), NOW)?;
                }
                inner
            }
        }
        .expect("crypto layers always deliver");
        assert!(inner.start <= inner.end && inner.end <= buf.len());
        Ok(buf[inner].to_vec())
    }

    /// A packet sealed by the receiving session itself.
    fn own_packet(&mut self) -> Vec<u8> {
        let own: &mut dyn Codec = match self {
            Rx::Aead(c) => c,
            Rx::PointToPoint(c) => c,
            Rx::Endpoint { session, .. } => session,
        };
        seal(own, b"reflected")
    }

    fn trim(&mut self) {
        match self {
            Rx::Aead(c) => c.trim(),
            Rx::PointToPoint(c) => c.trim(),
            Rx::Endpoint { shared, session } => {
                shared.trim();
                session.trim();
            }
        }
    }

    fn own_id(&self) -> Option<[u8; 8]> {
        match self {
            Rx::Aead(_) => None,
            Rx::PointToPoint(c) => Some(c.sender_id()),
            Rx::Endpoint { session, .. } => Some(session.sender_id()),
        }
    }
}

fn seal(c: &mut dyn Codec, payload: &[u8]) -> Vec<u8> {
    let h = c.header_len();
    let mut buf = vec![0u8; h + payload.len() + c.trailer_len()];
    buf[h..h + payload.len()].copy_from_slice(payload);
    let n = c.seal(&mut buf, h + payload.len(), NOW).expect("seal");
    buf.truncate(n);
    buf
}

/// What a replay-protected receiver has accepted: its pinned peer and window, as documented.
#[derive(Default)]
struct Model {
    own: [u8; 8],
    peer: Option<[u8; 8]>,
    seen: BTreeSet<u64>,
    top: Option<u64>,
}

impl Model {
    fn admissible(&self, sender: [u8; 8], seq: u64) -> bool {
        if sender == self.own || self.peer.is_some_and(|p| p != sender) {
            return false;
        }
        match self.top {
            None => true,
            Some(top) => seq > top || (top - seq < ReplayWindow::SIZE && !self.seen.contains(&seq)),
        }
    }
    fn accept(&mut self, sender: [u8; 8], seq: u64) {
        self.peer.get_or_insert(sender);
        self.seen.insert(seq);
        if self.top.is_none_or(|t| seq > t) {
            self.top = Some(seq);
        }
    }
}

fn header(packet: &[u8]) -> ([u8; 8], u64) {
    let mut id = [0u8; 8];
    id.copy_from_slice(&packet[..8]);
    let seq = u64::from_le_bytes(packet[8..REPLAY_HEADER_LEN].try_into().unwrap());
    (id, seq)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut ops)) = data.split_first() else {
        return;
    };
    let kind = (sel % 2) as usize;
    let (mut rx, mut a, mut b): (Rx, Box<dyn Codec>, Box<dyn Codec>) = match sel % 6 {
        0 | 1 => {
            let key = &aead_keys()[kind];
            (
                Rx::Aead(AeadCrypt::with_key(key)),
                Box::new(AeadCrypt::with_key(key)),
                Box::new(AeadCrypt::with_key(key)),
            )
        }
        m => {
            let key = &replay_keys()[kind];
            let session = ReplayAeadCrypt::with_key(key, &mut rng(13));
            let rx = if m < 4 {
                Rx::PointToPoint(session)
            } else {
                Rx::Endpoint {
                    shared: ReplayAeadCrypt::with_key(key, &mut rng(14)),
                    session,
                }
            };
            (
                rx,
                peer_a(key, A_START),
                Box::new(ReplayAeadCrypt::with_key(key, &mut rng(12))),
            )
        }
    };
    let replay = rx.own_id().is_some();
    let mut model = Model {
        own: rx.own_id().unwrap_or_default(),
        ..Model::default()
    };
    let mut kept: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    // Peer A's next sequence number (replay modes).
    let mut a_next = A_START;

    // Checks a genuine packet's fate against the model and records what was accepted.
    let genuine = |rx: &mut Rx, model: &mut Model, packet: &[u8], payload: &[u8]| {
        let r = rx.deliver(packet);
        if !replay {
            assert_eq!(r.as_deref(), Ok(payload));
            return;
        }
        let (id, seq) = header(packet);
        if model.admissible(id, seq) {
            assert_eq!(r.as_deref(), Ok(payload), "seq {seq} must be accepted");
            model.accept(id, seq);
        } else {
            assert_eq!(r, Err(CodecError::Replay), "seq {seq} must be refused");
        }
    };

    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        let mut take = |n: usize| {
            let n = n.min(ops.len());
            let (t, r) = ops.split_at(n);
            ops = r;
            t
        };
        match op % 8 {
            0 => {
                let l = take(2);
                let len = match l {
                    [lo, hi] => u16::from_le_bytes([*lo, *hi]) as usize % 2048,
                    _ => 0,
                };
                let raw = take(len).to_vec();
                if rx.deliver(&raw).is_ok() {
                    // Only a genuine packet opens; it must have been admissible.
                    if replay {
                        let (id, seq) = header(&raw);
                        assert!(model.admissible(id, seq), "raw packet wrongly accepted");
                        model.accept(id, seq);
                    }
                }
            }
            1 | 4 => {
                let len = take(1).first().copied().unwrap_or(0) as usize;
                let payload = take(len).to_vec();
                if kept.len() < 256 {
                    let p = if op % 8 == 1 {
                        a_next += 1;
                        seal(&mut *a, &payload)
                    } else {
                        seal(&mut *b, &payload)
                    };
                    kept.push((p, payload));
                }
            }
            2 => {
                let i = take(1).first().copied().unwrap_or(0) as usize;
                if !kept.is_empty() {
                    let (p, payload) = kept[i % kept.len()].clone();
                    genuine(&mut rx, &mut model, &p, &payload);
                }
            }
            3 => {
                let t = take(4).to_vec();
                if t.len() == 4 && !kept.is_empty() {
                    let (mut p, _) = kept[t[0] as usize % kept.len()].clone();
                    let pos = u16::from_le_bytes([t[1], t[2]]) as usize % p.len();
                    p[pos] ^= 1 << (t[3] % 8);
                    let r = rx.deliver(&p);
                    assert!(r.is_err(), "tampered packet accepted");
                    assert_ne!(r, Err(CodecError::Truncated));
                }
            }
            5 => {
                let k = match take(2) {
                    [lo, hi] => u16::from_le_bytes([*lo, *hi]) as u64,
                    _ => 0,
                };
                if replay {
                    a_next += k;
                    a = peer_a(&replay_keys()[kind], a_next);
                }
            }
            6 => {
                let p = rx.own_packet();
                let r = rx.deliver(&p);
                if replay {
                    assert_eq!(r, Err(CodecError::Replay), "reflected packet accepted");
                } else {
                    assert_eq!(r.as_deref(), Ok(&b"reflected"[..]));
                }
            }
            _ => rx.trim(),
        }
    }
});
