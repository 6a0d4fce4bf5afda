//! The snappy framing format over a byte stream, as a sans-IO encoder and decoder
//! (kcptun's compression layer: each smux frame is one flush, so one chunk).
//!
//! A framed stream starts with the stream identifier chunk `ff 06 00 00 "sNaPpY"`, then
//! chunks of `type u8 | length u24 LE | body`. Data chunks carry the masked CRC-32C of their
//! uncompressed bytes (4 bytes LE) and then the bytes, compressed with the snappy block
//! format (type `0x00`) or raw (type `0x01`), at most 65536 uncompressed bytes per chunk.
//! Types `0x80` to `0xfe` are skippable, `0x02` to `0x7f` reserved (an error).
//!
//! * [`Encoder::encode`] frames one flush: the identifier before the first chunk, then the
//!   data in chunks of at most 65536 bytes, each compressed only when that saves at least
//!   12.5 % (Go's `snappy.Writer` rule).
//! * [`Decoder::feed`] takes framed bytes in chunks of any size and decodes at most one chunk
//!   at a time: its bytes wait in [`Decoder::decoded`] until [`Decoder::consume`]d, and
//!   `feed` consumes no input while they wait, so memory stays at one chunk (about 150 KiB)
//!   whatever the peer sends. Malformed input is a typed [`DecodeError`], and the decoder
//!   stays failed.
//!
//! The decoder accepts what Go's `snappy.Reader` (golang/snappy 0.0.2) accepts and rejects
//! what it rejects, including chunks longer than 76494 bytes of any type.
//!
//! ```
//! use kcp_mio::snappy::{Decoder, Encoder};
//!
//! let mut enc = Encoder::new();
//! let mut wire = Vec::new();
//! enc.encode(b"hello hello hello hello", &mut wire);
//! enc.encode(b"world", &mut wire);
//! assert_eq!(&wire[..10], b"\xff\x06\x00\x00sNaPpY");
//!
//! let mut dec = Decoder::new();
//! let mut out = Vec::new();
//! let mut input = &wire[..];
//! while !input.is_empty() {
//!     let n = dec.feed(input).unwrap();
//!     input = &input[n..];
//!     out.extend_from_slice(dec.decoded());
//!     let k = dec.decoded().len();
//!     dec.consume(k);
//! }
//! assert_eq!(out, b"hello hello hello helloworld");
//! ```

use std::fmt;

/// The stream identifier chunk.
pub const STREAM_IDENTIFIER: &[u8; 10] = b"\xff\x06\x00\x00sNaPpY";

/// The most uncompressed bytes in one chunk.
pub const MAX_BLOCK_SIZE: usize = 65536;

/// The longest chunk body accepted (the compressed size bound of a full block plus its
/// checksum, as Go's reader sizes its buffer).
pub const MAX_CHUNK_LEN: usize = MAX_COMPRESSED_LEN + CHECKSUM_SIZE;

/// `snap::raw::max_compress_len(65536)`, the same as Go's `MaxEncodedLen(65536)`.
const MAX_COMPRESSED_LEN: usize = 76490;
const CHECKSUM_SIZE: usize = 4;
const CHUNK_HEADER_SIZE: usize = 4;

const TYPE_COMPRESSED: u8 = 0x00;
const TYPE_UNCOMPRESSED: u8 = 0x01;
const TYPE_IDENTIFIER: u8 = 0xff;

/// A `static`, not a `const`: the 16 KiB of tables are built at compile time and shared,
/// not copied at each use.
static CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// The framing format's masked CRC-32C of `data`.
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = CRC32C.checksum(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Writes the framing format: one [`Encoder::encode`] per flush.
pub struct Encoder {
    codec: snap::raw::Encoder,
    wrote_identifier: bool,
    scratch: Vec<u8>,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("wrote_identifier", &self.wrote_identifier)
            .finish()
    }
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new()
    }
}

impl Encoder {
    /// A new encoder; the stream identifier goes before its first chunk.
    pub fn new() -> Encoder {
        Encoder {
            codec: snap::raw::Encoder::new(),
            wrote_identifier: false,
            scratch: Vec::new(),
        }
    }

    /// Appends `data` to `out` as chunks of at most 65536 bytes (an empty `data` appends
    /// nothing), the stream identifier first if this is the first chunk.
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for block in data.chunks(MAX_BLOCK_SIZE) {
            if !self.wrote_identifier {
                self.wrote_identifier = true;
                out.extend_from_slice(STREAM_IDENTIFIER);
            }
            let crc = masked_crc(block);
            self.scratch
                .resize(snap::raw::max_compress_len(block.len()), 0);
            // Compression of at most 65536 bytes into a buffer of the bound cannot fail;
            // if it ever did, the raw chunk is still correct.
            let compressed = self
                .codec
                .compress(block, &mut self.scratch)
                .unwrap_or(usize::MAX);
            let (chunk_type, body) = if compressed < block.len() - block.len() / 8 {
                (TYPE_COMPRESSED, &self.scratch[..compressed])
            } else {
                (TYPE_UNCOMPRESSED, block)
            };
            let len = (CHECKSUM_SIZE + body.len()) as u32;
            out.reserve(CHUNK_HEADER_SIZE + len as usize);
            out.push(chunk_type);
            out.extend_from_slice(&len.to_le_bytes()[..3]);
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(body);
        }
    }
}

