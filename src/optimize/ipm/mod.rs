//! Beamlet-space primal-dual interior-point backend (issue #16): Mehrotra's
//! predictor-corrector method (Mehrotra 1992; Wright, *Primal-Dual Interior-Point Methods*,
//! 1997) on the beamlets only, every per-voxel variable (hinge slacks, CVaR excesses
//! `u_v` after Rockafellar & Uryasev 2000, max/min voxel slacks) eliminated analytically, so
//! that each iteration factorises one dense matrix over the free beamlets plus a few border
//! variables.
//!
//! - [`model`]: the goal terms as one QP;
//! - [`newton`]: the reduced Newton matrix and its Cholesky factorisation (faer);
//! - [`mehrotra`]: the iteration;
//! - this file: the driver: candidate voxels (every voxel is checked after convergence and
//!   missing ones join without a restart), beamlet fixing with a reduced-gradient
//!   certificate, the exact check of every hard constraint on the dose, and phase 1 (one
//!   elastic slack per hard constraint) to name the constraints of an infeasible protocol.
//!
//! The maths is written up in `docs/optimization.md`, section "Interior-point backend".

pub mod mehrotra;
pub mod model;
pub mod newton;

use std::time::Instant;

use super::{FinishInfo, Limit, OptimizationResult, OptimizeOptions, PlanningProblem};
use crate::error::{Error, Result};
use mehrotra::{Ipm, Outcome, Settings};
use model::{Elastic, Model, PHASE1_OBJECTIVE_SCALE};

/// Voxels outside the candidate set whose row value exceeds this (Gy) trigger additions.
const ADD_TOL_GY: f64 = 1e-7;

/// Complementarity (relative to the starting one) at which the iterate is re-centred after
/// candidate voxels joined at the checkpoint / after convergence.
const RECENTRE_MU: f64 = 0.1;
const RECENTRE_MU_FINAL: f64 = 1e-3;

/// Voxels within this fraction of the prescription of their threshold join at the checkpoint
/// (the iterate is still far from the optimum) and after convergence.
const CHECKPOINT_MARGIN: f64 = 0.05;
const FINAL_MARGIN: f64 = 0.01;

/// A beamlet of a failed hint stays fixed at the restart when its reduced gradient exceeds
/// this share of the dual-residual scale.
const HINT_CONFIRM: f64 = 1e-3;

/// Multiplier (per Gy of elastic slack, weight 1) from which phase 1 names a constraint.
const NAME_MULTIPLIER: f64 = 0.5;

