//! RT Structure Set reading ([`read_rtstruct`]: ROIs, their interpreted types and contours) and
//! export ([`write_rtstruct`]; DICOM PS3.3 A.19: Patient, General Study, RT Series, Frame of
//! Reference, General Equipment, Structure Set, ROI Contour, RT ROI Observations, SOP Common).
//!
//! The reader never panics on any input (fuzzed: `fuzz/fuzz_targets/rtstruct.rs`); ROI numbers
//! bind observations and contours to their ROI, a duplicate number is refused.
//!
//! The structure set references the CT it was drawn on: the CT's StudyInstanceUID and
//! FrameOfReferenceUID, ReferencedFrameOfReferenceSequence > RTReferencedStudySequence >
//! RTReferencedSeriesSequence > ContourImageSequence listing every CT slice (CT Image Storage +
//! SOPInstanceUID), and each CLOSED_PLANAR contour points at the slice it lies on. The
//! SOPInstanceUID and SeriesInstanceUID are derived from the content
//! ([`crate::io::dicom::uid::derive_uid`]): the same CT and ROIs give the same bytes.

// Input module: data from files must never panic (project issue 9, docs/reliability.md).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dicom_core::VR;

use super::builder::{ds, equipment, patient_study_frame, to_part10, Ds};
use super::error::DicomError;
use super::identity::{put_creation, CreationTime};
use super::read::{self, tags, Attr, CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE};
use super::uid::derive_uid;
use crate::ct::CtVolume;
use crate::error::{Error, Result};
use crate::structures::{Contour, Roi, StructureSet};

/// Read an RT Structure Set file (with or without DICOM file meta header).
pub fn read_rtstruct(path: &Path) -> Result<StructureSet> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_rtstruct_bytes(path, &bytes)
}

