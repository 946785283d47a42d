//! The Newton system of the beamlet-space interior-point method: after the slacks, the bound
//! duals, the per-voxel hinge variables and the border multipliers are eliminated, what is
//! left is one dense symmetric positive definite matrix over the free beamlets and the border
//! variables,
//!
//! ```text
//! M = Q + f^2 sum_v w_v a_v a_v' + diag(bound barriers) + cross terms with y
//!       + sum_rows theta g g'  (dense rows) + sum_b C_b C_b' / K_b  (border rows)
//! ```
//!
//! factorised once per iteration by a dense Cholesky (faer). The weighted Gram is
//! accumulated column by column, each column by one thread in a fixed order, so the matrix
//! does not depend on the number of threads. When the candidate rows are nearly dense (the
//! segment-weight problem: a target voxel sees most segments) the Gram is instead one dense
//! product `S'S` with `S = diag(sqrt w) A_F` (faer's blocked kernels,
//! [`DENSE_GRAM_RATIO`]); like the Cholesky, that product is the same for the same inputs
//! and thread count (the plan tests compare repeated plans byte for byte), but its rounding
//! may differ between thread counts.

// Index loops mirror the formulas (several arrays indexed by the same voxel or beamlet).
#![allow(clippy::needless_range_loop)]

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltRegularization,
};
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::{Accum, Conj, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::dose::InfluenceMatrix;

/// The candidate voxel rows of all families, compacted, with their entries restricted to the
/// free beamlets: CSR (rows ascending, columns ascending) plus, per free column, the compact
/// rows and their position inside the CSR row.
pub struct Compact {
    /// Global row of each compact row.
    pub rows: Vec<u32>,
    pub ptr: Vec<usize>,
    /// Free-beamlet index of each entry.
    pub cols: Vec<u32>,
    pub vals: Vec<f64>,
    cptr: Vec<usize>,
    centry: Vec<(u32, u32)>,
}

impl Compact {
    /// `rows` ascending and unique; `free_of[c]` the free index of beamlet `c` or `u32::MAX`.
    pub fn new(a: &InfluenceMatrix, rows: Vec<u32>, free_of: &[u32], n_free: usize) -> Compact {
        let mut ptr = Vec::with_capacity(rows.len() + 1);
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        ptr.push(0);
        let mut counts = vec![0usize; n_free + 1];
        for &r in &rows {
            let (c, v) = a.row(r as usize);
            for (&ci, &vi) in c.iter().zip(v) {
                let fi = free_of[ci as usize];
                if fi != u32::MAX {
                    cols.push(fi);
                    vals.push(vi as f64);
                    counts[fi as usize + 1] += 1;
                }
            }
            ptr.push(cols.len());
        }
        for j in 0..n_free {
            counts[j + 1] += counts[j];
        }
        let cptr = counts.clone();
        let mut next = counts;
        let mut centry = vec![(0u32, 0u32); cols.len()];
        for (ri, w) in ptr.windows(2).enumerate() {
            for k in w[0]..w[1] {
                let j = cols[k] as usize;
                centry[next[j]] = (ri as u32, k as u32);
                next[j] += 1;
            }
        }
        Compact {
            rows,
            ptr,
            cols,
            vals,
            cptr,
            centry,
        }
    }

    /// `a_r' x` over the free beamlets for each compact row in `idx` (parallel, exact per row).
    pub fn dots(&self, idx: &[u32], x: &[f64]) -> Vec<f64> {
        idx.par_iter()
            .with_min_len(512)
            .map(|&ri| {
                let ri = ri as usize;
                let mut s = 0.0;
                for k in self.ptr[ri]..self.ptr[ri + 1] {
                    s += self.vals[k] * x[self.cols[k] as usize];
                }
                s
            })
            .collect()
    }

    /// `out += sum_r w_r a_r` over the compact rows `idx` (sequential, fixed order).
    pub fn scatter(&self, idx: &[u32], w: &[f64], out: &mut [f64]) {
        for (&ri, &wr) in idx.iter().zip(w) {
            if wr == 0.0 {
                continue;
            }
            let ri = ri as usize;
            for k in self.ptr[ri]..self.ptr[ri + 1] {
                out[self.cols[k] as usize] += wr * self.vals[k];
            }
        }
    }
}

/// A rank-one term `alpha v v'` over the `N = n_free + n_y` unknowns.
pub struct RankOne {
    pub alpha: f64,
    pub v: Vec<f64>,
}

/// Everything that makes up `M` besides the constant Hessian.
pub struct Parts<'a> {
    /// Free-beamlet block of the constant Hessian, full `n x n` column-major.
    pub q: Option<&'a [f64]>,
    /// Gram weight per compact row (already multiplied by `f^2`).
    pub gram_w: &'a [f64],
    /// Diagonal over all `N` unknowns.
    pub diag: &'a [f64],
    /// `cross[k][j]`: entry `(n + k, j)`.
    pub cross: &'a [Vec<f64>],
    /// `y`-`y` block, full `k x k`, row-major.
    pub yy: &'a [f64],
    pub rank1: &'a [RankOne],
}

