//! `rtopt plan` and `rtopt export-problem`: the arguments' defaults (protocol in the case
//! folder, output folder name), the output check before any computation, and the calls into
//! the library's planner.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rtopt::error::{Error, Result};
use rtopt::optimize::protocol::Protocol;
use rtopt::optimize::OptimizeOptions;
use rtopt::outputs::Replace;
use rtopt::plan::Planner;

use crate::progress::{ProgressMode, TerminalProgress};

/// Arguments of `rtopt plan`.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    pub case: PathBuf,
    pub protocol: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub machine: Option<PathBuf>,
    pub series: Option<String>,
    /// RT Structure Set to use (default: the only one in the case folder).
    pub rtstruct: Option<PathBuf>,
    pub relax: bool,
    pub normalize: bool,
    pub quiet: bool,
    /// Replace a previous rtopt output at `out`.
    pub force: bool,
    /// Take a CT without PatientPosition (0018,5100) as head first supine.
    pub assume_hfs: bool,
    /// Plan acceptance overrides (`None`: the defaults of [`rtopt::plan::PlanAcceptance`]).
    pub max_mu_per_beam: Option<f64>,
    pub max_mu_per_fraction: Option<f64>,
    pub max_dose_per_fraction_gy: Option<f64>,
    pub normalization_band: Option<[f64; 2]>,
    pub min_gamma_pass_percent: Option<f64>,
    /// CT calibration file (HU to relative electron density) instead of the machine's.
    pub ct_calibration: Option<PathBuf>,
    /// Threads of the planner's pool (default: one per core).
    pub threads: Option<usize>,
    /// Re-solves of the dose-fidelity loop at most (`None`: the planner's default).
    pub fidelity_corrections: Option<usize>,
    /// Keep the sequenced segment MU (no segment-weight optimisation).
    pub no_segment_weights: bool,
    /// Memory budget, bytes (default: half the machine's memory).
    pub memory_budget_bytes: Option<u64>,
    /// Plan label, name, description and creation time (`SOURCE_DATE_EPOCH`).
    pub identity: rtopt::plan::PlanIdentity,
    /// Also write one RT Dose per beam.
    pub beam_doses: bool,
}

impl PlanArgs {
    /// The protocol file these arguments use.
    pub fn protocol_path(&self) -> Result<PathBuf> {
        match &self.protocol {
            Some(p) => Ok(p.clone()),
            None => default_protocol_path(&self.case),
        }
    }

    /// Every input path of the run (case folder, protocol, machine, RT Structure Set): an
    /// output may be none of them, nor lie inside or contain one.
    pub fn inputs(&self) -> Result<Vec<PathBuf>> {
        let mut v = vec![self.case.clone(), self.protocol_path()?];
        v.extend(self.machine.iter().cloned());
        v.extend(self.rtstruct.iter().cloned());
        v.extend(self.ct_calibration.iter().cloned());
        Ok(v)
    }

    fn acceptance(&self) -> rtopt::plan::PlanAcceptance {
        let mut a = rtopt::plan::PlanAcceptance::default();
        if self.max_mu_per_beam.is_some() {
            a.max_mu_per_beam = self.max_mu_per_beam;
        }
        if self.max_mu_per_fraction.is_some() {
            a.max_mu_per_fraction = self.max_mu_per_fraction;
        }
        if let Some(v) = self.max_dose_per_fraction_gy {
            a.max_dose_per_fraction_gy = v;
        }
        if let Some(v) = self.normalization_band {
            a.normalization_band = v;
        }
        if let Some(v) = self.min_gamma_pass_percent {
            a.min_gamma_pass_percent = v;
        }
        a
    }
}

/// What `rtopt plan` reports back.
pub struct PlanOutcome {
    pub out_dir: PathBuf,
    pub goal_table: String,
    pub constraints_met: bool,
    pub all_met: bool,
}

/// The protocol used when `--protocol` is not given: `protocol.toml` in the case folder.
pub fn default_protocol_path(case: &Path) -> Result<PathBuf> {
    let p = case.join("protocol.toml");
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::Invalid(format!(
            "{}: no protocol.toml in the case folder; give one with --protocol (examples in data/protocols/)",
            case.display()
        )))
    }
}

