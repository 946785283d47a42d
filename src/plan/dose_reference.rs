//! The plan's dose reference point: where a record-and-verify system tracks the delivered
//! dose (DoseReferenceSequence with coordinates, BeamDose per beam and a cumulative dose
//! coefficient per control point, `docs/export.md`).
//!
//! Choice of the point: a voxel of the target (centre rule) whose six neighbours are target
//! voxels too, minimising `|D - Rx| / Rx + h |grad D| / Rx` on the deliverable dose (per
//! fraction): close to the prescription, in a flat region where a set-up shift of one voxel
//! `h` changes the dose least (ICRU 50's reference-point criteria: clinically relevant, in a
//! region of low gradient, where the dose can be accurately determined). Ties go to the
//! lowest row, so the choice is deterministic.
//!
//! Beam doses: the untruncated dose per MU of every beamlet at the point
//! ([`crate::dose::engine::beamlet_doses_at_point`]) dotted with each beam's and each
//! segment's deliverable beamlet weights. Their sum is the point's dose by the point-kernel
//! route; the RT Dose holds the fluence-convolution route of the same weights, and the two
//! are reported side by side.

use crate::beams::Beam;
use crate::ct::CtVolume;
use crate::dose::engine::beamlet_doses_at_point;
use crate::dose::DoseGrid;
use crate::error::{Error, Result};
use crate::machine::MachineModel;
use crate::sequencing::{beam_weights_from_segments, SequencedBeam};

pub use crate::io::dicom::rtplan::DoseReferencePoint;

/// Choose the point among `target_rows` (dose-grid rows whose voxel centre is in the target)
/// on the deliverable dose `dose_full_gy_per_fraction` (full dose grid, Gy per fraction).
pub fn choose_point(
    dose_grid: &DoseGrid,
    target_rows: &[u32],
    dose_full_gy_per_fraction: &[f32],
    rx_per_fraction_gy: f64,
    target: &str,
) -> Result<([f64; 3], f64)> {
    let g = &dose_grid.grid;
    if dose_full_gy_per_fraction.len() != g.len()
        || rx_per_fraction_gy.is_nan()
        || rx_per_fraction_gy <= 0.0
    {
        return Err(Error::Invalid(format!(
            "dose reference point: {} dose values for a grid of {}, prescription {rx_per_fraction_gy} Gy",
            dose_full_gy_per_fraction.len(),
            g.len()
        )));
    }
    let mut in_target = vec![false; g.len()];
    for &r in target_rows {
        if let Some(&v) = dose_grid.voxels.get(r as usize) {
            in_target[v as usize] = true;
        }
    }
    let d = |i: usize| dose_full_gy_per_fraction[i] as f64;
    let h = g.spacing_mm.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut best: Option<(f64, usize)> = None;
    for &r in target_rows {
        let Some(&v) = dose_grid.voxels.get(r as usize) else {
            continue;
        };
        let [i, j, k] = g.ijk(v as usize);
        let mut grad2 = 0.0;
        let mut interior = true;
        for a in 0..3 {
            let ijk = [i, j, k];
            if ijk[a] == 0 || ijk[a] + 1 >= g.dims[a] {
                interior = false;
                break;
            }
            let mut lo = ijk;
            let mut hi = ijk;
            lo[a] -= 1;
            hi[a] += 1;
            let (il, ih) = (g.index(lo[0], lo[1], lo[2]), g.index(hi[0], hi[1], hi[2]));
            if !(in_target[il] && in_target[ih]) {
                interior = false;
                break;
            }
            grad2 += ((d(ih) - d(il)) / (2.0 * g.spacing_mm[a])).powi(2);
        }
        if !interior {
            continue;
        }
        let score = (d(v as usize) - rx_per_fraction_gy).abs() / rx_per_fraction_gy
            + h * grad2.sqrt() / rx_per_fraction_gy;
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, v as usize));
        }
    }
    let (_, v) = best.ok_or_else(|| {
        Error::Invalid(format!(
            "dose reference point: target '{target}' has no dose-grid voxel whose neighbours are all in it"
        ))
    })?;
    let [i, j, k] = g.ijk(v);
    Ok((g.centre_mm(i, j, k), d(v)))
}

/// The doses of each beam and segment at `point_lps` for the (normalised) segments.
pub fn beam_doses(
    ct: &CtVolume,
    beams: &[Beam],
    machine: &MachineModel,
    sequenced: &[SequencedBeam],
    point_lps: [f64; 3],
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let per_mu = beamlet_doses_at_point(ct, beams, machine, point_lps)?;
    let mut beam_dose = Vec::with_capacity(sequenced.len());
    let mut coefficients = Vec::with_capacity(sequenced.len());
    for sb in sequenced {
        let beam = beams.get(sb.beam_index).ok_or_else(|| {
            Error::Invalid(format!("dose reference point: no beam {}", sb.beam_index))
        })?;
        let cols = &per_mu[beam.first_column..beam.first_column + beam.beamlets.len()];
        let seg_dose: Vec<f64> = sb
            .segments
            .iter()
            .map(|s| {
                beam_weights_from_segments(beam, &sb.leaf_boundaries_mm, std::slice::from_ref(s))
                    .iter()
                    .zip(cols)
                    .map(|(w, c)| w * c)
                    .sum()
            })
            .collect();
        let total: f64 = seg_dose.iter().sum();
        let mut cum = 0.0;
        let n = seg_dose.len();
        let coeff: Vec<f64> = seg_dose
            .iter()
            .enumerate()
            .map(|(k, s)| {
                cum += s;
                if k + 1 == n {
                    1.0
                } else if total > 0.0 {
                    (cum / total).clamp(0.0, 1.0)
                } else {
                    (k + 1) as f64 / n as f64
                }
            })
            .collect();
        beam_dose.push(total);
        coefficients.push(coeff);
    }
    Ok((beam_dose, coefficients))
}
