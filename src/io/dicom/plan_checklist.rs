//! The RT Plan checklist: what a record-and-verify system or a receiving planning system
//! checks on import, item by item, for any RT Plan (rtopt's or another system's).
//!
//! Items (issue 19; the import pitfalls of `docs/export.md`): machine name and nominal energy
//! per beam; a dose reference point with coordinates (inside the CT when its grid is given)
//! and BeamDose per beam linked to it, summing to the planned dose per fraction there within
//! 1 %; tolerance-table values; patient position and set-up technique; plan date, time and
//! instance creation date; SSD at each beam's first control point; source-to-collimator
//! distances; beam descriptions; the equipment's manufacturer; de-identification attributes;
//! and, with a machine, every segment within that machine's mechanical limits
//! ([`crate::deliverability`]).
//!
//! The checklist reports; it refuses nothing. Its errors are only those of reading the file.

use std::path::Path;

use dicom_object::InMemDicomObject;
use serde::Serialize;

use super::read::{self, tags, Attr};
use super::rtplan::read_rtplan;
use crate::error::Result;
use crate::geometry::Grid3;
use crate::sequencing::DeliveryMachine;

/// Largest relative difference between the sum of the BeamDose values and the planned dose
/// per fraction at the reference point (the 1 %).
pub const BEAM_DOSE_TOLERANCE: f64 = 0.01;

/// Outcome of one item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Status {
    /// Present and consistent.
    Pass,
    /// Absent (the plan does not carry it).
    Absent(String),
    /// Present but inconsistent or out of limits.
    Fail(String),
}

/// One checklist item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// Short name, stable across versions (tests and reports refer to it).
    pub name: &'static str,
    pub status: Status,
}

/// The checklist of one RT Plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checklist {
    pub items: Vec<Item>,
}

impl Checklist {
    /// The item called `name`.
    pub fn item(&self, name: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.name == name)
    }

    /// Whether every item passed.
    pub fn all_pass(&self) -> bool {
        self.items.iter().all(|i| i.status == Status::Pass)
    }

    /// One line per item: `pass`, `absent` or `FAIL` with the reason.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for i in &self.items {
            let line = match &i.status {
                Status::Pass => format!("pass    {}\n", i.name),
                Status::Absent(r) => format!("absent  {}: {r}\n", i.name),
                Status::Fail(r) => format!("FAIL    {}: {r}\n", i.name),
            };
            s.push_str(&line);
        }
        s
    }
}

/// What the checklist checks the plan against (each optional).
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    /// The planning CT's grid: the reference point must lie inside it.
    pub ct_grid: Option<&'a Grid3>,
    /// The machine: every segment within its limits.
    pub machine: Option<&'a DeliveryMachine>,
    /// The planning CT's PatientIdentityRemoved: the plan must carry the same.
    pub ct_patient_identity_removed: Option<&'a str>,
}

fn status(ok: bool, absent: bool, why: impl Into<String>) -> Status {
    if ok {
        Status::Pass
    } else if absent {
        Status::Absent(why.into())
    } else {
        Status::Fail(why.into())
    }
}

/// An item that every one of `total` elements (beams, devices) must carry: pass when all
/// `n` do, absent when none does, else fail.
fn all_of(n: usize, total: usize, what: &str) -> Status {
    status(
        total > 0 && n == total,
        n == 0,
        format!("{n} of {total} {what}"),
    )
}

fn has(obj: &InMemDicomObject, tag: dicom_core::Tag) -> bool {
    read::opt_str(obj, tag).is_some()
}

