//! Dose fidelity of the optimisation (issue 17): the truncated, scatter-corrected influence
//! matrix the optimiser works on misses part of the delivered dose, and by how much depends
//! on the fluence. After each solve the untruncated dose of the optimised weights is
//! computed and every row of the matrix is rescaled to reproduce it,
//!
//! ```text
//! A_{k+1}[v, :] = A_base[v, :] * D_exact(x_k)[v] / (A_base x_k)[v]
//! ```
//!
//! (a ratio correction: each voxel keeps its beamlet pattern, its scatter share follows the
//! fluence), then the problem is solved again. Each solve stays convex. At a fixed point the
//! optimiser's dose of its final weights equals the untruncated dose wherever the matrix
//! reaches the voxel. The additive variant `c = D_exact(x_k) - A x_k` of Siebers et al.
//! (Med Phys 29:231, 2002) reaches the same fixed point; the ratio form keeps every goal's
//! formulation unchanged (no per-voxel offsets in the rows). The loop stops when 99 % of the
//! body voxels above 10 % of the prescription (the report's fidelity threshold) agree within
//! [`DoseFidelity::tolerance_percent_rx`], or after [`DoseFidelity::max_corrections`]. The
//! solves before the last one stop at a loose gap (their weights only feed the next
//! correction) and start from the previous solve's zero beamlets; the last one is solved to
//! the optimiser's tolerance, so every hard goal is checked exactly on its dose.
//!
//! Leakage (issue 18): `D_exact(x_k)` is the dose the sequenced `x_k` would deliver, leaf
//! and jaw transmission included: `x_k` plus what the closed collimators of its segments
//! (the plan's own sequencer) transmit, `PreparedPlan::delivered_weights`. The ratio then
//! folds the leakage into the rows, so the optimiser sees it: in a beam with total MU `M`,
//! a beamlet with open fluence `F` inside the jaws receives `(1 - t) F + t M`. Rows whose
//! matrix dose is below 1 % of the maximum keep their factor (the leakage dose there, about
//! `t` of the beam's dose, stays out of the optimiser's dose; it lies far below the
//! fidelity threshold of 10 % of Rx). The factor is at most 4: where the leakage and
//! scatter together exceed three times the matrix dose (a voxel the leaves shield almost
//! entirely), the optimiser under-estimates the dose.

pub use crate::report::FidelityStep;

/// Settings of the dose-fidelity loop.
#[derive(Debug, Clone, PartialEq)]
pub struct DoseFidelity {
    /// Row rescalings (each followed by a solve) at most; 0: the optimiser's first solution
    /// is final and nothing is rescaled.
    pub max_corrections: usize,
    /// Fewer rescalings once the 99th percentile of |optimiser - untruncated dose| over the
    /// compared voxels is at most this, percent of the prescription.
    pub tolerance_percent_rx: f64,
    /// Relative gap of the solves before the last one (their weights only serve to compute
    /// the next correction); the last solve uses the optimiser's own tolerance.
    pub intermediate_tolerance: f64,
    /// Re-solves allowed beyond `max_corrections` when the machine's leaves or jaws transmit
    /// (the leakage follows the beam's total MU, not the rows' beamlets, so the ratio
    /// converges to it more slowly: on TG-119 the 99th percentile went 9.06 -> 3.18 -> 1.46
    /// -> 0.77 % of Rx). Not used when `max_corrections` is 0.
    pub leakage_corrections: usize,
}

/// Most re-solves the loop accepts: each costs a solve and an untruncated dose (seconds), and
/// on TG119 and the prostate phantom two already agree within 0.6 % of Rx.
pub const MAX_CORRECTIONS: usize = 10;

