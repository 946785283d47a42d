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
//! does not depend on the number of threads.

// Index loops mirror the formulas (several arrays indexed by the same voxel or beamlet).
#![allow(clippy::needless_range_loop)]

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltRegularization,
};
use faer::{Conj, MatMut, MatRef, Par};
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

/// Assemble the lower triangle of `M` (dimension `n + k`) into `buf`.
fn assemble(buf: &mut [f64], n: usize, k: usize, cm: &Compact, p: &Parts<'_>, reg: f64) {
    let dim = n + k;
    buf.par_chunks_mut(dim.max(1))
        .enumerate()
        .for_each(|(j, col)| {
            col.iter_mut().for_each(|v| *v = 0.0);
            if j < n {
                if let Some(q) = p.q {
                    col[j..n].copy_from_slice(&q[j * n + j..j * n + n]);
                }
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
        for attempt in 0..4 {
            assemble(&mut l, n, k, cm, parts, reg);
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
