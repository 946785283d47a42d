//! `rtopt` command line: parses arguments and calls the library.
//!
//! Exit codes ([`EXIT_CODES`], from [`rtopt::error::ErrorKind`]): 0 success (for `plan`:
//! planned and every hard goal met); 1 internal or solver failure, or cancelled; 2 invalid
//! input (file, tag, structure, protocol, argument, output path); 3 infeasible protocol;
//! 4 plan refused (implausible, or hard goals unmet after sequencing, or report goals unmet
//! with `--strict`); 5 reading or writing a file failed. A closed output pipe (`| head`)
//! ends the command quietly.

#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check_cmd;
mod net_cmd;
mod plan_cmd;
mod progress;
mod segment_cmd;

/// Exit codes, as shown by `rtopt --help`.
const EXIT_CODES: &str = "Exit codes:
  0  success (plan: planned, every hard goal met on the deliverable dose)
  1  internal or solver failure, or cancelled
  2  invalid input: file, DICOM tag, structure, protocol, argument or output path
  3  infeasible protocol (the conflicting constraints are named)
  4  plan refused: implausible (MU, normalisation, deliverable agreement, dose per fraction),
     hard goals not met after sequencing, or report goals not met with --strict
  5  reading or writing a file failed (I/O), or a DICOM node failed (pull, push, listen)";

