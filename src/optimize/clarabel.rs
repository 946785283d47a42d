//! The Clarabel backend (Goulart & Chen, arXiv:2405.12762, 2024): the problem as one conic
//! program (quadratic objective, zero, nonnegative and power cones), rebuilt for each round of
//! constraint generation and solved cold. Each goal's [`super::Terms`] are translated part by part;
//! this backend covers every part, so it is the reference the interior-point method is tested
//! against and the fallback for goals it does not cover (gEUD with `a > 1`). Maths in
//! `docs/optimization.md`.

use std::sync::Arc;
use std::time::Instant;

use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
};

use super::goals::{Hinge as GoalHinge, Part, VarId};
use super::{
    hessian, observer, DenseSym, FinishInfo, Mode, OptimizationResult, OptimizeOptions,
    PlanningProblem,
};
use crate::dose::InfluenceMatrix;
use crate::error::{Error, Result};

/// Who owns a constraint row (for infeasibility diagnosis and the goals' multipliers).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Owner {
    Goal(usize),
    /// A row of a goal's part marked `limit`: its dual is part of the goal's multiplier.
    Limit(usize),
    Bounds,
}

impl Owner {
    fn goal(self) -> Option<usize> {
        match self {
            Owner::Goal(g) | Owner::Limit(g) => Some(g),
            Owner::Bounds => None,
        }
    }
}

/// Constraint rows under construction (CSR).
#[derive(Default)]
struct Rows {
    ptr: Vec<usize>,
    cols: Vec<usize>,
    vals: Vec<f64>,
    b: Vec<f64>,
    owner: Vec<Owner>,
}

impl Rows {
    fn new() -> Self {
        Rows {
            ptr: vec![0],
            ..Default::default()
        }
    }
    fn len(&self) -> usize {
        self.b.len()
    }
    /// Add the row `sum entries <= b` (or `= b` / cone slot, depending on the block).
    fn push(&mut self, entries: impl IntoIterator<Item = (usize, f64)>, b: f64, owner: Owner) {
        for (c, v) in entries {
            if v != 0.0 {
                self.cols.push(c);
                self.vals.push(v);
            }
        }
        self.ptr.push(self.cols.len());
        self.b.push(b);
        self.owner.push(owner);
    }
}

/// A per-voxel hinge family: voxel `v` matters only when `sign * (d_v - theta) > 0`.
struct Hinge {
    goal: usize,
    sign: f64,
    theta_const: f64,
    theta_vars: Vec<(usize, f64)>,
}

/// The formulated problem handed to Clarabel.
struct Formulation {
    n_var: usize,
    p: CscMatrix<f64>,
    q: Vec<f64>,
    a: CscMatrix<f64>,
    b: Vec<f64>,
    cones: Vec<SupportedConeT<f64>>,
    owner: Vec<Owner>,
    hinges: Vec<Hinge>,
    /// Constant added to Clarabel's objective (deviation terms).
    obj_const: f64,
    /// Relax slack variable per goal.
    slack_var: Vec<Option<usize>>,
}

