//! The staged planner: case -> beams -> influence matrix ([`Planner::prepare`]) -> fluence
//! optimisation of any number of variants ([`PreparedPlan::optimise`]) -> leaf sequencing
//! ([`PreparedPlan::sequence`]) -> deliverable dose, acceptance and report
//! ([`PreparedPlan::finish`]) -> RTPLAN, RTDOSE and report files ([`PlannedCase::write`]).
//!
//! Each stage is usable alone and reuses everything prepared: a dosimetrist's variant (other
//! weights or limits) re-solves on the same matrix without recomputing it. Progress goes to
//! [`PlanObserver`]s, a [`CancelToken`] is checked between stages and inside the long loops,
//! and the thread count and memory budget are settings of the planner, not globals.
//!
//! ```no_run
//! use std::path::Path;
//! use rtopt::plan::{Planner, Variant};
//! let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default())?;
//! let protocol = rtopt::optimize::protocol::Protocol::load(Path::new("data/protocols/tg119.toml"))?;
//! let mut prepared = Planner::new(case, protocol).prepare()?;
//! let sparing = Variant::new("core sparing").weight("Core", "mean", 40.0);
//! let optimised = prepared.optimise(&sparing)?;
//! let sequenced = prepared.sequence(&optimised)?;
//! let plan = prepared.finish(&optimised, sequenced)?;
//! print!("{}", plan.report.goal_table());
//! plan.write(Path::new("out/tg119"), rtopt::outputs::Replace::Never)?;
//! # Ok::<(), rtopt::Error>(())
//! ```

mod acceptance;
pub mod dose_reference;
pub mod fidelity;
pub mod identity;
mod normalize;
mod observer;
mod planned;
pub mod recalculate;
pub mod segment_weights;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::beams::{self, Beam, BeamSetup};
use crate::case::Case;
use crate::control::CancelToken;
use crate::dose::{self, DoseGrid, DoseOptions, StructureRows};
use crate::error::{Error, Result};
use crate::gamma::{self, GammaOptions};
use crate::machine::MachineModel;
use crate::optimize::protocol::Protocol;
use crate::optimize::{OptimizationResult, OptimizeOptions, PlanningProblem};
use crate::outputs::Replace;
use crate::sequencing::{self, DeliveryMachine, SequencedPlan, SequencingOptions};

pub use acceptance::{
    PlanAcceptance, PlanFigures, DEFAULT_MAX_DOSE_PER_FRACTION_GY, DEFAULT_MIN_GAMMA_PASS_PERCENT,
};
pub use fidelity::DoseFidelity;
pub use identity::{PlanIdentity, ResolvedIdentity};
pub use normalize::Normalisation;
pub use observer::{EventLog, PlanEvent, PlanObserver, PlanStage, StageTime};
pub use planned::{InfluenceSummary, PlannedCase, DVH_BIN_GY};
pub use segment_weights::{SegmentWeightOptions, SegmentWeightSummary};

pub use crate::dose::scatter_correction;
use observer::StageRunner;

/// Influence-matrix options for optimisation: a 15 mm lateral cutoff and a 1 % threshold keep
/// the matrix sparse (about 7 M non-zeros on TG119 instead of 17 M) so the per-voxel rows of
/// the optimisation stay cheap; the dose they drop is partly restored by
/// [`scatter_correction`] and the final dose is computed without truncation.
pub fn optimisation_dose_options() -> DoseOptions {
    DoseOptions {
        lateral_cutoff_mm: 15.0,
        relative_threshold: 0.01,
        ..DoseOptions::default()
    }
}

/// Solver defaults of the pipeline: per-voxel goals on structures of more than 10,000 voxels
/// start from their constraint-generation candidates (exact at convergence, see
/// `docs/optimization.md`), smaller ones with all their rows, and a relative tolerance of
/// 1e-6, ample for doses reported to 0.01 Gy.
///
/// The row limit is the interior-point backend's: there a row costs only its share of the
/// weighted Gram (TG-119: 17,888 rows, about 0.1 s per Newton matrix), while rows that join
/// at the candidate checkpoint force a re-centred restart. With limit 0 the checkpoint had
/// added 9,578 rows (nearly all of the PTV's 6,038 voxels, for D95 and for D10) and TG-119
/// took 29 iterations; with every PTV and Core row from the start, 20 (2026-12-02).
pub fn optimisation_defaults() -> OptimizeOptions {
    OptimizeOptions {
        full_rows_limit: 10_000,
        tolerance: 1e-6,
        ..OptimizeOptions::default()
    }
}

/// Largest thread count [`Planner::with_threads`] accepts: far above any planning machine's
/// cores, low enough that a mistyped number cannot exhaust the process's threads.
pub const MAX_THREADS: usize = 1024;

/// Settings shared by every stage after `prepare`.
#[derive(Clone)]
struct Settings {
    protocol: Protocol,
    protocol_name: String,
    machine: MachineModel,
    optimize: OptimizeOptions,
    sequencing: SequencingOptions,
    gamma: GammaOptions,
    normalisation: Normalisation,
    acceptance: PlanAcceptance,
    fidelity: DoseFidelity,
    segment_weights: SegmentWeightOptions,
    input_files: Vec<PathBuf>,
    identity: PlanIdentity,
    beam_doses: bool,
}