#[derive(Parser)]
#[command(
    name = "rtopt",
    version,
    about = "IMRT treatment-planning optimisation engine",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CT series and the structure table of a case folder.
    Inspect {
        /// Folder with the CT series and (optionally) an RT Structure Set.
        folder: PathBuf,
        #[command(flatten)]
        select: CaseSelection,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Plan a case end to end: beams, dose, optimisation, sequencing, RTPLAN, RTDOSE, report.
    Plan {
        /// Case folder (CT series + RT Structure Set).
        case: PathBuf,
        /// Planning protocol (TOML). Default: `protocol.toml` in the case folder.
        #[arg(long)]
        protocol: Option<PathBuf>,
        /// Output folder. Default: `rtopt-<case folder name>` in the current folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Machine description (JSON). Default: the shipped generic 6 MV machine.
        #[arg(long)]
        machine: Option<PathBuf>,
        #[command(flatten)]
        select: CaseSelection,
        /// Replace a previous rtopt output folder at --out (never anything else).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        limits: Limits,
        #[command(flatten)]
        calculation: Calculation,
        #[command(flatten)]
        identity: Identity,
        /// Turn hard constraints into heavy penalties and report their violation.
        #[arg(long)]
        relax: bool,
        /// Exit with code 4 when a soft goal (objective) is not met.
        #[arg(long)]
        strict: bool,
        /// Do not normalise the deliverable plan to the target D95.
        #[arg(long)]
        no_normalize: bool,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Write the fluence-optimisation problem of `rtopt plan` (influence matrix, voxel sets,
    /// goals) and rtopt's solution as NumPy files, for peer solvers (docs/peer-benchmark.md).
    ExportProblem {
        /// Case folder (CT series + RT Structure Set).
        case: PathBuf,
        /// Planning protocol (TOML). Default: `protocol.toml` in the case folder.
        #[arg(long)]
        protocol: Option<PathBuf>,
        /// Output folder (created; a previous export is replaced only with --force).
        #[arg(long)]
        out: PathBuf,
        /// Machine description (JSON). Default: the shipped generic 6 MV machine.
        #[arg(long)]
        machine: Option<PathBuf>,
        #[command(flatten)]
        select: CaseSelection,
        /// Replace a previous export at --out.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        calculation: Calculation,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Classical auto-segmentation (body, lungs) written with the imported ROIs into a new
    /// RT Structure Set; the input RTSTRUCT is never modified.
    Segment(segment_cmd::SegmentArgs),
    /// Dice and 95 % Hausdorff distance of the classical segmentation against a reference.
    SegmentEval(segment_cmd::SegmentEvalArgs),
    /// Fetch a study (CT series + RT Structure Set) from a DICOM node by StudyInstanceUID or
    /// accession number (C-FIND, C-GET) into a new case folder, checked as `inspect` checks.
    Pull(net_cmd::PullArgs),
    /// Send a plan folder's DICOM objects (RTPLAN, RTDOSE, any RTSTRUCT) to a DICOM node
    /// (C-STORE), with a status per object.
    Push(net_cmd::PushArgs),
    /// Run the auto-planning node: receive CT + RTSTRUCT (storage SCP), plan with the protocol
    /// of a rule file, send the plan back (docs/networking.md).
    Listen(net_cmd::ListenArgs),
    /// Compare plan variants (output folders of `rtopt plan`): metrics, goals, DVHs.
    Compare {
        /// Two or more output folders.
        #[arg(required = true, num_args = 2..)]
        plans: Vec<PathBuf>,
        /// Also write an HTML comparison here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Replace an existing file at --html.
        #[arg(long)]
        force: bool,
    },
    /// Uniform-fluence dose of a case: beamlets around the target, 2 Gy target mean. With
    /// --plan: the dose of an imported RT Plan (a secondary dose check), written as RT Dose
    /// with a comparison against --reference-dose.
    Dose {
        /// Case folder (CT + RTSTRUCT); not needed with --water-phantom.
        folder: Option<PathBuf>,
        /// RT Plan to recalculate (rtopt's or another system's step-and-shoot or static plan).
        #[arg(long, value_name = "RTPLAN", conflicts_with_all = ["target", "cutoff_mm", "threshold"])]
        plan: Option<PathBuf>,
        /// RT Dose of the same plan to compare with (gamma, DVH points).
        #[arg(long, value_name = "RTDOSE", requires = "plan")]
        reference_dose: Option<PathBuf>,
        /// Recalculate on a 30 cm water cube around the plan's isocentre instead of a CT.
        #[arg(long, requires = "plan")]
        water_phantom: bool,
        /// Gantry angles, degrees (comma separated).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "0,40,80,120,160,200,240,280,320"
        )]
        beams: Vec<f64>,
        /// Target structure (default: the first PTV).
        #[arg(long)]
        target: Option<String>,
        /// Machine file (default: built-in generic 6 MV).
        #[arg(long)]
        machine: Option<PathBuf>,
        /// Lateral cutoff of the beamlet kernels, mm (default: DoseOptions::default()).
        #[arg(long)]
        cutoff_mm: Option<f64>,
        /// Relative threshold below which matrix entries are dropped.
        #[arg(long)]
        threshold: Option<f64>,
        /// Write the summary as JSON to this file (with --plan: the output folder, default
        /// `rtopt-dose-<plan file name>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing file at --out.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        select: CaseSelection,
    },
}

/// How a case folder is read: shared by every command that loads one.
#[derive(clap::Args, Debug, Clone, Default)]
struct CaseSelection {
    /// SeriesInstanceUID when the folder holds several CT series.
    #[arg(long)]
    series: Option<String>,
    /// RT Structure Set file (default: the one in the case folder).
    #[arg(long)]
    rtstruct: Option<PathBuf>,
    /// Take a CT without PatientPosition (0018,5100) as head first supine (HFS).
    #[arg(long)]
    assume_hfs: bool,
}

/// Calculation settings of the planner.
#[derive(clap::Args, Debug, Clone, Default)]
struct Calculation {
    /// CT calibration (TOML: HU to relative electron density, format of
    /// data/calibration/ct-default.toml) instead of the machine's.
    #[arg(long, value_name = "FILE")]
    ct_calibration: Option<PathBuf>,
    /// Threads for the planner [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Re-solves of the dose-fidelity loop at most (0: none, the optimiser's first solution
    /// is final), plus one when the machine's leaves or jaws transmit [default: 2].
    #[arg(long, value_name = "N")]
    fidelity_corrections: Option<usize>,
    /// Keep the sequenced segment MU instead of re-optimising them against the goals
    /// (docs/sequencing.md).
    #[arg(long)]
    no_segment_weights: bool,
}

/// How the plan's outputs are named and dated.
#[derive(clap::Args, Debug, Clone, Default)]
struct Identity {
    /// RTPlanLabel, at most 16 characters [default: the protocol's [plan] label, else the
    /// case name and the creation time]. Creation dates and times come from the clock, or
    /// from SOURCE_DATE_EPOCH (seconds since 1970, UTC) for byte-identical reruns.
    #[arg(long, value_name = "TEXT")]
    plan_label: Option<String>,
    /// RTPlanName, at most 64 characters [default: the label].
    #[arg(long, value_name = "TEXT")]
    plan_name: Option<String>,
    /// RTPlanDescription, at most 1024 characters.
    #[arg(long, value_name = "TEXT")]
    plan_description: Option<String>,
    /// Also write one RT Dose per beam (RTDOSE_beam<N>.dcm) for per-field QA.
    #[arg(long)]
    beam_doses: bool,
}

impl Identity {
    /// The library's identity, with the creation time of SOURCE_DATE_EPOCH when it is set
    /// (the only place rtopt reads it; empty counts as unset).
    fn resolve(self) -> rtopt::Result<rtopt::plan::PlanIdentity> {
        let created = source_date_epoch()?;
        Ok(rtopt::plan::PlanIdentity {
            label: self.plan_label,
            name: self.plan_name,
            description: self.plan_description,
            created,
        })
    }
}

/// The creation time of SOURCE_DATE_EPOCH when it is set (the only place rtopt reads it;
/// empty counts as unset); `None`: the library takes the clock.
fn source_date_epoch() -> rtopt::Result<Option<rtopt::io::dicom::identity::CreationTime>> {
    use rtopt::io::dicom::identity::{CreationTime, SOURCE_DATE_EPOCH};
    match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(CreationTime::from_source_date_epoch(&v)?)),
        _ => Ok(None),
    }
}

