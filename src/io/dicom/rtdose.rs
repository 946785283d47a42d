//! RT Dose Storage writer and reader (see `docs/export.md`).
//!
//! Written as PLAN / PHYSICAL / GY, 16-bit unsigned pixels with DoseGridScaling (dciodvfy
//! aborts on 32-bit RT Dose; 65,535 levels of the maximum are ample), relative
//! GridFrameOffsetVector starting at 0 (PS3.3 C.8.8.3.2 case a), multi-frame, and
//! ReferencedRTPlanSequence to the plan, in the CT's study and frame of reference.
//!
//! The reader accepts 16- or 32-bit unsigned (or signed) pixels in little-endian
//! uncompressed transfer syntaxes, reads the raw bytes and applies DoseGridScaling (dicom-pixeldata
//! rejects 32-bit RT Dose), and accepts relative or absolute GridFrameOffsetVector.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::builder::{equipment, patient_study_frame, to_part10, Ds};
use super::error::DicomError;
use super::identity::{
    put_creation, CreationTime, SERIES_NUMBER_RTDOSE, SERIES_NUMBER_RTDOSE_BEAMS,
};
use super::read::{self, tags, Attr, RT_DOSE_STORAGE, RT_PLAN_STORAGE};
use super::uid::derive_uid;
use crate::ct::CtMeta;
use crate::error::{Error, Result};
use crate::geometry::Grid3;

/// Everything the RT Dose is written from.
#[derive(Debug, Clone)]
pub struct DoseExport<'a> {
    pub ct: &'a CtMeta,
    /// The dose grid (axis-aligned LPS).
    pub grid: &'a Grid3,
    /// Plan dose (all fractions), Gy, one value per voxel of `grid` in its linear order.
    pub dose_gy: &'a [f32],
    /// SOPInstanceUID of the RT Plan this dose belongs to.
    pub plan_sop_uid: &'a str,
    /// InstanceCreationDate/Time (UTC).
    pub created: CreationTime,
    /// `None`: the plan's dose (DoseSummationType PLAN); `Some(n)`: the dose of the plan's
    /// beam with BeamNumber `n` alone (BEAM), for per-field QA.
    pub beam_number: Option<i64>,
    /// TissueHeterogeneityCorrection (3004,0014) as written (CS, values separated by `\\`):
    /// `IMAGE`, `ROI_OVERRIDE` or `WATER` (the dose engine's,
    /// [`crate::dose::DoseEngine::tissue_heterogeneity_correction`]); empty: not written.
    pub tissue_heterogeneity_correction: &'a str,
}

/// A dose distribution read from an RT Dose file.
#[derive(Debug, Clone, Serialize)]
pub struct RtDose {
    pub grid: Grid3,
    /// Dose per voxel (pixel value x DoseGridScaling), grid linear order, in `units`.
    #[serde(skip)]
    pub dose: Vec<f32>,
    /// DoseUnits: `GY` or `RELATIVE`.
    pub units: String,
    pub summation_type: String,
    pub dose_grid_scaling: f64,
    pub frame_of_reference_uid: String,
    pub sop_instance_uid: String,
    /// ReferencedSOPInstanceUID of the first ReferencedRTPlanSequence item.
    pub referenced_plan_uid: Option<String>,
}