/// [`read_rtstruct`] on file bytes already in memory; `path` is used in messages only.
/// Never panics on any input (fuzzed: `fuzz/fuzz_targets/rtstruct.rs`).
pub fn read_rtstruct_bytes(path: &Path, bytes: &[u8]) -> Result<StructureSet> {
    let f = match read::probe_bytes(path, bytes)? {
        read::Probe::Dicom(f) => *f,
        read::Probe::NotDicom(reason) => {
            return Err(DicomError::BadDicom {
                path: path.to_path_buf(),
                reason,
            }
            .into())
        }
    };
    let a = Attr::new(path, &f.obj);
    let sop_class = read::opt_str(&f.obj, tags::SOP_CLASS_UID).unwrap_or_default();
    let modality = read::opt_str(&f.obj, tags::MODALITY).unwrap_or_default();
    if sop_class != read::RT_STRUCTURE_SET_STORAGE && modality != "RTSTRUCT" {
        return Err(a.invalid(
            tags::SOP_CLASS_UID,
            "SOPClassUID",
            format!("'{sop_class}' (Modality '{modality}') is not an RT Structure Set"),
        ));
    }
    let mut frame_of_reference_uid = a
        .items(tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE)
        .iter()
        .find_map(|it| read::opt_str(it, tags::FRAME_OF_REFERENCE_UID));

    let mut rois: BTreeMap<i64, Roi> = BTreeMap::new();
    let mut roi_frames: BTreeMap<i64, String> = BTreeMap::new();
    for it in a.items(tags::STRUCTURE_SET_ROI_SEQUENCE) {
        let ia = Attr::new(path, it);
        let number = ia.int(tags::ROI_NUMBER, "ROINumber")?;
        let name = read::opt_str(it, tags::ROI_NAME).unwrap_or_else(|| format!("ROI {number}"));
        if let Some(first) = rois.get(&number) {
            // Two items with one number would make contours bind to the wrong ROI.
            return Err(ia.invalid(
                tags::ROI_NUMBER,
                "ROINumber",
                format!(
                    "{number} is used by both '{}' and '{name}' in StructureSetROISequence (3006,0020)",
                    first.name
                ),
            ));
        }
        let roi_frame = read::opt_str(it, tags::REFERENCED_FRAME_OF_REFERENCE_UID);
        if frame_of_reference_uid.is_none() {
            frame_of_reference_uid = roi_frame.clone();
        }
        if let Some(uid) = roi_frame {
            roi_frames.insert(number, uid);
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
                read::opt_str(it, tags::RTROI_INTERPRETED_TYPE).unwrap_or_default();
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
        if let Some(c) = read::opt_f64s(it, tags::ROI_DISPLAY_COLOR) {
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
            let geometric_type = read::opt_str(c, tags::CONTOUR_GEOMETRIC_TYPE)
                .unwrap_or_else(|| "CLOSED_PLANAR".into());
            let data = read::opt_f64s(c, tags::CONTOUR_DATA).unwrap_or_default();
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
        sop_instance_uid: read::opt_str(&f.obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        label: read::opt_str(&f.obj, tags::STRUCTURE_SET_LABEL).unwrap_or_default(),
        frame_of_reference_uid,
        roi_frames,
        rois: rois.into_values().collect(),
    })
}

// ---- writing ----

/// One ROI to write, with how it was made.
#[derive(Debug, Clone)]
pub struct RoiOut {
    pub roi: Roi,
    /// ROIGenerationAlgorithm (3006,0036): `AUTOMATIC`, `SEMIAUTOMATIC` or `MANUAL`.
    pub generation_algorithm: String,
    /// ROIGenerationDescription (3006,0038), e.g. the method; empty to omit.
    pub generation_description: String,
}

fn bad(m: String) -> Error {
    Error::Invalid(format!("RT Structure Set export: {m}"))
}

fn check(ct: &CtVolume, rois: &[RoiOut], label: &str) -> Result<()> {
    let meta = &ct.meta;
    if label.is_empty() || label.len() > 16 {
        return Err(bad(format!(
            "StructureSetLabel '{label}' must have 1 to 16 characters"
        )));
    }
    if meta.frame_of_reference_uid.is_empty() || meta.study_instance_uid.is_empty() {
        return Err(bad(
            "the CT has no FrameOfReferenceUID or StudyInstanceUID".into()
        ));
    }
    if meta.sop_instance_uids.len() != ct.grid.dims[2] {
        return Err(bad(format!(
            "the CT has {} slices but {} SOPInstanceUIDs",
            ct.grid.dims[2],
            meta.sop_instance_uids.len()
        )));
    }
    let mut numbers = BTreeSet::new();
    for r in rois {
        if r.roi.number <= 0 || !numbers.insert(r.roi.number) {
            return Err(bad(format!(
                "ROI '{}' has number {}, which is not positive or not unique",
                r.roi.name, r.roi.number
            )));
        }
        if r.roi.name.is_empty() || r.roi.name.len() > 64 {
            return Err(bad(format!(
                "ROI name '{}' must have 1 to 64 characters",
                r.roi.name
            )));
        }
        if r.generation_description.len() > 64 {
            return Err(bad(format!(
                "ROI '{}': ROIGenerationDescription has more than 64 characters",
                r.roi.name
            )));
        }
        for (ci, c) in r.roi.contours.iter().enumerate() {
            if c.geometric_type == "CLOSED_PLANAR" && c.points_mm.len() < 3 {
                return Err(bad(format!(
                    "ROI '{}' contour {ci} has {} points; CLOSED_PLANAR needs 3",
                    r.roi.name,
                    c.points_mm.len()
                )));
            }
            if c.points_mm.iter().flatten().any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "ROI '{}' contour {ci} has a non-finite coordinate",
                    r.roi.name
                )));
            }
        }
    }
    Ok(())
}

