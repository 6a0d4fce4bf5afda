//! Session: an engine plus a codec stack, with kcp-go's MTU arithmetic and layer order.

use std::ops::Range;

use kcp_core::sim::scenario::{lossy, Transfer, START};
use kcp_core::{Codec, CodecError, Config, Layer, LayerCounters, Millis, Session};

/// A test layer: a 4-byte tag in front, a 2-byte trailer; rejects anything else.
struct Tag([u8; 4]);

impl Codec for Tag {
    fn header_len(&self) -> usize {
        4
    }
    fn trailer_len(&self) -> usize {
        2
    }
    fn seal(&mut self, buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        if buf.len() < len + 2 {
            return Err(CodecError::BufferTooSmall);
        }
        buf[..4].copy_from_slice(&self.0);
        buf[len..len + 2].copy_from_slice(&[0xEE, 0xFF]);
        Ok(len + 2)
    }
    fn open(&mut self, buf: &mut [u8], _now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        if buf.len() < 6 {
            return Err(CodecError::Truncated);
        }
        if buf[..4] != self.0 || buf[buf.len() - 2..] != [0xEE, 0xFF] {
            return Err(CodecError::Integrity);
        }
        Ok(Some(4..buf.len() - 2))
    }
}

fn layers() -> Vec<Layer> {
    vec![Box::new(Tag(*b"in__")), Box::new(Tag(*b"out_"))]
}

#[test]
fn mss_leaves_room_for_every_layer() {
    let s = Session::new(1, Config::default(), layers(), START).unwrap();
    // 1400 - 24 - (4 + 4) - (2 + 2)
    assert_eq!(s.kcp().mss(), 1364);
}

#[test]
fn layers_wrap_innermost_first_and_datagrams_fit_the_mtu() {
    let mut s = Session::new(1, Config::fast3(), layers(), START).unwrap();
    s.kcp_mut().send(&[7u8; 5000]).unwrap();
    let mut buf = [0u8; 1400];
    let mut n_out = 0;
    while let Some(n) = s.poll_transmit(START, &mut buf) {
        n_out += 1;
        assert!(n <= 1400);
        assert_eq!(&buf[..4], b"out_");
        assert_eq!(&buf[4..8], b"in__");
        assert_eq!(&buf[n - 4..n], &[0xEE, 0xFF, 0xEE, 0xFF]);
        let mut peer = Session::new(1, Config::fast3(), layers(), START).unwrap();
        peer.handle_datagram(START, &mut buf[..n]).unwrap();
    }
    assert!(n_out >= 4);
}

#[test]
fn rejected_datagrams_are_typed_and_counted() {
    let mut s = Session::new(1, Config::fast3(), layers(), START).unwrap();
    let mut junk = [0u8; 40];
    assert!(matches!(
        s.handle_datagram(START, &mut junk),
        Err(kcp_core::SessionError::Codec(CodecError::Integrity))
    ));
    let mut short = [0u8; 3];
    assert!(s.handle_datagram(START, &mut short).is_err());
    assert_eq!(s.stats().in_csum_errors, 1);
    assert_eq!(s.stats().in_codec_errors, 1);
}

#[test]
fn sessions_transfer_over_a_lossy_link() {
    let r = Transfer {
        config: Config::fast3(),
        link: lossy(0.1),
        seed: 3,
        bytes: 300_000,
        max_msg: 4000,
        limit_ms: 300_000,
    }
    .run_with(|cfg| Session::new(5, cfg, layers(), START).unwrap());
    assert!(r.completed);
}

#[test]
fn strided_transmit_matches_one_at_a_time() {
    let mk = || {
        let mut s = Session::new(1, Config::fast3(), layers(), START).unwrap();
        s.kcp_mut().send(&[3u8; 20_000]).unwrap();
        s
    };
    let mut one = mk();
    let mut singles = Vec::new();
    let mut buf = [0u8; 1400];
    while let Some(n) = one.poll_transmit(START, &mut buf) {
        singles.push(buf[..n].to_vec());
    }
    let mut many = mk();
    let stride = 1500;
    let mut region = vec![0u8; 4 * stride];
    let mut lens = [0usize; 4];
    let mut batched = Vec::new();
    loop {
        let n = many.poll_transmit_strided(START, &mut region, stride, &mut lens);
        if n == 0 {
            break;
        }
        assert!(n <= 4);
        for (i, &len) in lens[..n].iter().enumerate() {
            batched.push(region[i * stride..i * stride + len].to_vec());
        }
    }
    assert!(singles.len() > 8);
    assert_eq!(batched, singles);
    assert_eq!(many.stats().out_pkts, one.stats().out_pkts);
}

/// A pass-through layer that reports fixed counters.
struct Reports(LayerCounters);

impl Codec for Reports {
    fn header_len(&self) -> usize {
        0
    }
    fn seal(&mut self, _buf: &mut [u8], len: usize, _now: Millis) -> Result<usize, CodecError> {
        Ok(len)
    }
    fn open(&mut self, buf: &mut [u8], _now: Millis) -> Result<Option<Range<usize>>, CodecError> {
        Ok(Some(0..buf.len()))
    }
    fn add_counters(&self, into: &mut LayerCounters) {
        into.add(&self.0);
    }
}

#[test]
fn layer_counters_sum_every_layer_of_the_stack() {
    let mut a = LayerCounters::default();
    a.fec_parity_shards = 3;
    a.crypto_replays = 1;
    let mut b = LayerCounters::default();
    b.fec_parity_shards = 4;
    b.crypto_key_cache_misses = 9;
    let stack: Vec<Layer> = vec![
        Box::new(Reports(a)),
        Box::new(Tag(*b"tag_")),
        Box::new(Reports(b)),
    ];
    let s = Session::new(1, Config::default(), stack, START).unwrap();
    let c = s.layer_counters();
    assert_eq!(c.fec_parity_shards, 7);
    assert_eq!(c.crypto_replays, 1);
    assert_eq!(c.crypto_key_cache_misses, 9);
    // Everything else stays 0 (the tag layer reports nothing).
    let mut expected = a;
    expected.add(&b);
    assert_eq!(c, expected);
    let plain = Session::new(1, Config::default(), layers(), START).unwrap();
    assert_eq!(plain.layer_counters(), LayerCounters::default());
}
