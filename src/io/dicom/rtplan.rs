//! RT Plan Storage: the writer for step-and-shoot IMRT (see `docs/export.md`) and the reader
//! of beams, control points and segments ([`read_rtplan`]).
//!
//! Writing. Modules: Patient, General Study (copied from the CT), RT Series, Frame of Reference,
//! General Equipment, RT General Plan, RT Prescription, RT Tolerance Tables, RT Patient
//! Setup, RT Fraction Scheme, RT Beams, Approval (UNAPPROVED), SOP Common.
//! Each segment is two control points with identical leaves (start and end cumulative
//! meterset weight), BeamType DYNAMIC, as in pymedphys's Pinnacle converter; the first control
//! point carries every applicable attribute, later ones the devices and the weight.
//! UIDs are derived from the plan content (same inputs, same bytes).
//!
//! Reading: beams, control points and step-and-shoot segments, so the dose of an imported plan
//! can be recomputed through beamlet weights (partial coverage) and `A`.
//! Values are carried forward across control points (BeamLimitingDevicePositionSequence,
//! angles and isocentre are 1C: RayStation writes jaws only in control point 0). A segment is
//! formed between consecutive control points with a meterset increase; its MU is the weight
//! increase / FinalCumulativeMetersetWeight × BeamMeterset, and its aperture is the mean of
//! the two control points' positions (exact for step-and-shoot, where both are equal; an
//! approximation for sliding-window dynamic MLC). Beams without MLC (jaws only, e.g. the
//! pydicom sample `rtplan.dcm`) give open jaw rectangles.

use std::path::Path;

use dicom_core::VR;
use dicom_object::InMemDicomObject;
use serde::Serialize;

use super::builder::{equipment, patient_study_frame, to_part10, Ds};
use super::identity::{check_text, put_creation, CreationTime, SERIES_NUMBER_RTPLAN};
use super::read::{self, tags, Attr, RT_PLAN_STORAGE, RT_STRUCTURE_SET_STORAGE};
use super::uid::derive_uid;
use crate::beams::{Beam, BeamletGrid};
use crate::ct::CtMeta;
use crate::error::{Error, Result};
use crate::sequencing::{DeliveryMachine, Segment, SequencedBeam};

/// The target prescription written into the DoseReferenceSequence.
#[derive(Debug, Clone, Serialize)]
pub struct TargetPrescription {
    /// ROI number of the target in the referenced RT Structure Set.
    pub roi_number: i64,
    pub roi_name: String,
    /// Total prescription dose over all fractions, Gy.
    pub prescription_gy: f64,
}

/// The plan's dose reference point (DoseReferenceStructureType COORDINATES) with the dose of
/// each beam there: what a record-and-verify system tracks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoseReferencePoint {
    /// Structure the point lies in (the prescription's target).
    pub structure: String,
    /// Position, DICOM patient coordinates (LPS), mm.
    pub position_mm: [f64; 3],
    /// The plan's dose at the point as its RT Dose holds it, Gy per fraction.
    pub planned_dose_per_fraction_gy: f64,
    /// Per sequenced beam (plan order): its dose at the point, Gy per fraction (BeamDose).
    pub beam_dose_gy: Vec<f64>,
    /// Per sequenced beam, per segment: the fraction of the beam's dose at the point
    /// delivered by the end of the segment (CumulativeDoseReferenceCoefficient; last 1).
    pub cumulative_coefficients: Vec<Vec<f64>>,
}

impl DoseReferencePoint {
    /// Sum of the beam doses, Gy per fraction.
    pub fn total_beam_dose_gy(&self) -> f64 {
        self.beam_dose_gy.iter().sum()
    }
}

/// Everything the RT Plan is written from.
#[derive(Debug, Clone)]
pub struct PlanExport<'a> {
    /// RTPlanLabel (at most 16 characters).
    pub label: String,
    /// RTPlanName (at most 64 characters; empty: the label).
    pub name: String,
    /// RTPlanDescription (at most 1024 characters; empty: not written).
    pub description: String,
    /// CT identity and study attributes.
    pub ct: &'a CtMeta,
    /// SOPInstanceUID of the RT Structure Set the plan refers to.
    pub structure_set_uid: String,
    pub target: TargetPrescription,
    pub fractions: u32,
    pub machine: &'a DeliveryMachine,
    pub beams: &'a [Beam],
    pub sequenced: &'a [SequencedBeam],
    /// The dose reference point with BeamDose per beam; `None`: only the target volume is
    /// a dose reference (and control points carry the meterset weight as coefficient).
    pub reference_point: Option<DoseReferencePoint>,
    /// SourceToSurfaceDistance of each sequenced beam at its first control point, mm
    /// (`None`: not written, e.g. the axis misses the body).
    pub ssd_mm: Vec<Option<f64>>,
    /// RTPlanDate/Time and InstanceCreationDate/Time (UTC).
    pub created: CreationTime,
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
    reference_point: &'a Option<DoseReferencePoint>,
    ssd: &'a [Option<f64>],
    names: (&'a str, &'a str),
    created: CreationTime,
}

