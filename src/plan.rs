//! The planning pipeline behind `rtopt plan`: case -> beams -> influence matrix ->
//! optimisation -> sequencing -> deliverable dose -> RTPLAN, RTDOSE and report.
//!
//! ```no_run
//! use std::path::Path;
//! let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default())?;
//! let protocol = rtopt::optimize::protocol::Protocol::load(Path::new("data/protocols/tg119.toml"))?;
//! let plan = rtopt::plan::Planner::new(case, protocol).run()?;
//! print!("{}", plan.report.goal_table());
//! plan.write(Path::new("out/tg119"), rtopt::outputs::Replace::Never)?;
//! # Ok::<(), rtopt::Error>(())
//! ```

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::beams::{self, Beam, BeamSetup};
use crate::case::Case;
use crate::dose::{self, DoseCalculation, DoseOptions};
use crate::error::{Error, Result};
use crate::export::rtdose::{self, DoseExport};
use crate::export::rtplan::{self, PlanExport, TargetPrescription};
use crate::gamma::{self, GammaOptions, GammaResult};
use crate::machine::MachineModel;
use crate::optimize::protocol::Protocol;
use crate::optimize::{OptimizationResult, OptimizeOptions, PlanningProblem};
use crate::outputs::Replace;
use crate::progress::{Progress, ProgressMode};
use crate::report::{
    self, BeamRow, DvhCurve, GoalRow, PlanQuality, ProtocolMetric, Report, StageTiming,
    StructureMetrics,
};
use crate::sequencing::{self, DeliveryMachine, SequencedPlan, SequencingOptions};

/// DVH sampling step of the report, Gy.
pub const DVH_BIN_GY: f64 = 0.1;

/// Influence-matrix options for optimisation: a 15 mm lateral cutoff and a 1 % threshold keep
/// the matrix sparse (about 7 M non-zeros on TG119 instead of 17 M) so the per-voxel rows of
/// the conic problem stay cheap; the dose they drop is restored by [`scatter_correction`] and
/// the final dose is computed without truncation.
pub fn optimisation_dose_options() -> DoseOptions {
    DoseOptions {
        lateral_cutoff_mm: 15.0,
        relative_threshold: 0.01,
        ..DoseOptions::default()
    }
}

/// Solver defaults of the pipeline: every per-voxel goal starts from its constraint-generation
/// candidates (exact at convergence, see `docs/optimization.md`) and a relative tolerance of
/// 1e-6, ample for doses reported to 0.01 Gy.
pub fn optimisation_defaults() -> OptimizeOptions {
    OptimizeOptions {
        full_rows_limit: 0,
        tolerance: 1e-6,
        ..OptimizeOptions::default()
    }
}

/// When a finished plan is refused as implausible ([`Error::Implausible`], exit 4), so no
/// clinic-implausible plan is exported as a success. Limits and their sources are in
/// `docs/reliability.md`; every one can be overridden (`rtopt plan --max-mu-per-beam`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanAcceptance {
    /// Largest meterset of one beam per fraction, MU (default: the machine file's).
    pub max_mu_per_beam: Option<f64>,
    /// Largest total meterset per fraction, MU (default: the machine file's).
    pub max_mu_per_fraction: Option<f64>,
    /// Largest prescription dose per fraction, Gy; checked before any computation.
    pub max_dose_per_fraction_gy: f64,
    /// Accepted range of the deliverable MU normalisation factor `[low, high]`.
    pub normalization_band: [f64; 2],
    /// Smallest 3 %/2 mm gamma pass rate of the deliverable against the optimised dose, %.
    pub min_gamma_pass_percent: f64,
}

/// Default of [`PlanAcceptance::max_dose_per_fraction_gy`]: 34 Gy, the largest single-fraction
/// prescription of a published external-beam protocol (RTOG 0915 lung SBRT, 34 Gy x 1;
/// Videtic et al., IJROBP 93:757, 2015).
pub const DEFAULT_MAX_DOSE_PER_FRACTION_GY: f64 = 34.0;

/// Default of [`PlanAcceptance::min_gamma_pass_percent`]: 90 %, the action limit of AAPM
/// TG-218 for 3 %/2 mm gamma (Miften et al., Med Phys 45:e53, 2018).
pub const DEFAULT_MIN_GAMMA_PASS_PERCENT: f64 = 90.0;

