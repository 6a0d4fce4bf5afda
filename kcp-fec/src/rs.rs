//! Reed-Solomon reconstruction: inverts the rows of the first `ds` present shards, as klauspost
//! does, and caches a few inverses per erasure pattern so a steady loss pattern costs no
//! matrix work. The cache and the inversion scratch are given back by [`Inverses::trim`].

use alloc::vec::Vec;
use core::ops::Range;

use crate::code::{FecCode, MAX_TOTAL_SHARDS};
use crate::gf::{self, Kernel};

/// Memory budget of the inverse cache in bytes; at least one entry is always kept.
const INV_CACHE_BYTES: usize = 16 * 1024;
/// Most inverses the cache keeps.
const INV_CACHE_ENTRIES: usize = 32;

/// Why a reconstruction was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RsError {
    /// Fewer than `ds` shards are present.
    TooFewShards,
    /// The selected rows do not form an invertible matrix (impossible for this code, kept so
    /// that no input can cause a panic).
    Singular,
    /// The work it needs (inside) is above the allowance the caller gave.
    OverBudget(u64),
}

/// A bitmap of up to 256 shard indices.
type Key = [u64; 4];

/// Nominal multiply-accumulates of inverting an `n x n` matrix by Gauss-Jordan elimination on
/// the augmented `n x 2n` matrix.
pub(crate) fn inversion_work(n: usize) -> u64 {
    2 * (n as u64).pow(3)
}

/// The rows a reconstruction reads and whether their inverse is cached.
struct Plan {
    /// Indices of the shards read (each below 256).
    chosen: [u8; MAX_TOTAL_SHARDS],
    n: usize,
    key: Key,
    missing: usize,
    cached: Option<usize>,
}

impl Plan {
    fn work(&self, ds: usize, len: usize) -> u64 {
        if self.missing == 0 {
            return 0;
        }
        let product = (self.missing * ds * len) as u64;
        product
            + if self.cached.is_some() {
                0
            } else {
                inversion_work(ds)
            }
    }
}

/// Decode-side scratch for one code: cached inverses and the elimination matrix.
#[derive(Default)]
pub(crate) struct Inverses {
    /// `ds` the entries were computed for.
    ds: usize,
    keys: Vec<Key>,
    /// `keys.len()` inverses of `ds x ds` bytes each.
    data: Vec<u8>,
    next: usize,
    /// The `ds x 2ds` augmented matrix of an inversion.
    work: Vec<u8>,
}

