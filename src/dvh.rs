//! Dose-volume metrics for a set of voxel doses with equal voxel volumes.
//!
//! Conventions (see `docs/optimization.md` and the DVH section of the metrics notes):
//! - Cumulative DVH: `V(D)` = percentage of voxels with dose `>= D` (closed at `D`).
//! - `D_x%` = minimum dose received by the hottest `x %` of the volume, **nearest rank, no
//!   interpolation**: with `N` voxels sorted in descending order `d(1) >= d(2) >= ...`, the
//!   hottest `x %` are the first `k = ceil(x N / 100)` voxels (at least one) and
//!   `D_x = d(k)`. So `V(D_x) >= x` always holds, `D_0 = D_max`, `D_100 = D_min`.
//!   (dicompyler-core bins at 1 cGy and does not interpolate either.)
//!
//! All doses in Gy. Empty inputs give `NaN` (no voxel, no metric).

/// Sorted copy, descending (NaN-free input assumed; NaN sorts first as the largest).
fn sorted_desc(doses: &[f64]) -> Vec<f64> {
    let mut d = doses.to_vec();
    d.sort_by(|a, b| b.total_cmp(a));
    d
}

/// `D_x%`: minimum dose (Gy) received by the hottest `pct` % of the voxels (nearest rank, see
/// the module notes). `pct` is clamped to `[0, 100]`.
pub fn dose_at_volume(doses: &[f64], pct: f64) -> f64 {
    if doses.is_empty() {
        return f64::NAN;
    }
    dose_at_volume_sorted(&sorted_desc(doses), pct)
}

/// As [`dose_at_volume`] on doses already sorted in descending order.
pub fn dose_at_volume_sorted(desc: &[f64], pct: f64) -> f64 {
    if desc.is_empty() {
        return f64::NAN;
    }
    let n = desc.len();
    let pct = pct.clamp(0.0, 100.0);
    // Small epsilon so that e.g. 10 % of 30 voxels is exactly 3 despite rounding.
    let k = ((pct * n as f64 / 100.0) - 1e-9).ceil().max(1.0) as usize;
    desc[k.min(n) - 1]
}

/// `V_D`: percentage (0..100) of the voxels receiving at least `dose_gy`.
pub fn volume_at_dose(doses: &[f64], dose_gy: f64) -> f64 {
    if doses.is_empty() {
        return f64::NAN;
    }
    let c = doses.iter().filter(|&&d| d >= dose_gy).count();
    100.0 * c as f64 / doses.len() as f64
}

/// Mean dose, Gy.
pub fn mean(doses: &[f64]) -> f64 {
    if doses.is_empty() {
        return f64::NAN;
    }
    doses.iter().sum::<f64>() / doses.len() as f64
}

/// Minimum dose, Gy.
pub fn min(doses: &[f64]) -> f64 {
    doses.iter().copied().reduce(f64::min).unwrap_or(f64::NAN)
}

/// Maximum dose, Gy.
pub fn max(doses: &[f64]) -> f64 {
    doses.iter().copied().reduce(f64::max).unwrap_or(f64::NAN)
}

/// Mean of the hottest `pct` % (upper conditional value at risk), with the fractional voxel at
/// the boundary counted by its fraction (Rockafellar & Uryasev 2000). This is the quantity a
/// CVaR constraint bounds; it is always `>= D_pct`.
pub fn upper_cvar(doses: &[f64], pct: f64) -> f64 {
    tail_mean(&sorted_desc(doses), pct)
}

/// Mean of the coldest `pct` % (lower CVaR), always `<= D_(100-pct)`.
pub fn lower_cvar(doses: &[f64], pct: f64) -> f64 {
    let mut d = doses.to_vec();
    d.sort_by(|a, b| a.total_cmp(b));
    tail_mean(&d, pct)
}

fn tail_mean(sorted: &[f64], pct: f64) -> f64 {
    if sorted.is_empty() || pct <= 0.0 {
        return f64::NAN;
    }
    let m = (pct.min(100.0) / 100.0) * sorted.len() as f64;
    let full = m.floor() as usize;
    let mut s: f64 = sorted[..full].iter().sum();
    let frac = m - full as f64;
    if frac > 0.0 && full < sorted.len() {
        s += frac * sorted[full];
    }
    s / m
}