impl Default for PlanAcceptance {
    fn default() -> Self {
        PlanAcceptance {
            max_mu_per_beam: None,
            max_mu_per_fraction: None,
            max_dose_per_fraction_gy: DEFAULT_MAX_DOSE_PER_FRACTION_GY,
            normalization_band: [0.90, 1.10],
            min_gamma_pass_percent: DEFAULT_MIN_GAMMA_PASS_PERCENT,
        }
    }
}

impl PlanAcceptance {
    /// Check the limits themselves (positive, finite, an ordered band around 1).
    pub fn validate(&self) -> Result<()> {
        let pos = |v: f64, what: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "{what} must be a positive number, got {v}"
                )))
            }
        };
        if let Some(v) = self.max_mu_per_beam {
            pos(v, "maximum MU per beam")?;
        }
        if let Some(v) = self.max_mu_per_fraction {
            pos(v, "maximum MU per fraction")?;
        }
        pos(self.max_dose_per_fraction_gy, "maximum dose per fraction")?;
        let [lo, hi] = self.normalization_band;
        if !(lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= 1.0 && 1.0 <= hi) {
            return Err(Error::Invalid(format!(
                "normalisation band [{lo}, {hi}] must satisfy 0 < low <= 1 <= high"
            )));
        }
        if !(0.0..=100.0).contains(&self.min_gamma_pass_percent) {
            return Err(Error::Invalid(format!(
                "minimum gamma pass rate {} % must lie in [0, 100]",
                self.min_gamma_pass_percent
            )));
        }
        Ok(())
    }

    /// Reasons why a finished plan is implausible (empty: acceptable).
    pub fn check_plan(&self, machine: &MachineModel, plan: &PlanFigures) -> Vec<String> {
        let mut reasons = Vec::new();
        let per_beam = self.max_mu_per_beam.unwrap_or(machine.max_mu_per_beam);
        for (label, mu) in &plan.beam_mu {
            if !(mu.is_finite() && *mu <= per_beam) {
                reasons.push(format!(
                    "{label} needs {mu:.1} MU per fraction, above the limit of {per_beam:.0} MU per beam (--max-mu-per-beam)"
                ));
            }
        }
        let per_fraction = self
            .max_mu_per_fraction
            .unwrap_or(machine.max_mu_per_fraction);
        let total: f64 = plan.beam_mu.iter().map(|b| b.1).sum();
        if !(total.is_finite() && total <= per_fraction) {
            reasons.push(format!(
                "the plan needs {total:.1} MU per fraction, above the limit of {per_fraction:.0} MU (--max-mu-per-fraction)"
            ));
        }
        let [lo, hi] = self.normalization_band;
        let f = plan.mu_scale;
        if !(f.is_finite() && lo <= f && f <= hi) {
            reasons.push(format!(
                "the deliverable plan had to be rescaled by x{f:.4} to reach the prescription, outside the accepted band [{lo}, {hi}] (--normalisation-band): the optimised dose is far from the delivered one"
            ));
        }
        let g = plan.gamma_pass_percent;
        if g.is_nan() || g < self.min_gamma_pass_percent {
            reasons.push(format!(
                "the deliverable dose agrees with the optimised dose at a 3 %/2 mm gamma pass rate of {g:.1} %, below {:.1} % (--min-gamma-pass)",
                self.min_gamma_pass_percent
            ));
        }
        reasons
    }
}

/// The figures of a finished plan that [`PlanAcceptance::check_plan`] judges.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanFigures {
    /// Per beam: a label (`beam 1 (G000)`) and its meterset, MU per fraction.
    pub beam_mu: Vec<(String, f64)>,
    /// Factor applied to the deliverable MU to reach the prescription.
    pub mu_scale: f64,
    /// 3 %/2 mm gamma pass rate of the deliverable against the optimised dose, %.
    pub gamma_pass_percent: f64,
}

/// What the fluence optimisation needs (see [`Planner::export_problem`]).
struct OptimisationInputs {
    beams: Vec<crate::beams::Beam>,
    dose: dose::DoseCalculation,
    structures: Vec<(String, String, Vec<u32>)>,
    corrected: crate::dose::InfluenceMatrix,
}

