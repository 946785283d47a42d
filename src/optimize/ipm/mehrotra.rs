//! Mehrotra's predictor-corrector primal-dual interior-point iteration (Mehrotra 1992;
//! Wright, *Primal-Dual Interior-Point Methods*, SIAM 1997, ch. 10 and 11 for QPs) on the QP
//! of [`super::model::Model`], with the per-voxel variables eliminated as in
//! [`super::newton`].
//!
//! Every positive quantity comes in a complementary pair `(s, lambda)`: row slack and row
//! dual, `x` and its lower-bound dual, `ub - x` and its upper-bound dual, `u_v` and its dual,
//! nonnegative border variables and their duals. The iterate may be primal infeasible
//! (infeasible-start method); the residuals go to zero with full steps.

// Index loops mirror the formulas (several arrays indexed by the same voxel or beamlet).
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::model::{Family, Model};
use super::newton::{Compact, Factor, Parts, RankOne};
use crate::dose::InfluenceMatrix;

/// Stopping and iteration settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Relative complementarity, primal residual (Gy) and relative dual residual.
    pub tol: f64,
    pub max_iter: u32,
    pub threads: u32,
    pub verbose: bool,
    /// Told of every iteration; any of them can stop the solve.
    pub observers: crate::optimize::observer::Observers,
}

/// Why the iteration stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Converged,
    /// The primal residual stopped decreasing, or the duals diverge: likely infeasible.
    Stalled,
    MaxIter,
    /// The relative gap fell below [`CHECK_GAP`]: time to check the candidate voxels.
    Checkpoint,
    /// An observer asked to stop.
    Cancelled,
}

/// Relative gap (and primal residual, Gy) below which beamlets clearly at zero are fixed, also
/// before the candidate checkpoint (the certificate at convergence releases any fixed
/// beamlet whose reduced gradient turns negative). TG-119: 1e-2 fixed the first beamlets at
/// iteration 24 of 29, 0.3 at iteration 10 of 17 (with the correctors), same objective.
pub const FIX_GAP: f64 = 0.3;

/// Relative gap at which the candidate voxels are checked the first time, while the iterate
/// is still well inside (new rows then join a moderately centred iterate).
pub const CHECK_GAP: f64 = 1e-1;

#[derive(Debug, Clone, Default)]
pub struct FamState {
    pub u: Vec<f64>,
    pub zeta: Vec<f64>,
    pub sl: Vec<f64>,
    pub lam: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct State {
    /// Free beamlets only.
    pub x: Vec<f64>,
    pub zl: Vec<f64>,
    pub zu: Vec<f64>,
    pub y: Vec<f64>,
    pub zy: Vec<f64>,
    pub fam: Vec<FamState>,
    pub dsl: Vec<f64>,
    pub dlam: Vec<f64>,
    pub bsl: Vec<f64>,
    pub blam: Vec<f64>,
}

impl State {
    /// `self += alpha * d`, block by block (same shapes).
    fn add_scaled(&mut self, d: &State, alpha: f64) {
        let ax = |v: &mut Vec<f64>, dv: &Vec<f64>| {
            v.iter_mut().zip(dv).for_each(|(x, d)| *x += alpha * d);
        };
        ax(&mut self.x, &d.x);
        ax(&mut self.zl, &d.zl);
        ax(&mut self.zu, &d.zu);
        ax(&mut self.y, &d.y);
        ax(&mut self.zy, &d.zy);
        for (f, df) in self.fam.iter_mut().zip(&d.fam) {
            ax(&mut f.u, &df.u);
            ax(&mut f.zeta, &df.zeta);
            ax(&mut f.sl, &df.sl);
            ax(&mut f.lam, &df.lam);
        }
        ax(&mut self.dsl, &d.dsl);
        ax(&mut self.dlam, &d.dlam);
        ax(&mut self.bsl, &d.bsl);
        ax(&mut self.blam, &d.blam);
    }
}

impl Res {
    /// Residuals of the same shapes, all zero (right-hand side of a corrector).
    fn zeros_like(&self) -> Res {
        let z = |v: &Vec<f64>| vec![0.0; v.len()];
        Res {
            rx: z(&self.rx),
            ry: z(&self.ry),
            fam: self.fam.iter().map(|(a, b)| (z(a), z(b))).collect(),
            rpd: z(&self.rpd),
            rpb: z(&self.rpb),
            qx: z(&self.qx),
        }
    }
}

struct Res {
    rx: Vec<f64>,
    ry: Vec<f64>,
    /// Per family: (ru, rp).
    fam: Vec<(Vec<f64>, Vec<f64>)>,
    rpd: Vec<f64>,
    rpb: Vec<f64>,
    qx: Vec<f64>,
}

/// Per-iteration linearisation: scalings and the factorised Newton matrix.
struct Lin {
    theta: Vec<Vec<f64>>,
    /// `1 / D_v` for families with `u`.
    dinv: Vec<Vec<f64>>,
    cb: Vec<Vec<f64>>,
    kb: Vec<f64>,
    dtheta: Vec<f64>,
    fac: Factor,
}

/// The solver: the model, its compact candidate rows and the iterate.
pub struct Ipm<'a> {
    pub a: &'a InfluenceMatrix,
    pub model: Model,
    /// Free beamlets (ascending) and the inverse map.
    pub free: Vec<usize>,
    pub free_of: Vec<u32>,
    /// Constant Hessian restricted to the free beamlets (full, column-major).
    qf: Option<Vec<f64>>,
    cf: Vec<f64>,
    dense_gf: Vec<Vec<f64>>,
    pub cm: Compact,
    pub fam_idx: Vec<Vec<u32>>,
    pub st: State,
    pub settings: Settings,
    pub iterations: u32,
    buf: Vec<f64>,
    /// Reference scales.
    pub mu0: f64,
    /// Candidate round (1-based), for observers.
    pub round: usize,
    /// Seconds spent in: residuals, scalings + Schur assembly + Cholesky, directions.
    pub seconds: [f64; 3],
    /// Centrality correctors kept (all iterations).
    pub correctors: u32,
}

/// Starting complementarity relative to `|gradient| x0` (or the largest border cost).
const START_MU_FACTOR: f64 = 0.1;
/// Smallest starting slack, Gy.
pub const START_SLACK_GY: f64 = 1.0;

/// Gondzio correctors: at most this many per iteration, each aiming at a step longer by
/// `GONDZIO_STEP`, kept if the step grows by `GONDZIO_ACCEPT` of that; products pulled into
/// `[GONDZIO_BETA_MIN, GONDZIO_BETA_MAX]` times the target complementarity (Colombo & Gondzio
/// 2008 use 0.1 and 10).
const GONDZIO_MAX: usize = 2;
const GONDZIO_STEP: f64 = 0.2;
const GONDZIO_ACCEPT: f64 = 0.1;
const GONDZIO_BETA_MIN: f64 = 0.1;
const GONDZIO_BETA_MAX: f64 = 10.0;

