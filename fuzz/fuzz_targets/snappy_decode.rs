//! The snappy framing decoder on arbitrary input cut at arbitrary points, and a round trip
//! through the encoder.
//!
//! Asserts: no panic; decoded bytes never exceed one block (65536) and the body buffer one
//! chunk; a decoder that failed keeps failing; and data encoded by `Encoder` (flushes cut
//! from the input) decodes back to the same bytes, whatever the cuts.
//!
//! Input: byte 0 selects raw decoding (even) or a round trip (odd); byte 1 seeds the cuts.
#![no_main]

use kcp_mio::snappy::{Decoder, Encoder, MAX_BLOCK_SIZE, STREAM_IDENTIFIER};
use kcp_testkit::rng::Rng;
use libfuzzer_sys::fuzz_target;

/// Piece lengths from a seed: 1 to 300 bytes, sometimes large.
fn piece_len(rng: &mut Rng) -> usize {
    if rng.below(8) == 0 {
        1 + rng.below(100_000) as usize
    } else {
        1 + rng.below(300) as usize
    }
}

fn decode(input: &[u8], seed: u32) -> Result<Vec<u8>, ()> {
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    let mut x = Rng::new(u64::from(seed));
    let mut pos = 0;
    while pos < input.len() {
        let end = (pos + piece_len(&mut x)).min(input.len());
        let mut piece = &input[pos..end];
        pos = end;
        while !piece.is_empty() {
            match dec.feed(piece) {
                Ok(n) => {
                    assert!(n <= piece.len());
                    assert!(dec.decoded().len() <= MAX_BLOCK_SIZE);
                    assert!(n > 0 || !dec.decoded().is_empty(), "no progress");
                    piece = &piece[n..];
                    out.extend_from_slice(dec.decoded());
                    let k = dec.decoded().len();
                    dec.consume(k);
                }
                Err(e) => {
                    assert_eq!(dec.feed(b"x"), Err(e.clone()));
                    assert_eq!(dec.finish(), Err(e));
                    return Err(());
                }
            }
        }
    }
    dec.finish().map_err(|_| ())?;
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    if mode & 1 == 0 {
        // Half the time behind a valid identifier, so the chunk parser is reached.
        let input = if mode & 2 == 0 {
            [STREAM_IDENTIFIER.as_slice(), rest].concat()
        } else {
            rest.to_vec()
        };
        let _ = decode(&input, *seed as u32 * 0x0101_0101);
    } else {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        let mut x = Rng::new(u64::from(*seed));
        let mut pos = 0;
        // Flushes cut from the input; large inputs are repeated to cross the block size.
        let repeat = if mode & 2 == 0 {
            1
        } else {
            1 + 70_000 / rest.len().max(1)
        };
        let plain: Vec<u8> = rest
            .iter()
            .copied()
            .cycle()
            .take(rest.len() * repeat)
            .collect();
        while pos < plain.len() {
            let end = (pos + piece_len(&mut x) * 7).min(plain.len());
            enc.encode(&plain[pos..end], &mut wire);
            pos = end;
        }
        assert_eq!(decode(&wire, *seed as u32 ^ 0x5555_5555).unwrap(), plain);
    }
});
