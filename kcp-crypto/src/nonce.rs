//! Per-packet nonces: a keyed permutation (AES-128) of unique (stream, counter) blocks.
//!
//! # Construction and why nonces never repeat
//!
//! A [`NonceKey`] is an AES-128 key drawn once from the caller's CSPRNG; it is immutable and
//! shared by every layer built from the same shared key (one per endpoint). Each layer owns a
//! [`NonceStream`]: a 64-bit *stream number* handed out by the key and a 64-bit packet
//! counter. Packet `i` of stream `s` gets
//!
//! ```text
//! nonce = AES-128(k, s as u64 LE || i as u64 LE)
//! ```
//!
//! * **Unique under one nonce key, with certainty.** AES under a fixed key is a permutation, so
//!   two nonces are equal only if their input blocks are. Stream numbers come from one atomic
//!   counter in the key (`fetch_add`, so no two layers ever get the same number, whatever
//!   threads build them), and a stream's counter only increases; when it would wrap (after
//!   2^64 packets) the layer takes a fresh stream number. The input blocks therefore never
//!   repeat until 2^64 streams have been handed out, which does not happen.
//! * **Unpredictable.** The key never leaves the process and is not derived from anything a
//!   peer sees, so a peer that has seen any number of nonces (of its own session or others)
//!   cannot predict the next one better than chance (AES as a pseudorandom permutation).
//! * **Across processes** (every kcptun client shares one cipher key but has its own nonce
//!   key) the nonces of different processes are independent pseudorandom values: 128-bit ones
//!   collide with probability about `n^2 / 2^129` for `n` packets in total, i.e. never in
//!   practice. Layouts that keep only part of the nonce on the wire lose that margin: see
//!   `docs/security.md` for Salsa20 (8 bytes used) and the AEAD layout (12 bytes used).
//!
//! Sharing the key costs every layer 16 bytes of position (plus 64 bytes of nonces computed
//! ahead, for speed) instead of its own AES key schedule.

use core::fmt;

use aes::Aes128Enc;
use cipher::{Block, BlockCipherEncrypt, KeyInit};
use rand_core::CryptoRng;
use zeroize::Zeroize;

/// Nonces computed per AES call when several are needed at once.
const BATCH: usize = 8;

/// The shared, immutable part of a nonce generator: an AES-128 key from the caller's CSPRNG
/// and the counter that hands out stream numbers.
pub(crate) struct NonceKey {
    cipher: Aes128Enc,
    #[cfg(target_has_atomic = "32")]
    streams: StreamCounter,
}

/// The counter that hands out stream numbers: one 64-bit atomic where the target has them.
#[cfg(target_has_atomic = "64")]
#[derive(Default)]
struct StreamCounter(core::sync::atomic::AtomicU64);

#[cfg(target_has_atomic = "64")]
impl StreamCounter {
    fn next(&self) -> u64 {
        // Uniqueness only needs the read-modify-write to be atomic; no ordering with other
        // memory is implied.
        self.0.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(test)]
    fn starting_at(n: u64) -> StreamCounter {
        StreamCounter(core::sync::atomic::AtomicU64::new(n))
    }
}

/// The counter that hands out stream numbers on targets with 32-bit but no 64-bit atomics
/// (32-bit PowerPC and MIPS, Cortex-M3/M4): two 32-bit halves behind a spin lock, held for a
/// few instructions. Building layers from an interrupt handler while the interrupted code
/// builds one would spin for ever on a single core; build them in thread context.
#[cfg(all(target_has_atomic = "32", not(target_has_atomic = "64")))]
#[derive(Default)]
struct StreamCounter {
    lock: core::sync::atomic::AtomicBool,
    high: core::sync::atomic::AtomicU32,
    low: core::sync::atomic::AtomicU32,
}

#[cfg(all(target_has_atomic = "32", not(target_has_atomic = "64")))]
impl StreamCounter {
    fn next(&self) -> u64 {
        use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
        while self
            .lock
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        let n = u64::from(self.high.load(Relaxed)) << 32 | u64::from(self.low.load(Relaxed));
        let next = n.wrapping_add(1);
        self.high.store((next >> 32) as u32, Relaxed);
        self.low.store(next as u32, Relaxed);
        self.lock.store(false, Release);
        n
    }

