//! The dose-influence matrix `A` (dose-grid voxels x beamlets, Gy per MU).
//!
//! Stored twice, as compressed columns (one per beamlet, the natural output of the dose
//! engine, used for `A^T y`) and compressed rows (one per voxel, used for `A x` and for
//! per-voxel constraint rows). Values are f32, indices u32; both products are parallel.
// Index loops mirror the formulas; negated comparisons deliberately reject NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use rayon::prelude::*;

/// Sparse dose-influence matrix. Row `r` is voxel `DoseGrid::voxels[r]`; column `c` is
/// beamlet `c` in plan order. `A[r][c]` is the dose in Gy to voxel `r` per MU of beamlet `c`.
#[derive(Debug, Clone, Default)]
pub struct InfluenceMatrix {
    n_rows: usize,
    n_cols: usize,
    col_ptr: Vec<usize>,
    col_rows: Vec<u32>,
    col_vals: Vec<f32>,
    row_ptr: Vec<usize>,
    row_cols: Vec<u32>,
    row_vals: Vec<f32>,
}

/// The entries of an [`InfluenceMatrix`] in both layouts (Gy per MU), without the indices.
#[derive(Debug, Clone, Default)]
pub struct MatrixValues {
    row_vals: Vec<f32>,
    col_vals: Vec<f32>,
}

/// Transpose a compressed matrix with `n_outer` outer slices (`ptr`, `idx`, `val`) and
/// `n_inner` inner indices by counting sort; inner indices of the result stay sorted.
fn transpose(
    n_outer: usize,
    n_inner: usize,
    ptr: &[usize],
    idx: &[u32],
    val: &[f32],
) -> (Vec<usize>, Vec<u32>, Vec<f32>) {
    let mut counts = vec![0usize; n_inner + 1];
    for &i in idx {
        counts[i as usize + 1] += 1;
    }
    for i in 0..n_inner {
        counts[i + 1] += counts[i];
    }
    let t_ptr = counts.clone();
    let mut next = counts;
    let mut t_idx = vec![0u32; idx.len()];
    let mut t_val = vec![0f32; idx.len()];
    for o in 0..n_outer {
        for k in ptr[o]..ptr[o + 1] {
            let i = idx[k] as usize;
            let dst = next[i];
            t_idx[dst] = o as u32;
            t_val[dst] = val[k];
            next[i] += 1;
        }
    }
    (t_ptr, t_idx, t_val)
}

impl InfluenceMatrix {
    /// Build from per-beamlet columns: `columns[c]` lists `(row, value)` pairs with rows
    /// strictly increasing. Panics are avoided: out-of-range rows are a programming error
    /// and are skipped in release builds after a debug assertion.
    pub fn from_columns(n_rows: usize, columns: Vec<(Vec<u32>, Vec<f32>)>) -> Self {
        let n_cols = columns.len();
        let nnz: usize = columns.iter().map(|c| c.0.len()).sum();
        let mut col_ptr = Vec::with_capacity(n_cols + 1);
        let mut col_rows = Vec::with_capacity(nnz);
        let mut col_vals = Vec::with_capacity(nnz);
        col_ptr.push(0);
        for (rows, vals) in columns {
            debug_assert_eq!(rows.len(), vals.len());
            for (r, v) in rows.into_iter().zip(vals) {
                debug_assert!((r as usize) < n_rows);
                if (r as usize) < n_rows {
                    col_rows.push(r);
                    col_vals.push(v);
                }
            }
            col_ptr.push(col_rows.len());
        }
        // Transpose to CSR (counting sort: rows stay sorted by column within each row).
        let (row_ptr, row_cols, row_vals) =
            transpose(n_cols, n_rows, &col_ptr, &col_rows, &col_vals);
        InfluenceMatrix {
            n_rows,
            n_cols,
            col_ptr,
            col_rows,
            col_vals,
            row_ptr,
            row_cols,
            row_vals,
        }
    }

    /// Build from compressed rows (`row_ptr` of length `n_rows + 1`, column indices strictly
    /// increasing within each row) and derive the compressed columns.
    pub fn from_csr(
        n_rows: usize,
        n_cols: usize,
        row_ptr: Vec<usize>,
        row_cols: Vec<u32>,
        row_vals: Vec<f32>,
    ) -> Self {
        assert_eq!(row_ptr.len(), n_rows + 1);
        assert_eq!(row_cols.len(), row_vals.len());
        assert_eq!(row_ptr[n_rows], row_cols.len());
        let (col_ptr, col_rows, col_vals) =
            transpose(n_rows, n_cols, &row_ptr, &row_cols, &row_vals);
        InfluenceMatrix {
            n_rows,
            n_cols,
            col_ptr,
            col_rows,
            col_vals,
            row_ptr,
            row_cols,
            row_vals,
        }
    }

