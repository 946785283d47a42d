//! `rtopt` command line: parses arguments and calls the library.
//!
//! Exit codes: 0 success (for `plan`: planned and every hard goal met); 1 internal or solver
//! failure; 2 invalid input (file, tag, structure, protocol); 3 infeasible protocol;
//! 4 unmet soft goals with `--strict` (or unmet hard goals after sequencing).

#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rtopt",
    version,
    about = "IMRT treatment-planning optimisation engine"
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
        /// SeriesInstanceUID to use when the folder holds several CT series.
        #[arg(long)]
        series: Option<String>,
        /// RT Structure Set file (default: the one in the folder).
        #[arg(long)]
        rtstruct: Option<PathBuf>,
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
        /// SeriesInstanceUID when the folder holds several CT series.
        #[arg(long)]
        series: Option<String>,
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
        /// Output folder (created; replaced atomically when it exists).
        #[arg(long)]
        out: PathBuf,
        /// Machine description (JSON). Default: the shipped generic 6 MV machine.
        #[arg(long)]
        machine: Option<PathBuf>,
        /// SeriesInstanceUID when the folder holds several CT series.
        #[arg(long)]
        series: Option<String>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Classical auto-segmentation (body, lungs) written with the imported ROIs into a new
    /// RT Structure Set; the input RTSTRUCT is never modified.
    Segment(rtopt::segment::cli::SegmentArgs),
    /// Dice and 95 % Hausdorff distance of the classical segmentation against a reference.
    SegmentEval(rtopt::segment::cli::SegmentEvalArgs),
    /// Compare plan variants (output folders of `rtopt plan`): metrics, goals, DVHs.
    Compare {
        /// Two or more output folders.
        #[arg(required = true, num_args = 2..)]
        plans: Vec<PathBuf>,
        /// Also write an HTML comparison here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Uniform-fluence dose of a case: beamlets around the target, 2 Gy target mean.
    Dose {
        /// Case folder (CT + RTSTRUCT).
        folder: PathBuf,
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
        /// Write the summary as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

const EXIT_FAILURE: u8 = 1;
const EXIT_INPUT: u8 = 2;
const EXIT_INFEASIBLE: u8 = 3;
const EXIT_UNMET: u8 = 4;

fn exit_code(e: &rtopt::Error) -> u8 {
    use rtopt::Error as E;
    match e {
        E::Infeasible { .. } => EXIT_INFEASIBLE,
        E::Solver(_) => EXIT_FAILURE,
        _ => EXIT_INPUT,
    }
}

fn fail(e: rtopt::Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(exit_code(&e))
}

fn load_case(
    folder: &Path,
    series: Option<String>,
    rtstruct: Option<PathBuf>,
) -> rtopt::Result<rtopt::Case> {
    let opts = rtopt::LoadOptions {
        ct: rtopt::ct::CtImportOptions {
            series_uid: series,
            ..Default::default()
        },
        rtstruct,
    };
    rtopt::Case::load(folder, &opts)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Segment(a) => match rtopt::segment::cli::segment(&a) {
            Ok(o) => {
                o.report.iter().for_each(|l| println!("{l}"));
                println!(
                    "wrote {} ({} ROIs, {} new)",
                    o.out.display(),
                    o.rois,
                    o.new_rois
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::SegmentEval(a) => match rtopt::segment::cli::segment_eval_rows(&a) {
            Ok(rows) if a.json => match serde_json::to_string_pretty(&rows) {
                Ok(j) => {
                    println!("{j}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(rtopt::Error::Invalid(e.to_string())),
            },
            Ok(rows) => {
                print!("{}", rtopt::segment::cli::format_rows(&rows));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Dose {
            folder,
            beams,
            target,
            machine,
            cutoff_mm,
            threshold,
            out,
        } => {
            let mut opts = rtopt::dose::DoseOptions::default();
            if let Some(c) = cutoff_mm {
                opts.lateral_cutoff_mm = c;
            }
            if let Some(t) = threshold {
                opts.relative_threshold = t;
            }
            match run_dose(&folder, &beams, target, machine, &opts, out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_INPUT)
                }
            }
        }
        Command::Inspect {
            folder,
            series,
            rtstruct,
            json,
        } => match load_case(&folder, series, rtstruct) {
            Ok(case) => {
                let ins = case.inspect();
                if json {
                    match serde_json::to_string_pretty(&ins) {
                        Ok(s) => println!("{s}"),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(EXIT_FAILURE);
                        }
                    }
                } else {
                    print!("{ins}");
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
            series,
            relax,
            strict,
            no_normalize,
            quiet,
        } => {
            let args = rtopt::cli::PlanArgs {
                case,
                protocol,
                out,
                machine,
                series,
                relax,
                normalize: !no_normalize,
                quiet,
            };
            match rtopt::cli::plan(&args) {
                Ok(outcome) => {
                    print!("{}", outcome.goal_table);
                    println!("outputs written to {}", outcome.out_dir.display());
                    if !outcome.constraints_met {
                        eprintln!("error: hard goals not met on the deliverable dose (see the goal table)");
                        ExitCode::from(EXIT_UNMET)
                    } else if strict && !outcome.all_met {
                        eprintln!("error: --strict: soft goals not met (see the goal table)");
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
            series,
            quiet,
        } => {
            let args = rtopt::cli::PlanArgs {
                case,
                protocol,
                out: None,
                machine,
                series,
                relax: false,
                normalize: false,
                quiet,
            };
            match rtopt::cli::export_problem(&args, &out) {
                Ok((objective, status)) => {
                    println!("rtopt objective {objective:.9} ({status})");
                    println!("problem written to {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Compare { plans, html } => match rtopt::report::compare::load_variants(&plans) {
            Ok(vs) => {
                print!("{}", rtopt::report::compare::compare_text(&vs));
                if let Some(h) = html {
                    if let Err(e) = rtopt::report::compare::write_html(&vs, &h) {
                        return fail(e);
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}

fn run_dose(
    folder: &std::path::Path,
    beams: &[f64],
    target: Option<String>,
    machine: Option<PathBuf>,
    opts: &rtopt::dose::DoseOptions,
    out: Option<PathBuf>,
) -> rtopt::Result<()> {
    let case = rtopt::Case::load(folder, &Default::default())?;
    let machine = match machine {
        Some(p) => rtopt::machine::MachineModel::load(&p)?,
        None => rtopt::machine::MachineModel::default_6x(),
    };
    let target = match target {
        Some(t) => t,
        None => rtopt::dose::report::default_target(&case)?,
    };
    let s = rtopt::dose::report::open_field_summary(&case, &target, beams, &machine, opts)?;
    print!("{s}");
    if let Some(p) = out {
        let text =
            serde_json::to_string_pretty(&s).map_err(|e| rtopt::Error::Invalid(e.to_string()))?;
        rtopt::atomic::write_file(&p, text.as_bytes())?;
    }
    Ok(())
}
