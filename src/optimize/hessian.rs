//! Beamlet-space Hessian blocks `A_s^T W_s A_s` (dense, symmetric) and column sums
//! `A_s^T w_s`, with `w_s` the voxel weights of a structure (the occupied fraction of each
//! voxel, 0 outside it).
//!
//! Deterministic: every output column is computed by one thread in a fixed order, so the
//! result does not depend on the number of threads (no parallel reductions).

use rayon::prelude::*;

use crate::dose::InfluenceMatrix;

/// Dense symmetric `n x n` matrix; only the upper triangle (`i <= j`) is filled, stored
/// column-major (`h[i + j n]`).
#[derive(Debug, Clone)]
pub struct DenseSym {
    pub n: usize,
    pub h: Vec<f64>,
}

impl DenseSym {
    /// Upper-triangle entry `(i, j)`, `i <= j`.
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.h[i + j * self.n]
    }
}

/// Membership mask of `rows` over the matrix rows.
pub fn row_mask(n_rows: usize, rows: &[u32]) -> Vec<bool> {
    let mut m = vec![false; n_rows];
    for &r in rows {
        if (r as usize) < n_rows {
            m[r as usize] = true;
        }
    }
    m
}

/// Weight of every matrix row: `weights[k]` for `rows[k]`, 0 elsewhere.
pub fn row_weights(n_rows: usize, rows: &[u32], weights: &[f32]) -> Vec<f64> {
    let mut w = vec![0.0; n_rows];
    for (&r, &wk) in rows.iter().zip(weights) {
        if (r as usize) < n_rows {
            w[r as usize] = wk as f64;
        }
    }
    w
}

/// `H = A^T W A` with `W = diag(weight)` (one weight per matrix row, 0: row left out;
/// upper triangle, f64 accumulation).
pub fn gram(a: &InfluenceMatrix, weight: &[f64]) -> DenseSym {
    let n = a.n_cols();
    let mut h = vec![0.0f64; n * n];
    h.par_chunks_mut(n.max(1)).enumerate().for_each(|(j, col)| {
        let (rows, vals) = a.column(j);
        for (&r, &arj) in rows.iter().zip(vals) {
            let wr = weight[r as usize];
            if wr == 0.0 {
                continue;
            }
            let arj = wr * arj as f64;
            let (cols, rv) = a.row(r as usize);
            for (&i, &ari) in cols.iter().zip(rv) {
                let i = i as usize;
                if i > j {
                    break; // row entries are sorted by column
                }
                col[i] += ari as f64 * arj;
            }
        }
    });
    DenseSym { n, h }
}

/// `A^T w` (one weight per matrix row): Gy per MU summed over a structure's voxels, each
/// voxel counted with its weight.
pub fn column_sums(a: &InfluenceMatrix, weight: &[f64]) -> Vec<f64> {
    (0..a.n_cols())
        .into_par_iter()
        .map(|c| {
            let (rows, vals) = a.column(c);
            let mut s = 0.0f64;
            for (&r, &v) in rows.iter().zip(vals) {
                s += weight[r as usize] * v as f64;
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_matches_dense_product() {
        // A = [[1, 2, 0], [0, 3, 4], [5, 0, 6]], rows {0, 2}
        let a = InfluenceMatrix::from_columns(
            3,
            vec![
                (vec![0, 2], vec![1.0, 5.0]),
                (vec![0, 1], vec![2.0, 3.0]),
                (vec![1, 2], vec![4.0, 6.0]),
            ],
        );
        let m = row_weights(3, &[0, 2], &[1.0, 1.0]);
        let h = gram(&a, &m);
        // A_s = [[1,2,0],[5,0,6]]; A_s^T A_s = [[26,2,30],[2,4,0],[30,0,36]]
        assert_eq!(h.get(0, 0), 26.0);
        assert_eq!(h.get(0, 1), 2.0);
        assert_eq!(h.get(0, 2), 30.0);
        assert_eq!(h.get(1, 1), 4.0);
        assert_eq!(h.get(1, 2), 0.0);
        assert_eq!(h.get(2, 2), 36.0);
        assert_eq!(column_sums(&a, &m), vec![6.0, 2.0, 6.0]);
        // Row 2 at half weight: A^T W A = [[1,2,0],[2,4,0],[0,0,0]] + 0.5 [[25,0,30],[0,0,0],[30,0,36]]
        let w = row_weights(3, &[0, 2], &[1.0, 0.5]);
        let h = gram(&a, &w);
        assert_eq!(h.get(0, 0), 13.5);
        assert_eq!(h.get(0, 2), 15.0);
        assert_eq!(h.get(2, 2), 18.0);
        assert_eq!(column_sums(&a, &w), vec![3.5, 2.0, 3.0]);
    }
}
