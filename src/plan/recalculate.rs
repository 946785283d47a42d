//! The dose of an imported RT Plan (rtopt's or another system's): the secondary dose check a
//! physicist runs on every plan (`rtopt dose <case> --plan RTPLAN.dcm`, `docs/export.md`).
//!
//! Each beam of the plan becomes a beam of rtopt's engine with a beamlet grid over its jaw
//! openings ([`crate::io::dicom::rtplan::ImportedBeam::to_beam`]); its segments (control-point
//! pairs with a meterset increase) give the beamlets' MU by partial coverage
//! ([`crate::sequencing::deliverable_weights`]), and the untruncated engine
//! ([`crate::dose::dose_from_weights`]) gives the dose on a grid covering the body, times the
//! plan's fractions. What the engine cannot model is refused (another energy, another patient
//! position, another frame of reference) or stated ([`Recalculation::statements`]).
//!
//! [`compare`] then sets the result against an RT Dose of the same plan: a 3 %/2 mm and a
//! 1 %/1 mm gamma (reference: the given RT Dose) and DVH points of every structure, both
//! doses sampled trilinearly at the same points (the structure's CT voxels).

use std::path::Path;

use serde::Serialize;

use crate::beams::Beam;
use crate::case::Case;
use crate::dose::DoseGrid;
use crate::dvh::WeightedDoses;
use crate::error::{Error, Result};
use crate::gamma::{gamma_3d, GammaOptions};
use crate::io::dicom::rtdose::RtDose;
use crate::io::dicom::rtplan::{read_rtplan, ImportedPlan};
use crate::machine::MachineModel;

/// Options of a recalculation.
#[derive(Debug, Clone, PartialEq)]
pub struct RecalcOptions {
    /// Beamlet size of the grid laid over each beam's jaws, mm.
    pub beamlet_mm: f64,
    /// Dose-grid spacing, mm (the planner's: 3 mm).
    pub dose_spacing_mm: [f64; 3],
    /// Accept a plan whose FrameOfReferenceUID is not the CT's (a phantom built around the
    /// plan's isocentre, [`crate::phantom::water_cube`]); stated in the result.
    pub ignore_frame_of_reference: bool,
}

impl Default for RecalcOptions {
    fn default() -> Self {
        RecalcOptions {
            beamlet_mm: 5.0,
            dose_spacing_mm: [3.0; 3],
            ignore_frame_of_reference: false,
        }
    }
}

/// The recalculated dose of an imported plan.
#[derive(Debug, Clone)]
pub struct Recalculation {
    pub plan: ImportedPlan,
    pub beams: Vec<Beam>,
    pub dose_grid: DoseGrid,
    /// Dose over all fractions, Gy, on the full dose grid.
    pub dose_full_gy: Vec<f32>,
    /// Fractions the dose is summed over.
    pub fractions: u32,
    /// What the recalculation could not model or assumed, in words.
    pub statements: Vec<String>,
}

/// Recalculate the RT Plan at `plan_path` on `case` with `machine`.
pub fn recalculate(
    case: &Case,
    plan_path: &Path,
    machine: &MachineModel,
    opts: &RecalcOptions,
) -> Result<Recalculation> {
    let plan = read_rtplan(plan_path)?;
    let file = plan_path.display();
    let mut statements = Vec::new();
    let ct_frame = &case.ct.meta.frame_of_reference_uid;
    match &plan.frame_of_reference_uid {
        Some(f) if f != ct_frame => {
            if opts.ignore_frame_of_reference {
                statements.push(format!(
                    "The plan's frame of reference ({f}) is not the CT's ({ct_frame}); its coordinates were used as they are."
                ));
            } else {
                return Err(Error::Invalid(format!(
                    "{file}: FrameOfReferenceUID {f} is not the CT's {ct_frame}: the plan belongs to another image set"
                )));
            }
        }
        None => statements.push(
            "The plan has no FrameOfReferenceUID; its coordinates were taken in the CT's frame."
                .into(),
        ),
        _ => {}
    }
    let ct_position = if case.ct.meta.patient_position.is_empty() {
        "HFS"
    } else {
        case.ct.meta.patient_position.as_str()
    };
    if let Some(pp) = &plan.patient_position {
        if pp != ct_position {
            return Err(Error::Invalid(format!(
                "{file}: PatientPosition {pp} is not the CT's {ct_position}"
            )));
        }
    }
    let fractions = if plan.fractions > 0 {
        plan.fractions as u32
    } else {
        statements.push("The plan gives no NumberOfFractionsPlanned; one fraction assumed.".into());
        1
    };
    let (lo, hi) = case.ct.grid.bounds_mm();
    let mut beams = Vec::with_capacity(plan.beams.len());
    let mut first = 0usize;
    for b in &plan.beams {
        if let Some(e) = b.nominal_energy_mv {
            if (e - machine.energy_mv).abs() > 0.05 {
                return Err(Error::Invalid(format!(
                    "{file}: beam {} is {e} MV; the machine model is {} MV",
                    b.number, machine.energy_mv
                )));
            }
        } else {
            statements.push(format!(
                "Beam {} has no NominalBeamEnergy; the machine's {} MV model was used.",
                b.number, machine.energy_mv
            ));
        }
        if !b.treatment_machine.is_empty() && b.treatment_machine != machine.name {
            statements.push(format!(
                "Beam {} is for machine '{}'; its dose was computed with the model of '{}'.",
                b.number, b.treatment_machine, machine.name
            ));
        }
        if b.leaf_boundaries_mm.is_empty() {
            statements.push(format!("Beam {} has no MLC: open jaw fields.", b.number));
        }
        let moving = b.control_points.windows(2).any(|w| {
            w[1].cumulative_weight > w[0].cumulative_weight
                && w[0].leaf_pairs_mm != w[1].leaf_pairs_mm
        });
        if moving {
            statements.push(format!(
                "Beam {} moves its leaves while it irradiates (dynamic MLC): each control-point interval was modelled by its mean aperture.",
                b.number
            ));
        }
        let beam = b.to_beam(opts.beamlet_mm, first)?;
        if (0..3).any(|a| beam.isocenter_mm[a] < lo[a] || beam.isocenter_mm[a] > hi[a]) {
            return Err(Error::Invalid(format!(
                "{file}: the isocentre of beam {} ({:.1}, {:.1}, {:.1}) mm lies outside the CT",
                b.number, beam.isocenter_mm[0], beam.isocenter_mm[1], beam.isocenter_mm[2]
            )));
        }
        first += beam.beamlets.len();
        beams.push(beam);
    }
    let transmission = crate::sequencing::Transmission::of(&machine.mlc, &machine.jaws);
    statements.push(format!(
        "Leaf transmission {:.2} % and jaw transmission {:.2} % of the machine file, within each beam's beamlet grid (the union of its jaw openings); not modelled: rounded leaf ends, tongue-and-groove, wedges, blocks, compensators and boli (docs/dose.md).",
        100.0 * transmission.mlc,
        100.0 * transmission.jaw
    ));
    let mut sequenced: Vec<_> = plan.sequenced();
    for sb in &mut sequenced {
        sb.transmission = transmission;
    }
    let weights = crate::sequencing::deliverable_weights(&beams, &sequenced, first)?;
    let body = case.try_body_mask()?;
    let dose_grid = DoseGrid::covering(&case.ct.grid, opts.dose_spacing_mm, &body);
    let rows = crate::dose::engine_for(machine).dose_from_weights(
        &case.ct,
        &dose_grid,
        &beams,
        machine,
        &weights,
        &crate::control::CancelToken::new(),
    )?;
    let rows: Vec<f64> = rows.into_iter().map(|d| d * fractions as f64).collect();
    let dose_full_gy = dose_grid.to_full(&rows);
    Ok(Recalculation {
        plan,
        beams,
        dose_grid,
        dose_full_gy,
        fractions,
        statements,
    })
}

