//! The Reed-Solomon code of one (ds, ps): klauspost/reedsolomon's `New(ds, ps)` (Backblaze
//! construction), immutable and shared.
//!
//! Encoding matrix: the `(ds+ps) x ds` Vandermonde matrix `V[r][c] = r^c` multiplied on the
//! right by the inverse of its top `ds x ds` square, which makes it systematic (identity on
//! top). Only the `ps` parity rows are stored; data rows are unit vectors.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;

use crate::gf::{self, Kernel};
use crate::rs::{self, RsError};
use crate::ConfigError;

/// Largest `ds + ps` the field allows (klauspost's limit; kcp-go disables FEC above it).
pub const MAX_TOTAL_SHARDS: usize = 256;

/// The Reed-Solomon code for one (ds, ps): the parity rows of its encoding matrix.
///
/// Building it costs a `ds x ds` matrix inversion; cloning it is a reference count. Every
/// session of a listener that uses the same parameters can hold one clone
/// ([`Fec::with_code`](crate::Fec::with_code)), so the matrix exists once per process instead
/// of once per session. (`no_std` rules out a process-wide cache behind a lock, hence the
/// explicit handle.) The GF(2^8) lookup tables are `static` and never copied.
#[derive(Clone)]
pub struct FecCode(Arc<Matrix>);

struct Matrix {
    ds: usize,
    ps: usize,
    kernel: Kernel,
    /// `ps x ds` parity rows, row-major.
    parity: Box<[u8]>,
}

impl FecCode {
    /// Builds the code; `ds, ps >= 1` and `ds + ps <= 256` must hold.
    pub fn new(ds: usize, ps: usize) -> Result<Self, ConfigError> {
        crate::check_shards(ds, ps)?;
        let kernel = gf::kernel();
        let total = ds + ps;
        // [top ds x ds square of V | identity], inverted in place: the right half becomes the
        // inverse of the top square (the only scratch, 2 * ds^2 bytes).
        let w = 2 * ds;
        let mut work = vec![0u8; ds * w];
        for (r, row) in work.chunks_exact_mut(w).enumerate() {
            for (c, v) in row.iter_mut().take(ds).enumerate() {
                *v = gf::pow(r as u8, c);
            }
            if let Some(one) = row.get_mut(ds + r) {
                *one = 1;
            }
        }
        rs::gauss_jordan_in_place(kernel, &mut work, ds)
            .map_err(|_: RsError| ConfigError::InvalidShards)?;
        let mut parity = vec![0u8; ps * ds].into_boxed_slice();
        // Row r of V times the inverse: the sum of the inverse's rows scaled by r^k.
        for (p, row) in parity.chunks_exact_mut(ds).enumerate() {
            let r = (ds + p) as u8;
            for (k, inv_row) in work.chunks_exact(w).enumerate() {
                let inv_row = inv_row.get(ds..).unwrap_or(&[]);
                gf::mul_with(kernel, gf::pow(r, k), inv_row, row, k > 0);
            }
        }
        debug_assert!(total <= MAX_TOTAL_SHARDS);
        Ok(FecCode(Arc::new(Matrix {
            ds,
            ps,
            kernel,
            parity,
        })))
    }

    /// The (1, 1) code a receive-only decoder starts with (kcp-go's), whose only parity row
    /// is `[1]`: built without a fallible path.
    pub(crate) fn one_one() -> Self {
        FecCode(Arc::new(Matrix {
            ds: 1,
            ps: 1,
            kernel: gf::kernel(),
            parity: Box::new([1]),
        }))
    }

    /// (data, parity) shards per group.
    pub fn shards(&self) -> (usize, usize) {
        (self.0.ds, self.0.ps)
    }

    /// Heap bytes of the shared matrix (counted once, however many sessions hold it).
    pub fn heap_bytes(&self) -> usize {
        matrix_bytes(self.0.ds, self.0.ps)
    }

    /// This holder's share of [`heap_bytes`](Self::heap_bytes): the total divided by the number
    /// of holders, so that summing every holder's share gives the real total.
    pub(crate) fn share_bytes(&self) -> usize {
        self.heap_bytes()
            .div_ceil(Arc::strong_count(&self.0).max(1))
    }

    pub(crate) fn is(&self, ds: usize, ps: usize) -> bool {
        self.0.ds == ds && self.0.ps == ps
    }

    pub(crate) fn kernel(&self) -> Kernel {
        self.0.kernel
    }

    /// Row `r` of the encoding matrix for `r >= ds` (a parity row); `None` for data rows.
    pub(crate) fn parity_row(&self, r: usize) -> Option<&[u8]> {
        let ds = self.0.ds;
        let p = r.checked_sub(ds)?;
        self.0.parity.get(p * ds..(p + 1) * ds)
    }

    /// Nominal GF(2^8) multiply-accumulates of [`FecCode::new`]: the `ds x ds` inversion and
    /// the `ps x ds x ds` product. The unit of [`FecStats::decode_work`](crate::FecStats).
    pub(crate) fn build_work(ds: usize, ps: usize) -> u64 {
        rs::inversion_work(ds) + (ps * ds * ds) as u64
    }
}

/// Heap bytes of a (ds, ps) code: the reference-counted header and the parity rows.
pub(crate) fn matrix_bytes(ds: usize, ps: usize) -> usize {
    core::mem::size_of::<usize>() * 2 + core::mem::size_of::<Matrix>() + ps * ds
}

impl core::fmt::Debug for FecCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FecCode")
            .field("ds", &self.0.ds)
            .field("ps", &self.0.ps)
            .field("holders", &Arc::strong_count(&self.0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn parity_rows(ds: usize, ps: usize) -> Vec<Vec<u8>> {
        let code = FecCode::new(ds, ps).unwrap();
        (ds..ds + ps)
            .map(|r| code.parity_row(r).unwrap().to_vec())
            .collect()
    }

    #[test]
    fn parity_rows_match_klauspost_reedsolomon() {
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
    fn the_receive_only_start_is_the_1_1_code() {
        let built = FecCode::new(1, 1).unwrap();
        let direct = FecCode::one_one();
        assert_eq!(direct.shards(), (1, 1));
        assert_eq!(direct.parity_row(1), built.parity_row(1));
    }

    #[test]
    fn largest_codes_build() {
        assert!(FecCode::new(128, 128).is_ok());
        assert!(FecCode::new(255, 1).is_ok());
        assert!(FecCode::new(255, 2).is_err());
        assert!(FecCode::new(0, 2).is_err());
    }

    #[test]
    fn clones_share_one_matrix_and_split_its_bytes() {
        let a = FecCode::new(10, 3).unwrap();
        let whole = a.heap_bytes();
        assert_eq!(a.share_bytes(), whole);
        let b = a.clone();
        let c = a.clone();
        let shares = a.share_bytes() + b.share_bytes() + c.share_bytes();
        assert!((whole..whole + 3).contains(&shares), "{shares} of {whole}");
        assert!(whole >= 30);
    }
}