/// Solve with the interior-point method. Goals it does not cover are solved by Clarabel,
/// with the reason in `status`.
pub(super) fn solve(p: &PlanningProblem<'_>, opts: &OptimizeOptions) -> Result<OptimizationResult> {
    let t0 = Instant::now();
    let cand = p.starting_candidates(opts);
    let elastic = if opts.relax {
        Elastic::Slack {
            weight: opts.relax_weight,
            scale: 1.0,
        }
    } else {
        Elastic::None
    };
    let model = match Model::build(p, &cand, opts, elastic) {
        Ok(m) => m,
        Err(reason) => {
            let mut r = p.solve_clarabel(opts)?;
            r.status = format!("{} (Clarabel backend: {reason})", r.status);
            return Ok(r);
        }
    };
    // Fixing is off with relax: on the synthetic relax case the dual residual then stalled
    // near 1e-2 (heavy elastic weights); to be revisited.
    let (mut ipm, outcome, rounds) = run_model(p, model, opts, !opts.relax)?;
    if outcome == Outcome::Cancelled {
        return Err(Error::Cancelled {
            stage: "optimisation".into(),
        });
    }
    if outcome != Outcome::Converged {
        let has_hard = ipm
            .model
            .fams
            .iter()
            .any(|f| !p.goals[f.goal].kind.is_objective())
            || !ipm.model.dense.is_empty()
            || !ipm.model.borders.is_empty();
        if !opts.relax && has_hard {
            return Err(phase1(p, &cand, opts, outcome)?);
        }
        return Err(Error::Solver(format!(
            "interior point stopped ({outcome:?}) after {} iterations",
            ipm.iterations
        )));
    }
    // Candidates for variants.
    if let Ok(mut keep) = p.candidates.lock() {
        for f in &ipm.model.fams {
            if f.partial {
                let mut v = f.voxels.clone();
                v.sort_unstable();
                keep[f.goal] = Some(v);
            }
        }
    }
    if !opts.relax {
        if let Ok(mut h) = p.fixed_hint.lock() {
            *h = ipm.fixed();
        }
    }
    let x = full_weights(&ipm);
    let dose: Vec<f64> = p.a.dose(&x).iter().map(|v| v * p.fractions).collect();
    let failed = exact_check(p, &dose, opts.relax);
    let status = if failed.is_empty() {
        "Solved".to_string()
    } else {
        format!("AlmostSolved (exact check: {})", failed.join("; "))
    };
    let slacks: Vec<Option<f64>> = ipm
        .model
        .slack_of_goal
        .iter()
        .map(|s| s.map(|k| ipm.st.y[k].max(0.0)))
        .collect();
    let n_variables =
        ipm.free.len() + ipm.model.ys.len() + ipm.st.fam.iter().map(|f| f.u.len()).sum::<usize>();
    let n_constraint_rows =
        ipm.st.fam.iter().map(|f| f.sl.len()).sum::<usize>() + ipm.st.dsl.len() + ipm.st.bsl.len();
    let objective = ipm.objective();
    let multipliers = if opts.relax {
        Vec::new()
    } else {
        goal_multipliers(p, &ipm)
    };
    let iterations = ipm.iterations;
    if opts.verbose {
        eprintln!(
            "ipm: {iterations} iterations, {} correctors, residuals {:.2} s, Newton matrix {:.2} s, directions {:.2} s",
            ipm.correctors,
            ipm.seconds[0], ipm.seconds[1], ipm.seconds[2]
        );
    }
    ipm.st = Default::default();
    p.finish(
        x,
        dose,
        opts,
        FinishInfo {
            status,
            iterations,
            rounds,
            objective,
            n_variables,
            n_constraint_rows,
            slacks,
            multipliers,
            t0,
        },
    )
}

/// Each hard goal's Lagrange multiplier, summed over its rows: the first-order increase of
/// the objective when the goal's limit is tightened by 1 Gy (`dObj/dh`; rows are in Gy
/// total). Max/min dose: the sum over the voxel rows; mean: the dense row; DVH (CVaR): the
/// border row (the voxel rows of a CVaR only define its excesses). `None` for objectives.
fn goal_multipliers(p: &PlanningProblem<'_>, ipm: &Ipm<'_>) -> Vec<Option<f64>> {
    let mut m: Vec<Option<f64>> = vec![None; p.goals.len()];
    let mut add = |g: usize, v: f64| *m[g].get_or_insert(0.0) += v;
    for (f, fs) in ipm.model.fams.iter().zip(&ipm.st.fam) {
        let defines_excess = f.u.as_ref().is_some_and(|u| u.border.is_some());
        if p.goals[f.goal].kind.is_objective() || defines_excess {
            continue;
        }
        add(f.goal, fs.lam.iter().sum());
    }
    for (d, l) in ipm.model.dense.iter().zip(&ipm.st.dlam) {
        add(d.goal, *l);
    }
    for (b, l) in ipm.model.borders.iter().zip(&ipm.st.blam) {
        add(b.goal, *l);
    }
    m
}

fn settings(opts: &OptimizeOptions) -> Settings {
    Settings {
        tol: opts.tolerance,
        max_iter: opts.max_iter,
        threads: opts.threads,
        verbose: opts.verbose,
        observers: opts.observers.clone(),
    }
}

