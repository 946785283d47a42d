//! Stage progress on stderr, as a [`PlanObserver`]: an indicatif spinner with elapsed time
//! for each stage when stderr is a terminal, plain `stage  seconds  figures` lines otherwise,
//! nothing when quiet. Messages never contain patient names or IDs.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rtopt::control::Control;
use rtopt::optimize::observer::SolverIteration;
use rtopt::plan::{PlanObserver, PlanStage};

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

/// Interval between solver progress lines when stderr is not a terminal.
pub const PLAIN_SOLVER_INTERVAL: Duration = Duration::from_secs(5);

/// The command line's observer of a planning run.
pub struct TerminalProgress {
    mode: ProgressMode,
    state: Mutex<State>,
}

struct State {
    stage: Option<PlanStage>,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl TerminalProgress {
    pub fn new(mode: ProgressMode) -> Self {
        TerminalProgress {
            mode,
            state: Mutex::new(State {
                stage: None,
                bar: None,
                last_line: Instant::now(),
            }),
        }
    }
}

impl PlanObserver for TerminalProgress {
    fn stage_started(&self, stage: PlanStage) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.stage = Some(stage);
        st.last_line = Instant::now();
        if self.mode == ProgressMode::Bars {
            let b = ProgressBar::new_spinner();
            // `wide_msg` is cut to the terminal's width, so the live line never wraps (a
            // wrapped spinner line garbles the lines above it).
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_message(stage.name());
            b.enable_steady_tick(Duration::from_millis(120));
            st.bar = Some(b);
        }
    }

    fn stage_finished(&self, stage: PlanStage, seconds: f64, summary: &str) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let name = stage.name();
        let line = if summary.is_empty() {
            format!("{name:<22} {seconds:>7.2} s")
        } else {
            format!("{name:<22} {seconds:>7.2} s  {summary}")
        };
        // The finished line is printed as plain text after the spinner is cleared: it may be
        // longer than the terminal and wraps cleanly then.
        if let Some(b) = st.bar.take() {
            b.finish_and_clear();
        }
        if self.mode != ProgressMode::Quiet {
            eprintln!("{line}");
        }
        st.stage = None;
    }

    fn solver_iteration(&self, it: &SolverIteration) -> Control {
        let Ok(mut st) = self.state.lock() else {
            return Control::Continue;
        };
        let text = format!(
            "{}: round {} iteration {:>3}  objective {:.6e}  primal residual {:.2e}  gap {:.2e}",
            st.stage.map(PlanStage::name).unwrap_or("optimisation"),
            it.round,
            it.iteration,
            it.objective,
            it.primal_residual,
            it.gap_rel
        );
        if let Some(b) = &st.bar {
            b.set_message(text);
        } else if self.mode == ProgressMode::Plain
            && st.last_line.elapsed() >= PLAIN_SOLVER_INTERVAL
        {
            st.last_line = Instant::now();
            eprintln!("  {text}");
        }
        Control::Continue
    }
}