/// A configured planning run. Build with [`Planner::new`], adjust with the `with_*` methods,
/// then [`Planner::run`].
pub struct Planner {
    case: Case,
    protocol: Protocol,
    protocol_name: String,
    machine: MachineModel,
    beam_setup: Option<BeamSetup>,
    dose: DoseOptions,
    optimize: OptimizeOptions,
    sequencing: SequencingOptions,
    gamma: GammaOptions,
    normalize_deliverable: bool,
    progress: ProgressMode,
    input_files: Vec<PathBuf>,
    acceptance: PlanAcceptance,
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
            protocol,
            protocol_name: "protocol".into(),
            machine: MachineModel::default_6x(),
            beam_setup: None,
            dose: optimisation_dose_options(),
            optimize: optimisation_defaults(),
            sequencing: SequencingOptions::default(),
            gamma: GammaOptions::default(),
            normalize_deliverable: true,
            progress: ProgressMode::Quiet,
            input_files,
            acceptance: PlanAcceptance::default(),
            memory_budget_bytes: crate::budget::default_memory_budget_bytes(),
        }
    }

    /// Name shown in the report (e.g. the protocol file's stem) and the file it came from.
    pub fn with_protocol_source(mut self, name: &str, file: Option<&Path>) -> Self {
        self.protocol_name = name.to_string();
        if let Some(f) = file {
            self.input_files.push(f.to_path_buf());
        }
        self
    }

    pub fn with_machine(mut self, machine: MachineModel) -> Self {
        self.machine = machine;
        self
    }

    /// Override the beam arrangement (default: the protocol's `[beams]`, else 9 equispaced).
    pub fn with_beam_setup(mut self, setup: BeamSetup) -> Self {
        self.beam_setup = Some(setup);
        self
    }

    pub fn with_dose_options(mut self, opts: DoseOptions) -> Self {
        self.dose = opts;
        self
    }

    pub fn with_optimize_options(mut self, opts: OptimizeOptions) -> Self {
        self.optimize = opts;
        self
    }

    pub fn with_sequencing_options(mut self, opts: SequencingOptions) -> Self {
        self.sequencing = opts;
        self
    }

    /// Scale the deliverable plan's MU so the target's D95 equals the prescription (default
    /// on), as clinics normalise after sequencing.
    pub fn with_deliverable_normalization(mut self, on: bool) -> Self {
        self.normalize_deliverable = on;
        self
    }

    pub fn with_progress(mut self, mode: ProgressMode) -> Self {
        self.progress = mode;
        self
    }

    /// Limits beyond which a finished plan is refused as implausible.
    pub fn with_acceptance(mut self, acceptance: PlanAcceptance) -> Self {
        self.acceptance = acceptance;
        self
    }

    /// Memory budget, bytes, for the influence matrix and the optimiser's dense matrices
    /// (default: [`crate::budget::default_memory_budget_bytes`]).
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget_bytes = bytes;
        self
    }

    /// Every check that can fail before minutes of computation: the acceptance limits, the
    /// prescription per fraction, and each structure the protocol names bound to exactly one
    /// ROI of the case.
    pub fn check_before_computation(&self) -> Result<()> {
        self.acceptance.validate()?;
        let rx = &self.protocol.prescription;
        let per_fraction = rx.total_dose_gy / rx.fractions.max(1) as f64;
        if per_fraction > self.acceptance.max_dose_per_fraction_gy {
            return Err(Error::Implausible {
                reasons: vec![format!(
                    "the prescription is {per_fraction:.2} Gy per fraction ({} Gy in {}), above the limit of {} Gy per fraction (--max-dose-per-fraction-gy)",
                    rx.total_dose_gy, rx.fractions, self.acceptance.max_dose_per_fraction_gy
                )],
            });
        }
        self.case
            .check_names(&self.protocol.referenced_structures())?;
        Ok(())
    }

    /// Beams, the scatter-corrected optimisation matrix and the structures' voxel rows: the
    /// inputs of the fluence optimisation (steps "beams" and "dose influence matrix").
    fn optimisation_inputs(&self, prog: &mut Progress) -> Result<OptimisationInputs> {
        let p = &self.protocol;
        let case = &self.case;
        let target = case.structure(&p.prescription.target)?;

        // Beams.
        let st = prog.start("beams");
        let setup = match (&self.beam_setup, &p.beams) {
            (Some(s), _) => s.clone(),
            (None, Some(b)) => BeamSetup {
                gantry_deg: b.gantry_deg.clone(),
                couch_deg: b.couch_deg,
                collimator_deg: b.collimator_deg,
                ..BeamSetup::default()
            },
            (None, None) => BeamSetup::default(),
        };
        let beams = beams::setup_beams(&target.mask, &setup, &self.machine)?;
        let n_beamlets: usize = beams.iter().map(|b| b.beamlets.len()).sum();

        prog.finish(st, &format!("{} beams, {n_beamlets} beamlets", beams.len()));

        // Dose-influence matrix.
        let st = prog.start("dose influence matrix");
        let body = case.try_body_mask()?;
        // Refuse up front a matrix that cannot fit (upper-bound estimate: every voxel within
        // the lateral cutoff along a beamlet's path through the body, no threshold).
        let sp = self.dose.grid_spacing_mm;
        let n_vox_est = (body.count() as f64 * case.ct.grid.voxel_volume_cm3() * 1000.0
            / (sp[0] * sp[1] * sp[2]))
            .ceil();
        let side = setup.beamlet_size_mm + 2.0 * self.dose.lateral_cutoff_mm;
        let per_beamlet = side * side / (sp[0] * sp[1]) * n_vox_est.cbrt();
        crate::budget::check_influence_budget(
            n_vox_est as usize,
            n_beamlets,
            per_beamlet,
            self.memory_budget_bytes,
        )?;
        // The optimiser's dense beamlet-space matrices grow as beamlets squared: refuse them
        // now, before the influence matrix is built.
        let n_dense = p
            .structures
            .iter()
            .flat_map(|s| s.goals.iter())
            .filter(|g| matches!(g.kind, crate::optimize::GoalKind::Deviation { .. }))
            .count();
        crate::budget::check_dense_optimiser_budget(n_beamlets, n_dense, self.memory_budget_bytes)?;
        let dose = dose::influence_matrix(&case.ct, &body, &beams, &self.machine, &self.dose)?;
        prog.finish(
            st,
            &format!(
                "{} voxels x {} beamlets, nnz {:.1} M, truncated mass {:.2} %",
                dose.matrix.n_rows(),
                dose.matrix.n_cols(),
                dose.matrix.nnz() as f64 / 1e6,
                100.0 * dose.truncated_mass_fraction
            ),
        );

        // Optimisation on the (truncated) matrix, then once more on the matrix whose rows are
        // rescaled to the untruncated dose of the first solution (see `scatter_correction`).
        let structures: Vec<(String, String, Vec<u32>)> = case
            .structures
            .iter()
            .map(|s| {
                (
                    s.roi.name.clone(),
                    s.roi.interpreted_type.clone(),
                    dose.dose_grid.rows_in(&s.mask),
                )
            })
            .collect();
        // Scatter correction: rescale each row so the truncated matrix reproduces the
        // untruncated dose of open fields conforming to the target (see `scatter_correction`).
        let reference = vec![1.0; dose.matrix.n_cols()];
        let exact_ref =
            dose::dose_from_weights(&case.ct, &dose.dose_grid, &beams, &self.machine, &reference)?;
        let factors = scatter_correction(&dose.matrix.dose(&reference), &exact_ref);
        let mut corrected = dose.matrix.clone();
        corrected.scale_rows(&factors);
        Ok(OptimisationInputs {
            beams,
            dose,
            structures,
            corrected,
        })
    }

    /// Export the optimisation problem this run would solve, with rtopt's solution of it
    /// (before normalisation), into the folder `out_dir` (`rtopt export-problem`; format in
    /// `docs/peer-benchmark.md`). Returns the solution.
    pub fn export_problem(self, out_dir: &Path, replace: Replace) -> Result<OptimizationResult> {
        self.check_before_computation()?;
        crate::outputs::check_replaceable_dir(out_dir, replace)?;
        let mut prog = Progress::new(self.progress);
        let inputs = self.optimisation_inputs(&mut prog)?;
        let st = prog.start("optimisation");
        let problem = PlanningProblem::new(
            &inputs.corrected,
            &inputs.dose.dose_grid,
            &inputs.beams,
            &inputs.structures,
            &self.protocol,
        )?;
        let mut opts = self.optimize.clone();
        opts.normalize = None;
        if self.progress != ProgressMode::Quiet {
            opts.observers.push(st.solver_observer(self.progress));
        }
        let result = problem.solve(&opts)?;
        prog.finish(
            st,
            &format!(
                "{} after {} iterations ({} rounds), objective {:.6}",
                result.status, result.iterations, result.rounds, result.objective
            ),
        );
        let st = prog.start("export");
        crate::optimize::export::write_problem(
            out_dir,
            replace,
            &self.protocol_name,
            &problem,
            &inputs.structures,
            inputs.dose.dose_grid.grid.voxel_volume_cm3(),
            Some((&result, &opts)),
        )?;
        prog.finish(st, &out_dir.display().to_string());
        Ok(result)
    }

    /// Run the whole pipeline.
    pub fn run(self) -> Result<PlannedCase> {
        self.check_before_computation()?;
        let mut prog = Progress::new(self.progress);
        let p = &self.protocol;
        let case = &self.case;
        let target_name = p.prescription.target.clone();
        let target = case.structure(&target_name)?;
        let OptimisationInputs {
            beams,
            dose,
            structures,
            corrected,
        } = self.optimisation_inputs(&mut prog)?;

        let st = prog.start("optimisation");
        let problem = PlanningProblem::new(&corrected, &dose.dose_grid, &beams, &structures, p)?;
        let mut opts = self.optimize.clone();
        if self.progress != ProgressMode::Quiet {
            opts.observers.push(st.solver_observer(self.progress));
        }
        let optimized = problem.solve(&opts)?;
        prog.finish(
            st,
            &format!(
                "{} after {} iterations ({} rounds)",
                optimized.status, optimized.iterations, optimized.rounds
            ),
        );

        // Sequencing and deliverable dose.
        let st = prog.start("sequencing");
        let delivery_machine = DeliveryMachine::from(&self.machine);
        let mut sequenced = sequencing::sequence_plan(
            &beams,
            &optimized.weights_mu,
            &delivery_machine,
            &self.sequencing,
        )?;
        let fractions = p.prescription.fractions as f64;
        let x_d = sequencing::deliverable_weights(&beams, &sequenced.beams, dose.matrix.n_cols())?;
        let mut deliverable_gy: Vec<f64> =
            dose::dose_from_weights(&case.ct, &dose.dose_grid, &beams, &self.machine, &x_d)?
                .into_iter()
                .map(|d| d * fractions)
                .collect();
        let target_rows = dose.dose_grid.rows_in(&target.mask);
        let mut mu_scale = 1.0;
        if self.normalize_deliverable {
            let td: Vec<f64> = target_rows
                .iter()
                .map(|&r| deliverable_gy[r as usize])
                .collect();
            let d95 = crate::dvh::dose_at_volume(&td, 95.0);
            if d95.is_finite() && d95 > 0.0 {
                mu_scale = p.prescription.total_dose_gy / d95;
                for d in deliverable_gy.iter_mut() {
                    *d *= mu_scale;
                }
                for b in sequenced.beams.iter_mut() {
                    for s in b.segments.iter_mut() {
                        s.mu *= mu_scale;
                    }
                    b.meterset_mu *= mu_scale;
                }
            }
        }
        let n_segments: usize = sequenced.beams.iter().map(|b| b.segments.len()).sum();
        prog.finish(
            st,
            &format!(
                "{n_segments} segments, {:.0} MU per fraction (normalisation x{mu_scale:.4})",
                sequenced.total_mu()
            ),
        );

        // Deliverable versus optimised dose.
        let st = prog.start("gamma (deliverable)");
        let grid = &dose.dose_grid.grid;
        let optimized_exact: Vec<f64> = dose::dose_from_weights(
            &case.ct,
            &dose.dose_grid,
            &beams,
            &self.machine,
            &optimized.weights_mu,
        )?
        .into_iter()
        .map(|d| d * fractions)
        .collect();
        let opt_full = dose.dose_grid.to_full(&optimized_exact);
        let del_full = dose.dose_grid.to_full(&deliverable_gy);
        let gamma_result = gamma::gamma_3d(grid, &opt_full, grid, &del_full, &self.gamma)?;
        prog.finish(
            st,
            &format!("3 %/2 mm pass rate {:.2} %", gamma_result.pass_rate_percent),
        );
        let figures = PlanFigures {
            beam_mu: beams
                .iter()
                .zip(&sequenced.beams)
                .map(|(b, s)| (format!("beam {} ({})", b.number, b.name), s.meterset_mu))
                .collect(),
            mu_scale,
            gamma_pass_percent: gamma_result.pass_rate_percent,
        };
        let reasons = self.acceptance.check_plan(&self.machine, &figures);
        if !reasons.is_empty() {
            return Err(Error::Implausible { reasons });
        }

        let st = prog.start("report");
        let goal_rows = problem.evaluate_goals(&deliverable_gy)?;
        let mut planned = PlannedCase {
            case: self.case.clone(),
            protocol: self.protocol.clone(),
            machine: self.machine.clone(),
            delivery_machine,
            beams,
            dose,
            optimized,
            sequenced,
            deliverable_gy,
            deliverable_full_gy: del_full,
            mu_scale,
            gamma: gamma_result,
            report: Report {
                rtopt_version: env!("CARGO_PKG_VERSION").to_string(),
                case: String::new(),
                protocol: self.protocol_name.clone(),
                prescription_gy: p.prescription.total_dose_gy,
                fractions: p.prescription.fractions,
                target: target_name.clone(),
                input_hashes: hash_files(&self.input_files)?,
                structures: Vec::new(),
                protocol_metrics: Vec::new(),
                quality: report::plan_quality(&[], &[], 0.0, 0.0),
                goals: Vec::new(),
                beams: Vec::new(),
                optimizer: serde_json::Value::Null,
                delivery: serde_json::Value::Null,
                notes: Vec::new(),
                timings: Vec::new(),
                dvh: Vec::new(),
            },
        };
        planned.build_report(goal_rows)?;
        prog.finish(st, "");
        planned.report.timings = prog
            .timings()
            .iter()
            .map(|(s, t)| StageTiming {
                stage: s.clone(),
                seconds: *t,
            })
            .collect();
        Ok(planned)
    }
}