impl DoseFidelity {
    /// Refuse settings the loop cannot use, naming the setting (checked before any
    /// computation by `Planner::check_before_computation`).
    pub fn validate(&self) -> crate::error::Result<()> {
        let bad = |what: String| {
            Err(crate::error::Error::Invalid(format!(
                "dose fidelity: {what}"
            )))
        };
        if self.max_corrections > MAX_CORRECTIONS {
            return bad(format!(
                "{} corrections requested, at most {MAX_CORRECTIONS} (--fidelity-corrections)",
                self.max_corrections
            ));
        }
        if !(self.tolerance_percent_rx.is_finite() && self.tolerance_percent_rx > 0.0) {
            return bad(format!(
                "tolerance {} % of Rx must be a number > 0",
                self.tolerance_percent_rx
            ));
        }
        if self.leakage_corrections > MAX_CORRECTIONS {
            return bad(format!(
                "{} corrections for the leakage requested, at most {MAX_CORRECTIONS}",
                self.leakage_corrections
            ));
        }
        if !(self.intermediate_tolerance > 0.0 && self.intermediate_tolerance < 1.0) {
            return bad(format!(
                "intermediate tolerance {} must lie in (0, 1)",
                self.intermediate_tolerance
            ));
        }
        Ok(())
    }
}

impl Default for DoseFidelity {
    fn default() -> Self {
        DoseFidelity {
            max_corrections: 2,
            tolerance_percent_rx: 1.0,
            intermediate_tolerance: 1e-3,
            leakage_corrections: 1,
        }
    }
}

/// Smallest ratio a row may be scaled by (relative to the scatter-corrected matrix).
const MIN_FACTOR: f64 = 0.5;
/// Largest ratio; beyond it the voxel's dose comes mostly from beamlets its row lacks.
const MAX_FACTOR: f64 = 4.0;
/// Rows whose matrix dose is below this share of the maximum keep their scale.
const FLOOR_OF_MAX: f64 = 0.01;

/// Row factors (relative to the base matrix) that make `A_base x` reproduce `exact` for the
/// weights that gave `base_dose = A_base x`: `exact / base_dose` clamped to 0.5 ..= 4 where
/// the matrix dose is at least 1 % of its maximum, `previous` elsewhere. Both doses in the
/// same unit.
pub fn ratio_factors(base_dose: &[f64], exact: &[f64], previous: &[f64]) -> Vec<f64> {
    let max = base_dose.iter().cloned().fold(0.0f64, f64::max);
    base_dose
        .iter()
        .zip(exact)
        .zip(previous)
        .map(|((&a, &e), &p)| {
            if max > 0.0 && a >= FLOOR_OF_MAX * max {
                (e / a).clamp(MIN_FACTOR, MAX_FACTOR)
            } else {
                p
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_follow_the_ratio_within_the_clamp_and_keep_low_rows() {
        // max 10: 5 -> 6 gives 1.2; 2 -> 20 clamps at 4; 4 -> 1 clamps at 0.5; 0.05 is below
        // the 1 % floor and keeps its previous factor 1.3.
        let f = ratio_factors(
            &[10.0, 5.0, 2.0, 4.0, 0.05],
            &[11.0, 6.0, 20.0, 1.0, 9.0],
            &[1.0, 1.0, 1.0, 1.0, 1.3],
        );
        assert_eq!(f, vec![1.1, 1.2, 4.0, 0.5, 1.3]);
    }

    #[test]
    fn settings_outside_their_range_are_refused_by_name() {
        assert!(DoseFidelity::default().validate().is_ok());
        let e = DoseFidelity {
            max_corrections: MAX_CORRECTIONS + 1,
            ..DoseFidelity::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--fidelity-corrections"), "{e}");
        for tol in [0.0, -1.0, f64::NAN] {
            let e = DoseFidelity {
                tolerance_percent_rx: tol,
                ..DoseFidelity::default()
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("dose fidelity: tolerance"), "{e}");
        }
        let leak = DoseFidelity {
            leakage_corrections: MAX_CORRECTIONS + 1,
            ..DoseFidelity::default()
        };
        let e = leak.validate().unwrap_err().to_string();
        assert!(e.contains("for the leakage"), "{e}");
        assert!(DoseFidelity {
            intermediate_tolerance: 1.0,
            ..DoseFidelity::default()
        }
        .validate()
        .is_err());
    }
}
