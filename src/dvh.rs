//! Dose-volume metrics of a structure's voxel doses, with equal voxel volumes (the plain
//! functions) or with partial-volume weights ([`WeightedDoses`]: each voxel counts by the
//! fraction of it that the structure occupies, `docs/metrics.md`).
//!
//! Conventions (see `docs/metrics.md` and `docs/optimization.md`):
//! - Cumulative DVH: `V(D)` = percentage of the volume with dose `>= D` (closed at `D`).
//! - `D_x%` = minimum dose received by the hottest `x %` of the volume, **nearest rank, no
//!   interpolation**: with `N` voxels sorted in descending order `d(1) >= d(2) >= ...`, the
//!   hottest `x %` are the first `k = ceil(x N / 100)` voxels (at least one) and
//!   `D_x = d(k)`. So `V(D_x) >= x` always holds, `D_0 = D_max`, `D_100 = D_min`.
//!   (dicompyler-core bins at 1 cGy and does not interpolate either.)
//! - Weighted, the same rule on volumes: with weights `w(i)` in that order and
//!   `W(k) = w(1) + ... + w(k)`, `D_x = d(k)` for the smallest `k` with
//!   `W(k) >= x W(N) / 100`; with equal weights this is the rank above, so `V(D_x) >= x`,
//!   `D_0 = D_max` and `D_100 = D_min` still hold. Max and min are over the voxels with a
//!   weight (> 0); mean, `V(D)` and CVaR weigh each voxel by `w`.
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

/// A structure's voxel doses with their partial-volume weights (the occupied fraction of
/// each voxel, or 1 for all), ready for every DVH metric (conventions in the module notes).
/// Voxels with a weight that is not positive and finite are left out. With all weights 1 each
/// metric equals the plain function of the same name to the bit (the same sums in the same
/// order). The descending sort is made on the first metric that needs it.
#[derive(Debug, Clone)]
pub struct WeightedDoses {
    /// (dose, weight) in input order.
    input: Vec<(f64, f64)>,
    /// The same, dose descending (ties in input order).
    desc: std::cell::OnceCell<Vec<(f64, f64)>>,
    /// Sum of the weights, in input order.
    total: f64,
}

impl PartialEq for WeightedDoses {
    /// The same voxels (doses and weights, in the same order); the sort cache is not compared.
    fn eq(&self, other: &Self) -> bool {
        self.input == other.input
    }
}

impl WeightedDoses {
    /// Doses (Gy) and their weights (same length; extra entries of the longer are ignored).
    pub fn new(doses_gy: &[f64], weights: &[f32]) -> Self {
        let input: Vec<(f64, f64)> = doses_gy
            .iter()
            .zip(weights)
            .map(|(&d, &w)| (d, w as f64))
            .filter(|&(_, w)| w > 0.0 && w.is_finite())
            .collect();
        Self::from_pairs(input)
    }

    /// Every voxel with weight 1 (the plain DVH).
    pub fn uniform(doses_gy: &[f64]) -> Self {
        Self::from_pairs(doses_gy.iter().map(|&d| (d, 1.0)).collect())
    }

    fn from_pairs(input: Vec<(f64, f64)>) -> Self {
        WeightedDoses {
            total: input.iter().map(|p| p.1).sum(),
            input,
            desc: std::cell::OnceCell::new(),
        }
    }

    fn desc(&self) -> &[(f64, f64)] {
        self.desc.get_or_init(|| {
            let mut d = self.input.clone();
            d.sort_by(|a, b| b.0.total_cmp(&a.0));
            d
        })
    }

    /// Number of voxels with a weight.
    pub fn len(&self) -> usize {
        self.input.len()
    }

    /// True when no voxel has a weight.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Sum of the weights (in voxels).
    pub fn total_weight(&self) -> f64 {
        self.total
    }

    /// `D_x%` (nearest rank on the weighted volume, see the module notes); `pct` is clamped
    /// to `[0, 100]`.
    pub fn dose_at_volume(&self, pct: f64) -> f64 {
        let n = self.input.len();
        if n == 0 {
            return f64::NAN;
        }
        let pct = pct.clamp(0.0, 100.0);
        // The same epsilon as `dose_at_volume_sorted`, in units of the mean weight.
        let need = pct * self.total / 100.0 - 1e-9 * (self.total / n as f64);
        let desc = self.desc();
        let mut cum = 0.0;
        for &(d, w) in desc {
            cum += w;
            if cum >= need {
                return d;
            }
        }
        desc.last().map_or(f64::NAN, |p| p.0)
    }