/// Iterate, add missing candidate voxels after each convergence, and continue.
fn run_model<'a>(
    p: &'a PlanningProblem<'_>,
    model: Model,
    opts: &OptimizeOptions,
    allow_fixing: bool,
) -> Result<(Ipm<'a>, Outcome, usize)> {
    let x0 = start_mu(p);
    let mut ipm = Ipm::new(&p.a, model, x0, settings(opts));
    let mut hinted = false;
    if allow_fixing && opts.reuse_fixed_beamlets {
        let hint = p.fixed_hint.lock().map(|h| h.clone()).unwrap_or_default();
        let k = ipm.fix_initially(&hint);
        hinted = k > 0;
        if opts.verbose && hinted {
            eprintln!("ipm: starting with {k} beamlets fixed (previous solve)");
        }
    }
    let mut rounds = 1;
    let partial = ipm.model.fams.iter().any(|f| f.partial);
    let mut checkpoint = partial || hinted;
    let mut fixing = allow_fixing;
    loop {
        ipm.round = rounds;
        let mut outcome = ipm.run(checkpoint, fixing).map_err(Error::Solver)?;
        if outcome == Outcome::Converged && ipm.free.len() < ipm.model.n {
            // Fixing certificate: every fixed beamlet needs a non-negative reduced gradient.
            let (rg, scale) = ipm.fixed_reduced_gradients();
            let bad: Vec<usize> = rg
                .iter()
                .filter(|(_, g)| *g < -opts.tolerance * scale)
                .map(|(j, _)| *j)
                .collect();
            if !bad.is_empty() && hinted {
                // The previous solve's zero set does not hold here: start again from the
                // uniform fluence, keeping fixed only the beamlets whose reduced gradient is
                // clearly positive (releasing near convergence crawled: TG-119 Core-sparing
                // variant, 33 released, 42 more iterations and a stall).
                hinted = false;
                let confirmed: Vec<usize> = rg
                    .iter()
                    .filter(|(_, g)| *g > HINT_CONFIRM * scale)
                    .map(|(j, _)| *j)
                    .collect();
                if opts.verbose {
                    eprintln!(
                        "ipm: {} hinted beamlets fail the certificate; restarting with {} fixed",
                        bad.len(),
                        confirmed.len()
                    );
                }
                let iterations = ipm.iterations;
                let model = ipm.model.clone();
                ipm = Ipm::new(&p.a, model, x0, settings(opts));
                ipm.iterations = iterations;
                ipm.fix_initially(&confirmed);
                fixing = allow_fixing;
                checkpoint = partial;
                continue;
            }
            if !bad.is_empty() {
                if opts.verbose {
                    eprintln!("ipm: releasing {} fixed beamlets", bad.len());
                }
                let mu = ipm.mu().max(RECENTRE_MU_FINAL * ipm.mu0);
                ipm.release_beamlets(&bad, mu);
                fixing = false;
                outcome = Outcome::Checkpoint;
                checkpoint = false;
            }
        }
        match outcome {
            Outcome::Checkpoint if checkpoint => {
                checkpoint = false;
                if hinted {
                    // Early certificate of the hint, while the iterate is still well inside:
                    // every hinted beamlet whose reduced gradient is already negative rejoins
                    // at the current complementarity (no re-centring). TG-119 fidelity
                    // re-solves: 15 and 11 released here, 19 iterations each, where checking
                    // only at convergence failed and restarted (37 iterations).
                    let (rg, _) = ipm.fixed_reduced_gradients();
                    let bad: Vec<usize> = rg
                        .iter()
                        .filter(|(_, g)| *g < 0.0)
                        .map(|(j, _)| *j)
                        .collect();
                    if opts.verbose {
                        eprintln!("ipm: checkpoint: {} hinted beamlets released", bad.len());
                    }
                    if !bad.is_empty() {
                        let mu = ipm.mu();
                        ipm.release_beamlets(&bad, mu);
                    }
                }
                if partial && add_candidates(p, &mut ipm, CHECKPOINT_MARGIN, RECENTRE_MU) {
                    rounds += 1;
                }
            }
            Outcome::Checkpoint => {}
            Outcome::Converged if partial && rounds < opts.max_rounds.max(1) => {
                if !add_candidates(p, &mut ipm, FINAL_MARGIN, RECENTRE_MU_FINAL) {
                    return Ok((ipm, outcome, rounds));
                }
                rounds += 1;
            }
            _ => return Ok((ipm, outcome, rounds)),
        }
    }
}

