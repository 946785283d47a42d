//! The staged planner in Python: `Protocol`, `Planner` → `PreparedPlan` (beams and the
//! influence matrix, built once) → `OptimisedPlan` (any number of variants) →
//! `SequencedPlan` → `PlannedCase` (deliverable dose, report, `write`).
//!
//! `Planner` is configured as `rtopt plan` configures it from the same arguments, so a plan
//! made here and one made on the command line are the same plan (same weights, same files
//! given the same creation time). Structured results (goals, report) cross as JSON text that
//! the Python package parses into plain dicts and lists.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use numpy::{IntoPyArray, PyArray1, PyArray3};
use pyo3::prelude::*;
use rtopt::control::CancelToken;
use rtopt::dose::DoseGrid;
use rtopt::io::dicom::identity::{CreationTime, SOURCE_DATE_EPOCH};
use rtopt::optimize::OptimizeOptions;
use rtopt::outputs::Replace;

use crate::case::{grid_array, zyx, Case};
use crate::errors::{to_py, IntoPy};
use crate::run::{blocking, PyObserver};
use crate::{InputError, InternalError};

fn json<T: serde::Serialize + ?Sized>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| InternalError::new_err(e.to_string()))
}

/// A planning protocol (prescription, beams, goals), from a TOML file, TOML text or JSON
/// text (the Python package turns a dict into JSON).
#[pyclass(module = "rtopt._native", frozen)]
pub struct Protocol {
    inner: rtopt::optimize::protocol::Protocol,
    /// Shown in the report: the file's stem (through symlinks), else the given name.
    name: String,
    path: Option<PathBuf>,
}

#[pymethods]
impl Protocol {
    /// Read a protocol file (TOML, format of data/protocols/).
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Protocol> {
        let inner = rtopt::optimize::protocol::Protocol::load(&path).py_err()?;
        // The file's own name also behind a symlink, as `rtopt plan` names it.
        let name = std::fs::canonicalize(&path)
            .unwrap_or_else(|_| path.clone())
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "protocol".into());
        Ok(Protocol {
            inner,
            name,
            path: Some(path),
        })
    }

    /// Parse TOML text; `name` is shown in the report and in error messages.
    #[staticmethod]
    #[pyo3(signature = (text, name="protocol"))]
    fn from_toml(text: &str, name: &str) -> PyResult<Protocol> {
        let source = PathBuf::from(format!("<{name}>"));
        let inner = rtopt::optimize::protocol::Protocol::from_toml_str(text, &source).py_err()?;
        Ok(Protocol {
            inner,
            name: name.into(),
            path: None,
        })
    }

    /// Parse JSON text of the same structure as the TOML format.
    #[staticmethod]
    #[pyo3(signature = (text, name="protocol"))]
    fn from_json(text: &str, name: &str) -> PyResult<Protocol> {
        let source = PathBuf::from(format!("<{name}>"));
        let inner: rtopt::optimize::protocol::Protocol =
            serde_json::from_str(text).map_err(|e| {
                to_py(rtopt::Error::Config {
                    path: source.clone(),
                    reason: e.to_string(),
                })
            })?;
        inner.validate(&source).py_err()?;
        Ok(Protocol {
            inner,
            name: name.into(),
            path: None,
        })
    }

    /// The protocol as JSON text (the Python package parses it into a dict).
    fn to_json(&self) -> PyResult<String> {
        json(&self.inner)
    }

    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// The file it was read from, if any.
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.path.clone()
    }

    /// Prescribed total dose, Gy.
    #[getter]
    fn prescription_gy(&self) -> f64 {
        self.inner.prescription.total_dose_gy
    }

    #[getter]
    fn fractions(&self) -> u32 {
        self.inner.prescription.fractions
    }

    /// The structures the protocol names.
    #[getter]
    fn structures(&self) -> Vec<String> {
        self.inner.referenced_structures()
    }

    fn __repr__(&self) -> String {
        format!(
            "<rtopt.Protocol '{}': {} Gy in {}>",
            self.name, self.inner.prescription.total_dose_gy, self.inner.prescription.fractions
        )
    }
}