/// The Gram is formed densely when the sparse products `sum_r nnz_r^2` reach this share of
/// the dense product's `rows x n^2`. Measured on TG119's segment-weight problem (15,962
/// rows, 262 segments, share 0.136): Newton matrices 5.15 s sparse, 2.80 s dense over 52
/// iterations; the beamlet problem (share 0.002) stays sparse.
pub const DENSE_GRAM_RATIO: f64 = 0.1;

/// Largest dense `S` (entries) formed for the Gram: 32 M entries, 256 MB.
pub const DENSE_GRAM_MAX_ENTRIES: usize = 32 << 20;

/// The lower triangle of `A_F' diag(w) A_F` (`n x n`, column-major) as one dense product,
/// when the rows are dense enough ([`DENSE_GRAM_RATIO`]); None: accumulate sparsely.
/// `w >= 0` (a Newton weight).
fn dense_gram(n: usize, cm: &Compact, w: &[f64], par: Par) -> Option<Vec<f64>> {
    let m = cm.rows.len();
    if n == 0 || m == 0 || m.saturating_mul(n) > DENSE_GRAM_MAX_ENTRIES {
        return None;
    }
    let sparse: f64 = cm
        .ptr
        .windows(2)
        .map(|p| ((p[1] - p[0]) as f64).powi(2))
        .sum();
    if sparse < DENSE_GRAM_RATIO * m as f64 * (n as f64).powi(2) {
        return None;
    }
    let sw: Vec<f64> = w.iter().map(|&v| v.max(0.0).sqrt()).collect();
    // S, m x n column-major: one column per free beamlet, written by one thread.
    let mut sm = vec![0.0f64; m * n];
    sm.par_chunks_mut(m).enumerate().for_each(|(j, col)| {
        for &(ri, pos) in &cm.centry[cm.cptr[j]..cm.cptr[j + 1]] {
            col[ri as usize] = sw[ri as usize] * cm.vals[pos as usize];
        }
    });
    let mut g = vec![0.0f64; n * n];
    let sref = MatRef::from_column_major_slice(&sm, m, n);
    tri_matmul(
        MatMut::from_column_major_slice_mut(&mut g, n, n),
        BlockStructure::TriangularLower,
        Accum::Replace,
        sref.transpose(),
        BlockStructure::Rectangular,
        sref,
        BlockStructure::Rectangular,
        1.0,
        par,
    );
    Some(g)
}

/// The factorised Newton matrix.
pub struct Factor {
    pub dim: usize,
    l: Vec<f64>,
    par: Par,
}

fn parallelism(threads: u32) -> Par {
    if threads == 1 || rayon::current_num_threads() <= 1 {
        Par::Seq
    } else {
        Par::rayon(threads as usize)
    }
}

/// Assemble the lower triangle of `M` (dimension `n + k`) into `buf`; `gram`: the weighted
/// Gram formed densely ([`dense_gram`]), else it is accumulated here.
fn assemble(
    buf: &mut [f64],
    n: usize,
    k: usize,
    cm: &Compact,
    p: &Parts<'_>,
    gram: Option<&[f64]>,
    reg: f64,
) {
    let dim = n + k;
    buf.par_chunks_mut(dim.max(1))
        .enumerate()
        .for_each(|(j, col)| {
            col.iter_mut().for_each(|v| *v = 0.0);
            if j < n {
                if let Some(q) = p.q {
                    col[j..n].copy_from_slice(&q[j * n + j..j * n + n]);
                }
                if let Some(g) = gram {
                    for (c, &gv) in col[j..n].iter_mut().zip(&g[j * n + j..j * n + n]) {
                        *c += gv;
                    }
                } else {
                    for &(ri, pos) in &cm.centry[cm.cptr[j]..cm.cptr[j + 1]] {
                        let ri = ri as usize;
                        let w = p.gram_w[ri];
                        if w == 0.0 {
                            continue;
                        }
                        let pos = pos as usize;
                        let wj = w * cm.vals[pos];
                        for kk in pos..cm.ptr[ri + 1] {
                            col[cm.cols[kk] as usize] += wj * cm.vals[kk];
                        }
                    }
                }
                for (kk, cr) in p.cross.iter().enumerate() {
                    col[n + kk] += cr[j];
                }
            } else {
                let jy = j - n;
                for iy in jy..k {
                    col[n + iy] += p.yy[iy * k + jy];
                }
            }
            col[j] += p.diag[j] + reg;
            for r in p.rank1 {
                let s = r.alpha * r.v[j];
                if s == 0.0 {
                    continue;
                }
                for (c, &vi) in col[j..].iter_mut().zip(&r.v[j..]) {
                    *c += s * vi;
                }
            }
        });
}