impl Inverses {
    /// Forgets every inverse (the code changed).
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.data.clear();
        self.next = 0;
    }

    /// Gives every buffer back.
    pub(crate) fn trim(&mut self) {
        *self = Inverses::default();
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.keys.capacity() * core::mem::size_of::<Key>()
            + self.data.capacity()
            + self.work.capacity()
    }

    /// Upper bound of [`heap_bytes`](Self::heap_bytes) for codes of at most `ds` data shards.
    pub(crate) fn heap_bound(ds: usize) -> usize {
        (1..=ds)
            .map(|d| {
                let sq = d * d;
                Self::entries(d) * (core::mem::size_of::<Key>() + sq) + 2 * sq
            })
            .max()
            .unwrap_or(0)
    }

    fn entries(ds: usize) -> usize {
        (INV_CACHE_BYTES / (ds * ds).max(1)).clamp(1, INV_CACHE_ENTRIES)
    }

    /// What [`reconstruct_data`](Self::reconstruct_data) would cost now for a (ds, _) code
    /// and shards of `len` bytes, without doing it.
    pub(crate) fn work_for(&self, ds: usize, present: &[bool], len: usize) -> Result<u64, RsError> {
        self.plan(ds, present).map(|p| p.work(ds, len))
    }

    fn plan(&self, ds: usize, present: &[bool]) -> Result<Plan, RsError> {
        let mut plan = Plan {
            chosen: [0; MAX_TOTAL_SHARDS],
            n: 0,
            key: [0; 4],
            missing: 0,
            cached: None,
        };
        for (k, _) in present.iter().enumerate().filter(|(_, p)| **p).take(ds) {
            if let Some(c) = plan.chosen.get_mut(plan.n) {
                *c = k as u8;
                plan.n += 1;
            }
            if let Some(w) = plan.key.get_mut(k / 64) {
                *w |= 1 << (k % 64);
            }
        }
        if plan.n < ds {
            return Err(RsError::TooFewShards);
        }
        plan.missing = (0..ds)
            .filter(|d| !present.get(*d).copied().unwrap_or(true))
            .count();
        if self.ds == ds {
            plan.cached = self.keys.iter().position(|k| *k == plan.key);
        }
        Ok(plan)
    }

    /// Rebuilds every missing data shard (`present[k] == false`, `k < ds`) in place over
    /// `range`, from the first `ds` present shards, if that costs at most `allowance`
    /// multiply-accumulates; returns what it cost. Missing data buffers must already be at
    /// least `range.end` long; present ones may be shorter (they count as zero-padded).
    /// Parity shards are not rebuilt.
    pub(crate) fn reconstruct_data(
        &mut self,
        code: &FecCode,
        present: &[bool],
        shards: &mut [Vec<u8>],
        range: Range<usize>,
        allowance: u64,
    ) -> Result<u64, RsError> {
        let (ds, _) = code.shards();
        let plan = self.plan(ds, present)?;
        if plan.missing == 0 {
            return Ok(0);
        }
        let work = plan.work(ds, range.len());
        if work > allowance {
            return Err(RsError::OverBudget(work));
        }
        if self.ds != ds {
            self.clear();
            self.ds = ds;
        }
        let chosen = plan.chosen.get(..plan.n).unwrap_or(&[]);
        let slot = match plan.cached {
            Some(slot) => slot,
            None => self.invert_into_cache(code, chosen, plan.key)?,
        };
        let sq = ds * ds;
        let inv = self
            .data
            .get(slot * sq..(slot + 1) * sq)
            .ok_or(RsError::Singular)?;
        let kernel = code.kernel();
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
            for (slot, &k) in ins.iter_mut().zip(chosen.iter()) {
                // Present shards may be shorter than `range`: read as zero-padded.
                *slot = shards
                    .get(usize::from(k))
                    .and_then(|s| s.get(range.start.min(s.len())..range.end.min(s.len())))
                    .unwrap_or(&[]);
            }
            let mut outs: [&mut [u8]; gf::MAX_OUTS] = Default::default();
            for (o, t) in outs.iter_mut().zip(taken.iter_mut()) {
                *o = t.get_mut(range.clone()).unwrap_or(&mut []);
            }
            gf::matmul_padded(kernel, &coefs[..n * ds], &ins[..ds], &mut outs[..n]);
            for (t, &d) in taken.iter_mut().zip(idx.iter()).take(n) {
                if let Some(buf) = shards.get_mut(d) {
                    *buf = core::mem::take(t);
                }
            }
        }
        Ok(work)
    }

    /// Inverts the rows `chosen` of the encoding matrix into a cache slot; returns the slot.
    fn invert_into_cache(
        &mut self,
        code: &FecCode,
        chosen: &[u8],
        key: Key,
    ) -> Result<usize, RsError> {
        let ds = chosen.len();
        let sq = ds * ds;
        let w = 2 * ds;
        let entries = Self::entries(ds);
        let slot = if self.keys.len() < entries {
            // The whole cache at once (16 KiB at most), so that it is allocated once while
            // traffic flows; `trim` gives it back.
            if self.keys.capacity() < entries {
                self.keys.reserve_exact(entries - self.keys.len());
                self.data.reserve_exact(entries * sq - self.data.len());
            }
            self.keys.push([!0; 4]);
            self.data.resize(self.keys.len() * sq, 0);
            self.keys.len() - 1
        } else {
            let s = self.next % entries;
            self.next = (s + 1) % entries;
            s
        };
        if self.work.len() != ds * w {
            self.work.clear();
            self.work.reserve_exact(ds * w);
            self.work.resize(ds * w, 0);
        }
        // The augmented matrix [rows of the chosen shards | identity].
        self.work.fill(0);
        for (r, &k) in chosen.iter().enumerate() {
            let k = usize::from(k);
            let row = self
                .work
                .get_mut(r * w..r * w + ds)
                .ok_or(RsError::Singular)?;
            match code.parity_row(k) {
                Some(src) => row.copy_from_slice(src),
                None => {
                    if let Some(one) = row.get_mut(k) {
                        *one = 1;
                    }
                }
            }
            if let Some(one) = self.work.get_mut(r * w + ds + r) {
                *one = 1;
            }
        }
        let inv = self
            .data
            .get_mut(slot * sq..(slot + 1) * sq)
            .ok_or(RsError::Singular)?;
        let res = gauss_jordan(code.kernel(), &mut self.work, ds, inv);
        if let Some(k) = self.keys.get_mut(slot) {
            *k = if res.is_ok() { key } else { [!0; 4] };
        }
        res.map(|()| slot)
    }
}

/// Inverts the `n x n` matrix `m` into `out`, using `work` (`n x 2n`) as scratch.
#[cfg(test)]
fn invert(
    kernel: Kernel,
    m: &[u8],
    n: usize,
    work: &mut [u8],
    out: &mut [u8],
) -> Result<(), RsError> {
    work.fill(0);
    for (r, src) in m.chunks_exact(n.max(1)).take(n).enumerate() {
        let row = work
            .get_mut(r * 2 * n..(r + 1) * 2 * n)
            .ok_or(RsError::Singular)?;
        row[..n].copy_from_slice(src);
        row[n + r] = 1;
    }
    gauss_jordan(kernel, work, n, out)
}

