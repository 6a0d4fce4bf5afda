//! Reed-Solomon reconstruction for a decoder that folds its shards: the square sub-matrix of
//! the encoding matrix that links `e` missing data shards to `e` received parity rows, inverted
//! and cached per erasure pattern so a steady loss pattern costs no matrix work. The cache grows
//! with the patterns seen (doubling, up to its bound); it and the inversion scratch are given
//! back by [`Inverses::trim`].

use alloc::vec::Vec;

use crate::code::{FecCode, MAX_TOTAL_SHARDS};
use crate::gf::{self, Kernel};

/// Memory budget of the inverse cache in bytes; at least one entry is always kept.
const INV_CACHE_BYTES: usize = 16 * 1024;
/// Most inverses the cache keeps.
const INV_CACHE_ENTRIES: usize = 32;

/// Why a reconstruction was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RsError {
    /// The selected rows do not form an invertible matrix (impossible for this code, kept so
    /// that no input can cause a panic).
    Singular,
}

/// Inverses of at most this side are computed on the stack at each rebuild, not cached: at
/// most `2 * 4^3 = 128` products, less than rebuilding one 64-byte shard, and no heap (a
/// 3 x 3 entry of the cache was a 32-byte key, 9 bytes and an 18-byte elimination matrix,
/// three allocations, for every session that rebuilds once).
pub(crate) const SMALL: usize = 4;

/// A bitmap of up to 256 shard indices.
pub(crate) type Key = [u64; 4];

/// Nominal multiply-accumulates of inverting an `n x n` matrix by Gauss-Jordan elimination on
/// the augmented `n x 2n` matrix.
pub(crate) fn inversion_work(n: usize) -> u64 {
    2 * (n as u64).pow(3)
}

/// Decode-side scratch for one code: cached inverses of the `e x e` sub-matrices (`e` at most
/// `min(ds, ps)`) and the elimination matrix.
#[derive(Default)]
pub(crate) struct Inverses {
    /// Side of the entries: `min(ds, ps)` of the code they were computed for.
    n: usize,
    /// The code's (ds, ps) the entries belong to.
    shards: (usize, usize),
    keys: Vec<Key>,
    /// `keys.len()` inverses of `n x n` bytes each (an `e x e` one uses the first `e * e`).
    data: Vec<u8>,
    next: usize,
    /// The `e x 2e` augmented matrix of an inversion.
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

    /// Upper bound of [`heap_bytes`](Self::heap_bytes) for codes whose `min(ds, ps)` is at most
    /// `n`.
    pub(crate) fn heap_bound(n: usize) -> usize {
        (1..=n)
            .map(|d| {
                let sq = d * d;
                Self::entries(d) * (core::mem::size_of::<Key>() + sq) + 2 * sq
            })
            .max()
            .unwrap_or(0)
    }

    fn entries(n: usize) -> usize {
        (INV_CACHE_BYTES / (n * n).max(1)).clamp(1, INV_CACHE_ENTRIES)
    }

    fn lookup(&self, code: &FecCode, key: &Key) -> Option<usize> {
        if self.shards != code.shards() {
            return None;
        }
        self.keys.iter().position(|k| k == key)
    }

    /// What rebuilding `e` shards of `len` bytes costs now: the product, plus the inversion
    /// when the inverse for `key` is not cached (always, for `e <= SMALL`).
    pub(crate) fn work_for(&self, code: &FecCode, key: &Key, e: usize, len: usize) -> u64 {
        let product = (e * e * len) as u64;
        match self.lookup(code, key) {
            Some(_) if e > SMALL => product,
            _ => product + inversion_work(e),
        }
    }

