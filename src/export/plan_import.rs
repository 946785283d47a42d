//! RT Plan reader: beams, control points and step-and-shoot segments, so the dose of an
//! imported plan can be recomputed through beamlet weights (partial coverage) and `A`.
//!
//! Values are carried forward across control points (BeamLimitingDevicePositionSequence,
//! angles and isocentre are 1C: RayStation writes jaws only in control point 0). A segment is
//! formed between consecutive control points with a meterset increase; its MU is the weight
//! increase / FinalCumulativeMetersetWeight × BeamMeterset, and its aperture is the mean of
//! the two control points' positions (exact for step-and-shoot, where both are equal; an
//! approximation for sliding-window dynamic MLC). Beams without MLC (jaws only, e.g. the
//! pydicom sample `rtplan.dcm`) give open jaw rectangles.

use std::path::Path;

use dicom_object::InMemDicomObject;
use serde::Serialize;

use crate::beams::{Beam, BeamletGrid};
use crate::dicom_io::{self, tags, Attr, RT_PLAN_STORAGE};
use crate::error::{Error, Result};
use crate::sequencing::{Segment, SequencedBeam};

/// One control point with carried-forward values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlPoint {
    pub index: i64,
    pub cumulative_weight: f64,
    pub gantry_deg: f64,
    pub collimator_deg: f64,
    pub couch_deg: f64,
    pub isocenter_mm: Option<[f64; 3]>,
    /// X and Y jaws (from X/ASYMX and Y/ASYMY), mm; `None` when the beam has no such device.
    pub jaw_x_mm: Option<[f64; 2]>,
    pub jaw_y_mm: Option<[f64; 2]>,
    /// MLCX leaf pairs `[bank A, bank B]`, mm; empty without MLC.
    pub leaf_pairs_mm: Vec<[f64; 2]>,
}

/// One imported beam.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedBeam {
    pub number: i64,
    pub name: String,
    pub beam_type: String,
    pub treatment_machine: String,
    pub sad_mm: f64,
    pub nominal_energy_mv: Option<f64>,
    /// BeamMeterset from the fraction group (MU per fraction).
    pub meterset_mu: f64,
    pub final_cumulative_weight: f64,
    /// MLCX LeafPositionBoundaries (empty without MLC).
    pub leaf_boundaries_mm: Vec<f64>,
    pub control_points: Vec<ControlPoint>,
    /// Apertures with MU (per fraction).
    pub segments: Vec<Segment>,
}

/// An imported RT Plan.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedPlan {
    pub sop_instance_uid: String,
    pub label: String,
    pub fractions: i64,
    pub frame_of_reference_uid: Option<String>,
    pub patient_position: Option<String>,
    pub beams: Vec<ImportedBeam>,
}

fn pair(v: &[f64]) -> [f64; 2] {
    [v[0], v[1]]
}