/// The creation time of SOURCE_DATE_EPOCH (`value`, else the environment variable, as the
/// command line reads it); `None`: the clock when the plan is finished.
fn creation_time(value: Option<String>) -> rtopt::Result<Option<CreationTime>> {
    let v = value.or_else(|| std::env::var(SOURCE_DATE_EPOCH).ok());
    match v {
        Some(v) if !v.trim().is_empty() => Ok(Some(CreationTime::from_source_date_epoch(&v)?)),
        _ => Ok(None),
    }
}

/// A configured planning run of one case and protocol. `prepare()` consumes it.
#[pyclass(module = "rtopt._native")]
pub struct Planner {
    inner: Option<rtopt::plan::Planner>,
    observer: Arc<PyObserver>,
    inputs: Vec<PathBuf>,
}

#[pymethods]
impl Planner {
    /// Options as `rtopt plan` takes them (defaults are its defaults): `machine` and
    /// `ct_calibration` files, `threads`, `fidelity_corrections` (None: 2), `segment_weights`,
    /// `relax`, `normalize`, `beam_doses`, plan label/name/description,
    /// `source_date_epoch` (else the environment variable), `memory_budget_bytes`, the
    /// acceptance limits (`max_mu_per_beam`, `max_mu_per_fraction`,
    /// `max_dose_per_fraction_gy`, `normalisation_band` as `(low, high)`,
    /// `min_gamma_pass_percent`), and
    /// `progress`, a callable that receives one dict per stage start/finish and per solver
    /// iteration (called from a worker thread, with the GIL held).
    #[new]
    #[pyo3(signature = (
        case, protocol, *, machine=None, ct_calibration=None, threads=None,
        fidelity_corrections=None, segment_weights=true, relax=false, normalize=true,
        beam_doses=false, plan_label=None, plan_name=None, plan_description=None,
        source_date_epoch=None, memory_budget_bytes=None, max_mu_per_beam=None,
        max_mu_per_fraction=None, max_dose_per_fraction_gy=None, normalisation_band=None,
        min_gamma_pass_percent=None, progress=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        case: &Case,
        protocol: &Protocol,
        machine: Option<PathBuf>,
        ct_calibration: Option<PathBuf>,
        threads: Option<usize>,
        fidelity_corrections: Option<usize>,
        segment_weights: bool,
        relax: bool,
        normalize: bool,
        beam_doses: bool,
        plan_label: Option<String>,
        plan_name: Option<String>,
        plan_description: Option<String>,
        source_date_epoch: Option<String>,
        memory_budget_bytes: Option<u64>,
        max_mu_per_beam: Option<f64>,
        max_mu_per_fraction: Option<f64>,
        max_dose_per_fraction_gy: Option<f64>,
        normalisation_band: Option<(f64, f64)>,
        min_gamma_pass_percent: Option<f64>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Planner> {
        use rtopt::plan;
        let calibration = match &ct_calibration {
            Some(c) => Some(rtopt::calibration::CtCalibration::load(c).py_err()?),
            None => None,
        };
        let machine_model = match &machine {
            Some(m) => rtopt::machine::MachineModel::load(m).py_err()?,
            None => rtopt::machine::MachineModel::default_6x(),
        };
        let identity = plan::PlanIdentity {
            label: plan_label,
            name: plan_name,
            description: plan_description,
            created: creation_time(source_date_epoch).py_err()?,
        };
        // The acceptance limits of `rtopt plan`'s --max-mu-per-beam, ... (None: its default).
        let mut acceptance = plan::PlanAcceptance::default();
        if max_mu_per_beam.is_some() {
            acceptance.max_mu_per_beam = max_mu_per_beam;
        }
        if max_mu_per_fraction.is_some() {
            acceptance.max_mu_per_fraction = max_mu_per_fraction;
        }
        if let Some(v) = max_dose_per_fraction_gy {
            acceptance.max_dose_per_fraction_gy = v;
        }
        if let Some((low, high)) = normalisation_band {
            acceptance.normalization_band = [low, high];
        }
        if let Some(v) = min_gamma_pass_percent {
            acceptance.min_gamma_pass_percent = v;
        }
        let observer = PyObserver::new(progress);
        let mut p = plan::Planner::new(case.inner.clone(), protocol.inner.clone())
            .with_protocol_source(&protocol.name, protocol.path.as_deref())
            .with_machine(machine_model);
        if let Some(c) = calibration {
            p = p.with_ct_calibration(c);
        }
        if let Some(n) = threads {
            p = p.with_threads(n);
        }
        if let Some(n) = fidelity_corrections {
            p = p.with_dose_fidelity(plan::DoseFidelity {
                max_corrections: n,
                ..Default::default()
            });
        }
        if !segment_weights {
            p = p.with_segment_weights(plan::SegmentWeightOptions { enabled: false });
        }
        let p = p
            .with_memory_budget(
                memory_budget_bytes.unwrap_or_else(rtopt::budget::default_memory_budget_bytes),
            )
            .with_plan_identity(identity)
            .with_beam_doses(beam_doses)
            .with_optimize_options(OptimizeOptions {
                relax,
                ..plan::optimisation_defaults()
            })
            .with_deliverable_normalization(normalize)
            .with_acceptance(acceptance)
            .with_observer(observer.clone());
        // Every check that can fail, before any computation.
        p.check_before_computation().py_err()?;
        // The inputs `rtopt plan` protects from being overwritten by an output.
        let mut inputs: Vec<PathBuf> = case.inner.dir.iter().cloned().collect();
        inputs.extend(case.inner.structure_set.iter().map(|s| s.path.clone()));
        inputs.extend(protocol.path.iter().cloned());
        inputs.extend(machine);
        inputs.extend(ct_calibration);
        Ok(Planner {
            inner: Some(p),
            observer,
            inputs,
        })
    }

