//! Correction of the truncated optimisation matrix toward the untruncated dose.
//!
//! The optimisation matrix drops kernel tails beyond a lateral cutoff and entries below a
//! relative threshold (about 20 % of the dose mass on TG119, see `docs/dose.md`). A one-off
//! row scaling from a reference fluence restores part of it; it does not follow the fluence
//! the optimiser finds (issue 17 tracks the full fix).

/// Row factors that make the truncated influence matrix reproduce the untruncated dose of a
/// reference fluence `x_ref` (open fields conforming to the target): `f_r = exact_r /
/// (A x_ref)_r`, for rows whose matrix dose is at least 2 % of the maximum (elsewhere 1, where
/// the ratio is ill-conditioned and the dose is low), clamped to [1, 4]. The scatter fraction
/// of a voxel varies slowly with the fluence, so `diag(f) A x` approximates the final dose of
/// the optimised fluence too; the plan's goals, DVHs and RT Dose are always evaluated on the
/// untruncated dose.
pub fn scatter_correction(matrix_dose: &[f64], exact_dose: &[f64]) -> Vec<f64> {
    scatter_correction_bounded(matrix_dose, exact_dose, 1.0)
}

/// [`scatter_correction`] with the lower clamp `floor` instead of 1: for an engine whose
/// forward dose may lie *below* its matrix (the heterogeneous engine), so that the
/// correction also carries that reduction (floor 0.5).
pub fn scatter_correction_bounded(matrix_dose: &[f64], exact_dose: &[f64], floor: f64) -> Vec<f64> {
    let max = matrix_dose.iter().cloned().fold(0.0f64, f64::max);
    matrix_dose
        .iter()
        .zip(exact_dose)
        .map(|(&a, &e)| {
            if max > 0.0 && a >= 0.02 * max {
                (e / a).clamp(floor, 4.0)
            } else {
                1.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_restore_the_exact_dose_within_the_clamp() {
        // max 10: rows 0.1 (1 %) is below the 2 % floor; 5 -> 6 gives 1.2; 2 -> 20 clamps at 4;
        // an exact dose below the matrix dose clamps at 1.
        let f = scatter_correction(&[10.0, 5.0, 2.0, 0.1, 4.0], &[11.0, 6.0, 20.0, 5.0, 3.0]);
        assert_eq!(f, vec![1.1, 1.2, 4.0, 1.0, 1.0]);
        assert_eq!(scatter_correction(&[0.0, 0.0], &[1.0, 1.0]), vec![1.0, 1.0]);
        // With a floor of 0.5 a lower exact dose lowers the row, down to the floor.
        let f = scatter_correction_bounded(&[10.0, 4.0, 4.0], &[11.0, 3.0, 1.0], 0.5);
        assert_eq!(f, vec![1.1, 0.75, 0.5]);
    }
}