/// Plan acceptance limits (defaults and sources in docs/reliability.md).
#[derive(clap::Args, Debug, Clone, Default)]
struct Limits {
    /// Refuse a plan with a beam above this many MU per fraction [default: machine file].
    #[arg(long, value_name = "MU")]
    max_mu_per_beam: Option<f64>,
    /// Refuse a plan above this many MU per fraction in total [default: machine file].
    #[arg(long, value_name = "MU")]
    max_mu_per_fraction: Option<f64>,
    /// Refuse a prescription above this dose per fraction [default: 34 Gy].
    #[arg(long, value_name = "GY")]
    max_dose_per_fraction_gy: Option<f64>,
    /// Accepted range of the deliverable MU normalisation factor [default: 0.9,1.1].
    #[arg(long, value_name = "LOW,HIGH", value_delimiter = ',')]
    normalisation_band: Option<Vec<f64>>,
    /// Smallest 3 %/2 mm gamma pass rate of the deliverable vs the optimised dose, %
    /// [default: 90].
    #[arg(long, value_name = "PERCENT")]
    min_gamma_pass: Option<f64>,
}

const EXIT_UNMET: u8 = 4;

fn fail(e: rtopt::Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.kind().exit_code())
}

/// Write to stdout; a closed pipe (`rtopt inspect | head`) ends the process quietly with
/// success, any other write error with the I/O exit code.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: stdout: {e}");
        std::process::exit(rtopt::error::ErrorKind::Io.exit_code().into());
    }
}

/// The memory budget, bytes: `RTOPT_MEMORY_BUDGET_MB` when set (the only place rtopt reads
/// the environment for it), else half the machine's memory.
fn memory_budget_bytes() -> rtopt::Result<u64> {
    match std::env::var(rtopt::budget::BUDGET_ENV) {
        Ok(v) => rtopt::budget::parse_budget_mb(&v),
        Err(_) => Ok(rtopt::budget::default_memory_budget_bytes()),
    }
}

