//! RT Plan Storage writer for step-and-shoot IMRT (see `docs/export.md`).
//!
//! Modules: Patient, General Study (copied from the CT), RT Series, Frame of Reference,
//! General Equipment, RT General Plan, RT Prescription, RT Tolerance Tables, RT Patient
//! Setup, RT Fraction Scheme, RT Beams, Approval (UNAPPROVED), SOP Common.
//! Each segment is two control points with identical leaves (start and end cumulative
//! meterset weight), BeamType DYNAMIC, as in pymedphys's Pinnacle converter; the first control
//! point carries every applicable attribute, later ones the devices and the weight.
//! UIDs are derived from the plan content (same inputs, same bytes).

use std::path::Path;

use dicom_core::VR;
use serde::Serialize;

use crate::beams::Beam;
use crate::ct::CtMeta;
use crate::dicom_io::{tags, RT_PLAN_STORAGE, RT_STRUCTURE_SET_STORAGE};
use crate::error::{Error, Result};
use crate::export::builder::{equipment, patient_study_frame, to_part10, Ds};
use crate::export::uid::derive_uid;
use crate::sequencing::{DeliveryMachine, SequencedBeam};

/// The target prescription written into the DoseReferenceSequence.
#[derive(Debug, Clone, Serialize)]
pub struct TargetPrescription {
    /// ROI number of the target in the referenced RT Structure Set.
    pub roi_number: i64,
    pub roi_name: String,
    /// Total prescription dose over all fractions, Gy.
    pub prescription_gy: f64,
}

/// Everything the RT Plan is written from.
#[derive(Debug, Clone)]
pub struct PlanExport<'a> {
    /// RTPlanLabel (at most 16 characters).
    pub label: String,
    /// CT identity and study attributes.
    pub ct: &'a CtMeta,
    /// SOPInstanceUID of the RT Structure Set the plan refers to.
    pub structure_set_uid: String,
    pub target: TargetPrescription,
    pub fractions: u32,
    pub machine: &'a DeliveryMachine,
    pub beams: &'a [Beam],
    pub sequenced: &'a [SequencedBeam],
    /// BeamDose per beam (Gy per fraction at the dose reference), optional.
    pub beam_dose_gy: Option<Vec<f64>>,
    /// RTPlanDate / RTPlanTime (DA / TM); empty strings are written as empty Type 2 values.
    pub plan_date: String,
    pub plan_time: String,
}

#[derive(Serialize)]
struct Digest<'a> {
    label: &'a str,
    study: &'a str,
    frame: &'a str,
    ss: &'a str,
    target: &'a TargetPrescription,
    fractions: u32,
    machine: &'a DeliveryMachine,
    beams: &'a [Beam],
    sequenced: &'a [SequencedBeam],
    beam_dose: &'a Option<Vec<f64>>,
    date: (&'a str, &'a str),
}

/// SOP Instance, Series Instance and Dose Reference UIDs derived from the plan content.
pub fn plan_uids(p: &PlanExport) -> Result<(String, String, String)> {
    let digest = serde_json::to_vec(&Digest {
        label: &p.label,
        study: &p.ct.study_instance_uid,
        frame: &p.ct.frame_of_reference_uid,
        ss: &p.structure_set_uid,
        target: &p.target,
        fractions: p.fractions,
        machine: p.machine,
        beams: p.beams,
        sequenced: p.sequenced,
        beam_dose: &p.beam_dose_gy,
        date: (&p.plan_date, &p.plan_time),
    })
    .map_err(|e| Error::Invalid(format!("RT Plan: cannot serialise plan content: {e}")))?;
    Ok((
        derive_uid("rtplan-sop", &[&digest]),
        derive_uid("rtplan-series", &[&digest]),
        derive_uid("rtplan-doseref", &[&digest]),
    ))
}

