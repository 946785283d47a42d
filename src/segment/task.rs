//! Auto-segmentation tasks behind `rtopt segment` and `rtopt segment-eval`: a request in,
//! an outcome out (the binary only maps its arguments onto the request).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::case::{Case, LoadOptions};
use crate::error::{Error, Result};
use crate::geometry::Mask;
use crate::io::dicom::rtstruct;
use crate::structures;

use super::eval;
use crate::io::nifti;

/// Default output of `rtopt segment`: in the current folder, never inside the CT folder (so
/// the CT folder does not end up with two structure sets).
pub const DEFAULT_OUT: &str = "rtstruct-auto.dcm";
/// StructureSetLabel of the written structure set.
pub const LABEL: &str = "RTOPT_AUTO";

/// What to segment and where to write it (`rtopt segment`).
#[derive(Debug, Clone, Default)]
pub struct SegmentRequest {
    /// Folder with the CT series (and optionally an RT Structure Set to merge with).
    pub folder: PathBuf,
    /// Output RT Structure Set [default: rtstruct-auto.dcm in the current folder].
    pub out: Option<PathBuf>,
    /// RT Structure Set to merge with (default: the one in the folder, if any).
    pub rtstruct: Option<PathBuf>,
    /// ONNX segmentation model (the `.onnx` or its sidecar `.json`, contract in
    /// docs/segmentation.md), run after the classical body and lungs.
    pub model: Option<PathBuf>,
    /// SeriesInstanceUID when the folder holds several CT series.
    pub series: Option<String>,
    /// Replace an existing output file (never an input).
    pub force: bool,
    /// Memory budget of the CT import, bytes (default: half the machine's memory).
    pub memory_budget_bytes: Option<u64>,
    /// Creation time of the RT Structure Set (`None`: the clock; the command line passes
    /// `SOURCE_DATE_EPOCH` for reproducible output).
    pub created: Option<crate::io::dicom::identity::CreationTime>,
}

/// What `rtopt segment` did.
#[derive(Debug, Clone)]
pub struct SegmentOutcome {
    pub out: PathBuf,
    pub sop_instance_uid: String,
    /// Number of ROIs written (imported plus new).
    pub rois: usize,
    /// Number of new ROIs.
    pub new_rois: usize,
    /// Per-structure lines, then name clashes and retypes.
    pub report: Vec<String>,
}

/// `rtopt segment`: classical structures merged with the imported set into a new RTSTRUCT.
/// The output is checked before anything runs ([`crate::outputs::check_output_file`]): never
/// an input, never inside the CT folder, and an existing file only with `--force`.
pub fn segment(a: &SegmentRequest) -> Result<SegmentOutcome> {
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    let mut inputs = vec![a.folder.clone()];
    inputs.extend(a.rtstruct.iter().cloned());
    if let Some(m) = &a.model {
        inputs.push(m.clone());
        inputs.push(m.with_extension("json"));
        inputs.push(m.with_extension("onnx"));
    }
    crate::outputs::check_output_file(&out, &inputs, crate::outputs::Replace::from_force(a.force))?;
    let mut model = load_model(a.model.as_deref())?;
    let case = Case::load(
        &a.folder,
        &LoadOptions {
            rtstruct: a.rtstruct.clone(),
            ct: crate::io::dicom::ct::CtImportOptions {
                series_uid: a.series.clone(),
                memory_budget_bytes: a
                    .memory_budget_bytes
                    .or(crate::io::dicom::ct::CtImportOptions::default().memory_budget_bytes),
                ..Default::default()
            },
        },
    )?;
    let res = run_segmentation(&case.ct, model.as_mut())?;
    let (rois, renames) = super::merge_for_export(case.structure_set.as_ref(), &res);
    let created = a
        .created
        .unwrap_or_else(crate::io::dicom::identity::CreationTime::now);
    let uid = rtstruct::write_rtstruct(&out, &case.ct, &rois, LABEL, &created)?;
    let mut report = res.report;
    report.extend(renames);
    Ok(SegmentOutcome {
        out,
        sop_instance_uid: uid,
        rois: rois.len(),
        new_rois: res.structures.len(),
        report,
    })
}

#[cfg(feature = "onnx")]
type LoadedModel = super::model::SegmentationModel;
#[cfg(not(feature = "onnx"))]
type LoadedModel = std::convert::Infallible;

