//! Uniform-fluence dose summary used by `rtopt dose`: every beamlet at the same weight,
//! scaled so that the target's mean dose is 2 Gy.
// Index loops mirror the formulas; negated comparisons deliberately reject NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use serde::Serialize;

use super::engine::{dose_at_points, influence_matrix, DoseOptions};
use crate::beams::{setup_beams, BeamSetup};
use crate::case::Case;
use crate::error::{Error, Result};
use crate::machine::MachineModel;
use crate::structures::RoiType;

/// Dose statistics of one structure.
#[derive(Debug, Clone, Serialize)]
pub struct StructureDose {
    pub name: String,
    pub voxels: usize,
    pub mean_gy: f64,
    pub max_gy: f64,
}

/// Result of [`open_field_summary`].
#[derive(Debug, Clone, Serialize)]
pub struct OpenFieldSummary {
    pub target: String,
    pub gantry_deg: Vec<f64>,
    pub beamlets: usize,
    /// MU per beamlet that gives the target a mean of 2 Gy.
    pub mu_per_beamlet: f64,
    pub dose_voxels: usize,
    pub nnz: usize,
    pub matrix_bytes: usize,
    pub truncated_mass_fraction: f64,
    pub build_seconds: f64,
    /// Mean of `A x` over up to 200 sampled target voxels, and the same from
    /// [`dose_at_points`] (no cutoff, no threshold): their ratio shows what the truncation
    /// costs inside the target.
    pub target_sample_matrix_gy: f64,
    pub target_sample_exact_gy: f64,
    pub structures: Vec<StructureDose>,
}

/// The structure used as target when none is named: the first of type PTV, else CTV/GTV.
pub fn default_target(case: &Case) -> Result<String> {
    for kind in [RoiType::Ptv, RoiType::Ctv, RoiType::Gtv] {
        if let Some(s) = case.structures.iter().find(|s| s.roi.roi_type() == kind) {
            return Ok(s.roi.name.clone());
        }
    }
    Err(Error::Invalid(format!(
        "no structure of type PTV/CTV/GTV; name the target with --target (present: {})",
        case.structure_names().join(", ")
    )))
}

/// Compute the influence matrix for `gantry_deg` around `target` and summarise the dose of
/// uniform beamlet weights normalised to a 2 Gy target mean.
pub fn open_field_summary(
    case: &Case,
    target: &str,
    gantry_deg: &[f64],
    machine: &MachineModel,
    opts: &DoseOptions,
) -> Result<OpenFieldSummary> {
    let t = case.structure(target)?;
    let setup = BeamSetup {
        gantry_deg: gantry_deg.to_vec(),
        ..Default::default()
    };
    let beams = setup_beams(&t.mask, &setup, machine)?;
    let body = case.try_body_mask()?;
    let calc = influence_matrix(&case.ct, &body, &beams, machine, opts)?;
    let n = calc.matrix.n_cols();
    let dose1 = calc.matrix.dose(&vec![1.0; n]);
    let trows = calc.dose_grid.rows_in(&t.mask);
    if trows.is_empty() {
        return Err(Error::Invalid(format!(
            "target '{target}' has no voxel on the dose grid"
        )));
    }
    let tmean = trows.iter().map(|&r| dose1[r as usize]).sum::<f64>() / trows.len() as f64;
    if !(tmean > 0.0) {
        return Err(Error::Invalid(format!(
            "target '{target}' receives no dose from the beams"
        )));
    }
    let scale = 2.0 / tmean;
    let step = trows.len().div_ceil(200).max(1);
    let sample: Vec<u32> = trows.iter().step_by(step).cloned().collect();
    let g = calc.dose_grid.grid;
    let pts: Vec<[f64; 3]> = sample
        .iter()
        .map(|&r| {
            let [i, j, k] = g.ijk(calc.dose_grid.voxels[r as usize] as usize);
            g.centre_mm(i, j, k)
        })
        .collect();
    let exact = dose_at_points(&case.ct, &beams, machine, &vec![scale; n], &pts)?;
    let target_sample_exact_gy = exact.iter().sum::<f64>() / exact.len() as f64;
    let target_sample_matrix_gy = sample
        .iter()
        .map(|&r| dose1[r as usize] * scale)
        .sum::<f64>()
        / sample.len() as f64;
    let structures = case
        .structures
        .iter()
        .map(|s| {
            let rows = calc.dose_grid.rows_in(&s.mask);
            let (mut sum, mut max) = (0.0f64, 0.0f64);
            for &r in &rows {
                let d = dose1[r as usize] * scale;
                sum += d;
                max = max.max(d);
            }
            StructureDose {
                name: s.roi.name.clone(),
                voxels: rows.len(),
                mean_gy: if rows.is_empty() {
                    0.0
                } else {
                    sum / rows.len() as f64
                },
                max_gy: max,
            }
        })
        .collect();
    Ok(OpenFieldSummary {
        target: target.to_string(),
        gantry_deg: gantry_deg.to_vec(),
        beamlets: n,
        mu_per_beamlet: scale,
        dose_voxels: calc.dose_grid.len(),
        nnz: calc.matrix.nnz(),
        matrix_bytes: calc.matrix.bytes(),
        truncated_mass_fraction: calc.truncated_mass_fraction,
        build_seconds: calc.build_seconds,
        target_sample_matrix_gy,
        target_sample_exact_gy,
        structures,
    })
}

impl std::fmt::Display for OpenFieldSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "target {} | gantry {:?} | {} beamlets at {:.4} MU each (target mean 2 Gy)",
            self.target, self.gantry_deg, self.beamlets, self.mu_per_beamlet
        )?;
        writeln!(
            f,
            "dose grid {} voxels | nnz {} | {:.1} MB | truncated mass {:.2} % | build {:.2} s",
            self.dose_voxels,
            self.nnz,
            self.matrix_bytes as f64 / 1e6,
            100.0 * self.truncated_mass_fraction,
            self.build_seconds
        )?;
        writeln!(
            f,
            "target sample: matrix {:.3} Gy, exact (no truncation) {:.3} Gy",
            self.target_sample_matrix_gy, self.target_sample_exact_gy
        )?;
        writeln!(
            f,
            "{:<24} {:>9} {:>10} {:>10}",
            "structure", "voxels", "mean Gy", "max Gy"
        )?;
        for s in &self.structures {
            writeln!(
                f,
                "{:<24} {:>9} {:>10.3} {:>10.3}",
                s.name, s.voxels, s.mean_gy, s.max_gy
            )?;
        }
        Ok(())
    }
}
