//! Constrained convex fluence-map optimisation (matRad's `fluenceOptimization` step) with two
//! backends: the beamlet-space Mehrotra interior-point method of [`ipm`] (default) and the
//! Clarabel conic solver (reference).
//!
//! Units: the influence matrix `A` is Gy per MU for **one fraction**; beamlet weights `x` are
//! **MU per fraction**; every dose in a protocol, a goal result or `dose_gy` is the **total**
//! dose of the course, `d = fractions * A x`. The maths (objective terms, CVaR, Hessian
//! reduction, constraint generation, overlap rule, infeasibility diagnosis) is written up in
//! `docs/optimization.md`.
//!
//! ```text
//! let protocol = Protocol::load(Path::new("data/protocols/tg119.toml"))?;
//! let problem = PlanningProblem::new(&matrix, &dose_grid, &beams, &structures, &protocol)?;
//! let plan = problem.solve(&OptimizeOptions::default())?;
//! let goal = problem.find_goal("Core", "overdose")?;
//! problem.set_goal_weight(goal, 50.0)?;          // variant: reuses Hessian blocks
//! let variant = problem.solve(&OptimizeOptions::default())?;
//! ```

mod clarabel;
pub mod export;
pub mod goals;
pub mod hessian;
pub mod ipm;
pub mod observer;
pub mod protocol;
pub mod synthetic;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::Serialize;

use crate::beams::Beam;
use crate::dose::{
    DoseField, DoseGrid, DvhElements, InfluenceMatrix, MatrixValues, StructureRows, WeightedRows,
};
use crate::dvh;
use crate::error::{Error, Result};
pub use goals::{Candidates, CustomGoal, Evaluation, GoalTerm, Limit, Terms};
pub use hessian::DenseSym;
pub use protocol::{
    BeamsSection, FluenceSection, Goal, GoalKind, Mode, PlanSection, Prescription, Protocol,
    StructureGoals,
};

/// Relative tolerance with which a constraint counts as met on the final dose (0.5 %).
pub const MET_TOLERANCE: f64 = 0.005;

/// Scale the plan after optimisation so that `D_volume_pct` of `structure` equals `dose_gy`
/// (total Gy), as clinics normalise to the prescription.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalization {
    pub structure: String,
    pub volume_pct: f64,
    pub dose_gy: f64,
}

/// Which solver runs the optimisation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Beamlet-space Mehrotra interior point ([`ipm`]); goals it does not cover go to
    /// Clarabel with the reason in the status.
    #[default]
    Ipm,
    /// Clarabel on the conic formulation with constraint generation (reference).
    Clarabel,
}

impl Backend {
    /// Name of the backend as shown in the report.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ipm => "rtopt interior point (faer dense Cholesky)",
            Backend::Clarabel => "Clarabel (faer)",
        }
    }
}

/// Solver options.
#[derive(Debug, Clone)]
pub struct OptimizeOptions {
    /// Solver backend.
    pub backend: Backend,
    /// Turn hard constraints into penalties `relax_weight * violation_gy` (one slack per
    /// constraint, in Gy) and report the violations instead of failing as infeasible.
    pub relax: bool,
    /// Penalty per Gy of violation of a relaxed constraint.
    pub relax_weight: f64,
    /// Optional normalisation after the solve.
    pub normalize: Option<Normalization>,
    /// Clarabel iteration limit (per solve round).
    pub max_iter: u32,
    /// Threads for the faer factorisation (0 = all).
    pub threads: u32,
    /// Relative gap and feasibility tolerance handed to Clarabel.
    pub tolerance: f64,
    /// Goals on structures with at most this many voxels get one row per voxel from the
    /// start; larger structures start from the voxels a reference plan puts near the
    /// threshold and grow by constraint generation (exact at convergence).
    pub full_rows_limit: usize,
    /// Maximum number of constraint-generation rounds.
    pub max_rounds: usize,
    /// Print Clarabel's iteration log.
    pub verbose: bool,
    /// Clarabel's `direct_solve_method` (`"faer"`, measured fastest here; `"qdldl"`).
    pub linear_solver: String,
    /// Told of every iteration; any of them can stop the solve ([`observer`]).
    pub observers: observer::Observers,
    /// Interior-point backend: start with the beamlets the previous solve of this problem
    /// ended with at zero fixed (exact: the certificate at convergence restarts without the
    /// ones it refutes). Pays for small changes (the dose-fidelity re-solves: TG-119 same
    /// problem 1.7 s instead of 4.4 s); a large variant (Core overdose weight x10) took
    /// 6.5 s instead of about 5 s, so it is off by default.
    pub reuse_fixed_beamlets: bool,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        OptimizeOptions {
            backend: Backend::default(),
            relax: false,
            relax_weight: 1.0e4,
            normalize: None,
            max_iter: 200,
            threads: 0,
            tolerance: 1e-7,
            full_rows_limit: 30_000,
            max_rounds: 8,
            verbose: false,
            linear_solver: "faer".to_string(),
            observers: observer::Observers::default(),
            reuse_fixed_beamlets: false,
        }
    }
}