/// Run the checklist on the RT Plan at `path`.
pub fn check_rtplan(path: &Path, ctx: &Context) -> Result<Checklist> {
    let f = read::read(path)?;
    let obj = &f.obj;
    let a = Attr::new(path, obj);
    let beams = a.items(tags::BEAM_SEQUENCE);
    let fg = a.items(tags::FRACTION_GROUP_SEQUENCE);
    let fg0 = fg.first();
    let refs: &[InMemDicomObject] = fg0
        .map(|g| Attr::new(path, g).items(tags::REFERENCED_BEAM_SEQUENCE))
        .unwrap_or(&[]);
    let fractions = fg0
        .and_then(|g| read::opt_f64s(g, tags::NUMBER_OF_FRACTIONS_PLANNED))
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0);
    let cp0 = |b: &InMemDicomObject| -> Option<InMemDicomObject> {
        Attr::new(path, b)
            .items(tags::CONTROL_POINT_SEQUENCE)
            .first()
            .cloned()
    };
    let mut items = Vec::new();
    let mut push = |name: &'static str, status: Status| items.push(Item { name, status });

    // Machine and energy.
    let named = beams
        .iter()
        .filter(|b| has(b, tags::TREATMENT_MACHINE_NAME))
        .count();
    push(
        "treatment machine name",
        all_of(named, beams.len(), "beams name their machine"),
    );
    let energy = beams
        .iter()
        .filter(|b| cp0(b).is_some_and(|c| has(&c, tags::NOMINAL_BEAM_ENERGY)))
        .count();
    push("nominal beam energy", all_of(energy, beams.len(), "beams"));

    // Dose reference point and beam doses.
    let refs_dr = a.items(tags::DOSE_REFERENCE_SEQUENCE);
    let point = refs_dr.iter().find(|d| {
        read::opt_str(d, tags::DOSE_REFERENCE_STRUCTURE_TYPE)
            .is_some_and(|t| t == "COORDINATES" || t == "POINT")
            && read::opt_f64s(d, tags::DOSE_REFERENCE_POINT_COORDINATES)
                .is_some_and(|v| v.len() == 3)
    });
    let coords = point.and_then(|d| read::opt_f64s(d, tags::DOSE_REFERENCE_POINT_COORDINATES));
    push(
        "dose reference point",
        status(
            coords.is_some(),
            true,
            "no COORDINATES/POINT dose reference with coordinates",
        ),
    );
    if let (Some(c), Some(g)) = (&coords, ctx.ct_grid) {
        let (lo, hi) = g.bounds_mm();
        let inside = (0..3).all(|i| c[i] >= lo[i] && c[i] <= hi[i]);
        push(
            "reference point inside the CT",
            status(
                inside,
                false,
                format!("({:.1}, {:.1}, {:.1}) mm outside the CT", c[0], c[1], c[2]),
            ),
        );
    }
    let beam_doses: Vec<f64> = refs
        .iter()
        .filter_map(|r| read::opt_f64s(r, tags::BEAM_DOSE).and_then(|v| v.first().copied()))
        .collect();
    let point_uid = point.and_then(|d| read::opt_str(d, tags::DOSE_REFERENCE_UID));
    // Reading the retired BeamDoseSpecificationPoint of older exports is intended.
    #[allow(deprecated)]
    let linked = refs
        .iter()
        .filter(|r| {
            let by_uid = read::opt_str(r, tags::REFERENCED_DOSE_REFERENCE_UID);
            (by_uid.is_some() && by_uid == point_uid)
                || read::opt_f64s(r, tags::BEAM_DOSE_SPECIFICATION_POINT)
                    .is_some_and(|v| v.len() == 3)
        })
        .count();
    push(
        "beam dose per beam",
        status(
            !refs.is_empty() && beam_doses.len() == refs.len() && linked == refs.len(),
            beam_doses.is_empty(),
            format!(
                "{} of {} referenced beams carry BeamDose, {linked} name the point it is specified at",
                beam_doses.len(),
                refs.len()
            ),
        ),
    );
    if !beam_doses.is_empty() {
        let planned_total = point
            .and_then(|d| read::opt_f64s(d, tags::TARGET_PRESCRIPTION_DOSE))
            .and_then(|v| v.first().copied());
        let sum: f64 = beam_doses.iter().sum();
        let s = match planned_total {
            Some(t) if fractions > 0.0 && t > 0.0 => {
                let per_fraction = t / fractions;
                let rel = (sum - per_fraction).abs() / per_fraction;
                status(
                    rel <= BEAM_DOSE_TOLERANCE,
                    false,
                    format!(
                        "BeamDose sums to {sum:.4} Gy, the point's planned {per_fraction:.4} Gy per fraction ({:+.2} %)",
                        100.0 * (sum - per_fraction) / per_fraction
                    ),
                )
            }
            _ => Status::Absent(
                "the point has no TargetPrescriptionDose (or no fractions) to compare with".into(),
            ),
        };
        push("beam doses sum to the point's dose", s);
    }

    // Tolerance table, set-up, identity.
    let tt = a.items(tags::TOLERANCE_TABLE_SEQUENCE);
    let valued = tt.iter().any(|t| {
        has(t, tags::GANTRY_ANGLE_TOLERANCE) || has(t, tags::BEAM_LIMITING_DEVICE_ANGLE_TOLERANCE)
    });
    push(
        "tolerance table values",
        status(
            valued,
            true,
            format!("{} tolerance tables, none with angle tolerances", tt.len()),
        ),
    );
    let ps = a.items(tags::PATIENT_SETUP_SEQUENCE);
    push(
        "patient position",
        status(
            ps.iter().all(|p| has(p, tags::PATIENT_POSITION)) && !ps.is_empty(),
            true,
            "no PatientPosition in the patient set-up",
        ),
    );
    push(
        "setup technique",
        status(
            ps.iter().any(|p| has(p, tags::SETUP_TECHNIQUE)),
            true,
            "no SetupTechnique",
        ),
    );
    push(
        "plan date and time",
        status(
            has(obj, tags::RT_PLAN_DATE) && has(obj, tags::RT_PLAN_TIME),
            true,
            "RTPlanDate/RTPlanTime empty",
        ),
    );
    push(
        "instance creation date",
        status(
            has(obj, tags::INSTANCE_CREATION_DATE),
            true,
            "no InstanceCreationDate",
        ),
    );
    push(
        "equipment manufacturer",
        status(has(obj, tags::MANUFACTURER), true, "no Manufacturer"),
    );
    match ctx.ct_patient_identity_removed {
        Some(ct) if !ct.is_empty() => {
            let plan = read::opt_str(obj, tags::PATIENT_IDENTITY_REMOVED);
            push(
                "de-identification as the CT",
                status(
                    plan.as_deref() == Some(ct),
                    plan.is_none(),
                    format!("PatientIdentityRemoved {plan:?}, the CT's '{ct}'"),
                ),
            );
        }
        _ => {}
    }

    // Per beam: SSD, collimator distances, description.
    let ssd = beams
        .iter()
        .filter(|b| cp0(b).is_some_and(|c| has(&c, tags::SOURCE_TO_SURFACE_DISTANCE)))
        .count();
    push(
        "SSD at the first control point",
        all_of(ssd, beams.len(), "beams"),
    );
    let devices: Vec<&InMemDicomObject> = beams
        .iter()
        .flat_map(|b| Attr::new(path, b).items(tags::BEAM_LIMITING_DEVICE_SEQUENCE))
        .collect();
    let with_distance = devices
        .iter()
        .filter(|d| has(d, tags::SOURCE_TO_BEAM_LIMITING_DEVICE_DISTANCE))
        .count();
    push(
        "source to beam-limiting-device distance",
        all_of(with_distance, devices.len(), "devices"),
    );
    let described = beams
        .iter()
        .filter(|b| has(b, tags::BEAM_DESCRIPTION))
        .count();
    push("beam description", all_of(described, beams.len(), "beams"));

    // Mechanical limits of a given machine.
    if let Some(m) = ctx.machine {
        let plan = read_rtplan(path)?;
        let sequenced: Vec<_> = plan.sequenced();
        let numbered: Vec<crate::beams::Beam> = plan
            .beams
            .iter()
            .filter_map(|b| b.to_beam(5.0, 0).ok())
            .collect();
        let numbers_ok = numbered.len() == plan.beams.len();
        let v = crate::deliverability::violations(
            m,
            if numbers_ok { &numbered } else { &[] },
            &sequenced,
            // The geometry only: the smallest MU after normalisation is the planner's rule.
            0.0,
        );
        push(
            "within the machine's limits",
            status(
                v.is_empty(),
                false,
                format!(
                    "{} violations{}",
                    v.len(),
                    v.first()
                        .map(|x| format!(", first: {x}"))
                        .unwrap_or_default()
                ),
            ),
        );
    }
    Ok(Checklist { items })
}
