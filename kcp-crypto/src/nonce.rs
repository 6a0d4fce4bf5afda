//! Per-packet nonces: an AES-128 counter-mode generator seeded once from the caller's RNG.

use core::fmt;

use aes::Aes128Enc;
use cipher::{Block, BlockCipherEncrypt, KeyInit};
use rand_core::CryptoRng;
use zeroize::Zeroize;

/// How many nonces one refill computes (AES-NI encrypts this many blocks in parallel).
const BATCH: usize = 8;

/// Fast nonce source: `nonce_i = AES-128(k, c + i)` with a random key `k` and a random start
/// `c`, both drawn once from a caller-supplied cryptographic RNG.
///
/// The outputs are a pseudorandom permutation of distinct counters, so they never repeat within
/// 2^128 packets and cannot be predicted without `k`; this is the same idea as kcp-go's
/// `nonceAES128` (which chains `seed = AES(seed)`) at a fraction of an RNG call's cost. The key
/// and buffered nonces are zeroized on drop.
pub struct NonceGen {
    cipher: Aes128Enc,
    counter: u128,
    buf: [Block<Aes128Enc>; BATCH],
    next: usize,
}

impl NonceGen {
    /// Seeds a generator from `rng` (32 bytes are drawn).
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> NonceGen {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mut key = [0u8; 16];
        key.copy_from_slice(&seed[..16]);
        let mut ctr = [0u8; 16];
        ctr.copy_from_slice(&seed[16..]);
        let cipher = Aes128Enc::new(&key.into());
        let counter = u128::from_le_bytes(ctr);
        seed.zeroize();
        key.zeroize();
        NonceGen {
            cipher,
            counter,
            buf: Default::default(),
            next: BATCH,
        }
    }

    /// Returns the next 16-byte nonce.
    #[inline]
    pub fn next_nonce(&mut self) -> [u8; 16] {
        if self.next >= BATCH {
            self.refill();
        }
        let mut out = [0u8; 16];
        if let Some(b) = self.buf.get_mut(self.next) {
            out.copy_from_slice(b);
            b.zeroize();
        }
        self.next += 1;
        out
    }

    fn refill(&mut self) {
        for b in self.buf.iter_mut() {
            *b = self.counter.to_le_bytes().into();
            self.counter = self.counter.wrapping_add(1);
        }
        self.cipher.encrypt_blocks(&mut self.buf);
        self.next = 0;
    }
}

impl Drop for NonceGen {
    fn drop(&mut self) {
        self.counter.zeroize();
        for b in self.buf.iter_mut() {
            b.zeroize();
        }
    }
}

impl fmt::Debug for NonceGen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceGen(..)")
    }
}