/// SOP Instance and Series Instance UIDs derived from the CT series, the label and every
/// ROI's number, name, type, colour, generation and contour points (as written, DS text).
fn uids(ct: &CtVolume, rois: &[RoiOut], label: &str, created: &CreationTime) -> (String, String) {
    let mut content: Vec<u8> = Vec::new();
    content.extend_from_slice(&created.unix_seconds().to_le_bytes());
    let mut field = |b: &[u8]| {
        content.extend_from_slice(&(b.len() as u64).to_le_bytes());
        content.extend_from_slice(b);
    };
    field(ct.meta.series_instance_uid.as_bytes());
    field(ct.meta.frame_of_reference_uid.as_bytes());
    field(label.as_bytes());
    for r in rois {
        field(&r.roi.number.to_le_bytes());
        field(r.roi.name.as_bytes());
        field(r.roi.interpreted_type.as_bytes());
        field(&r.roi.color);
        field(r.generation_algorithm.as_bytes());
        field(r.generation_description.as_bytes());
        for c in &r.roi.contours {
            field(c.geometric_type.as_bytes());
            for v in c.points_mm.iter().flatten() {
                field(ds(*v).as_bytes());
            }
        }
    }
    (
        derive_uid("rtstruct-sop", &[&content]),
        derive_uid("rtstruct-series", &[&content]),
    )
}

fn image_ref(sop_instance_uid: &str) -> Ds {
    let mut im = Ds::new();
    im.s(tags::REFERENCED_SOP_CLASS_UID, VR::UI, CT_IMAGE_STORAGE)
        .s(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, sop_instance_uid);
    im
}

