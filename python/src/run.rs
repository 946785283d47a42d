//! Long work off the GIL: a computation of the library runs on a worker thread while the
//! calling thread waits with the GIL released, waking every [`POLL`] to let Python run its
//! signal handlers. A Ctrl-C (SIGINT → `KeyboardInterrupt`) cancels the computation through
//! its [`CancelToken`]; the library checks the token per beamlet, per beam, per solver
//! iteration and between stages, and a cancelled stage writes nothing. The worker is always
//! joined before the call returns, so no computation outlives its Python call.
//!
//! [`PyObserver`] is the planner's observer: it counts the stages each planner started (the
//! honest answer to "did this variant rebuild the influence matrix?") and forwards stage and
//! solver events to an optional Python callback. An exception raised by the callback cancels
//! the computation and is raised by the call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;
use rtopt::control::{CancelToken, Control};
use rtopt::optimize::observer::SolverIteration;
use rtopt::plan::{PlanObserver, PlanStage};

use crate::errors::to_py;
use crate::InternalError;

/// How often a waiting call wakes to run Python's signal handlers.
const POLL: Duration = Duration::from_millis(20);

/// Lock a mutex, also after a panic elsewhere poisoned it (the data are plain counters and
/// slots, valid at every point).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The planner's observer: stage counts and the Python progress callback.
#[derive(Default)]
pub struct PyObserver {
    /// Set once, at construction: without one, no event takes the GIL.
    callback: Option<Py<PyAny>>,
    /// The first exception the callback raised during the call in progress.
    error: Mutex<Option<PyErr>>,
    /// The token of the call in progress (cancelled when the callback raises).
    cancel: Mutex<CancelToken>,
    /// Stage name → number of times the stage started.
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl PyObserver {
    pub fn new(callback: Option<Py<PyAny>>) -> Arc<Self> {
        Arc::new(PyObserver {
            callback,
            ..Default::default()
        })
    }

    /// Stage name → how often it started, over every call on this planner.
    pub fn stage_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.counts)
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    /// Call the Python callback with an event built by `fill`; an exception is kept and
    /// cancels the computation.
    fn emit(&self, fill: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>) {
        let Some(cb) = &self.callback else {
            return;
        };
        if lock(&self.error).is_some() {
            return;
        }
        let outcome = Python::attach(|py| {
            let event = PyDict::new(py);
            fill(&event)?;
            cb.call1(py, (event,)).map(|_| ())
        });
        if let Err(e) = outcome {
            *lock(&self.error) = Some(e);
            lock(&self.cancel).cancel();
        }
    }
}

impl PlanObserver for PyObserver {
    fn stage_started(&self, stage: PlanStage) {
        *lock(&self.counts).entry(stage.name()).or_insert(0) += 1;
        self.emit(|d| {
            d.set_item("event", "stage_started")?;
            d.set_item("stage", stage.name())
        });
    }

    fn stage_finished(&self, stage: PlanStage, seconds: f64, summary: &str) {
        self.emit(|d| {
            d.set_item("event", "stage_finished")?;
            d.set_item("stage", stage.name())?;
            d.set_item("seconds", seconds)?;
            d.set_item("summary", summary)
        });
    }

    fn solver_iteration(&self, it: &SolverIteration) -> Control {
        self.emit(|d| {
            d.set_item("event", "iteration")?;
            d.set_item("round", it.round)?;
            d.set_item("iteration", it.iteration)?;
            d.set_item("objective", it.objective)?;
            d.set_item("primal_residual", it.primal_residual)?;
            d.set_item("gap_rel", it.gap_rel)
        });
        Control::Continue
    }
}

/// Sets its flag when dropped.
struct Finished<'a>(&'a AtomicBool);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Run `work` on a worker thread with the GIL released; Ctrl-C cancels it through `cancel`
/// and raises `KeyboardInterrupt` once the worker has stopped. `observer` (when given) is
/// told the token, so that an exception in the progress callback cancels too.
pub fn blocking<T: Send>(
    py: Python<'_>,
    observer: Option<&PyObserver>,
    cancel: &CancelToken,
    work: impl FnOnce() -> rtopt::Result<T> + Send,
) -> PyResult<T> {
    if let Some(o) = observer {
        *lock(&o.cancel) = cancel.clone();
        *lock(&o.error) = None;
    }
    let done = AtomicBool::new(false);
    let (outcome, interrupt) = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            // Set on return and on a panic's unwinding alike, so the wait always ends.
            let _finished = Finished(&done);
            work()
        });
        let mut interrupt: Option<PyErr> = None;
        loop {
            let finished = py.detach(|| {
                let t0 = Instant::now();
                while !done.load(Ordering::SeqCst) && t0.elapsed() < POLL {
                    std::thread::sleep(Duration::from_millis(2));
                }
                done.load(Ordering::SeqCst)
            });
            if finished {
                break;
            }
            if interrupt.is_none() {
                if let Err(e) = py.check_signals() {
                    cancel.cancel();
                    interrupt = Some(e);
                }
            }
        }
        (py.detach(|| worker.join()), interrupt)
    });
    if let Some(e) = interrupt {
        return Err(e);
    }
    if let Some(e) = observer.and_then(|o| lock(&o.error).take()) {
        return Err(e);
    }
    match outcome {
        Ok(r) => r.map_err(to_py),
        Err(_) => Err(InternalError::new_err(
            "rtopt panicked inside a computation (a bug: please report it)",
        )),
    }
}