    #[cfg(test)]
    fn starting_at(n: u64) -> StreamCounter {
        StreamCounter {
            lock: core::sync::atomic::AtomicBool::new(false),
            high: core::sync::atomic::AtomicU32::new((n >> 32) as u32),
            low: core::sync::atomic::AtomicU32::new(n as u32),
        }
    }
}

impl NonceKey {
    /// A fresh key: 16 bytes are drawn from `rng`.
    pub(crate) fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> NonceKey {
        let mut key = [0u8; 16];
        rng.fill_bytes(&mut key);
        let cipher = Aes128Enc::new(&key.into());
        key.zeroize();
        NonceKey {
            cipher,
            #[cfg(target_has_atomic = "32")]
            streams: StreamCounter::default(),
        }
    }

    /// A stream number no other caller of this key got (targets with atomics), or 0 for a
    /// key that only ever feeds one stream (targets without atomics can not share a key).
    fn next_stream(&self) -> u64 {
        #[cfg(target_has_atomic = "32")]
        {
            self.streams.next()
        }
        #[cfg(not(target_has_atomic = "32"))]
        {
            0
        }
    }
}

/// Nonces a stream computes ahead per AES call when asked for one at a time. An AES call has a
/// fixed cost of several blocks (bench `nonce`: 67 ns per nonce computed one per call, 26 ns
/// four per call, 12 ns eight per call); four ahead cost a session 64 bytes.
const AHEAD: usize = 4;

/// One layer's position in the nonce sequence (no key material) and the next few nonces.
pub(crate) struct NonceStream {
    stream: u64,
    counter: u64,
    ahead: [[u8; 16]; AHEAD],
    next: u8,
}

impl NonceStream {
    /// A stream of its own under `key`.
    pub(crate) fn new(key: &NonceKey) -> NonceStream {
        NonceStream {
            stream: key.next_stream(),
            counter: 0,
            ahead: [[0; 16]; AHEAD],
            next: AHEAD as u8,
        }
    }

    /// The next input block, advancing (to a fresh stream when the counter is exhausted).
    fn advance(&mut self, key: &NonceKey) -> Block<Aes128Enc> {
        let mut b = Block::<Aes128Enc>::default();
        b[..8].copy_from_slice(&self.stream.to_le_bytes());
        b[8..].copy_from_slice(&self.counter.to_le_bytes());
        match self.counter.checked_add(1) {
            Some(c) => self.counter = c,
            None => *self = NonceStream::new(key),
        }
        b
    }

    /// The next 16-byte nonce.
    #[inline]
    pub(crate) fn next(&mut self, key: &NonceKey) -> [u8; 16] {
        if self.next as usize >= AHEAD {
            let mut ahead = [[0u8; 16]; AHEAD];
            self.fill(key, &mut ahead);
            self.ahead = ahead;
            ahead.zeroize();
            self.next = 0;
        }
        let mut out = [0u8; 16];
        if let Some(n) = self.ahead.get_mut(self.next as usize) {
            out = *n;
            n.zeroize();
        }
        self.next += 1;
        out
    }

    /// Fills `out` with fresh nonces, up to eight per AES call (its pipeline keeps them in
    /// flight together). Nonces computed ahead for [`next`](Self::next) stay for it: every
    /// input block is still used once, which is all uniqueness needs.
    pub(crate) fn fill(&mut self, key: &NonceKey, out: &mut [[u8; 16]]) {
        for chunk in out.chunks_mut(BATCH) {
            let mut blocks: [Block<Aes128Enc>; BATCH] = Default::default();
            let n = chunk.len();
            for b in blocks.iter_mut().take(n) {
                *b = self.advance(key);
            }
            key.cipher.encrypt_blocks(&mut blocks[..n]);
            for (o, b) in chunk.iter_mut().zip(blocks.iter_mut()) {
                o.copy_from_slice(b);
                b.zeroize();
            }
        }
    }
}

impl Drop for NonceStream {
    fn drop(&mut self) {
        self.ahead.as_flattened_mut().zeroize();
    }
}

impl fmt::Debug for NonceStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceStream(..)")
    }
}