/// One point of a cumulative DVH.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DvhPoint {
    pub dose_gy: f64,
    /// Percentage of the volume receiving at least `dose_gy`.
    pub volume_pct: f64,
}

/// Cumulative DVH sampled every `bin_gy` from 0 up to the first bin at or above the maximum
/// dose (so the last point has volume 0 % unless all voxels share the maximum exactly).
pub fn cumulative_dvh(doses: &[f64], bin_gy: f64) -> Vec<DvhPoint> {
    if doses.is_empty() || bin_gy <= 0.0 || !bin_gy.is_finite() {
        return Vec::new();
    }
    let mut asc = doses.to_vec();
    asc.sort_by(|a, b| a.total_cmp(b));
    let n = asc.len() as f64;
    let dmax = *asc.last().unwrap();
    let nbins = ((dmax / bin_gy).floor() as usize).saturating_add(2);
    let mut out = Vec::with_capacity(nbins);
    for i in 0..nbins {
        let d = i as f64 * bin_gy;
        // count of voxels with dose >= d
        let below = asc.partition_point(|&x| x < d);
        out.push(DvhPoint {
            dose_gy: d,
            volume_pct: 100.0 * (asc.len() - below) as f64 / n,
        });
    }
    out
}

/// Summary statistics of one structure.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DoseStats {
    pub n_voxels: usize,
    pub mean_gy: f64,
    pub min_gy: f64,
    pub max_gy: f64,
}

/// Mean, min and max together.
pub fn stats(doses: &[f64]) -> DoseStats {
    DoseStats {
        n_voxels: doses.len(),
        mean_gy: mean(doses),
        min_gy: min(doses),
        max_gy: max(doses),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ten voxels 1..=10 Gy (hand-computed cases).
    fn ten() -> Vec<f64> {
        (1..=10).rev().map(|v| v as f64).collect()
    }

    #[test]
    fn dose_at_volume_nearest_rank() {
        let d = ten();
        // hottest 10 % = 1 voxel -> 10 Gy; hottest 25 % = ceil(2.5) = 3 voxels -> 8 Gy.
        assert_eq!(dose_at_volume(&d, 10.0), 10.0);
        assert_eq!(dose_at_volume(&d, 25.0), 8.0);
        assert_eq!(dose_at_volume(&d, 95.0), 1.0);
        assert_eq!(dose_at_volume(&d, 90.0), 2.0);
        assert_eq!(dose_at_volume(&d, 0.0), 10.0);
        assert_eq!(dose_at_volume(&d, 100.0), 1.0);
        // V(D_x) >= x for every x.
        for x in 0..=100 {
            let dx = dose_at_volume(&d, x as f64);
            assert!(volume_at_dose(&d, dx) >= x as f64);
        }
        assert!(dose_at_volume(&[], 50.0).is_nan());
    }

    #[test]
    fn volume_at_dose_is_closed() {
        let d = ten();
        assert_eq!(volume_at_dose(&d, 8.0), 30.0);
        assert_eq!(volume_at_dose(&d, 7.5), 30.0);
        assert_eq!(volume_at_dose(&d, 0.0), 100.0);
        assert_eq!(volume_at_dose(&d, 10.5), 0.0);
    }

    #[test]
    fn stats_and_cvar() {
        let d = ten();
        assert_eq!(mean(&d), 5.5);
        assert_eq!(min(&d), 1.0);
        assert_eq!(max(&d), 10.0);
        // hottest 20 % = {10, 9} -> 9.5; hottest 25 % = (10 + 9 + 0.5*8)/2.5 = 9.2
        assert!((upper_cvar(&d, 20.0) - 9.5).abs() < 1e-12);
        assert!((upper_cvar(&d, 25.0) - 9.2).abs() < 1e-12);
        assert!((lower_cvar(&d, 20.0) - 1.5).abs() < 1e-12);
        assert!(upper_cvar(&d, 25.0) >= dose_at_volume(&d, 25.0));
    }

    #[test]
    fn cumulative_curve() {
        let d = vec![0.5, 1.5, 1.5, 2.5];
        let c = cumulative_dvh(&d, 1.0);
        let v: Vec<f64> = c.iter().map(|p| p.volume_pct).collect();
        assert_eq!(v, vec![100.0, 75.0, 25.0, 0.0]);
        assert_eq!(c[2].dose_gy, 2.0);
    }
}
