//! Plan acceptance: the limits beyond which a finished plan is refused as implausible
//! (MU per beam and per fraction, the deliverable normalisation factor, the deliverable's
//! gamma agreement with the optimised dose, the dose per fraction of the prescription).

use crate::error::{Error, Result};
use crate::machine::MachineModel;

/// When a finished plan is refused as implausible ([`Error::Implausible`], exit 4), so no
/// clinic-implausible plan is exported as a success. Limits and their sources are in
/// `docs/reliability.md`; every one can be overridden (`rtopt plan --max-mu-per-beam`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanAcceptance {
    /// Largest meterset of one beam per fraction, MU (default: the machine file's).
    pub max_mu_per_beam: Option<f64>,
    /// Largest total meterset per fraction, MU (default: the machine file's).
    pub max_mu_per_fraction: Option<f64>,
    /// Largest prescription dose per fraction, Gy; checked before any computation.
    pub max_dose_per_fraction_gy: f64,
    /// Accepted range of the deliverable MU normalisation factor `[low, high]`.
    pub normalization_band: [f64; 2],
    /// Smallest 3 %/2 mm gamma pass rate of the deliverable against the optimised dose, %.
    pub min_gamma_pass_percent: f64,
}

/// Default of [`PlanAcceptance::max_dose_per_fraction_gy`]: 34 Gy, the largest single-fraction
/// prescription of a published external-beam protocol (RTOG 0915 lung SBRT, 34 Gy x 1;
/// Videtic et al., IJROBP 93:757, 2015).
pub const DEFAULT_MAX_DOSE_PER_FRACTION_GY: f64 = 34.0;

/// Default of [`PlanAcceptance::min_gamma_pass_percent`]: 90 %, the action limit of AAPM
/// TG-218 for 3 %/2 mm gamma (Miften et al., Med Phys 45:e53, 2018).
pub const DEFAULT_MIN_GAMMA_PASS_PERCENT: f64 = 90.0;

impl Default for PlanAcceptance {
    fn default() -> Self {
        PlanAcceptance {
            max_mu_per_beam: None,
            max_mu_per_fraction: None,
            max_dose_per_fraction_gy: DEFAULT_MAX_DOSE_PER_FRACTION_GY,
            normalization_band: [0.90, 1.10],
            min_gamma_pass_percent: DEFAULT_MIN_GAMMA_PASS_PERCENT,
        }
    }
}

impl PlanAcceptance {
    /// Check the limits themselves (positive, finite, an ordered band around 1).
    pub fn validate(&self) -> Result<()> {
        let pos = |v: f64, what: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "{what} must be a positive number, got {v}"
                )))
            }
        };
        if let Some(v) = self.max_mu_per_beam {
            pos(v, "maximum MU per beam")?;
        }
        if let Some(v) = self.max_mu_per_fraction {
            pos(v, "maximum MU per fraction")?;
        }
        pos(self.max_dose_per_fraction_gy, "maximum dose per fraction")?;
        let [lo, hi] = self.normalization_band;
        if !(lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= 1.0 && 1.0 <= hi) {
            return Err(Error::Invalid(format!(
                "normalisation band [{lo}, {hi}] must satisfy 0 < low <= 1 <= high"
            )));
        }
        if !(0.0..=100.0).contains(&self.min_gamma_pass_percent) {
            return Err(Error::Invalid(format!(
                "minimum gamma pass rate {} % must lie in [0, 100]",
                self.min_gamma_pass_percent
            )));
        }
        Ok(())
    }

    /// Reasons why a finished plan is implausible (empty: acceptable).
    pub fn check_plan(&self, machine: &MachineModel, plan: &PlanFigures) -> Vec<String> {
        let mut reasons = Vec::new();
        let per_beam = self.max_mu_per_beam.unwrap_or(machine.max_mu_per_beam);
        for (label, mu) in &plan.beam_mu {
            if !(mu.is_finite() && *mu <= per_beam) {
                reasons.push(format!(
                    "{label} needs {mu:.1} MU per fraction, above the limit of {per_beam:.0} MU per beam (--max-mu-per-beam)"
                ));
            }
        }
        let per_fraction = self
            .max_mu_per_fraction
            .unwrap_or(machine.max_mu_per_fraction);
        let total: f64 = plan.beam_mu.iter().map(|b| b.1).sum();
        if !(total.is_finite() && total <= per_fraction) {
            reasons.push(format!(
                "the plan needs {total:.1} MU per fraction, above the limit of {per_fraction:.0} MU (--max-mu-per-fraction)"
            ));
        }
        let [lo, hi] = self.normalization_band;
        let f = plan.mu_scale;
        if !(f.is_finite() && lo <= f && f <= hi) {
            reasons.push(format!(
                "the deliverable plan had to be rescaled by x{f:.4} to reach the prescription, outside the accepted band [{lo}, {hi}] (--normalisation-band): the optimised dose is far from the delivered one"
            ));
        }
        let g = plan.gamma_pass_percent;
        if g.is_nan() || g < self.min_gamma_pass_percent {
            reasons.push(format!(
                "the deliverable dose agrees with the optimised dose at a 3 %/2 mm gamma pass rate of {g:.1} %, below {:.1} % (--min-gamma-pass)",
                self.min_gamma_pass_percent
            ));
        }
        reasons
    }
}

