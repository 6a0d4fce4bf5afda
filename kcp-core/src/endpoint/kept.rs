//! What a half-open entry keeps of the datagrams it receives: a store of records, each the
//! datagram as the demux layers opened it (to be opened by the session's inner layers at
//! confirmation) or bare KCP segments (for the engine), behind a 12-byte header of its
//! length and where its KCP datagram lies. The entry's admission rules are in
//! `half_open/`; this is only the format and what fits in a budget.

use alloc::vec::Vec;
use core::ops::Range;

use crate::wire::{Command, Datagram, HEADER_LEN};

/// Bytes in front of each record: the record's length (its top bit
/// set for a whole datagram), and where its KCP datagram lies in it (start, end).
pub(super) const RECORD_HEADER: usize = 12;
/// The top bit of a record's length: the record is the datagram as the demux layers opened
/// it (delivered through the session's inner layers), not bare KCP segments.
pub(super) const WHOLE: u32 = 1 << 31;

/// One datagram a half-open entry keeps.
pub(super) struct Kept {
    /// The record's bytes in the entry's store.
    pub(super) bytes: Range<usize>,
    /// Where its KCP datagram lies, relative to `bytes`.
    pub(super) kcp: Range<usize>,
    /// `bytes` is the whole opened datagram, to be opened by the session's inner layers;
    /// otherwise bare KCP segments for the engine.
    pub(super) whole: bool,
}

/// The record of `stored` that starts at `at`.
pub(super) fn record_at(stored: &[u8], at: usize) -> Option<Kept> {
    let head = stored.get(at..at + RECORD_HEADER)?;
    let word = |i: usize| {
        let b: [u8; 4] = head
            .get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 4]);
        u32::from_le_bytes(b)
    };
    let (len, start, end) = (word(0), word(4) as usize, word(8) as usize);
    let n = (len & !WHOLE) as usize;
    let bytes = at + RECORD_HEADER..at + RECORD_HEADER + n;
    let start = start.min(n);
    Some(Kept {
        bytes,
        kcp: start..end.clamp(start, n),
        whole: len & WHOLE != 0,
    })
}

/// The records of `stored`, in the order they were kept.
pub(super) fn records(stored: &[u8]) -> impl Iterator<Item = Kept> + '_ {
    let mut at = 0;
    core::iter::from_fn(move || {
        let k = record_at(stored, at)?;
        at = k.bytes.end;
        Some(k)
    })
}

/// The KCP parts of every record of `stored`.
pub(super) fn kept_kcp(stored: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    records(stored).map(move |k| {
        stored
            .get(k.bytes)
            .and_then(|b| b.get(k.kcp))
            .unwrap_or(&[])
    })
}

/// Appends a record of `bytes` (its KCP datagram at `kcp`) to `stored`; `whole` as in
/// [`Kept`]. The record takes `RECORD_HEADER + bytes.len()` bytes; the caller checks the
/// budgets. A packet of 2 GiB or more (no datagram) is not kept.
pub(super) fn push_record(stored: &mut Vec<u8>, whole: bool, bytes: &[u8], kcp: Range<usize>) {
    let Ok(len) = u32::try_from(bytes.len()) else {
        return;
    };
    if len >= WHOLE {
        return;
    }
    let len = len | if whole { WHOLE } else { 0 };
    stored.reserve_exact(RECORD_HEADER + bytes.len());
    stored.extend_from_slice(&len.to_le_bytes());
    stored.extend_from_slice(&(kcp.start as u32).to_le_bytes());
    stored.extend_from_slice(&(kcp.end as u32).to_le_bytes());
    stored.extend_from_slice(bytes);
}

/// What an entry keeps of one datagram, within `budget` bytes of records.
pub(super) enum Keep<'a> {
    /// The whole opened datagram.
    Whole,
    /// These bare segments.
    Segments(&'a [u8]),
    /// Nothing.
    Nothing,
}

impl Keep<'_> {
    /// The record's size in `stored`.
    pub(super) fn cost(&self, plain_len: usize) -> usize {
        match self {
            Keep::Whole => RECORD_HEADER + plain_len,
            Keep::Segments(s) => RECORD_HEADER + s.len(),
            Keep::Nothing => 0,
        }
    }
}

/// A first flight kept within `budget`: whole if it fits, else its leading whole segments.
pub(super) fn keep_first(plain_len: usize, kcp: &[u8], budget: usize) -> Keep<'_> {
    if RECORD_HEADER + plain_len <= budget {
        return Keep::Whole;
    }
    match keep_segments(kcp, budget.saturating_sub(RECORD_HEADER)) {
        [] => Keep::Nothing,
        s => Keep::Segments(s),
    }
}