impl Factor {
    /// Assemble and factorise `M`; a tiny diagonal regularisation is added and the
    /// factorisation repeated if a pivot is not positive.
    pub fn new(
        n: usize,
        k: usize,
        cm: &Compact,
        parts: &Parts<'_>,
        threads: u32,
        buf: Vec<f64>,
    ) -> Result<Factor, String> {
        let dim = n + k;
        let mut l = buf;
        l.resize(dim * dim, 0.0);
        let par = parallelism(threads);
        let dmax = parts.diag.iter().fold(1e-300f64, |m, &v| m.max(v.abs()));
        let mut reg = 0.0;
        let gram = dense_gram(n, cm, parts.gram_w, par);
        for attempt in 0..4 {
            assemble(&mut l, n, k, cm, parts, gram.as_deref(), reg);
            let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(
                dim,
                par,
                Default::default(),
            ));
            let stack = MemStack::new(&mut mem);
            let m = MatMut::from_column_major_slice_mut(&mut l, dim, dim);
            match cholesky_in_place(
                m,
                LltRegularization::default(),
                par,
                stack,
                Default::default(),
            ) {
                Ok(_) => return Ok(Factor { dim, l, par }),
                Err(e) => {
                    if attempt == 3 {
                        return Err(format!("Newton matrix not positive definite: {e}"));
                    }
                    reg = if reg == 0.0 { 1e-12 * dmax } else { reg * 1e3 };
                }
            }
        }
        Err("Newton matrix not positive definite".into())
    }

    /// Solve `M v = rhs` in place.
    pub fn solve(&self, rhs: &mut [f64]) {
        let lref = MatRef::from_column_major_slice(&self.l, self.dim, self.dim);
        let r = MatMut::from_column_major_slice_mut(rhs, self.dim, 1);
        let mut mem = MemBuffer::new(faer::dyn_stack::StackReq::EMPTY);
        let stack = MemStack::new(&mut mem);
        faer::linalg::cholesky::llt::solve::solve_in_place_with_conj(
            lref,
            Conj::No,
            r,
            self.par,
            stack,
        );
    }

    /// Give the buffer back for the next iteration.
    pub fn into_buffer(self) -> Vec<f64> {
        self.l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dense Gram and the sparse accumulation give the same Newton matrix.
    #[test]
    fn dense_gram_matches_sparse_accumulation() {
        let (m, n) = (40usize, 7usize);
        // Deterministic pseudo-random entries, about 60 % dense.
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let mut cols = vec![(Vec::new(), Vec::new()); n];
        for r in 0..m {
            for (j, col) in cols.iter_mut().enumerate() {
                let v = next();
                if v < 0.6 || j == r % n {
                    col.0.push(r as u32);
                    col.1.push(v as f32);
                }
            }
        }
        let a = InfluenceMatrix::from_columns(m, cols);
        let free_of: Vec<u32> = (0..n as u32).collect();
        let cm = Compact::new(&a, (0..m as u32).collect(), &free_of, n);
        let w: Vec<f64> = (0..m).map(|_| next()).collect();
        let diag = vec![1.0; n];
        let parts = Parts {
            q: None,
            gram_w: &w,
            diag: &diag,
            cross: &[],
            yy: &[],
            rank1: &[],
        };
        let g = dense_gram(n, &cm, &w, Par::Seq).expect("dense enough");
        let mut sparse = vec![0.0; n * n];
        let mut dense = vec![0.0; n * n];
        assemble(&mut sparse, n, 0, &cm, &parts, None, 0.0);
        assemble(&mut dense, n, 0, &cm, &parts, Some(&g), 0.0);
        for j in 0..n {
            for i in j..n {
                let (s, d) = (sparse[i + j * n], dense[i + j * n]);
                assert!(
                    (s - d).abs() <= 1e-12 * s.abs().max(1.0),
                    "({i}, {j}): {s} vs {d}"
                );
            }
        }
        // The diagonal holds the Gram plus the barrier term: a Gram entry was added.
        assert!(sparse[0] > 1.0);
    }
}