/// A configured planning run. Build with [`Planner::new`], adjust with the `with_*` methods,
/// then [`Planner::prepare`] (staged) or [`Planner::run`] (the whole pipeline once).
pub struct Planner {
    case: Case,
    settings: Settings,
    beam_setup: Option<BeamSetup>,
    dose: DoseOptions,
    runner: StageRunner,
    threads: Option<usize>,
    memory_budget_bytes: u64,
}

impl Planner {
    /// A run of `protocol` on `case` with the default 6 MV machine and options.
    pub fn new(case: Case, protocol: Protocol) -> Self {
        let mut input_files: Vec<PathBuf> = case.ct.meta.files.clone();
        if let Some(ss) = &case.structure_set {
            input_files.push(ss.path.clone());
        }
        Planner {
            case,
            settings: Settings {
                protocol,
                protocol_name: "protocol".into(),
                machine: MachineModel::default_6x(),
                optimize: optimisation_defaults(),
                sequencing: SequencingOptions::default(),
                gamma: GammaOptions::default(),
                normalisation: Normalisation::default(),
                acceptance: PlanAcceptance::default(),
                fidelity: DoseFidelity::default(),
                segment_weights: SegmentWeightOptions::default(),
                input_files,
                identity: PlanIdentity::default(),
                beam_doses: false,
            },
            beam_setup: None,
            dose: optimisation_dose_options(),
            runner: StageRunner::default(),
            threads: None,
            memory_budget_bytes: crate::budget::default_memory_budget_bytes(),
        }
    }

    /// Name shown in the report (e.g. the protocol file's stem) and the file it came from.
    pub fn with_protocol_source(mut self, name: &str, file: Option<&Path>) -> Self {
        self.settings.protocol_name = name.to_string();
        if let Some(f) = file {
            self.settings.input_files.push(f.to_path_buf());
        }
        self
    }

    pub fn with_machine(mut self, machine: MachineModel) -> Self {
        self.settings.machine = machine;
        self
    }

    /// The CT scanner's calibration (HU to relative electron density) to use instead of the
    /// machine's (`MachineModel::ct_calibration`); its name is recorded in the report.
    pub fn with_ct_calibration(mut self, calibration: crate::calibration::CtCalibration) -> Self {
        self.settings.machine.ct_calibration = calibration;
        self
    }

    /// Override the beam arrangement (default: the protocol's `[beams]`, else 9 equispaced).
    pub fn with_beam_setup(mut self, setup: BeamSetup) -> Self {
        self.beam_setup = Some(setup);
        self
    }

    /// Options of the optimisation influence matrix (default [`optimisation_dose_options`]).
    pub fn with_dose_options(mut self, opts: DoseOptions) -> Self {
        self.dose = opts;
        self
    }

    pub fn with_optimize_options(mut self, opts: OptimizeOptions) -> Self {
        self.settings.optimize = opts;
        self
    }

    pub fn with_sequencing_options(mut self, opts: SequencingOptions) -> Self {
        self.settings.sequencing = opts;
        self
    }

    /// How the deliverable plan's MU are normalised (default: target D95 = prescription).
    pub fn with_normalisation(mut self, normalisation: Normalisation) -> Self {
        self.settings.normalisation = normalisation;
        self
    }

    /// The dose-fidelity loop after each solve ([`fidelity`]; default: at most 2 re-solves,
    /// 3 for a machine whose collimators transmit, until 99 % of the compared voxels agree
    /// within 1 % of the prescription).
    pub fn with_dose_fidelity(mut self, fidelity: DoseFidelity) -> Self {
        self.settings.fidelity = fidelity;
        self
    }

    /// Whether the segments' MU are re-optimised after sequencing ([`segment_weights`];
    /// default on).
    pub fn with_segment_weights(mut self, opts: SegmentWeightOptions) -> Self {
        self.settings.segment_weights = opts;
        self
    }

    /// `true`: the default normalisation (D95 = prescription); `false`: none.
    pub fn with_deliverable_normalization(self, on: bool) -> Self {
        self.with_normalisation(if on {
            Normalisation::default()
        } else {
            Normalisation::None
        })
    }

    /// Add an observer of stages and solver iterations.
    pub fn with_observer(mut self, observer: Arc<dyn PlanObserver>) -> Self {
        self.runner.observers.push(observer);
        self
    }

    /// A token the caller may cancel from another thread: checked between stages, before
    /// each beam of the dose calculations and at every solver iteration.
    pub fn with_cancel_token(mut self, cancel: CancelToken) -> Self {
        self.runner.cancel = cancel;
        self
    }

    /// Run every stage on a thread pool of its own with `threads` threads (default: rayon's
    /// global pool, one thread per core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Limits beyond which a finished plan is refused as implausible.
    pub fn with_acceptance(mut self, acceptance: PlanAcceptance) -> Self {
        self.settings.acceptance = acceptance;
        self
    }

    /// Label, name, description and creation time of the outputs (default: the protocol's
    /// `[plan]`, else a label from the case and the clock; [`PlanIdentity`]).
    pub fn with_plan_identity(mut self, identity: PlanIdentity) -> Self {
        self.settings.identity = identity;
        self
    }