/// Uniform fluence (MU per fraction) that gives the target its prescribed mean dose.
fn start_mu(p: &PlanningProblem<'_>) -> f64 {
    let n = p.a.n_cols();
    let d = p.a.dose(&vec![1.0; n]);
    let m: f64 = p.target_rows.iter().map(|&r| d[r as usize]).sum::<f64>()
        / p.target_rows.len().max(1) as f64;
    if m > 0.0 {
        p.rx_gy / (p.fractions * m)
    } else {
        1.0
    }
}

/// Weights of all beamlets (fixed ones at 0).
fn full_weights(ipm: &Ipm<'_>) -> Vec<f64> {
    let mut x = vec![0.0; ipm.model.n];
    for (jj, &j) in ipm.free.iter().enumerate() {
        x[j] = ipm.st.x[jj].max(0.0);
    }
    x
}

/// Check every voxel of partial families; add those that matter. True when some were added.
/// Add voxels within `margin` (fraction of the prescription) of their threshold; re-centre at
/// `recentre_mu` times the starting complementarity.
fn add_candidates(
    p: &PlanningProblem<'_>,
    ipm: &mut Ipm<'_>,
    margin: f64,
    recentre_mu: f64,
) -> bool {
    if !ipm.model.fams.iter().any(|f| f.partial) {
        return false;
    }
    let x = full_weights(ipm);
    let dose: Vec<f64> = p.a.dose(&x).iter().map(|v| v * p.fractions).collect();
    let margin = margin * p.rx_gy;
    let mut added = false;
    for fi in 0..ipm.model.fams.len() {
        let fam = &ipm.model.fams[fi];
        if !fam.partial {
            continue;
        }
        let ey = mehrotra::ycoef_dot(&fam.ycoef, &ipm.st.y);
        let val = |r: u32| fam.sign * dose[r as usize] + ey - fam.h;
        let mut inset = vec![false; p.a.n_rows()];
        for &v in &fam.voxels {
            inset[v as usize] = true;
        }
        let rows = &p.goals[fam.goal].rows;
        if !rows
            .iter()
            .any(|&r| !inset[r as usize] && val(r) > ADD_TOL_GY)
        {
            continue;
        }
        let new: Vec<u32> = rows
            .iter()
            .copied()
            .filter(|&r| !inset[r as usize] && val(r) > -margin)
            .collect();
        let vals: Vec<f64> = new.iter().map(|&r| val(r)).collect();
        let goal = &p.goals[fam.goal];
        let wv: Vec<f64> = new.iter().map(|&r| goal.weight_of(r)).collect();
        ipm.add_voxels(fi, new, wv, &vals);
        added = true;
    }
    if added {
        ipm.rebuild_compact();
    }
    if added {
        // New rows leave primal residuals (violated max/min rows, CVaR sums) and dual ones:
        // primal warm start, keep x and y, re-centre slacks and duals (synthetic
        // constraint-generation case: 41 iterations in all, against a stall when the rows
        // join a tightly centred iterate; TG-119: joining at the current complementarity
        // stalls too).
        let mu = ipm.mu().max(recentre_mu * ipm.mu0);
        // Beamlets fixed before the new rows joined may be needed to meet them (a lower
        // DVH limit on voxels that were not candidates): all rejoin, fixing starts afresh.
        let fixed: Vec<usize> = (0..ipm.model.n)
            .filter(|&j| ipm.free_of[j] == u32::MAX)
            .collect();
        if !fixed.is_empty() {
            ipm.release_beamlets(&fixed, mu);
        }
        ipm.recentre(mu, mehrotra::START_SLACK_GY);
    }
    added
}

