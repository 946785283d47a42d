//! Automatic segmentation: classical and deterministic for the body outline ([`body`]) and the
//! lungs ([`lungs`]); organs at risk from an ONNX network that follows rtopt's model contract
//! ([`model`], run through `ort` on tract or ONNX Runtime). Masks are contoured
//! ([`crate::contours`]) and merged with an imported structure set without ever changing an
//! existing ROI ([`merge_for_export`]). Agreement metrics in [`eval`] (NIfTI label maps are
//! read by [`crate::io::nifti`]), the segmentation tasks of the command line in [`task`].
//! Methods, contract and measured accuracy: `docs/segmentation.md`.

pub mod body;
pub mod eval;
pub mod lungs;
pub mod model;
pub mod task;

use crate::contours;
use crate::ct::CtVolume;
use crate::geometry::Mask;
use crate::io::dicom::rtstruct::RoiOut;
use crate::structures::{Roi, RoiType, Structure, StructureSet};

/// Name of the automatic body outline.
pub const BODY: &str = "Body";
/// Name of the automatic left lung (patient left, +x in LPS).
pub const LUNG_L: &str = "Lung_L";
/// Name of the automatic right lung.
pub const LUNG_R: &str = "Lung_R";
/// Suffix given to a new structure whose name is taken in the imported structure set.
pub const CLASH_SUFFIX: &str = "_auto";

/// The new structures and a readable log of what was made.
#[derive(Debug, Clone)]
pub struct SegmentationResult {
    /// The structures created (contours and the mask they were made from).
    pub structures: Vec<Structure>,
    /// ROIGenerationDescription per structure (same order).
    pub methods: Vec<String>,
    /// One line per structure: method, volume, number of contours.
    pub report: Vec<String>,
}

fn make_structure(name: &str, roi_type: RoiType, color: [u8; 3], mask: Mask) -> Structure {
    let contours = contours::mask_to_contours(&mask, contours::DEFAULT_TOLERANCE_VOXELS);
    Structure {
        roi: Roi {
            number: 0,
            name: name.to_string(),
            interpreted_type: roi_type.to_string(),
            color,
            contours,
        },
        mask,
    }
}

/// Classical segmentation of `ct`: the body outline (type EXTERNAL) and, when found, the left
/// and right lungs (type ORGAN). Deterministic: the same CT gives the same masks and contours.
pub fn segment_classical(ct: &CtVolume) -> SegmentationResult {
    let body = body::body_outline(ct);
    let lungs = lungs::segment_lungs(ct, &body);
    let mut res = SegmentationResult {
        structures: Vec::new(),
        methods: Vec::new(),
        report: Vec::new(),
    };
    // ROIGenerationDescription is LO: at most 64 characters.
    let body_method = format!(
        "rtopt classical body: HU > {}, holes filled",
        body::BODY_THRESHOLD_HU
    );
    let lung_method = format!(
        "rtopt classical lungs: HU < {}, airways removed",
        lungs::LUNG_THRESHOLD_HU
    );
    let items = [
        (BODY, RoiType::External, [0, 160, 0], body, body_method),
        (
            LUNG_L,
            RoiType::Organ,
            [0, 160, 255],
            lungs.left,
            lung_method.clone(),
        ),
        (
            LUNG_R,
            RoiType::Organ,
            [0, 100, 200],
            lungs.right,
            lung_method,
        ),
    ];
    for (name, kind, color, mask, method) in items {
        if mask.count() == 0 {
            res.report
                .push(format!("{name}: not found in this CT, not created"));
            continue;
        }
        let s = make_structure(name, kind, color, mask);
        res.report.push(format!(
            "{name}: {method}; {:.1} cm3, {} contours",
            s.mask.volume_cm3(),
            s.roi.contours.len()
        ));
        res.structures.push(s);
        res.methods.push(method);
    }
    res
}

/// ROIGenerationDescription (VR LO) holds at most 64 characters.
#[cfg(feature = "onnx")]
fn truncate_lo(s: String) -> String {
    s.chars().take(64).collect()
}