/// Load `--model` (before any CT is read, so that a bad model fails fast).
fn load_model(path: Option<&Path>) -> Result<Option<LoadedModel>> {
    let Some(path) = path else { return Ok(None) };
    #[cfg(feature = "onnx")]
    {
        super::model::SegmentationModel::load(path).map(Some)
    }
    #[cfg(not(feature = "onnx"))]
    {
        Err(Error::Config {
            path: path.to_path_buf(),
            reason: "this rtopt was built without the 'onnx' feature; ONNX models cannot be run"
                .into(),
        })
    }
}

fn run_segmentation(
    ct: &crate::ct::CtVolume,
    model: Option<&mut LoadedModel>,
) -> Result<super::SegmentationResult> {
    #[cfg(feature = "onnx")]
    {
        super::segment_auto(ct, model)
    }
    #[cfg(not(feature = "onnx"))]
    {
        match model {
            None => Ok(super::segment_classical(ct)),
            Some(never) => match *never {},
        }
    }
}

/// What to evaluate against which reference (`rtopt segment-eval`).
#[derive(Debug, Clone, Default)]
pub struct SegmentEvalRequest {
    /// Folder with the CT series.
    pub folder: PathBuf,
    /// Reference: an RT Structure Set (.dcm) or a NIfTI label map (.nii / .nii.gz).
    pub reference: PathBuf,
    /// For a label-map reference: JSON `{"StructureName": [label ids]}` [default: the
    /// TotalSegmentator `total` map of docs/segmentation.md].
    pub labels: Option<PathBuf>,
    /// ONNX segmentation model whose classes are evaluated as well.
    pub model: Option<PathBuf>,
    /// Memory budget of the CT import, bytes (default: half the machine's memory).
    pub memory_budget_bytes: Option<u64>,
}

/// Reference for the classical structures in a TotalSegmentator `total` label map (v2 ids,
/// `data/totalseg/labels_total.json`): lungs are the union of their lobes; the body is the
/// union of every label (TotalSegmentator's `total` task has no body class, so this reference
/// misses subcutaneous fat and skin and Body's Dice against it is a lower bound).
pub fn totalseg_default_map() -> Vec<(String, Vec<u32>)> {
    let mut m: Vec<(String, Vec<u32>)> = vec![
        (super::BODY.into(), (1..=117).collect()),
        (super::LUNG_L.into(), vec![10, 11]),
        (super::LUNG_R.into(), vec![12, 13, 14]),
    ];
    // The classes of the shipped model (data/models/rtopt_abdomen_oar_2d.json).
    m.extend(
        [
            ("Liver", vec![5]),
            ("Spleen", vec![1]),
            ("Kidneys", vec![2, 3, 23, 24]),
            ("Stomach", vec![6]),
            ("Aorta", vec![52]),
            ("SpinalCord", vec![79]),
            ("Vertebrae", (26..=50).collect()),
        ]
        .into_iter()
        .map(|(n, ids)| (n.to_string(), ids)),
    );
    m
}

/// Read a `--labels` JSON file: `{"StructureName": [label ids]}`.
pub fn read_label_map(path: &Path) -> Result<Vec<(String, Vec<u32>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let m: BTreeMap<String, Vec<u32>> = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        reason: format!("label map JSON {{\"name\": [ids]}}: {e}"),
    })?;
    Ok(m.into_iter().collect())
}

/// Reference masks on `ct_grid` from a NIfTI label map (nearest neighbour, LPS). The label
/// map must cover the CT: a map on another grid size or one that does not overlap is refused.
pub fn reference_from_labelmap(
    ct_grid: &crate::geometry::Grid3,
    path: &Path,
    map: &[(String, Vec<u32>)],
) -> Result<Vec<(String, Mask)>> {
    reference_from_volume(ct_grid, path, &nifti::read_nifti(path)?, map)
}