    /// Check that `out` may be written (not an input, not inside one; an existing folder
    /// only with `force` and only one rtopt wrote), before minutes of computation.
    #[pyo3(signature = (out, force=false))]
    fn check_output(&self, out: PathBuf, force: bool) -> PyResult<()> {
        rtopt::outputs::check_output_dir(&out, &self.inputs, Replace::from_force(force)).py_err()
    }

    /// Stage 1: beams, the influence matrix and the optimisation problem. Releases the GIL;
    /// Ctrl-C stops it. The planner cannot be prepared twice.
    fn prepare(&mut self, py: Python<'_>) -> PyResult<PreparedPlan> {
        let planner = self.inner.take().ok_or_else(|| {
            InputError::new_err(
                "this Planner was already used by prepare() (a planner prepares once, also \
                 after an error or Ctrl-C); make a new one",
            )
        })?;
        let cancel = CancelToken::new();
        let planner = planner.with_cancel_token(cancel.clone());
        let inner = blocking(py, Some(&self.observer), &cancel, move || planner.prepare())?;
        let dose_grid = Arc::new(inner.dose_grid().clone());
        Ok(PreparedPlan {
            inner,
            observer: self.observer.clone(),
            dose_grid,
            inputs: self.inputs.clone(),
        })
    }

    /// How often each stage started on this planner (`{"dose influence matrix": 1, ...}`).
    fn stage_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.observer.stage_counts()
    }
}

/// Rows of the dose grid (influence-matrix rows) scattered onto the full grid, zero outside
/// the computed voxels, as `[z, y, x]`.
fn full_grid<'py>(
    py: Python<'py>,
    grid: &DoseGrid,
    rows: &[f64],
) -> PyResult<Bound<'py, PyArray3<f64>>> {
    let mut full = vec![0.0; grid.grid.len()];
    for (&v, &d) in grid.voxels.iter().zip(rows) {
        full[v as usize] = d;
    }
    grid_array(py, &grid.grid, full)
}

/// The dose grid's geometry as a dict-like tuple: shape `[z, y, x]`, spacing and origin
/// (x, y, z, LPS mm).
type GridGeometry = ((usize, usize, usize), [f64; 3], [f64; 3]);

fn geometry(grid: &DoseGrid) -> GridGeometry {
    (zyx(&grid.grid), grid.grid.spacing_mm, grid.grid.origin_mm)
}

/// Beams, influence matrix and optimisation problem of a case, prepared once; solve any
/// number of variants on it.
#[pyclass(module = "rtopt._native")]
pub struct PreparedPlan {
    inner: rtopt::plan::PreparedPlan,
    observer: Arc<PyObserver>,
    dose_grid: Arc<DoseGrid>,
    inputs: Vec<PathBuf>,
}

