//! `Case` and `Structure`: a CT series and its rasterised structures, with the CT in HU and
//! each structure as a boolean mask, all NumPy arrays indexed `[z, y, x]` on the CT grid
//! (voxel centres at `origin_mm + index * spacing_mm`, axes along DICOM patient LPS).

use std::path::PathBuf;

use numpy::ndarray::Array3;
use numpy::{IntoPyArray, PyArray3};
use pyo3::prelude::*;
use rtopt::Grid3;

use crate::errors::IntoPy;

/// `[z, y, x]` shape of a grid (NumPy order).
pub fn zyx(grid: &Grid3) -> (usize, usize, usize) {
    (grid.dims[2], grid.dims[1], grid.dims[0])
}

/// A vector in the grid's linear order (x fastest) as a `[z, y, x]` NumPy array, without a
/// copy of the buffer.
pub fn grid_array<'py, T: numpy::Element>(
    py: Python<'py>,
    grid: &Grid3,
    values: Vec<T>,
) -> PyResult<Bound<'py, PyArray3<T>>> {
    let a = Array3::from_shape_vec(zyx(grid), values).map_err(|e| {
        crate::InternalError::new_err(format!("array of the wrong length for its grid: {e}"))
    })?;
    Ok(a.into_pyarray(py))
}

/// A patient case: CT series and RT Structure Set, as `rtopt.Case.load` reads them.
#[pyclass(module = "rtopt._native", frozen)]
pub struct Case {
    pub inner: rtopt::Case,
}

#[pymethods]
impl Case {
    /// Import a case folder: one CT series and (optionally) one RT Structure Set.
    /// `series` picks a SeriesInstanceUID when the folder holds several; `rtstruct` names the
    /// RT Structure Set file when it holds several; `assume_hfs` reads a CT without
    /// PatientPosition as head first supine.
    #[staticmethod]
    #[pyo3(signature = (path, series=None, rtstruct=None, assume_hfs=false, memory_budget_bytes=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        series: Option<String>,
        rtstruct: Option<PathBuf>,
        assume_hfs: bool,
        memory_budget_bytes: Option<u64>,
    ) -> PyResult<Case> {
        let opts = rtopt::LoadOptions {
            ct: rtopt::io::dicom::ct::CtImportOptions {
                series_uid: series,
                assume_hfs,
                memory_budget_bytes: Some(
                    memory_budget_bytes.unwrap_or_else(rtopt::budget::default_memory_budget_bytes),
                ),
            },
            rtstruct,
        };
        let inner = py.detach(|| rtopt::Case::load(&path, &opts)).py_err()?;
        Ok(Case { inner })
    }

    /// The name of the case: its folder's name (never a patient name).
    #[getter]
    fn name(&self) -> String {
        self.inner
            .dir
            .as_ref()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "case".into())
    }

    /// Names of the volumetric structures, in the RT Structure Set's order.
    #[getter]
    fn structure_names(&self) -> Vec<String> {
        self.inner.structure_names()
    }

    /// Every volumetric structure.
    #[getter]
    fn structures(&self) -> Vec<Structure> {
        self.inner
            .structures
            .iter()
            .map(|s| Structure { inner: s.clone() })
            .collect()
    }

    /// The structure of that name (an `InputError` lists the names when there is none).
    fn structure(&self, name: &str) -> PyResult<Structure> {
        let s = self.inner.structure(name).py_err()?;
        Ok(Structure { inner: s.clone() })
    }

    /// CT numbers (HU, rescale applied), float32 `[z, y, x]` (a copy).
    #[getter]
    fn ct_hu<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray3<f32>>> {
        grid_array(py, &self.inner.ct.grid, self.inner.ct.hu.clone())
    }

    /// `(nz, ny, nx)`.
    #[getter]
    fn shape(&self) -> (usize, usize, usize) {
        zyx(&self.inner.ct.grid)
    }

    /// Voxel size along x, y, z, mm.
    #[getter]
    fn spacing_mm(&self) -> [f64; 3] {
        self.inner.ct.grid.spacing_mm
    }

    /// Centre of voxel `[0, 0, 0]`, LPS mm, as x, y, z.
    #[getter]
    fn origin_mm(&self) -> [f64; 3] {
        self.inner.ct.grid.origin_mm
    }

    /// FrameOfReferenceUID of the CT.
    #[getter]
    fn frame_of_reference_uid(&self) -> String {
        self.inner.ct.meta.frame_of_reference_uid.clone()
    }

    /// Import warnings, one sentence each.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings().to_vec()
    }

    /// The summary `rtopt inspect --json` prints, as JSON text.
    fn inspect_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner.inspect())
            .map_err(|e| crate::InternalError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        let (z, y, x) = zyx(&self.inner.ct.grid);
        format!(
            "<rtopt.Case '{}': CT {x}x{y}x{z}, {} structures>",
            self.name(),
            self.inner.structures.len()
        )
    }
}

/// A structure rasterised on the CT grid (voxel centres inside the contours).
#[pyclass(module = "rtopt._native", frozen)]
pub struct Structure {
    inner: rtopt::structures::Structure,
}

#[pymethods]
impl Structure {
    /// ROIName.
    #[getter]
    fn name(&self) -> String {
        self.inner.roi.name.clone()
    }
    /// ROINumber.
    #[getter]
    fn number(&self) -> i64 {
        self.inner.roi.number
    }
    /// RTROIInterpretedType as read (e.g. `PTV`, `ORGAN`; empty when absent).
    #[getter]
    fn interpreted_type(&self) -> String {
        self.inner.roi.interpreted_type.clone()
    }
    /// Boolean mask `[z, y, x]` on the CT grid (a copy).
    #[getter]
    fn mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray3<bool>>> {
        grid_array(py, &self.inner.mask.grid, self.inner.mask.inside.clone())
    }
    /// Number of voxels inside.
    #[getter]
    fn voxel_count(&self) -> usize {
        self.inner.mask.inside.iter().filter(|&&b| b).count()
    }
    /// Voxel size along x, y, z, mm.
    #[getter]
    fn spacing_mm(&self) -> [f64; 3] {
        self.inner.mask.grid.spacing_mm
    }
    /// Centre of voxel `[0, 0, 0]`, LPS mm, as x, y, z.
    #[getter]
    fn origin_mm(&self) -> [f64; 3] {
        self.inner.mask.grid.origin_mm
    }
    fn __repr__(&self) -> String {
        format!(
            "<rtopt.Structure '{}' ({} voxels)>",
            self.inner.roi.name,
            self.voxel_count()
        )
    }
}
