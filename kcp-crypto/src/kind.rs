//! Cipher selection by kcptun name (`-crypt`) or by type.

use core::fmt;
use core::str::FromStr;

use crate::CryptoError;

/// One of kcp-go v5.6.1's packet ciphers, as kcptun's `-crypt` flag names them.
///
/// Every kind except [`CipherKind::Null`] puts the 20-byte nonce and CRC header in front of the
/// packet; `none` keeps that header but does not encrypt, `null` has no crypto layer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherKind {
    /// `aes`: AES-256 in CFB mode, key `pass[0..32]` (kcptun's default).
    Aes256,
    /// `aes-128`: AES-128 in CFB mode, key `pass[0..16]`.
    Aes128,
    /// `aes-192`: AES-192 in CFB mode, key `pass[0..24]`.
    Aes192,
    /// `salsa20`: Salsa20/20 keyed with `pass`, nonce = the packet's first 8 bytes.
    Salsa20,
    /// `blowfish`: Blowfish (big-endian) in CFB-64 mode, 32-byte key.
    Blowfish,
    /// `twofish`: Twofish-256 in CFB mode.
    Twofish,
    /// `cast5`: CAST-128 in CFB-64 mode, key `pass[0..16]`.
    Cast5,
    /// `3des`: Triple DES (EDE3) in CFB-64 mode, key `pass[0..24]`.
    TripleDes,
    /// `tea`: TEA with 16 rounds (kcp-go's choice, not the usual 64) in CFB-64 mode.
    Tea,
    /// `xtea`: XTEA (64 rounds, big-endian words) in CFB-64 mode, key `pass[0..16]`.
    Xtea,
    /// `sm4`: SM4 in CFB mode, key `pass[0..16]`.
    Sm4,
    /// `xor`: XOR with a 1500-byte table derived from the key. Obfuscation, not encryption.
    Xor,
    /// `none`: the nonce and CRC header is present and checked, nothing is encrypted.
    None,
    /// `null`: no crypto layer at all (no header), as newer kcptun builds offer.
    Null,
}

impl CipherKind {
    /// Every kind, in kcptun's documentation order.
    pub const ALL: [CipherKind; 14] = [
        CipherKind::Aes256,
        CipherKind::Aes128,
        CipherKind::Aes192,
        CipherKind::Salsa20,
        CipherKind::Blowfish,
        CipherKind::Twofish,
        CipherKind::Cast5,
        CipherKind::TripleDes,
        CipherKind::Tea,
        CipherKind::Xtea,
        CipherKind::Sm4,
        CipherKind::Xor,
        CipherKind::None,
        CipherKind::Null,
    ];

    /// Parses a kcptun `-crypt` name (`"aes"`, `"aes-128"`, `"3des"`, `"null"`, ...).
    ///
    /// Unlike kcptun, which falls back to `aes`, an unknown name is an error.
    pub fn from_name(name: &str) -> Result<Self, CryptoError> {
        Ok(match name {
            "aes" => CipherKind::Aes256,
            "aes-128" => CipherKind::Aes128,
            "aes-192" => CipherKind::Aes192,
            "salsa20" => CipherKind::Salsa20,
            "blowfish" => CipherKind::Blowfish,
            "twofish" => CipherKind::Twofish,
            "cast5" => CipherKind::Cast5,
            "3des" => CipherKind::TripleDes,
            "tea" => CipherKind::Tea,
            "xtea" => CipherKind::Xtea,
            "sm4" => CipherKind::Sm4,
            "xor" => CipherKind::Xor,
            "none" => CipherKind::None,
            "null" => CipherKind::Null,
            _ => return Err(CryptoError::UnknownCipher),
        })
    }

    /// kcptun's name for this kind.
    pub const fn name(self) -> &'static str {
        match self {
            CipherKind::Aes256 => "aes",
            CipherKind::Aes128 => "aes-128",
            CipherKind::Aes192 => "aes-192",
            CipherKind::Salsa20 => "salsa20",
            CipherKind::Blowfish => "blowfish",
            CipherKind::Twofish => "twofish",
            CipherKind::Cast5 => "cast5",
            CipherKind::TripleDes => "3des",
            CipherKind::Tea => "tea",
            CipherKind::Xtea => "xtea",
            CipherKind::Sm4 => "sm4",
            CipherKind::Xor => "xor",
            CipherKind::None => "none",
            CipherKind::Null => "null",
        }
    }

    /// How many bytes of kcptun's 32-byte derived key this cipher uses (`pass[..n]`).
    pub const fn kcptun_key_len(self) -> usize {
        match self {
            CipherKind::Aes128
            | CipherKind::Cast5
            | CipherKind::Tea
            | CipherKind::Xtea
            | CipherKind::Sm4 => 16,
            CipherKind::Aes192 | CipherKind::TripleDes => 24,
            CipherKind::Aes256
            | CipherKind::Salsa20
            | CipherKind::Blowfish
            | CipherKind::Twofish
            | CipherKind::Xor
            | CipherKind::None
            | CipherKind::Null => 32,
        }
    }

    /// The cipher's block size for CFB kinds, `None` for stream, XOR and identity kinds.
    pub const fn block_size(self) -> Option<usize> {
        match self {
            CipherKind::Aes256
            | CipherKind::Aes128
            | CipherKind::Aes192
            | CipherKind::Twofish
            | CipherKind::Sm4 => Some(16),
            CipherKind::Blowfish
            | CipherKind::Cast5
            | CipherKind::TripleDes
            | CipherKind::Tea
            | CipherKind::Xtea => Some(8),
            CipherKind::Salsa20 | CipherKind::Xor | CipherKind::None | CipherKind::Null => {
                Option::None
            }
        }
    }

    /// Bytes of crypto header this kind puts in front of every packet: 20 (nonce + CRC), or 0
    /// for `null`.
    pub const fn header_len(self) -> usize {
        match self {
            CipherKind::Null => 0,
            _ => crate::HEADER_LEN,
        }
    }
}

impl FromStr for CipherKind {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CipherKind::from_name(s)
    }
}

impl fmt::Display for CipherKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