/// The leading whole segments of `kcp` that fit in `budget` bytes.
pub(super) fn keep_segments(kcp: &[u8], budget: usize) -> &[u8] {
    let mut used = 0;
    for (_, payload) in Datagram::new(kcp).map_while(Result::ok) {
        let n = HEADER_LEN + payload.len();
        if used + n > budget {
            break;
        }
        used += n;
    }
    kcp.get(..used).unwrap_or(&[])
}

/// The PUSH segments of `kcp` whose sequence numbers the records of `stored` do not hold
/// yet, in order, as many whole segments as fit in `budget` bytes (a retransmission adds
/// nothing).
pub(super) fn new_pushes(kcp: &[u8], stored: &[u8], budget: usize) -> Vec<u8> {
    // The kept sequence numbers, gathered once when the datagram has a PUSH: a scan of the
    // records per segment cost a peer's datagram of 60 tiny segments 60 passes over up to
    // `half_open_bytes` of records.
    let mut known: Option<Vec<u32>> = None;
    let mut out = Vec::new();
    let mut at = 0;
    for (seg, payload) in Datagram::new(kcp).map_while(Result::ok) {
        let n = HEADER_LEN + payload.len();
        let whole = kcp.get(at..at + n).unwrap_or(&[]);
        at += n;
        if seg.cmd != Command::Push || out.len() + n > budget {
            continue;
        }
        let known = known.get_or_insert_with(|| {
            let mut sns: Vec<u32> = kept_kcp(stored)
                .flat_map(|part| Datagram::new(part).map_while(Result::ok))
                .filter(|(s, _)| s.cmd == Command::Push)
                .map(|(s, _)| s.sn)
                .collect();
            sns.sort_unstable();
            sns
        });
        if known.binary_search(&seg.sn).is_err() {
            out.extend_from_slice(whole);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SegmentRepr;

    #[test]
    fn kept_segments_are_whole_and_within_the_budget() {
        let mut d = alloc::vec![0u8; 3 * (HEADER_LEN + 10)];
        for i in 0..3 {
            SegmentRepr {
                conv: 1,
                cmd: Command::Push,
                frg: 0,
                wnd: 32,
                ts: 0,
                sn: i as u32,
                una: 0,
                len: 10,
            }
            .emit(&mut d[i * (HEADER_LEN + 10)..])
            .unwrap();
        }
        assert_eq!(keep_segments(&d, 1000).len(), d.len());
        assert_eq!(keep_segments(&d, 2 * 34 + 33).len(), 2 * 34);
        assert!(keep_segments(&d, 33).is_empty());
    }

    #[test]
    fn records_keep_whole_datagrams_and_bare_segments_in_order() {
        let mut kcp = alloc::vec![0u8; HEADER_LEN + 3];
        SegmentRepr {
            conv: 9,
            cmd: Command::Push,
            frg: 0,
            wnd: 32,
            ts: 0,
            sn: 4,
            una: 0,
            len: 3,
        }
        .emit(&mut kcp)
        .unwrap();
        // An 8-byte inner header in front of the KCP datagram, as FEC writes it.
        let mut wrapped = alloc::vec![0xf1u8; 8];
        wrapped.extend_from_slice(&kcp);
        let mut stored = Vec::new();
        push_record(&mut stored, true, &wrapped, 8..wrapped.len());
        push_record(&mut stored, false, &kcp, 0..kcp.len());
        push_record(&mut stored, true, &[0xf2; 20], 20..20);
        assert_eq!(
            stored.len(),
            3 * RECORD_HEADER + wrapped.len() + kcp.len() + 20
        );
        let kept: Vec<Kept> = records(&stored).collect();
        assert_eq!(kept.len(), 3);
        assert!(kept[0].whole && !kept[1].whole && kept[2].whole);
        assert_eq!(&stored[kept[0].bytes.clone()], &wrapped[..]);
        let parts: Vec<&[u8]> = kept_kcp(&stored).collect();
        assert_eq!(parts, [&kcp[..], &kcp[..], &[][..]]);
        // The segment is known from either record: a retransmission of it adds nothing.
        assert!(new_pushes(&kcp, &stored, 1000).is_empty());
        assert_eq!(new_pushes(&kcp, &[], 1000), kcp);
        // A truncated buffer ends the records; it never reads past them.
        assert_eq!(records(&stored[..RECORD_HEADER + 3]).count(), 1);
        assert_eq!(kept_kcp(&stored[..RECORD_HEADER + 3]).next(), Some(&[][..]));
    }

    #[test]
    fn a_first_flight_is_kept_whole_or_by_its_leading_segments() {
        let kcp = [0u8; 50];
        assert!(matches!(keep_first(58, &kcp, 70), Keep::Whole));
        assert_eq!(keep_first(58, &kcp, 70).cost(58), 70);
        // Not whole: no whole segment in 50 zero bytes either.
        assert!(matches!(keep_first(58, &kcp, 69), Keep::Nothing));
    }
}