/// Classical segmentation (as [`segment_classical`]) followed, when `model` is given, by the
/// model's classes. The model's canvas is centred on the body outline's centroid (the grid's
/// centre when no body is found) and its classes are restricted to the body outline. A class
/// the model does not find in this CT is reported and not created.
#[cfg(feature = "onnx")]
pub fn segment_auto(
    ct: &CtVolume,
    model: Option<&mut model::SegmentationModel>,
) -> crate::error::Result<SegmentationResult> {
    let mut res = segment_classical(ct);
    let Some(model) = model else {
        return Ok(res);
    };
    let body = res
        .structures
        .iter()
        .find(|s| s.roi.name == BODY)
        .map(|s| s.mask.clone());
    let centre = body
        .as_ref()
        .and_then(|b| b.centroid_mm())
        .unwrap_or_else(|| {
            let (lo, hi) = ct.grid.bounds_mm();
            [
                0.5 * (lo[0] + hi[0]),
                0.5 * (lo[1] + hi[1]),
                0.5 * (lo[2] + hi[2]),
            ]
        });
    // The in-plane field the model must cover: the body's bounding box (voxel edges), else the
    // whole CT.
    let sp = ct.grid.spacing_mm;
    let (lo, hi) = body
        .as_ref()
        .and_then(|b| b.bbox_mm())
        .map(|(lo, hi)| {
            (
                [lo[0] - 0.5 * sp[0], lo[1] - 0.5 * sp[1]],
                [hi[0] + 0.5 * sp[0], hi[1] + 0.5 * sp[1]],
            )
        })
        .unwrap_or_else(|| {
            let (lo, hi) = ct.grid.bounds_mm();
            ([lo[0], lo[1]], [hi[0], hi[1]])
        });
    let method = truncate_lo(format!("rtopt ONNX model {}", model.spec.name));
    let backend = model.backend;
    // Organs lie inside the patient: what the network labels outside the body outline (couch,
    // air, arms beside the trunk) is dropped before the per-class post-processing.
    for (cls, mask) in model.segment(ct, [centre[0], centre[1]], (lo, hi), body.as_ref())? {
        if mask.count() == 0 {
            res.report.push(format!(
                "{}: model {} found none in this CT, not created",
                cls.name, model.spec.name
            ));
            continue;
        }
        let s = make_structure(
            &cls.name,
            RoiType::parse(&cls.interpreted_type),
            cls.color,
            mask,
        );
        res.report.push(format!(
            "{}: {method} ({backend}); {:.1} cm3, {} contours",
            cls.name,
            s.mask.volume_cm3(),
            s.roi.contours.len()
        ));
        res.structures.push(s);
        res.methods.push(method.clone());
    }
    Ok(res)
}

/// The ROIs of a new structure set: every ROI of `existing` unchanged (number, name, type,
/// colour, contours), then the new structures numbered after them. A new name that is taken
/// (case-insensitive) gets [`CLASH_SUFFIX`] (then `_auto2`, ...); a new EXTERNAL when the
/// imported set has one is written as type `CONTROL`, so the set keeps a single EXTERNAL.
/// Returns the ROIs and one line per rename or retype.
pub fn merge_for_export(
    existing: Option<&StructureSet>,
    new: &SegmentationResult,
) -> (Vec<RoiOut>, Vec<String>) {
    let mut out: Vec<RoiOut> = existing
        .map(|ss| {
            ss.rois
                .iter()
                .map(|r| RoiOut {
                    roi: r.clone(),
                    generation_algorithm: String::new(),
                    generation_description: String::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let has_external = out.iter().any(|r| r.roi.roi_type() == RoiType::External);
    let mut report = Vec::new();
    let first = out.iter().map(|r| r.roi.number).max().unwrap_or(0).max(0) + 1;
    for ((s, method), number) in new.structures.iter().zip(&new.methods).zip(first..) {
        let taken =
            |n: &str, out: &[RoiOut]| out.iter().any(|r| r.roi.name.eq_ignore_ascii_case(n));
        let mut roi = s.roi.clone();
        if taken(&roi.name, &out) {
            let mut i = 1;
            let name = loop {
                let cand = if i == 1 {
                    format!("{}{CLASH_SUFFIX}", s.roi.name)
                } else {
                    format!("{}{CLASH_SUFFIX}{i}", s.roi.name)
                };
                if !taken(&cand, &out) {
                    break cand;
                }
                i += 1;
            };
            report.push(format!(
                "name clash: '{}' exists in the imported structure set; the new structure is written as '{name}'",
                s.roi.name
            ));
            roi.name = name;
        }
        if has_external && roi.roi_type() == RoiType::External {
            report.push(format!(
                "'{}': the imported structure set already has an EXTERNAL ROI; written as type CONTROL",
                roi.name
            ));
            roi.interpreted_type = RoiType::Control.to_string();
        }
        roi.number = number;
        out.push(RoiOut {
            roi,
            generation_algorithm: "AUTOMATIC".into(),
            generation_description: method.clone(),
        });
    }
    (out, report)
}
