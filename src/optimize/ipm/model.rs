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

use super::super::{GoalKind, Mode, OptimizeOptions, PlanningProblem};

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
            // N of the normalised terms: the goal's voxels, each counted with its weight.
            let nv = g.total_w;
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
            match g.kind {
                GoalKind::Deviation { dose_gy, weight } => {
                    let h = p.hess(g);
                    let qm = q.get_or_insert_with(|| vec![0.0; n * n]);
                    let k = 2.0 * weight * f * f / nv * scale;
                    for j in 0..n {
                        for i in 0..=j {
                            let v = k * h.h[i + j * n];
                            qm[i + j * n] += v;
                            if i != j {
                                qm[j + i * n] += v;
                            }
                        }
                    }
                    let cs = p.colsum(g);
                    for (ck, s) in c.iter_mut().zip(cs) {
                        *ck -= 2.0 * weight * f * dose_gy / nv * s * scale;
                    }
                    obj_const += weight * dose_gy * dose_gy * scale;
                }
                GoalKind::MeanDose { weight } | GoalKind::Eud { a: 1.0, weight } => {
                    let cs = p.colsum(g);
                    for (ck, s) in c.iter_mut().zip(cs) {
                        *ck += weight * f / nv * s * scale;
                    }
                }
                GoalKind::Eud { a, .. } => {
                    return Err(format!(
                        "gEUD with a = {a} is not covered by the interior-point backend"
                    ));
                }
                GoalKind::Overdose { dose_gy, weight }
                | GoalKind::Underdose { dose_gy, weight } => {
                    let s = if matches!(g.kind, GoalKind::Overdose { .. }) {
                        1.0
                    } else {
                        -1.0
                    };
                    fams.push(Family {
                        goal: gi,
                        sign: s,
                        h: s * dose_gy,
                        ycoef: vec![],
                        u: Some(UPart {
                            quad: 2.0 * weight / nv * scale,
                            border: None,
                            beta: 0.0,
                        }),
                        wv: wv.clone(),
                        voxels,
                        partial,
                    });
                }
                GoalKind::MaxPenalty { weight } => {
                    ys.push(YVar {
                        cost: weight * scale,
                        nonneg: true,
                        init: p.rx_gy,
                    });
                    let z = ys.len() - 1;
                    fams.push(Family {
                        goal: gi,
                        sign: 1.0,
                        h: 0.0,
                        ycoef: vec![(z, -1.0)],
                        u: None,
                        wv: wv.clone(),
                        voxels,
                        partial,
                    });
                }
                GoalKind::MaxDose { dose_gy, .. } | GoalKind::MinDose { dose_gy, .. } => {
                    let s = if matches!(g.kind, GoalKind::MaxDose { .. }) {
                        1.0
                    } else {
                        -1.0
                    };
                    fams.push(Family {
                        goal: gi,
                        sign: s,
                        h: s * dose_gy - LIMIT_EPS_GY,
                        ycoef: sig.clone(),
                        u: None,
                        wv: wv.clone(),
                        voxels,
                        partial,
                    });
                }
                GoalKind::MeanMax { dose_gy, .. } | GoalKind::MeanMin { dose_gy, .. } => {
                    let s = if matches!(g.kind, GoalKind::MeanMax { .. }) {
                        1.0
                    } else {
                        -1.0
                    };
                    let cs = p.colsum(g);
                    dense.push(DenseRow {
                        goal: gi,
                        g: cs.iter().map(|v| s * f / nv * v).collect(),
                        ycoef: sig.clone(),
                        h: s * dose_gy - LIMIT_EPS_GY,
                    });
                }
                GoalKind::DvhMax {
                    dose_gy,
                    volume_pct,
                    ..
                }
                | GoalKind::DvhMin {
                    dose_gy,
                    volume_pct,
                    ..
                } => {
                    let upper = matches!(g.kind, GoalKind::DvhMax { .. });
                    let s = if upper { 1.0 } else { -1.0 };
                    let pt = if upper {
                        volume_pct / 100.0
                    } else {
                        1.0 - volume_pct / 100.0
                    };
                    ys.push(YVar {
                        cost: 0.0,
                        nonneg: false,
                        init: dose_gy,
                    });
                    let t = ys.len() - 1;
                    let b = borders.len();
                    let mut bcoef = vec![(t, s)];
                    bcoef.extend(sig.iter().copied());
                    borders.push(Border {
                        goal: gi,
                        family: fams.len(),
                        ycoef: bcoef,
                        h: s * dose_gy - LIMIT_EPS_GY,
                    });
                    fams.push(Family {
                        goal: gi,
                        sign: s,
                        h: 0.0,
                        ycoef: vec![(t, -s)],
                        u: Some(UPart {
                            quad: 0.0,
                            border: Some(b),
                            beta: 1.0 / (pt * nv),
                        }),
                        wv: wv.clone(),
                        voxels,
                        partial,
                    });
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