    /// Also write one RT Dose per beam (`RTDOSE_beam<N>.dcm`, DoseSummationType BEAM), for
    /// per-field QA.
    pub fn with_beam_doses(mut self, on: bool) -> Self {
        self.settings.beam_doses = on;
        self
    }

    /// Memory budget, bytes, for the influence matrix and the optimiser's dense matrices
    /// (default: [`crate::budget::default_memory_budget_bytes`]).
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget_bytes = bytes;
        self
    }

    /// Every check that can fail before minutes of computation: the acceptance limits, the
    /// normalisation, the prescription per fraction, the thread count, and each structure the
    /// protocol names bound to exactly one ROI of the case.
    pub fn check_before_computation(&self) -> Result<()> {
        let s = &self.settings;
        s.acceptance.validate()?;
        s.normalisation.validate()?;
        s.fidelity.validate()?;
        s.identity.resolve(
            &s.protocol.plan,
            &planned::case_name(&self.case),
            crate::io::dicom::identity::CreationTime::now(),
        )?;
        match self.threads {
            Some(0) => {
                return Err(Error::Invalid("the thread count must be at least 1".into()));
            }
            Some(n) if n > MAX_THREADS => {
                return Err(Error::Invalid(format!(
                    "the thread count {n} is above the limit of {MAX_THREADS}"
                )));
            }
            _ => {}
        }
        let rx = &s.protocol.prescription;
        let per_fraction = rx.total_dose_gy / rx.fractions.max(1) as f64;
        if per_fraction > s.acceptance.max_dose_per_fraction_gy {
            return Err(Error::Implausible {
                reasons: vec![format!(
                    "the prescription is {per_fraction:.2} Gy per fraction ({} Gy in {}), above the limit of {} Gy per fraction (--max-dose-per-fraction-gy)",
                    rx.total_dose_gy, rx.fractions, s.acceptance.max_dose_per_fraction_gy
                )],
            });
        }
        self.case.check_names(&s.protocol.referenced_structures())?;
        Ok(())
    }

    /// Stage 1: checks, beams, the optimisation influence matrix and its scatter correction,
    /// and the optimisation problem with its cached beamlet-space data.
    pub fn prepare(self) -> Result<PreparedPlan> {
        self.check_before_computation()?;
        let pool = match self.threads {
            None => None,
            Some(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| Error::Invalid(format!("thread pool of {n} threads: {e}")))?,
            )),
        };
        let mut settings = self.settings.clone();
        if let Some(n) = self.threads {
            settings.optimize.threads = n as u32;
        }
        let work = move || prepare_in_pool(self, settings);
        match &pool {
            Some(p) => p.install(work),
            None => work(),
        }
        .map(|mut prepared| {
            prepared.pool = pool;
            prepared
        })
    }

    /// The whole pipeline once, for the protocol as given.
    pub fn run(self) -> Result<PlannedCase> {
        let mut prepared = self.prepare()?;
        let optimised = prepared.optimise(&Variant::default())?;
        let sequenced = prepared.sequence(&optimised)?;
        prepared.finish(&optimised, sequenced)
    }

    /// Export the optimisation problem this run would solve, with rtopt's solution of it
    /// (before normalisation), into the folder `out_dir` (`rtopt export-problem`; format in
    /// `docs/peer-benchmark.md`). Returns the solution.
    pub fn export_problem(
        mut self,
        out_dir: &Path,
        replace: Replace,
    ) -> Result<OptimizationResult> {
        crate::outputs::check_replaceable_dir(out_dir, replace)?;
        self.settings.optimize.normalize = None;
        let mut prepared = self.prepare()?;
        let optimised = prepared.optimise(&Variant::default())?;
        // The exported problem is the one the plan's last solve used (after the
        // dose-fidelity loop, if any). Its recorded solve time must be a cold solve of
        // that problem, as the peer's is: solve it once more without the previous zero set.
        let mut cold = prepared.settings.optimize.clone();
        cold.reuse_fixed_beamlets = false;
        let p = &prepared;
        let result = if optimised.fidelity.is_empty() {
            optimised.result
        } else {
            p.in_pool(|| p.problem.solve(&cold))?
        };
        let mut times = Vec::new();
        p.in_pool(|| {
            p.runner.run(PlanStage::Export, &mut times, || {
                crate::optimize::export::write_problem(
                    out_dir,
                    replace,
                    &p.settings.protocol_name,
                    &p.problem,
                    &p.structures,
                    p.dose_grid.grid.voxel_volume_cm3(),
                    Some((&result, &p.settings.optimize)),
                )?;
                Ok(((), out_dir.display().to_string()))
            })
        })?;
        Ok(result)
    }
}

