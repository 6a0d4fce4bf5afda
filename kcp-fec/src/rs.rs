//! The Reed-Solomon code of klauspost/reedsolomon's `New(ds, ps)` (Backblaze construction).
//!
//! Encoding matrix: the `(ds+ps) x ds` Vandermonde matrix `V[r][c] = r^c` multiplied on the
//! right by the inverse of its top `ds x ds` square, which makes it systematic (identity on
//! top). Reconstruction inverts the rows of the first `ds` present shards, as klauspost does,
//! and caches a few inverses so a steady loss pattern costs no matrix work.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::gf::{self, Kernel};

/// Largest `ds + ps` the field allows (klauspost's limit; kcp-go disables FEC above it).
pub const MAX_TOTAL_SHARDS: usize = 256;

/// Memory budget of the inverse cache in bytes; at least one entry is always kept.
const INV_CACHE_BYTES: usize = 64 * 1024;
/// Most inverses the cache keeps.
const INV_CACHE_ENTRIES: usize = 32;

/// Why a reconstruction was not possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RsError {
    /// Fewer than `ds` shards are present.
    TooFewShards,
    /// The selected rows do not form an invertible matrix (impossible for this code, kept so
    /// that no input can cause a panic).
    Singular,
}

/// A bitmap of up to 256 shard indices.
type Key = [u64; 4];

/// A Reed-Solomon codec for `ds` data and `ps` parity shards over GF(2^8).
pub(crate) struct ReedSolomon {
    ds: usize,
    ps: usize,
    /// `(ds+ps) x ds` systematic encoding matrix, row-major.
    matrix: Vec<u8>,
    kernel: Kernel,
    /// Scratch: the `ds x 2ds` augmented matrix of a Gauss-Jordan inversion.
    work: Vec<u8>,
    /// Scratch: indices of the shards a reconstruction reads.
    chosen: Vec<usize>,
    cache_keys: Vec<Option<Key>>,
    /// `cache_keys.len()` inverses of `ds x ds` bytes each.
    cache: Vec<u8>,
    cache_next: usize,
}

impl ReedSolomon {
    /// Builds the code; `ds, ps >= 1` and `ds + ps <= 256` must hold (checked by the caller).
    pub(crate) fn new(ds: usize, ps: usize) -> Result<Self, RsError> {
        let mut rs = ReedSolomon {
            ds: 0,
            ps: 0,
            matrix: Vec::new(),
            kernel: gf::kernel(),
            work: Vec::new(),
            chosen: Vec::new(),
            cache_keys: Vec::new(),
            cache: Vec::new(),
            cache_next: 0,
        };
        rs.rebuild(ds, ps)?;
        Ok(rs)
    }

    /// Rebuilds the code for new parameters, reusing the allocations where they fit.
    pub(crate) fn rebuild(&mut self, ds: usize, ps: usize) -> Result<(), RsError> {
        if ds == 0 || ps == 0 || ds + ps > MAX_TOTAL_SHARDS {
            return Err(RsError::Singular);
        }
        let total = ds + ps;
        // Vandermonde rows.
        let mut v = vec![0u8; total * ds];
        for r in 0..total {
            for c in 0..ds {
                v[r * ds + c] = gf::pow(r as u8, c);
            }
        }
        self.ds = ds;
        self.ps = ps;
        self.work.clear();
        self.work.resize(ds * ds * 2, 0);
        let mut top_inv = vec![0u8; ds * ds];
        invert(&v[..ds * ds], ds, &mut self.work, &mut top_inv)?;
        self.matrix.clear();
        self.matrix.resize(total * ds, 0);
        for r in 0..total {
            for c in 0..ds {
                let mut acc = 0u8;
                for k in 0..ds {
                    acc ^= gf::mul(v[r * ds + k], top_inv[k * ds + c]);
                }
                self.matrix[r * ds + c] = acc;
            }
        }
        self.chosen.clear();
        self.chosen.reserve(total);
        let entries = (INV_CACHE_BYTES / (ds * ds)).clamp(1, INV_CACHE_ENTRIES);
        self.cache_keys.clear();
        self.cache_keys.resize(entries, None);
        self.cache.clear();
        self.cache.resize(entries * ds * ds, 0);
        self.cache_next = 0;
        Ok(())
    }

    /// Row `r` of the encoding matrix (`ds` coefficients).
    #[cfg(test)]
    pub(crate) fn row(&self, r: usize) -> &[u8] {
        self.matrix
            .get(r * self.ds..(r + 1) * self.ds)
            .unwrap_or(&[])
    }