/// A malformed framed stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The first chunk is not the stream identifier.
    MissingStreamIdentifier {
        /// The first chunk's type.
        chunk_type: u8,
    },
    /// A stream identifier chunk of the wrong length or content.
    BadStreamIdentifier,
    /// A chunk longer than [`MAX_CHUNK_LEN`].
    ChunkTooLong {
        /// Its type.
        chunk_type: u8,
        /// Its length.
        len: usize,
    },
    /// A data chunk too short for its checksum.
    ChunkTooShort {
        /// Its type.
        chunk_type: u8,
        /// Its length.
        len: usize,
    },
    /// A data chunk that decodes to more than 65536 bytes.
    BlockTooLarge {
        /// The uncompressed length it claims or carries.
        len: usize,
    },
    /// A reserved unskippable chunk type (`0x02` to `0x7f`).
    ReservedChunk {
        /// Its type.
        chunk_type: u8,
    },
    /// The compressed body is not a valid snappy block.
    Corrupt(snap::Error),
    /// The checksum does not match the uncompressed bytes.
    Checksum {
        /// The checksum in the chunk.
        expected: u32,
        /// The checksum of the bytes.
        actual: u32,
    },
    /// The stream ended inside a chunk ([`Decoder::finish`]).
    Truncated,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::MissingStreamIdentifier { chunk_type } => {
                write!(f, "snappy stream starts with chunk type {chunk_type:#04x}, not the stream identifier")
            }
            DecodeError::BadStreamIdentifier => write!(f, "bad snappy stream identifier"),
            DecodeError::ChunkTooLong { chunk_type, len } => {
                write!(
                    f,
                    "snappy chunk of type {chunk_type:#04x} too long: {len} bytes"
                )
            }
            DecodeError::ChunkTooShort { chunk_type, len } => {
                write!(
                    f,
                    "snappy chunk of type {chunk_type:#04x} too short: {len} bytes"
                )
            }
            DecodeError::BlockTooLarge { len } => {
                write!(
                    f,
                    "snappy chunk of {len} uncompressed bytes (at most 65536)"
                )
            }
            DecodeError::ReservedChunk { chunk_type } => {
                write!(
                    f,
                    "reserved unskippable snappy chunk type {chunk_type:#04x}"
                )
            }
            DecodeError::Corrupt(e) => write!(f, "corrupt snappy block: {e}"),
            DecodeError::Checksum { expected, actual } => {
                write!(f, "snappy checksum mismatch: chunk says {expected:#010x}, data has {actual:#010x}")
            }
            DecodeError::Truncated => write!(f, "snappy stream ended inside a chunk"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Corrupt(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DecodeError> for std::io::Error {
    fn from(e: DecodeError) -> std::io::Error {
        let kind = match e {
            DecodeError::Truncated => std::io::ErrorKind::UnexpectedEof,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}

/// Reads the framing format; see the module docs.
pub struct Decoder {
    codec: snap::raw::Decoder,
    seen_identifier: bool,
    header: [u8; CHUNK_HEADER_SIZE],
    header_have: usize,
    /// Type and length of the chunk whose body is being read.
    chunk: Option<(u8, usize)>,
    body: Vec<u8>,
    /// Skippable bytes still to skip of the current chunk.
    skip: usize,
    decoded: Vec<u8>,
    decoded_pos: usize,
    error: Option<DecodeError>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("seen_identifier", &self.seen_identifier)
            .field("chunk", &self.chunk)
            .field("pending", &self.decoded().len())
            .field("error", &self.error)
            .finish()
    }
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

impl Decoder {
    /// A new decoder, expecting the stream identifier first.
    pub fn new() -> Decoder {
        Decoder {
            codec: snap::raw::Decoder::new(),
            seen_identifier: false,
            header: [0; CHUNK_HEADER_SIZE],
            header_have: 0,
            chunk: None,
            body: Vec::new(),
            skip: 0,
            decoded: Vec::new(),
            decoded_pos: 0,
            error: None,
        }
    }

    /// Decoded bytes not yet consumed (at most 65536).
    pub fn decoded(&self) -> &[u8] {
        &self.decoded[self.decoded_pos..]
    }

    /// Marks `n` bytes of [`Decoder::decoded`] as used (clamped to what there is).
    pub fn consume(&mut self, n: usize) {
        self.decoded_pos = (self.decoded_pos + n).min(self.decoded.len());
        if self.decoded_pos == self.decoded.len() {
            self.decoded.clear();
            self.decoded_pos = 0;
        }
    }

    /// Feeds framed bytes; returns how many were consumed. It stops after a data chunk
    /// decodes (its bytes are in [`Decoder::decoded`]) and consumes nothing while decoded
    /// bytes wait, so call it again after [`Decoder::consume`]. An error is final: later
    /// calls return it again.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, DecodeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.feed_inner(input) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<usize, DecodeError> {
        let mut pos = 0;
        while pos < input.len() && self.decoded().is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(input.len() - pos);
                self.skip -= n;
                pos += n;
                continue;
            }
            let Some((chunk_type, len)) = self.chunk else {
                let n = (CHUNK_HEADER_SIZE - self.header_have).min(input.len() - pos);
                self.header[self.header_have..self.header_have + n]
                    .copy_from_slice(&input[pos..pos + n]);
                self.header_have += n;
                pos += n;
                if self.header_have == CHUNK_HEADER_SIZE {
                    self.header_have = 0;
                    self.start_chunk()?;
                }
                continue;
            };
            // Take the whole body from the input when it is all there (no copy).
            if self.body.is_empty() && input.len() - pos >= len {
                self.chunk = None;
                self.finish_chunk(chunk_type, &input[pos..pos + len])?;
                pos += len;
                continue;
            }
            let n = (len - self.body.len()).min(input.len() - pos);
            self.body.extend_from_slice(&input[pos..pos + n]);
            pos += n;
            if self.body.len() == len {
                self.chunk = None;
                let body = std::mem::take(&mut self.body);
                let r = self.finish_chunk(chunk_type, &body);
                self.body = body;
                self.body.clear();
                r?;
            }
        }
        Ok(pos)
    }

    /// Checks a chunk header (Go's checks, in Go's order).
    fn start_chunk(&mut self) -> Result<(), DecodeError> {
        let chunk_type = self.header[0];
        let len = u32::from_le_bytes([self.header[1], self.header[2], self.header[3], 0]) as usize;
        if !self.seen_identifier && chunk_type != TYPE_IDENTIFIER {
            return Err(DecodeError::MissingStreamIdentifier { chunk_type });
        }
        if len > MAX_CHUNK_LEN {
            return Err(DecodeError::ChunkTooLong { chunk_type, len });
        }
        match chunk_type {
            TYPE_COMPRESSED | TYPE_UNCOMPRESSED => {
                if len < CHECKSUM_SIZE {
                    return Err(DecodeError::ChunkTooShort { chunk_type, len });
                }
                if chunk_type == TYPE_UNCOMPRESSED && len - CHECKSUM_SIZE > MAX_BLOCK_SIZE {
                    return Err(DecodeError::BlockTooLarge {
                        len: len - CHECKSUM_SIZE,
                    });
                }
            }
            TYPE_IDENTIFIER => {
                if len != STREAM_IDENTIFIER.len() - CHUNK_HEADER_SIZE {
                    return Err(DecodeError::BadStreamIdentifier);
                }
            }
            0x02..=0x7f => return Err(DecodeError::ReservedChunk { chunk_type }),
            _ => {
                self.skip = len;
                return Ok(());
            }
        }
        if len == 0 {
            // Only reachable for no type (data chunks need 4 bytes, the identifier 6).
            return Ok(());
        }
        self.chunk = Some((chunk_type, len));
        Ok(())
    }

    fn finish_chunk(&mut self, chunk_type: u8, body: &[u8]) -> Result<(), DecodeError> {
        if chunk_type == TYPE_IDENTIFIER {
            if body != &STREAM_IDENTIFIER[CHUNK_HEADER_SIZE..] {
                return Err(DecodeError::BadStreamIdentifier);
            }
            self.seen_identifier = true;
            return Ok(());
        }
        let expected = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        let data = &body[CHECKSUM_SIZE..];
        self.decoded.clear();
        self.decoded_pos = 0;
        if chunk_type == TYPE_COMPRESSED {
            let n = snap::raw::decompress_len(data).map_err(DecodeError::Corrupt)?;
            if n > MAX_BLOCK_SIZE {
                return Err(DecodeError::BlockTooLarge { len: n });
            }
            self.decoded.resize(n, 0);
            if let Err(e) = self.codec.decompress(data, &mut self.decoded) {
                self.decoded.clear();
                return Err(DecodeError::Corrupt(e));
            }
        } else {
            self.decoded.extend_from_slice(data);
        }
        let actual = masked_crc(&self.decoded);
        if actual != expected {
            self.decoded.clear();
            return Err(DecodeError::Checksum { expected, actual });
        }
        Ok(())
    }

    /// Whether the input so far ends between chunks.
    pub fn at_boundary(&self) -> bool {
        self.chunk.is_none() && self.header_have == 0 && self.skip == 0
    }

    /// Call when the framed stream ends: an error if it ended inside a chunk.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.at_boundary() {
            Ok(())
        } else {
            Err(DecodeError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests;