impl PreparedPlan {
    /// A fresh cancellation token for the next call (one that was cancelled stays so).
    fn fresh_token(&mut self) -> CancelToken {
        let t = CancelToken::new();
        self.inner.set_cancel_token(t.clone());
        t
    }
}

#[pymethods]
impl PreparedPlan {
    /// Stage 2: optimise a variant. `weights` and `doses` are lists of
    /// `(structure, goal text, value)`: the first goal of the structure whose description
    /// contains the text gets the new weight, or the new dose (Gy total). No dose is
    /// recalculated for the influence matrix; the GIL is released and Ctrl-C stops it.
    #[pyo3(signature = (name="", weights=Vec::new(), doses=Vec::new()))]
    fn optimise(
        &mut self,
        py: Python<'_>,
        name: &str,
        weights: Vec<(String, String, f64)>,
        doses: Vec<(String, String, f64)>,
    ) -> PyResult<OptimisedPlan> {
        let mut variant = rtopt::plan::Variant::new(name);
        for (s, g, w) in &weights {
            variant = variant.weight(s, g, *w);
        }
        for (s, g, d) in &doses {
            variant = variant.dose_gy(s, g, *d);
        }
        let cancel = self.fresh_token();
        let observer = self.observer.clone();
        let inner = &mut self.inner;
        let optimised = blocking(py, Some(&observer), &cancel, || inner.optimise(&variant))?;
        Ok(OptimisedPlan {
            inner: optimised,
            dose_grid: self.dose_grid.clone(),
        })
    }

    /// Stage 3: leaf sequencing and the segment-weight optimisation.
    fn sequence(&mut self, py: Python<'_>, optimised: &OptimisedPlan) -> PyResult<SequencedPlan> {
        let cancel = self.fresh_token();
        let observer = self.observer.clone();
        let inner = &self.inner;
        let o = &optimised.inner;
        let stage = blocking(py, Some(&observer), &cancel, || inner.sequence(o))?;
        Ok(SequencedPlan { inner: stage })
    }

    /// Stage 4: deliverable dose, normalisation, gamma, acceptance and the report
    /// (`PlanRefusedError` when the plan is not acceptable).
    fn finish(
        &mut self,
        py: Python<'_>,
        optimised: &OptimisedPlan,
        sequenced: &SequencedPlan,
    ) -> PyResult<PlannedCase> {
        let cancel = self.fresh_token();
        let observer = self.observer.clone();
        let inner = &mut self.inner;
        let o = &optimised.inner;
        let s = sequenced.inner.clone();
        let planned = blocking(py, Some(&observer), &cancel, move || inner.finish(o, s))?;
        Ok(PlannedCase {
            inner: planned,
            inputs: self.inputs.clone(),
        })
    }

    /// The optimisation influence matrix as it stands (Gy per MU, one fraction; rows:
    /// dose-grid voxels in `dose_grid_voxels` order, columns: beamlets) in CSR form:
    /// `(data float32, indices int32, indptr int32, (n_rows, n_cols))`, the index types SciPy
    /// keeps without a copy. One copy of the matrix's row layout. Before any `optimise` it is
    /// the scatter-corrected matrix of `prepare`; after one, that variant's matrix with the
    /// dose-fidelity loop's row factors (`A @ w` is then that variant's optimiser dose).
    #[allow(clippy::type_complexity)]
    fn influence_csr<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(
        Bound<'py, PyArray1<f32>>,
        Bound<'py, PyArray1<i32>>,
        Bound<'py, PyArray1<i32>>,
        (usize, usize),
    )> {
        let m = self.inner.matrix();
        let (n_rows, n_cols) = (m.n_rows(), m.n_cols());
        if n_cols > i32::MAX as usize || m.nnz() > i32::MAX as usize {
            return Err(InternalError::new_err(format!(
                "the influence matrix ({n_cols} columns, {} non-zeros) exceeds 32-bit indices",
                m.nnz()
            )));
        }
        let (ptr, cols, vals) = py.detach(|| {
            let mut ptr = Vec::with_capacity(n_rows + 1);
            let mut cols = Vec::with_capacity(m.nnz());
            let mut vals = Vec::with_capacity(m.nnz());
            ptr.push(0i32);
            for r in 0..n_rows {
                let (c, v) = m.row(r);
                cols.extend(c.iter().map(|&c| c as i32));
                vals.extend_from_slice(v);
                ptr.push(cols.len() as i32);
            }
            (ptr, cols, vals)
        });
        Ok((
            vals.into_pyarray(py),
            cols.into_pyarray(py),
            ptr.into_pyarray(py),
            (n_rows, n_cols),
        ))
    }

