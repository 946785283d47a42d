//! Stage progress on stderr: an indicatif spinner with elapsed time for each stage when stderr
//! is a terminal, plain `stage ... done in s` lines otherwise, nothing when quiet.
//! Messages never contain patient names or IDs.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

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
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
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
            (ProgressMode::Bars, Some(b)) => b.finish_with_message(line),
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