    /// The inverse of the `e x e` matrix `A[a][b] = coef(rows[a], cols[b])` (`rows` are
    /// parity row numbers `0..ps`, `cols` data shard numbers `0..ds`), from the cache or
    /// computed into it; `key` names the pair (rows, cols). Row-major, `e * e` bytes. For
    /// `e <= SMALL` it is computed into `small` each time, and nothing is allocated.
    pub(crate) fn inverse<'a>(
        &'a mut self,
        code: &FecCode,
        rows: &[u8],
        cols: &[u8],
        key: Key,
        small: &'a mut [u8; SMALL * SMALL],
    ) -> Result<&'a [u8], RsError> {
        let e = rows.len();
        if e == 0 || e != cols.len() {
            return Err(RsError::Singular);
        }
        if e <= SMALL {
            let mut work = [0u8; 2 * SMALL * SMALL];
            let work = work.get_mut(..2 * e * e).ok_or(RsError::Singular)?;
            fill_augmented(code, rows, cols, work)?;
            let out = small.get_mut(..e * e).ok_or(RsError::Singular)?;
            gauss_jordan(code.kernel(), work, e, out)?;
            return Ok(out);
        }
        let (ds, ps) = code.shards();
        if self.shards != (ds, ps) {
            self.clear();
            self.shards = (ds, ps);
            self.n = ds.min(ps);
        }
        let n = self.n;
        if e > n {
            return Err(RsError::Singular);
        }
        let slot = match self.lookup(code, &key) {
            Some(s) => s,
            None => self.invert_into_cache(code, rows, cols, key)?,
        };
        self.data
            .get(slot * n * n..slot * n * n + e * e)
            .ok_or(RsError::Singular)
    }

    /// Inverts the sub-matrix into a cache slot; returns the slot.
    fn invert_into_cache(
        &mut self,
        code: &FecCode,
        rows: &[u8],
        cols: &[u8],
        key: Key,
    ) -> Result<usize, RsError> {
        let (e, n) = (rows.len(), self.n);
        let sq = n * n;
        let w = 2 * e;
        let entries = Self::entries(n);
        let slot = if self.keys.len() < entries {
            // The cache grows with the erasure patterns seen, doubling from one entry up to
            // `entries`: a session that rebuilds a few times holds a few inverses, not the
            // whole 16 KiB; a lossy link's patterns fill it after a few doublings, and then
            // nothing is allocated while traffic flows. `trim` gives it back.
            let len = self.keys.len();
            if len == self.keys.capacity() {
                let cap = len.saturating_mul(2).clamp(1, entries);
                self.keys.reserve_exact(cap - len);
                self.data.reserve_exact(cap * sq - self.data.len());
            }
            self.keys.push([!0; 4]);
            self.data.resize(self.keys.len() * sq, 0);
            self.keys.len() - 1
        } else {
            let s = self.next % entries;
            self.next = (s + 1) % entries;
            s
        };
        if self.work.capacity() < 2 * sq {
            self.work = Vec::new();
            self.work.reserve_exact(2 * sq);
        }
        self.work.clear();
        self.work.resize(e * w, 0);
        fill_augmented(code, rows, cols, &mut self.work)?;
        let inv = self
            .data
            .get_mut(slot * sq..slot * sq + e * e)
            .ok_or(RsError::Singular)?;
        let res = gauss_jordan(code.kernel(), &mut self.work, e, inv);
        if let Some(k) = self.keys.get_mut(slot) {
            *k = if res.is_ok() { key } else { [!0; 4] };
        }
        res.map(|()| slot)
    }
}

/// Writes the augmented matrix `[A | identity]` of `A[a][b] = coef(rows[a], cols[b])` into the
/// zeroed `work` (`e x 2e`, `e = rows.len()`).
fn fill_augmented(
    code: &FecCode,
    rows: &[u8],
    cols: &[u8],
    work: &mut [u8],
) -> Result<(), RsError> {
    let (ds, _) = code.shards();
    let e = rows.len();
    let w = 2 * e;
    for (r, &p) in rows.iter().enumerate() {
        let prow = code
            .parity_row(ds + usize::from(p))
            .ok_or(RsError::Singular)?;
        let row = work.get_mut(r * w..(r + 1) * w).ok_or(RsError::Singular)?;
        for (dst, &c) in row.iter_mut().zip(cols) {
            *dst = prow.get(usize::from(c)).copied().ok_or(RsError::Singular)?;
        }
        if let Some(one) = row.get_mut(e + r) {
            *one = 1;
        }
    }
    Ok(())
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
    fn small_inverses_on_the_stack_equal_the_cached_ones() {
        let code = FecCode::new(10, 8).unwrap();
        let mut inv = Inverses::default();
        let mut small = [0u8; SMALL * SMALL];
        for e in 1..=SMALL {
            let rows: Vec<u8> = (0..e as u8).map(|r| (r * 3 + 1) % 8).collect();
            let cols: Vec<u8> = (0..e as u8).map(|c| c * 2 + 1).collect();
            let key = [e as u64, 0, 0, 0];
            let before = inv.heap_bytes();
            let got = inv
                .inverse(&code, &rows, &cols, key, &mut small)
                .unwrap()
                .to_vec();
            assert_eq!(inv.heap_bytes(), before, "e = {e}: nothing allocated");
            inv.shards = code.shards();
            inv.n = 8;
            let slot = inv.invert_into_cache(&code, &rows, &cols, key).unwrap();
            let sq = inv.n * inv.n;
            assert_eq!(got, inv.data[slot * sq..slot * sq + e * e], "e = {e}");
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
}