/// Whether a goal is an objective term or a constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalRole {
    Objective,
    Constraint,
    /// A constraint-type goal in `report` mode: evaluated only.
    Report,
}

impl GoalRole {
    /// `objective`, `constraint` or `report`, as in report.json.
    pub fn name(self) -> &'static str {
        match self {
            GoalRole::Objective => "objective",
            GoalRole::Constraint => "constraint",
            GoalRole::Report => "report",
        }
    }
}

impl std::fmt::Display for GoalRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// The outcome of one goal on the final (possibly normalised) total dose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoalResult {
    pub structure: String,
    /// The goal in the protocol's words, e.g. `max dose <= 40 Gy`.
    pub description: String,
    pub role: GoalRole,
    /// Limit or reference dose, Gy total (none for mean, gEUD and max-penalty objectives).
    pub limit_gy: Option<f64>,
    /// The dose statistic the goal is about, Gy: max (max dose, overdose, max penalty), min
    /// (min dose, underdose), mean (mean goals, deviation), gEUD, or the exact-DVH `D_x`.
    pub achieved_gy: f64,
    /// For DVH goals, the CVaR (tail mean) the convex constraint bounds.
    pub cvar_gy: Option<f64>,
    /// Weighted objective term (objectives only).
    pub objective_value: Option<f64>,
    /// Constraints: holds within [`MET_TOLERANCE`]. Objectives: `None`.
    pub met: Option<bool>,
    /// With `relax`: the optimiser's slack, Gy (0 when the constraint holds).
    pub violation_gy: Option<f64>,
    /// Hard constraints (interior-point backend): how much the objective would rise, to
    /// first order, if the limit were tightened by 1 Gy (the constraint's Lagrange
    /// multiplier; 0 when the limit does not bind). [`PlanningProblem::tightening_cost`]
    /// measures it by a re-solve and says which objectives pay.
    pub objective_per_gy: Option<f64>,
}

/// An objective term's share of a [`TighteningCost`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectivePayer {
    pub structure: String,
    pub description: String,
    /// Change of the weighted term (positive: it got worse).
    pub change: f64,
}

/// What tightening a hard constraint costs ([`PlanningProblem::tightening_cost`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TighteningCost {
    pub structure: String,
    /// The constraint in the protocol's words.
    pub description: String,
    /// How far the limit was moved, Gy (total).
    pub delta_gy: f64,
    /// The multiplier's prediction `objective_per_gy * delta_gy` (interior point only).
    pub predicted_change: Option<f64>,
    /// The measured change of the whole objective (objective terms plus fluence terms).
    pub objective_change: f64,
    /// Each objective term's change, largest first.
    pub payers: Vec<ObjectivePayer>,
}

/// Result of a fluence optimisation.
#[derive(Debug, Clone, Serialize)]
pub struct OptimizationResult {
    /// Beamlet weights, MU per fraction, one per influence-matrix column.
    pub weights_mu: Vec<f64>,
    /// Total dose over the course, Gy, one per dose-grid row.
    pub dose_gy: Vec<f64>,
    /// Clarabel's final status (`Solved`, `AlmostSolved`, ...).
    pub status: String,
    /// Interior-point iterations, summed over the constraint-generation rounds.
    pub iterations: u32,
    /// Wall time of the whole solve (formulation, Clarabel, evaluation), seconds.
    pub solve_seconds: f64,
    /// Constraint-generation rounds (1 when the first formulation was exact).
    pub rounds: usize,
    /// Objective value at the optimum (before normalisation).
    pub objective: f64,
    /// Number of variables and constraint rows of the last Clarabel problem.
    pub n_variables: usize,
    pub n_constraint_rows: usize,
    /// Factor applied by normalisation (1 without).
    pub normalization_factor: f64,
    pub goals: Vec<GoalResult>,
}

impl OptimizationResult {
    /// The result of the goal with this structure and description, if any.
    pub fn goal(&self, structure: &str, description: &str) -> Option<&GoalResult> {
        self.goals
            .iter()
            .find(|g| g.structure == structure && g.description == description)
    }
}

pub use crate::beams::FluenceMap;

/// Per-beam fluence maps from the weights (columns `first_column..` of each beam).
pub fn fluence_maps(beams: &[Beam], weights_mu: &[f64]) -> Result<Vec<FluenceMap>> {
    beams
        .iter()
        .map(|b| FluenceMap::of(b, weights_mu))
        .collect()
}

