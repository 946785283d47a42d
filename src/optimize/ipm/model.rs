//! Goal terms of the beamlet-space interior-point method, stated as one convex QP in the
//! beamlets `x` (MU per fraction), a few "border" variables `y` (CVaR thresholds `t`,
//! max-penalty epigraph `z`, relax slacks `sigma`) and per-voxel hinge variables `u`:
//!
//! ```text
//! min  1/2 x'Qx + c'x + sum_v q w_v/2 u_v^2 + c_y'y + const
//! s.t. voxel rows   s f a_v'x + sum_k e_k y_k [- u_v] <= h     (one family per goal)
//!      u_v >= 0,  x >= 0,  x <= ub,  y_k >= 0 (relax slacks, z)
//!      dense rows   g'x + e'y <= h                             (mean constraints)
//!      border rows  e'y + beta sum_v w_v u_v <= h              (CVaR, Rockafellar & Uryasev 2000)
//! ```
//!
//! `f` is the number of fractions, `s = +1` for upper limits and `-1` for lower ones, so all
//! rows are in Gy. Hard limits are tightened by [`LIMIT_EPS_GY`] so that the exact check on the
//! dose passes despite the stopping tolerances. Maths in `docs/optimization.md`, section
//! "Interior-point backend".

use std::sync::Arc;

use super::super::goals::{Hinge, Part, VarId};
use super::super::{Mode, OptimizeOptions, PlanningProblem};

/// Hard limits are tightened by this much (Gy total) in the IPM; the reported doses are
/// checked against the untightened limits.
pub const LIMIT_EPS_GY: f64 = 1e-6;

/// Objective scale of phase 1 (the feasibility solve with one elastic slack per constraint).
pub const PHASE1_OBJECTIVE_SCALE: f64 = 1e-6;

/// A border variable.
#[derive(Debug, Clone)]
pub struct YVar {
    pub cost: f64,
    pub nonneg: bool,
    /// Starting value.
    pub init: f64,
}

/// The hinge variable `u_v` of a voxel family. Voxel `v` of the family carries its weight
/// `w_v` ([`Family::wv`]): its Hessian is `quad w_v`, its border coefficient `beta w_v`.
#[derive(Debug, Clone)]
pub struct UPart {
    /// Diagonal Hessian of `u_v` per unit weight (`2 w / N` for squared under/overdose, 0
    /// for CVaR).
    pub quad: f64,
    /// Border row the `u_v` enter, with coefficient `beta w_v` (CVaR: `1 / (p N)`).
    pub border: Option<usize>,
    pub beta: f64,
}

/// One row per candidate voxel: `s f a_v'x + sum e_k y_k [- u_v] <= h`.
#[derive(Debug, Clone)]
pub struct Family {
    pub goal: usize,
    pub sign: f64,
    pub h: f64,
    pub ycoef: Vec<(usize, f64)>,
    pub u: Option<UPart>,
    /// Candidate voxels (rows of `A`), ascending.
    pub voxels: Vec<u32>,
    /// Weight of each candidate voxel (the occupied fraction of its voxel, or 1), aligned
    /// with `voxels`; scales the voxel's hinge terms ([`UPart`]).
    pub wv: Vec<f64>,
    /// Whether `voxels` may be a strict subset of the goal's rows (constraint generation).
    pub partial: bool,
}

/// A dense row `g'x + e'y <= h` (mean-dose constraints).
#[derive(Debug, Clone)]
pub struct DenseRow {
    pub goal: usize,
    pub g: Vec<f64>,
    pub ycoef: Vec<(usize, f64)>,
    pub h: f64,
}

/// A border row `e'y + beta sum_{v in family} u_v <= h`.
#[derive(Debug, Clone)]
pub struct Border {
    pub goal: usize,
    pub family: usize,
    pub ycoef: Vec<(usize, f64)>,
    pub h: f64,
}

/// The QP the interior-point method solves.
#[derive(Clone)]
pub struct Model {
    pub n: usize,
    pub fractions: f64,
    /// Constant Hessian of the beamlets, full symmetric `n x n`, column-major (None: zero).
    pub q: Option<Arc<Vec<f64>>>,
    pub c: Vec<f64>,
    pub obj_const: f64,
    pub ub: Option<f64>,
    pub ys: Vec<YVar>,
    pub fams: Vec<Family>,
    pub dense: Vec<DenseRow>,
    pub borders: Vec<Border>,
    /// Relax / phase-1 slack variable of each goal.
    pub slack_of_goal: Vec<Option<usize>>,
}

/// How the hard constraints enter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elastic {
    /// Hard (no slack).
    None,
    /// One slack per constraint with this cost per Gy; objective scaled by `scale`.
    Slack { weight: f64, scale: f64 },
}