/// DoseReferenceNumber of the reference point (the target volume is 1).
pub const REFERENCE_POINT_NUMBER: i64 = 2;

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
        reference_point: &p.reference_point,
        ssd: &p.ssd_mm,
        names: (&p.name, &p.description),
        created: p.created,
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
    if p.label.trim().is_empty() {
        return bad("RTPlanLabel must not be empty".into());
    }
    check_text("RTPlanLabel", &p.label, VR::SH)?;
    check_text("RTPlanName", &p.name, VR::LO)?;
    check_text("RTPlanDescription", &p.description, VR::ST)?;
    if p.ssd_mm.len() != p.sequenced.len() {
        return bad(format!(
            "{} source-to-surface distances for {} beams",
            p.ssd_mm.len(),
            p.sequenced.len()
        ));
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
    if let Some(r) = &p.reference_point {
        if r.beam_dose_gy.len() != p.sequenced.len()
            || r.cumulative_coefficients.len() != p.sequenced.len()
            || r.cumulative_coefficients
                .iter()
                .zip(p.sequenced)
                .any(|(c, sb)| c.len() != sb.segments.len())
        {
            return bad(format!(
                "the dose reference point has {} beam doses for {} beams, or coefficients that do not match the segments",
                r.beam_dose_gy.len(),
                p.sequenced.len()
            ));
        }
        if r.position_mm.iter().any(|v| !v.is_finite())
            || r.beam_dose_gy.iter().any(|d| !(d.is_finite() && *d >= 0.0))
        {
            return bad("the dose reference point has a non-finite position or beam dose".into());
        }
        for (b, c) in r.cumulative_coefficients.iter().enumerate() {
            let ordered = c.windows(2).all(|w| w[0] <= w[1]);
            let in_range = c.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v));
            if !(ordered && in_range && c.last() == Some(&1.0)) {
                return bad(format!(
                    "beam index {b}: cumulative dose-reference coefficients must rise within [0, 1] and end at 1"
                ));
            }
        }
    }
    // Every mechanical limit of the machine but the MU minimum (which the planner judges
    // with the normalisation it applied).
    let beams_for_numbers = p.beams;
    if let Some(v) =
        crate::deliverability::violations(p.machine, beams_for_numbers, p.sequenced, 0.0).first()
    {
        return bad(format!("not deliverable on {}: {v}", p.machine.name));
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
    let point_uid = derive_uid("rtplan-doseref-point", &[doseref_uid.as_bytes()]);
    let m = p.machine;
    let mut ds = Ds::new();
    ds.s(tags::SOP_CLASS_UID, VR::UI, RT_PLAN_STORAGE)
        .s(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid)
        .s(tags::MODALITY, VR::CS, "RTPLAN")
        .s(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid)
        .is(tags::SERIES_NUMBER, SERIES_NUMBER_RTPLAN)
        .s(tags::SERIES_DESCRIPTION, VR::LO, "rtopt IMRT plan")
        .s(tags::OPERATORS_NAME, VR::PN, "")
        .is(tags::INSTANCE_NUMBER, 1);
    put_creation(&mut ds, &p.created);
    patient_study_frame(&mut ds, p.ct);
    // Text of the plan's own (label, names, machine, ROI): UTF-8 needs ISO_IR 192 as well.
    let own_text = [
        p.label.as_str(),
        p.name.as_str(),
        p.description.as_str(),
        m.name.as_str(),
        m.manufacturer.as_str(),
        m.model_name.as_str(),
        p.target.roi_name.as_str(),
    ];
    if own_text.iter().any(|t| !t.is_ascii()) || p.beams.iter().any(|b| !b.name.is_ascii()) {
        ds.s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    }
    equipment(&mut ds);
    // RT General Plan.
    let name = if p.name.is_empty() { &p.label } else { &p.name };
    ds.s(tags::RT_PLAN_LABEL, VR::SH, &p.label)
        .s(tags::RT_PLAN_NAME, VR::LO, name)
        .s(tags::RT_PLAN_DATE, VR::DA, &p.created.dicom_date())
        .s(tags::RT_PLAN_TIME, VR::TM, &p.created.dicom_time())
        .s(tags::RT_PLAN_GEOMETRY, VR::CS, "PATIENT")
        .s(tags::PLAN_INTENT, VR::CS, "CURATIVE");
    if !p.description.is_empty() {
        ds.s(tags::RT_PLAN_DESCRIPTION, VR::ST, &p.description);
    }
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
    let mut refs_dr = vec![dr];
    if let Some(r) = &p.reference_point {
        let mut pt = Ds::new();
        pt.is(tags::DOSE_REFERENCE_NUMBER, REFERENCE_POINT_NUMBER)
            .s(tags::DOSE_REFERENCE_UID, VR::UI, &point_uid)
            .s(tags::DOSE_REFERENCE_STRUCTURE_TYPE, VR::CS, "COORDINATES")
            .s(
                tags::DOSE_REFERENCE_DESCRIPTION,
                VR::LO,
                &format!("reference point in {}", r.structure)
                    .chars()
                    .take(64)
                    .collect::<String>(),
            )
            .dm(tags::DOSE_REFERENCE_POINT_COORDINATES, &r.position_mm)
            .s(tags::DOSE_REFERENCE_TYPE, VR::CS, "TARGET")
            .d(
                tags::TARGET_PRESCRIPTION_DOSE,
                r.planned_dose_per_fraction_gy * p.fractions as f64,
            );
        refs_dr.push(pt);
    }
    ds.seq(tags::DOSE_REFERENCE_SEQUENCE, refs_dr);
    // RT Tolerance Tables.
    let mut tt = Ds::new();
    match &m.tolerance_table {
        Some(t) => {
            let mut dev = Vec::new();
            for (ty, v) in [("ASYMX", t.jaw_mm), ("ASYMY", t.jaw_mm), ("MLCX", t.mlc_mm)] {
                let mut d = Ds::new();
                d.s(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, ty)
                    .d(tags::BEAM_LIMITING_DEVICE_POSITION_TOLERANCE, v);
                dev.push(d);
            }
            tt.is(tags::TOLERANCE_TABLE_NUMBER, 1)
                .s(tags::TOLERANCE_TABLE_LABEL, VR::SH, &t.label)
                .d(tags::GANTRY_ANGLE_TOLERANCE, t.gantry_deg)
                .d(tags::BEAM_LIMITING_DEVICE_ANGLE_TOLERANCE, t.collimator_deg)
                .seq(tags::BEAM_LIMITING_DEVICE_TOLERANCE_SEQUENCE, dev)
                .d(tags::PATIENT_SUPPORT_ANGLE_TOLERANCE, t.couch_deg)
                .d(
                    tags::TABLE_TOP_VERTICAL_POSITION_TOLERANCE,
                    t.table_vertical_mm,
                )
                .d(
                    tags::TABLE_TOP_LONGITUDINAL_POSITION_TOLERANCE,
                    t.table_longitudinal_mm,
                )
                .d(
                    tags::TABLE_TOP_LATERAL_POSITION_TOLERANCE,
                    t.table_lateral_mm,
                );
        }
        None => {
            tt.is(tags::TOLERANCE_TABLE_NUMBER, 1)
                .s(tags::TOLERANCE_TABLE_LABEL, VR::SH, "rtopt");
        }
    }
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
    ps.s(tags::SETUP_TECHNIQUE, VR::CS, &m.setup_technique);
    ds.seq(tags::PATIENT_SETUP_SEQUENCE, vec![ps]);
    // RT Fraction Scheme.
    let mut refs = Vec::new();
    for (i, sb) in p.sequenced.iter().enumerate() {
        let beam = &p.beams[sb.beam_index];
        let mut r = Ds::new();
        r.is(tags::REFERENCED_BEAM_NUMBER, beam.number as i64)
            .d(tags::BEAM_METERSET, sb.meterset_mu);
        if let Some(rp) = &p.reference_point {
            // The point is named by its DoseReferenceUID (BeamDoseSpecificationPoint is
            // retired).
            r.s(tags::REFERENCED_DOSE_REFERENCE_UID, VR::UI, &point_uid)
                .d(tags::BEAM_DOSE, rp.beam_dose_gy[i]);
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
    for (bi, sb) in p.sequenced.iter().enumerate() {
        let beam = &p.beams[sb.beam_index];
        let mut b = Ds::new();
        if !m.manufacturer.is_empty() {
            b.s(tags::MANUFACTURER, VR::LO, &m.manufacturer);
        }
        if !m.model_name.is_empty() {
            b.s(tags::MANUFACTURER_MODEL_NAME, VR::LO, &m.model_name);
        }
        let description = format!(
            "IMRT step-and-shoot, {} segments, gantry {} deg, collimator {} deg, couch {} deg",
            sb.segments.len(),
            super::builder::ds(beam.gantry_deg),
            super::builder::ds(beam.collimator_deg),
            super::builder::ds(beam.couch_deg)
        );
        b.is(tags::BEAM_NUMBER, beam.number as i64)
            .s(tags::BEAM_NAME, VR::LO, &beam.name)
            .s(tags::BEAM_DESCRIPTION, VR::ST, &description)
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
        let device = |ty: &str, distance: Option<f64>, pairs: usize| {
            let mut d = Ds::new();
            d.s(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, ty);
            if let Some(v) = distance {
                d.d(tags::SOURCE_TO_BEAM_LIMITING_DEVICE_DISTANCE, v);
            }
            d.is(tags::NUMBER_OF_LEAF_JAW_PAIRS, pairs as i64);
            d
        };
        let bx = device("ASYMX", m.jaws.x_source_distance_mm, 1);
        let by = device("ASYMY", m.jaws.y_source_distance_mm, 1);
        let mut bm = device("MLCX", m.mlc.source_distance_mm, m.mlc.n_pairs());
        bm.dm(tags::LEAF_POSITION_BOUNDARIES, &sb.leaf_boundaries_mm);
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
                        .d(tags::DOSE_RATE_SET, m.dose_rate_mu_per_min)
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
                    if let Some(ssd) = p.ssd_mm[bi] {
                        cp.d(tags::SOURCE_TO_SURFACE_DISTANCE, ssd);
                    }
                }
                // With a reference point: the fraction of the beam's dose there delivered so
                // far; without, the meterset weight against the target volume.
                let (number, coefficient) = match &p.reference_point {
                    Some(r) => {
                        let c = &r.cumulative_coefficients[bi];
                        let v = match (half, k) {
                            (0, 0) => 0.0,
                            (0, _) => c[k - 1],
                            _ => c[k],
                        };
                        (REFERENCE_POINT_NUMBER, v)
                    }
                    None => (1, w),
                };
                let mut rdr = Ds::new();
                rdr.is(tags::REFERENCED_DOSE_REFERENCE_NUMBER, number)
                    .d(tags::CUMULATIVE_DOSE_REFERENCE_COEFFICIENT, coefficient);
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
    crate::io::atomic::write_file(path, &bytes)?;
    Ok(uid)
}

// ---- reading ----

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
    let f = read::read(path)?;
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
        .and_then(|it| read::opt_str(it, tags::PATIENT_POSITION));
    let mut beams = Vec::new();
    for b in a.items(tags::BEAM_SEQUENCE) {
        beams.push(read_beam(path, b, &meterset)?);
    }
    if beams.is_empty() {
        return Err(a.invalid(tags::BEAM_SEQUENCE, "BeamSequence", "no beams"));
    }
    Ok(ImportedPlan {
        sop_instance_uid: a.string(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?,
        label: read::opt_str(obj, tags::RT_PLAN_LABEL).unwrap_or_default(),
        fractions,
        frame_of_reference_uid: read::opt_str(obj, tags::FRAME_OF_REFERENCE_UID),
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
        name: read::opt_str(b, tags::BEAM_NAME).unwrap_or_default(),
        beam_type: read::opt_str(b, tags::BEAM_TYPE).unwrap_or_default(),
        treatment_machine: read::opt_str(b, tags::TREATMENT_MACHINE_NAME).unwrap_or_default(),
        sad_mm: ba.f64_or(tags::SOURCE_AXIS_DISTANCE, "SourceAxisDistance", 1000.0)?,
        nominal_energy_mv: energy,
        meterset_mu: mu,
        final_cumulative_weight: final_w,
        leaf_boundaries_mm: boundaries,
        control_points: cps,
        segments,
    })
}

impl ImportedPlan {
    /// Every beam as a [`SequencedBeam`], attached to its index in [`ImportedPlan::beams`].
    pub fn sequenced(&self) -> Vec<SequencedBeam> {
        self.beams
            .iter()
            .enumerate()
            .map(|(i, b)| b.to_sequenced(i))
            .collect()
    }
}

impl ImportedBeam {
    /// As a [`SequencedBeam`] attached to beam `beam_index` of a plan's beam list, with
    /// opaque collimators (the plan does not say what they transmit: the caller sets its
    /// machine's `transmission`).
    pub fn to_sequenced(&self, beam_index: usize) -> SequencedBeam {
        SequencedBeam {
            beam_index,
            segments: self.segments.clone(),
            meterset_mu: self.segments.iter().map(|s| s.mu).sum(),
            leaf_boundaries_mm: self.leaf_boundaries_mm.clone(),
            transmission: Default::default(),
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