/// [`reference_from_labelmap`] on a label map already read from `path` (used in messages).
pub fn reference_from_volume(
    ct_grid: &crate::geometry::Grid3,
    path: &Path,
    lab: &nifti::NiftiVolume,
    map: &[(String, Vec<u32>)],
) -> Result<Vec<(String, Mask)>> {
    if lab.grid.dims != ct_grid.dims {
        return Err(Error::Config {
            path: path.to_path_buf(),
            reason: format!(
                "label map is {:?} voxels, the CT {:?}; it must be on the CT's grid",
                lab.grid.dims, ct_grid.dims
            ),
        });
    }
    let tol: Vec<f64> = ct_grid.spacing_mm.iter().map(|s| 0.5 * s).collect();
    if (0..3).any(|a| (lab.grid.origin_mm[a] - ct_grid.origin_mm[a]).abs() > tol[a])
        || (0..3).any(|a| (lab.grid.spacing_mm[a] - ct_grid.spacing_mm[a]).abs() > 1e-3)
    {
        return Err(Error::Config {
            path: path.to_path_buf(),
            reason: format!(
                "label map grid (first voxel {:?} mm LPS, spacing {:?} mm) is not the CT's ({:?}, {:?})",
                lab.grid.origin_mm, lab.grid.spacing_mm, ct_grid.origin_mm, ct_grid.spacing_mm
            ),
        });
    }
    let on_ct = nifti::resample_nearest(&lab.grid, &lab.values, ct_grid, 0.0);
    Ok(map
        .iter()
        .map(|(name, ids)| {
            let inside = on_ct
                .iter()
                .map(|&v| v >= 0.5 && ids.contains(&(v.round() as u32)))
                .collect();
            (
                name.clone(),
                Mask {
                    grid: *ct_grid,
                    inside,
                },
            )
        })
        .collect())
}

/// One row of the evaluation table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalRow {
    pub name: String,
    #[serde(flatten)]
    pub agreement: eval::Agreement,
}

/// `rtopt segment-eval`: classical segmentation of the CT compared with the reference, one
/// row per structure present in both.
pub fn segment_eval_rows(a: &SegmentEvalRequest) -> Result<Vec<EvalRow>> {
    let name = a
        .reference
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let is_nifti = name.ends_with(".nii") || name.ends_with(".nii.gz");
    // Read the label map before the CT so that a bad reference fails fast.
    let labelmap = if is_nifti {
        let map = match &a.labels {
            Some(p) => read_label_map(p)?,
            None => totalseg_default_map(),
        };
        Some((nifti::read_nifti(&a.reference)?, map))
    } else {
        None
    };
    let mut model = load_model(a.model.as_deref())?;
    let mut ct_opts = crate::io::dicom::ct::CtImportOptions::default();
    if a.memory_budget_bytes.is_some() {
        ct_opts.memory_budget_bytes = a.memory_budget_bytes;
    }
    let (ct, _) = crate::io::dicom::ct::load_ct_folder(&a.folder, &ct_opts)?;
    let reference: Vec<(String, Mask)> = if let Some((lab, map)) = &labelmap {
        reference_from_volume(&ct.grid, &a.reference, lab, map)?
    } else {
        let ss = crate::io::dicom::rtstruct::read_rtstruct(&a.reference)?;
        structures::check_frame_of_reference(&ss, &ct.meta.frame_of_reference_uid)?;
        structures::rasterize_all(&ss, &ct.grid)?
            .into_iter()
            .map(|s| (s.roi.name, s.mask))
            .collect()
    };
    let res = run_segmentation(&ct, model.as_mut())?;
    Ok(res
        .structures
        .iter()
        .filter_map(|s| {
            let (_, r) = reference
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&s.roi.name))?;
            Some(EvalRow {
                name: s.roi.name.clone(),
                agreement: eval::agreement(&s.mask, r),
            })
        })
        .collect())
}

/// The evaluation table as printed by `rtopt segment-eval`.
pub fn format_rows(rows: &[EvalRow]) -> String {
    let mut s = format!(
        "{:<16} {:>7} {:>10} {:>12} {:>12}\n",
        "structure", "Dice", "HD95 mm", "auto cm3", "ref cm3"
    );
    for r in rows {
        let g = &r.agreement;
        s.push_str(&format!(
            "{:<16} {:>7.3} {:>10} {:>12.1} {:>12.1}\n",
            r.name,
            g.dice,
            g.hd95_mm.map_or_else(|| "-".into(), |h| format!("{h:.1}")),
            g.volume_test_cm3,
            g.volume_reference_cm3
        ));
    }
    if rows.is_empty() {
        s.push_str("(no structure present in both the segmentation and the reference)\n");
    }
    s
}