/// Read an RT Plan.
pub fn read_rtplan(path: &Path) -> Result<ImportedPlan> {
    let f = dicom_io::read(path)?;
    let obj: &InMemDicomObject = &f.obj;
    let a = Attr::new(path, obj);
    let sop_class = a.string(tags::SOP_CLASS_UID, "SOPClassUID")?;
    if sop_class != RT_PLAN_STORAGE {
        return Err(a.invalid(
            tags::SOP_CLASS_UID,
            "SOPClassUID",
            format!("{sop_class} is not RT Plan Storage"),
        ));
    }
    // Fraction group: fractions and meterset per beam number.
    let fgs = a.items(tags::FRACTION_GROUP_SEQUENCE);
    let mut fractions = 0;
    let mut meterset: Vec<(i64, f64)> = Vec::new();
    if let Some(fg) = fgs.first() {
        let fa = Attr::new(path, fg);
        if fg.get(tags::NUMBER_OF_FRACTIONS_PLANNED).is_some() {
            fractions = fa
                .f64(
                    tags::NUMBER_OF_FRACTIONS_PLANNED,
                    "NumberOfFractionsPlanned",
                )
                .map(|v| v.round() as i64)
                .unwrap_or(0);
        }
        for rb in fa.items(tags::REFERENCED_BEAM_SEQUENCE) {
            let ra = Attr::new(path, rb);
            let n = ra
                .f64(tags::REFERENCED_BEAM_NUMBER, "ReferencedBeamNumber")?
                .round() as i64;
            if rb.get(tags::BEAM_METERSET).is_some() {
                meterset.push((n, ra.f64(tags::BEAM_METERSET, "BeamMeterset")?));
            }
        }
    }
    let patient_position = a
        .items(tags::PATIENT_SETUP_SEQUENCE)
        .first()
        .and_then(|it| dicom_io::opt_str(it, tags::PATIENT_POSITION));
    let mut beams = Vec::new();
    for b in a.items(tags::BEAM_SEQUENCE) {
        beams.push(read_beam(path, b, &meterset)?);
    }
    if beams.is_empty() {
        return Err(a.invalid(tags::BEAM_SEQUENCE, "BeamSequence", "no beams"));
    }
    Ok(ImportedPlan {
        sop_instance_uid: a.string(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?,
        label: dicom_io::opt_str(obj, tags::RT_PLAN_LABEL).unwrap_or_default(),
        fractions,
        frame_of_reference_uid: dicom_io::opt_str(obj, tags::FRAME_OF_REFERENCE_UID),
        patient_position,
        beams,
    })
}

fn read_beam(path: &Path, b: &InMemDicomObject, meterset: &[(i64, f64)]) -> Result<ImportedBeam> {
    let ba = Attr::new(path, b);
    let number = ba.f64(tags::BEAM_NUMBER, "BeamNumber")?.round() as i64;
    let mut boundaries = Vec::new();
    let mut n_leaf_pairs = 0usize;
    for d in ba.items(tags::BEAM_LIMITING_DEVICE_SEQUENCE) {
        let da = Attr::new(path, d);
        let ty = da.string(
            tags::RT_BEAM_LIMITING_DEVICE_TYPE,
            "RTBeamLimitingDeviceType",
        )?;
        match ty.as_str() {
            "MLCX" => {
                let n = da.f64(tags::NUMBER_OF_LEAF_JAW_PAIRS, "NumberOfLeafJawPairs")?;
                // Real MLCs have at most a few hundred leaf pairs; bound it so that
                // `n + 1` and `2 n` below cannot overflow on a corrupt file.
                if !(1.0..=1000.0).contains(&n) || n.fract() != 0.0 {
                    return Err(da.invalid(
                        tags::NUMBER_OF_LEAF_JAW_PAIRS,
                        "NumberOfLeafJawPairs",
                        format!("beam {number}: {n} is not a leaf-pair count in 1..=1000"),
                    ));
                }
                n_leaf_pairs = n as usize;
                boundaries = da.f64s(
                    tags::LEAF_POSITION_BOUNDARIES,
                    "LeafPositionBoundaries",
                    n_leaf_pairs + 1,
                )?;
            }
            "MLCY" => {
                return Err(da.invalid(
                    tags::RT_BEAM_LIMITING_DEVICE_TYPE,
                    "RTBeamLimitingDeviceType",
                    format!("beam {number}: MLCY is not supported (only MLCX)"),
                ))
            }
            _ => {}
        }
    }
    let final_w = ba.f64_or(
        tags::FINAL_CUMULATIVE_METERSET_WEIGHT,
        "FinalCumulativeMetersetWeight",
        1.0,
    )?;
    let mu = meterset
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            ba.invalid(
                tags::BEAM_METERSET,
                "BeamMeterset",
                format!("beam {number} has no BeamMeterset in the fraction group"),
            )
        })?;
    let mut cps: Vec<ControlPoint> = Vec::new();
    let mut energy = None;
    for (i, c) in ba.items(tags::CONTROL_POINT_SEQUENCE).iter().enumerate() {
        let ca = Attr::new(path, c);
        let mut cp = match cps.last() {
            Some(prev) => prev.clone(),
            None => ControlPoint {
                index: 0,
                cumulative_weight: 0.0,
                gantry_deg: 0.0,
                collimator_deg: 0.0,
                couch_deg: 0.0,
                isocenter_mm: None,
                jaw_x_mm: None,
                jaw_y_mm: None,
                leaf_pairs_mm: Vec::new(),
            },
        };
        cp.index = if c.get(tags::CONTROL_POINT_INDEX).is_some() {
            ca.f64(tags::CONTROL_POINT_INDEX, "ControlPointIndex")?
                .round() as i64
        } else {
            i as i64
        };
        if c.get(tags::CUMULATIVE_METERSET_WEIGHT).is_some() {
            cp.cumulative_weight =
                ca.f64(tags::CUMULATIVE_METERSET_WEIGHT, "CumulativeMetersetWeight")?;
        }
        if c.get(tags::GANTRY_ANGLE).is_some() {
            cp.gantry_deg = ca.f64(tags::GANTRY_ANGLE, "GantryAngle")?;
        }
        if c.get(tags::BEAM_LIMITING_DEVICE_ANGLE).is_some() {
            cp.collimator_deg =
                ca.f64(tags::BEAM_LIMITING_DEVICE_ANGLE, "BeamLimitingDeviceAngle")?;
        }
        if c.get(tags::PATIENT_SUPPORT_ANGLE).is_some() {
            cp.couch_deg = ca.f64(tags::PATIENT_SUPPORT_ANGLE, "PatientSupportAngle")?;
        }
        if c.get(tags::ISOCENTER_POSITION).is_some() {
            let v = ca.f64s(tags::ISOCENTER_POSITION, "IsocenterPosition", 3)?;
            cp.isocenter_mm = Some([v[0], v[1], v[2]]);
        }
        if c.get(tags::NOMINAL_BEAM_ENERGY).is_some() {
            energy = Some(ca.f64(tags::NOMINAL_BEAM_ENERGY, "NominalBeamEnergy")?);
        }
        for d in ca.items(tags::BEAM_LIMITING_DEVICE_POSITION_SEQUENCE) {
            let da = Attr::new(path, d);
            let ty = da.string(
                tags::RT_BEAM_LIMITING_DEVICE_TYPE,
                "RTBeamLimitingDeviceType",
            )?;
            match ty.as_str() {
                "X" | "ASYMX" => {
                    cp.jaw_x_mm = Some(pair(&da.f64s(
                        tags::LEAF_JAW_POSITIONS,
                        "LeafJawPositions",
                        2,
                    )?))
                }
                "Y" | "ASYMY" => {
                    cp.jaw_y_mm = Some(pair(&da.f64s(
                        tags::LEAF_JAW_POSITIONS,
                        "LeafJawPositions",
                        2,
                    )?))
                }
                "MLCX" => {
                    let v = da.f64s(
                        tags::LEAF_JAW_POSITIONS,
                        "LeafJawPositions",
                        2 * n_leaf_pairs,
                    )?;
                    if n_leaf_pairs == 0 {
                        return Err(da.invalid(
                            tags::LEAF_JAW_POSITIONS,
                            "LeafJawPositions",
                            format!("beam {number}: MLCX positions without an MLCX device"),
                        ));
                    }
                    cp.leaf_pairs_mm = (0..n_leaf_pairs)
                        .map(|p| [v[p], v[n_leaf_pairs + p]])
                        .collect();
                }
                _ => {}
            }
        }
        cps.push(cp);
    }
    if cps.len() < 2 {
        return Err(ba.invalid(
            tags::CONTROL_POINT_SEQUENCE,
            "ControlPointSequence",
            format!(
                "beam {number}: {} control points, at least 2 needed",
                cps.len()
            ),
        ));
    }
    if final_w <= 0.0 {
        return Err(ba.invalid(
            tags::FINAL_CUMULATIVE_METERSET_WEIGHT,
            "FinalCumulativeMetersetWeight",
            format!("beam {number}: {final_w} must be > 0"),
        ));
    }
    let mut segments = Vec::new();
    for w in cps.windows(2) {
        let dw = w[1].cumulative_weight - w[0].cumulative_weight;
        if dw <= 0.0 {
            continue;
        }
        let avg2 = |p: [f64; 2], q: [f64; 2]| [0.5 * (p[0] + q[0]), 0.5 * (p[1] + q[1])];
        let big = [-1e6, 1e6];
        let jx = avg2(w[0].jaw_x_mm.unwrap_or(big), w[1].jaw_x_mm.unwrap_or(big));
        let jy = avg2(w[0].jaw_y_mm.unwrap_or(big), w[1].jaw_y_mm.unwrap_or(big));
        let leaves = if w[0].leaf_pairs_mm.len() == w[1].leaf_pairs_mm.len() {
            w[0].leaf_pairs_mm
                .iter()
                .zip(&w[1].leaf_pairs_mm)
                .map(|(p, q)| avg2(*p, *q))
                .collect()
        } else {
            w[0].leaf_pairs_mm.clone()
        };
        segments.push(Segment {
            mu: dw / final_w * mu,
            leaf_pairs_mm: leaves,
            jaw_x_mm: jx,
            jaw_y_mm: jy,
        });
    }
    Ok(ImportedBeam {
        number,
        name: dicom_io::opt_str(b, tags::BEAM_NAME).unwrap_or_default(),
        beam_type: dicom_io::opt_str(b, tags::BEAM_TYPE).unwrap_or_default(),
        treatment_machine: dicom_io::opt_str(b, tags::TREATMENT_MACHINE_NAME).unwrap_or_default(),
        sad_mm: ba.f64_or(tags::SOURCE_AXIS_DISTANCE, "SourceAxisDistance", 1000.0)?,
        nominal_energy_mv: energy,
        meterset_mu: mu,
        final_cumulative_weight: final_w,
        leaf_boundaries_mm: boundaries,
        control_points: cps,
        segments,
    })
}

