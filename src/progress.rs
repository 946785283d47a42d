//! Stage progress on stderr: an indicatif spinner with elapsed time for each stage when stderr
//! is a terminal, plain `stage ... done in s` lines otherwise, nothing when quiet.
//! Messages never contain patient names or IDs.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::optimize::observer::{Control, SolverIteration, SolverObserver};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Nothing.
    Quiet,
    /// One line per finished stage.
    Plain,
    /// Live spinners (stderr is a terminal).
    Bars,
}

impl ProgressMode {
    /// `Bars` when stderr is a terminal, else `Plain`; `Quiet` when asked.
    pub fn auto(quiet: bool) -> Self {
        if quiet {
            ProgressMode::Quiet
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Plain
        }
    }
}

/// Reports stages and records their timings.
pub struct Progress {
    mode: ProgressMode,
    timings: Vec<(String, f64)>,
}

/// A running stage; finish it with [`Progress::finish`].
pub struct Stage {
    name: String,
    start: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        Progress {
            mode,
            timings: Vec::new(),
        }
    }

    /// Start a stage.
    pub fn start(&self, name: &str) -> Stage {
        let bar = (self.mode == ProgressMode::Bars).then(|| {
            let b = ProgressBar::new_spinner();
            // `wide_msg` is cut to the terminal's width, so the live line never wraps (a
            // wrapped spinner line garbles the lines above it).
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_message(name.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Stage {
            name: name.to_string(),
            start: Instant::now(),
            bar,
        }
    }

    /// Finish a stage with an optional detail (e.g. `nnz 30.1 M`), recording its time.
    pub fn finish(&mut self, stage: Stage, detail: &str) -> f64 {
        let secs = stage.start.elapsed().as_secs_f64();
        let line = if detail.is_empty() {
            format!("{:<22} {:>7.2} s", stage.name, secs)
        } else {
            format!("{:<22} {:>7.2} s  {}", stage.name, secs, detail)
        };
        match (self.mode, stage.bar) {
            (ProgressMode::Bars, Some(b)) => {
                // The finished line is printed as plain text after the spinner is cleared:
                // it may be longer than the terminal and wraps cleanly then.
                b.finish_and_clear();
                eprintln!("{line}");
            }
            (ProgressMode::Plain, _) => eprintln!("{line}"),
            _ => {}
        }
        self.timings.push((stage.name, secs));
        secs
    }

    /// Recorded (stage, seconds) pairs.
    pub fn timings(&self) -> &[(String, f64)] {
        &self.timings
    }
}

/// Interval between solver progress lines when stderr is not a terminal.
pub const PLAIN_SOLVER_INTERVAL: Duration = Duration::from_secs(5);

impl Stage {
    /// An observer that shows solver iterations under this stage: on the live line of a
    /// terminal, or as a plain line every [`PLAIN_SOLVER_INTERVAL`] otherwise (nothing when
    /// quiet).
    pub fn solver_observer(&self, mode: ProgressMode) -> Arc<dyn SolverObserver> {
        Arc::new(SolverProgress {
            stage: self.name.clone(),
            bar: self.bar.clone(),
            plain: mode == ProgressMode::Plain,
            last: Mutex::new(Instant::now()),
        })
    }
}

struct SolverProgress {
    stage: String,
    bar: Option<ProgressBar>,
    plain: bool,
    last: Mutex<Instant>,
}

impl SolverProgress {
    fn text(&self, it: &SolverIteration) -> String {
        format!(
            "{}: round {} iteration {:>3}  objective {:.6e}  primal residual {:.2e}  gap {:.2e}",
            self.stage, it.round, it.iteration, it.objective, it.primal_residual, it.gap_rel
        )
    }
}

impl SolverObserver for SolverProgress {
    fn iteration(&self, it: &SolverIteration) -> Control {
        if let Some(b) = &self.bar {
            b.set_message(self.text(it));
        } else if self.plain {
            if let Ok(mut last) = self.last.lock() {
                if last.elapsed() >= PLAIN_SOLVER_INTERVAL {
                    *last = Instant::now();
                    eprintln!("  {}", self.text(it));
                }
            }
        }
        Control::Continue
    }
}