/// The figures of a finished plan that [`PlanAcceptance::check_plan`] judges.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanFigures {
    /// Per beam: a label (`beam 1 (G000)`) and its meterset, MU per fraction.
    pub beam_mu: Vec<(String, f64)>,
    /// Factor applied to the deliverable MU to reach the prescription.
    pub mu_scale: f64,
    /// 3 %/2 mm gamma pass rate of the deliverable against the optimised dose, %.
    pub gamma_pass_percent: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(beam_mu: &[f64], mu_scale: f64, gamma: f64) -> PlanFigures {
        PlanFigures {
            beam_mu: beam_mu
                .iter()
                .enumerate()
                .map(|(i, &m)| (format!("beam {}", i + 1), m))
                .collect(),
            mu_scale,
            gamma_pass_percent: gamma,
        }
    }

    #[test]
    fn acceptance_names_each_implausible_figure() {
        let m = MachineModel::default_6x();
        let a = PlanAcceptance::default();
        // The shipped TG119 plan: about 240 MU per beam, x1.04, 97.4 %.
        assert!(a
            .check_plan(&m, &figures(&[240.0; 9], 1.04, 97.4))
            .is_empty());
        let r = a.check_plan(&m, &figures(&[1e5, 10.0], 88.0, 0.0));
        assert_eq!(r.len(), 4, "{r:?}");
        assert!(
            r[0].contains("beam 1") && r[0].contains("100000.0 MU"),
            "{}",
            r[0]
        );
        assert!(r[1].contains("100010.0 MU per fraction"), "{}", r[1]);
        assert!(
            r[2].contains("x88.0000") && r[2].contains("[0.9, 1.1]"),
            "{}",
            r[2]
        );
        assert!(
            r[3].contains("0.0 %") && r[3].contains("90.0 %"),
            "{}",
            r[3]
        );
        // NaN is never plausible; overrides move the limits.
        let r = a.check_plan(&m, &figures(&[f64::NAN], 1.0, f64::NAN));
        assert_eq!(r.len(), 3, "{r:?}");
        let loose = PlanAcceptance {
            max_mu_per_beam: Some(2e5),
            max_mu_per_fraction: Some(3e5),
            normalization_band: [0.01, 100.0],
            min_gamma_pass_percent: 0.0,
            ..PlanAcceptance::default()
        };
        assert!(loose
            .check_plan(&m, &figures(&[1e5, 10.0], 88.0, 0.0))
            .is_empty());
        assert!(PlanAcceptance {
            normalization_band: [1.1, 0.9],
            ..PlanAcceptance::default()
        }
        .validate()
        .is_err());
    }
}