impl ImportedBeam {
    /// As a [`SequencedBeam`] attached to beam `beam_index` of a plan's beam list.
    pub fn to_sequenced(&self, beam_index: usize) -> SequencedBeam {
        SequencedBeam {
            beam_index,
            segments: self.segments.clone(),
            meterset_mu: self.segments.iter().map(|s| s.mu).sum(),
            leaf_boundaries_mm: self.leaf_boundaries_mm.clone(),
        }
    }

    /// A [`Beam`] with a beamlet grid of `beamlet_mm` squares covering the union of the
    /// segments' jaw openings (all beamlets active), for recomputing the dose of a foreign
    /// plan with a dose engine. Columns start at `first_column`.
    pub fn to_beam(&self, beamlet_mm: f64, first_column: usize) -> Result<Beam> {
        if beamlet_mm <= 0.0 {
            return Err(Error::Invalid("beamlet size must be > 0".into()));
        }
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for s in &self.segments {
            x0 = x0.min(s.jaw_x_mm[0]);
            x1 = x1.max(s.jaw_x_mm[1]);
            y0 = y0.min(s.jaw_y_mm[0]);
            y1 = y1.max(s.jaw_y_mm[1]);
        }
        if !(x1 > x0 && y1 > y0) || x1 - x0 > 2000.0 || y1 - y0 > 2000.0 {
            return Err(Error::Invalid(format!(
                "beam {}: no finite jaw opening to place beamlets on",
                self.number
            )));
        }
        // Grid aligned to multiples of the beamlet size.
        let ix0 = (x0 / beamlet_mm).floor() as i64;
        let ix1 = (x1 / beamlet_mm).ceil() as i64;
        let iy0 = (y0 / beamlet_mm).floor() as i64;
        let iy1 = (y1 / beamlet_mm).ceil() as i64;
        let nx = (ix1 - ix0) as usize;
        let ny = (iy1 - iy0) as usize;
        let grid = BeamletGrid {
            size_x_mm: beamlet_mm,
            size_y_mm: beamlet_mm,
            nx,
            ny,
            x0_mm: (ix0 as f64 + 0.5) * beamlet_mm,
            y0_mm: (iy0 as f64 + 0.5) * beamlet_mm,
        };
        let cp0 = &self.control_points[0];
        Ok(Beam {
            number: self.number.max(0) as usize,
            name: self.name.clone(),
            gantry_deg: cp0.gantry_deg,
            couch_deg: cp0.couch_deg,
            collimator_deg: cp0.collimator_deg,
            isocenter_mm: cp0.isocenter_mm.unwrap_or([0.0; 3]),
            sad_mm: self.sad_mm,
            grid,
            beamlets: (0..ny)
                .flat_map(|iy| (0..nx).map(move |ix| [ix, iy]))
                .collect(),
            first_column,
        })
    }
}