/// Encode an RT Structure Set for `ct` holding `rois` (ROI numbers as given; unique and
/// positive), created at `created` (StructureSetDate/Time, InstanceCreationDate/Time, UTC).
/// Returns the Part-10 bytes (explicit VR little endian) and the SOPInstanceUID.
pub fn rtstruct_bytes(
    ct: &CtVolume,
    rois: &[RoiOut],
    label: &str,
    created: &CreationTime,
) -> Result<(Vec<u8>, String)> {
    check(ct, rois, label)?;
    let meta = &ct.meta;
    let (sop_uid, series_uid) = uids(ct, rois, label, created);
    let mut o = Ds::new();
    o.s(tags::SOP_CLASS_UID, VR::UI, RT_STRUCTURE_SET_STORAGE)
        .s(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid)
        .s(tags::MODALITY, VR::CS, "RTSTRUCT")
        .s(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid)
        .is(tags::SERIES_NUMBER, super::identity::SERIES_NUMBER_RTSTRUCT)
        .s(tags::SERIES_DESCRIPTION, VR::LO, "rtopt structures")
        .s(tags::OPERATORS_NAME, VR::PN, "");
    put_creation(&mut o, created);
    patient_study_frame(&mut o, meta);
    equipment(&mut o);
    o.is(tags::INSTANCE_NUMBER, 1)
        .s(tags::STRUCTURE_SET_LABEL, VR::SH, label)
        .s(tags::STRUCTURE_SET_DATE, VR::DA, &created.dicom_date())
        .s(tags::STRUCTURE_SET_TIME, VR::TM, &created.dicom_time());

    // Referenced frame of reference > study > series > every CT slice.
    let mut series = Ds::new();
    series
        .s(tags::SERIES_INSTANCE_UID, VR::UI, &meta.series_instance_uid)
        .seq(
            tags::CONTOUR_IMAGE_SEQUENCE,
            meta.sop_instance_uids
                .iter()
                .map(|u| image_ref(u))
                .collect(),
        );
    let mut study = Ds::new();
    // Detached Study Management SOP Class (retired), as PS3.3 C.8.8.5 examples and most
    // treatment-planning systems use.
    study
        .s(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.3.1.2.3.1",
        )
        .s(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &meta.study_instance_uid,
        )
        .seq(tags::RT_REFERENCED_SERIES_SEQUENCE, vec![series]);
    let mut frame = Ds::new();
    frame
        .s(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &meta.frame_of_reference_uid,
        )
        .seq(tags::RT_REFERENCED_STUDY_SEQUENCE, vec![study]);
    o.seq(tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE, vec![frame]);

    let g = ct.grid;
    let mut ss_rois = Vec::new();
    let mut roi_contours = Vec::new();
    let mut observations = Vec::new();
    for (n, r) in rois.iter().enumerate() {
        let mut it = Ds::new();
        it.is(tags::ROI_NUMBER, r.roi.number)
            .s(
                tags::REFERENCED_FRAME_OF_REFERENCE_UID,
                VR::UI,
                &meta.frame_of_reference_uid,
            )
            .s(tags::ROI_NAME, VR::LO, &r.roi.name)
            .s(
                tags::ROI_GENERATION_ALGORITHM,
                VR::CS,
                &r.generation_algorithm,
            );
        if !r.generation_description.is_empty() {
            it.s(
                tags::ROI_GENERATION_DESCRIPTION,
                VR::LO,
                &r.generation_description,
            );
        }
        ss_rois.push(it);

        let mut items = Vec::new();
        for (ci, c) in r.roi.contours.iter().enumerate() {
            let mut item = Ds::new();
            if c.geometric_type == "CLOSED_PLANAR" {
                let z = c.points_mm.first().map_or(f64::NAN, |p| p[2]);
                let k = ((z - g.origin_mm[2]) / g.spacing_mm[2]).round();
                if k >= 0.0 {
                    if let Some(uid) = meta.sop_instance_uids.get(k as usize) {
                        item.seq(tags::CONTOUR_IMAGE_SEQUENCE, vec![image_ref(uid)]);
                    }
                }
            }
            let data: Vec<f64> = c.points_mm.iter().flatten().copied().collect();
            item.is(tags::CONTOUR_NUMBER, ci as i64 + 1)
                .s(tags::CONTOUR_GEOMETRIC_TYPE, VR::CS, &c.geometric_type)
                .is(tags::NUMBER_OF_CONTOUR_POINTS, c.points_mm.len() as i64)
                .dm(tags::CONTOUR_DATA, &data);
            items.push(item);
        }
        let [cr, cg, cb] = r.roi.color;
        let mut rc = Ds::new();
        rc.s(
            tags::ROI_DISPLAY_COLOR,
            VR::IS,
            &format!("{cr}\\{cg}\\{cb}"),
        )
        .seq(tags::CONTOUR_SEQUENCE, items)
        .is(tags::REFERENCED_ROI_NUMBER, r.roi.number);
        roi_contours.push(rc);

        let mut ob = Ds::new();
        ob.is(tags::OBSERVATION_NUMBER, n as i64 + 1)
            .is(tags::REFERENCED_ROI_NUMBER, r.roi.number)
            .s(
                tags::RTROI_INTERPRETED_TYPE,
                VR::CS,
                &r.roi.interpreted_type,
            )
            .s(tags::ROI_INTERPRETER, VR::PN, "");
        observations.push(ob);
    }
    o.seq(tags::STRUCTURE_SET_ROI_SEQUENCE, ss_rois)
        .seq(tags::ROI_CONTOUR_SEQUENCE, roi_contours)
        .seq(tags::RTROI_OBSERVATIONS_SEQUENCE, observations);
    let bytes = to_part10(o, "RT Structure Set")?;
    Ok((bytes, sop_uid))
}

/// Write an RT Structure Set atomically to `path` (see [`rtstruct_bytes`]); returns its
/// SOPInstanceUID.
pub fn write_rtstruct(
    path: &Path,
    ct: &CtVolume,
    rois: &[RoiOut],
    label: &str,
    created: &CreationTime,
) -> Result<String> {
    let (bytes, uid) = rtstruct_bytes(ct, rois, label, created)?;
    crate::io::atomic::write_file(path, &bytes)?;
    Ok(uid)
}