impl PlanningProblem<'_> {
    /// Build the Clarabel problem for the current candidate rows.
    fn formulate(&self, cand: &[Option<Vec<u32>>], opts: &OptimizeOptions) -> Formulation {
        let n = self.a.n_cols();
        let f = self.fractions;
        let mut q = vec![0.0; n];
        let mut nvar = n;
        let mut pdiag: Vec<(usize, f64)> = Vec::new();
        let mut eq = Rows::new();
        let mut nn = Rows::new();
        let mut pw = Rows::new();
        let mut pw_alpha: Vec<f64> = Vec::new();
        let mut hinges = Vec::new();
        let mut dense: Vec<(f64, Arc<DenseSym>)> = Vec::new();
        let mut obj_const = 0.0;
        let mut slack_var = vec![None; self.goals.len()];
        let a: &InfluenceMatrix = &self.a;
        // sum_k scale * A[v, k] x_k
        let vrow = |v: u32, scale: f64| {
            let (c, vals) = a.row(v as usize);
            c.iter()
                .zip(vals)
                .map(move |(&c, &val)| (c as usize, scale * val as f64))
        };
        let mut new_var = |q: &mut Vec<f64>, cost: f64| {
            q.push(cost);
            nvar += 1;
            nvar - 1
        };

        for (gi, g) in self.goals.iter().enumerate() {
            if !Self::is_active(g, opts.relax) {
                continue;
            }
            let own = Owner::Goal(gi);
            let owner_of = |limit: bool| if limit { Owner::Limit(gi) } else { own };
            let cset: &[u32] = cand[gi].as_deref().unwrap_or(&g.rows);
            let terms = g.terms(self.rx_gy);
            // relax slack: the goal's limits shifted by sigma (>= 0) with a linear penalty
            let sigma = if !g.kind.is_objective() && opts.relax {
                let s = new_var(&mut q, opts.relax_weight);
                nn.push([(s, -1.0)], 0.0, own);
                slack_var[gi] = Some(s);
                Some(s)
            } else {
                None
            };
            // Dose terms: d = f A x, so sum w d^2 = f^2 x'Gx and sum w d = f colsum'x.
            let (quad, lin, cst) = terms.dose_coefficients();
            if terms.uses_gram() && quad != 0.0 {
                dense.push((2.0 * quad * f * f, self.hess(g)));
            }
            if lin != 0.0 {
                let cs = self.colsum(g);
                for k in 0..n {
                    q[k] += lin * f * cs[k];
                }
            }
            obj_const += cst;
            let vars: Vec<usize> = terms
                .vars()
                .iter()
                .map(|v| {
                    let id = new_var(&mut q, v.cost);
                    if v.nonneg {
                        nn.push([(id, -1.0)], 0.0, own);
                    }
                    id
                })
                .collect();
            let ycoef = |list: &[(VarId, f64)], limit: bool| -> Vec<(usize, f64)> {
                list.iter()
                    .map(|&(v, c)| (vars[v.0], c))
                    .chain(sigma.filter(|_| limit).map(|s| (s, -1.0)))
                    .collect()
            };
            // The excess variables (u_v, voxel v) of each Voxels part with Hinge::Excess.
            let mut excess: Vec<Vec<(usize, u32)>> = vec![Vec::new(); terms.parts().len()];
            for (pi, part) in terms.parts().iter().enumerate() {
                match part {
                    Part::Voxels {
                        sign,
                        h_gy,
                        vars: pv,
                        hinge,
                        limit,
                    } => {
                        let yc = ycoef(pv, *limit);
                        for &v in cset {
                            let mut row: Vec<(usize, f64)> =
                                vrow(v, sign * f).chain(yc.iter().copied()).collect();
                            let row_owner = owner_of(*limit);
                            match hinge {
                                GoalHinge::None => nn.push(row, *h_gy, row_owner),
                                GoalHinge::Squared { hessian } => {
                                    // u >= 0 is implied: minimising u^2 subject to
                                    // u >= s (d - D) gives u = max(s (d - D), 0).
                                    let u = new_var(&mut q, 0.0);
                                    pdiag.push((u, hessian * g.weight_of(v)));
                                    row.push((u, -1.0));
                                    nn.push(row, *h_gy, row_owner);
                                }
                                GoalHinge::Excess => {
                                    let u = new_var(&mut q, 0.0);
                                    row.push((u, -1.0));
                                    nn.push(row, *h_gy, row_owner);
                                    nn.push([(u, -1.0)], 0.0, own);
                                    excess[pi].push((u, v));
                                }
                            }
                        }
                        // Voxel v matters when sign (d_v - theta) > 0, theta = sign (h - c'y).
                        hinges.push(Hinge {
                            goal: gi,
                            sign: *sign,
                            theta_const: sign * h_gy,
                            theta_vars: yc.iter().map(|&(v, c)| (v, -sign * c)).collect(),
                        });
                    }
                    Part::Sum {
                        coef,
                        vars: pv,
                        h_gy,
                        limit,
                    } => {
                        let cs = self.colsum(g);
                        let entries: Vec<(usize, f64)> =
                            (0..n).map(|k| (k, coef * f * cs[k])).collect();
                        nn.push(
                            entries.into_iter().chain(ycoef(pv, *limit)),
                            *h_gy,
                            owner_of(*limit),
                        );
                    }
                    Part::Tail {
                        voxels,
                        beta,
                        vars: pv,
                        h_gy,
                        limit,
                    } => {
                        let mut row = ycoef(pv, false);
                        row.extend(
                            excess[voxels.0]
                                .iter()
                                .map(|&(u, v)| (u, beta * g.weight_of(v))),
                        );
                        row.extend(sigma.filter(|_| *limit).map(|s| (s, -1.0)));
                        nn.push(row, *h_gy, owner_of(*limit));
                    }
                    Part::PowerMean { a: ea, cost } => {
                        // (sum_v w_v d_v^a)^(1/a) <= tau via power cones (r_v, tau, d_v),
                        // r_v >= d_v^a / tau^(a-1), and sum_v w_v r_v = tau.
                        let tau = new_var(&mut q, *cost);
                        let mut sum_entries = vec![(tau, -1.0)];
                        for (&v, &wv) in g.rows.iter().zip(&g.wts) {
                            let r = new_var(&mut q, 0.0);
                            sum_entries.push((r, wv as f64));
                            pw.push([(r, -1.0)], 0.0, own);
                            pw.push([(tau, -1.0)], 0.0, own);
                            pw.push(vrow(v, -f), 0.0, own);
                            pw_alpha.push(1.0 / ea);
                        }
                        eq.push(sum_entries, 0.0, own);
                    }
                }
            }
        }
        // Fluence terms and bounds.
        if self.fluence.total_mu_weight > 0.0 {
            for qk in q.iter_mut().take(n) {
                *qk += self.fluence.total_mu_weight;
            }
        }
        for k in 0..n {
            nn.push([(k, -1.0)], 0.0, Owner::Bounds);
        }
        if let Some(ub) = self.fluence.max_beamlet_mu {
            for k in 0..n {
                nn.push([(k, 1.0)], ub, Owner::Bounds);
            }
        }
        // Smoothness Laplacian, per column j: entries (i <= j).
        let mut lap: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        if self.fluence.smoothness_weight > 0.0 && !self.pairs.is_empty() {
            let c = 2.0 * self.fluence.smoothness_weight / self.pairs.len() as f64;
            for &(i, j) in &self.pairs {
                lap[i].push((i, c));
                lap[j].push((j, c));
                lap[j].push((i, -c));
            }
            for col in &mut lap {
                col.sort_by_key(|e| e.0);
                col.dedup_by(|b, a| {
                    if a.0 == b.0 {
                        a.1 += b.1;
                        true
                    } else {
                        false
                    }
                });
            }
        }
        // P (upper triangle, CSC).
        let mut colptr = Vec::with_capacity(nvar + 1);
        let mut rowval = Vec::new();
        let mut nzval = Vec::new();
        colptr.push(0);
        let mut colbuf = vec![0.0; n];
        for j in 0..n {
            if dense.is_empty() {
                for &(i, v) in &lap[j] {
                    rowval.push(i);
                    nzval.push(v);
                }
            } else {
                let buf = &mut colbuf[..=j];
                buf.iter_mut().for_each(|v| *v = 0.0);
                for (c, h) in &dense {
                    let col = &h.h[j * n..j * n + j + 1];
                    for (b, &hv) in buf.iter_mut().zip(col) {
                        *b += c * hv;
                    }
                }
                for &(i, v) in &lap[j] {
                    buf[i] += v;
                }
                for (i, &v) in buf.iter().enumerate() {
                    if v != 0.0 {
                        rowval.push(i);
                        nzval.push(v);
                    }
                }
            }
            colptr.push(rowval.len());
        }
        let mut pd = pdiag.into_iter().peekable();
        for j in n..nvar {
            if let Some(&(u, v)) = pd.peek() {
                if u == j {
                    rowval.push(j);
                    nzval.push(v);
                    pd.next();
                }
            }
            colptr.push(rowval.len());
        }
        let p = CscMatrix::new(nvar, nvar, colptr, rowval, nzval);

        // Stack the row blocks: zero cone, nonnegative cone, power cones.
        let m = eq.len() + nn.len() + pw.len();
        let mut cones = Vec::new();
        if eq.len() > 0 {
            cones.push(SupportedConeT::ZeroConeT(eq.len()));
        }
        if nn.len() > 0 {
            cones.push(SupportedConeT::NonnegativeConeT(nn.len()));
        }
        for &al in &pw_alpha {
            cones.push(SupportedConeT::PowerConeT(al));
        }
        let mut b = Vec::with_capacity(m);
        let mut owner = Vec::with_capacity(m);
        let mut counts = vec![0usize; nvar + 1];
        for blk in [&eq, &nn, &pw] {
            b.extend_from_slice(&blk.b);
            owner.extend_from_slice(&blk.owner);
            for &c in &blk.cols {
                counts[c + 1] += 1;
            }
        }
        for j in 0..nvar {
            counts[j + 1] += counts[j];
        }
        let acolptr = counts.clone();
        let nnz = counts[nvar];
        let mut next = counts;
        let mut arow = vec![0usize; nnz];
        let mut aval = vec![0f64; nnz];
        let mut row0 = 0;
        for blk in [&eq, &nn, &pw] {
            for r in 0..blk.len() {
                for k in blk.ptr[r]..blk.ptr[r + 1] {
                    let c = blk.cols[k];
                    arow[next[c]] = row0 + r;
                    aval[next[c]] = blk.vals[k];
                    next[c] += 1;
                }
            }
            row0 += blk.len();
        }
        // Rows are visited in ascending order, but a row may repeat a column (never here:
        // each row lists a column once), so the CSC is valid.
        let amat = CscMatrix::new(m, nvar, acolptr, arow, aval);
        Formulation {
            n_var: nvar,
            p,
            q,
            a: amat,
            b,
            cones,
            owner,
            hinges,
            obj_const,
            slack_var,
        }
    }

    /// Solve with Clarabel (conic formulation, constraint generation in cold rounds).
    pub(super) fn solve_clarabel(&self, opts: &OptimizeOptions) -> Result<OptimizationResult> {
        let t0 = Instant::now();
        let n = self.a.n_cols();
        let mut cand = self.starting_candidates(opts);
        let mut iterations = 0u32;
        let mut rounds = 0usize;
        let rx = self.rx_gy;
        loop {
            rounds += 1;
            let form = self.formulate(&cand, opts);
            let settings = DefaultSettingsBuilder::default()
                .verbose(opts.verbose)
                .max_iter(opts.max_iter)
                .direct_solve_method(opts.linear_solver.clone())
                .max_threads(opts.threads)
                .tol_gap_rel(opts.tolerance)
                .tol_gap_abs(opts.tolerance)
                .tol_feas(opts.tolerance)
                .build()
                .map_err(|e| Error::Solver(format!("settings: {e}")))?;
            let mut solver =
                DefaultSolver::new(&form.p, &form.q, &form.a, &form.b, &form.cones, settings)
                    .map_err(|e| Error::Solver(format!("setup: {e}")))?;
            if !opts.observers.is_empty() {
                let observers = opts.observers.clone();
                let round = rounds;
                solver.set_termination_callback(
                    move |info: &clarabel::solver::DefaultInfo<f64>| {
                        let it = observer::SolverIteration {
                            round,
                            iteration: info.iterations,
                            objective: info.cost_primal,
                            primal_residual: info.res_primal,
                            gap_rel: info.gap_rel,
                        };
                        observers.notify(&it) == observer::Control::Stop
                    },
                );
            }
            solver.solve();
            let sol = &solver.solution;
            iterations += sol.iterations;
            match sol.status {
                SolverStatus::CallbackTerminated => {
                    return Err(Error::Cancelled {
                        stage: "optimisation".into(),
                    })
                }
                SolverStatus::Solved | SolverStatus::AlmostSolved => {}
                SolverStatus::PrimalInfeasible | SolverStatus::AlmostPrimalInfeasible => {
                    let constraints = self.diagnose(&form, &sol.z);
                    return Err(Error::Infeasible {
                        violations_gy: vec![None; constraints.len()],
                        constraints,
                    });
                }
                s => {
                    return Err(Error::Solver(format!(
                        "Clarabel stopped with status {s:?} after {} iterations",
                        sol.iterations
                    )))
                }
            }
            let x: Vec<f64> = sol.x[..n].iter().map(|&v| v.max(0.0)).collect();
            let d_frac = self.a.dose(&x);
            let dose: Vec<f64> = d_frac.iter().map(|v| v * self.fractions).collect();
            // Constraint generation: add excluded voxels that violate their hinge.
            let mut added = false;
            let tol = 1e-4 * rx;
            let margin = 0.01 * rx;
            for h in &form.hinges {
                let Some(c) = cand[h.goal].as_mut() else {
                    continue;
                };
                let theta =
                    h.theta_const + h.theta_vars.iter().map(|&(v, k)| k * sol.x[v]).sum::<f64>();
                let inset = hessian::row_mask(self.a.n_rows(), c);
                let rows = &self.goals[h.goal].rows;
                let violated = rows
                    .iter()
                    .any(|&r| !inset[r as usize] && h.sign * (dose[r as usize] - theta) > tol);
                if violated {
                    c.extend(rows.iter().copied().filter(|&r| {
                        !inset[r as usize] && h.sign * (dose[r as usize] - theta) > -margin
                    }));
                    c.sort_unstable();
                    added = true;
                }
            }
            if !added || rounds >= opts.max_rounds {
                if let Ok(mut keep) = self.candidates.lock() {
                    *keep = cand.clone();
                }
                let slacks: Vec<Option<f64>> = form
                    .slack_var
                    .iter()
                    .map(|s| s.map(|v| sol.x[v].max(0.0)))
                    .collect();
                // Each hard goal's multiplier: the duals of its limit rows (all in Gy total,
                // as the IPM's), the objective's rise per Gy of tightening.
                let multipliers: Vec<Option<f64>> = if opts.relax {
                    Vec::new()
                } else {
                    let mut m = vec![None; self.goals.len()];
                    for (o, &z) in form.owner.iter().zip(&sol.z) {
                        if let Owner::Limit(g) = *o {
                            *m[g].get_or_insert(0.0) += z;
                        }
                    }
                    m
                };
                let objective = sol.obj_val + form.obj_const;
                let status = format!("{:?}", sol.status);
                let (n_variables, n_constraint_rows) = (form.n_var, form.b.len());
                return self.finish(
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
                );
            }
        }
    }

    /// Name the constraints that carry the dual ray of Clarabel's infeasibility certificate.
    fn diagnose(&self, form: &Formulation, z: &[f64]) -> Vec<String> {
        let mut per_goal = vec![0.0f64; self.goals.len()];
        for (r, &zr) in z.iter().enumerate() {
            if let Some(g) = form.owner.get(r).and_then(|o| o.goal()) {
                per_goal[g] += zr.abs();
            }
        }
        let hard: Vec<usize> = (0..self.goals.len())
            .filter(|&g| !self.goals[g].kind.is_objective())
            .collect();
        let zmax = hard.iter().map(|&g| per_goal[g]).fold(0.0, f64::max);
        let named: Vec<String> = hard
            .iter()
            .filter(|&&g| zmax > 0.0 && per_goal[g] > 1e-3 * zmax)
            .map(|&g| self.describe(g))
            .collect();
        if named.is_empty() {
            hard.iter()
                .filter(|&&g| self.goals[g].kind.mode() == Mode::Hard)
                .map(|&g| self.describe(g))
                .collect()
        } else {
            named
        }
    }
}
