//! Plan-quality metrics (definitions and references in `docs/metrics.md`).
//!
//! Structure volumes and DVH metrics count each dose-grid voxel by the fraction of it the
//! structure occupies (partial volumes from the contours, [`crate::dvh::WeightedDoses`]);
//! the prescription isodose volume counts whole voxels. Doses are total doses in Gy.

use serde::{Deserialize, Serialize};

use crate::dvh::WeightedDoses;

/// Dose statistics of one structure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StructureMetrics {
    pub name: String,
    pub interpreted_type: String,
    /// Volume the contours enclose, from the partial volumes on the dose grid, cm3.
    pub volume_cm3: f64,
    /// The volume the DVH and its percentages cover, cm3: that of the supersampled DVH points
    /// (the contours' volume on the planes within the dose grid), or of the rows of a
    /// structure known only as a voxel mask.
    #[serde(default)]
    pub dvh_volume_cm3: f64,
    /// Dose-grid voxels with a computed dose that the structure occupies (any fraction).
    pub n_voxels: usize,
    pub min_gy: f64,
    pub mean_gy: f64,
    pub max_gy: f64,
    pub d98_gy: f64,
    pub d95_gy: f64,
    pub d50_gy: f64,
    pub d2_gy: f64,
    /// Near-maximum dose: the dose to the hottest 0.03 cm3 (D0.03cc), Gy; the maximum when
    /// the structure is smaller.
    #[serde(default)]
    pub d0_03cc_gy: f64,
    /// Volume receiving at least 95 % and 107 % of the prescription, % of the structure.
    #[serde(default)]
    pub v95_rx_percent: f64,
    #[serde(default)]
    pub v107_rx_percent: f64,
}

impl StructureMetrics {
    /// Metrics of a structure from the weighted doses of its DVH elements (weights in
    /// dose-grid voxels), the dose-voxel volume (cm3), the volume its contours enclose (cm3)
    /// and the number of dose-grid voxels it occupies; V95 % and V107 % refer to
    /// `prescription_gy`.
    pub fn compute(
        name: &str,
        interpreted_type: &str,
        doses: &WeightedDoses,
        voxel_cm3: f64,
        volume_cm3: f64,
        n_voxels: usize,
        prescription_gy: f64,
    ) -> Self {
        let s = doses.stats();
        let dvh_volume_cm3 = doses.total_weight() * voxel_cm3;
        let near_max_pct = if dvh_volume_cm3 > 0.0 {
            (100.0 * 0.03 / dvh_volume_cm3).min(100.0)
        } else {
            100.0
        };
        StructureMetrics {
            name: name.to_string(),
            interpreted_type: interpreted_type.to_string(),
            volume_cm3,
            dvh_volume_cm3,
            n_voxels,
            min_gy: s.min_gy,
            mean_gy: s.mean_gy,
            max_gy: s.max_gy,
            d98_gy: doses.dose_at_volume(98.0),
            d95_gy: doses.dose_at_volume(95.0),
            d50_gy: doses.dose_at_volume(50.0),
            d2_gy: doses.dose_at_volume(2.0),
            d0_03cc_gy: doses.dose_at_volume(near_max_pct),
            v95_rx_percent: doses.volume_at_dose(0.95 * prescription_gy),
            v107_rx_percent: doses.volume_at_dose(1.07 * prescription_gy),
        }
    }
}

/// Target conformity and homogeneity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanQuality {
    /// Prescription dose the indices refer to, Gy.
    pub prescription_gy: f64,
    /// Target volume TV, cm3.
    pub target_volume_cm3: f64,
    /// Prescription isodose volume PIV (whole dose grid), cm3.
    pub piv_cm3: f64,
    /// Target volume covered by the prescription isodose, cm3.
    pub tv_piv_cm3: f64,
    /// Paddick conformity index TV_PIV^2 / (TV x PIV) (Paddick 2000); 1 is ideal.
    pub paddick_ci: f64,
    /// RTOG conformity index PIV / TV (Shaw 1993).
    pub rtog_ci: f64,
    /// ICRU 83 homogeneity index (D2 - D98) / D50 of the target; 0 is ideal.
    pub icru83_hi: f64,
    /// Paddick gradient index PIV(50 % Rx) / PIV(100 % Rx) (Paddick & Lippitz 2006).
    pub gradient_index: f64,
}

/// Quality indices from all computed voxel doses (whole voxels), the target's weighted voxel
/// doses and the prescription, with voxel volume `voxel_cm3`.
pub fn plan_quality(
    all_doses_gy: &[f64],
    target: &WeightedDoses,
    prescription_gy: f64,
    voxel_cm3: f64,
) -> PlanQuality {
    let count_ge = |d: &[f64], t: f64| d.iter().filter(|&&v| v >= t).count() as f64;
    let tv = target.total_weight() * voxel_cm3;
    let piv = count_ge(all_doses_gy, prescription_gy) * voxel_cm3;
    let piv50 = count_ge(all_doses_gy, 0.5 * prescription_gy) * voxel_cm3;
    let tv_piv = if target.is_empty() {
        0.0
    } else {
        target.volume_at_dose(prescription_gy) / 100.0 * tv
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let d2 = target.dose_at_volume(2.0);
    let d98 = target.dose_at_volume(98.0);
    let d50 = target.dose_at_volume(50.0);
    PlanQuality {
        prescription_gy,
        target_volume_cm3: tv,
        piv_cm3: piv,
        tv_piv_cm3: tv_piv,
        paddick_ci: ratio(tv_piv * tv_piv, tv * piv),
        rtog_ci: ratio(piv, tv),
        icru83_hi: ratio(d2 - d98, d50),
        gradient_index: ratio(piv50, piv),
    }
}

/// How far the optimiser's own dose (its matrix times the optimised weights) is from the
/// untruncated dose of the same weights, over the voxels whose untruncated dose is above
/// `threshold_percent_rx` of the prescription (issue 17: the plan the optimiser thinks it made
/// against the one computed for export, before sequencing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelFidelity {
    /// Voxels compared are those above this percentage of the prescription.
    pub threshold_percent_rx: f64,
    pub voxels: usize,
    /// Largest |optimiser - untruncated|, Gy (total).
    pub max_abs_gy: f64,
    /// 99th percentile of |optimiser - untruncated|, Gy (total).
    pub p99_abs_gy: f64,
    /// The same two as percentages of the prescription.
    pub max_percent_rx: f64,
    pub p99_percent_rx: f64,
    /// Mean of (optimiser - untruncated), Gy: negative when the optimiser sees less dose.
    pub mean_signed_gy: f64,
}