/// Slack (Gy) of voxels that join the candidate set mid-solve.
const NEW_ROW_DELTA_GY: f64 = 1e-2;

fn dotv(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_step(v: &[f64], dv: &[f64], amax: &mut f64) {
    for (&s, &d) in v.iter().zip(dv) {
        if d < 0.0 {
            let a = -s / d;
            if a < *amax {
                *amax = a;
            }
        }
    }
}

impl<'a> Ipm<'a> {
    /// Set up with every beamlet free, and a starting point: uniform fluence that gives the
    /// target its prescribed mean dose (`x0_mu`), rows' slacks at least 1 Gy, every
    /// complementary product equal to `mu0`.
    pub fn new(a: &'a InfluenceMatrix, model: Model, x0_mu: f64, settings: Settings) -> Self {
        let n = model.n;
        let free: Vec<usize> = (0..n).collect();
        let free_of: Vec<u32> = (0..n as u32).collect();
        let mut ipm = Ipm {
            a,
            cm: Compact::new(a, vec![], &free_of, n),
            model,
            free,
            free_of,
            qf: None,
            cf: vec![],
            dense_gf: vec![],
            fam_idx: vec![],
            st: State::default(),
            settings,
            iterations: 0,
            buf: Vec::new(),
            mu0: 1.0,
            seconds: [0.0; 3],
            correctors: 0,
            round: 1,
        };
        ipm.restrict();
        ipm.rebuild_compact();
        let ub = ipm.model.ub;
        let x0 = match ub {
            Some(u) => x0_mu.min(0.5 * u),
            None => x0_mu,
        }
        .max(1e-6);
        let nf = ipm.free.len();
        ipm.st.x = vec![x0; nf];
        ipm.st.y = ipm.model.ys.iter().map(|y| y.init).collect();
        // mu0 from the objective's gradient scale: duals of the bounds near |grad| / 10.
        let g = ipm.grad_scale();
        let (mu_f, delta) = (START_MU_FACTOR, START_SLACK_GY);
        let cy = ipm.model.ys.iter().fold(0.0f64, |m, y| m.max(y.cost.abs()));
        let mu0 = (mu_f * (g * x0).max(cy)).max(1e-8);
        ipm.mu0 = mu0;
        ipm.recentre(mu0, delta);
        ipm
    }

    /// Re-initialise every slack, hinge variable and dual around the current `x`, `y`:
    /// slacks at least `delta` (Gy), every complementary product `mu`. Used at the start and
    /// after candidate voxels joined with large violations (primal warm start).
    pub fn recentre(&mut self, mu: f64, delta: f64) {
        let ub = self.model.ub;
        let xs = self.st.x.clone();
        self.st.zl = xs.iter().map(|x| mu / x).collect();
        self.st.zu = match ub {
            Some(u) => xs.iter().map(|x| mu / (u - x)).collect(),
            None => vec![],
        };
        self.st.zy = self
            .model
            .ys
            .iter()
            .zip(&self.st.y)
            .map(|(yv, &y)| if yv.nonneg { mu / y } else { 0.0 })
            .collect();
        let nfam = self.model.fams.len();
        self.st.fam = vec![FamState::default(); nfam];
        for fi in 0..nfam {
            let len = self.model.fams[fi].voxels.len();
            let vals = self.row_values(fi, 0..len);
            let fs = self.init_rows(fi, &vals, mu, delta);
            self.st.fam[fi] = fs;
        }
        self.st.dsl = (0..self.model.dense.len())
            .map(|di| {
                let d = &self.model.dense[di];
                let v = dotv(&self.dense_gf[di], &xs) + ycoef_dot(&d.ycoef, &self.st.y) - d.h;
                (-v).max(delta)
            })
            .collect();
        self.st.dlam = self.st.dsl.iter().map(|s| mu / s).collect();
        self.st.bsl = (0..self.model.borders.len())
            .map(|bi| {
                let b = &self.model.borders[bi];
                let v = ycoef_dot(&b.ycoef, &self.st.y)
                    + border_sum(&self.model.fams[b.family], &self.st.fam[b.family].u)
                    - b.h;
                (-v).max(delta)
            })
            .collect();
        self.st.blam = self.st.bsl.iter().map(|s| mu / s).collect();
    }

    fn grad_scale(&self) -> f64 {
        let x = &self.st.x;
        let mut g: Vec<f64> = self.cf.clone();
        if let Some(q) = &self.qf {
            let qx = symv(q, x);
            g.iter_mut().zip(&qx).for_each(|(a, b)| *a += b);
        }
        let m = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        m.max(1e-6)
    }

    /// Row values `s f a_v'x + e'y - h` for voxels `range` of family `fi` (x: free iterate).
    fn row_values(&self, fi: usize, range: std::ops::Range<usize>) -> Vec<f64> {
        let fam = &self.model.fams[fi];
        let idx = &self.fam_idx[fi][range];
        let ax = self.cm.dots(idx, &self.st.x);
        let ey = ycoef_dot(&fam.ycoef, &self.st.y);
        let sf = fam.sign * self.model.fractions;
        ax.iter().map(|v| sf * v + ey - fam.h).collect()
    }

    /// Starting values of rows with row values `vals`: `u = max(val, 0) + delta`, slack
    /// `u - val` or `max(-val, delta)`, duals `mu / slack`.
    fn init_rows(&self, fi: usize, vals: &[f64], mu: f64, delta: f64) -> FamState {
        let has_u = self.model.fams[fi].u.is_some();
        let mut fs = FamState::default();
        for &v in vals {
            if has_u {
                let u = v.max(0.0) + delta;
                let sl = u - v;
                fs.u.push(u);
                fs.zeta.push(mu / u);
                fs.sl.push(sl);
                fs.lam.push(mu / sl);
            } else {
                let sl = (-v).max(delta);
                fs.sl.push(sl);
                fs.lam.push(mu / sl);
            }
        }
        fs
    }

    /// Append candidate voxels to family `fi` with row values `vals`, centred at the current
    /// complementarity (no restart). Call [`Ipm::rebuild_compact`] afterwards.
    pub fn add_voxels(&mut self, fi: usize, new: Vec<u32>, wv: Vec<f64>, vals: &[f64]) {
        let mu = self.mu().max(1e-6 * self.mu0);
        let fs = self.init_rows(fi, vals, mu, NEW_ROW_DELTA_GY);
        let st = &mut self.st.fam[fi];
        st.u.extend(fs.u);
        st.zeta.extend(fs.zeta);
        st.sl.extend(fs.sl);
        st.lam.extend(fs.lam);
        self.model.fams[fi].voxels.extend(new);
        self.model.fams[fi].wv.extend(wv);
    }

    /// Restrict the constant terms to the free beamlets.
    fn restrict(&mut self) {
        let n = self.model.n;
        let nf = self.free.len();
        self.qf = self.model.q.as_ref().map(|q| {
            if nf == n {
                q.as_ref().clone()
            } else {
                let mut out = vec![0.0; nf * nf];
                out.par_chunks_mut(nf.max(1))
                    .enumerate()
                    .for_each(|(jj, col)| {
                        let j = self.free[jj];
                        for (ii, o) in col.iter_mut().enumerate() {
                            *o = q[self.free[ii] + j * n];
                        }
                    });
                out
            }
        });
        self.cf = self.free.iter().map(|&j| self.model.c[j]).collect();
        self.dense_gf = self
            .model
            .dense
            .iter()
            .map(|d| self.free.iter().map(|&j| d.g[j]).collect())
            .collect();
    }

    /// Beamlet fixing: once the relative gap is below [`FIX_GAP`], beamlets clearly at zero
    /// (`x_j < 1e-3 mean(x)` with a bound dual `z_j > 1e3 mu / mean(x)`) leave the Newton
    /// system at `x_j = 0`. Returns how many were fixed.
    pub fn fix_beamlets(&mut self) -> usize {
        let nf = self.free.len();
        if nf == 0 {
            return 0;
        }
        let mu = self.mu();
        let xbar = self.st.x.iter().sum::<f64>() / nf as f64;
        let keep: Vec<bool> = (0..nf)
            .map(|jj| !(self.st.x[jj] < 1e-3 * xbar && self.st.zl[jj] > 1e3 * mu / xbar))
            .collect();
        self.fix_where(&keep)
    }

    /// Fix the free beamlets `jj` with `!keep[jj]` at zero. Returns how many were fixed.
    fn fix_where(&mut self, keep: &[bool]) -> usize {
        let n_fix = keep.iter().filter(|k| !**k).count();
        if n_fix == 0 || n_fix == keep.len() {
            return 0;
        }
        let pick = |v: &Vec<f64>| -> Vec<f64> {
            if v.is_empty() {
                return vec![];
            }
            v.iter()
                .zip(keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| *x)
                .collect()
        };
        self.st.x = pick(&self.st.x);
        self.st.zl = pick(&self.st.zl);
        self.st.zu = pick(&self.st.zu);
        self.free = self
            .free
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(j, _)| *j)
            .collect();
        self.set_free_map();
        n_fix
    }

    /// Start with the beamlets `fixed` (ascending, e.g. those a previous solve of a related
    /// problem ended with at zero) fixed at zero; they stay fixed until the certificate at
    /// convergence releases those it does not hold for. Call before the first iteration;
    /// returns how many were fixed.
    pub fn fix_initially(&mut self, fixed: &[usize]) -> usize {
        let keep: Vec<bool> = self
            .free
            .iter()
            .map(|j| fixed.binary_search(j).is_err())
            .collect();
        let n = self.fix_where(&keep);
        if n > 0 {
            let mu = self.mu0;
            self.recentre(mu, START_SLACK_GY);
        }
        n
    }

    /// Beamlets fixed at zero now (ascending).
    pub fn fixed(&self) -> Vec<usize> {
        (0..self.model.n)
            .filter(|&j| self.free_of[j] == u32::MAX)
            .collect()
    }

    /// Release fixed beamlets `release` (their reduced gradient is negative): they rejoin at
    /// a small positive weight, centred at complementarity `mu`.
    pub fn release_beamlets(&mut self, release: &[usize], mu: f64) {
        let nf = self.free.len().max(1);
        let xbar = self.st.x.iter().sum::<f64>() / nf as f64;
        let x_new = (1e-3 * xbar).max(1e-9);
        let mut all: Vec<(usize, f64, f64, f64)> = self
            .free
            .iter()
            .enumerate()
            .map(|(jj, &j)| {
                (
                    j,
                    self.st.x[jj],
                    self.st.zl[jj],
                    self.st.zu.get(jj).copied().unwrap_or(0.0),
                )
            })
            .collect();
        let ub = self.model.ub;
        for &j in release {
            let zu = ub.map(|u| mu / (u - x_new)).unwrap_or(0.0);
            all.push((j, x_new, mu / x_new, zu));
        }
        all.sort_by_key(|e| e.0);
        self.free = all.iter().map(|e| e.0).collect();
        self.st.x = all.iter().map(|e| e.1).collect();
        self.st.zl = all.iter().map(|e| e.2).collect();
        if ub.is_some() {
            self.st.zu = all.iter().map(|e| e.3).collect();
        }
        self.set_free_map();
    }

    fn set_free_map(&mut self) {
        self.free_of = vec![u32::MAX; self.model.n];
        for (jj, &j) in self.free.iter().enumerate() {
            self.free_of[j] = jj as u32;
        }
        self.restrict();
        self.rebuild_compact();
    }

    /// Reduced gradient `(Q x + c + G' lambda)_j` of every fixed beamlet (the fixing
    /// certificate: `>= 0` at an optimum with `x_j = 0`), with the relative scale of the dual
    /// residual test.
    pub fn fixed_reduced_gradients(&self) -> (Vec<(usize, f64)>, f64) {
        let m = &self.model;
        let n = m.n;
        let f = m.fractions;
        let mut x_full = vec![0.0; n];
        for (jj, &j) in self.free.iter().enumerate() {
            x_full[j] = self.st.x[jj];
        }
        let mut w = vec![0.0; self.a.n_rows()];
        for (fi, fm) in m.fams.iter().enumerate() {
            for (&ci, &l) in self.fam_idx[fi].iter().zip(&self.st.fam[fi].lam) {
                w[self.cm.rows[ci as usize] as usize] += fm.sign * f * l;
            }
        }
        let gl = self.a.adjoint(&w);
        let fixed: Vec<usize> = (0..n).filter(|&j| self.free_of[j] == u32::MAX).collect();
        let mut out = Vec::with_capacity(fixed.len());
        let mut scale = 1.0f64;
        for &j in &fixed {
            let mut g = m.c[j] + gl[j];
            if let Some(q) = &m.q {
                let qx = dotv(&q[j * n..(j + 1) * n], &x_full);
                scale = scale.max(qx.abs());
                g += qx;
            }
            for (di, d) in m.dense.iter().enumerate() {
                g += self.st.dlam[di] * d.g[j];
            }
            scale = scale.max(m.c[j].abs());
            out.push((j, g));
        }
        (out, 1.0 + scale)
    }

    /// Rebuild the compact rows after candidate voxels or free beamlets changed.
    pub fn rebuild_compact(&mut self) {
        let mut rows: Vec<u32> = self
            .model
            .fams
            .iter()
            .flat_map(|f| f.voxels.iter().copied())
            .collect();
        rows.sort_unstable();
        rows.dedup();
        self.fam_idx = self
            .model
            .fams
            .iter()
            .map(|f| {
                f.voxels
                    .iter()
                    .map(|v| rows.binary_search(v).unwrap_or(0) as u32)
                    .collect()
            })
            .collect();
        self.cm = Compact::new(self.a, rows, &self.free_of, self.free.len());
    }

    fn n_pairs(&self) -> usize {
        let st = &self.st;
        st.x.len()
            + st.zu.len()
            + self.model.ys.iter().filter(|y| y.nonneg).count()
            + st.fam.iter().map(|f| f.sl.len() + f.u.len()).sum::<usize>()
            + st.dsl.len()
            + st.bsl.len()
    }

    pub fn mu(&self) -> f64 {
        let st = &self.st;
        let mut s = dotv(&st.x, &st.zl);
        if let Some(ub) = self.model.ub {
            s +=
                st.x.iter()
                    .zip(&st.zu)
                    .map(|(x, z)| (ub - x) * z)
                    .sum::<f64>();
        }
        for (k, yv) in self.model.ys.iter().enumerate() {
            if yv.nonneg {
                s += st.y[k] * st.zy[k];
            }
        }
        for f in &st.fam {
            s += dotv(&f.sl, &f.lam) + dotv(&f.u, &f.zeta);
        }
        s += dotv(&st.dsl, &st.dlam) + dotv(&st.bsl, &st.blam);
        s / self.n_pairs().max(1) as f64
    }

    /// Objective of the current iterate.
    pub fn objective(&self) -> f64 {
        let x = &self.st.x;
        let mut o = self.model.obj_const + dotv(&self.cf, x);
        if let Some(q) = &self.qf {
            o += 0.5 * dotv(&symv(q, x), x);
        }
        for (fi, f) in self.model.fams.iter().enumerate() {
            if let Some(up) = &f.u {
                o += 0.5
                    * up.quad
                    * self.st.fam[fi]
                        .u
                        .iter()
                        .zip(&f.wv)
                        .map(|(u, w)| w * u * u)
                        .sum::<f64>();
            }
        }
        o + self
            .model
            .ys
            .iter()
            .zip(&self.st.y)
            .map(|(yv, y)| yv.cost * y)
            .sum::<f64>()
    }

    fn residuals(&self) -> Res {
        let m = &self.model;
        let st = &self.st;
        let nf = self.free.len();
        let k = m.ys.len();
        let f = m.fractions;
        let qx = match &self.qf {
            Some(q) => symv(q, &st.x),
            None => vec![0.0; nf],
        };
        let mut rx: Vec<f64> = (0..nf)
            .map(|j| qx[j] + self.cf[j] - st.zl[j] + st.zu.get(j).copied().unwrap_or(0.0))
            .collect();
        let mut ry: Vec<f64> = (0..k)
            .map(|i| m.ys[i].cost - if m.ys[i].nonneg { st.zy[i] } else { 0.0 })
            .collect();
        let mut fam = Vec::with_capacity(m.fams.len());
        for (fi, fm) in m.fams.iter().enumerate() {
            let fs = &st.fam[fi];
            let vals = self.row_values(fi, 0..fm.voxels.len());
            let w: Vec<f64> = fs.lam.iter().map(|l| fm.sign * f * l).collect();
            self.cm.scatter(&self.fam_idx[fi], &w, &mut rx);
            let sl: f64 = fs.lam.iter().sum();
            for &(yk, e) in &fm.ycoef {
                ry[yk] += e * sl;
            }
            let (ru, rp) = if let Some(up) = &fm.u {
                let lb = up.border.map(|b| st.blam[b]).unwrap_or(0.0);
                let ru: Vec<f64> = (0..vals.len())
                    .map(|v| fm.wv[v] * (up.quad * fs.u[v] + up.beta * lb) - fs.lam[v] - fs.zeta[v])
                    .collect();
                let rp: Vec<f64> = (0..vals.len())
                    .map(|v| vals[v] - fs.u[v] + fs.sl[v])
                    .collect();
                (ru, rp)
            } else {
                let rp: Vec<f64> = (0..vals.len()).map(|v| vals[v] + fs.sl[v]).collect();
                (vec![], rp)
            };
            fam.push((ru, rp));
        }
        let mut rpd = Vec::with_capacity(m.dense.len());
        for (di, d) in m.dense.iter().enumerate() {
            let g = &self.dense_gf[di];
            for j in 0..nf {
                rx[j] += st.dlam[di] * g[j];
            }
            for &(yk, e) in &d.ycoef {
                ry[yk] += e * st.dlam[di];
            }
            rpd.push(dotv(g, &st.x) + ycoef_dot(&d.ycoef, &st.y) - d.h + st.dsl[di]);
        }
        let mut rpb = Vec::with_capacity(m.borders.len());
        for (bi, b) in m.borders.iter().enumerate() {
            for &(yk, e) in &b.ycoef {
                ry[yk] += e * st.blam[bi];
            }
            let su = border_sum(&m.fams[b.family], &st.fam[b.family].u);
            rpb.push(ycoef_dot(&b.ycoef, &st.y) + su - b.h + st.bsl[bi]);
        }
        Res {
            rx,
            ry,
            fam,
            rpd,
            rpb,
            qx,
        }
    }

    fn linearise(&mut self) -> Result<Lin, String> {
        let m = &self.model;
        let st = &self.st;
        let nf = self.free.len();
        let k = m.ys.len();
        let dim = nf + k;
        let f = m.fractions;
        let mut gram_w = vec![0.0; self.cm.rows.len()];
        let mut diag = vec![0.0; dim];
        for j in 0..nf {
            diag[j] = st.zl[j] / st.x[j];
            if let Some(ub) = m.ub {
                diag[j] += st.zu[j] / (ub - st.x[j]);
            }
        }
        for (i, yv) in m.ys.iter().enumerate() {
            if yv.nonneg {
                diag[nf + i] = st.zy[i] / st.y[i];
            }
        }
        let mut cross = vec![vec![0.0; nf]; k];
        let mut yy = vec![0.0; k * k];
        let mut theta = Vec::with_capacity(m.fams.len());
        let mut dinv = Vec::with_capacity(m.fams.len());
        let mut rank1 = Vec::new();
        let mut cb = vec![vec![]; m.borders.len()];
        let mut kb = vec![0.0; m.borders.len()];
        for (fi, fm) in m.fams.iter().enumerate() {
            let fs = &st.fam[fi];
            let th: Vec<f64> = fs.lam.iter().zip(&fs.sl).map(|(l, s)| l / s).collect();
            let (om, di): (Vec<f64>, Vec<f64>) = match &fm.u {
                Some(up) => {
                    let di: Vec<f64> = (0..th.len())
                        .map(|v| 1.0 / (up.quad * fm.wv[v] + th[v] + fs.zeta[v] / fs.u[v]))
                        .collect();
                    let om = (0..th.len())
                        .map(|v| th[v] * (up.quad * fm.wv[v] + fs.zeta[v] / fs.u[v]) * di[v])
                        .collect();
                    (om, di)
                }
                None => (th.clone(), vec![]),
            };
            for (&ci, &w) in self.fam_idx[fi].iter().zip(&om) {
                gram_w[ci as usize] += f * f * w;
            }
            if !fm.ycoef.is_empty() {
                let mut cv = vec![0.0; nf];
                let w: Vec<f64> = om.iter().map(|w| fm.sign * f * w).collect();
                self.cm.scatter(&self.fam_idx[fi], &w, &mut cv);
                let so: f64 = om.iter().sum();
                for &(yk, e) in &fm.ycoef {
                    cross[yk].iter_mut().zip(&cv).for_each(|(a, b)| *a += e * b);
                    for &(yk2, e2) in &fm.ycoef {
                        yy[yk * k + yk2] += e * e2 * so;
                    }
                }
            }
            if let Some(up) = &fm.u {
                if let Some(b) = up.border {
                    let bd = &m.borders[b];
                    // beta_v = beta w_v, the voxel's coefficient in the border row.
                    let bv: Vec<f64> = fm.wv.iter().map(|w| up.beta * w).collect();
                    let w: Vec<f64> = (0..th.len())
                        .map(|v| bv[v] * fm.sign * f * th[v] * di[v])
                        .collect();
                    let mut c = vec![0.0; dim];
                    self.cm.scatter(&self.fam_idx[fi], &w, &mut c[..nf]);
                    let stdd: f64 = (0..th.len()).map(|v| bv[v] * th[v] * di[v]).sum();
                    for &(yk, e) in &bd.ycoef {
                        c[nf + yk] += e;
                    }
                    for &(yk, e) in &fm.ycoef {
                        c[nf + yk] += stdd * e;
                    }
                    let sdi: f64 = (0..th.len()).map(|v| bv[v] * bv[v] * di[v]).sum();
                    kb[b] = st.bsl[b] / st.blam[b] + sdi;
                    rank1.push(RankOne {
                        alpha: 1.0 / kb[b],
                        v: c.clone(),
                    });
                    cb[b] = c;
                }
            }
            theta.push(th);
            dinv.push(di);
        }
        let mut dtheta = Vec::with_capacity(m.dense.len());
        for (di, d) in m.dense.iter().enumerate() {
            let t = st.dlam[di] / st.dsl[di];
            let mut v = vec![0.0; dim];
            v[..nf].copy_from_slice(&self.dense_gf[di]);
            for &(yk, e) in &d.ycoef {
                v[nf + yk] += e;
            }
            rank1.push(RankOne { alpha: t, v });
            dtheta.push(t);
        }
        let parts = Parts {
            q: self.qf.as_deref(),
            gram_w: &gram_w,
            diag: &diag,
            cross: &cross,
            yy: &yy,
            rank1: &rank1,
        };
        let buf = std::mem::take(&mut self.buf);
        let fac = Factor::new(nf, k, &self.cm, &parts, self.settings.threads, buf)?;
        Ok(Lin {
            theta,
            dinv,
            cb,
            kb,
            dtheta,
            fac,
        })
    }

    /// One Newton direction: primal and dual residuals `res`, and for every complementary
    /// pair `(s, l)` the right-hand side `rc(s, l, ds, dl)` of `l ds + s dl = rc`, where
    /// `(ds, dl)` are the pair's components in `aff` (zero without it).
    fn direction(
        &self,
        lin: &Lin,
        res: &Res,
        rc: &dyn Fn(f64, f64, f64, f64) -> f64,
        aff: Option<&State>,
    ) -> State {
        let m = &self.model;
        let st = &self.st;
        let nf = self.free.len();
        let k = m.ys.len();
        let f = m.fractions;
        let ub = m.ub.unwrap_or(0.0);
        let a0 = State::default();
        let af = aff.unwrap_or(&a0);
        let g = |v: &Vec<f64>, i: usize| v.get(i).copied().unwrap_or(0.0);
        // Complementarity targets.
        let rc_zl: Vec<f64> = (0..nf)
            .map(|j| rc(st.x[j], st.zl[j], g(&af.x, j), g(&af.zl, j)))
            .collect();
        let rc_zu: Vec<f64> = (0..st.zu.len())
            .map(|j| rc(ub - st.x[j], st.zu[j], -g(&af.x, j), g(&af.zu, j)))
            .collect();
        let rc_zy: Vec<f64> = (0..k)
            .map(|i| {
                if m.ys[i].nonneg {
                    rc(st.y[i], st.zy[i], g(&af.y, i), g(&af.zy, i))
                } else {
                    0.0
                }
            })
            .collect();
        let mut rhs = vec![0.0; nf + k];
        for j in 0..nf {
            rhs[j] = -res.rx[j] + rc_zl[j] / st.x[j];
            if m.ub.is_some() {
                rhs[j] -= rc_zu[j] / (ub - st.x[j]);
            }
        }
        for i in 0..k {
            rhs[nf + i] = -res.ry[i];
            if m.ys[i].nonneg {
                rhs[nf + i] += rc_zy[i] / st.y[i];
            }
        }
        // Families.
        let mut rho_all = Vec::with_capacity(m.fams.len());
        let mut e_all = Vec::with_capacity(m.fams.len());
        let mut rc_zeta_all = Vec::with_capacity(m.fams.len());
        let mut sum_ed = vec![0.0; m.borders.len()];
        for (fi, fm) in m.fams.iter().enumerate() {
            let fs = &st.fam[fi];
            let afs = af.fam.get(fi);
            let gv =
                |o: Option<&Vec<f64>>, i: usize| o.and_then(|v| v.get(i)).copied().unwrap_or(0.0);
            let nv = fs.sl.len();
            let th = &lin.theta[fi];
            let (ru, rp) = &res.fam[fi];
            let rho: Vec<f64> = (0..nv)
                .map(|v| {
                    let r = rc(
                        fs.sl[v],
                        fs.lam[v],
                        gv(afs.map(|a| &a.sl), v),
                        gv(afs.map(|a| &a.lam), v),
                    );
                    th[v] * rp[v] + r / fs.sl[v]
                })
                .collect();
            let pi: Vec<f64>;
            if let Some(up) = &fm.u {
                let di = &lin.dinv[fi];
                let rcz: Vec<f64> = (0..nv)
                    .map(|v| {
                        rc(
                            fs.u[v],
                            fs.zeta[v],
                            gv(afs.map(|a| &a.u), v),
                            gv(afs.map(|a| &a.zeta), v),
                        )
                    })
                    .collect();
                let e: Vec<f64> = (0..nv)
                    .map(|v| -ru[v] + rho[v] + rcz[v] / fs.u[v])
                    .collect();
                pi = (0..nv).map(|v| rho[v] - th[v] * e[v] * di[v]).collect();
                if let Some(b) = up.border {
                    sum_ed[b] += (0..nv)
                        .map(|v| up.beta * fm.wv[v] * e[v] * di[v])
                        .sum::<f64>();
                }
                e_all.push(e);
                rc_zeta_all.push(rcz);
            } else {
                pi = rho.clone();
                e_all.push(vec![]);
                rc_zeta_all.push(vec![]);
            }
            let w: Vec<f64> = pi.iter().map(|p| -fm.sign * f * p).collect();
            self.cm.scatter(&self.fam_idx[fi], &w, &mut rhs[..nf]);
            let sp: f64 = pi.iter().sum();
            for &(yk, e) in &fm.ycoef {
                rhs[nf + yk] -= e * sp;
            }
            rho_all.push(rho);
        }
        let mut drho = Vec::with_capacity(m.dense.len());
        let mut rc_d = Vec::with_capacity(m.dense.len());
        for (di, d) in m.dense.iter().enumerate() {
            let r = rc(st.dsl[di], st.dlam[di], g(&af.dsl, di), g(&af.dlam, di));
            let rho = lin.dtheta[di] * res.rpd[di] + r / st.dsl[di];
            for j in 0..nf {
                rhs[j] -= self.dense_gf[di][j] * rho;
            }
            for &(yk, e) in &d.ycoef {
                rhs[nf + yk] -= e * rho;
            }
            drho.push(rho);
            rc_d.push(r);
        }
        let mut rb = vec![0.0; m.borders.len()];
        let mut rc_b = vec![0.0; m.borders.len()];
        for bi in 0..m.borders.len() {
            rc_b[bi] = rc(st.bsl[bi], st.blam[bi], g(&af.bsl, bi), g(&af.blam, bi));
            rb[bi] = -res.rpb[bi] - rc_b[bi] / st.blam[bi] - sum_ed[bi];
            let s = rb[bi] / lin.kb[bi];
            for (r, c) in rhs.iter_mut().zip(&lin.cb[bi]) {
                *r += c * s;
            }
        }
        lin.fac.solve(&mut rhs);
        let dx = rhs[..nf].to_vec();
        let dy = rhs[nf..].to_vec();
        let mut d = State {
            x: dx,
            y: dy,
            ..Default::default()
        };
        d.blam = (0..m.borders.len())
            .map(|bi| (dotv(&lin.cb[bi], &rhs) - rb[bi]) / lin.kb[bi])
            .collect();
        d.bsl = (0..m.borders.len())
            .map(|bi| (rc_b[bi] - st.bsl[bi] * d.blam[bi]) / st.blam[bi])
            .collect();
        for (fi, fm) in m.fams.iter().enumerate() {
            let fs = &st.fam[fi];
            let th = &lin.theta[fi];
            let rho = &rho_all[fi];
            let (_, rp) = &res.fam[fi];
            let ax = self.cm.dots(&self.fam_idx[fi], &d.x);
            let ey = ycoef_dot(&fm.ycoef, &d.y);
            let gd: Vec<f64> = ax.iter().map(|v| fm.sign * f * v + ey).collect();
            let nv = gd.len();
            let mut dfs = FamState::default();
            if let Some(up) = &fm.u {
                let di = &lin.dinv[fi];
                let e = &e_all[fi];
                let lb = up.border.map(|b| d.blam[b]).unwrap_or(0.0);
                dfs.u = (0..nv)
                    .map(|v| (e[v] + th[v] * gd[v] - up.beta * fm.wv[v] * lb) * di[v])
                    .collect();
                dfs.lam = (0..nv)
                    .map(|v| th[v] * (gd[v] - dfs.u[v]) + rho[v])
                    .collect();
                dfs.sl = (0..nv).map(|v| -rp[v] - (gd[v] - dfs.u[v])).collect();
                let rcz = &rc_zeta_all[fi];
                dfs.zeta = (0..nv)
                    .map(|v| (rcz[v] - fs.zeta[v] * dfs.u[v]) / fs.u[v])
                    .collect();
            } else {
                dfs.lam = (0..nv).map(|v| th[v] * gd[v] + rho[v]).collect();
                dfs.sl = (0..nv).map(|v| -rp[v] - gd[v]).collect();
            }
            d.fam.push(dfs);
        }
        for (di, dr) in m.dense.iter().enumerate() {
            let gd = dotv(&self.dense_gf[di], &d.x) + ycoef_dot(&dr.ycoef, &d.y);
            d.dlam.push(lin.dtheta[di] * gd + drho[di]);
            d.dsl.push(-res.rpd[di] - gd);
        }
        d.zl = (0..nf)
            .map(|j| (rc_zl[j] - st.zl[j] * d.x[j]) / st.x[j])
            .collect();
        d.zu = (0..st.zu.len())
            .map(|j| (rc_zu[j] + st.zu[j] * d.x[j]) / (ub - st.x[j]))
            .collect();
        d.zy = (0..k)
            .map(|i| {
                if m.ys[i].nonneg {
                    (rc_zy[i] - st.zy[i] * d.y[i]) / st.y[i]
                } else {
                    0.0
                }
            })
            .collect();
        d
    }

    /// Gondzio's multiple centrality correctors (Gondzio, Comput. Optim. Appl. 6:137, 1996;
    /// Colombo & Gondzio, Comput. Optim. Appl. 41:277, 2008): aim at a longer step
    /// `a~ = min(1, a + GONDZIO_STEP)` by pulling the products `(s + a~ ds)(l + a~ dl)` that
    /// leave `[b_min sigma_mu, b_max sigma_mu]` back into it, with zero residuals (the
    /// corrector reuses the factorisation: one more pair of triangular solves). A corrector is
    /// kept only if it lengthens the step by `GONDZIO_ACCEPT * GONDZIO_STEP`. Returns how many
    /// were kept.
    fn centrality_correctors(&self, lin: &Lin, res: &Res, sigma_mu: f64, d: &mut State) -> u32 {
        let (ap, ad) = self.step_lengths(d);
        let mut a = ap.min(ad);
        let zero = res.zeros_like();
        let (lo, hi) = (GONDZIO_BETA_MIN * sigma_mu, GONDZIO_BETA_MAX * sigma_mu);
        let mut kept = 0;
        for _ in 0..GONDZIO_MAX {
            if a >= 0.99 {
                break;
            }
            let at = (a + GONDZIO_STEP).min(1.0);
            let rc = |s: f64, l: f64, ds: f64, dl: f64| {
                let v = (s + at * ds) * (l + at * dl);
                (v.clamp(lo, hi) - v).max(-hi)
            };
            let corr = self.direction(lin, &zero, &rc, Some(d));
            let mut trial = d.clone();
            trial.add_scaled(&corr, 1.0);
            let (tp, td) = self.step_lengths(&trial);
            let a_new = tp.min(td);
            if a_new < a + GONDZIO_ACCEPT * GONDZIO_STEP {
                break;
            }
            *d = trial;
            a = a_new;
            kept += 1;
        }
        kept
    }

    /// Residuals of the linearised KKT equations for a direction (diagnostics).
    fn check_direction(&self, res: &Res, d: &State) -> (f64, f64, f64) {
        let m = &self.model;
        let nf = self.free.len();
        let k = m.ys.len();
        let f = m.fractions;
        let mut ex: Vec<f64> = match &self.qf {
            Some(q) => symv(q, &d.x),
            None => vec![0.0; nf],
        };
        for j in 0..nf {
            ex[j] += res.rx[j] - d.zl[j] + d.zu.get(j).copied().unwrap_or(0.0);
        }
        let mut ey: Vec<f64> = (0..k)
            .map(|i| res.ry[i] - if m.ys[i].nonneg { d.zy[i] } else { 0.0 })
            .collect();
        let mut eu = 0.0f64;
        for (fi, fm) in m.fams.iter().enumerate() {
            let w: Vec<f64> = d.fam[fi].lam.iter().map(|l| fm.sign * f * l).collect();
            self.cm.scatter(&self.fam_idx[fi], &w, &mut ex);
            let sl: f64 = d.fam[fi].lam.iter().sum();
            for &(yk, e) in &fm.ycoef {
                ey[yk] += e * sl;
            }
            if let Some(up) = &fm.u {
                let lb = up.border.map(|b| d.blam[b]).unwrap_or(0.0);
                let df = &d.fam[fi];
                for v in 0..df.u.len() {
                    let r = fm.wv[v] * (up.quad * df.u[v] + up.beta * lb) - df.lam[v] - df.zeta[v]
                        + res.fam[fi].0[v];
                    eu = eu.max(r.abs());
                }
            }
        }
        for (di, dr) in m.dense.iter().enumerate() {
            for j in 0..nf {
                ex[j] += d.dlam[di] * self.dense_gf[di][j];
            }
            for &(yk, e) in &dr.ycoef {
                ey[yk] += e * d.dlam[di];
            }
        }
        let mut eb = 0.0f64;
        for (bi, b) in m.borders.iter().enumerate() {
            for &(yk, e) in &b.ycoef {
                ey[yk] += e * d.blam[bi];
            }
            let su = border_sum(&m.fams[b.family], &d.fam[b.family].u);
            let r = ycoef_dot(&b.ycoef, &d.y) + su + d.bsl[bi] + res.rpb[bi];
            eb = eb.max(r.abs());
        }
        let inf = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        (inf(&ex).max(inf(&ey)), eu, eb)
    }

    /// Largest primal and dual steps in (0, 1] that keep every pair positive.
    fn step_lengths(&self, d: &State) -> (f64, f64) {
        let st = &self.st;
        let m = &self.model;
        let (mut ap, mut ad) = (1.0f64, 1.0f64);
        max_step(&st.x, &d.x, &mut ap);
        if let Some(ub) = m.ub {
            let w: Vec<f64> = st.x.iter().map(|x| ub - x).collect();
            let dw: Vec<f64> = d.x.iter().map(|v| -v).collect();
            max_step(&w, &dw, &mut ap);
            max_step(&st.zu, &d.zu, &mut ad);
        }
        max_step(&st.zl, &d.zl, &mut ad);
        for (i, yv) in m.ys.iter().enumerate() {
            if yv.nonneg {
                max_step(&st.y[i..i + 1], &d.y[i..i + 1], &mut ap);
                max_step(&st.zy[i..i + 1], &d.zy[i..i + 1], &mut ad);
            }
        }
        for (fs, dfs) in st.fam.iter().zip(&d.fam) {
            max_step(&fs.sl, &dfs.sl, &mut ap);
            max_step(&fs.u, &dfs.u, &mut ap);
            max_step(&fs.lam, &dfs.lam, &mut ad);
            max_step(&fs.zeta, &dfs.zeta, &mut ad);
        }
        max_step(&st.dsl, &d.dsl, &mut ap);
        max_step(&st.bsl, &d.bsl, &mut ap);
        max_step(&st.dlam, &d.dlam, &mut ad);
        max_step(&st.blam, &d.blam, &mut ad);
        (ap, ad)
    }

    /// Mean complementarity after a step `alpha` along `d`.
    fn mu_after(&self, d: &State, alpha: f64) -> f64 {
        let st = &self.st;
        let m = &self.model;
        let pr = |s: &[f64], ds: &[f64], l: &[f64], dl: &[f64]| -> f64 {
            (0..s.len())
                .map(|i| (s[i] + alpha * ds[i]) * (l[i] + alpha * dl[i]))
                .sum()
        };
        let mut s = pr(&st.x, &d.x, &st.zl, &d.zl);
        if let Some(ub) = m.ub {
            s += (0..st.x.len())
                .map(|j| (ub - st.x[j] - alpha * d.x[j]) * (st.zu[j] + alpha * d.zu[j]))
                .sum::<f64>();
        }
        for (i, yv) in m.ys.iter().enumerate() {
            if yv.nonneg {
                s += (st.y[i] + alpha * d.y[i]) * (st.zy[i] + alpha * d.zy[i]);
            }
        }
        for (fs, dfs) in st.fam.iter().zip(&d.fam) {
            s += pr(&fs.sl, &dfs.sl, &fs.lam, &dfs.lam) + pr(&fs.u, &dfs.u, &fs.zeta, &dfs.zeta);
        }
        s += pr(&st.dsl, &d.dsl, &st.dlam, &d.dlam) + pr(&st.bsl, &d.bsl, &st.blam, &d.blam);
        s / self.n_pairs().max(1) as f64
    }

    fn apply(&mut self, d: &State, ap: f64, ad: f64) {
        let ax = |v: &mut Vec<f64>, dv: &Vec<f64>, a: f64| {
            v.iter_mut().zip(dv).for_each(|(x, d)| *x += a * d);
        };
        let st = &mut self.st;
        ax(&mut st.x, &d.x, ap);
        ax(&mut st.y, &d.y, ap);
        ax(&mut st.zl, &d.zl, ad);
        ax(&mut st.zu, &d.zu, ad);
        ax(&mut st.zy, &d.zy, ad);
        for (fs, dfs) in st.fam.iter_mut().zip(&d.fam) {
            ax(&mut fs.u, &dfs.u, ap);
            ax(&mut fs.sl, &dfs.sl, ap);
            ax(&mut fs.lam, &dfs.lam, ad);
            ax(&mut fs.zeta, &dfs.zeta, ad);
        }
        ax(&mut st.dsl, &d.dsl, ap);
        ax(&mut st.bsl, &d.bsl, ap);
        ax(&mut st.dlam, &d.dlam, ad);
        ax(&mut st.blam, &d.blam, ad);
    }

    /// Residual norms: (primal Gy, relative dual, relative gap).
    fn norms(&self, res: &Res) -> (f64, f64, f64) {
        let inf = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut rp = inf(&res.rpd).max(inf(&res.rpb));
        let mut rd = inf(&res.rx).max(inf(&res.ry));
        for (ru, rpf) in &res.fam {
            rp = rp.max(inf(rpf));
            rd = rd.max(inf(ru));
        }
        let scale = 1.0 + inf(&self.cf).max(inf(&res.qx));
        let obj = self.objective();
        let gap = self.mu() * self.n_pairs() as f64 / obj.abs().max(1.0);
        (rp, rd / scale, gap)
    }

    /// Iterate until the stopping criteria hold (or stall / iteration limit).
    pub fn run(&mut self, checkpoint: bool, fixing: bool) -> Result<Outcome, String> {
        let tol = self.settings.tol;
        let mut rp_hist: Vec<f64> = Vec::new();
        let mut last_gap = f64::INFINITY;
        let mut last_rp = f64::INFINITY;
        loop {
            if fixing && last_gap <= FIX_GAP && last_rp <= FIX_GAP {
                let k = self.fix_beamlets();
                if k > 0 {
                    // Fixing moves x: the primal residual restarts from a new level.
                    rp_hist.clear();
                    if self.settings.verbose {
                        eprintln!("    fixed {k} beamlets, {} free", self.free.len());
                    }
                }
            }
            let t = std::time::Instant::now();
            let res = self.residuals();
            self.seconds[0] += t.elapsed().as_secs_f64();
            let (rp, rd, gap) = self.norms(&res);
            if self.settings.verbose {
                eprintln!(
                    "ipm {:3}: obj {:.10e} rp {:.2e} rd {:.2e} gap {:.2e} mu {:.2e} free {}",
                    self.iterations,
                    self.objective(),
                    rp,
                    rd,
                    gap,
                    self.mu(),
                    self.free.len()
                );
            }
            if !self.settings.observers.is_empty() {
                let it = crate::optimize::observer::SolverIteration {
                    round: self.round,
                    iteration: self.iterations,
                    objective: self.objective(),
                    primal_residual: rp,
                    gap_rel: gap,
                };
                if self.settings.observers.notify(&it) == crate::optimize::observer::Control::Stop {
                    return Ok(Outcome::Cancelled);
                }
            }
            last_gap = gap;
            last_rp = rp;
            if rp <= tol && rd <= tol && gap <= tol {
                return Ok(Outcome::Converged);
            }
            if checkpoint && gap <= CHECK_GAP && rp <= CHECK_GAP {
                return Ok(Outcome::Checkpoint);
            }
            rp_hist.push(rp);
            let h = rp_hist.len();
            if h > 20 && rp > tol && rp > 0.5 * rp_hist[h - 9] {
                return Ok(Outcome::Stalled);
            }
            if self.iterations >= self.settings.max_iter {
                return Ok(Outcome::MaxIter);
            }
            let mu = self.mu();
            let t = std::time::Instant::now();
            let lin = self.linearise()?;
            self.seconds[1] += t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let aff = self.direction(&lin, &res, &|s, l, _, _| -s * l, None);
            let (ap, ad) = self.step_lengths(&aff);
            let a_aff = ap.min(ad);
            let mu_aff = self.mu_after(&aff, a_aff);
            let sigma = (mu_aff / mu).powi(3).clamp(0.0, 1.0);
            let sigma_mu = sigma * mu;
            let mut d = self.direction(
                &lin,
                &res,
                &|s, l, ds, dl| sigma_mu - s * l - ds * dl,
                Some(&aff),
            );
            let n_corr = self.centrality_correctors(&lin, &res, sigma_mu, &mut d);
            self.correctors += n_corr;
            self.seconds[2] += t.elapsed().as_secs_f64();
            if self.settings.verbose {
                let (exy, eu, eb) = self.check_direction(&res, &d);
                eprintln!("    sigma {sigma:.2e} a_aff {a_aff:.3} kkt err xy {exy:.2e} u {eu:.2e} b {eb:.2e}");
                let st = &self.st;
                let g = |v: &[f64], dv: &[f64]| {
                    let mut a = 1.0;
                    max_step(v, dv, &mut a);
                    a
                };
                eprintln!(
                    "    steps x {:.3} zl {:.3} y {:.3}/{:.3} b {:.3}/{:.3} fam {:?}",
                    g(&st.x, &d.x),
                    g(&st.zl, &d.zl),
                    g(&st.y, &d.y),
                    g(&st.zy, &d.zy),
                    g(&st.bsl, &d.bsl),
                    g(&st.blam, &d.blam),
                    st.fam
                        .iter()
                        .zip(&d.fam)
                        .map(|(f, df)| format!(
                            "{:.3}/{:.3}/{:.3}/{:.3}",
                            g(&f.sl, &df.sl),
                            g(&f.lam, &df.lam),
                            g(&f.u, &df.u),
                            g(&f.zeta, &df.zeta)
                        ))
                        .collect::<Vec<_>>()
                );
            }
            self.buf = lin.fac.into_buffer();
            let (ap, ad) = self.step_lengths(&d);
            let eta = 0.99f64.max(1.0 - 10.0 * mu / self.mu0.max(1e-300));
            let a = (eta * ap.min(ad)).min(1.0);
            self.apply(&d, a, a);
            self.iterations += 1;
        }
    }
}

/// A family's part of its border row, `beta sum_v w_v u_v` (0 without hinge variables).
fn border_sum(fam: &Family, u: &[f64]) -> f64 {
    match &fam.u {
        Some(up) => up.beta * u.iter().zip(&fam.wv).map(|(u, w)| w * u).sum::<f64>(),
        None => 0.0,
    }
}

/// `e'y` for a sparse coefficient list.
pub fn ycoef_dot(c: &[(usize, f64)], y: &[f64]) -> f64 {
    c.iter().map(|&(k, e)| e * y[k]).sum()
}

/// `Q x` for a full symmetric column-major `Q` (one output per column, parallel, exact).
pub fn symv(q: &[f64], x: &[f64]) -> Vec<f64> {
    let n = x.len();
    q.par_chunks(n.max(1)).map(|col| dotv(col, x)).collect()
}