/// DVH points of one structure under both doses.
#[derive(Debug, Clone, Serialize)]
pub struct StructureComparison {
    pub name: String,
    /// Mean, D95, D2 and maximum, Gy: (recalculated, reference).
    pub mean_gy: (f64, f64),
    pub d95_gy: (f64, f64),
    pub d2_gy: (f64, f64),
    pub max_gy: (f64, f64),
}

/// The recalculated dose against a reference RT Dose.
#[derive(Debug, Clone, Serialize)]
pub struct DoseComparison {
    /// 3 %/2 mm and 1 %/1 mm global gamma (10 % threshold), % of evaluated points.
    pub gamma_3_2_percent: f64,
    pub gamma_1_1_percent: f64,
    pub evaluated_points: usize,
    /// Maxima, Gy: (recalculated, reference).
    pub max_gy: (f64, f64),
    pub structures: Vec<StructureComparison>,
}

/// Compare `recalc` with `reference` (an RT Dose in Gy, in the CT's frame of reference).
pub fn compare(case: &Case, recalc: &Recalculation, reference: &RtDose) -> Result<DoseComparison> {
    if reference.units != "GY" {
        return Err(Error::Invalid(format!(
            "the reference RT Dose is in {} units, not GY: no absolute comparison",
            reference.units
        )));
    }
    if reference.frame_of_reference_uid != case.ct.meta.frame_of_reference_uid {
        return Err(Error::Invalid(format!(
            "the reference RT Dose's frame of reference {} is not the CT's {}",
            reference.frame_of_reference_uid, case.ct.meta.frame_of_reference_uid
        )));
    }
    let ours = &recalc.dose_full_gy;
    let og = &recalc.dose_grid.grid;
    let gamma = |dose_percent: f64, dta_mm: f64| {
        gamma_3d(
            &reference.grid,
            &reference.dose,
            og,
            ours,
            &GammaOptions {
                dose_percent,
                dta_mm,
                ..GammaOptions::default()
            },
        )
    };
    let g32 = gamma(3.0, 2.0)?;
    let g11 = gamma(1.0, 1.0)?;
    let max = |v: &[f32]| v.iter().fold(0.0f64, |m, &x| m.max(x as f64));
    let mut structures = Vec::new();
    for s in &case.structures {
        let g = &s.mask.grid;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (idx, _) in s.mask.inside.iter().enumerate().filter(|(_, &i)| i) {
            let [i, j, k] = g.ijk(idx);
            let p = g.centre_mm(i, j, k);
            a.push(og.sample_trilinear(ours, p) as f64);
            b.push(reference.grid.sample_trilinear(&reference.dose, p) as f64);
        }
        if a.is_empty() {
            continue;
        }
        let (da, db) = (WeightedDoses::uniform(&a), WeightedDoses::uniform(&b));
        structures.push(StructureComparison {
            name: s.roi.name.clone(),
            mean_gy: (da.mean(), db.mean()),
            d95_gy: (da.dose_at_volume(95.0), db.dose_at_volume(95.0)),
            d2_gy: (da.dose_at_volume(2.0), db.dose_at_volume(2.0)),
            max_gy: (da.max(), db.max()),
        });
    }
    Ok(DoseComparison {
        gamma_3_2_percent: g32.pass_rate_percent,
        gamma_1_1_percent: g11.pass_rate_percent,
        evaluated_points: g32.evaluated,
        max_gy: (max(ours), max(&reference.dose)),
        structures,
    })
}
