//! RT Structure Set import and rasterisation of contours onto the CT grid.
//!
//! Convention (the same as dicompyler-core): a voxel belongs to a structure when its centre
//! lies inside the slice's closed planar contours under the even-odd rule, so holes and
//! several islands per slice work. A contour is placed on the CT slice nearest to its z; if
//! that slice is more than half a slice spacing away the contour is off the grid (error).

// Input module: data from files must never panic (project issue 9, docs/reliability.md).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::dicom_io::{self, tags, Attr};
use crate::error::{Error, Result};
use crate::geometry::{Grid3, Mask};

/// One contour of an ROI, points in LPS mm.
#[derive(Debug, Clone, Serialize)]
pub struct Contour {
    /// ContourGeometricType, e.g. `CLOSED_PLANAR` or `POINT`.
    pub geometric_type: String,
    pub points_mm: Vec<[f64; 3]>,
}

/// A region of interest of an RT Structure Set.
#[derive(Debug, Clone, Serialize)]
pub struct Roi {
    /// ROINumber (3006,0022).
    pub number: i64,
    /// ROIName (3006,0026).
    pub name: String,
    /// RTROIInterpretedType (3006,00A4), e.g. `PTV`, `ORGAN`, `EXTERNAL`; empty if absent.
    pub interpreted_type: String,
    /// ROIDisplayColor (3006,002A), RGB.
    pub color: [u8; 3],
    pub contours: Vec<Contour>,
}

impl Roi {
    /// True when the ROI has at least one closed planar contour (a volume).
    pub fn is_volume(&self) -> bool {
        self.contours
            .iter()
            .any(|c| c.geometric_type == "CLOSED_PLANAR")
    }
}

/// An imported RT Structure Set.
#[derive(Debug, Clone, Serialize)]
pub struct StructureSet {
    #[serde(skip)]
    pub path: PathBuf,
    pub sop_instance_uid: String,
    pub label: String,
    /// Frame of reference the contours are given in.
    pub frame_of_reference_uid: Option<String>,
    pub rois: Vec<Roi>,
}

impl StructureSet {
    /// The ROI with this name (exact match first, then case-insensitive).
    pub fn roi(&self, name: &str) -> Option<&Roi> {
        self.rois
            .iter()
            .find(|r| r.name == name)
            .or_else(|| self.rois.iter().find(|r| r.name.eq_ignore_ascii_case(name)))
    }
}

/// Read an RT Structure Set file (with or without DICOM file meta header).
pub fn read_rtstruct(path: &Path) -> Result<StructureSet> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_rtstruct_bytes(path, &bytes)
}