impl Model {
    /// Build the QP for the problem's active goals. `cand[g]` are the starting candidate
    /// voxels of goal `g` (None: all rows). Errors with a reason for goals not covered.
    pub fn build(
        p: &PlanningProblem<'_>,
        cand: &[Option<Vec<u32>>],
        opts: &OptimizeOptions,
        elastic: Elastic,
    ) -> std::result::Result<Model, String> {
        let n = p.a.n_cols();
        let f = p.fractions;
        let (sigma_w, scale) = match elastic {
            Elastic::None => (None, 1.0),
            Elastic::Slack { weight, scale } => (Some(weight), scale),
        };
        let _ = opts;
        let mut q: Option<Vec<f64>> = None;
        let mut c = vec![0.0; n];
        let mut obj_const = 0.0;
        let mut ys = Vec::new();
        let mut fams = Vec::new();
        let mut dense = Vec::new();
        let mut borders = Vec::new();
        let mut slack_of_goal = vec![None; p.goals.len()];
        for (gi, g) in p.goals.iter().enumerate() {
            if !PlanningProblem::is_active(g, sigma_w.is_some()) {
                continue;
            }
            let voxels = cand.get(gi).cloned().flatten();
            let partial = voxels.is_some();
            let voxels = voxels.unwrap_or_else(|| g.rows.clone());
            let wv: Vec<f64> = voxels.iter().map(|&v| g.weight_of(v)).collect();
            let mut sig = Vec::new();
            if !g.kind.is_objective() {
                if let Some(w) = sigma_w {
                    ys.push(YVar {
                        cost: w,
                        nonneg: true,
                        init: 1.0,
                    });
                    slack_of_goal[gi] = Some(ys.len() - 1);
                    sig.push((ys.len() - 1, -1.0));
                }
            }
            let terms = g.terms(p.rx_gy);
            let (quad, lin, cst) = terms.dose_coefficients();
            // Dose terms: d = f A x, so sum w d^2 = f^2 x'Gx and sum w d = f colsum'x.
            if terms.uses_gram() && quad != 0.0 {
                let h = p.hess(g);
                let qm = q.get_or_insert_with(|| vec![0.0; n * n]);
                let k = 2.0 * quad * f * f * scale;
                for j in 0..n {
                    for i in 0..=j {
                        let v = k * h.h[i + j * n];
                        qm[i + j * n] += v;
                        if i != j {
                            qm[j + i * n] += v;
                        }
                    }
                }
            }
            if lin != 0.0 {
                let cs = p.colsum(g);
                for (ck, s) in c.iter_mut().zip(cs) {
                    *ck += lin * f * s * scale;
                }
            }
            obj_const += cst * scale;
            let y0 = ys.len();
            ys.extend(terms.vars().iter().map(|v| YVar {
                cost: v.cost * scale,
                nonneg: v.nonneg,
                init: v.start,
            }));
            let ycoef = |list: &[(VarId, f64)], limit: bool| -> Vec<(usize, f64)> {
                let mut e: Vec<(usize, f64)> = list.iter().map(|&(v, k)| (y0 + v.0, k)).collect();
                if limit {
                    e.extend(sig.iter().copied());
                }
                e
            };
            let tighten = |h: f64, limit: bool| if limit { h - LIMIT_EPS_GY } else { h };
            // Index in `fams` of each part that is a voxel family.
            let mut fam_of_part = vec![usize::MAX; terms.parts().len()];
            for (pi, part) in terms.parts().iter().enumerate() {
                match part {
                    Part::Voxels {
                        sign,
                        h_gy,
                        vars,
                        hinge,
                        limit,
                    } => {
                        let u = match hinge {
                            Hinge::None => None,
                            Hinge::Squared { hessian } => Some(UPart {
                                quad: hessian * scale,
                                border: None,
                                beta: 0.0,
                            }),
                            Hinge::Excess => Some(UPart {
                                quad: 0.0,
                                border: None,
                                beta: 0.0,
                            }),
                        };
                        fam_of_part[pi] = fams.len();
                        fams.push(Family {
                            goal: gi,
                            sign: *sign,
                            h: tighten(*h_gy, *limit),
                            ycoef: ycoef(vars, *limit),
                            u,
                            wv: wv.clone(),
                            voxels: voxels.clone(),
                            partial,
                        });
                    }
                    Part::Sum {
                        coef,
                        vars,
                        h_gy,
                        limit,
                    } => {
                        let cs = p.colsum(g);
                        dense.push(DenseRow {
                            goal: gi,
                            g: cs.iter().map(|v| coef * f * v).collect(),
                            ycoef: ycoef(vars, *limit),
                            h: tighten(*h_gy, *limit),
                        });
                    }
                    Part::Tail {
                        voxels: of,
                        beta,
                        vars,
                        h_gy,
                        limit,
                    } => {
                        let fam = fam_of_part.get(of.0).copied().unwrap_or(usize::MAX);
                        let Some(up) = fams.get_mut(fam).and_then(|fm| fm.u.as_mut()) else {
                            return Err(format!(
                                "goal '{}': a tail row must follow its voxel rows with excess variables",
                                p.describe(gi)
                            ));
                        };
                        up.border = Some(borders.len());
                        up.beta = *beta;
                        borders.push(Border {
                            goal: gi,
                            family: fam,
                            ycoef: ycoef(vars, *limit),
                            h: tighten(*h_gy, *limit),
                        });
                    }
                    Part::PowerMean { a, .. } => {
                        return Err(format!(
                            "gEUD with a = {a} is not covered by the interior-point backend"
                        ));
                    }
                }
            }
            debug_assert!(g.kind.mode() == Mode::Hard);
        }
        // Fluence terms.
        if p.fluence.total_mu_weight > 0.0 {
            c.iter_mut()
                .for_each(|v| *v += p.fluence.total_mu_weight * scale);
        }
        if p.fluence.smoothness_weight > 0.0 && !p.pairs.is_empty() {
            let k = 2.0 * p.fluence.smoothness_weight / p.pairs.len() as f64 * scale;
            let qm = q.get_or_insert_with(|| vec![0.0; n * n]);
            for &(i, j) in &p.pairs {
                qm[i + i * n] += k;
                qm[j + j * n] += k;
                qm[i + j * n] -= k;
                qm[j + i * n] -= k;
            }
        }
        Ok(Model {
            n,
            fractions: f,
            q: q.map(Arc::new),
            c,
            obj_const,
            ub: p.fluence.max_beamlet_mu,
            ys,
            fams,
            dense,
            borders,
            slack_of_goal,
        })
    }
}