    /// Linear indices (x fastest) in the dose grid of the matrix's rows.
    fn dose_grid_voxels<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        self.dose_grid.voxels.clone().into_pyarray(py)
    }

    /// Shape `[z, y, x]`, spacing and origin (x, y, z; LPS mm) of the dose grid.
    #[getter]
    fn dose_grid(&self) -> GridGeometry {
        geometry(&self.dose_grid)
    }

    /// Number of beamlets (matrix columns).
    #[getter]
    fn n_beamlets(&self) -> usize {
        self.inner.matrix().n_cols()
    }

    /// Total dose (Gy over the course) of beamlet weights (MU per fraction) through the
    /// optimisation matrix as it stands (see `influence_csr`), on the full dose grid
    /// `[z, y, x]`.
    fn dose_of<'py>(
        &self,
        py: Python<'py>,
        weights_mu: Vec<f64>,
    ) -> PyResult<Bound<'py, PyArray3<f64>>> {
        let m = self.inner.matrix();
        if weights_mu.len() != m.n_cols() {
            return Err(InputError::new_err(format!(
                "{} weights given for {} beamlets",
                weights_mu.len(),
                m.n_cols()
            )));
        }
        let fractions = self.inner.fractions() as f64;
        let rows: Vec<f64> =
            py.detach(|| m.dose(&weights_mu).iter().map(|d| d * fractions).collect());
        full_grid(py, &self.dose_grid, &rows)
    }

    /// The beams as JSON text: number, name, IEC 61217 gantry/couch/collimator angles (deg),
    /// isocentre (LPS mm), first matrix column and beamlet count.
    fn beams_json(&self) -> PyResult<String> {
        let beams: Vec<serde_json::Value> = self
            .inner
            .beams()
            .iter()
            .map(|b| {
                serde_json::json!({
                    "number": b.number,
                    "name": b.name,
                    "gantry_deg": b.gantry_deg,
                    "couch_deg": b.couch_deg,
                    "collimator_deg": b.collimator_deg,
                    "isocenter_mm": b.isocenter_mm,
                    "first_column": b.first_column,
                    "n_beamlets": b.beamlets.len(),
                })
            })
            .collect();
        json(&beams)
    }

    /// How often each stage started on this plan's planner.
    fn stage_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.observer.stage_counts()
    }

    /// The rows (dose-grid voxels, influence-matrix rows) of structure `name` as the
    /// optimiser uses them: `(rows, weighted_rows, weights)`: the rows whose voxel centre is
    /// inside (max/min limits), and every row the structure occupies with its occupied
    /// fraction in (0, 1] (volume-averaged goals).
    #[allow(clippy::type_complexity)]
    fn structure_rows<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<(
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<f32>>,
    )> {
        let all = self.inner.structure_rows();
        let s = all.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            InputError::new_err(format!(
                "no structure '{name}' on the dose grid; the structures: {}",
                names.join(", ")
            ))
        })?;
        Ok((
            s.rows.clone().into_pyarray(py),
            s.weighted.rows.clone().into_pyarray(py),
            s.weighted.weights.clone().into_pyarray(py),
        ))
    }
}

/// One optimised variant: beamlet weights, the optimiser's dose and the goals.
#[pyclass(module = "rtopt._native", frozen)]
pub struct OptimisedPlan {
    inner: rtopt::plan::OptimisedPlan,
    dose_grid: Arc<DoseGrid>,
}

