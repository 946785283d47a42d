//! Observers of a running optimisation (argmin's split: the algorithm reports, the observer
//! decides what to show) and cooperative cancellation.
//!
//! A solver calls [`SolverObserver::iteration`] once per interior-point iteration with the
//! figures a planner watches: the objective (in the protocol's units, the weighted sum of the
//! terms of `docs/optimization.md`), the primal residual (worst scaled constraint violation)
//! and the relative duality gap. Returning [`Control::Stop`] ends the solve after that
//! iteration with [`crate::Error::Cancelled`].

use std::sync::Arc;

pub use crate::control::{CancelToken, Control};

/// One iteration of a solver, as reported to observers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolverIteration {
    /// Constraint-generation round (1-based).
    pub round: usize,
    /// Iteration within the round (solver's count).
    pub iteration: u32,
    /// Objective value (primal), protocol units.
    pub objective: f64,
    /// Worst (scaled) violation of the constraints at this iterate.
    pub primal_residual: f64,
    /// Relative duality gap.
    pub gap_rel: f64,
}

/// Receives solver iterations. Called on the solver's thread; keep it cheap.
pub trait SolverObserver: Send + Sync {
    fn iteration(&self, it: &SolverIteration) -> Control;
}

impl SolverObserver for CancelToken {
    fn iteration(&self, _it: &SolverIteration) -> Control {
        if self.is_cancelled() {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// The observers of a solve (cloneable, printable, so options stay `Clone + Debug`).
#[derive(Clone, Default)]
pub struct Observers(pub Vec<Arc<dyn SolverObserver>>);

impl Observers {
    /// Tell every observer; `Stop` when any asks for it.
    pub fn notify(&self, it: &SolverIteration) -> Control {
        let mut c = Control::Continue;
        for o in &self.0 {
            if o.iteration(it) == Control::Stop {
                c = Control::Stop;
            }
        }
        c
    }
    pub fn push(&mut self, o: Arc<dyn SolverObserver>) {
        self.0.push(o);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observers({})", self.0.len())
    }
}