    /// `V_D`: percentage (0..100) of the volume receiving at least `dose_gy`.
    pub fn volume_at_dose(&self, dose_gy: f64) -> f64 {
        if self.input.is_empty() {
            return f64::NAN;
        }
        let above: f64 = self
            .input
            .iter()
            .filter(|p| p.0 >= dose_gy)
            // From +0.0 (`sum` starts at -0.0): no voxel above gives 0 %, not -0 %.
            .fold(0.0, |a, p| a + p.1);
        100.0 * above / self.total
    }

    /// Weighted mean dose, Gy.
    pub fn mean(&self) -> f64 {
        self.mean_of(|d| d)
    }

    /// Weighted mean of `f(dose)`, e.g. a squared deviation (NaN when empty), summed in input
    /// order.
    pub fn mean_of(&self, f: impl Fn(f64) -> f64) -> f64 {
        if self.input.is_empty() {
            return f64::NAN;
        }
        self.input.iter().map(|&(d, w)| w * f(d)).sum::<f64>() / self.total
    }

    /// Maximum dose over the voxels with a weight, Gy.
    pub fn max(&self) -> f64 {
        self.input
            .iter()
            .map(|p| p.0)
            .reduce(f64::max)
            .unwrap_or(f64::NAN)
    }

    /// Minimum dose over the voxels with a weight, Gy.
    pub fn min(&self) -> f64 {
        self.input
            .iter()
            .map(|p| p.0)
            .reduce(f64::min)
            .unwrap_or(f64::NAN)
    }

    /// Mean of the hottest `pct` % of the volume (upper CVaR), the boundary voxel counted by
    /// the part of its weight that fits (see [`upper_cvar`]).
    pub fn upper_cvar(&self, pct: f64) -> f64 {
        weighted_tail_mean(self.desc().iter().copied(), self.total, pct)
    }

    /// Mean of the coldest `pct` % of the volume (lower CVaR).
    pub fn lower_cvar(&self, pct: f64) -> f64 {
        weighted_tail_mean(self.desc().iter().rev().copied(), self.total, pct)
    }

    /// Cumulative DVH every `bin_gy` from 0 to the first bin at or above the maximum (as
    /// [`cumulative_dvh`]), volumes weighted.
    pub fn cumulative(&self, bin_gy: f64) -> Vec<DvhPoint> {
        if self.input.is_empty() || bin_gy <= 0.0 || !bin_gy.is_finite() {
            return Vec::new();
        }
        let nbins = ((self.max() / bin_gy).floor() as usize).saturating_add(2);
        // Volume at or above each dose, walking the voxels from the coldest up.
        let mut out = Vec::with_capacity(nbins);
        let mut asc = self.desc().iter().rev().peekable();
        let mut below = 0.0;
        for i in 0..nbins {
            let d = i as f64 * bin_gy;
            while let Some(&&(dose, w)) = asc.peek() {
                if dose < d {
                    below += w;
                    asc.next();
                } else {
                    break;
                }
            }
            // Exactly 0 once every voxel lies below (no rounding residue of the sum).
            let above = if asc.peek().is_none() {
                0.0
            } else {
                (self.total - below).max(0.0)
            };
            out.push(DvhPoint {
                dose_gy: d,
                volume_pct: 100.0 * above / self.total,
            });
        }
        out
    }

    /// Mean, min and max together (`n_voxels`: the voxels with a weight).
    pub fn stats(&self) -> DoseStats {
        DoseStats {
            n_voxels: self.len(),
            mean_gy: self.mean(),
            min_gy: self.min(),
            max_gy: self.max(),
        }
    }
}