/// A goal bound to its voxel rows.
#[derive(Debug)]
struct GoalSpec {
    structure: String,
    kind: GoalKind,
    /// Rows of `A` the goal acts on, ascending: for a volume-weighted goal
    /// ([`GoalKind::is_volume_weighted`]) every row its structure less the exclusions occupies
    /// at all ([`StructureRows::weighted`]), else the rows whose voxel centre lies inside.
    rows: Vec<u32>,
    /// Weight of each row in the goal's sums and DVH points: the occupied fraction of the
    /// voxel (volume-weighted goals) or 1.
    wts: Vec<f32>,
    /// Sum of `wts`, voxels: the `N` of the normalised terms.
    total_w: f64,
    /// The partial-volume rows of the structure less its exclusions ([`StructureRows::weighted`];
    /// an excluded structure's weight is subtracted).
    weighted: WeightedRows,
    /// The DVH elements of the structure less the exclusions ([`StructureRows::dvh`]): what
    /// [`PlanningProblem::evaluate_goals`] judges the goal on (shared by goals alike).
    dvh: Arc<DvhElements>,
    /// `A_s^T W_s A_s` for deviation goals, `W_s = diag(wts)` (independent of weight and
    /// reference dose).
    hess: OnceLock<Arc<DenseSym>>,
    /// `A_s^T w_s`.
    colsum: OnceLock<Vec<f64>>,
}

impl GoalSpec {
    /// The goal's formulation ([`GoalTerm::formulate`]) with its `N`.
    fn terms(&self, rx_gy: f64) -> Terms {
        let mut t = Terms::new(self.total_w, rx_gy);
        self.kind.term().formulate(&mut t);
        t
    }

    /// Weight of row `r` in the goal (0 when the goal does not hold it).
    fn weight_of(&self, r: u32) -> f64 {
        self.rows
            .binary_search(&r)
            .map(|k| self.wts[k] as f64)
            .unwrap_or(0.0)
    }

    /// The goal's doses on `dose` (one per matrix row), with its row weights.
    fn row_doses(&self, dose: &[f64]) -> dvh::WeightedDoses {
        let d: Vec<f64> = self.rows.iter().map(|&r| dose[r as usize]).collect();
        dvh::WeightedDoses::new(&d, &self.wts)
    }
}

/// A fluence-optimisation problem: influence matrix, structures, protocol and cached
/// beamlet-space data. Changing weights or limits ([`PlanningProblem::set_goal_weight`],
/// [`PlanningProblem::set_goal_limit`]) keeps the cached Hessian blocks and the voxel rows
/// found by constraint generation, so variants re-solve without recomputing them.
pub struct PlanningProblem<'a> {
    /// Borrowed ([`PlanningProblem::new`]) or owned ([`PlanningProblem::new_owned`]).
    a: std::borrow::Cow<'a, InfluenceMatrix>,
    fractions: f64,
    rx_gy: f64,
    target_rows: Vec<u32>,
    structures: Vec<(String, Vec<u32>)>,
    /// The dose grid of the rows (for the DVH points of [`PlanningProblem::evaluate_goals`]).
    dose_grid: DoseGrid,
    goals: Vec<GoalSpec>,
    fluence: FluenceSection,
    /// Neighbouring beamlet pairs (columns) within a beam.
    pairs: Vec<(usize, usize)>,
    /// Candidate voxel rows of hinge goals, grown by constraint generation; kept for variants.
    candidates: Mutex<Vec<Option<Vec<u32>>>>,
    /// Beamlets the last interior-point solve ended with fixed at zero: the next solve (a
    /// variant, a fidelity re-solve) starts with them fixed, its certificate releases the rest.
    fixed_hint: Mutex<Vec<usize>>,
    reference_dose: OnceLock<Vec<f64>>,
}

