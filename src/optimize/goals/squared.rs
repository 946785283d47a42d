//! Squared-dose objectives: `w/N sum_v w_v max(D - d_v, 0)^2` (underdose),
//! `w/N sum_v w_v max(d_v - D, 0)^2` (overdose) and `w/N sum_v w_v (d_v - D)^2` (deviation),
//! matRad's squared under-/overdosing and squared deviation (Wieser et al., Med Phys 44:e313,
//! 2017). Deviation expands into the dense quadratic `w/N (sum w d^2 - 2 D sum w d) + w D^2`
//! (its Gram block is cached per goal); the one-sided terms are per-voxel hinges `u_v` with
//! `u_v >= s (d_v - D)`, whose squares the solvers penalise.

use serde::{Deserialize, Serialize};

use super::{gy, trim, Candidates, Evaluation, GoalTerm, Hinge, Limit, Terms};
use crate::dvh::WeightedDoses;

/// A one-sided squared penalty; `UPPER`: overdose (above `dose_gy`), else underdose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneSided<const UPPER: bool> {
    pub dose_gy: f64,
    pub weight: f64,
}

/// `type = "underdose"`: squared dose below `dose_gy`.
pub type Underdose = OneSided<false>;
/// `type = "overdose"`: squared dose above `dose_gy`.
pub type Overdose = OneSided<true>;

impl<const UPPER: bool> OneSided<UPPER> {
    fn side(&self) -> Limit {
        Limit::from_upper(UPPER)
    }
}

impl<const UPPER: bool> GoalTerm for OneSided<UPPER> {
    fn type_name(&self) -> &'static str {
        if UPPER {
            "overdose"
        } else {
            "underdose"
        }
    }

    fn describe(&self) -> String {
        let which = if UPPER {
            "overdose above"
        } else {
            "underdose below"
        };
        format!(
            "squared {which} {} (weight {})",
            gy(self.dose_gy),
            trim(self.weight)
        )
    }

    fn metric(&self) -> String {
        if UPPER { "max" } else { "min" }.into()
    }

    fn limit(&self) -> Option<Limit> {
        None
    }

    weight_field!();

    dose_field!();

    fn evaluate(&self, d: &WeightedDoses) -> Evaluation {
        let s = self.side().sign();
        let v = d.mean_of(|x| (s * (x - self.dose_gy)).max(0.0).powi(2));
        Evaluation {
            achieved_gy: if UPPER { d.max() } else { d.min() },
            objective_value: Some(self.weight * v),
            cvar_gy: None,
        }
    }

    fn candidates(&self) -> Candidates {
        Candidates::Threshold {
            limit: self.side(),
            dose_gy: Some(self.dose_gy),
        }
    }

    fn formulate(&self, t: &mut Terms) {
        let s = self.side().sign();
        let hessian = 2.0 * self.weight / t.total_weight();
        t.voxels(
            s,
            s * self.dose_gy,
            vec![],
            Hinge::Squared { hessian },
            false,
        );
    }

    clone_box!();
}

/// `type = "deviation"`: squared deviation from `dose_gy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    pub dose_gy: f64,
    pub weight: f64,
}

impl GoalTerm for Deviation {
    fn type_name(&self) -> &'static str {
        "deviation"
    }

    fn describe(&self) -> String {
        format!(
            "squared deviation from {} (weight {})",
            gy(self.dose_gy),
            trim(self.weight)
        )
    }

    fn metric(&self) -> String {
        "mean".into()
    }

    fn limit(&self) -> Option<Limit> {
        None
    }

    weight_field!();

    dose_field!();

    fn evaluate(&self, d: &WeightedDoses) -> Evaluation {
        let v = d.mean_of(|x| (x - self.dose_gy).powi(2));
        Evaluation {
            achieved_gy: d.mean(),
            objective_value: Some(self.weight * v),
            cvar_gy: None,
        }
    }

    fn formulate(&self, t: &mut Terms) {
        let (w, dd, n) = (self.weight, self.dose_gy, t.total_weight());
        t.dose_squared(w / n);
        t.dose_sum(-2.0 * w * dd / n);
        t.constant(w * dd * dd);
    }

    clone_box!();
}
