//! The plan's dose reference point: where a record-and-verify system tracks the delivered
//! dose (DoseReferenceSequence with coordinates, BeamDose per beam and a cumulative dose
//! coefficient per control point, `docs/export.md`).
//!
//! Choice of the point: a voxel of the target (centre rule) whose six neighbours are target
//! voxels too, minimising `|D - Rx| / Rx + h |grad D| / Rx` on the deliverable dose (per
//! fraction): close to the prescription, in a flat region where a set-up shift of one voxel
//! `h` changes the dose least (ICRU 50's reference-point criteria: clinically relevant, in a
//! region of low gradient, where the dose can be accurately determined). A target too thin
//! to have such a voxel gets its voxel nearest the prescription. Ties go to the lowest row,
//! so the choice is deterministic.
//!
//! Beam doses: the untruncated dose per MU of every beamlet at the point
//! ([`crate::dose::DoseEngine::beamlet_doses_at_point`]) dotted with each beam's and each
//! segment's deliverable beamlet weights. Their sum is the point's dose by the point-kernel
//! route; the RT Dose holds the fluence-convolution route of the same weights, and the two
//! are reported side by side.

use crate::beams::Beam;
use crate::ct::CtVolume;
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
    let mut fallback: Option<(f64, usize)> = None;
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
        let deviation = (d(v as usize) - rx_per_fraction_gy).abs() / rx_per_fraction_gy;
        if interior {
            let score = deviation + h * grad2.sqrt() / rx_per_fraction_gy;
            if best.is_none_or(|(s, _)| score < s) {
                best = Some((score, v as usize));
            }
        } else if fallback.is_none_or(|(s, _)| deviation < s) {
            fallback = Some((deviation, v as usize));
        }
    }
    // A target too thin for an interior voxel (under three dose voxels across): its voxel
    // nearest the prescription.
    let (_, v) = best.or(fallback).ok_or_else(|| {
        Error::Invalid(format!(
            "dose reference point: target '{target}' has no voxel on the dose grid"
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
    let per_mu =
        crate::dose::engine_for(machine).beamlet_doses_at_point(ct, beams, machine, point_lps)?;
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
                beam_weights_from_segments(
                    beam,
                    &sb.leaf_boundaries_mm,
                    std::slice::from_ref(s),
                    sb.transmission,
                )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Grid3;

    fn grid() -> DoseGrid {
        let grid = Grid3 {
            dims: [5, 5, 5],
            origin_mm: [0.0; 3],
            spacing_mm: [3.0; 3],
        };
        DoseGrid {
            grid,
            voxels: (0..grid.len() as u32).collect(),
        }
    }

    #[test]
    fn point_is_interior_flat_and_near_the_prescription() {
        let g = grid();
        // Dose rises along x: 1.8, 1.9, 2.0, 2.1, 2.2 Gy; flat in y and z.
        let dose: Vec<f32> = (0..g.grid.len())
            .map(|v| 1.8 + 0.1 * g.grid.ijk(v)[0] as f32)
            .collect();
        let all: Vec<u32> = g.voxels.clone();
        let (p, d) = choose_point(&g, &all, &dose, 2.0, "PTV").unwrap();
        // x = 2 (2.0 Gy), interior in y and z: (1, 1, 1) is the first of the ties.
        assert_eq!(p, [6.0, 3.0, 3.0]);
        assert!((d - 2.0).abs() < 1e-6);
        // A slab one voxel thick (k = 2) has no interior voxel: the voxel nearest 2.0 Gy.
        let slab: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&v| g.grid.ijk(v as usize)[2] == 2)
            .collect();
        let (p, d) = choose_point(&g, &slab, &dose, 2.1, "thin PTV").unwrap();
        assert_eq!(p[0], 9.0);
        assert_eq!(p[2], 6.0);
        assert!((d - 2.1).abs() < 1e-6);
        let e = choose_point(&g, &[], &dose, 2.0, "empty")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
