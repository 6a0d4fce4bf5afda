use super::*;
use proptest::prelude::*;

/// Decodes all of `wire`, fed in the given pieces.
fn decode(pieces: &[&[u8]]) -> Result<Vec<u8>, DecodeError> {
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    for piece in pieces {
        let mut input = *piece;
        loop {
            let n = dec.feed(input)?;
            input = &input[n..];
            out.extend_from_slice(dec.decoded());
            let k = dec.decoded().len();
            dec.consume(k);
            if input.is_empty() && dec.decoded().is_empty() {
                break;
            }
        }
    }
    dec.finish()?;
    Ok(out)
}

/// Incompressible bytes (xorshift32).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x1234_5678u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
    v.extend_from_slice(body);
    v
}

fn raw_chunk(data: &[u8]) -> Vec<u8> {
    let mut body = masked_crc(data).to_le_bytes().to_vec();
    body.extend_from_slice(data);
    chunk(1, &body)
}

#[test]
fn masked_crc_known_value() {
    // CRC-32C("123456789") = 0xe3069283, then masked.
    let c: u32 = 0xe306_9283;
    assert_eq!(
        masked_crc(b"123456789"),
        c.rotate_right(15).wrapping_add(0xa282_ead8)
    );
    assert_eq!(CRC32C.checksum(b"123456789"), c);
}

#[test]
fn identifier_once_then_one_chunk_per_flush() {
    let mut enc = Encoder::new();
    let mut wire = Vec::new();
    enc.encode(b"", &mut wire);
    assert!(wire.is_empty());
    enc.encode(b"abc", &mut wire);
    assert_eq!(&wire[..10], STREAM_IDENTIFIER);
    assert_eq!(&wire[10..], raw_chunk(b"abc"));
    let before = wire.len();
    enc.encode(b"xyz", &mut wire);
    assert_eq!(&wire[before..], raw_chunk(b"xyz"));
}

#[test]
fn compressed_only_when_it_saves_an_eighth() {
    let mut enc = Encoder::new();
    let mut wire = Vec::new();
    enc.encode(&[b'a'; 1000], &mut wire);
    assert_eq!(wire[10], TYPE_COMPRESSED);
    assert!(wire.len() < 10 + 8 + 875);
    // Random bytes do not compress: raw chunk.
    let mut wire = Vec::new();
    Encoder::new().encode(&noise(1000), &mut wire);
    assert_eq!(wire[10], TYPE_UNCOMPRESSED);
}

#[test]
fn large_flush_splits_at_65536() {
    let data = noise(150_000);
    let mut wire = Vec::new();
    Encoder::new().encode(&data, &mut wire);
    let mut pos = 10;
    let mut sizes = Vec::new();
    while pos < wire.len() {
        let len = u32::from_le_bytes([wire[pos + 1], wire[pos + 2], wire[pos + 3], 0]) as usize;
        sizes.push(len - 4);
        pos += 4 + len;
    }
    assert_eq!(sizes, [65536, 65536, 150_000 - 131_072]);
    assert_eq!(decode(&[&wire]).unwrap(), data);
}

#[test]
fn skippable_and_repeated_identifier() {
    let wire = [
        STREAM_IDENTIFIER.to_vec(),
        chunk(0x80, b"skip me"),
        raw_chunk(b"one"),
        STREAM_IDENTIFIER.to_vec(),
        chunk(0xfe, &[0; 100]),
        chunk(0xfe, &[]),
        raw_chunk(b"two"),
    ]
    .concat();
    assert_eq!(decode(&[&wire]).unwrap(), b"onetwo");
}

#[test]
fn malformed_chunks() {
    let id = STREAM_IDENTIFIER.to_vec();
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (
            raw_chunk(b"x"),
            DecodeError::MissingStreamIdentifier { chunk_type: 1 },
        ),
        (chunk(0xff, b"sNaPpX"), DecodeError::BadStreamIdentifier),
        (chunk(0xff, b"sNaPp"), DecodeError::BadStreamIdentifier),
        (
            [id.clone(), chunk(0x02, b"")].concat(),
            DecodeError::ReservedChunk { chunk_type: 2 },
        ),
        (
            [id.clone(), chunk(0x7f, b"")].concat(),
            DecodeError::ReservedChunk { chunk_type: 0x7f },
        ),
        (
            [id.clone(), chunk(0x01, b"abc")].concat(),
            DecodeError::ChunkTooShort {
                chunk_type: 1,
                len: 3,
            },
        ),
        (
            [id.clone(), chunk(0x00, b"")].concat(),
            DecodeError::ChunkTooShort {
                chunk_type: 0,
                len: 0,
            },
        ),
        (
            [id.clone(), chunk(0x01, &[0; 4 + 65537])].concat(),
            DecodeError::BlockTooLarge { len: 65537 },
        ),
        (
            [id.clone(), chunk(0x80, &[0; MAX_CHUNK_LEN + 1])].concat(),
            DecodeError::ChunkTooLong {
                chunk_type: 0x80,
                len: MAX_CHUNK_LEN + 1,
            },
        ),
        (
            [id.clone(), chunk(0x01, &[0, 0, 0, 0, b'a'])].concat(),
            DecodeError::Checksum {
                expected: 0,
                actual: masked_crc(b"a"),
            },
        ),
        (
            [id.clone(), raw_chunk(b"abc")[..6].to_vec()].concat(),
            DecodeError::Truncated,
        ),
    ];
    for (wire, err) in cases {
        assert_eq!(decode(&[&wire]), Err(err.clone()), "{wire:02x?}");
        // The error stays.
        let mut dec = Decoder::new();
        if dec.feed(&wire).is_err() {
            assert_eq!(dec.feed(&id), Err(err));
        }
    }
    // A compressed body that is not a snappy block.
    let mut body = masked_crc(b"").to_le_bytes().to_vec();
    body.extend_from_slice(&[0x05, 0xff, 0xff]);
    assert!(matches!(
        decode(&[&[id.clone(), chunk(0x00, &body)].concat()]),
        Err(DecodeError::Corrupt(_))
    ));
    // A compressed block claiming more than 65536 bytes.
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[0x81, 0x80, 0x04]); // varint 65537
    assert_eq!(
        decode(&[&[id, chunk(0x00, &body)].concat()]),
        Err(DecodeError::BlockTooLarge { len: 65537 })
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_any_chunking(
        flushes in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..3000),
                (any::<u8>(), 0usize..140_000).prop_map(|(b, n)| vec![b; n]),
                prop::collection::vec(0u8..4, 0..20_000),
            ],
            0..6,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        for f in &flushes {
            enc.encode(f, &mut wire);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.sort();
        let mut pieces = Vec::new();
        let mut prev = 0;
        for c in cuts.into_iter().chain([wire.len()]) {
            pieces.push(&wire[prev..c]);
            prev = c;
        }
        prop_assert_eq!(decode(&pieces).unwrap(), flushes.concat());
    }

    #[test]
    fn arbitrary_input_is_an_error_or_data(data in prop::collection::vec(any::<u8>(), 0..2000), valid_start in any::<bool>()) {
        let input = if valid_start { [STREAM_IDENTIFIER.as_slice(), &data].concat() } else { data };
        let mut dec = Decoder::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            match dec.feed(rest) {
                Ok(n) => {
                    prop_assert!(dec.decoded().len() <= MAX_BLOCK_SIZE);
                    prop_assert!(dec.body.capacity() <= MAX_CHUNK_LEN);
                    rest = &rest[n..];
                    let k = dec.decoded().len();
                    dec.consume(k);
                }
                Err(_) => break,
            }
        }
    }
}