    /// The matrix as a `nalgebra_sparse::CsrMatrix<f64>`, for embedders working with nalgebra.
    /// rtopt's own products stay on its CSR/CSC pair: `f32` values and `u32` indices take 8
    /// bytes per non-zero and layout where this copy takes 16, and on the TG119 matrix its
    /// rayon kernels take 4.3 / 5.3 ms for `A x` / `A^T y` against 9.7 / 12.3 ms for
    /// nalgebra-sparse (`benches/sparse.rs`, `docs/benchmarks.md`).
    pub fn to_nalgebra_csr(&self) -> crate::Result<nalgebra_sparse::CsrMatrix<f64>> {
        let offsets = self.row_ptr.clone();
        let cols: Vec<usize> = self.row_cols.iter().map(|&c| c as usize).collect();
        let vals: Vec<f64> = self.row_vals.iter().map(|&v| f64::from(v)).collect();
        nalgebra_sparse::CsrMatrix::try_from_csr_data(self.n_rows, self.n_cols, offsets, cols, vals)
            .map_err(|e| {
                crate::Error::Invalid(format!(
                    "influence matrix {} x {}: not a valid CSR matrix for nalgebra-sparse: {e}",
                    self.n_rows, self.n_cols
                ))
            })
    }

    /// Number of rows (dose voxels).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of columns (beamlets).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Number of stored non-zeros.
    pub fn nnz(&self) -> usize {
        self.col_vals.len()
    }

    /// Bytes held by both storages.
    pub fn bytes(&self) -> usize {
        2 * self.nnz() * 8 + (self.n_rows + self.n_cols + 2) * std::mem::size_of::<usize>()
    }

