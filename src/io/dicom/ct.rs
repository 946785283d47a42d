//! CT import (DICOM codec): a folder of CT Image Storage files becomes a [`CtVolume`] of
//! Hounsfield units on an axis-aligned LPS grid.
//!
//! Slices are sorted by their position along the slice normal (ImagePositionPatient projected
//! on row x column), never by file name or InstanceNumber. Every slice must share orientation,
//! size and pixel spacing with the first, and the slice positions must be uniformly spaced.
//! PatientPosition (0018,5100) must be present unless [`CtImportOptions::assume_hfs`] is set.

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

use super::error::DicomError;
use super::read::{self, tags, Attr, DicomFile, Probe};
use crate::ct::{CtMeta, CtVolume};
use crate::error::{Error, Result};
use crate::geometry::Grid3;

/// What a folder scan found besides the chosen CT series.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderScan {
    /// RT Structure Set files.
    pub rtstructs: Vec<PathBuf>,
    /// Other DICOM objects set aside (RT Plan, RT Dose, ...), with their SOP class.
    pub other_dicom: Vec<(PathBuf, String)>,
    /// Files that are not DICOM, with the reason.
    pub not_dicom: Vec<(PathBuf, String)>,
    /// Import warnings about the CT (e.g. PatientPosition assumed HFS).
    pub warnings: Vec<String>,
}

/// Options for [`load_ct_folder`].
#[derive(Debug, Clone)]
pub struct CtImportOptions {
    /// SeriesInstanceUID to pick when the folder holds several CT series.
    pub series_uid: Option<String>,
    /// Refuse volumes whose HU array (Rows x Columns x slices x 4 bytes) would exceed this many
    /// bytes, before any pixel is decoded (None: no limit). The default is
    /// [`crate::budget::default_memory_budget_bytes`] (half the machine's memory).
    pub memory_budget_bytes: Option<u64>,
    /// Take an absent or empty PatientPosition (0018,5100) as `HFS` and record a warning
    /// (CLI: `--assume-hfs`). When false (the default) such a series is refused: the beam
    /// geometry depends on the patient's orientation and rtopt does not guess it.
    pub assume_hfs: bool,
}

impl Default for CtImportOptions {
    fn default() -> Self {
        CtImportOptions {
            series_uid: None,
            memory_budget_bytes: Some(crate::budget::default_memory_budget_bytes()),
            assume_hfs: false,
        }
    }
}

/// Largest volume [`parse_slice_bytes`] accepts (it decodes a single slice).
const SINGLE_SLICE_BUDGET_BYTES: u64 = 64 << 20;

