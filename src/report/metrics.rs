//! Plan-quality metrics (definitions and references in `docs/metrics.md`).
//!
//! All volumes are counted in dose-grid voxels of equal volume; doses are total doses in Gy.

use serde::{Deserialize, Serialize};

use crate::dvh;

/// Dose statistics of one structure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StructureMetrics {
    pub name: String,
    pub interpreted_type: String,
    /// Volume on the dose grid, cm3.
    pub volume_cm3: f64,
    pub n_voxels: usize,
    pub min_gy: f64,
    pub mean_gy: f64,
    pub max_gy: f64,
    pub d98_gy: f64,
    pub d95_gy: f64,
    pub d50_gy: f64,
    pub d2_gy: f64,
}

impl StructureMetrics {
    /// Metrics of a structure from its voxel doses (Gy) and the dose-voxel volume (cm3).
    pub fn compute(name: &str, interpreted_type: &str, doses_gy: &[f64], voxel_cm3: f64) -> Self {
        let mut desc = doses_gy.to_vec();
        desc.sort_by(|a, b| b.total_cmp(a));
        let s = dvh::stats(doses_gy);
        StructureMetrics {
            name: name.to_string(),
            interpreted_type: interpreted_type.to_string(),
            volume_cm3: doses_gy.len() as f64 * voxel_cm3,
            n_voxels: doses_gy.len(),
            min_gy: s.min_gy,
            mean_gy: s.mean_gy,
            max_gy: s.max_gy,
            d98_gy: dvh::dose_at_volume_sorted(&desc, 98.0),
            d95_gy: dvh::dose_at_volume_sorted(&desc, 95.0),
            d50_gy: dvh::dose_at_volume_sorted(&desc, 50.0),
            d2_gy: dvh::dose_at_volume_sorted(&desc, 2.0),
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

/// Quality indices from all computed voxel doses, the target's voxel doses and the
/// prescription, with voxel volume `voxel_cm3`.
pub fn plan_quality(
    all_doses_gy: &[f64],
    target_doses_gy: &[f64],
    prescription_gy: f64,
    voxel_cm3: f64,
) -> PlanQuality {
    let count_ge = |d: &[f64], t: f64| d.iter().filter(|&&v| v >= t).count() as f64;
    let tv = target_doses_gy.len() as f64 * voxel_cm3;
    let piv = count_ge(all_doses_gy, prescription_gy) * voxel_cm3;
    let piv50 = count_ge(all_doses_gy, 0.5 * prescription_gy) * voxel_cm3;
    let tv_piv = count_ge(target_doses_gy, prescription_gy) * voxel_cm3;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let d2 = dvh::dose_at_volume(target_doses_gy, 2.0);
    let d98 = dvh::dose_at_volume(target_doses_gy, 98.0);
    let d50 = dvh::dose_at_volume(target_doses_gy, 50.0);
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
        let q = plan_quality(&all, &target, 50.0, 1.0);
        // TV = 10, PIV = 12, TV_PIV = 8: CI = 64 / 120
        assert!((q.paddick_ci - 64.0 / 120.0).abs() < 1e-12);
        assert!((q.rtog_ci - 1.2).abs() < 1e-12);
        // PIV50 (>= 25 Gy) = 14 voxels -> GI = 14 / 12
        assert!((q.gradient_index - 14.0 / 12.0).abs() < 1e-12);
        // D2 = 60 (hottest voxel), D98 = 40 (coldest), D50 = 60 -> HI = 1/3
        assert!((q.icru83_hi - 20.0 / 60.0).abs() < 1e-12);
    }
}