fn check(p: &PlanExport) -> Result<()> {
    let bad = |m: String| Err(Error::Invalid(format!("RT Plan '{}': {m}", p.label)));
    if p.label.is_empty() || p.label.len() > 16 {
        return bad("RTPlanLabel must have 1 to 16 characters".into());
    }
    if p.sequenced.is_empty() {
        return bad(
            "a plan needs at least one beam (Eclipse rejects an empty Beam Sequence)".into(),
        );
    }
    if p.structure_set_uid.is_empty() {
        return bad("RTPlanGeometry PATIENT needs the RT Structure Set SOPInstanceUID".into());
    }
    if p.fractions == 0 {
        return bad("number of fractions must be >= 1".into());
    }
    if p.machine.name.is_empty() || p.machine.name.len() > 16 {
        return bad(format!(
            "TreatmentMachineName '{}' must have 1 to 16 characters",
            p.machine.name
        ));
    }
    if let Some(bd) = &p.beam_dose_gy {
        if bd.len() != p.sequenced.len() {
            return bad(format!(
                "{} beam doses for {} beams",
                bd.len(),
                p.sequenced.len()
            ));
        }
    }
    let n_pairs = p.machine.mlc.n_pairs();
    for sb in p.sequenced {
        let beam = p
            .beams
            .get(sb.beam_index)
            .ok_or_else(|| Error::Invalid(format!("RT Plan: no beam {}", sb.beam_index)))?;
        if sb.segments.is_empty() || sb.meterset_mu <= 0.0 {
            return bad(format!("beam {} has no segment with MU > 0", beam.number));
        }
        for (k, s) in sb.segments.iter().enumerate() {
            if s.leaf_pairs_mm.len() != n_pairs || sb.leaf_boundaries_mm.len() != n_pairs + 1 {
                return bad(format!(
                    "beam {} segment {k}: {} leaf pairs, the machine's MLC has {n_pairs}",
                    beam.number,
                    s.leaf_pairs_mm.len()
                ));
            }
            if !(s.mu.is_finite() && s.mu > 0.0) {
                return bad(format!("beam {} segment {k}: MU {}", beam.number, s.mu));
            }
            if s.leaf_pairs_mm.iter().any(|l| l[0] > l[1] + 1e-9) {
                return bad(format!(
                    "beam {} segment {k}: a bank A leaf is beyond its bank B leaf",
                    beam.number
                ));
            }
        }
    }
    Ok(())
}

fn device_positions(s: &crate::sequencing::Segment) -> Vec<Ds> {
    let mut x = Ds::new();
    x.s(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, "ASYMX")
        .dm(tags::LEAF_JAW_POSITIONS, &s.jaw_x_mm);
    let mut y = Ds::new();
    y.s(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, "ASYMY")
        .dm(tags::LEAF_JAW_POSITIONS, &s.jaw_y_mm);
    let mut m = Ds::new();
    let mut pos: Vec<f64> = s.leaf_pairs_mm.iter().map(|l| l[0]).collect();
    pos.extend(s.leaf_pairs_mm.iter().map(|l| l[1]));
    m.s(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, "MLCX")
        .dm(tags::LEAF_JAW_POSITIONS, &pos);
    vec![x, y, m]
}

