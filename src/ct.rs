//! A CT volume in Hounsfield units on an axis-aligned LPS grid, with the identity and study
//! attributes of its series ([`CtMeta`]), and the classical body outline computed from it
//! ([`body_outline`]: threshold, largest component per slice, holes filled; used when a case
//! has no EXTERNAL structure). Domain types only: reading a DICOM CT series is
//! [`crate::io::dicom::ct`].

use std::path::PathBuf;

use serde::Serialize;

use crate::geometry::{morph, Grid3, Mask};

/// Identity and study attributes of the CT series, copied into exported objects.
///
/// Patient attributes are kept for export only and never logged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CtMeta {
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    pub frame_of_reference_uid: String,
    pub series_description: String,
    /// DICOM PatientPosition, e.g. `HFS`.
    pub patient_position: String,
    pub manufacturer: String,
    #[serde(skip)]
    pub patient_name: String,
    #[serde(skip)]
    pub patient_id: String,
    #[serde(skip)]
    pub patient_birth_date: String,
    #[serde(skip)]
    pub patient_sex: String,
    pub study_date: String,
    pub study_time: String,
    pub study_id: String,
    pub accession_number: String,
    pub referring_physician_name: String,
    pub study_description: String,
    /// PatientIdentityRemoved (0012,0062) and DeidentificationMethod (0012,0063) of the CT,
    /// copied into every output so a de-identified series stays marked as such.
    pub patient_identity_removed: String,
    pub deidentification_method: String,
    /// SOP Instance UIDs of the slices, in slice order (k ascending).
    pub sop_instance_uids: Vec<String>,
    /// Source files, in slice order.
    #[serde(skip)]
    pub files: Vec<PathBuf>,
}

/// A CT volume in Hounsfield units.
#[derive(Debug, Clone)]
pub struct CtVolume {
    pub grid: Grid3,
    /// HU per voxel (RescaleSlope and RescaleIntercept applied), grid linear order.
    pub hu: Vec<f32>,
    pub meta: CtMeta,
}

impl CtVolume {
    /// Smallest and largest HU.
    pub fn hu_range(&self) -> (f32, f32) {
        self.hu
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }
}

/// HU threshold separating patient from air.
pub const BODY_THRESHOLD_HU: f32 = -350.0;

/// Body outline of `ct`: per axial slice, voxels above [`BODY_THRESHOLD_HU`], the largest
/// 4-connected component kept, and enclosed holes (lungs, bowel gas) filled; then only the
/// largest 6-connected 3D component is kept, so that on slices beyond the patient (a scan
/// longer than the phantom or patient) the couch, which is then the largest component of the
/// slice, is not taken for the body.
pub fn body_outline(ct: &CtVolume) -> Mask {
    let [nx, ny, nz] = ct.grid.dims;
    let plane = nx * ny;
    let mut mask = Mask::empty(ct.grid);
    for k in 0..nz {
        let hu = &ct.hu[k * plane..(k + 1) * plane];
        let fg: Vec<bool> = hu.iter().map(|&v| v > BODY_THRESHOLD_HU).collect();
        let lab = morph::largest_component(&fg, nx, ny);
        let filled = morph::fill_holes(&lab, nx, ny);
        mask.inside[k * plane..(k + 1) * plane].copy_from_slice(&filled);
    }
    morph::keep_largest(&mask, 1)
}

// Temporary re-exports of the old paths, for code written before the I/O layer (issue 15);
// to be removed once every caller uses `crate::io::dicom::ct`.