fn load_case(folder: &Path, select: &CaseSelection) -> rtopt::Result<rtopt::Case> {
    let opts = rtopt::LoadOptions {
        ct: rtopt::io::dicom::ct::CtImportOptions {
            series_uid: select.series.clone(),
            assume_hfs: select.assume_hfs,
            memory_budget_bytes: Some(memory_budget_bytes()?),
        },
        rtstruct: select.rtstruct.clone(),
    };
    rtopt::Case::load(folder, &opts)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let budget = match memory_budget_bytes() {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    match cli.command {
        Command::Pull(a) => match net_cmd::pull(&a) {
            Ok(text) => {
                emit(&text);
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Push(a) => {
            let (text, result) = net_cmd::push(&a);
            emit(&text);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Listen(a) => match net_cmd::listen(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::Segment(a) => match source_date_epoch()
            .and_then(|created| rtopt::segment::task::segment(&a.request(budget, created)))
        {
            Ok(o) => {
                let mut text: String = o.report.iter().map(|l| format!("{l}\n")).collect();
                text.push_str(&format!(
                    "wrote {} ({} ROIs, {} new)\n",
                    o.out.display(),
                    o.rois,
                    o.new_rois
                ));
                emit(&text);
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::SegmentEval(a) => {
            match rtopt::segment::task::segment_eval_rows(&a.request(budget)) {
                Ok(rows) if a.json => match serde_json::to_string_pretty(&rows) {
                    Ok(j) => {
                        emit(&format!("{j}\n"));
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(rtopt::Error::Invalid(e.to_string())),
                },
                Ok(rows) => {
                    emit(&rtopt::segment::task::format_rows(&rows));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Dose {
            folder,
            plan: Some(plan),
            reference_dose,
            water_phantom,
            machine,
            out,
            force,
            select,
            ..
        } => {
            let created = match source_date_epoch() {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let run = check_cmd::PlanDoseRun {
                created,
                folder,
                plan,
                reference_dose,
                water_phantom,
                machine,
                out,
                force,
                load: |f: &Path| load_case(f, &select),
            };
            match check_cmd::run(&run) {
                Ok(text) => {
                    emit(&text);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Dose {
            folder,
            beams,
            target,
            machine,
            cutoff_mm,
            threshold,
            out,
            force,
            select,
            ..
        } => {
            let mut opts = rtopt::dose::DoseOptions::default();
            if let Some(c) = cutoff_mm {
                opts.lateral_cutoff_mm = c;
            }
            if let Some(t) = threshold {
                opts.relative_threshold = t;
            }
            let Some(folder) = folder else {
                return fail(rtopt::Error::Invalid(
                    "rtopt dose needs a case folder (or --plan with --water-phantom)".into(),
                ));
            };
            let run = DoseRun {
                folder,
                select,
                beams,
                target,
                machine,
                out,
                force,
            };
            match run_dose(&run, &opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Inspect {
            folder,
            select,
            json,
        } => match load_case(&folder, &select) {
            Ok(case) => {
                let ins = case.inspect();
                if json {
                    match serde_json::to_string_pretty(&ins) {
                        Ok(s) => emit(&format!("{s}\n")),
                        Err(e) => return fail(rtopt::Error::Invalid(e.to_string())),
                    }
                } else {
                    emit(&ins.to_string());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Plan {
            case,
            protocol,
            out,
            machine,
            select,
            force,
            limits,
            calculation,
            identity,
            relax,
            strict,
            no_normalize,
            quiet,
        } => {
            let beam_doses = identity.beam_doses;
            let identity = match identity.resolve() {
                Ok(i) => i,
                Err(e) => return fail(e),
            };
            let args = plan_cmd::PlanArgs {
                case,
                protocol,
                out,
                machine,
                series: select.series,
                rtstruct: select.rtstruct,
                relax,
                normalize: !no_normalize,
                quiet,
                force,
                assume_hfs: select.assume_hfs,
                max_mu_per_beam: limits.max_mu_per_beam,
                max_mu_per_fraction: limits.max_mu_per_fraction,
                max_dose_per_fraction_gy: limits.max_dose_per_fraction_gy,
                normalization_band: match limits.normalisation_band.as_deref() {
                    None => None,
                    Some(&[lo, hi]) => Some([lo, hi]),
                    Some(v) => {
                        return fail(rtopt::Error::Invalid(format!(
                            "--normalisation-band takes two numbers LOW,HIGH, got {v:?}"
                        )))
                    }
                },
                min_gamma_pass_percent: limits.min_gamma_pass,
                ct_calibration: calculation.ct_calibration,
                threads: calculation.threads,
                fidelity_corrections: calculation.fidelity_corrections,
                no_segment_weights: calculation.no_segment_weights,
                memory_budget_bytes: Some(budget),
                identity,
                beam_doses,
            };
            match plan_cmd::plan(&args) {
                Ok(outcome) => {
                    emit(&format!(
                        "{}outputs written to {}\n",
                        outcome.goal_table,
                        outcome.out_dir.display()
                    ));
                    if !outcome.constraints_met {
                        eprintln!("error: hard goals not met on the deliverable dose (see the goal table)");
                        ExitCode::from(EXIT_UNMET)
                    } else if strict && !outcome.all_met {
                        eprintln!("error: --strict: report goals not met (see the goal table)");
                        ExitCode::from(EXIT_UNMET)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => fail(e),
            }
        }
        Command::ExportProblem {
            case,
            protocol,
            out,
            machine,
            select,
            force,
            calculation,
            quiet,
        } => {
            let args = plan_cmd::PlanArgs {
                case,
                protocol,
                out: None,
                machine,
                series: select.series,
                rtstruct: select.rtstruct,
                relax: false,
                normalize: false,
                quiet,
                force,
                assume_hfs: select.assume_hfs,
                ct_calibration: calculation.ct_calibration,
                threads: calculation.threads,
                fidelity_corrections: calculation.fidelity_corrections,
                no_segment_weights: calculation.no_segment_weights,
                memory_budget_bytes: Some(budget),
                ..Default::default()
            };
            match plan_cmd::export_problem(&args, &out) {
                Ok((objective, status)) => {
                    emit(&format!(
                        "rtopt objective {objective:.9} ({status})\nproblem written to {}\n",
                        out.display()
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Compare { plans, html, force } => {
            if let Some(h) = &html {
                let replace = rtopt::outputs::Replace::from_force(force);
                if let Err(e) = rtopt::outputs::check_output_file(h, &plans, replace) {
                    return fail(e);
                }
            }
            match rtopt::report::compare::load_variants(&plans) {
                Ok(vs) => {
                    emit(&rtopt::report::compare::compare_text(&vs));
                    if let Some(h) = html {
                        if let Err(e) = rtopt::report::compare::write_html(&vs, &h) {
                            return fail(e);
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

/// Arguments of `rtopt dose`.
struct DoseRun {
    folder: PathBuf,
    select: CaseSelection,
    beams: Vec<f64>,
    target: Option<String>,
    machine: Option<PathBuf>,
    out: Option<PathBuf>,
    force: bool,
}

fn run_dose(run: &DoseRun, opts: &rtopt::dose::DoseOptions) -> rtopt::Result<()> {
    if let Some(p) = &run.out {
        let mut inputs = vec![run.folder.clone()];
        inputs.extend(run.machine.iter().cloned());
        inputs.extend(run.select.rtstruct.iter().cloned());
        rtopt::outputs::check_output_file(
            p,
            &inputs,
            rtopt::outputs::Replace::from_force(run.force),
        )?;
    }
    let case = load_case(&run.folder, &run.select)?;
    let machine = match &run.machine {
        Some(p) => rtopt::machine::MachineModel::load(p)?,
        None => rtopt::machine::MachineModel::default_6x(),
    };
    let target = match &run.target {
        Some(t) => t.clone(),
        None => rtopt::dose::report::default_target(&case)?,
    };
    let s = rtopt::dose::report::open_field_summary(&case, &target, &run.beams, &machine, opts)?;
    emit(&s.to_string());
    if let Some(p) = &run.out {
        let text =
            serde_json::to_string_pretty(&s).map_err(|e| rtopt::Error::Invalid(e.to_string()))?;
        rtopt::io::atomic::write_file(p, text.as_bytes())?;
    }
    Ok(())
}
