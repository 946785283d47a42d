//! `rtopt._native`: the Python extension of rtopt (PyO3), wrapped by the pure-Python package
//! `rtopt` (python/rtopt). It maps the staged planner of the Rust library
//! (`Planner::prepare` → `PreparedPlan::optimise` → `sequence` → `finish` → `write`) onto
//! Python classes, hands doses, masks, weights and the influence matrix over as NumPy arrays
//! (vectors moved, not copied, where the layout allows), releases the GIL during every long
//! step and honours Ctrl-C through the library's cancellation token ([`run`]).
//!
//! Units and frames as in the library: doses in Gy total over the course, beamlet and segment
//! weights in MU per fraction, the influence matrix in Gy per MU for one fraction, positions
//! in DICOM patient coordinates (LPS, mm). Arrays on a grid are indexed `[z, y, x]`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

mod case;
mod errors;
mod planning;
mod run;

create_exception!(
    _native,
    RtoptError,
    PyException,
    "Base class of every error rtopt raises (a Rust `rtopt::Error`)."
);
create_exception!(
    _native,
    InputError,
    RtoptError,
    "Bad input: a file, DICOM tag, structure, protocol, argument or output path (CLI exit 2)."
);
create_exception!(
    _native,
    InfeasibleError,
    RtoptError,
    "The protocol's hard constraints cannot all hold; the message names them (CLI exit 3)."
);
create_exception!(
    _native,
    PlanRefusedError,
    RtoptError,
    "A plan was made but is not acceptable (implausible MU, normalisation, ...; CLI exit 4)."
);
create_exception!(
    _native,
    FileError,
    RtoptError,
    "Reading or writing a file failed (CLI exit 5)."
);
create_exception!(
    _native,
    InternalError,
    RtoptError,
    "The solver or rtopt itself failed (CLI exit 1)."
);

/// The extension module `rtopt._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("RtoptError", py.get_type::<RtoptError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("InfeasibleError", py.get_type::<InfeasibleError>())?;
    m.add("PlanRefusedError", py.get_type::<PlanRefusedError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add_class::<case::Case>()?;
    m.add_class::<case::Structure>()?;
    m.add_class::<planning::Protocol>()?;
    m.add_class::<planning::Planner>()?;
    m.add_class::<planning::PreparedPlan>()?;
    m.add_class::<planning::OptimisedPlan>()?;
    m.add_class::<planning::SequencedPlan>()?;
    m.add_class::<planning::PlannedCase>()?;
    Ok(())
}