/// Encode the RT Dose. Returns the bytes and the SOPInstanceUID.
pub fn rtdose_bytes(d: &DoseExport) -> Result<(Vec<u8>, String)> {
    let g = d.grid;
    if d.dose_gy.len() != g.len() || g.is_empty() {
        return Err(Error::Invalid(format!(
            "RT Dose: {} dose values for a {}x{}x{} grid",
            d.dose_gy.len(),
            g.dims[0],
            g.dims[1],
            g.dims[2]
        )));
    }
    if g.dims[0] > 65535 || g.dims[1] > 65535 {
        return Err(Error::Invalid("RT Dose: rows/columns above 65535".into()));
    }
    if let Some(v) = d.dose_gy.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(Error::Invalid(format!(
            "RT Dose: dose value {v} Gy; doses must be finite and >= 0"
        )));
    }
    let dmax = d.dose_gy.iter().fold(0.0f32, |m, &v| m.max(v)) as f64;
    // Scaling as written (DS), never below max/65535 so the maximum fits in 16 bits.
    let mut scaling_s = format!("{:.8e}", (dmax / 65535.0).max(1e-12) * (1.0 + 1e-7));
    let mut scaling: f64 = scaling_s.parse().unwrap_or(1.0);
    if scaling * 65535.0 < dmax {
        scaling_s = format!("{:.8e}", dmax / 65535.0 * 1.0001);
        scaling = scaling_s.parse().unwrap_or(1.0);
    }
    let pixels: Vec<u16> = d
        .dose_gy
        .iter()
        .map(|&v| (v as f64 / scaling).round().clamp(0.0, 65535.0) as u16)
        .collect();
    let mut h = Sha256::new();
    for p in &pixels {
        h.update(p.to_le_bytes());
    }
    h.update(scaling_s.as_bytes());
    h.update(serde_json::to_vec(g).unwrap_or_default());
    h.update(d.plan_sop_uid.as_bytes());
    h.update(d.ct.frame_of_reference_uid.as_bytes());
    h.update(d.created.unix_seconds().to_le_bytes());
    h.update(d.beam_number.unwrap_or(-1).to_le_bytes());
    let digest = h.finalize();
    let sop_uid = derive_uid("rtdose-sop", &[&digest]);
    // The plan's RT Dose is a series of its own; the per-beam RT Doses of one plan and
    // creation time form one series together.
    let series_uid = match d.beam_number {
        None => derive_uid("rtdose-series", &[&digest]),
        Some(_) => derive_uid(
            "rtdose-beam-series",
            &[
                d.plan_sop_uid.as_bytes(),
                &d.created.unix_seconds().to_le_bytes(),
            ],
        ),
    };

    let mut o = Ds::new();
    o.s(tags::SOP_CLASS_UID, VR::UI, RT_DOSE_STORAGE)
        .s(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid)
        .s(tags::MODALITY, VR::CS, "RTDOSE")
        .s(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid)
        .is(
            tags::SERIES_NUMBER,
            match d.beam_number {
                None => SERIES_NUMBER_RTDOSE,
                Some(_) => SERIES_NUMBER_RTDOSE_BEAMS,
            },
        )
        .s(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            match d.beam_number {
                None => "rtopt plan dose",
                Some(_) => "rtopt beam doses",
            },
        )
        .s(tags::OPERATORS_NAME, VR::PN, "");
    put_creation(&mut o, &d.created);
    patient_study_frame(&mut o, d.ct);
    equipment(&mut o);
    // General Image.
    o.is(tags::INSTANCE_NUMBER, d.beam_number.unwrap_or(1));
    // Image Plane.
    o.dm(tags::PIXEL_SPACING, &[g.spacing_mm[1], g.spacing_mm[0]])
        .dm(
            tags::IMAGE_ORIENTATION_PATIENT,
            &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        )
        .dm(tags::IMAGE_POSITION_PATIENT, &g.origin_mm)
        .d(tags::SLICE_THICKNESS, g.spacing_mm[2]);
    // Image Pixel.
    o.us(tags::SAMPLES_PER_PIXEL, &[1])
        .s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2")
        .us(tags::ROWS, &[g.dims[1] as u16])
        .us(tags::COLUMNS, &[g.dims[0] as u16])
        .us(tags::BITS_ALLOCATED, &[16])
        .us(tags::BITS_STORED, &[16])
        .us(tags::HIGH_BIT, &[15])
        .us(tags::PIXEL_REPRESENTATION, &[0]);
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into_iter().collect()),
    ));
    // Multi-frame.
    o.is(tags::NUMBER_OF_FRAMES, g.dims[2] as i64);
    o.put(DataElement::new(
        tags::FRAME_INCREMENT_POINTER,
        VR::AT,
        PrimitiveValue::Tags([tags::GRID_FRAME_OFFSET_VECTOR].into_iter().collect()),
    ));
    // RT Dose.
    let offsets: Vec<f64> = (0..g.dims[2]).map(|k| k as f64 * g.spacing_mm[2]).collect();
    o.s(tags::DOSE_UNITS, VR::CS, "GY")
        .s(tags::DOSE_TYPE, VR::CS, "PHYSICAL")
        .s(
            tags::DOSE_SUMMATION_TYPE,
            VR::CS,
            if d.beam_number.is_some() {
                "BEAM"
            } else {
                "PLAN"
            },
        )
        .dm(tags::GRID_FRAME_OFFSET_VECTOR, &offsets)
        .s(tags::DOSE_GRID_SCALING, VR::DS, &scaling_s);
    if !d.tissue_heterogeneity_correction.is_empty() {
        o.s(
            tags::TISSUE_HETEROGENEITY_CORRECTION,
            VR::CS,
            d.tissue_heterogeneity_correction,
        );
    }
    let mut rp = Ds::new();
    rp.s(tags::REFERENCED_SOP_CLASS_UID, VR::UI, RT_PLAN_STORAGE)
        .s(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, d.plan_sop_uid);
    if let Some(n) = d.beam_number {
        // BEAM summation: ReferencedFractionGroupSequence > ReferencedBeamSequence (1C).
        let mut rb = Ds::new();
        rb.is(tags::REFERENCED_BEAM_NUMBER, n);
        let mut fg = Ds::new();
        fg.is(tags::REFERENCED_FRACTION_GROUP_NUMBER, 1)
            .seq(tags::REFERENCED_BEAM_SEQUENCE, vec![rb]);
        rp.seq(tags::REFERENCED_FRACTION_GROUP_SEQUENCE, vec![fg]);
    }
    o.seq(tags::REFERENCED_RT_PLAN_SEQUENCE, vec![rp]);
    let bytes = to_part10(o, "RT Dose")?;
    Ok((bytes, sop_uid))
}