impl<'a> PlanningProblem<'a> {
    /// Bind a protocol to an influence matrix. `structures` lists each structure's rows of A
    /// ([`StructureRows::of`]). Errors: a structure the protocol names
    /// is missing ([`Error::StructureNotFound`]), a goal has no voxel, or the beams do not
    /// match the matrix columns.
    pub fn new(
        matrix: &'a InfluenceMatrix,
        dose_grid: &DoseGrid,
        beams: &[Beam],
        structures: &[StructureRows],
        protocol: &Protocol,
    ) -> Result<PlanningProblem<'a>> {
        Self::build(
            std::borrow::Cow::Borrowed(matrix),
            dose_grid,
            beams,
            structures,
            protocol,
        )
    }

    /// [`PlanningProblem::new`] owning its matrix, so that a prepared plan can keep the
    /// problem (and its cached beamlet-space data) between variants.
    pub fn new_owned(
        matrix: InfluenceMatrix,
        dose_grid: &DoseGrid,
        beams: &[Beam],
        structures: &[StructureRows],
        protocol: &Protocol,
    ) -> Result<PlanningProblem<'static>> {
        PlanningProblem::build(
            std::borrow::Cow::Owned(matrix),
            dose_grid,
            beams,
            structures,
            protocol,
        )
    }

    /// The influence matrix the problem optimises on (Gy per MU, one fraction).
    pub fn matrix(&self) -> &InfluenceMatrix {
        &self.a
    }

    /// Replace every goal's weight and dose by those of `protocol`, which must hold the same
    /// structures and goal types in the same order as the protocol the problem was built from
    /// (a variant). Cached data (Hessian blocks, candidate rows) depend on neither and are kept.
    pub fn set_goals_from(&mut self, protocol: &Protocol) -> Result<()> {
        let kinds: Vec<&GoalKind> = protocol
            .structures
            .iter()
            .flat_map(|s| s.goals.iter().map(|g| &g.kind))
            .collect();
        let same = kinds.len() == self.goals.len()
            && kinds
                .iter()
                .zip(&self.goals)
                .all(|(k, g)| k.term().type_name() == g.kind.term().type_name());
        if !same {
            return Err(Error::Invalid(
                "a variant must keep the structures and goal types of the prepared protocol; change weights and doses only".into(),
            ));
        }
        for (k, g) in kinds.into_iter().zip(self.goals.iter_mut()) {
            g.kind = k.clone();
        }
        self.fluence = protocol.fluence.clone();
        Ok(())
    }

    fn build(
        matrix: std::borrow::Cow<'a, InfluenceMatrix>,
        dose_grid: &DoseGrid,
        beams: &[Beam],
        structures: &[StructureRows],
        protocol: &Protocol,
    ) -> Result<PlanningProblem<'a>> {
        if dose_grid.len() != matrix.n_rows() {
            return Err(Error::Invalid(format!(
                "dose grid has {} voxels but the influence matrix {} rows",
                dose_grid.len(),
                matrix.n_rows()
            )));
        }
        let n = matrix.n_cols();
        if !beams.is_empty() {
            let total: usize = beams.iter().map(|b| b.beamlets.len()).sum();
            let ok = total == n && beams.iter().all(|b| b.first_column + b.beamlets.len() <= n);
            if !ok {
                return Err(Error::Invalid(format!(
                    "beams hold {total} beamlets but the influence matrix has {n} columns"
                )));
            }
        }
        protocol.validate(std::path::Path::new("<protocol>"))?;
        let present = || {
            structures
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let find_rows = |name: &str| -> Result<&StructureRows> {
            structures
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| Error::StructureNotFound {
                    name: name.to_string(),
                    present: present(),
                })
        };
        let find = |name: &str| find_rows(name).map(|s| &s.rows);
        for name in protocol.referenced_structures() {
            find(&name)?;
        }
        for s in structures {
            if let Some(&r) = s.rows.iter().find(|&&r| r as usize >= matrix.n_rows()) {
                return Err(Error::Invalid(format!(
                    "structure '{}' lists row {r}, beyond the {} rows of the influence matrix",
                    s.name,
                    matrix.n_rows()
                )));
            }
        }
        let target_rows = sorted(find(&protocol.prescription.target)?);
        let mut goals = Vec::new();
        let mut dvhs: Vec<(&str, &[String], Arc<DvhElements>)> = Vec::new();
        for sg in &protocol.structures {
            let rows = sorted(find(&sg.name)?);
            for g in &sg.goals {
                let mut rows = rows.clone();
                for ex in &g.exclude {
                    let exm = hessian::row_mask(matrix.n_rows(), find(ex)?);
                    rows.retain(|&r| !exm[r as usize]);
                }
                if rows.is_empty() {
                    return Err(Error::Invalid(format!(
                        "goal '{} {}' has no voxel on the dose grid",
                        sg.name,
                        g.kind.describe()
                    )));
                }
                let excluded: Vec<&WeightedRows> = g
                    .exclude
                    .iter()
                    .map(|ex| find_rows(ex).map(|s| &s.weighted))
                    .collect::<Result<_>>()?;
                let weighted = find_rows(&sg.name)?
                    .weighted
                    .minus(&excluded, matrix.n_rows());
                let dvh = match dvhs
                    .iter()
                    .find(|(n, ex, _)| *n == sg.name.as_str() && *ex == g.exclude.as_slice())
                {
                    Some((_, _, d)) => d.clone(),
                    None => {
                        let ex: Vec<&DvhElements> = g
                            .exclude
                            .iter()
                            .map(|ex| find_rows(ex).map(|s| &s.dvh))
                            .collect::<Result<_>>()?;
                        let what = format!("goal '{} {}'", sg.name, g.kind.describe());
                        let d = Arc::new(find_rows(&sg.name)?.dvh.minus(
                            &ex,
                            matrix.n_rows(),
                            &what,
                        )?);
                        dvhs.push((&sg.name, &g.exclude, d.clone()));
                        d
                    }
                };
                // Volume averages (objectives, means, DVH limits) weigh each voxel by the
                // fraction the structure occupies; max and min limits act on whole voxels.
                let (rows, wts) = if g.kind.is_volume_weighted() && !weighted.rows.is_empty() {
                    (weighted.rows.clone(), weighted.weights.clone())
                } else {
                    let w = vec![1.0f32; rows.len()];
                    (rows, w)
                };
                let total_w = wts.iter().map(|&w| w as f64).sum();
                goals.push(GoalSpec {
                    structure: sg.name.clone(),
                    kind: g.kind.clone(),
                    rows,
                    wts,
                    total_w,
                    weighted,
                    dvh,
                    hess: OnceLock::new(),
                    colsum: OnceLock::new(),
                });
            }
        }
        // Neighbouring pairs for the smoothness term.
        let mut pairs = Vec::new();
        for b in beams {
            let mut map = std::collections::HashMap::new();
            for (k, &[ix, iy]) in b.beamlets.iter().enumerate() {
                map.insert((ix, iy), b.first_column + k);
            }
            for (k, &[ix, iy]) in b.beamlets.iter().enumerate() {
                let c = b.first_column + k;
                for nb in [(ix + 1, iy), (ix, iy + 1)] {
                    if let Some(&c2) = map.get(&nb) {
                        pairs.push((c.min(c2), c.max(c2)));
                    }
                }
            }
        }
        pairs.sort_unstable();
        let ng = goals.len();
        Ok(PlanningProblem {
            a: matrix,
            fractions: protocol.prescription.fractions as f64,
            rx_gy: protocol.prescription.total_dose_gy,
            target_rows,
            structures: structures
                .iter()
                .map(|s| (s.name.clone(), sorted(&s.rows)))
                .collect(),
            dose_grid: dose_grid.clone(),
            goals,
            fluence: protocol.fluence.clone(),
            pairs,
            candidates: Mutex::new(vec![None; ng]),
            fixed_hint: Mutex::new(Vec::new()),
            reference_dose: OnceLock::new(),
        })
    }

    /// The goals in protocol order: `(structure, description)`; the index is the goal id used
    /// by [`PlanningProblem::set_goal_weight`] and [`PlanningProblem::set_goal_limit`].
    pub fn goals(&self) -> Vec<(String, String)> {
        self.goals
            .iter()
            .map(|g| (g.structure.clone(), g.kind.describe()))
            .collect()
    }

    /// The partial-volume rows of goal `goal` (its structure less its exclusions, each row
    /// with the occupied fraction of its voxel, [`StructureRows::weighted`]): the voxel
    /// weights for a solver that weighs voxels. The solvers use the goal's whole rows today.
    pub fn voxel_weights(&self, goal: usize) -> Option<&WeightedRows> {
        self.goals.get(goal).map(|g| &g.weighted)
    }

    /// Index of the first goal of `structure` whose description contains `text`.
    pub fn find_goal(&self, structure: &str, text: &str) -> Result<usize> {
        self.goals
            .iter()
            .position(|g| g.structure == structure && g.kind.describe().contains(text))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no goal of '{structure}' matching '{text}'; goals: {}",
                    self.goals()
                        .iter()
                        .map(|(s, d)| format!("{s} {d}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })
    }

    /// Change the weight of an objective (variant re-optimisation).
    pub fn set_goal_weight(&mut self, goal: usize, weight: f64) -> Result<()> {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Error::Invalid(format!(
                "weight {weight} must be a finite number >= 0"
            )));
        }
        let g = self
            .goals
            .get_mut(goal)
            .ok_or_else(|| Error::Invalid(format!("no goal {goal}")))?;
        let desc = g.kind.describe();
        let w = g
            .kind
            .weight_mut()
            .ok_or_else(|| Error::Invalid(format!("'{} {desc}' has no weight", g.structure)))?;
        *w = weight;
        Ok(())
    }

    /// Change the reference or limit dose (Gy total) of a goal (variant re-optimisation).
    pub fn set_goal_limit(&mut self, goal: usize, dose_gy: f64) -> Result<()> {
        if !(dose_gy.is_finite() && dose_gy >= 0.0) {
            return Err(Error::Invalid(format!("dose {dose_gy} Gy must be >= 0")));
        }
        let g = self
            .goals
            .get_mut(goal)
            .ok_or_else(|| Error::Invalid(format!("no goal {goal}")))?;
        let desc = g.kind.describe();
        let d = g
            .kind
            .dose_gy_mut()
            .ok_or_else(|| Error::Invalid(format!("'{} {desc}' has no dose", g.structure)))?;
        *d = dose_gy;
        Ok(())
    }

    /// What tightening hard goal `goal` by `delta_gy` costs, measured: the problem is solved
    /// again with the limit moved by `delta_gy` in the stricter direction (down for upper
    /// limits, up for lower ones), from the zero set of `base`'s solve, and each objective
    /// term's change is reported, largest first. The limit is restored afterwards.
    /// `base` is the solution of the problem as it stands (with the same `opts`).
    ///
    /// [`GoalResult::objective_per_gy`] is the first-order prediction of the same number
    /// (the multiplier); this is the answer to "why can't the Core get less?".
    pub fn tightening_cost(
        &mut self,
        goal: usize,
        delta_gy: f64,
        base: &OptimizationResult,
        opts: &OptimizeOptions,
    ) -> Result<TighteningCost> {
        if !(delta_gy.is_finite() && delta_gy > 0.0) {
            return Err(Error::Invalid(format!(
                "tightening step {delta_gy} Gy must be a positive number"
            )));
        }
        let g = self
            .goals
            .get(goal)
            .ok_or_else(|| Error::Invalid(format!("no goal {goal}")))?;
        let (structure, description) = (g.structure.clone(), g.kind.describe());
        let upper = g
            .kind
            .term()
            .limit()
            .filter(|_| g.kind.mode() == Mode::Hard)
            .map(|l| l == Limit::Upper)
            .ok_or_else(|| {
            Error::Invalid(format!(
                "'{structure} {description}' is not a hard constraint: only a hard limit has a tightening cost"
            ))
        })?;
        if base.goals.len() != self.goals.len() {
            return Err(Error::Invalid(format!(
                "the base solution has {} goals, the problem {}",
                base.goals.len(),
                self.goals.len()
            )));
        }
        let limit = g.kind.dose_gy().unwrap_or(0.0);
        let tighter = if upper {
            limit - delta_gy
        } else {
            limit + delta_gy
        };
        if tighter < 0.0 {
            return Err(Error::Invalid(format!(
                "'{structure} {description}': tightening by {delta_gy} Gy gives a negative limit"
            )));
        }
        let mut ropts = opts.clone();
        ropts.reuse_fixed_beamlets = true;
        ropts.normalize = None;
        self.set_goal_limit(goal, tighter)?;
        let solved = self.solve(&ropts);
        self.set_goal_limit(goal, limit)?;
        let r = solved?;
        let mut payers: Vec<ObjectivePayer> = base
            .goals
            .iter()
            .zip(&r.goals)
            .filter_map(|(a, b)| {
                Some(ObjectivePayer {
                    structure: a.structure.clone(),
                    description: a.description.clone(),
                    change: b.objective_value? - a.objective_value?,
                })
            })
            .collect();
        payers.sort_by(|a, b| b.change.total_cmp(&a.change));
        Ok(TighteningCost {
            structure,
            description,
            delta_gy,
            predicted_change: base.goals[goal].objective_per_gy.map(|m| m * delta_gy),
            objective_change: r.objective - base.objective,
            payers,
        })
    }

    /// Number of beamlets (columns).
    pub fn n_beamlets(&self) -> usize {
        self.a.n_cols()
    }

    /// Forget the hints the last solves left (candidate rows of partial goals, the fixed
    /// beamlets): the next solve starts as the first one did. Hints only speed a solve up,
    /// but they steer its iterates, so a solve after different predecessors agrees with the
    /// first only within the tolerance; the staged planner clears them before each variant
    /// so that a variant's result does not depend on the variants solved before it.
    pub fn clear_hints(&self) {
        if let Ok(mut c) = self.candidates.lock() {
            c.iter_mut().for_each(|g| *g = None);
        }
        if let Ok(mut h) = self.fixed_hint.lock() {
            h.clear();
        }
    }

    /// Rescale the rows of the problem's matrix to `base` (a [`InfluenceMatrix::values_snapshot`]
    /// of it) times `factors` (one per row), as the dose-fidelity correction does, and drop
    /// the beamlet-space data cached from the old entries. Candidate rows and the fixed
    /// beamlets of the last solve are kept as hints (both exact: checked at convergence).
    pub fn set_row_scale(&mut self, base: &MatrixValues, factors: &[f64]) -> Result<()> {
        self.a
            .to_mut()
            .set_row_scale(base, factors)
            .map_err(|e| Error::Invalid(format!("dose-fidelity correction: {e}")))?;
        for g in &mut self.goals {
            g.hess = OnceLock::new();
            g.colsum = OnceLock::new();
        }
        self.reference_dose = OnceLock::new();
        Ok(())
    }

    /// Precompute the cached beamlet-space data (Hessian blocks, column sums). Called by
    /// `solve` as needed; exposed so benchmarks can time it separately.
    pub fn precompute(&self) {
        for g in &self.goals {
            let t = g.terms(self.rx_gy);
            if t.uses_gram() {
                self.hess(g);
            }
            if t.uses_colsum() {
                self.colsum(g);
            }
        }
    }

    fn hess(&self, g: &GoalSpec) -> Arc<DenseSym> {
        g.hess
            .get_or_init(|| {
                let w = hessian::row_weights(self.a.n_rows(), &g.rows, &g.wts);
                Arc::new(hessian::gram(&self.a, &w))
            })
            .clone()
    }

    fn colsum<'g>(&self, g: &'g GoalSpec) -> &'g [f64] {
        g.colsum.get_or_init(|| {
            let w = hessian::row_weights(self.a.n_rows(), &g.rows, &g.wts);
            hessian::column_sums(&self.a, &w)
        })
    }

    /// Dose of uniform fluence scaled to a mean target dose of the prescription (total Gy):
    /// the reference for choosing initial constraint-generation rows.
    fn reference_dose(&self) -> &[f64] {
        self.reference_dose.get_or_init(|| {
            let x = vec![1.0; self.a.n_cols()];
            let d = self.a.dose(&x);
            let m: f64 = self.target_rows.iter().map(|&r| d[r as usize]).sum::<f64>()
                / self.target_rows.len().max(1) as f64;
            let s = if m > 0.0 { self.rx_gy / m } else { 0.0 };
            d.iter().map(|v| v * s).collect()
        })
    }

    fn initial_candidates(&self, gi: usize, opts: &OptimizeOptions) -> Vec<u32> {
        let g = &self.goals[gi];
        if g.rows.len() <= opts.full_rows_limit {
            return g.rows.clone();
        }
        let d0 = self.reference_dose();
        match g.kind.term().candidates() {
            Candidates::All => g.rows.clone(),
            // CVaR terms: only the tail beyond the VaR matters; start from three times the
            // tail of the reference dose (by rank), constraint generation adds what is missing.
            Candidates::Tail { limit, fraction } => {
                let sign = limit.sign();
                let k =
                    ((3.0 * fraction * g.rows.len() as f64).ceil() as usize + 50).min(g.rows.len());
                let mut idx: Vec<u32> = g.rows.clone();
                // hottest first for upper tails, coldest first for lower tails; ties by row
                idx.sort_by(|&a, &b| {
                    let (da, db) = (d0[a as usize], d0[b as usize]);
                    (sign * db).total_cmp(&(sign * da)).then(a.cmp(&b))
                });
                idx.truncate(k);
                idx.sort_unstable();
                idx
            }
            Candidates::Threshold { limit, dose_gy } => {
                let sign = limit.sign();
                // Without a dose: the goal's hottest (upper) or coldest (lower) reference dose.
                let theta = dose_gy.unwrap_or_else(|| {
                    let ext = g.rows.iter().map(|&r| sign * d0[r as usize]);
                    sign * ext.fold(f64::NEG_INFINITY, f64::max)
                });
                let margin = 0.25 * theta.abs().max(0.05 * self.rx_gy);
                g.rows
                    .iter()
                    .copied()
                    .filter(|&r| sign * (d0[r as usize] - theta) > -margin)
                    .collect()
            }
        }
    }

    fn is_active(g: &GoalSpec, relax: bool) -> bool {
        if g.kind.is_objective() {
            return g.kind.weight().unwrap_or(0.0) > 0.0;
        }
        let _ = relax;
        g.kind.mode() == Mode::Hard
    }

    /// Solve the problem (see [`OptimizeOptions`]) with the chosen backend. Errors:
    /// [`Error::Infeasible`] naming the conflicting hard constraints, [`Error::Solver`] when
    /// the solver stops without a solution.
    pub fn solve(&self, opts: &OptimizeOptions) -> Result<OptimizationResult> {
        match opts.backend {
            Backend::Ipm => {
                let r = ipm::solve(self, opts);
                if opts.reuse_fixed_beamlets && matches!(r, Err(Error::Solver(_))) {
                    // Starting from the previous zero set can leave the Newton matrix too
                    // ill-conditioned (seen at a 1e-9 gap on the synthetic C-shape): the
                    // same problem cold.
                    let cold = OptimizeOptions {
                        reuse_fixed_beamlets: false,
                        ..opts.clone()
                    };
                    return ipm::solve(self, &cold);
                }
                r
            }
            Backend::Clarabel => self.solve_clarabel(opts),
        }
    }

    /// Starting candidate rows per goal: `None` for all rows (small structures, goals without
    /// per-voxel rows), else the rows of a previous solve or of the reference plan.
    fn starting_candidates(&self, opts: &OptimizeOptions) -> Vec<Option<Vec<u32>>> {
        let prev = self
            .candidates
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        (0..self.goals.len())
            .map(|gi| {
                let g = &self.goals[gi];
                if g.kind.term().candidates() == Candidates::All {
                    return None;
                }
                if g.rows.len() <= opts.full_rows_limit {
                    return None; // all rows
                }
                Some(match prev.get(gi).cloned().flatten() {
                    Some(c) => c,
                    None => self.initial_candidates(gi, opts),
                })
            })
            .collect()
    }

    fn describe(&self, g: usize) -> String {
        format!(
            "{} {}",
            self.goals[g].structure,
            self.goals[g].kind.describe()
        )
    }

    fn finish(
        &self,
        mut x: Vec<f64>,
        mut dose: Vec<f64>,
        opts: &OptimizeOptions,
        info: FinishInfo,
    ) -> Result<OptimizationResult> {
        let mut factor = 1.0;
        if let Some(nm) = &opts.normalize {
            let rows = self
                .structures
                .iter()
                .find(|s| s.0 == nm.structure)
                .map(|s| &s.1)
                .ok_or_else(|| Error::StructureNotFound {
                    name: nm.structure.clone(),
                    present: self
                        .structures
                        .iter()
                        .map(|s| s.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let d: Vec<f64> = rows.iter().map(|&r| dose[r as usize]).collect();
            let dx = dvh::dose_at_volume(&d, nm.volume_pct);
            if dx.is_nan() || dx <= 0.0 {
                return Err(Error::Invalid(format!(
                    "cannot normalise: D{} of '{}' is {dx} Gy",
                    nm.volume_pct, nm.structure
                )));
            }
            factor = nm.dose_gy / dx;
            x.iter_mut().for_each(|v| *v *= factor);
            dose.iter_mut().for_each(|v| *v *= factor);
        }
        let goals = self
            .goals
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                let slack = info.slacks.get(gi).copied().flatten();
                let mut r = self.evaluate(g, &DoseField::new(&dose, &self.dose_grid), slack, false);
                if r.role == GoalRole::Constraint {
                    r.objective_per_gy = info.multipliers.get(gi).copied().flatten();
                }
                r
            })
            .collect();
        Ok(OptimizationResult {
            weights_mu: x,
            dose_gy: dose,
            status: info.status,
            iterations: info.iterations,
            solve_seconds: info.t0.elapsed().as_secs_f64(),
            rounds: info.rounds,
            objective: info.objective,
            n_variables: info.n_variables,
            n_constraint_rows: info.n_constraint_rows,
            normalization_factor: factor,
            goals,
        })
    }

    /// Evaluate every goal on a total dose (Gy per dose-grid row), e.g. the deliverable dose
    /// after sequencing, with the same conventions as the optimiser's own goal table but on
    /// the structures' DVH elements ([`StructureRows::dvh`]: supersampled points with
    /// trilinear dose, as a planning system's DVH); the optimiser's table is on its own rows.
    pub fn evaluate_goals(&self, dose_gy: &[f64]) -> Result<Vec<GoalResult>> {
        if dose_gy.len() != self.a.n_rows() {
            return Err(Error::Invalid(format!(
                "goal evaluation: {} dose values for {} dose-grid rows",
                dose_gy.len(),
                self.a.n_rows()
            )));
        }
        let field = DoseField::new(dose_gy, &self.dose_grid);
        Ok(self
            .goals
            .iter()
            .map(|g| self.evaluate(g, &field, None, true))
            .collect())
    }

    /// One goal on `dose`: on its DVH elements when `weighted`, else on its rows with their
    /// weights (the optimiser's view).
    fn evaluate(
        &self,
        g: &GoalSpec,
        dose: &DoseField,
        slack: Option<f64>,
        weighted: bool,
    ) -> GoalResult {
        let d = if weighted {
            g.dvh.doses(dose)
        } else {
            g.row_doses(dose.rows)
        };
        let role = if g.kind.is_objective() {
            GoalRole::Objective
        } else if g.kind.mode() == Mode::Report {
            GoalRole::Report
        } else {
            GoalRole::Constraint
        };
        let term = g.kind.term();
        let e = term.evaluate(&d);
        let limit_gy = term.dose_gy();
        let met = term.limit().map(|side| {
            let limit = limit_gy.unwrap_or(0.0);
            let tol = MET_TOLERANCE * limit.abs().max(1e-9);
            match side {
                Limit::Upper => e.achieved_gy <= limit + tol,
                Limit::Lower => e.achieved_gy >= limit - tol,
            }
        });
        GoalResult {
            structure: g.structure.clone(),
            description: term.describe(),
            role,
            limit_gy,
            achieved_gy: e.achieved_gy,
            cvar_gy: e.cvar_gy,
            objective_value: e.objective_value,
            met,
            violation_gy: slack,
            objective_per_gy: None,
        }
    }
}

struct FinishInfo {
    status: String,
    iterations: u32,
    rounds: usize,
    objective: f64,
    n_variables: usize,
    n_constraint_rows: usize,
    slacks: Vec<Option<f64>>,
    /// Per goal: the objective's first-order increase per Gy of tightening (empty: unknown).
    multipliers: Vec<Option<f64>>,
    t0: Instant,
}

fn sorted(rows: &[u32]) -> Vec<u32> {
    let mut v = rows.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}