/// A self-contained nonce source: `nonce_i = AES-128(k, s || i)` with a random key `k` drawn
/// once from a caller-supplied cryptographic RNG, a stream number `s` and a counter `i`.
///
/// The crypto layers use the same construction with `k` shared by every session of an
/// endpoint ([`crate::PacketKey`], [`crate::AeadKey`]): each session takes a stream number of
/// its own from an atomic counter in the shared key and counts its packets. Why that is safe:
///
/// * **Unique under one key, with certainty**: AES under a fixed key is a permutation, so two
///   nonces are equal only if their `(s, i)` are; stream numbers are handed out by one
///   `fetch_add` (never twice, from any thread), and a stream that exhausts its 2^64 counter
///   values takes a fresh stream number.
/// * **Unpredictable**: `k` never leaves the process and nothing a peer sees is derived from
///   it, so seeing any number of nonces does not help predict the next (AES as a
///   pseudorandom permutation).
/// * **Across processes** (every kcptun client has its own `k` but the same cipher key) the
///   nonces are independent random values: 16 bytes never collide in practice, but layouts
///   that use fewer bytes have a birthday bound (Salsa20 uses 8; see `docs/security.md`).
///
/// This type owns its key, for callers that want nonces of their own. The key is zeroized on
/// drop.
pub struct NonceGen {
    key: NonceKey,
    stream: NonceStream,
}

impl NonceGen {
    /// Seeds a generator from `rng` (16 bytes are drawn).
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> NonceGen {
        let key = NonceKey::new(rng);
        let stream = NonceStream::new(&key);
        NonceGen { key, stream }
    }

    /// Returns the next 16-byte nonce.
    #[inline]
    pub fn next_nonce(&mut self) -> [u8; 16] {
        self.stream.next(&self.key)
    }
}

impl fmt::Debug for NonceGen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceGen(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::{NonceKey, NonceStream, AHEAD};

    struct Counting(u8);
    impl rand_core::TryRng for Counting {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(0)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for b in dst {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for Counting {}

    #[test]
    fn streams_of_one_key_are_distinct_and_never_overlap() {
        let key = NonceKey::new(&mut rand_core::UnwrapErr(Counting(0)));
        let mut a = NonceStream::new(&key);
        let mut b = NonceStream::new(&key);
        assert_ne!(a.stream, b.stream);
        let mut seen = [[0u8; 16]; 64];
        for i in 0..32 {
            seen[2 * i] = a.next(&key);
            seen[2 * i + 1] = b.next(&key);
        }
        for i in 0..seen.len() {
            for j in i + 1..seen.len() {
                assert_ne!(seen[i], seen[j], "nonces {i} and {j} repeat");
            }
        }
    }

    #[test]
    #[cfg(target_has_atomic = "32")]
    fn stream_numbers_carry_past_32_bits() {
        let c = super::StreamCounter::starting_at(u64::from(u32::MAX) - 1);
        assert_eq!(c.next(), 0xFFFF_FFFE);
        assert_eq!(c.next(), 0xFFFF_FFFF);
        assert_eq!(c.next(), 0x1_0000_0000);
        assert_eq!(c.next(), 0x1_0000_0001);
    }

    #[test]
    fn batched_and_single_nonces_never_repeat_each_other() {
        let key = NonceKey::new(&mut rand_core::UnwrapErr(Counting(7)));
        let mut a = NonceStream::new(&key);
        let mut seen = [[0u8; 16]; 3 + 11 + 6];
        for n in seen[..3].iter_mut() {
            *n = a.next(&key);
        }
        a.fill(&key, &mut seen[3..14]);
        for n in seen[14..].iter_mut() {
            *n = a.next(&key);
        }
        for i in 0..seen.len() {
            for j in i + 1..seen.len() {
                assert_ne!(seen[i], seen[j], "nonces {i} and {j} repeat");
            }
        }
    }

    #[test]
    fn an_exhausted_counter_moves_to_a_fresh_stream() {
        let key = NonceKey::new(&mut rand_core::UnwrapErr(Counting(3)));
        let mut s = NonceStream::new(&key);
        let first = s.stream;
        s.counter = u64::MAX;
        let _ = s.next(&key);
        assert_ne!(s.stream, first);
        assert!(s.counter < AHEAD as u64);
    }
}
