//! Observers of a planning run (argmin's split: the planner reports, the observer decides
//! what to show) and the stage runner that times each stage, checks the cancellation token
//! between stages and tells every observer.
//!
//! An embedder implements [`PlanObserver`] (all methods have no-op defaults) and passes it
//! with [`crate::plan::Planner::with_observer`]; the command line's progress bars are one such
//! observer. Observers are called on the planner's threads: keep them cheap. Messages never
//! contain patient names or IDs.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::control::{CancelToken, Control};
use crate::error::Result;
use crate::optimize::observer::{SolverIteration, SolverObserver};

/// A stage of the planning pipeline, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlanStage {
    /// Beam arrangement and beamlet grids around the target.
    Beams,
    /// Dose-influence matrix of every beamlet (the expensive part of `prepare`).
    InfluenceMatrix,
    /// Row scaling of the truncated matrix to the untruncated dose of a reference fluence.
    ScatterCorrection,
    /// Structure rows of the dose grid and their partial volumes from the contours.
    StructureVolumes,
    /// Fluence optimisation of one variant.
    Optimisation,
    /// Untruncated dose of the optimised weights, row rescaling and re-solves until the
    /// optimiser's dose matches it (`plan::fidelity`).
    DoseFidelity,
    /// Leaf sequencing of the optimised fluence.
    Sequencing,
    /// Re-optimisation of the segments' MU against the goals (`plan::segment_weights`).
    SegmentWeights,
    /// Untruncated dose of the deliverable segments and the MU normalisation.
    DeliverableDose,
    /// Gamma agreement of the deliverable with the optimised dose.
    Gamma,
    /// Goals, DVHs and metrics on the deliverable dose.
    Report,
    /// Writing the optimisation problem for peer solvers (`rtopt export-problem`).
    Export,
}

impl PlanStage {
    /// The stage's name as printed and recorded in the report's timings.
    pub fn name(self) -> &'static str {
        match self {
            PlanStage::Beams => "beams",
            PlanStage::InfluenceMatrix => "dose influence matrix",
            PlanStage::ScatterCorrection => "scatter correction",
            PlanStage::StructureVolumes => "structure volumes",
            PlanStage::Optimisation => "optimisation",
            PlanStage::DoseFidelity => "dose fidelity",
            PlanStage::Sequencing => "sequencing",
            PlanStage::SegmentWeights => "segment weights",
            PlanStage::DeliverableDose => "deliverable dose",
            PlanStage::Gamma => "gamma (deliverable)",
            PlanStage::Report => "report",
            PlanStage::Export => "export",
        }
    }
}

impl std::fmt::Display for PlanStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Receives the events of a planning run.
pub trait PlanObserver: Send + Sync {
    /// A stage begins.
    fn stage_started(&self, _stage: PlanStage) {}
    /// A stage ended after `seconds` (wall clock); `summary` is one line of figures.
    fn stage_finished(&self, _stage: PlanStage, _seconds: f64, _summary: &str) {}
    /// One solver iteration of the optimisation stage; [`Control::Stop`] cancels the solve.
    fn solver_iteration(&self, _it: &SolverIteration) -> Control {
        Control::Continue
    }
}

/// Wall-clock time of one stage, seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTime {
    pub stage: PlanStage,
    pub seconds: f64,
}

/// Runs stages: checks cancellation, tells the observers, records the timings.
#[derive(Clone, Default)]
pub(crate) struct StageRunner {
    pub observers: Vec<Arc<dyn PlanObserver>>,
    pub cancel: CancelToken,
}

impl StageRunner {
    /// Run `f` as `stage`; `f` returns its result and a one-line summary.
    pub fn run<T>(
        &self,
        stage: PlanStage,
        times: &mut Vec<StageTime>,
        f: impl FnOnce() -> Result<(T, String)>,
    ) -> Result<T> {
        self.cancel.check(stage.name())?;
        for o in &self.observers {
            o.stage_started(stage);
        }
        let t0 = Instant::now();
        let (value, summary) = f()?;
        let seconds = t0.elapsed().as_secs_f64();
        for o in &self.observers {
            o.stage_finished(stage, seconds, &summary);
        }
        times.push(StageTime { stage, seconds });
        Ok(value)
    }

    /// The solver-side observer: forwards iterations to every plan observer and stops the
    /// solve once the token is cancelled.
    pub fn solver_observer(&self) -> Arc<dyn SolverObserver> {
        Arc::new(SolverBridge {
            observers: self.observers.clone(),
            cancel: self.cancel.clone(),
        })
    }
}

struct SolverBridge {
    observers: Vec<Arc<dyn PlanObserver>>,
    cancel: CancelToken,
}

impl SolverObserver for SolverBridge {
    fn iteration(&self, it: &SolverIteration) -> Control {
        let mut c = Control::Continue;
        for o in &self.observers {
            if o.solver_iteration(it) == Control::Stop {
                c = Control::Stop;
            }
        }
        if self.cancel.is_cancelled() {
            c = Control::Stop;
        }
        c
    }
}

/// An observer that records every event, for tests and for embedders that poll.
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<Vec<PlanEvent>>,
}

/// One recorded event of [`EventLog`].
#[derive(Debug, Clone, PartialEq)]
pub enum PlanEvent {
    Started(PlanStage),
    Finished(PlanStage, String),
    Iteration(SolverIteration),
}

impl EventLog {
    /// The events so far, in order.
    pub fn events(&self) -> Vec<PlanEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
    /// Number of solver iterations seen.
    pub fn iterations(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, PlanEvent::Iteration(_)))
            .count()
    }
    fn push(&self, e: PlanEvent) {
        if let Ok(mut v) = self.events.lock() {
            v.push(e);
        }
    }
}

impl PlanObserver for EventLog {
    fn stage_started(&self, stage: PlanStage) {
        self.push(PlanEvent::Started(stage));
    }
    fn stage_finished(&self, stage: PlanStage, _seconds: f64, summary: &str) {
        self.push(PlanEvent::Finished(stage, summary.to_string()));
    }
    fn solver_iteration(&self, it: &SolverIteration) -> Control {
        self.push(PlanEvent::Iteration(*it));
        Control::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_times_tells_and_refuses_after_cancel() {
        let log = Arc::new(EventLog::default());
        let runner = StageRunner {
            observers: vec![log.clone()],
            cancel: CancelToken::new(),
        };
        let mut times = Vec::new();
        let v = runner
            .run(PlanStage::Beams, &mut times, || {
                Ok((7, "9 beams".to_string()))
            })
            .unwrap();
        assert_eq!(v, 7);
        assert_eq!(times.len(), 1);
        assert_eq!(
            log.events(),
            vec![
                PlanEvent::Started(PlanStage::Beams),
                PlanEvent::Finished(PlanStage::Beams, "9 beams".into())
            ]
        );
        let it = SolverIteration {
            round: 1,
            iteration: 1,
            objective: 1.0,
            primal_residual: 0.0,
            gap_rel: 0.0,
        };
        let bridge = runner.solver_observer();
        assert_eq!(bridge.iteration(&it), Control::Continue);
        assert_eq!(log.iterations(), 1);
        runner.cancel.cancel();
        assert_eq!(bridge.iteration(&it), Control::Stop);
        let e = runner
            .run(PlanStage::Sequencing, &mut times, || {
                Ok(((), String::new()))
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "cancelled during sequencing");
        assert_eq!(times.len(), 1, "a refused stage records no time");
    }
}