/// [`read_rtstruct`] on file bytes already in memory; `path` is used in messages only.
/// Never panics on any input (fuzzed: `fuzz/fuzz_targets/rtstruct.rs`).
pub fn read_rtstruct_bytes(path: &Path, bytes: &[u8]) -> Result<StructureSet> {
    let f = match dicom_io::probe_bytes(path, bytes)? {
        dicom_io::Probe::Dicom(f) => *f,
        dicom_io::Probe::NotDicom(reason) => {
            return Err(Error::BadDicom {
                path: path.to_path_buf(),
                reason,
            })
        }
    };
    let a = Attr::new(path, &f.obj);
    let sop_class = dicom_io::opt_str(&f.obj, tags::SOP_CLASS_UID).unwrap_or_default();
    let modality = dicom_io::opt_str(&f.obj, tags::MODALITY).unwrap_or_default();
    if sop_class != dicom_io::RT_STRUCTURE_SET_STORAGE && modality != "RTSTRUCT" {
        return Err(a.invalid(
            tags::SOP_CLASS_UID,
            "SOPClassUID",
            format!("'{sop_class}' (Modality '{modality}') is not an RT Structure Set"),
        ));
    }
    let mut frame_of_reference_uid = a
        .items(tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE)
        .iter()
        .find_map(|it| dicom_io::opt_str(it, tags::FRAME_OF_REFERENCE_UID));

    let mut rois: BTreeMap<i64, Roi> = BTreeMap::new();
    for it in a.items(tags::STRUCTURE_SET_ROI_SEQUENCE) {
        let ia = Attr::new(path, it);
        let number = ia.int(tags::ROI_NUMBER, "ROINumber")?;
        let name = dicom_io::opt_str(it, tags::ROI_NAME).unwrap_or_else(|| format!("ROI {number}"));
        if frame_of_reference_uid.is_none() {
            frame_of_reference_uid = dicom_io::opt_str(it, tags::REFERENCED_FRAME_OF_REFERENCE_UID);
        }
        rois.insert(
            number,
            Roi {
                number,
                name,
                interpreted_type: String::new(),
                color: [255, 0, 0],
                contours: Vec::new(),
            },
        );
    }
    for it in a.items(tags::RTROI_OBSERVATIONS_SEQUENCE) {
        let ia = Attr::new(path, it);
        let Ok(num) = ia.int(tags::REFERENCED_ROI_NUMBER, "ReferencedROINumber") else {
            continue;
        };
        if let Some(roi) = rois.get_mut(&num) {
            roi.interpreted_type =
                dicom_io::opt_str(it, tags::RTROI_INTERPRETED_TYPE).unwrap_or_default();
        }
    }
    for it in a.items(tags::ROI_CONTOUR_SEQUENCE) {
        let ia = Attr::new(path, it);
        let num = ia.int(tags::REFERENCED_ROI_NUMBER, "ReferencedROINumber")?;
        let Some(roi) = rois.get_mut(&num) else {
            return Err(ia.invalid(
                tags::REFERENCED_ROI_NUMBER,
                "ReferencedROINumber",
                format!("{num} is not in StructureSetROISequence"),
            ));
        };
        if let Some(c) = dicom_io::opt_f64s(it, tags::ROI_DISPLAY_COLOR) {
            if let [r, g, b] = c[..] {
                // `as u8` saturates (and maps NaN to 0): any value gives a colour.
                roi.color = [r as u8, g as u8, b as u8];
            }
        }
        for (ci, c) in Attr::new(path, it)
            .items(tags::CONTOUR_SEQUENCE)
            .iter()
            .enumerate()
        {
            let geometric_type = dicom_io::opt_str(c, tags::CONTOUR_GEOMETRIC_TYPE)
                .unwrap_or_else(|| "CLOSED_PLANAR".into());
            let data = dicom_io::opt_f64s(c, tags::CONTOUR_DATA).unwrap_or_default();
            if data.len() % 3 != 0 || data.iter().any(|v| !v.is_finite()) {
                return Err(Error::BadContour {
                    path: path.to_path_buf(),
                    roi: roi.name.clone(),
                    contour: ci,
                    reason: format!(
                        "ContourData (3006,0050) has {} values, not a whole number of finite (x, y, z) triplets",
                        data.len()
                    ),
                });
            }
            let points_mm: Vec<[f64; 3]> = data
                .chunks_exact(3)
                .filter_map(|p| match *p {
                    [x, y, z] => Some([x, y, z]),
                    _ => None,
                })
                .collect();
            if geometric_type == "CLOSED_PLANAR" && points_mm.len() < 3 {
                return Err(Error::BadContour {
                    path: path.to_path_buf(),
                    roi: roi.name.clone(),
                    contour: ci,
                    reason: format!(
                        "has {} point(s); a CLOSED_PLANAR contour needs at least 3",
                        points_mm.len()
                    ),
                });
            }
            roi.contours.push(Contour {
                geometric_type,
                points_mm,
            });
        }
    }
    Ok(StructureSet {
        path: path.to_path_buf(),
        sop_instance_uid: dicom_io::opt_str(&f.obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        label: dicom_io::opt_str(&f.obj, tags::STRUCTURE_SET_LABEL).unwrap_or_default(),
        frame_of_reference_uid,
        rois: rois.into_values().collect(),
    })
}

/// Check that a structure set lies in the CT's frame of reference.
pub fn check_frame_of_reference(ss: &StructureSet, ct_frame_uid: &str) -> Result<()> {
    match &ss.frame_of_reference_uid {
        Some(uid) if uid != ct_frame_uid => Err(Error::FrameOfReferenceMismatch {
            path: ss.path.clone(),
            rtstruct_uid: uid.clone(),
            ct_uid: ct_frame_uid.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Rasterise one ROI's closed planar contours onto `grid` (even-odd rule, voxel centres).
pub fn rasterize(roi: &Roi, grid: &Grid3) -> Result<Mask> {
    let [nx, ny, nz] = grid.dims;
    let (dx, dy, dz) = (grid.spacing_mm[0], grid.spacing_mm[1], grid.spacing_mm[2]);
    // Group contours by slice.
    let mut by_slice: BTreeMap<usize, Vec<&Contour>> = BTreeMap::new();
    for (ci, c) in roi.contours.iter().enumerate() {
        if c.geometric_type != "CLOSED_PLANAR" {
            continue;
        }
        if c.points_mm.len() < 3 || c.points_mm.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::ContourOffGrid {
                roi: roi.name.clone(),
                contour: ci,
                z_mm: c.points_mm.first().map_or(f64::NAN, |p| p[2]),
                reason: format!(
                    "has {} point(s) or a non-finite coordinate; a CLOSED_PLANAR contour needs at least 3 finite points",
                    c.points_mm.len()
                ),
            });
        }
        let z = c.points_mm.iter().map(|p| p[2]).sum::<f64>() / c.points_mm.len() as f64;
        if c.points_mm
            .iter()
            .any(|p| (p[2] - z).abs() > 0.01 * dz.max(1.0))
        {
            return Err(Error::ContourOffGrid {
                roi: roi.name.clone(),
                contour: ci,
                z_mm: z,
                reason: "is not planar (its points differ in z); rtopt needs axial contours".into(),
            });
        }
        let kf = (z - grid.origin_mm[2]) / dz;
        let k = kf.round();
        if k < 0.0 || k >= nz as f64 || (kf - k).abs() > 0.5 + 1e-6 {
            return Err(Error::ContourOffGrid {
                roi: roi.name.clone(),
                contour: ci,
                z_mm: z,
                reason: format!(
                    "is not within half a slice ({:.2} mm) of any CT slice (z {:.2} .. {:.2} mm)",
                    0.5 * dz,
                    grid.origin_mm[2],
                    grid.origin_mm[2] + (nz.saturating_sub(1)) as f64 * dz
                ),
            });
        }
        let (lo, hi) = grid.bounds_mm();
        let (minx, maxx, miny, maxy) = c.points_mm.iter().fold(
            (
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ),
            |(a, b, cc, d), p| (a.min(p[0]), b.max(p[0]), cc.min(p[1]), d.max(p[1])),
        );
        if maxx < lo[0] || minx > hi[0] || maxy < lo[1] || miny > hi[1] {
            return Err(Error::ContourOffGrid {
                roi: roi.name.clone(),
                contour: ci,
                z_mm: z,
                reason: format!(
                    "lies entirely outside the CT's x/y extent (x {:.1}..{:.1}, y {:.1}..{:.1} mm)",
                    lo[0], hi[0], lo[1], hi[1]
                ),
            });
        }
        by_slice.entry(k as usize).or_default().push(c);
    }
    let mut mask = Mask::empty(*grid);
    let plane = nx * ny;
    let filled: Vec<(usize, Vec<bool>)> = by_slice
        .into_par_iter()
        .map(|(k, contours)| {
            let mut m = vec![false; plane];
            let mut xs: Vec<f64> = Vec::new();
            for j in 0..ny {
                let y = grid.origin_mm[1] + j as f64 * dy;
                xs.clear();
                for c in &contours {
                    // Edges (p_e, p_{e+1}), the last one closing the polygon.
                    let next = c.points_mm.iter().cycle().skip(1);
                    for (p, q) in c.points_mm.iter().zip(next) {
                        if (p[1] <= y) != (q[1] <= y) {
                            xs.push(p[0] + (y - p[1]) * (q[0] - p[0]) / (q[1] - p[1]));
                        }
                    }
                }
                xs.sort_by(|a, b| a.total_cmp(b));
                for pair in xs.chunks_exact(2) {
                    let &[x0, x1] = pair else { continue };
                    // voxel centres with x0 <= x < x1
                    let i0 = ((x0 - grid.origin_mm[0]) / dx).ceil().max(0.0);
                    let i1 = ((x1 - grid.origin_mm[0]) / dx).ceil().min(nx as f64);
                    let (i0, i1) = (i0 as usize, i1.max(0.0) as usize);
                    // i1 <= nx and j < ny, so the run stays inside row j of the plane.
                    if i0 < i1 {
                        if let Some(run) = m.get_mut(j * nx + i0..j * nx + i1) {
                            run.fill(true);
                        }
                    }
                }
            }
            (k, m)
        })
        .collect();
    for (k, m) in filled {
        // k < nz was checked above, so the plane exists; refuse rather than panic otherwise.
        let Some(dst) = mask.inside.get_mut(k * plane..(k + 1) * plane) else {
            return Err(Error::Invalid(format!(
                "ROI '{}': slice {k} outside the grid of {nz} slices",
                roi.name
            )));
        };
        dst.copy_from_slice(&m);
    }
    Ok(mask)
}

/// A structure rasterised on the CT grid.
#[derive(Debug, Clone)]
pub struct Structure {
    pub roi: Roi,
    pub mask: Mask,
}

/// Rasterise every volumetric ROI of `ss` onto `grid`.
pub fn rasterize_all(ss: &StructureSet, grid: &Grid3) -> Result<Vec<Structure>> {
    ss.rois
        .iter()
        .filter(|r| r.is_volume())
        .map(|r| {
            Ok(Structure {
                roi: r.clone(),
                mask: rasterize(r, grid)?,
            })
        })
        .collect()
}