/// Parse one CT slice held in memory (DICOM file bytes) through the same validation and
/// pixel-decoding path as [`load_ct_folder`], giving a one-slice volume. `path` is used in
/// messages only. Rows x Columns above 16 M pixels are refused before decoding. Used by the
/// fuzz target `fuzz/fuzz_targets/ct_slice.rs`; never panics on any input.
pub fn parse_slice_bytes(path: &Path, bytes: &[u8]) -> Result<CtVolume> {
    let f = match read::probe_bytes(path, bytes)? {
        Probe::Dicom(f) => *f,
        Probe::NotDicom(reason) => {
            return Err(DicomError::BadDicom {
                path: path.to_path_buf(),
                reason,
            }
            .into())
        }
    };
    let sop_class = read::opt_str(&f.obj, tags::SOP_CLASS_UID)
        .unwrap_or_else(|| f.obj.meta().media_storage_sop_class_uid().to_string());
    let sop_class = sop_class.trim_end_matches('\0');
    let modality = read::opt_str(&f.obj, tags::MODALITY).unwrap_or_default();
    if sop_class != read::CT_IMAGE_STORAGE || modality != "CT" {
        return Err(DicomError::Tag {
            path: path.to_path_buf(),
            tag: "(0008,0016)".into(),
            name: "SOPClassUID",
            reason: format!("'{sop_class}' (Modality '{modality}') is not a CT image"),
        }
        .into());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let opts = CtImportOptions {
        series_uid: None,
        memory_budget_bytes: Some(SINGLE_SLICE_BUDGET_BYTES),
        assume_hfs: false,
    };
    assemble(dir, vec![f], &opts).map(|(ct, _)| ct)
}

struct Slice {
    file: DicomFile,
    series_uid: String,
    normal_pos_mm: f64,
}

fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let p = entry.path();
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Scan a folder: the CT slices of the chosen series and everything else set aside.
pub fn load_ct_folder(dir: &Path, opts: &CtImportOptions) -> Result<(CtVolume, FolderScan)> {
    let files = list_files(dir)?;
    let budget = opts
        .memory_budget_bytes
        .unwrap_or_else(crate::budget::default_memory_budget_bytes);
    let probed: Vec<Result<Probe>> = files
        .par_iter()
        .map(|p| read::probe_within(p, budget))
        .collect();
    let mut scan = FolderScan::default();
    let mut slices: Vec<DicomFile> = Vec::new();
    for (path, pr) in files.iter().zip(probed) {
        match pr? {
            Probe::NotDicom(reason) => scan.not_dicom.push((path.clone(), reason)),
            Probe::Dicom(f) => {
                let sop_class = read::opt_str(&f.obj, tags::SOP_CLASS_UID)
                    .unwrap_or_else(|| f.obj.meta().media_storage_sop_class_uid().to_string());
                let sop_class = sop_class.trim_end_matches('\0').to_string();
                let modality = read::opt_str(&f.obj, tags::MODALITY).unwrap_or_default();
                if sop_class == read::CT_IMAGE_STORAGE {
                    if modality != "CT" {
                        return Err(DicomError::Tag {
                            path: path.clone(),
                            tag: "(0008,0060)".into(),
                            name: "Modality",
                            reason: format!(
                                "is '{modality}' but the SOP class is CT Image Storage; expected CT"
                            ),
                        }
                        .into());
                    }
                    slices.push(*f);
                } else if sop_class == read::RT_STRUCTURE_SET_STORAGE {
                    scan.rtstructs.push(path.clone());
                } else {
                    scan.other_dicom
                        .push((path.clone(), format!("{sop_class} ({modality})")));
                }
            }
        }
    }
    if slices.is_empty() {
        let found = format!(
            "{} RTSTRUCT, {} other DICOM, {} non-DICOM files",
            scan.rtstructs.len(),
            scan.other_dicom.len(),
            scan.not_dicom.len()
        );
        return Err(DicomError::NoCt {
            dir: dir.to_path_buf(),
            found,
        }
        .into());
    }
    let (ct, warnings) = assemble(dir, slices, opts)?;
    scan.warnings = warnings;
    Ok((ct, scan))
}

fn series_listing(groups: &BTreeMap<String, Vec<Slice>>) -> String {
    groups
        .iter()
        .map(|(uid, s)| {
            let desc = s
                .first()
                .and_then(|s| read::opt_str(&s.file.obj, tags::SERIES_DESCRIPTION))
                .unwrap_or_else(|| "(no description)".into());
            format!("  {uid}  '{desc}'  {} slices", s.len())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The CT volume of the chosen series, and import warnings.
fn assemble(
    dir: &Path,
    files: Vec<DicomFile>,
    opts: &CtImportOptions,
) -> Result<(CtVolume, Vec<String>)> {
    // Group by series.
    let mut groups: BTreeMap<String, Vec<Slice>> = BTreeMap::new();
    for f in files {
        let a = Attr::new(&f.path, &f.obj);
        let series_uid = a.string(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
        groups.entry(series_uid.clone()).or_default().push(Slice {
            file: f,
            series_uid,
            normal_pos_mm: 0.0,
        });
    }
    let mut slices = match &opts.series_uid {
        Some(uid) => match groups.remove(uid) {
            Some(s) => s,
            None => {
                return Err(DicomError::SeriesNotFound {
                    dir: dir.to_path_buf(),
                    uid: uid.clone(),
                    listing: series_listing(&groups),
                }
                .into())
            }
        },
        None if groups.len() > 1 => {
            return Err(DicomError::MultipleSeries {
                dir: dir.to_path_buf(),
                count: groups.len(),
                listing: series_listing(&groups),
            }
            .into())
        }
        None => groups.into_values().next().unwrap_or_default(),
    };

    // Geometry of the first slice (in file order) is the reference.
    let Some(first) = slices.first().map(|s| &s.file) else {
        return Err(DicomError::NoCt {
            dir: dir.to_path_buf(),
            found: "no slice in the chosen series".into(),
        }
        .into());
    };
    let first_path = first.path.clone();
    let a0 = Attr::new(&first.path, &first.obj);
    let slice_thickness = a0.f64_or(tags::SLICE_THICKNESS, "SliceThickness", 1.0)?;
    let iop = a0.f64s(
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
        6,
    )?;
    let rows = a0.int(tags::ROWS, "Rows")?;
    let cols = a0.int(tags::COLUMNS, "Columns")?;
    let ps: [f64; 2] = a0.f64_array(tags::PIXEL_SPACING, "PixelSpacing")?;
    let (ny, nx) = match (usize::try_from(rows), usize::try_from(cols)) {
        (Ok(r), Ok(c)) if r > 0 && c > 0 && r <= 65535 && c <= 65535 => (r, c),
        _ => {
            return Err(a0.invalid(
                tags::ROWS,
                "Rows",
                format!("image size {rows} x {cols} (each must be 1 ..= 65535)"),
            ))
        }
    };
    if ps.iter().any(|&v| v <= 0.0) {
        return Err(a0.invalid(tags::PIXEL_SPACING, "PixelSpacing", "must be positive"));
    }
    let standard = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    if iop.iter().zip(standard).any(|(a, b)| (a - b).abs() > 1e-4) {
        return Err(DicomError::UnsupportedOrientation {
            path: first.path.clone(),
            value: format!("{iop:?}"),
        }
        .into());
    }
    let normal = [0.0, 0.0, 1.0];
    for s in slices.iter_mut() {
        let a = Attr::new(&s.file.path, &s.file.obj);
        let iop_s = a.f64s(
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            6,
        )?;
        if iop_s.iter().zip(&iop).any(|(x, y)| (x - y).abs() > 1e-4) {
            return Err(DicomError::InconsistentSlice {
                path: s.file.path.clone(),
                tag: "(0020,0037)",
                name: "ImageOrientationPatient",
                detail: format!(
                    "{iop_s:?}, but the first slice {} has {iop:?}",
                    first_path.display()
                ),
            }
            .into());
        }
        for (tag, name, tag_s, expect) in [
            (tags::ROWS, "Rows", "(0028,0010)", rows),
            (tags::COLUMNS, "Columns", "(0028,0011)", cols),
        ] {
            let v = a.int(tag, name)?;
            if v != expect {
                return Err(DicomError::InconsistentSlice {
                    path: s.file.path.clone(),
                    tag: tag_s,
                    name,
                    detail: format!(
                        "{}, but the first slice {} has {}",
                        v,
                        first_path.display(),
                        expect
                    ),
                }
                .into());
            }
        }
        let ps_s = a.f64s(tags::PIXEL_SPACING, "PixelSpacing", 2)?;
        if ps_s.iter().zip(&ps).any(|(x, y)| (x - y).abs() > 1e-4) {
            return Err(DicomError::InconsistentSlice {
                path: s.file.path.clone(),
                tag: "(0028,0030)",
                name: "PixelSpacing",
                detail: format!(
                    "{ps_s:?}, but the first slice {} has {ps:?}",
                    first_path.display()
                ),
            }
            .into());
        }
        let ipp: [f64; 3] = a.f64_array(tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient")?;
        s.normal_pos_mm = ipp[0] * normal[0] + ipp[1] * normal[1] + ipp[2] * normal[2];
    }
    slices.sort_by(|a, b| a.normal_pos_mm.total_cmp(&b.normal_pos_mm));

    // Uniform spacing: duplicates and gaps are errors naming both files.
    let dz = if slices.len() > 1 {
        let pairs = || slices.iter().zip(slices.iter().skip(1));
        let gaps: Vec<f64> = pairs()
            .map(|(a, b)| b.normal_pos_mm - a.normal_pos_mm)
            .collect();
        let mut sorted = gaps.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        for ((s0, s1), gap) in pairs().zip(&gaps) {
            let tol = (0.01 * median).max(1e-3);
            if *gap < 1e-3 || (*gap - median).abs() > tol {
                let kind = if *gap < 1e-3 {
                    "duplicate slice position"
                } else if *gap > median {
                    "missing slice (gap)"
                } else {
                    "irregular spacing"
                };
                return Err(DicomError::SliceSpacing {
                    first: s0.file.path.clone(),
                    second: s1.file.path.clone(),
                    gap_mm: *gap,
                    expected_mm: median,
                    kind,
                }
                .into());
            }
        }
        let lo = slices.first().map_or(0.0, |s| s.normal_pos_mm);
        let hi = slices.last().map_or(0.0, |s| s.normal_pos_mm);
        (hi - lo) / (slices.len() - 1) as f64
    } else {
        slice_thickness
    };
    if dz.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(DicomError::Tag {
            path: first_path,
            tag: "(0018,0050)".into(),
            name: "SliceThickness",
            reason: "slice spacing must be positive".into(),
        }
        .into());
    }

    let nz = slices.len();
    // Saturating: a declared size beyond u64 is refused by any budget.
    let bytes = (nx as u64)
        .saturating_mul(ny as u64)
        .saturating_mul(nz as u64)
        .saturating_mul(4);
    if let Some(budget) = opts.memory_budget_bytes {
        if bytes > budget {
            return Err(Error::MemoryBudget {
                what: format!("CT volume {nx} x {ny} x {nz} (f32 HU)"),
                needed_bytes: bytes,
                budget_bytes: budget,
                advice: "crop or resample the series, or raise the budget \
                         (CtImportOptions::memory_budget_bytes; RTOPT_MEMORY_BUDGET_MB for the command line)"
                    .into(),
            });
        }
    }
    // Sorting keeps the length, so the series still has a first slice.
    let Some(s0) = slices.first() else {
        return Err(DicomError::NoCt {
            dir: dir.to_path_buf(),
            found: "no slice in the chosen series".into(),
        }
        .into());
    };
    let first_ipp: [f64; 3] = Attr::new(&s0.file.path, &s0.file.obj)
        .f64_array(tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient")?;
    // PatientPosition before any pixel is decoded: refused when absent unless assumed.
    let mut warnings = Vec::new();
    let patient_position = match read::opt_str(&s0.file.obj, tags::PATIENT_POSITION) {
        Some(pp) => pp,
        None if opts.assume_hfs => {
            warnings.push(format!(
                "{}: tag (0018,5100) PatientPosition is missing or empty; assumed HFS (head first supine) as requested (--assume-hfs)",
                s0.file.path.display()
            ));
            "HFS".to_string()
        }
        None => {
            return Err(DicomError::Tag {
                path: s0.file.path.clone(),
                tag: "(0018,5100)".into(),
                name: "PatientPosition",
                reason: "missing or empty; rtopt does not guess the patient's orientation. \
                         If the patient was scanned head first supine, pass --assume-hfs \
                         (CtImportOptions::assume_hfs)"
                    .into(),
            }
            .into())
        }
    };
    // PixelSpacing is (row spacing = y, column spacing = x).
    let grid = Grid3 {
        dims: [nx, ny, nz],
        origin_mm: [first_ipp[0], first_ipp[1], first_ipp[2]],
        spacing_mm: [ps[1], ps[0], dz],
    };

    let planes: Vec<Vec<f32>> = slices
        .par_iter()
        .map(|s| decode_slice_hu(&s.file, nx, ny))
        .collect::<Result<_>>()?;
    let mut hu = Vec::with_capacity(nx * ny * nz);
    for p in planes {
        hu.extend_from_slice(&p);
    }

    let f0 = &s0.file.obj;
    let s = |tag| read::opt_str(f0, tag).unwrap_or_default();
    let meta = CtMeta {
        series_instance_uid: s0.series_uid.clone(),
        study_instance_uid: s(tags::STUDY_INSTANCE_UID),
        frame_of_reference_uid: Attr::new(&s0.file.path, f0)
            .string(tags::FRAME_OF_REFERENCE_UID, "FrameOfReferenceUID")?,
        series_description: s(tags::SERIES_DESCRIPTION),
        patient_position,
        manufacturer: s(tags::MANUFACTURER),
        patient_name: s(tags::PATIENT_NAME),
        patient_id: s(tags::PATIENT_ID),
        patient_birth_date: s(tags::PATIENT_BIRTH_DATE),
        patient_sex: s(tags::PATIENT_SEX),
        study_date: s(tags::STUDY_DATE),
        study_time: s(tags::STUDY_TIME),
        study_id: s(tags::STUDY_ID),
        accession_number: s(tags::ACCESSION_NUMBER),
        referring_physician_name: s(tags::REFERRING_PHYSICIAN_NAME),
        study_description: s(tags::STUDY_DESCRIPTION),
        patient_identity_removed: s(tags::PATIENT_IDENTITY_REMOVED),
        deidentification_method: s(tags::DEIDENTIFICATION_METHOD),
        sop_instance_uids: slices
            .iter()
            .map(|s| read::opt_str(&s.file.obj, tags::SOP_INSTANCE_UID).unwrap_or_default())
            .collect(),
        files: slices.iter().map(|s| s.file.path.clone()).collect(),
    };
    Ok((CtVolume { grid, hu, meta }, warnings))
}

const NATIVE_SYNTAXES: [&str; 3] = [
    "1.2.840.10008.1.2",      // implicit VR little endian
    "1.2.840.10008.1.2.1",    // explicit VR little endian
    "1.2.840.10008.1.2.1.99", // deflated explicit VR little endian (inflated by the parser)
];

/// Decode one slice to HU.
fn decode_slice_hu(f: &DicomFile, nx: usize, ny: usize) -> Result<Vec<f32>> {
    let a = Attr::new(&f.path, &f.obj);
    let slope = a.f64_or(tags::RESCALE_SLOPE, "RescaleSlope", 1.0)?;
    let intercept = a.f64_or(tags::RESCALE_INTERCEPT, "RescaleIntercept", 0.0)?;
    let bits = a.int(tags::BITS_ALLOCATED, "BitsAllocated")?;
    let signed = a.int(tags::PIXEL_REPRESENTATION, "PixelRepresentation")? == 1;
    let spp = a.f64_or(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel", 1.0)?;
    if spp != 1.0 {
        return Err(a.invalid(
            tags::SAMPLES_PER_PIXEL,
            "SamplesPerPixel",
            "CT must have 1 sample per pixel",
        ));
    }
    if f.obj.get(tags::PIXEL_DATA).is_none() {
        return Err(a.invalid(tags::PIXEL_DATA, "PixelData", "missing"));
    }
    let n = nx.saturating_mul(ny);
    let native = NATIVE_SYNTAXES.contains(&f.transfer_syntax.as_str());
    let decoded;
    let raw: &[u8] = if native {
        decoded = f
            .obj
            .get(tags::PIXEL_DATA)
            .map(|e| e.to_bytes())
            .transpose()
            .map_err(|e| a.invalid(tags::PIXEL_DATA, "PixelData", e.to_string()))?
            .unwrap_or_default()
            .into_owned();
        &decoded
    } else {
        use dicom_pixeldata::PixelDecoder;
        use dicom_transfer_syntax_registry::TransferSyntaxIndex;
        let name = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(&f.transfer_syntax)
            .map(|t| t.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        let d = f
            .obj
            .decode_pixel_data()
            .map_err(|e| DicomError::UnsupportedTransferSyntax {
                path: f.path.clone(),
                uid: f.transfer_syntax.clone(),
                name,
                reason: e.to_string(),
            })?;
        decoded = d.data().to_vec();
        &decoded
    };
    let bytes_per = match bits {
        8 => 1,
        16 => 2,
        32 => 4,
        _ => {
            return Err(a.invalid(
                tags::BITS_ALLOCATED,
                "BitsAllocated",
                format!("{bits} is not supported (8, 16 or 32)"),
            ))
        }
    };
    if raw.len() / bytes_per < n {
        return Err(a.invalid(
            tags::PIXEL_DATA,
            "PixelData",
            format!(
                "has {} bytes, expected {} for {nx} x {ny} x {bits} bit (truncated?)",
                raw.len(),
                n.saturating_mul(bytes_per)
            ),
        ));
    }
    let mut out = Vec::with_capacity(n);
    for px in raw.chunks_exact(bytes_per).take(n) {
        let v: f64 = match (px, signed) {
            (&[b], false) => b as f64,
            (&[b], true) => b as i8 as f64,
            (&[b0, b1], false) => u16::from_le_bytes([b0, b1]) as f64,
            (&[b0, b1], true) => i16::from_le_bytes([b0, b1]) as f64,
            (&[b0, b1, b2, b3], false) => u32::from_le_bytes([b0, b1, b2, b3]) as f64,
            (&[b0, b1, b2, b3], true) => i32::from_le_bytes([b0, b1, b2, b3]) as f64,
            // chunks_exact(bytes_per) with bytes_per in {1, 2, 4}: no other length occurs.
            _ => 0.0,
        };
        out.push((v * slope + intercept) as f32);
    }
    Ok(out)
}
