//! Rust errors as Python exceptions: one class per [`rtopt::error::ErrorKind`], all under
//! `RtoptError`, with the library's message (which names the file, tag, structure or goal).

use pyo3::prelude::*;
use rtopt::error::ErrorKind;

use crate::{FileError, InfeasibleError, InputError, InternalError, PlanRefusedError};

/// The Python exception of a library error.
pub fn to_py(e: rtopt::Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::Input => InputError::new_err(msg),
        ErrorKind::Infeasible => InfeasibleError::new_err(msg),
        ErrorKind::Refused => PlanRefusedError::new_err(msg),
        ErrorKind::Io => FileError::new_err(msg),
        ErrorKind::Internal => InternalError::new_err(msg),
    }
}

/// `Result` of the library into `PyResult`.
pub trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for rtopt::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