/// Mean of the first `pct` % of the weight of `sorted` (dose, weight) pairs, the boundary pair
/// counted by the part of its weight that fits.
fn weighted_tail_mean(sorted: impl Iterator<Item = (f64, f64)>, total: f64, pct: f64) -> f64 {
    if total <= 0.0 || pct <= 0.0 {
        return f64::NAN;
    }
    let m = (pct.min(100.0) / 100.0) * total;
    let (mut left, mut s) = (m, 0.0);
    for (d, w) in sorted {
        if left <= 0.0 {
            break;
        }
        let take = w.min(left);
        s += if take == w { w * d } else { take * d };
        left -= take;
    }
    s / m
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
    fn equal_weights_give_the_plain_metrics_to_the_bit() {
        // Doses with ties, a zero and an irregular order.
        let d: Vec<f64> = (0..37).map(|i| ((i * 7919) % 23) as f64 * 1.37).collect();
        let w = WeightedDoses::uniform(&d);
        assert_eq!(w, WeightedDoses::new(&d, &vec![1.0; d.len()]));
        // The same bits (NaN for a 0 % CVaR on both sides).
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for x in 0..=100 {
            let x = x as f64 + 0.25 * (x % 4) as f64;
            assert!(same(w.dose_at_volume(x), dose_at_volume(&d, x)), "D{x}");
            assert!(same(w.upper_cvar(x), upper_cvar(&d, x)), "upper CVaR {x}");
            assert!(same(w.lower_cvar(x), lower_cvar(&d, x)), "lower CVaR {x}");
            assert!(same(w.volume_at_dose(x / 3.0), volume_at_dose(&d, x / 3.0)));
        }
        assert_eq!(w.mean(), mean(&d));
        assert_eq!((w.min(), w.max()), (min(&d), max(&d)));
        assert_eq!(w.cumulative(0.5), cumulative_dvh(&d, 0.5));
        assert_eq!(w.stats(), stats(&d));
        let e = WeightedDoses::uniform(&[]);
        assert!(e.dose_at_volume(50.0).is_nan() && e.mean().is_nan() && e.max().is_nan());
    }

    #[test]
    fn weighted_metrics_of_a_hand_made_case() {
        // Four voxels 10, 8, 6, 4 Gy occupied by 0.5, 1, 1, 0.5: 3 voxels of volume in all.
        let w = WeightedDoses::new(&[6.0, 10.0, 4.0, 8.0], &[1.0, 0.5, 0.5, 1.0]);
        assert_eq!(w.total_weight(), 3.0);
        // Hottest 10 % = 0.3 voxel: within the 10 Gy half voxel. 20 % = 0.6: reaches into the
        // 8 Gy voxel. 50 % = 1.5 exactly the 10 + 8 Gy voxels. 90 % = 2.7 needs the 4 Gy one.
        for (x, dx) in [
            (0.0, 10.0),
            (10.0, 10.0),
            (20.0, 8.0),
            (50.0, 8.0),
            (60.0, 6.0),
        ] {
            assert_eq!(w.dose_at_volume(x), dx, "D{x}");
        }
        assert_eq!(w.dose_at_volume(90.0), 4.0);
        assert_eq!(w.dose_at_volume(100.0), 4.0);
        assert!((w.volume_at_dose(8.0) - 50.0).abs() < 1e-12);
        assert!((w.volume_at_dose(5.0) - 250.0 / 3.0).abs() < 1e-12);
        assert_eq!(w.volume_at_dose(4.0), 100.0);
        assert_eq!(w.mean(), 7.0); // (5 + 8 + 6 + 2) / 3
        assert!((w.upper_cvar(50.0) - 13.0 / 1.5).abs() < 1e-12); // (0.5 x 10 + 8) / 1.5
        assert!((w.lower_cvar(50.0) - 8.0 / 1.5).abs() < 1e-12); // (0.5 x 4 + 6) / 1.5
        let v: Vec<f64> = w.cumulative(2.0).iter().map(|p| p.volume_pct).collect();
        let expect = [100.0, 100.0, 100.0, 250.0 / 3.0, 50.0, 50.0 / 3.0, 0.0];
        assert_eq!(v.len(), expect.len());
        for (a, b) in v.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12, "{v:?}");
        }
        // A voxel of weight 0 is not part of the structure: not its minimum.
        let z = WeightedDoses::new(&[6.0, 1.0], &[1.0, 0.0]);
        assert_eq!((z.len(), z.min()), (1, 6.0));
    }

    #[test]
    fn weights_act_as_split_voxels() {
        // Weights in quarters: the same as the plain DVH of each voxel split into that many
        // quarter voxels of the same dose.
        let d = [12.0, 3.0, 7.5, 9.0, 1.0, 7.5, 4.0];
        let q = [4u8, 1, 3, 2, 4, 1, 2];
        let w: Vec<f32> = q.iter().map(|&k| k as f32 / 4.0).collect();
        let split: Vec<f64> = d
            .iter()
            .zip(&q)
            .flat_map(|(&x, &k)| std::iter::repeat_n(x, k as usize))
            .collect();
        let wd = WeightedDoses::new(&d, &w);
        for x in [
            0.0, 2.0, 5.0, 10.0, 33.3, 50.0, 64.0, 90.0, 95.0, 98.0, 100.0,
        ] {
            assert_eq!(wd.dose_at_volume(x), dose_at_volume(&split, x), "D{x}");
            assert!((wd.upper_cvar(x.max(1.0)) - upper_cvar(&split, x.max(1.0))).abs() < 1e-12);
        }
        assert!((wd.mean() - mean(&split)).abs() < 1e-12);
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
