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
}

/// Exit code for invalid input (bad file, missing tag, unknown structure).
const EXIT_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect {
            folder,
            series,
            rtstruct,
            json,
        } => {
            let opts = rtopt::LoadOptions {
                ct: rtopt::ct::CtImportOptions {
                    series_uid: series,
                    memory_budget_bytes: Some(rtopt::budget::default_memory_budget_bytes()),
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