    /// Computes the parity shards `shards[ds..ds+ps]` from the data shards `shards[..ds]`, over
    /// the byte range `range` of each (every shard must be at least `range.end` long).
    pub(crate) fn encode(&self, shards: &mut [Vec<u8>], range: Range<usize>) {
        let ds = self.ds.min(shards.len());
        let (data, parity) = shards.split_at_mut(ds);
        let mut ins: [&[u8]; MAX_TOTAL_SHARDS] = [&[]; MAX_TOTAL_SHARDS];
        for (slot, d) in ins.iter_mut().zip(data.iter()) {
            *slot = d.get(range.clone()).unwrap_or(&[]);
        }
        let ins = ins.get(..ds).unwrap_or(&[]);
        let ps = self.ps.min(parity.len());
        for (c, chunk) in parity[..ps].chunks_mut(gf::MAX_OUTS).enumerate() {
            let n = chunk.len();
            let mut outs: [&mut [u8]; gf::MAX_OUTS] = Default::default();
            for (o, p) in outs.iter_mut().zip(chunk.iter_mut()) {
                *o = p.get_mut(range.clone()).unwrap_or(&mut []);
            }
            let first = self.ds + c * gf::MAX_OUTS;
            let rows = self
                .matrix
                .get(first * self.ds..(first + n) * self.ds)
                .unwrap_or(&[]);
            gf::matmul(self.kernel, rows, ins, &mut outs[..n]);
        }
    }

    /// Rebuilds every missing data shard (`present[k] == false`, `k < ds`) in place over
    /// `range`, from the first `ds` present shards. Missing data buffers must already be at
    /// least `range.end` long; parity shards are not rebuilt.
    pub(crate) fn reconstruct_data(
        &mut self,
        present: &[bool],
        shards: &mut [Vec<u8>],
        range: Range<usize>,
    ) -> Result<(), RsError> {
        let ds = self.ds;
        self.chosen.clear();
        for (k, _) in present.iter().enumerate().filter(|(_, p)| **p).take(ds) {
            self.chosen.push(k);
        }
        if self.chosen.len() < ds {
            return Err(RsError::TooFewShards);
        }
        if present.iter().take(ds).all(|p| *p) {
            return Ok(());
        }
        let mut key: Key = [0; 4];
        for &k in &self.chosen {
            if let Some(w) = key.get_mut(k / 64) {
                *w |= 1 << (k % 64);
            }
        }
        let slot = match self.cache_keys.iter().position(|k| *k == Some(key)) {
            Some(slot) => slot,
            None => {
                let slot = self.cache_next;
                self.cache_next = (self.cache_next + 1) % self.cache_keys.len().max(1);
                // The augmented matrix [rows of the chosen shards | identity].
                let w = 2 * ds;
                self.work.clear();
                self.work.resize(ds * w, 0);
                for (r, &k) in self.chosen.iter().enumerate() {
                    let src = self
                        .matrix
                        .get(k * ds..(k + 1) * ds)
                        .ok_or(RsError::Singular)?;
                    let dst = self
                        .work
                        .get_mut(r * w..r * w + ds)
                        .ok_or(RsError::Singular)?;
                    dst.copy_from_slice(src);
                    if let Some(one) = self.work.get_mut(r * w + ds + r) {
                        *one = 1;
                    }
                }
                let inv = self
                    .cache
                    .get_mut(slot * ds * ds..(slot + 1) * ds * ds)
                    .ok_or(RsError::Singular)?;
                let res = gauss_jordan(&mut self.work, ds, inv);
                if res.is_err() {
                    if let Some(k) = self.cache_keys.get_mut(slot) {
                        *k = None;
                    }
                    return Err(RsError::Singular);
                }
                if let Some(k) = self.cache_keys.get_mut(slot) {
                    *k = Some(key);
                }
                slot
            }
        };
        let inv = self
            .cache
            .get(slot * ds * ds..(slot + 1) * ds * ds)
            .ok_or(RsError::Singular)?;
        // Rebuild the missing data shards, up to MAX_OUTS per pass: move them out of `shards`
        // so the present ones can be borrowed as inputs.
        let mut missing = (0..ds)
            .filter(|d| !present.get(*d).copied().unwrap_or(true))
            .peekable();
        while missing.peek().is_some() {
            let mut idx = [0usize; gf::MAX_OUTS];
            let mut taken: [Vec<u8>; gf::MAX_OUTS] = Default::default();
            let mut coefs = [0u8; gf::MAX_OUTS * MAX_TOTAL_SHARDS];
            let mut n = 0;
            for d in missing.by_ref().take(gf::MAX_OUTS) {
                idx[n] = d;
                if let Some(buf) = shards.get_mut(d) {
                    taken[n] = core::mem::take(buf);
                }
                if let (Some(dst), Some(src)) = (
                    coefs.get_mut(n * ds..(n + 1) * ds),
                    inv.get(d * ds..(d + 1) * ds),
                ) {
                    dst.copy_from_slice(src);
                }
                n += 1;
            }
            let mut ins: [&[u8]; MAX_TOTAL_SHARDS] = [&[]; MAX_TOTAL_SHARDS];
            for (slot, &k) in ins.iter_mut().zip(self.chosen.iter()) {
                *slot = shards
                    .get(k)
                    .and_then(|s| s.get(range.clone()))
                    .unwrap_or(&[]);
            }
            let mut outs: [&mut [u8]; gf::MAX_OUTS] = Default::default();
            for (o, t) in outs.iter_mut().zip(taken.iter_mut()) {
                *o = t.get_mut(range.clone()).unwrap_or(&mut []);
            }
            gf::matmul(self.kernel, &coefs[..n * ds], &ins[..ds], &mut outs[..n]);
            for (t, &d) in taken.iter_mut().zip(idx.iter()).take(n) {
                if let Some(buf) = shards.get_mut(d) {
                    *buf = core::mem::take(t);
                }
            }
        }
        Ok(())
    }
}

