//! Key derivation exactly as kcptun does it, and kcp-go's XOR table.

use core::fmt;

use sha1::Sha1;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// kcptun's PBKDF2 salt for the session key.
pub const KCPTUN_SALT: &[u8] = b"kcp-go";
/// kcptun's PBKDF2 iteration count.
pub const KCPTUN_ITERATIONS: u32 = 4096;
/// kcp-go's PBKDF2 salt for the XOR cipher's table.
pub const XOR_SALT: &[u8] = b"sH3CIVoF#rWLtJo6";
/// kcp-go's PBKDF2 iteration count for the XOR table.
pub const XOR_ITERATIONS: u32 = 32;
/// Length of the XOR table (kcp-go's `mtuLimit`); bytes past it are left as they are.
pub const XOR_TABLE_LEN: usize = 1500;

/// kcptun's 32-byte derived key (`pass`), from which every cipher takes its slice.
///
/// Zeroized on drop; `Debug` does not print it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pass([u8; 32]);

impl Pass {
    /// Derives `pass = PBKDF2-HMAC-SHA1(password, "kcp-go", 4096, 32)` as kcptun's `--key` does.
    ///
    /// This costs a few milliseconds by design; derive once and reuse the result.
    pub fn derive(password: &[u8]) -> Pass {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha1>(password, KCPTUN_SALT, KCPTUN_ITERATIONS, &mut out);
        Pass(out)
    }

    /// Wraps 32 key bytes that were derived elsewhere.
    pub const fn from_bytes(bytes: [u8; 32]) -> Pass {
        Pass(bytes)
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Pass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pass(..)")
    }
}

/// kcp-go's XOR cipher table: `PBKDF2-HMAC-SHA1(key, "sH3CIVoF#rWLtJo6", 32, 1500)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct XorTable([u8; XOR_TABLE_LEN]);

impl XorTable {
    /// Derives the table from the cipher key (kcptun passes its whole 32-byte `pass`).
    pub fn derive(key: &[u8]) -> XorTable {
        let mut out = [0u8; XOR_TABLE_LEN];
        pbkdf2::pbkdf2_hmac::<Sha1>(key, XOR_SALT, XOR_ITERATIONS, &mut out);
        XorTable(out)
    }

    /// The table bytes.
    pub fn as_bytes(&self) -> &[u8; XOR_TABLE_LEN] {
        &self.0
    }

    /// XORs `buf[i]` with `table[i]` for `i < min(len, 1500)`; encryption and decryption alike.
    pub fn apply(&self, buf: &mut [u8]) {
        let n = buf.len().min(XOR_TABLE_LEN);
        let (Some(buf), Some(table)) = (buf.get_mut(..n), self.0.get(..n)) else {
            return;
        };
        // Fixed-size chunks so that the compiler emits wide vector XORs.
        let mut b = buf.chunks_exact_mut(64);
        let mut t = table.chunks_exact(64);
        for (bc, tc) in (&mut b).zip(&mut t) {
            for (x, y) in bc.iter_mut().zip(tc) {
                *x ^= y;
            }
        }
        for (x, y) in b.into_remainder().iter_mut().zip(t.remainder()) {
            *x ^= y;
        }
    }
}

impl fmt::Debug for XorTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("XorTable(..)")
    }
}