/// Row factors that make the truncated influence matrix reproduce the untruncated dose of a
/// reference fluence `x_ref` (open fields conforming to the target): `f_r = exact_r /
/// (A x_ref)_r`, for rows whose matrix dose is at least 2 % of the maximum (elsewhere 1, where
/// the ratio is ill-conditioned and the dose is low), clamped to [1, 4]. The scatter fraction
/// of a voxel varies slowly with the fluence, so `diag(f) A x` approximates the final dose of
/// the optimised fluence too; the plan's goals, DVHs and RT Dose are always evaluated on the
/// untruncated dose.
pub fn scatter_correction(matrix_dose: &[f64], exact_dose: &[f64]) -> Vec<f64> {
    let max = matrix_dose.iter().cloned().fold(0.0f64, f64::max);
    matrix_dose
        .iter()
        .zip(exact_dose)
        .map(|(&a, &e)| {
            if max > 0.0 && a >= 0.02 * max {
                (e / a).clamp(1.0, 4.0)
            } else {
                1.0
            }
        })
        .collect()
}

/// A finished plan: everything the outputs are written from.
pub struct PlannedCase {
    pub case: Case,
    pub protocol: Protocol,
    pub machine: MachineModel,
    pub delivery_machine: DeliveryMachine,
    pub beams: Vec<Beam>,
    pub dose: DoseCalculation,
    pub optimized: OptimizationResult,
    /// Segments after the deliverable normalisation.
    pub sequenced: SequencedPlan,
    /// Total deliverable dose per dose-grid row, Gy (what RTDOSE holds).
    pub deliverable_gy: Vec<f64>,
    /// The same on the full dose grid.
    pub deliverable_full_gy: Vec<f32>,
    /// MU factor of the deliverable normalisation (1 without).
    pub mu_scale: f64,
    pub gamma: GammaResult,
    pub report: Report,
}