/// Inverts the `n x n` matrix `m` into `out`, using `work` (`n x 2n`) as scratch.
fn invert(m: &[u8], n: usize, work: &mut [u8], out: &mut [u8]) -> Result<(), RsError> {
    work.fill(0);
    for r in 0..n {
        for c in 0..n {
            work[r * 2 * n + c] = m[r * n + c];
        }
        work[r * 2 * n + n + r] = 1;
    }
    gauss_jordan(work, n, out)
}

/// Gauss-Jordan elimination on the augmented `n x 2n` matrix in `work`; writes the right half
/// (the inverse of the left half) into `out`.
fn gauss_jordan(work: &mut [u8], n: usize, out: &mut [u8]) -> Result<(), RsError> {
    let w = 2 * n;
    for col in 0..n {
        let pivot = (col..n)
            .find(|&r| work[r * w + col] != 0)
            .ok_or(RsError::Singular)?;
        if pivot != col {
            for c in 0..w {
                work.swap(pivot * w + c, col * w + c);
            }
        }
        let scale = gf::inv(work[col * w + col]).ok_or(RsError::Singular)?;
        for c in 0..w {
            work[col * w + c] = gf::mul(work[col * w + c], scale);
        }
        for r in 0..n {
            let f = work[r * w + col];
            if r == col || f == 0 {
                continue;
            }
            for c in 0..w {
                let v = gf::mul(f, work[col * w + c]);
                work[r * w + c] ^= v;
            }
        }
    }
    for r in 0..n {
        out[r * n..(r + 1) * n].copy_from_slice(&work[r * w + n..r * w + 2 * n]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parity_rows(ds: usize, ps: usize) -> Vec<Vec<u8>> {
        let rs = ReedSolomon::new(ds, ps).unwrap();
        (ds..ds + ps).map(|r| rs.row(r).to_vec()).collect()
    }

    #[test]
    fn parity_rows_match_kcp_spec_4_3() {
        assert_eq!(parity_rows(3, 2), [vec![1, 1, 1], vec![0x0f, 0x08, 0x06]]);
        assert_eq!(
            parity_rows(10, 3),
            [
                vec![0x81, 0x96, 0xaf, 0xb8, 0xd2, 0xc4, 0xfe, 0xe8, 0x03, 0x02],
                vec![0x96, 0x81, 0xb8, 0xaf, 0xc4, 0xd2, 0xe8, 0xfe, 0x02, 0x03],
                vec![0xbf, 0xd6, 0x62, 0x0a, 0x06, 0x6f, 0xdf, 0xb7, 0x05, 0x04],
            ]
        );
        assert_eq!(parity_rows(2, 1), [vec![3, 2]]);
        assert_eq!(parity_rows(1, 1), [vec![1]]);
        assert_eq!(
            parity_rows(4, 2),
            [vec![0x1b, 0x1c, 0x12, 0x14], vec![0x1c, 0x1b, 0x14, 0x12]]
        );
    }

    #[test]
    fn top_is_identity() {
        let rs = ReedSolomon::new(5, 3).unwrap();
        for r in 0..5 {
            for c in 0..5 {
                assert_eq!(rs.row(r)[c], u8::from(r == c));
            }
        }
    }

    #[test]
    fn largest_code_builds() {
        assert!(ReedSolomon::new(128, 128).is_ok());
        assert!(ReedSolomon::new(255, 1).is_ok());
    }
}