/// Stage 1 inside the planner's pool; the case and the runner move into the prepared plan.
fn prepare_in_pool(planner: Planner, settings: Settings) -> Result<PreparedPlan> {
    let p = &settings.protocol;
    let case = &planner.case;
    let runner = &planner.runner;
    let mut times = Vec::new();
    let target = case.structure(&p.prescription.target)?;

    let setup = planner.beam_setup.clone().unwrap_or_else(|| p.beam_setup());
    let beams = runner.run(PlanStage::Beams, &mut times, || {
        let beams = beams::setup_beams(&target.mask, &setup, &settings.machine)?;
        let n: usize = beams.iter().map(|b| b.beamlets.len()).sum();
        let summary = format!("{} beams, {n} beamlets", beams.len());
        Ok((beams, summary))
    })?;
    let n_beamlets: usize = beams.iter().map(|b| b.beamlets.len()).sum();

    let dose_opts = &planner.dose;
    let calc = runner.run(PlanStage::InfluenceMatrix, &mut times, || {
        let body = case.try_body_mask()?;
        // Refuse up front a matrix that cannot fit (upper-bound estimate: every voxel within
        // the lateral cutoff along a beamlet's path through the body, no threshold).
        let sp = dose_opts.grid_spacing_mm;
        let n_vox_est = (body.count() as f64 * case.ct.grid.voxel_volume_cm3() * 1000.0
            / (sp[0] * sp[1] * sp[2]))
            .ceil();
        let side = setup.beamlet_size_mm + 2.0 * dose_opts.lateral_cutoff_mm;
        let per_beamlet = side * side / (sp[0] * sp[1]) * n_vox_est.cbrt();
        crate::budget::check_influence_budget(
            n_vox_est as usize,
            n_beamlets,
            per_beamlet,
            planner.memory_budget_bytes,
        )?;
        // The optimiser's dense beamlet-space matrices grow as beamlets squared: refuse them
        // now, before the influence matrix is built.
        let n_dense = p
            .structures
            .iter()
            .flat_map(|s| s.goals.iter())
            .filter(|g| g.kind.needs_dense_block())
            .count();
        crate::budget::check_dense_optimiser_budget(
            n_beamlets,
            n_dense,
            planner.memory_budget_bytes,
        )?;
        let calc = dose::engine_for(&settings.machine).influence_matrix(
            &case.ct,
            &body,
            &beams,
            &settings.machine,
            dose_opts,
            &runner.cancel,
        )?;
        let summary = format!(
            "{} voxels x {} beamlets, nnz {:.1} M, truncated mass {:.2} %",
            calc.matrix.n_rows(),
            calc.matrix.n_cols(),
            calc.matrix.nnz() as f64 / 1e6,
            100.0 * calc.truncated_mass_fraction
        );
        Ok((calc, summary))
    })?;
    let influence = InfluenceSummary {
        rows: calc.matrix.n_rows(),
        columns: calc.matrix.n_cols(),
        nnz: calc.matrix.nnz(),
        truncated_mass_fraction: calc.truncated_mass_fraction,
        build_seconds: calc.build_seconds,
    };
    let dose_grid = calc.dose_grid;
    let mut matrix = calc.matrix;

    // Scatter correction: rescale each row so the truncated matrix reproduces the
    // untruncated dose of open fields conforming to the target (see `scatter_correction`).
    // The truncated matrix is scaled in place: only one copy is ever held.
    runner.run(PlanStage::ScatterCorrection, &mut times, || {
        let reference = vec![1.0; matrix.n_cols()];
        let exact_ref = dose::engine_for(&settings.machine).dose_from_weights(
            &case.ct,
            &dose_grid,
            &beams,
            &settings.machine,
            &reference,
            &runner.cancel,
        )?;
        // The engine says how far a row may be lowered (its forward dose may lie below its
        // matrix, e.g. the heterogeneous engine's in lung).
        let floor = dose::engine_for(&settings.machine).min_correction_factor();
        let factors = dose::scatter_correction_bounded(&matrix.dose(&reference), &exact_ref, floor);
        let scaled = factors.iter().filter(|&&f| f != 1.0).count();
        matrix.scale_rows(&factors);
        Ok(((), format!("{scaled} rows rescaled")))
    })?;

    let structures = runner.run(PlanStage::StructureVolumes, &mut times, || {
        let structures = case
            .structures
            .iter()
            .map(|s| StructureRows::of(s, &dose_grid))
            .collect::<Result<Vec<StructureRows>>>()?;
        let partial: usize = structures.iter().map(|s| s.weighted.rows.len()).sum();
        let summary = format!(
            "{} structures, {partial} rows with partial volumes",
            structures.len()
        );
        Ok((structures, summary))
    })?;
    let base_values = matrix.values_snapshot();
    let problem = PlanningProblem::new_owned(matrix, &dose_grid, &beams, &structures, p)?;
    Ok(PreparedPlan {
        base_values,
        row_factors: None,
        case: planner.case,
        settings,
        runner: planner.runner,
        pool: None,
        beams,
        dose_grid,
        influence,
        structures,
        problem,
        times,
    })
}

/// One change of a [`Variant`]: a goal (found by structure and a text its description
/// contains, e.g. `("Core", "mean")`) gets a new weight or a new dose.
#[derive(Debug, Clone, PartialEq)]
pub enum GoalChange {
    /// New weight of an objective (dimensionless, >= 0).
    Weight {
        structure: String,
        goal: String,
        weight: f64,
    },
    /// New reference or limit dose of a goal, Gy total over the course.
    DoseGy {
        structure: String,
        goal: String,
        dose_gy: f64,
    },
}