#[pymethods]
impl OptimisedPlan {
    /// The variant's name ("" for the protocol as given).
    #[getter]
    fn name(&self) -> String {
        self.inner.variant.name.clone()
    }
    /// Beamlet weights, MU per fraction (a copy).
    #[getter]
    fn weights_mu<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.result.weights_mu.clone().into_pyarray(py)
    }
    /// The optimiser's dose (Gy over the course) on the full dose grid `[z, y, x]`.
    #[getter]
    fn dose_gy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray3<f64>>> {
        full_grid(py, &self.dose_grid, &self.inner.result.dose_gy)
    }
    #[getter]
    fn objective(&self) -> f64 {
        self.inner.result.objective
    }
    #[getter]
    fn iterations(&self) -> u32 {
        self.inner.result.iterations
    }
    #[getter]
    fn status(&self) -> String {
        self.inner.result.status.clone()
    }
    /// Wall-clock time of the optimisation stages, s.
    #[getter]
    fn seconds(&self) -> f64 {
        self.inner.seconds
    }
    /// The goals on the optimiser's dose, as JSON text.
    fn goals_json(&self) -> PyResult<String> {
        json(&self.inner.result.goals)
    }
    /// The variant's protocol, as JSON text.
    fn protocol_json(&self) -> PyResult<String> {
        json(&self.inner.protocol)
    }
}

/// MLC segments of an optimised variant, before normalisation.
#[pyclass(module = "rtopt._native", frozen)]
pub struct SequencedPlan {
    inner: rtopt::plan::SequencedStage,
}

#[pymethods]
impl SequencedPlan {
    /// Segments per beam.
    #[getter]
    fn segments_per_beam(&self) -> Vec<usize> {
        self.inner
            .sequenced
            .beams
            .iter()
            .map(|b| b.segments.len())
            .collect()
    }
    /// MU per fraction before normalisation.
    #[getter]
    fn total_mu(&self) -> f64 {
        self.inner.sequenced.total_mu()
    }
    /// Beamlet weights the segments deliver, MU per fraction.
    #[getter]
    fn deliverable_weights_mu<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.deliverable_weights_mu.clone().into_pyarray(py)
    }
}

/// A finished plan: the deliverable dose, its report, and the files it writes.
#[pyclass(module = "rtopt._native", frozen)]
pub struct PlannedCase {
    inner: rtopt::plan::PlannedCase,
    inputs: Vec<PathBuf>,
}

#[pymethods]
impl PlannedCase {
    /// The report (`report.json`'s content) as JSON text.
    fn report_json(&self) -> PyResult<String> {
        json(&self.inner.report)
    }
    /// The goal table as `rtopt plan` prints it.
    fn goal_table(&self) -> String {
        self.inner.report.goal_table()
    }
    /// True when every hard constraint is met on the deliverable dose.
    #[getter]
    fn constraints_met(&self) -> bool {
        self.inner.report.constraints_met()
    }
    /// True when every constraint, hard or report-only, is met.
    #[getter]
    fn all_goals_met(&self) -> bool {
        self.inner.report.all_goals_met()
    }
    /// MU factor of the deliverable normalisation.
    #[getter]
    fn mu_scale(&self) -> f64 {
        self.inner.mu_scale
    }
    /// The deliverable dose (what RTDOSE holds), Gy over the course, `[z, y, x]` float32.
    #[getter]
    fn dose_gy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray3<f32>>> {
        grid_array(
            py,
            &self.inner.dose_grid.grid,
            self.inner.deliverable_full_gy.clone(),
        )
    }
    /// Shape `[z, y, x]`, spacing and origin (x, y, z; LPS mm) of the dose grid.
    #[getter]
    fn dose_grid(&self) -> GridGeometry {
        geometry(&self.inner.dose_grid)
    }
    /// Write RTPLAN, RTDOSE, report.json (and report.html) into the folder `out`, atomically;
    /// an existing folder is replaced only with `force` and only when rtopt wrote it.
    #[pyo3(signature = (out, force=false))]
    fn write(&self, py: Python<'_>, out: PathBuf, force: bool) -> PyResult<()> {
        let replace = Replace::from_force(force);
        rtopt::outputs::check_output_dir(&out, &self.inputs, replace).py_err()?;
        let inner = &self.inner;
        let out: &Path = &out;
        py.detach(|| inner.write(out, replace)).py_err()
    }
}
