//! `rtopt` command line: parses arguments and calls the library.

use std::path::PathBuf;
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

/// Exit code for invalid input (bad file, missing tag, unknown structure).
const EXIT_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
        } => {
            let opts = rtopt::LoadOptions {
                ct: rtopt::ct::CtImportOptions {
                    series_uid: series,
                    memory_budget_bytes: None,
                },
                rtstruct,
            };
            match rtopt::Case::load(&folder, &opts) {
                Ok(case) => {
                    let ins = case.inspect();
                    if json {
                        match serde_json::to_string_pretty(&ins) {
                            Ok(s) => println!("{s}"),
                            Err(e) => {
                                eprintln!("error: {e}");
                                return ExitCode::from(1);
                            }
                        }
                    } else {
                        print!("{ins}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_INPUT)
                }
            }
        }
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