/// A plan variant: the prepared protocol with some goals' weights or doses changed. The
/// default variant is the protocol as prepared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Variant {
    /// Shown in the report's notes ("" for the prepared protocol).
    pub name: String,
    pub changes: Vec<GoalChange>,
}

impl Variant {
    pub fn new(name: &str) -> Self {
        Variant {
            name: name.to_string(),
            changes: Vec::new(),
        }
    }
    /// Set the weight of the first goal of `structure` whose description contains `goal`.
    pub fn weight(mut self, structure: &str, goal: &str, weight: f64) -> Self {
        self.changes.push(GoalChange::Weight {
            structure: structure.into(),
            goal: goal.into(),
            weight,
        });
        self
    }
    /// Set the dose (Gy, total) of the first goal of `structure` whose description contains
    /// `goal`.
    pub fn dose_gy(mut self, structure: &str, goal: &str, dose_gy: f64) -> Self {
        self.changes.push(GoalChange::DoseGy {
            structure: structure.into(),
            goal: goal.into(),
            dose_gy,
        });
        self
    }

    /// The protocol of this variant: `base` with the changes applied. Errors name the goal
    /// that matches no goal of the structure, or a value that is not a finite number >= 0.
    pub fn apply(&self, base: &Protocol) -> Result<Protocol> {
        let mut p = base.clone();
        for c in &self.changes {
            let (structure, text) = match c {
                GoalChange::Weight {
                    structure, goal, ..
                }
                | GoalChange::DoseGy {
                    structure, goal, ..
                } => (structure, goal),
            };
            let listing = || {
                base.structures
                    .iter()
                    .filter(|s| &s.name == structure)
                    .flat_map(|s| s.goals.iter().map(|g| g.kind.describe()))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let goal = p
                .structures
                .iter_mut()
                .filter(|s| &s.name == structure)
                .flat_map(|s| s.goals.iter_mut())
                .find(|g| g.kind.describe().contains(text.as_str()))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "variant '{}': no goal of '{structure}' matches '{text}'; its goals: {}",
                        self.name,
                        listing()
                    ))
                })?;
            let desc = goal.kind.describe();
            match c {
                GoalChange::Weight { weight, .. } => {
                    if !(weight.is_finite() && *weight >= 0.0) {
                        return Err(Error::Invalid(format!(
                            "variant '{}': weight {weight} of '{structure} {desc}' must be a finite number >= 0",
                            self.name
                        )));
                    }
                    *goal.kind.weight_mut().ok_or_else(|| {
                        Error::Invalid(format!(
                            "variant '{}': '{structure} {desc}' is a constraint and has no weight",
                            self.name
                        ))
                    })? = *weight;
                }
                GoalChange::DoseGy { dose_gy, .. } => {
                    if !(dose_gy.is_finite() && *dose_gy >= 0.0) {
                        return Err(Error::Invalid(format!(
                            "variant '{}': dose {dose_gy} Gy of '{structure} {desc}' must be a finite number >= 0",
                            self.name
                        )));
                    }
                    *goal.kind.dose_gy_mut().ok_or_else(|| {
                        Error::Invalid(format!(
                            "variant '{}': '{structure} {desc}' has no dose",
                            self.name
                        ))
                    })? = *dose_gy;
                }
            }
        }
        p.validate(Path::new(&format!("variant '{}'", self.name)))?;
        Ok(p)
    }
}

/// Everything prepared once per case: beams, the optimisation matrix (inside the problem),
/// the dose grid and the structures' voxel rows. Solve any number of variants on it.
pub struct PreparedPlan {
    case: Case,
    settings: Settings,
    runner: StageRunner,
    pool: Option<Arc<rayon::ThreadPool>>,
    beams: Vec<Beam>,
    dose_grid: DoseGrid,
    influence: InfluenceSummary,
    structures: Vec<StructureRows>,
    problem: PlanningProblem<'static>,
    /// Entries of the scatter-corrected matrix, which every variant starts from.
    base_values: dose::MatrixValues,
    /// Row factors of the dose-fidelity loop now applied to the problem's matrix (relative to
    /// `base_values`); `None`: the matrix holds `base_values`.
    row_factors: Option<Vec<f64>>,
    times: Vec<StageTime>,
}

/// Beamlet weights as the sequenced plan delivers them (MU per fraction) and their
/// untruncated dose (Gy total): what the dose-fidelity loop reproduces.
type Delivered = (Vec<f64>, Vec<f64>);

/// The result of [`PreparedPlan::optimise`]: the variant, its protocol and the solution.
#[derive(Debug, Clone)]
pub struct OptimisedPlan {
    pub variant: Variant,
    /// The prepared protocol with the variant's changes applied.
    pub protocol: Protocol,
    /// Beamlet weights (MU per fraction), the optimiser's dose, goals and solver figures.
    pub result: OptimizationResult,
    /// Untruncated dose of `delivered_weights_mu` (Gy total, dose-grid rows) when the
    /// dose-fidelity loop computed it.
    pub exact_dose_gy: Option<Vec<f64>>,
    /// The beamlet weights whose untruncated dose is `exact_dose_gy`: `result.weights_mu`
    /// plus what the collimators of their sequenced segments transmit
    /// ([`PreparedPlan::delivered_weights`]; equal to `result.weights_mu` for a machine
    /// without transmission).
    pub delivered_weights_mu: Option<Vec<f64>>,
    /// Each evaluation of the dose-fidelity loop (empty when it is off).
    pub fidelity: Vec<fidelity::FidelityStep>,
    /// Wall-clock time of the optimisation stages (solves and fidelity loop), s.
    pub seconds: f64,
}

