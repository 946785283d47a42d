//! Export of the exact optimisation problem rtopt solves, for peers that state it in another
//! modelling language (CVXPY, `benches/peer/`). Layout and maths: `docs/peer-benchmark.md`.
//!
//! Files written (atomically, as one folder):
//! * `influence.npz`: the influence matrix as `scipy.sparse.load_npz` reads it (CSR,
//!   `float32`, Gy per MU for one fraction; rows = dose-grid voxels, columns = beamlets), with
//!   the pipeline's scatter correction already applied;
//! * `problem.npz`: `goal_<k>_rows` (int32 voxel rows of goal `k`, exclusions removed),
//!   `goal_<k>_weights` (float64, the weight of each row in the goal's sums: the occupied
//!   fraction of the voxel for volume-averaged goals, else 1),
//!   `structure_<k>_rows`, `fluence_pairs` (int32, n x 2: neighbouring beamlets of one beam),
//!   and, when a solution is given, `x_rtopt` (MU per fraction) and `dose_rtopt_gy` (total);
//! * `problem.json`: sizes, fractions, goals with their parameters and roles, fluence terms,
//!   the objective's definition and rtopt's solution summary.

use std::path::Path;

use serde::Serialize;

use super::{GoalKind, GoalRole, Mode, OptimizationResult, OptimizeOptions, PlanningProblem};
use crate::error::{Error, Result};
use crate::io::npz::{write_npz, NpyArray};

/// Format name and version in `problem.json`.
pub const FORMAT: &str = "rtopt-problem";
/// Version 2: goals carry voxel weights (`goal_<k>_weights`). Version 3: goals carry their
/// formulation (`terms`, [`super::Terms`]) and their type name; `goal` is absent for a goal
/// type defined outside the library.
pub const FORMAT_VERSION: u32 = 3;

#[derive(Serialize)]
struct StructureEntry {
    name: String,
    interpreted_type: String,
    rows_key: String,
    n_voxels: usize,
}

#[derive(Serialize)]
struct GoalEntry {
    index: usize,
    structure: String,
    description: String,
    /// `objective` (weighted term), `constraint` (hard) or `report` (not in the problem).
    role: GoalRole,
    /// Whether the goal is part of the optimisation problem (hard constraints and objectives
    /// with a positive weight).
    in_problem: bool,
    /// The protocol's type name of the goal (`dvh_min`).
    #[serde(rename = "type")]
    type_name: &'static str,
    /// The protocol's parameters (`None` for a goal type defined outside the library).
    goal: Option<GoalKind>,
    /// The goal's formulation in the backends' vocabulary ([`super::Terms`]).
    terms: super::Terms,
    rows_key: String,
    weights_key: String,
    n_voxels: usize,
    /// Sum of the row weights: the `N` of the goal's normalised terms.
    total_weight: f64,
}

#[derive(Serialize)]
struct FluenceEntry {
    smoothness_weight: f64,
    total_mu_weight: f64,
    max_beamlet_mu: Option<f64>,
    pairs_key: &'static str,
    n_pairs: usize,
}

