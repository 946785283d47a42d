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

pub mod export;
pub mod hessian;
pub mod ipm;
pub mod observer;
pub mod protocol;
pub mod synthetic;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
};
use serde::Serialize;

use crate::beams::Beam;
use crate::dose::{
    DoseField, DoseGrid, DvhElements, InfluenceMatrix, MatrixValues, StructureRows, WeightedRows,
};
use crate::dvh;
use crate::error::{Error, Result};
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

/// Who owns a constraint row (for infeasibility diagnosis).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Owner {
    Goal(usize),
    Bounds,
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
                .all(|(k, g)| std::mem::discriminant(*k) == std::mem::discriminant(&g.kind));
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
        let upper = match g.kind {
            GoalKind::MaxDose { mode, .. }
            | GoalKind::MeanMax { mode, .. }
            | GoalKind::DvhMax { mode, .. } => (mode == Mode::Hard).then_some(true),
            GoalKind::MinDose { mode, .. }
            | GoalKind::MeanMin { mode, .. }
            | GoalKind::DvhMin { mode, .. } => (mode == Mode::Hard).then_some(false),
            _ => None,
        }
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
        let limit = g.kind.clone().dose_gy_mut().map_or(0.0, |d| *d);
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
            match g.kind {
                GoalKind::Deviation { .. } => {
                    self.hess(g);
                    self.colsum(g);
                }
                GoalKind::MeanDose { .. } | GoalKind::MeanMax { .. } | GoalKind::MeanMin { .. } => {
                    self.colsum(g);
                }
                GoalKind::Eud { a: 1.0, .. } => {
                    self.colsum(g);
                }
                _ => {}
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

    /// Sign and reference threshold of a hinge goal for initial row selection.
    fn hinge_sign(kind: &GoalKind) -> Option<f64> {
        match kind {
            GoalKind::Overdose { .. }
            | GoalKind::MaxPenalty { .. }
            | GoalKind::MaxDose { .. }
            | GoalKind::DvhMax { .. } => Some(1.0),
            GoalKind::Underdose { .. } | GoalKind::MinDose { .. } | GoalKind::DvhMin { .. } => {
                Some(-1.0)
            }
            _ => None,
        }
    }

    fn initial_candidates(&self, gi: usize, opts: &OptimizeOptions) -> Vec<u32> {
        let g = &self.goals[gi];
        if g.rows.len() <= opts.full_rows_limit {
            return g.rows.clone();
        }
        let d0 = self.reference_dose();
        let sign = Self::hinge_sign(&g.kind).unwrap_or(1.0);
        // CVaR terms: only the tail beyond the VaR matters; start from three times the tail
        // of the reference dose (by rank), constraint generation adds what is missing.
        let tail = match g.kind {
            GoalKind::DvhMax { volume_pct, .. } => Some(volume_pct / 100.0),
            GoalKind::DvhMin { volume_pct, .. } => Some(1.0 - volume_pct / 100.0),
            _ => None,
        };
        if let Some(p) = tail {
            let k = ((3.0 * p * g.rows.len() as f64).ceil() as usize + 50).min(g.rows.len());
            let mut idx: Vec<u32> = g.rows.clone();
            // hottest first for upper tails, coldest first for lower tails; ties by row
            idx.sort_by(|&a, &b| {
                let (da, db) = (d0[a as usize], d0[b as usize]);
                (sign * db).total_cmp(&(sign * da)).then(a.cmp(&b))
            });
            idx.truncate(k);
            idx.sort_unstable();
            return idx;
        }
        let theta = match g.kind {
            GoalKind::MaxPenalty { .. } => g
                .rows
                .iter()
                .map(|&r| d0[r as usize])
                .fold(0.0f64, f64::max),
            _ => g.kind.dose_gy().unwrap_or(self.rx_gy),
        };
        let margin = 0.25 * theta.abs().max(0.05 * self.rx_gy);
        g.rows
            .iter()
            .copied()
            .filter(|&r| sign * (d0[r as usize] - theta) > -margin)
            .collect()
    }

    fn is_active(g: &GoalSpec, relax: bool) -> bool {
        if g.kind.is_objective() {
            return g.kind.weight().unwrap_or(0.0) > 0.0;
        }
        let _ = relax;
        g.kind.mode() == Mode::Hard
    }

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
            // N of the normalised terms: the goal's voxels, each counted with its weight.
            let nv = g.total_w;
            let own = Owner::Goal(gi);
            let cset: &[u32] = cand[gi].as_deref().unwrap_or(&g.rows);
            // relax slack: theta shifted by sigma (>= 0) with linear penalty
            let sigma = if !g.kind.is_objective() && opts.relax {
                let s = new_var(&mut q, opts.relax_weight);
                nn.push([(s, -1.0)], 0.0, own);
                slack_var[gi] = Some(s);
                Some(s)
            } else {
                None
            };
            let sig = |coef: f64| sigma.map(|s| (s, coef));
            match g.kind {
                GoalKind::Deviation { dose_gy, weight } => {
                    let c = 2.0 * weight * f * f / nv;
                    dense.push((c, self.hess(g)));
                    let cs = self.colsum(g);
                    for k in 0..n {
                        q[k] -= 2.0 * weight * f * dose_gy / nv * cs[k];
                    }
                    obj_const += weight * dose_gy * dose_gy;
                }
                GoalKind::MeanDose { weight } => {
                    let cs = self.colsum(g);
                    for k in 0..n {
                        q[k] += weight * f / nv * cs[k];
                    }
                }
                GoalKind::Eud { a: 1.0, weight } => {
                    let cs = self.colsum(g);
                    for k in 0..n {
                        q[k] += weight * f / nv * cs[k];
                    }
                }
                GoalKind::Eud { a: ea, weight } => {
                    // (sum_v w_v d_v^a)^(1/a) <= tau via power cones (r_v, tau, d_v),
                    // r_v >= d_v^a / tau^(a-1), and sum_v w_v r_v = tau; the term is
                    // N^(-1/a) tau = (1/N sum_v w_v d_v^a)^(1/a).
                    let tau = new_var(&mut q, weight * nv.powf(-1.0 / ea));
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
                GoalKind::Overdose { dose_gy, weight }
                | GoalKind::Underdose { dose_gy, weight } => {
                    let s = if matches!(g.kind, GoalKind::Overdose { .. }) {
                        1.0
                    } else {
                        -1.0
                    };
                    for &v in cset {
                        let u = new_var(&mut q, 0.0);
                        pdiag.push((u, 2.0 * weight * g.weight_of(v) / nv));
                        // u >= 0 is implied: minimising u^2 subject to u >= s (d - D)
                        // gives u = max(s (d - D), 0).
                        nn.push(vrow(v, s * f).chain([(u, -1.0)]), s * dose_gy, own);
                    }
                    hinges.push(Hinge {
                        goal: gi,
                        sign: s,
                        theta_const: dose_gy,
                        theta_vars: vec![],
                    });
                }
                GoalKind::MaxPenalty { weight } => {
                    let z = new_var(&mut q, weight);
                    nn.push([(z, -1.0)], 0.0, own);
                    for &v in cset {
                        nn.push(vrow(v, f).chain([(z, -1.0)]), 0.0, own);
                    }
                    hinges.push(Hinge {
                        goal: gi,
                        sign: 1.0,
                        theta_const: 0.0,
                        theta_vars: vec![(z, 1.0)],
                    });
                }
                GoalKind::MaxDose { dose_gy, .. } | GoalKind::MinDose { dose_gy, .. } => {
                    let s = if matches!(g.kind, GoalKind::MaxDose { .. }) {
                        1.0
                    } else {
                        -1.0
                    };
                    for &v in cset {
                        nn.push(vrow(v, s * f).chain(sig(-1.0)), s * dose_gy, own);
                    }
                    hinges.push(Hinge {
                        goal: gi,
                        sign: s,
                        theta_const: dose_gy,
                        theta_vars: sigma.map(|sv| vec![(sv, s)]).unwrap_or_default(),
                    });
                }
                GoalKind::MeanMax { dose_gy, .. } | GoalKind::MeanMin { dose_gy, .. } => {
                    let s = if matches!(g.kind, GoalKind::MeanMax { .. }) {
                        1.0
                    } else {
                        -1.0
                    };
                    let cs = self.colsum(g);
                    let entries: Vec<(usize, f64)> =
                        (0..n).map(|k| (k, s * f / nv * cs[k])).collect();
                    nn.push(entries.into_iter().chain(sig(-1.0)), s * dose_gy, own);
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
                    // Upper: t + 1/(pN) sum u_v <= D, u_v >= d_v - t.
                    // Lower: t - 1/(pN) sum u_v >= D, u_v >= t - d_v, p = 1 - volume.
                    let upper = matches!(g.kind, GoalKind::DvhMax { .. });
                    let s = if upper { 1.0 } else { -1.0 };
                    let p = if upper {
                        volume_pct / 100.0
                    } else {
                        1.0 - volume_pct / 100.0
                    };
                    let t = new_var(&mut q, 0.0);
                    let mut main = vec![(t, s)];
                    for &v in cset {
                        let u = new_var(&mut q, 0.0);
                        nn.push(vrow(v, s * f).chain([(t, -s), (u, -1.0)]), 0.0, own);
                        nn.push([(u, -1.0)], 0.0, own);
                        main.push((u, g.weight_of(v) / (p * nv)));
                    }
                    nn.push(main.into_iter().chain(sig(-1.0)), s * dose_gy, own);
                    hinges.push(Hinge {
                        goal: gi,
                        sign: s,
                        theta_const: 0.0,
                        theta_vars: vec![(t, 1.0)],
                    });
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
                Self::hinge_sign(&g.kind)?;
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

    /// Solve with Clarabel (conic formulation, constraint generation in cold rounds).
    fn solve_clarabel(&self, opts: &OptimizeOptions) -> Result<OptimizationResult> {
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
                        multipliers: Vec::new(),
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
            if let Some(Owner::Goal(g)) = form.owner.get(r) {
                per_goal[*g] += zr.abs();
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
        let within = |achieved: f64, limit: f64, upper: bool| {
            let tol = MET_TOLERANCE * limit.abs().max(1e-9);
            if upper {
                achieved <= limit + tol
            } else {
                achieved >= limit - tol
            }
        };
        let (achieved, objective_value, met, cvar) = match g.kind {
            GoalKind::Underdose { dose_gy, weight } => {
                let v = d.mean_of(|x| (dose_gy - x).max(0.0).powi(2));
                (d.min(), Some(weight * v), None, None)
            }
            GoalKind::Overdose { dose_gy, weight } => {
                let v = d.mean_of(|x| (x - dose_gy).max(0.0).powi(2));
                (d.max(), Some(weight * v), None, None)
            }
            GoalKind::Deviation { dose_gy, weight } => {
                let v = d.mean_of(|x| (x - dose_gy).powi(2));
                (d.mean(), Some(weight * v), None, None)
            }
            GoalKind::MeanDose { weight } => {
                let m = d.mean();
                (m, Some(weight * m), None, None)
            }
            GoalKind::Eud { a, weight } => {
                let e = d.mean_of(|x| x.max(0.0).powf(a)).powf(1.0 / a);
                (e, Some(weight * e), None, None)
            }
            GoalKind::MaxPenalty { weight } => {
                let m = d.max();
                (m, Some(weight * m), None, None)
            }
            GoalKind::MaxDose { dose_gy, .. } => {
                let m = d.max();
                (m, None, Some(within(m, dose_gy, true)), None)
            }
            GoalKind::MinDose { dose_gy, .. } => {
                let m = d.min();
                (m, None, Some(within(m, dose_gy, false)), None)
            }
            GoalKind::MeanMax { dose_gy, .. } => {
                let m = d.mean();
                (m, None, Some(within(m, dose_gy, true)), None)
            }
            GoalKind::MeanMin { dose_gy, .. } => {
                let m = d.mean();
                (m, None, Some(within(m, dose_gy, false)), None)
            }
            GoalKind::DvhMax {
                dose_gy,
                volume_pct,
                ..
            } => {
                let dx = d.dose_at_volume(volume_pct);
                let cv = d.upper_cvar(volume_pct);
                (dx, None, Some(within(dx, dose_gy, true)), Some(cv))
            }
            GoalKind::DvhMin {
                dose_gy,
                volume_pct,
                ..
            } => {
                let dx = d.dose_at_volume(volume_pct);
                let cv = d.lower_cvar(100.0 - volume_pct);
                (dx, None, Some(within(dx, dose_gy, false)), Some(cv))
            }
        };
        GoalResult {
            structure: g.structure.clone(),
            description: g.kind.describe(),
            role,
            limit_gy: g.kind.dose_gy(),
            achieved_gy: achieved,
            cvar_gy: cvar,
            objective_value,
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