/// The result of [`PreparedPlan::sequence`]: MLC segments before normalisation and the
/// beamlet weights they deliver.
#[derive(Debug, Clone)]
pub struct SequencedStage {
    pub sequenced: SequencedPlan,
    /// Beamlet weights the segments deliver (MU per fraction).
    pub deliverable_weights_mu: Vec<f64>,
    /// The segment-weight optimisation, when it ran.
    pub segment_weights: Option<SegmentWeightSummary>,
    /// Its model's dose of the final segment MU, Gy total per dose-grid row.
    pub segment_model_dose_gy: Option<Vec<f64>>,
    /// Wall-clock time of sequencing and of the segment-weight optimisation, s.
    pub seconds: f64,
    pub segment_weight_seconds: f64,
}

impl PreparedPlan {
    /// The beams (IEC 61217 angles, beamlet grids).
    pub fn beams(&self) -> &[Beam] {
        &self.beams
    }
    /// The dose grid of the influence matrix and of RTDOSE.
    pub fn dose_grid(&self) -> &DoseGrid {
        &self.dose_grid
    }
    /// Size and truncation of the optimisation influence matrix.
    pub fn influence(&self) -> &InfluenceSummary {
        &self.influence
    }
    /// The scatter-corrected optimisation matrix (Gy per MU, one fraction).
    pub fn matrix(&self) -> &dose::InfluenceMatrix {
        self.problem.matrix()
    }
    /// The optimisation problem (goal ids, evaluation, export).
    pub fn problem(&self) -> &PlanningProblem<'static> {
        &self.problem
    }
    /// Each structure's rows of the dose grid (matrix rows), whole and partial-volume, as the
    /// optimiser uses them.
    pub fn structure_rows(&self) -> &[StructureRows] {
        &self.structures
    }
    /// The case.
    pub fn case(&self) -> &Case {
        &self.case
    }
    /// Wall-clock times of the prepare stages.
    pub fn prepare_times(&self) -> &[StageTime] {
        &self.times
    }
    /// The number of fractions of the prescription (the optimisation matrix gives the dose
    /// of one fraction).
    pub fn fractions(&self) -> u32 {
        self.settings.protocol.prescription.fractions
    }
    /// Replace the cancellation token of the later stages. A cancelled token stays
    /// cancelled, so a caller that stopped one stage (e.g. Ctrl-C in the Python package) and
    /// goes on with another variant hands in a fresh token first.
    pub fn set_cancel_token(&mut self, cancel: CancelToken) {
        self.runner.cancel = cancel;
    }

    fn in_pool<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Stage 2: optimise the fluence of `variant` on the prepared matrix (no dose
    /// recalculation). Repeatable; cached beamlet-space data are reused.
    ///
    /// Every variant starts from the scatter-corrected matrix of `prepare` and without the
    /// previous solves' hints, so its result does not depend on the variants solved before it
    /// (bit for bit); the dose-fidelity loop
    /// ([`fidelity`]) then rescales the matrix's rows and solves again.
    pub fn optimise(&mut self, variant: &Variant) -> Result<OptimisedPlan> {
        let protocol = variant.apply(&self.settings.protocol)?;
        self.problem.set_goals_from(&protocol)?;
        self.problem.clear_hints();
        if self.row_factors.take().is_some() {
            let ones = vec![1.0; self.problem.matrix().n_rows()];
            self.problem.set_row_scale(&self.base_values, &ones)?;
        }
        let mut opts = self.settings.optimize.clone();
        opts.observers.push(self.runner.solver_observer());
        let correcting = self.settings.fidelity.max_corrections > 0;
        let mut first_opts = opts.clone();
        if correcting {
            first_opts.tolerance = opts
                .tolerance
                .max(self.settings.fidelity.intermediate_tolerance);
        }
        let mut times = Vec::new();
        let this = &*self;
        let result = this.in_pool(|| {
            this.runner.run(PlanStage::Optimisation, &mut times, || {
                let r = this.problem.solve(&first_opts)?;
                let summary = if correcting {
                    format!(
                        "{} iterations ({} rounds) to gap {:.0e}, objective {:.6}; the dose-fidelity loop refines it",
                        r.iterations, r.rounds, first_opts.tolerance, r.objective
                    )
                } else {
                    format!(
                        "{} after {} iterations ({} rounds), objective {:.6}",
                        r.status, r.iterations, r.rounds, r.objective
                    )
                };
                Ok((r, summary))
            })
        })?;
        let (result, exact, steps) = if correcting {
            let pool = self.pool.clone();
            let rx = protocol.prescription.total_dose_gy;
            let work = || self.fidelity_loop(&opts, result, rx, &mut times);
            let (r, e, st) = match &pool {
                Some(p) => p.install(work),
                None => work(),
            }?;
            (r, Some(e), st)
        } else {
            (result, None, Vec::new())
        };
        let (delivered_weights_mu, exact_dose_gy) = exact.unzip();
        Ok(OptimisedPlan {
            variant: variant.clone(),
            protocol,
            result,
            exact_dose_gy,
            delivered_weights_mu,
            fidelity: steps,
            seconds: times.iter().map(|t| t.seconds).sum(),
        })
    }

    /// The dose-fidelity loop ([`fidelity`]): untruncated dose of the weights as the sequenced
    /// plan delivers them (with the collimators' transmission, [`Self::delivered_weights`]),
    /// rescale the rows, solve again, until the agreement holds or the re-solves are spent.
    /// Returns the last solution, its delivered weights and their untruncated dose, and every
    /// evaluation.
    fn fidelity_loop(
        &mut self,
        opts: &OptimizeOptions,
        first: OptimizationResult,
        rx_gy: f64,
        times: &mut Vec<StageTime>,
    ) -> Result<(OptimizationResult, Delivered, Vec<fidelity::FidelityStep>)> {
        let settings = self.settings.fidelity.clone();
        let machine = &self.settings.machine;
        let max_corrections = settings.max_corrections
            + if sequencing::Transmission::of(&machine.mlc, &machine.jaws).is_none() {
                0
            } else {
                settings.leakage_corrections
            };
        let mut final_opts = opts.clone();
        final_opts.reuse_fixed_beamlets = true;
        if self.settings.segment_weights.enabled {
            // The segment problem is the final optimisation: the beamlet solution only has
            // to be sequenced, so its last re-solve stops at the intermediate gap too.
            final_opts.tolerance = opts.tolerance.max(settings.intermediate_tolerance);
        }
        let mut loose_opts = final_opts.clone();
        loose_opts.tolerance = opts.tolerance.max(settings.intermediate_tolerance);
        let runner = self.runner.clone();
        runner.run(PlanStage::DoseFidelity, times, || {
            let mut result = first;
            let mut steps = Vec::new();
            let mut factors = vec![1.0; self.problem.matrix().n_rows()];
            let mut last = false;
            let exact = loop {
                self.runner.cancel.check(PlanStage::DoseFidelity.name())?;
                let delivered = self.delivered_weights(&result.weights_mu)?;
                let exact = self.forward_dose_gy(&delivered)?;
                let fid = crate::report::ModelFidelity::compute(
                    &result.dose_gy,
                    &exact,
                    rx_gy,
                    planned::FIDELITY_THRESHOLD_PERCENT_RX,
                );
                steps.push(fidelity::FidelityStep {
                    p99_percent_rx: fid.p99_percent_rx,
                    max_percent_rx: fid.max_percent_rx,
                    objective: result.objective,
                    iterations: result.iterations,
                });
                if last {
                    break (delivered, exact);
                }
                last = fid.p99_percent_rx <= settings.tolerance_percent_rx
                    || steps.len() >= max_corrections;
                // The base matrix's dose of these weights: the optimiser's dose over the
                // factors now applied.
                let base: Vec<f64> = result
                    .dose_gy
                    .iter()
                    .zip(&factors)
                    .map(|(d, f)| d / f)
                    .collect();
                factors = fidelity::ratio_factors(&base, &exact, &factors);
                self.problem.set_row_scale(&self.base_values, &factors)?;
                self.row_factors = Some(factors.clone());
                result = self
                    .problem
                    .solve(if last { &final_opts } else { &loose_opts })?;
            };
            let summary = format!(
                "{} after {} re-solves, objective {:.6}; 99 % of voxels within {} % of Rx",
                result.status,
                steps.len() - 1,
                result.objective,
                steps
                    .iter()
                    .map(|s| format!("{:.2}", s.p99_percent_rx))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            );
            Ok(((result, exact, steps), summary))
        })
    }

    /// Stage 3: leaf sequencing of an optimised fluence, then (unless switched off) the
    /// segment-weight optimisation ([`segment_weights`]).
    pub fn sequence(&self, optimised: &OptimisedPlan) -> Result<SequencedStage> {
        let mut times = Vec::new();
        let machine = DeliveryMachine::from(&self.settings.machine);
        let sequenced = self.in_pool(|| {
            self.runner.run(PlanStage::Sequencing, &mut times, || {
                let sequenced = sequencing::sequence_plan(
                    &self.beams,
                    &optimised.result.weights_mu,
                    &machine,
                    &self.settings.sequencing,
                )?;
                let n: usize = sequenced.beams.iter().map(|b| b.segments.len()).sum();
                let summary = format!(
                    "{n} segments, {:.0} MU per fraction before normalisation",
                    sequenced.total_mu()
                );
                Ok((sequenced, summary))
            })
        })?;
        let (sequenced, segment_weights) = if self.settings.segment_weights.enabled {
            let min_mu = self
                .settings
                .sequencing
                .min_segment_mu
                .unwrap_or(machine.min_segment_mu);
            // The segment solve reports its iterations and stops on the cancel token, as the
            // beamlet solve does.
            let mut options = self.settings.optimize.clone();
            options.observers.push(self.runner.solver_observer());
            let inputs = segment_weights::SegmentProblemInputs {
                beams: &self.beams,
                matrix: self.problem.matrix(),
                dose_grid: &self.dose_grid,
                structures: &self.structures,
                protocol: &optimised.protocol,
                options: &options,
                optimised_weights_mu: optimised
                    .delivered_weights_mu
                    .as_deref()
                    .unwrap_or(&optimised.result.weights_mu),
                exact_dose_gy: optimised.exact_dose_gy.as_deref(),
                min_segment_mu: min_mu,
                cancel: &self.runner.cancel,
            };
            let plan = self.in_pool(|| {
                self.runner.run(PlanStage::SegmentWeights, &mut times, || {
                    let out = segment_weights::optimise_segment_weights(&inputs, &sequenced)?;
                    let sw = &out.summary;
                    let line = match &sw.kept_because {
                        Some(why) => why.clone(),
                        None => format!(
                            "{} -> {} segments, {:.0} -> {:.0} MU, goal objective {:.4} -> {:.4} ({} iterations)",
                            sw.segments_in,
                            sw.segments_out,
                            sw.mu_sequenced,
                            sw.mu_optimised,
                            sw.goal_objective_sequenced,
                            sw.goal_objective_optimised,
                            sw.iterations
                        ),
                    };
                    Ok((out, line))
                })
            })?;
            (plan.plan, Some((plan.summary, plan.model_dose_gy)))
        } else {
            (sequenced, None)
        };
        let (segment_weights, segment_model_dose_gy) = match segment_weights {
            Some((s, d)) => (Some(s), d),
            None => (None, None),
        };
        let deliverable_weights_mu = sequencing::deliverable_weights(
            &self.beams,
            &sequenced.beams,
            self.problem.n_beamlets(),
        )?;
        Ok(SequencedStage {
            sequenced,
            deliverable_weights_mu,
            segment_weights,
            segment_model_dose_gy,
            seconds: times
                .iter()
                .filter(|t| t.stage == PlanStage::Sequencing)
                .map(|t| t.seconds)
                .sum(),
            segment_weight_seconds: times
                .iter()
                .filter(|t| t.stage == PlanStage::SegmentWeights)
                .map(|t| t.seconds)
                .sum(),
        })
    }

    /// Stage 4: the untruncated deliverable dose, the MU normalisation, the gamma agreement
    /// with the optimised dose, the acceptance check ([`Error::Implausible`] when refused) and
    /// the report. The result is ready to [`PlannedCase::write`].
    pub fn finish(
        &mut self,
        optimised: &OptimisedPlan,
        sequenced: SequencedStage,
    ) -> Result<PlannedCase> {
        self.problem.set_goals_from(&optimised.protocol)?;
        let mut times = self.times.clone();
        times.push(StageTime {
            stage: PlanStage::Optimisation,
            seconds: optimised.seconds,
        });
        times.push(StageTime {
            stage: PlanStage::Sequencing,
            seconds: sequenced.seconds,
        });
        if sequenced.segment_weights.is_some() {
            times.push(StageTime {
                stage: PlanStage::SegmentWeights,
                seconds: sequenced.segment_weight_seconds,
            });
        }
        let this = &*self;
        this.in_pool(|| planned::finish(this, optimised, sequenced, times))
    }
}