    /// Row `r`: (beamlet indices, Gy per MU).
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.row_ptr[r], self.row_ptr[r + 1]);
        (&self.row_cols[a..b], &self.row_vals[a..b])
    }

    /// Column `c`: (row indices, Gy per MU).
    pub fn column(&self, c: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.col_ptr[c], self.col_ptr[c + 1]);
        (&self.col_rows[a..b], &self.col_vals[a..b])
    }

    /// Dose `A x` in Gy for beamlet weights `x` in MU.
    pub fn dose(&self, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.n_rows];
        self.dose_into(x, &mut out);
        out
    }

    /// `out = A x`.
    pub fn dose_into(&self, x: &[f64], out: &mut [f64]) {
        assert_eq!(x.len(), self.n_cols);
        assert_eq!(out.len(), self.n_rows);
        out.par_chunks_mut(4096).enumerate().for_each(|(chunk, o)| {
            let base = chunk * 4096;
            for (i, v) in o.iter_mut().enumerate() {
                let r = base + i;
                let (a, b) = (self.row_ptr[r], self.row_ptr[r + 1]);
                let mut s = 0.0f64;
                for k in a..b {
                    s += self.row_vals[k] as f64 * x[self.row_cols[k] as usize];
                }
                *v = s;
            }
        });
    }

    /// `A^T y` (one value per beamlet).
    pub fn adjoint(&self, y: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.n_cols];
        self.adjoint_into(y, &mut out);
        out
    }

    /// `out = A^T y`.
    pub fn adjoint_into(&self, y: &[f64], out: &mut [f64]) {
        assert_eq!(y.len(), self.n_rows);
        assert_eq!(out.len(), self.n_cols);
        // A column holds thousands of entries: four running sums (a fixed order, so the
        // result is still deterministic) keep the adds from waiting on each other; with one
        // sum the product was bound by the add latency, not by memory (3.7 ms against 2.0 ms
        // of streaming its 58 MB on TG-119, docs/benchmarks.md).
        out.par_iter_mut().enumerate().for_each(|(c, v)| {
            let (a, b) = (self.col_ptr[c], self.col_ptr[c + 1]);
            let (vals, rows) = (&self.col_vals[a..b], &self.col_rows[a..b]);
            let mut s = [0.0f64; 4];
            let mut vq = vals.chunks_exact(4);
            let mut rq = rows.chunks_exact(4);
            for (vv, rr) in (&mut vq).zip(&mut rq) {
                for l in 0..4 {
                    s[l] += vv[l] as f64 * y[rr[l] as usize];
                }
            }
            let mut tail = 0.0f64;
            for (&val, &r) in vq.remainder().iter().zip(rq.remainder()) {
                tail += val as f64 * y[r as usize];
            }
            *v = ((s[0] + s[1]) + (s[2] + s[3])) + tail;
        });
    }

    /// Scale every row `r` by `factors[r]` (e.g. the ratio of the untruncated to the
    /// truncated dose per voxel, see `plan::scatter_correction`).
    pub fn scale_rows(&mut self, factors: &[f64]) {
        assert_eq!(factors.len(), self.n_rows);
        for r in 0..self.n_rows {
            for k in self.row_ptr[r]..self.row_ptr[r + 1] {
                self.row_vals[k] = (self.row_vals[k] as f64 * factors[r]) as f32;
            }
        }
        for k in 0..self.col_vals.len() {
            let r = self.col_rows[k] as usize;
            self.col_vals[k] = (self.col_vals[k] as f64 * factors[r]) as f32;
        }
    }

    /// A copy of the entries (both layouts), to rescale rows from later without drift
    /// ([`InfluenceMatrix::set_row_scale`]).
    pub fn values_snapshot(&self) -> MatrixValues {
        MatrixValues {
            row_vals: self.row_vals.clone(),
            col_vals: self.col_vals.clone(),
        }
    }

    /// Set every entry to `base` (a snapshot of this matrix) times `factors[r]` of its row:
    /// repeated rescaling stays exact (no compounding of f32 rounding). Errors when the
    /// snapshot or the factors do not match the matrix.
    pub fn set_row_scale(&mut self, base: &MatrixValues, factors: &[f64]) -> Result<(), String> {
        if factors.len() != self.n_rows
            || base.row_vals.len() != self.row_vals.len()
            || base.col_vals.len() != self.col_vals.len()
        {
            return Err(format!(
                "row scale of {} factors / snapshot of {} entries for a matrix of {} rows, {} entries",
                factors.len(),
                base.row_vals.len(),
                self.n_rows,
                self.row_vals.len()
            ));
        }
        let ptr = &self.row_ptr;
        self.row_vals
            .par_chunks_mut(1 << 14)
            .enumerate()
            .for_each(|(chunk, vals)| {
                let k0 = chunk << 14;
                // Row of the first entry of the chunk, then walk forward.
                let mut r = ptr.partition_point(|&p| p <= k0) - 1;
                for (i, v) in vals.iter_mut().enumerate() {
                    let k = k0 + i;
                    while ptr[r + 1] <= k {
                        r += 1;
                    }
                    *v = (base.row_vals[k] as f64 * factors[r]) as f32;
                }
            });
        let rows = &self.col_rows;
        self.col_vals
            .par_iter_mut()
            .enumerate()
            .for_each(|(k, v)| *v = (base.col_vals[k] as f64 * factors[rows[k] as usize]) as f32);
        Ok(())
    }

    /// A new matrix with the columns scaled (e.g. to turn unit-fluence columns into segments).
    pub fn scale_columns(&mut self, factors: &[f64]) {
        assert_eq!(factors.len(), self.n_cols);
        for c in 0..self.n_cols {
            for k in self.col_ptr[c]..self.col_ptr[c + 1] {
                self.col_vals[k] = (self.col_vals[k] as f64 * factors[c]) as f32;
            }
        }
        for k in 0..self.row_vals.len() {
            self.row_vals[k] =
                (self.row_vals[k] as f64 * factors[self.row_cols[k] as usize]) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_and_csc_construction_agree() {
        // [[1, 0, 2], [0, 3, 0]] from columns and from rows.
        let a = InfluenceMatrix::from_columns(
            2,
            vec![
                (vec![0], vec![1.0]),
                (vec![1], vec![3.0]),
                (vec![0], vec![2.0]),
            ],
        );
        let b = InfluenceMatrix::from_csr(2, 3, vec![0, 2, 3], vec![0, 2, 1], vec![1.0, 2.0, 3.0]);
        for c in 0..3 {
            assert_eq!(a.column(c), b.column(c));
        }
        for r in 0..2 {
            assert_eq!(a.row(r), b.row(r));
        }
        assert_eq!(b.row(0), (&[0u32, 2][..], &[1.0f32, 2.0][..]));
    }

    #[test]
    fn nalgebra_sparse_copy_has_the_same_entries_and_products() {
        // [[1, 0, 2], [0, 3, 0]]
        let a = InfluenceMatrix::from_csr(2, 3, vec![0, 2, 3], vec![0, 2, 1], vec![1.0, 2.0, 3.0]);
        let n = a.to_nalgebra_csr().unwrap();
        assert_eq!((n.nrows(), n.ncols(), n.nnz()), (2, 3, 3));
        assert_eq!(n.row_offsets(), &[0, 2, 3]);
        assert_eq!(n.col_indices(), &[0, 2, 1]);
        assert_eq!(n.values(), &[1.0, 2.0, 3.0]);
        let x = [0.5, -1.0, 4.0];
        let y = &n * &nalgebra::DVector::from_column_slice(&x);
        assert_eq!(y.as_slice(), a.dose(&x).as_slice());
        assert_eq!(a.dose(&x), vec![8.5, -3.0]);
    }

    #[test]
    fn products_match_dense() {
        // 3 x 2: [[1, 0], [2, 3], [0, 4]]
        let a = InfluenceMatrix::from_columns(
            3,
            vec![(vec![0, 1], vec![1.0, 2.0]), (vec![1, 2], vec![3.0, 4.0])],
        );
        assert_eq!(a.dose(&[1.0, 10.0]), vec![1.0, 32.0, 40.0]);
        assert_eq!(a.adjoint(&[1.0, 1.0, 2.0]), vec![3.0, 11.0]);
        assert_eq!(a.row(1), (&[0u32, 1][..], &[2.0f32, 3.0][..]));
        assert_eq!(a.nnz(), 4);
    }
}