fn hash_files(files: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        let h = Sha256::digest(&bytes);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((name, hex));
    }
    Ok(out)
}

impl PlannedCase {
    fn build_report(&mut self, goals: Vec<crate::optimize::GoalResult>) -> Result<()> {
        let voxel_cm3 = self.dose.dose_grid.grid.voxel_volume_cm3();
        let p = &self.protocol;
        let rx = p.prescription.total_dose_gy;
        let mut structures = Vec::new();
        let mut dvh = Vec::new();
        let mut metrics = Vec::new();
        let mut target_doses = Vec::new();
        for s in &self.case.structures {
            let rows = self.dose.dose_grid.rows_in(&s.mask);
            let d: Vec<f64> = rows
                .iter()
                .map(|&r| self.deliverable_gy[r as usize])
                .collect();
            structures.push(StructureMetrics::compute(
                &s.roi.name,
                &s.roi.interpreted_type,
                &d,
                voxel_cm3,
            ));
            dvh.push(DvhCurve::compute(&s.roi.name, s.roi.color, &d, DVH_BIN_GY));
            if s.roi.name == p.prescription.target {
                target_doses = d.clone();
            }
            for sg in p.structures.iter().filter(|g| g.name == s.roi.name) {
                for g in &sg.goals {
                    if let crate::optimize::protocol::GoalKind::DvhMax { volume_pct: v, .. }
                    | crate::optimize::protocol::GoalKind::DvhMin { volume_pct: v, .. } = g.kind
                    {
                        metrics.push(ProtocolMetric {
                            structure: s.roi.name.clone(),
                            metric: format!("D{v}"),
                            value: crate::dvh::dose_at_volume(&d, v),
                            unit: "Gy".into(),
                        });
                    }
                }
            }
        }
        let quality: PlanQuality =
            report::plan_quality(&self.deliverable_gy, &target_doses, rx, voxel_cm3);
        // Goals are evaluated in protocol order (structure by structure, goal by goal).
        let metrics_of: Vec<String> = p
            .structures
            .iter()
            .flat_map(|s| s.goals.iter().map(|g| g.kind.metric()))
            .collect();
        let goal_rows: Vec<GoalRow> = goals
            .iter()
            .zip(metrics_of)
            .map(|(g, metric)| GoalRow {
                structure: g.structure.clone(),
                goal: g.description.clone(),
                kind: match g.role {
                    crate::optimize::GoalRole::Objective => "objective",
                    crate::optimize::GoalRole::Constraint => "constraint",
                    crate::optimize::GoalRole::Report => "report",
                }
                .to_string(),
                metric,
                achieved: g.achieved_gy,
                unit: "Gy".into(),
                objective_value: g.objective_value,
                met: g.met,
            })
            .collect();
        let beams: Vec<BeamRow> = self
            .beams
            .iter()
            .zip(&self.sequenced.beams)
            .map(|(b, s)| BeamRow {
                number: b.number,
                name: b.name.clone(),
                gantry_deg: b.gantry_deg,
                couch_deg: b.couch_deg,
                collimator_deg: b.collimator_deg,
                mu: s.meterset_mu,
                segments: s.segments.len(),
            })
            .collect();
        let o = &self.optimized;
        self.report.case = self
            .case
            .dir
            .as_ref()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "case".into());
        self.report.structures = structures;
        self.report.protocol_metrics = metrics;
        self.report.quality = quality;
        self.report.goals = goal_rows;
        self.report.beams = beams;
        self.report.dvh = dvh;
        self.report.optimizer = serde_json::json!({
            "solver": "Clarabel (faer)",
            "status": o.status,
            "iterations": o.iterations,
            "rounds": o.rounds,
            "solve_seconds": o.solve_seconds,
            "objective": o.objective,
            "variables": o.n_variables,
            "constraint_rows": o.n_constraint_rows,
            "influence_matrix": {
                "rows": self.dose.matrix.n_rows(),
                "columns": self.dose.matrix.n_cols(),
                "nnz": self.dose.matrix.nnz(),
                "truncated_mass_fraction": self.dose.truncated_mass_fraction,
            },
        });
        self.report.delivery = serde_json::json!({
            "sequencing": self.sequenced.reports,
            "total_mu_per_fraction": self.sequenced.total_mu(),
            "mu_normalisation_factor": self.mu_scale,
            "gamma": {
                "criteria": "3 %/2 mm global, 10 % threshold, deliverable vs optimised dose",
                "pass_rate_percent": self.gamma.pass_rate_percent,
                "evaluated_points": self.gamma.evaluated,
                "mean_gamma": self.gamma.mean_gamma,
            },
        });
        self.report.notes = vec![
            "Dose-volume constraints are enforced through their CVaR (Rockafellar-Uryasev) counterparts, which are conservative: the achieved DVH point is at least as good as the limit.".into(),
            "Goals, DVHs and indices are evaluated on the deliverable (sequenced) dose, after MU normalisation of the target D95 to the prescription.".into(),
            "Not for clinical use.".into(),
        ];
        self.report.notes.extend(
            self.case
                .warnings()
                .iter()
                .map(|w| format!("Import warning: {w}")),
        );
        Ok(())
    }

    /// Write `RTPLAN.dcm`, `RTDOSE.dcm`, `report.json` and `report.html` into `out_dir`.
    /// Everything is first written into a temporary sibling folder which is then renamed into
    /// place ([`crate::atomic::write_dir`]), so a reader never sees a partial plan folder, and
    /// work folders left by a killed earlier export are removed.
    ///
    /// An existing `out_dir` is replaced only as `replace` allows ([`crate::outputs`]): never a
    /// folder rtopt did not write, never a file.
    pub fn write(&self, out_dir: &Path, replace: Replace) -> Result<()> {
        crate::atomic::write_dir(out_dir, replace, |tmp| self.write_files(tmp))
    }

    fn write_files(&self, dir: &Path) -> Result<()> {
        let ct = &self.case.ct.meta;
        let ss_uid = self
            .case
            .structure_set
            .as_ref()
            .map(|s| s.sop_instance_uid.clone())
            .unwrap_or_default();
        let target = self.case.structure(&self.protocol.prescription.target)?;
        let plan = PlanExport {
            label: truncate(&format!("rtopt {}", self.report.case), 16),
            ct,
            structure_set_uid: ss_uid,
            target: TargetPrescription {
                roi_number: target.roi.number,
                roi_name: target.roi.name.clone(),
                prescription_gy: self.protocol.prescription.total_dose_gy,
            },
            fractions: self.protocol.prescription.fractions,
            machine: &self.delivery_machine,
            beams: &self.beams,
            sequenced: &self.sequenced.beams,
            beam_dose_gy: None,
            plan_date: ct.study_date.clone(),
            plan_time: ct.study_time.clone(),
        };
        let plan_uid = rtplan::write_rtplan(&dir.join("RTPLAN.dcm"), &plan)?;
        rtdose::write_rtdose(
            &dir.join("RTDOSE.dcm"),
            &DoseExport {
                ct,
                grid: &self.dose.dose_grid.grid,
                dose_gy: &self.deliverable_full_gy,
                plan_sop_uid: &plan_uid,
            },
        )?;
        let json = serde_json::to_string_pretty(&self.report)
            .map_err(|e| Error::Invalid(format!("report.json: {e}")))?;
        crate::atomic::write_file(&dir.join("report.json"), json.as_bytes())?;
        let outlines: Vec<(&str, [u8; 3], &crate::geometry::Mask)> = self
            .case
            .structures
            .iter()
            .map(|s| (s.roi.name.as_str(), s.roi.color, &s.mask))
            .collect();
        let iso = self
            .beams
            .first()
            .map(|b| b.isocenter_mm)
            .unwrap_or([0.0; 3]);
        let html = report::html::render(&report::html::HtmlInputs {
            report: &self.report,
            ct: &self.case.ct,
            dose_gy: &self.deliverable_full_gy,
            dose_grid: &self.dose.dose_grid.grid,
            outlines,
            isocenter_mm: iso,
        })?;
        crate::atomic::write_file(&dir.join("report.html"), html.as_bytes())?;
        Ok(())
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(beam_mu: &[f64], mu_scale: f64, gamma: f64) -> PlanFigures {
        PlanFigures {
            beam_mu: beam_mu
                .iter()
                .enumerate()
                .map(|(i, &m)| (format!("beam {}", i + 1), m))
                .collect(),
            mu_scale,
            gamma_pass_percent: gamma,
        }
    }

    #[test]
    fn acceptance_names_each_implausible_figure() {
        let m = MachineModel::default_6x();
        let a = PlanAcceptance::default();
        // The shipped TG119 plan: about 240 MU per beam, x1.04, 97.4 %.
        assert!(a
            .check_plan(&m, &figures(&[240.0; 9], 1.04, 97.4))
            .is_empty());
        let r = a.check_plan(&m, &figures(&[1e5, 10.0], 88.0, 0.0));
        assert_eq!(r.len(), 4, "{r:?}");
        assert!(
            r[0].contains("beam 1") && r[0].contains("100000.0 MU"),
            "{}",
            r[0]
        );
        assert!(r[1].contains("100010.0 MU per fraction"), "{}", r[1]);
        assert!(
            r[2].contains("x88.0000") && r[2].contains("[0.9, 1.1]"),
            "{}",
            r[2]
        );
        assert!(
            r[3].contains("0.0 %") && r[3].contains("90.0 %"),
            "{}",
            r[3]
        );
        // NaN is never plausible; overrides move the limits.
        let r = a.check_plan(&m, &figures(&[f64::NAN], 1.0, f64::NAN));
        assert_eq!(r.len(), 3, "{r:?}");
        let loose = PlanAcceptance {
            max_mu_per_beam: Some(2e5),
            max_mu_per_fraction: Some(3e5),
            normalization_band: [0.01, 100.0],
            min_gamma_pass_percent: 0.0,
            ..PlanAcceptance::default()
        };
        assert!(loose
            .check_plan(&m, &figures(&[1e5, 10.0], 88.0, 0.0))
            .is_empty());
        assert!(PlanAcceptance {
            normalization_band: [1.1, 0.9],
            ..PlanAcceptance::default()
        }
        .validate()
        .is_err());
    }
}