#[derive(Serialize)]
struct SolutionEntry {
    status: String,
    objective: f64,
    iterations: u32,
    rounds: usize,
    solve_seconds: f64,
    n_variables: usize,
    n_constraint_rows: usize,
    tolerance: f64,
    x_key: &'static str,
    dose_key: &'static str,
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    format: &'static str,
    version: u32,
    case: &'a str,
    units: [&'static str; 3],
    n_voxels: usize,
    n_beamlets: usize,
    nnz: usize,
    fractions: f64,
    prescription_gy: f64,
    voxel_volume_cm3: f64,
    objective_definition: &'static str,
    structures: Vec<StructureEntry>,
    goals: Vec<GoalEntry>,
    fluence: FluenceEntry,
    rtopt: Option<SolutionEntry>,
}

const OBJECTIVE_DEFINITION: &str = "d = fractions * (A @ x) (total Gy), x >= 0 (MU per fraction). \
Goal g has rows R_g with weights w_v (goal_<k>_weights), N = sum w_v, mean(f) = 1/N sum w_v f(d_v). \
minimise the sum over objective goals of: deviation w*mean((d-D)^2); \
overdose w*mean(max(d-D,0)^2); underdose w*mean(max(D-d,0)^2); mean_dose w*mean(d); \
eud w*(mean(d^a))^(1/a); max_penalty w*max(d); plus smoothness_weight/n_pairs * sum over \
fluence_pairs (x_i-x_j)^2 and total_mu_weight * sum x. Hard constraints: max_dose d<=D, \
min_dose d>=D, mean_max mean(d)<=D, mean_min mean(d)>=D, dvh_max CVaR upper \
min_t t + 1/(pN) sum w_v max(d_v-t,0) <= D with p = volume_pct/100, dvh_min CVaR lower \
max_t t - 1/(pN) sum w_v max(t-d_v,0) >= D with p = 1 - volume_pct/100; \
x <= max_beamlet_mu when set. Each goal's terms state the same in the solvers' vocabulary \
(src/optimize/goals/terms.rs).";

/// Write the problem (and, when given, rtopt's solution of it) into the folder `out_dir`
/// (an existing folder only as `replace` allows, see [`crate::outputs`]).
/// `structures` are the rows as given to [`PlanningProblem::new`].
pub fn write_problem(
    out_dir: &Path,
    replace: crate::outputs::Replace,
    case: &str,
    problem: &PlanningProblem,
    structures: &[crate::dose::StructureRows],
    voxel_volume_cm3: f64,
    solution: Option<(&OptimizationResult, &OptimizeOptions)>,
) -> Result<()> {
    let a = problem.matrix();
    // CSR arrays of the matrix.
    let mut indptr = Vec::with_capacity(a.n_rows() + 1);
    let mut indices = Vec::with_capacity(a.nnz());
    let mut data = Vec::with_capacity(a.nnz());
    indptr.push(0i64);
    for r in 0..a.n_rows() {
        let (c, v) = a.row(r);
        indices.extend_from_slice(c);
        data.extend_from_slice(v);
        indptr.push(indices.len() as i64);
    }
    let influence = vec![
        ("indices".to_string(), NpyArray::indices(&indices)?),
        ("indptr".to_string(), NpyArray::i64(&indptr)),
        ("format".to_string(), NpyArray::str_scalar("csr")),
        (
            "shape".to_string(),
            NpyArray::i64(&[a.n_rows() as i64, a.n_cols() as i64]),
        ),
        ("data".to_string(), NpyArray::f32(&data)),
    ];
    drop((indices, data));

    let mut arrays = Vec::new();
    let mut s_entries = Vec::new();
    for (k, st) in structures.iter().enumerate() {
        let (name, ty, rows) = (&st.name, &st.roi_type, &st.rows);
        let key = format!("structure_{k}_rows");
        let mut rows = rows.clone();
        rows.sort_unstable();
        arrays.push((key.clone(), NpyArray::indices(&rows)?));
        s_entries.push(StructureEntry {
            name: name.clone(),
            interpreted_type: ty.to_string(),
            rows_key: key,
            n_voxels: rows.len(),
        });
    }
    let mut g_entries = Vec::new();
    for (k, g) in problem.goals.iter().enumerate() {
        let key = format!("goal_{k}_rows");
        arrays.push((key.clone(), NpyArray::indices(&g.rows)?));
        let wkey = format!("goal_{k}_weights");
        let w: Vec<f64> = g.wts.iter().map(|&w| w as f64).collect();
        arrays.push((wkey.clone(), NpyArray::f64(&w)));
        let role = if g.kind.is_objective() {
            GoalRole::Objective
        } else if g.kind.mode() == Mode::Hard {
            GoalRole::Constraint
        } else {
            GoalRole::Report
        };
        g_entries.push(GoalEntry {
            index: k,
            structure: g.structure.clone(),
            description: g.kind.describe(),
            role,
            in_problem: PlanningProblem::is_active(g, false),
            type_name: g.kind.term().type_name(),
            goal: (!matches!(g.kind, GoalKind::Custom(_))).then(|| g.kind.clone()),
            terms: g.terms(problem.rx_gy),
            rows_key: key,
            weights_key: wkey,
            n_voxels: g.rows.len(),
            total_weight: g.total_w,
        });
    }
    let pairs: Vec<u32> = problem
        .pairs
        .iter()
        .flat_map(|&(i, j)| [i as u32, j as u32])
        .collect();
    arrays.push((
        "fluence_pairs".to_string(),
        NpyArray::indices(&pairs)?.reshaped(&[problem.pairs.len(), 2])?,
    ));
    let rtopt = solution.map(|(res, opts)| {
        arrays.push(("x_rtopt".to_string(), NpyArray::f64(&res.weights_mu)));
        arrays.push(("dose_rtopt_gy".to_string(), NpyArray::f64(&res.dose_gy)));
        SolutionEntry {
            status: res.status.clone(),
            objective: res.objective,
            iterations: res.iterations,
            rounds: res.rounds,
            solve_seconds: res.solve_seconds,
            n_variables: res.n_variables,
            n_constraint_rows: res.n_constraint_rows,
            tolerance: opts.tolerance,
            x_key: "x_rtopt",
            dose_key: "dose_rtopt_gy",
        }
    });
    if let Some((res, _)) = solution {
        if res.normalization_factor != 1.0 {
            return Err(Error::Invalid(
                "export the solution before normalisation (normalize = None)".into(),
            ));
        }
    }
    let json = ProblemJson {
        format: FORMAT,
        version: FORMAT_VERSION,
        case,
        units: [
            "influence: Gy per MU per fraction",
            "x: MU per fraction",
            "doses and limits: Gy total over the course",
        ],
        n_voxels: a.n_rows(),
        n_beamlets: a.n_cols(),
        nnz: a.nnz(),
        fractions: problem.fractions,
        prescription_gy: problem.rx_gy,
        voxel_volume_cm3,
        objective_definition: OBJECTIVE_DEFINITION,
        structures: s_entries,
        goals: g_entries,
        fluence: FluenceEntry {
            smoothness_weight: problem.fluence.smoothness_weight,
            total_mu_weight: problem.fluence.total_mu_weight,
            max_beamlet_mu: problem.fluence.max_beamlet_mu,
            pairs_key: "fluence_pairs",
            n_pairs: problem.pairs.len(),
        },
        rtopt,
    };
    let text = serde_json::to_string_pretty(&json)
        .map_err(|e| Error::Invalid(format!("problem.json: {e}")))?;
    crate::io::atomic::write_dir(out_dir, replace, |dir| {
        write_npz(&dir.join("influence.npz"), &influence)?;
        write_npz(&dir.join("problem.npz"), &arrays)?;
        crate::io::atomic::write_file(&dir.join("problem.json"), text.as_bytes())
    })
}
