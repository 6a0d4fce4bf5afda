//! Errors raised while building a crypto layer (packet errors use [`kcp_core::CodecError`]).

use core::fmt;

/// Why a cipher or codec could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The name is not one of kcptun's `-crypt` values (or of this crate's AEAD names).
    ///
    /// kcptun silently falls back to `aes` for unknown names; this crate refuses instead, so
    /// that a typo never silently changes the wire format.
    UnknownCipher,
    /// The key has a length the chosen cipher does not accept.
    BadKeyLength {
        /// Smallest accepted length in bytes.
        min: usize,
        /// Largest accepted length in bytes.
        max: usize,
        /// Length that was given.
        got: usize,
    },
    /// The requested combination of cipher and layer is not supported.
    Unsupported,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::UnknownCipher => f.write_str("unknown cipher name"),
            CryptoError::BadKeyLength { min, max, got } if min == max => {
                write!(f, "bad key length: expected {min} bytes, got {got}")
            }
            CryptoError::BadKeyLength { min, max, got } => {
                write!(
                    f,
                    "bad key length: expected {min} to {max} bytes, got {got}"
                )
            }
            CryptoError::Unsupported => f.write_str("cipher not supported by this layer"),
        }
    }
}

impl core::error::Error for CryptoError {}