/// Helpers of `planned::finish` (and of the dose-fidelity loop).
impl PreparedPlan {
    /// The beamlet weights the optimised `weights_mu` deliver once sequenced, leakage
    /// included: the weights plus what the collimators of their segments (the plan's own
    /// sequencer and settings) transmit where they are closed
    /// ([`sequencing::leakage_weights`]). The fluence's own stratification is not carried
    /// over: the optimiser answers for the open fluence, the sequencer for its levels. For a
    /// machine without transmission the weights themselves, with no sequencing.
    pub fn delivered_weights(&self, weights_mu: &[f64]) -> Result<Vec<f64>> {
        let machine = DeliveryMachine::from(&self.settings.machine);
        if sequencing::Transmission::of(&machine.mlc, &machine.jaws).is_none() {
            return Ok(weights_mu.to_vec());
        }
        let seq = sequencing::sequence_plan(
            &self.beams,
            weights_mu,
            &machine,
            &self.settings.sequencing,
        )?;
        let leak = sequencing::leakage_weights(&self.beams, &seq.beams, weights_mu.len())?;
        Ok(weights_mu.iter().zip(&leak).map(|(w, l)| w + l).collect())
    }

    fn forward_dose_gy(&self, weights_mu: &[f64]) -> Result<Vec<f64>> {
        let f = self.fractions() as f64;
        Ok(dose::engine_for(&self.settings.machine)
            .dose_from_weights(
                &self.case.ct,
                &self.dose_grid,
                &self.beams,
                &self.settings.machine,
                weights_mu,
                &self.runner.cancel,
            )?
            .into_iter()
            .map(|d| d * f)
            .collect())
    }

    fn gamma_options(&self) -> &GammaOptions {
        &self.settings.gamma
    }
}

/// Re-exported so callers of the gamma stage need not import [`crate::gamma`].
pub use gamma::GammaResult;