/// Encode the RT Plan. Returns the file bytes and the SOPInstanceUID.
pub fn rtplan_bytes(p: &PlanExport) -> Result<(Vec<u8>, String)> {
    check(p)?;
    let (sop_uid, series_uid, doseref_uid) = plan_uids(p)?;
    let m = p.machine;
    let mut ds = Ds::new();
    ds.s(tags::SOP_CLASS_UID, VR::UI, RT_PLAN_STORAGE)
        .s(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid)
        .s(tags::MODALITY, VR::CS, "RTPLAN")
        .s(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid)
        .s(tags::SERIES_NUMBER, VR::IS, "")
        .s(tags::SERIES_DESCRIPTION, VR::LO, "rtopt IMRT plan")
        .s(tags::OPERATORS_NAME, VR::PN, "");
    patient_study_frame(&mut ds, p.ct);
    equipment(&mut ds);
    // RT General Plan.
    ds.s(tags::RT_PLAN_LABEL, VR::SH, &p.label)
        .s(tags::RT_PLAN_NAME, VR::LO, &p.label)
        .s(tags::RT_PLAN_DATE, VR::DA, &p.plan_date)
        .s(tags::RT_PLAN_TIME, VR::TM, &p.plan_time)
        .s(tags::RT_PLAN_GEOMETRY, VR::CS, "PATIENT")
        .s(tags::PLAN_INTENT, VR::CS, "CURATIVE");
    let mut ss = Ds::new();
    ss.s(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        RT_STRUCTURE_SET_STORAGE,
    )
    .s(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        &p.structure_set_uid,
    );
    ds.seq(tags::REFERENCED_STRUCTURE_SET_SEQUENCE, vec![ss]);
    // RT Prescription.
    let mut dr = Ds::new();
    dr.is(tags::DOSE_REFERENCE_NUMBER, 1)
        .s(tags::DOSE_REFERENCE_UID, VR::UI, &doseref_uid)
        .s(tags::DOSE_REFERENCE_STRUCTURE_TYPE, VR::CS, "VOLUME")
        .is(tags::REFERENCED_ROI_NUMBER, p.target.roi_number)
        .s(tags::DOSE_REFERENCE_DESCRIPTION, VR::LO, &p.target.roi_name)
        .s(tags::DOSE_REFERENCE_TYPE, VR::CS, "TARGET")
        .d(tags::TARGET_PRESCRIPTION_DOSE, p.target.prescription_gy);
    ds.seq(tags::DOSE_REFERENCE_SEQUENCE, vec![dr]);
    // RT Tolerance Tables.
    let mut tt = Ds::new();
    tt.is(tags::TOLERANCE_TABLE_NUMBER, 1)
        .s(tags::TOLERANCE_TABLE_LABEL, VR::SH, "rtopt");
    ds.seq(tags::TOLERANCE_TABLE_SEQUENCE, vec![tt]);
    // RT Patient Setup.
    let mut ps = Ds::new();
    ps.is(tags::PATIENT_SETUP_NUMBER, 1).s(
        tags::PATIENT_POSITION,
        VR::CS,
        if p.ct.patient_position.is_empty() {
            "HFS"
        } else {
            &p.ct.patient_position
        },
    );
    ds.seq(tags::PATIENT_SETUP_SEQUENCE, vec![ps]);
    // RT Fraction Scheme.
    let mut refs = Vec::new();
    for (i, sb) in p.sequenced.iter().enumerate() {
        let beam = &p.beams[sb.beam_index];
        let mut r = Ds::new();
        r.is(tags::REFERENCED_BEAM_NUMBER, beam.number as i64)
            .d(tags::BEAM_METERSET, sb.meterset_mu);
        if let Some(bd) = &p.beam_dose_gy {
            r.d(tags::BEAM_DOSE, bd[i]);
        }
        refs.push(r);
    }
    let mut fg = Ds::new();
    fg.is(tags::FRACTION_GROUP_NUMBER, 1)
        .is(tags::NUMBER_OF_FRACTIONS_PLANNED, p.fractions as i64)
        .is(tags::NUMBER_OF_BEAMS, p.sequenced.len() as i64)
        .is(tags::NUMBER_OF_BRACHY_APPLICATION_SETUPS, 0)
        .seq(tags::REFERENCED_BEAM_SEQUENCE, refs);
    ds.seq(tags::FRACTION_GROUP_SEQUENCE, vec![fg]);
    // RT Beams.
    let mut beams = Vec::new();
    for sb in p.sequenced {
        let beam = &p.beams[sb.beam_index];
        let mut b = Ds::new();
        b.is(tags::BEAM_NUMBER, beam.number as i64)
            .s(tags::BEAM_NAME, VR::LO, &beam.name)
            .s(tags::BEAM_TYPE, VR::CS, "DYNAMIC")
            .s(tags::RADIATION_TYPE, VR::CS, "PHOTON")
            .s(tags::TREATMENT_MACHINE_NAME, VR::SH, &m.name)
            .s(tags::PRIMARY_DOSIMETER_UNIT, VR::CS, "MU")
            .d(tags::SOURCE_AXIS_DISTANCE, beam.sad_mm)
            .s(tags::TREATMENT_DELIVERY_TYPE, VR::CS, "TREATMENT")
            .is(tags::NUMBER_OF_WEDGES, 0)
            .is(tags::NUMBER_OF_COMPENSATORS, 0)
            .is(tags::NUMBER_OF_BOLI, 0)
            .is(tags::NUMBER_OF_BLOCKS, 0)
            .d(tags::FINAL_CUMULATIVE_METERSET_WEIGHT, 1.0)
            .is(tags::REFERENCED_PATIENT_SETUP_NUMBER, 1)
            .is(tags::REFERENCED_TOLERANCE_TABLE_NUMBER, 1);
        let mut bx = Ds::new();
        bx.s(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, "ASYMX")
            .is(tags::NUMBER_OF_LEAF_JAW_PAIRS, 1);
        let mut by = Ds::new();
        by.s(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, "ASYMY")
            .is(tags::NUMBER_OF_LEAF_JAW_PAIRS, 1);
        let mut bm = Ds::new();
        bm.s(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, "MLCX")
            .is(tags::NUMBER_OF_LEAF_JAW_PAIRS, m.mlc.n_pairs() as i64)
            .dm(tags::LEAF_POSITION_BOUNDARIES, &sb.leaf_boundaries_mm);
        b.seq(tags::BEAM_LIMITING_DEVICE_SEQUENCE, vec![bx, by, bm]);
        // Control points: two per segment.
        let total = sb.meterset_mu;
        let mut cum = 0.0;
        let mut cps = Vec::new();
        let n_seg = sb.segments.len();
        for (k, s) in sb.segments.iter().enumerate() {
            let w0 = cum / total;
            cum += s.mu;
            let w1 = if k + 1 == n_seg { 1.0 } else { cum / total };
            for (half, w) in [(0usize, w0), (1usize, w1)] {
                let idx = 2 * k + half;
                let mut cp = Ds::new();
                cp.is(tags::CONTROL_POINT_INDEX, idx as i64)
                    .d(tags::CUMULATIVE_METERSET_WEIGHT, w)
                    .seq(
                        tags::BEAM_LIMITING_DEVICE_POSITION_SEQUENCE,
                        device_positions(s),
                    );
                if idx == 0 {
                    cp.d(tags::NOMINAL_BEAM_ENERGY, m.energy_mv)
                        .d(tags::DOSE_RATE_SET, 600.0)
                        .d(tags::GANTRY_ANGLE, beam.gantry_deg)
                        .s(tags::GANTRY_ROTATION_DIRECTION, VR::CS, "NONE")
                        .d(tags::BEAM_LIMITING_DEVICE_ANGLE, beam.collimator_deg)
                        .s(
                            tags::BEAM_LIMITING_DEVICE_ROTATION_DIRECTION,
                            VR::CS,
                            "NONE",
                        )
                        .d(tags::PATIENT_SUPPORT_ANGLE, beam.couch_deg)
                        .s(tags::PATIENT_SUPPORT_ROTATION_DIRECTION, VR::CS, "NONE")
                        .d(tags::TABLE_TOP_ECCENTRIC_ANGLE, 0.0)
                        .s(tags::TABLE_TOP_ECCENTRIC_ROTATION_DIRECTION, VR::CS, "NONE")
                        .s(tags::TABLE_TOP_VERTICAL_POSITION, VR::DS, "")
                        .s(tags::TABLE_TOP_LONGITUDINAL_POSITION, VR::DS, "")
                        .s(tags::TABLE_TOP_LATERAL_POSITION, VR::DS, "")
                        .dm(tags::ISOCENTER_POSITION, &beam.isocenter_mm);
                }
                let mut rdr = Ds::new();
                rdr.is(tags::REFERENCED_DOSE_REFERENCE_NUMBER, 1)
                    .d(tags::CUMULATIVE_DOSE_REFERENCE_COEFFICIENT, w);
                cp.seq(tags::REFERENCED_DOSE_REFERENCE_SEQUENCE, vec![rdr]);
                cps.push(cp);
            }
        }
        b.is(tags::NUMBER_OF_CONTROL_POINTS, cps.len() as i64)
            .seq(tags::CONTROL_POINT_SEQUENCE, cps);
        beams.push(b);
    }
    ds.seq(tags::BEAM_SEQUENCE, beams);
    ds.s(tags::APPROVAL_STATUS, VR::CS, "UNAPPROVED");
    let bytes = to_part10(ds, "RT Plan")?;
    Ok((bytes, sop_uid))
}

/// Write the RT Plan atomically to `path`; returns its SOPInstanceUID.
pub fn write_rtplan(path: &Path, p: &PlanExport) -> Result<String> {
    let (bytes, uid) = rtplan_bytes(p)?;
    crate::atomic::write_file(path, &bytes)?;
    Ok(uid)
}