/// One evaluation of the dose-fidelity loop (`plan::fidelity`): the optimiser's dose against the untruncated dose of the same
/// weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FidelityStep {
    /// 99th percentile of |optimiser - untruncated| over the compared voxels, % of Rx.
    pub p99_percent_rx: f64,
    /// Maximum of the same, % of Rx.
    pub max_percent_rx: f64,
    /// Objective of the solve evaluated here.
    pub objective: f64,
    /// Solver iterations of that solve.
    pub iterations: u32,
}

impl ModelFidelity {
    /// Compare per-voxel total doses `optimiser_gy` and `exact_gy` (same rows), for voxels
    /// with `exact_gy > threshold_percent_rx / 100 * prescription_gy`.
    pub fn compute(
        optimiser_gy: &[f64],
        exact_gy: &[f64],
        prescription_gy: f64,
        threshold_percent_rx: f64,
    ) -> ModelFidelity {
        let floor = threshold_percent_rx / 100.0 * prescription_gy;
        let (mut diff, mut signed): (Vec<f64>, f64) = (Vec::new(), 0.0);
        for (&o, &e) in optimiser_gy.iter().zip(exact_gy) {
            if e > floor {
                diff.push((o - e).abs());
                signed += o - e;
            }
        }
        if diff.is_empty() || prescription_gy.is_nan() || prescription_gy <= 0.0 {
            return ModelFidelity {
                threshold_percent_rx,
                ..ModelFidelity::default()
            };
        }
        diff.sort_by(f64::total_cmp);
        let n = diff.len();
        // Nearest-rank percentile: the smallest value with at least 99 % of the voxels at or
        // below it.
        let p99 = diff[((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1];
        let max = diff[n - 1];
        ModelFidelity {
            threshold_percent_rx,
            voxels: n,
            max_abs_gy: max,
            p99_abs_gy: p99,
            max_percent_rx: 100.0 * max / prescription_gy,
            p99_percent_rx: 100.0 * p99 / prescription_gy,
            mean_signed_gy: signed / n as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paddick_ci_of_hand_made_case() {
        // 10 target voxels, 8 of them >= 50 Gy; 4 further body voxels >= 50 Gy.
        let target: Vec<f64> = [60.0; 8].iter().chain(&[40.0, 40.0]).copied().collect();
        let mut all = target.clone();
        all.extend_from_slice(&[55.0; 4]);
        all.extend_from_slice(&[10.0; 20]);
        let q = plan_quality(&all, &WeightedDoses::uniform(&target), 50.0, 1.0);
        // TV = 10, PIV = 12, TV_PIV = 8: CI = 64 / 120
        assert!((q.paddick_ci - 64.0 / 120.0).abs() < 1e-12);
        assert!((q.rtog_ci - 1.2).abs() < 1e-12);
        // PIV50 (>= 25 Gy) = 14 voxels -> GI = 14 / 12
        assert!((q.gradient_index - 14.0 / 12.0).abs() < 1e-12);
        // D2 = 60 (hottest voxel), D98 = 40 (coldest), D50 = 60 -> HI = 1/3
        assert!((q.icru83_hi - 20.0 / 60.0).abs() < 1e-12);
    }

    #[test]
    fn fidelity_counts_voxels_above_the_threshold_only() {
        // Rx 50 Gy, threshold 10 % = 5 Gy: the 4 Gy voxel is left out. Differences of the
        // other 100 voxels: 99 of 0.5 Gy and one of 3 Gy.
        let mut exact = vec![20.0; 100];
        let mut opt: Vec<f64> = exact.iter().map(|e| e - 0.5).collect();
        opt[7] = 23.0;
        exact.push(4.0);
        opt.push(40.0);
        let f = ModelFidelity::compute(&opt, &exact, 50.0, 10.0);
        assert_eq!(f.voxels, 100);
        assert_eq!(f.max_abs_gy, 3.0);
        assert_eq!(f.p99_abs_gy, 0.5);
        assert!((f.max_percent_rx - 6.0).abs() < 1e-12);
        assert!((f.p99_percent_rx - 1.0).abs() < 1e-12);
        assert!((f.mean_signed_gy - (-0.5 * 99.0 + 3.0) / 100.0).abs() < 1e-12);
        assert_eq!(ModelFidelity::compute(&[1.0], &[1.0], 50.0, 10.0).voxels, 0);
    }
}