/// Write the RT Dose atomically; returns its SOPInstanceUID.
pub fn write_rtdose(path: &Path, d: &DoseExport) -> Result<String> {
    let (bytes, uid) = rtdose_bytes(d)?;
    crate::io::atomic::write_file(path, &bytes)?;
    Ok(uid)
}

fn u16_tag(a: &Attr, tag: Tag, name: &'static str) -> Result<u16> {
    let v = a.int(tag, name)?;
    u16::try_from(v).map_err(|_| a.invalid(tag, name, format!("value {v} out of range")))
}

/// Read an RT Dose file into a grid of doses.
pub fn read_rtdose(path: &Path) -> Result<RtDose> {
    let f = read::read(path)?;
    let obj: &dicom_object::InMemDicomObject = &f.obj;
    let a = Attr::new(path, obj);
    let sop_class = a.string(tags::SOP_CLASS_UID, "SOPClassUID")?;
    if sop_class != RT_DOSE_STORAGE {
        return Err(a.invalid(
            tags::SOP_CLASS_UID,
            "SOPClassUID",
            format!("{sop_class} is not RT Dose Storage"),
        ));
    }
    match f.transfer_syntax.as_str() {
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" => {}
        ts => {
            return Err(DicomError::UnsupportedTransferSyntax {
                path: path.to_path_buf(),
                uid: ts.to_string(),
                name: "not implicit/explicit VR little endian".into(),
                reason: "RT Dose pixel data is read raw".into(),
            }
            .into())
        }
    }
    let rows = u16_tag(&a, tags::ROWS, "Rows")? as usize;
    let cols = u16_tag(&a, tags::COLUMNS, "Columns")? as usize;
    let frames = if obj.get(tags::NUMBER_OF_FRAMES).is_some() {
        a.int(tags::NUMBER_OF_FRAMES, "NumberOfFrames")?
    } else {
        1
    };
    if frames < 1 || rows == 0 || cols == 0 {
        return Err(a.invalid(
            tags::NUMBER_OF_FRAMES,
            "NumberOfFrames",
            format!("{rows} x {cols} x {frames} is empty"),
        ));
    }
    let frames = frames as usize;
    let bits = u16_tag(&a, tags::BITS_ALLOCATED, "BitsAllocated")?;
    let signed = a.int(tags::PIXEL_REPRESENTATION, "PixelRepresentation")? == 1;
    let spacing = a.f64s(tags::PIXEL_SPACING, "PixelSpacing", 2)?;
    let ipp = a.f64s(tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", 3)?;
    let iop = a.f64s(
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
        6,
    )?;
    let ident = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    if iop.iter().zip(ident).any(|(x, y)| (x - y).abs() > 1e-4) {
        return Err(DicomError::UnsupportedOrientation {
            path: path.to_path_buf(),
            value: format!("{iop:?}"),
        }
        .into());
    }
    let scaling = a.f64_or(tags::DOSE_GRID_SCALING, "DoseGridScaling", 1.0)?;
    let mut offsets = if frames > 1 {
        a.f64s(
            tags::GRID_FRAME_OFFSET_VECTOR,
            "GridFrameOffsetVector",
            frames,
        )?
    } else {
        vec![0.0]
    };
    // Absolute form (first value = z of ImagePositionPatient, PS3.3 C.8.8.3.2 case b).
    if offsets[0] != 0.0 {
        if (offsets[0] - ipp[2]).abs() < 1e-3 {
            let o0 = offsets[0];
            for o in offsets.iter_mut() {
                *o -= o0;
            }
        } else {
            return Err(a.invalid(
                tags::GRID_FRAME_OFFSET_VECTOR,
                "GridFrameOffsetVector",
                format!(
                    "first offset {} is neither 0 nor the z of ImagePositionPatient {}",
                    offsets[0], ipp[2]
                ),
            ));
        }
    }
    let dz = if frames > 1 {
        offsets[1] - offsets[0]
    } else {
        a.f64_or(tags::SLICE_THICKNESS, "SliceThickness", 1.0)?
            .abs()
            .max(1e-6)
    };
    if frames > 1 {
        for k in 1..frames {
            if ((offsets[k] - offsets[k - 1]) - dz).abs() > 1e-3 * dz.abs().max(1.0) {
                return Err(a.invalid(
                    tags::GRID_FRAME_OFFSET_VECTOR,
                    "GridFrameOffsetVector",
                    "frames are not uniformly spaced",
                ));
            }
        }
        if dz <= 0.0 {
            return Err(a.invalid(
                tags::GRID_FRAME_OFFSET_VECTOR,
                "GridFrameOffsetVector",
                "offsets must increase",
            ));
        }
    }
    let pd = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| a.invalid(tags::PIXEL_DATA, "PixelData", "missing"))?;
    let raw = pd
        .to_bytes()
        .map_err(|e| a.invalid(tags::PIXEL_DATA, "PixelData", e.to_string()))?;
    let n = rows * cols * frames;
    let bpp = match bits {
        16 => 2,
        32 => 4,
        b => {
            return Err(a.invalid(
                tags::BITS_ALLOCATED,
                "BitsAllocated",
                format!("{b} bits; 16 or 32 expected"),
            ))
        }
    };
    if raw.len() < n * bpp {
        return Err(a.invalid(
            tags::PIXEL_DATA,
            "PixelData",
            format!("{} bytes, {} needed", raw.len(), n * bpp),
        ));
    }
    let dose: Vec<f32> = (0..n)
        .map(|i| {
            let b = &raw[i * bpp..(i + 1) * bpp];
            let v = match (bpp, signed) {
                (2, false) => u16::from_le_bytes([b[0], b[1]]) as f64,
                (2, true) => i16::from_le_bytes([b[0], b[1]]) as f64,
                (_, false) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                (_, true) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            };
            (v * scaling) as f32
        })
        .collect();
    let referenced_plan_uid = a
        .items(tags::REFERENCED_RT_PLAN_SEQUENCE)
        .first()
        .and_then(|it| read::opt_str(it, tags::REFERENCED_SOP_INSTANCE_UID));
    Ok(RtDose {
        grid: Grid3 {
            dims: [cols, rows, frames],
            origin_mm: [ipp[0], ipp[1], ipp[2]],
            spacing_mm: [spacing[1], spacing[0], dz],
        },
        dose,
        units: a.string(tags::DOSE_UNITS, "DoseUnits")?,
        summation_type: a.string(tags::DOSE_SUMMATION_TYPE, "DoseSummationType")?,
        dose_grid_scaling: scaling,
        frame_of_reference_uid: read::opt_str(obj, tags::FRAME_OF_REFERENCE_UID)
            .unwrap_or_default(),
        sop_instance_uid: a.string(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?,
        referenced_plan_uid,
    })
}