/// Gauss-Jordan elimination on the augmented `n x 2n` matrix in `work`; writes the right half
/// (the inverse of the left half) into `out`.
fn gauss_jordan(kernel: Kernel, work: &mut [u8], n: usize, out: &mut [u8]) -> Result<(), RsError> {
    if out.len() < n * n {
        return Err(RsError::Singular);
    }
    gauss_jordan_in_place(kernel, work, n)?;
    let w = 2 * n;
    for (dst, row) in out.chunks_exact_mut(n).zip(work.chunks_exact(w)) {
        dst.copy_from_slice(&row[n..]);
    }
    Ok(())
}

/// Gauss-Jordan elimination on the augmented `n x 2n` matrix in `work`, which leaves the
/// inverse of the left half in the right half. Row operations run on the GF(2^8) kernel.
pub(crate) fn gauss_jordan_in_place(
    kernel: Kernel,
    work: &mut [u8],
    n: usize,
) -> Result<(), RsError> {
    let w = 2 * n;
    if n == 0 || n > MAX_TOTAL_SHARDS || work.len() < n * w {
        return Err(RsError::Singular);
    }
    let mut pivot_row = [0u8; 2 * MAX_TOTAL_SHARDS];
    for col in 0..n {
        let pivot = (col..n)
            .find(|&r| work[r * w + col] != 0)
            .ok_or(RsError::Singular)?;
        if pivot != col {
            let (upper, lower) = work.split_at_mut(pivot * w);
            upper[col * w..col * w + w].swap_with_slice(&mut lower[..w]);
        }
        let scale = gf::inv(work[col * w + col]).ok_or(RsError::Singular)?;
        // Columns left of `col` are zero in the pivot row: work on `col..w` only.
        let span = w - col;
        let prow = &mut pivot_row[..span];
        gf::mul_with(
            kernel,
            scale,
            &work[col * w + col..col * w + w],
            prow,
            false,
        );
        work[col * w + col..col * w + w].copy_from_slice(prow);
        for r in 0..n {
            let f = work[r * w + col];
            if r == col || f == 0 {
                continue;
            }
            gf::mul_with(kernel, f, prow, &mut work[r * w + col..r * w + w], true);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn inversion_gives_the_identity_back() {
        for n in [1usize, 2, 5, 17, 40] {
            let m: Vec<u8> = (0..n * n)
                .map(|i| gf::pow((i / n + 1) as u8, i % n))
                .collect();
            let mut work = vec![0u8; 2 * n * n];
            let mut inv = vec![0u8; n * n];
            for k in [Kernel::Table, gf::kernel()] {
                invert(k, &m, n, &mut work, &mut inv).unwrap();
                for r in 0..n {
                    for c in 0..n {
                        let mut acc = 0u8;
                        for x in 0..n {
                            acc ^= gf::mul(m[r * n + x], inv[x * n + c]);
                        }
                        assert_eq!(acc, u8::from(r == c), "{k:?} n={n} ({r},{c})");
                    }
                }
            }
        }
    }

    #[test]
    fn a_singular_matrix_is_an_error_not_a_panic() {
        let m = [1u8, 2, 1, 2];
        let mut work = [0u8; 8];
        let mut inv = [0u8; 4];
        assert_eq!(
            invert(Kernel::Table, &m, 2, &mut work, &mut inv),
            Err(RsError::Singular)
        );
    }

    #[test]
    fn reconstruction_over_its_allowance_does_nothing() {
        let code = FecCode::new(3, 2).unwrap();
        let mut inv = Inverses::default();
        let mut shards = vec![vec![1u8; 10], vec![0u8; 10], vec![3u8; 10], vec![7u8; 10]];
        let present = [true, false, true, true, false];
        let need = 3 * 10 + inversion_work(3);
        assert_eq!(
            inv.reconstruct_data(&code, &present, &mut shards, 0..10, need - 1),
            Err(RsError::OverBudget(need))
        );
        assert_eq!(shards[1], vec![0u8; 10]);
        assert_eq!(inv.heap_bytes(), 0);
        assert_eq!(
            inv.reconstruct_data(&code, &present, &mut shards, 0..10, need),
            Ok(need)
        );
        // The inverse is cached now: only the product is paid.
        assert_eq!(
            inv.reconstruct_data(&code, &present, &mut shards, 0..10, 30),
            Ok(30)
        );
        assert!(inv.heap_bytes() <= Inverses::heap_bound(3));
        inv.trim();
        assert_eq!(inv.heap_bytes(), 0);
    }
}