/// The output folder used when `--out` is not given: `rtopt-<case folder name>`.
pub fn default_out_dir(case: &Path) -> PathBuf {
    let name = case
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "case".into());
    PathBuf::from(format!("rtopt-{name}"))
}

/// Load the case, protocol and machine of `args` into a configured [`Planner`].
fn planner(args: &PlanArgs) -> Result<Planner> {
    let protocol_path = args.protocol_path()?;
    let protocol = Protocol::load(&protocol_path)?;
    let budget = args
        .memory_budget_bytes
        .unwrap_or_else(rtopt::budget::default_memory_budget_bytes);
    // Read and validated before the case, so a bad file fails in milliseconds.
    let calibration = match &args.ct_calibration {
        Some(c) => Some(rtopt::calibration::CtCalibration::load(c)?),
        None => None,
    };
    let case = rtopt::Case::load(
        &args.case,
        &rtopt::LoadOptions {
            ct: rtopt::io::dicom::ct::CtImportOptions {
                series_uid: args.series.clone(),
                assume_hfs: args.assume_hfs,
                memory_budget_bytes: Some(budget),
            },
            rtstruct: args.rtstruct.clone(),
        },
    )?;
    let machine = match &args.machine {
        Some(m) => rtopt::machine::MachineModel::load(m)?,
        None => rtopt::machine::MachineModel::default_6x(),
    };
    // The file's own name, also when the path is a symlink (a case's `protocol.toml`
    // pointing at a shared protocol).
    let name = std::fs::canonicalize(&protocol_path)
        .unwrap_or_else(|_| protocol_path.clone())
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "protocol".into());
    let mut planner = Planner::new(case, protocol)
        .with_protocol_source(&name, Some(&protocol_path))
        .with_machine(machine);
    if let Some(c) = calibration {
        planner = planner.with_ct_calibration(c);
    }
    if let Some(n) = args.threads {
        planner = planner.with_threads(n);
    }
    if let Some(n) = args.fidelity_corrections {
        planner = planner.with_dose_fidelity(rtopt::plan::DoseFidelity {
            max_corrections: n,
            ..Default::default()
        });
    }
    if args.no_segment_weights {
        planner =
            planner.with_segment_weights(rtopt::plan::SegmentWeightOptions { enabled: false });
    }
    planner = planner
        .with_memory_budget(budget)
        .with_plan_identity(args.identity.clone())
        .with_beam_doses(args.beam_doses);
    Ok(planner
        .with_optimize_options(OptimizeOptions {
            relax: args.relax,
            ..rtopt::plan::optimisation_defaults()
        })
        .with_deliverable_normalization(args.normalize)
        .with_acceptance(args.acceptance())
        .with_observer(Arc::new(TerminalProgress::new(ProgressMode::auto(
            args.quiet,
        )))))
}

/// Run `rtopt plan`. The output folder is checked before anything is computed
/// ([`rtopt::outputs::check_output_dir`]), then every other check that can fail
/// ([`Planner::check_before_computation`]).
pub fn plan(args: &PlanArgs) -> Result<PlanOutcome> {
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(&args.case));
    let replace = Replace::from_force(args.force);
    rtopt::outputs::check_output_dir(&out_dir, &args.inputs()?, replace)?;
    let planned = planner(args)?.run()?;
    planned.write(&out_dir, replace)?;
    Ok(PlanOutcome {
        out_dir,
        goal_table: planned.report.goal_table(),
        constraints_met: planned.report.constraints_met(),
        all_met: planned.report.all_goals_met(),
    })
}

/// Run `rtopt export-problem`: write the optimisation problem of `rtopt plan` with the same
/// arguments, and rtopt's solution of it, into `out_dir` (`docs/peer-benchmark.md`). Returns
/// the objective value and Clarabel's status.
pub fn export_problem(args: &PlanArgs, out_dir: &Path) -> Result<(f64, String)> {
    let replace = Replace::from_force(args.force);
    rtopt::outputs::check_output_dir(out_dir, &args.inputs()?, replace)?;
    let res = planner(args)?.export_problem(out_dir, replace)?;
    Ok((res.objective, res.status))
}