/// Every active hard constraint on the exact dose; returns the failures in words.
fn exact_check(p: &PlanningProblem<'_>, dose: &[f64], relax: bool) -> Vec<String> {
    if relax {
        return vec![];
    }
    let mut failed = Vec::new();
    for (gi, g) in p.goals.iter().enumerate() {
        if g.kind.is_objective() || !PlanningProblem::is_active(g, false) {
            continue;
        }
        let d = g.row_doses(dose);
        let lim = g.kind.dose_gy().unwrap_or(0.0);
        let tol = 1e-7 * lim.abs().max(1.0);
        let Some(side) = g.kind.term().limit() else {
            continue;
        };
        // The statistic the goal is judged on and, for a DVH limit, the CVaR that bounds it.
        let e = g.kind.term().evaluate(&d);
        let holds = |v: f64| match side {
            Limit::Upper => v <= lim + tol,
            Limit::Lower => v >= lim - tol,
        };
        let ok = holds(e.achieved_gy) && e.cvar_gy.is_none_or(holds);
        let got = e.cvar_gy.unwrap_or(e.achieved_gy);
        if !ok {
            failed.push(format!("{} at {got:.9} Gy", p.describe(gi)));
        }
    }
    failed
}

/// Phase 1: objective scaled by [`PHASE1_OBJECTIVE_SCALE`], one elastic slack (weight 1 per
/// Gy) per hard constraint. Names the constraints whose slack multiplier reaches
/// [`NAME_MULTIPLIER`] (or, failing that, whose slack is positive).
fn phase1(
    p: &PlanningProblem<'_>,
    cand: &[Option<Vec<u32>>],
    opts: &OptimizeOptions,
    first: Outcome,
) -> Result<Error> {
    let model = Model::build(
        p,
        cand,
        opts,
        Elastic::Slack {
            weight: 1.0,
            scale: PHASE1_OBJECTIVE_SCALE,
        },
    )
    .map_err(Error::Solver)?;
    // No fixing in phase 1: its duals name the constraints, fixed beamlets would bias them.
    let (ipm, outcome, _) = run_model(p, model, opts, false)?;
    if outcome == Outcome::Cancelled {
        return Ok(Error::Cancelled {
            stage: "optimisation".into(),
        });
    }
    if outcome != Outcome::Converged {
        return Ok(Error::Solver(format!(
            "interior point stopped ({first:?}); phase 1 stopped too ({outcome:?})"
        )));
    }
    let mut named = Vec::new();
    let mut positive = Vec::new();
    let mut worst = 0.0f64;
    for (gi, s) in ipm.model.slack_of_goal.iter().enumerate() {
        if let Some(k) = *s {
            let sigma = ipm.st.y[k];
            let mult = ipm.model.ys[k].cost - ipm.st.zy[k];
            worst = worst.max(sigma);
            if opts.verbose {
                eprintln!(
                    "phase 1: {} violation {sigma:.6} Gy, multiplier {mult:.3}",
                    p.describe(gi)
                );
            }
            let v = (sigma > 1e-6).then_some(sigma);
            if mult >= NAME_MULTIPLIER {
                named.push((p.describe(gi), v));
            }
            if sigma > 1e-6 {
                positive.push((p.describe(gi), v));
            }
        }
    }
    if worst <= 1e-6 {
        return Ok(Error::Solver(format!(
            "interior point stopped ({first:?}) on a feasible protocol (phase 1 finds every \
             constraint met)"
        )));
    }
    let (constraints, violations_gy) = if named.is_empty() { positive } else { named }
        .into_iter()
        .unzip();
    Ok(Error::Infeasible {
        constraints,
        violations_gy,
    })
}
