//! Generalised equivalent uniform dose (Niemierko, Med Phys 26:1100, 1999) as a convex
//! objective: `w * gEUD_a(d) = w (1/N sum_v w_v d_v^a)^(1/a)`, `a >= 1`. With `a = 1` it is
//! the mean dose (linear); with `a > 1` a power mean, stated through power cones (Clarabel;
//! the interior-point backend hands such a problem to Clarabel and says so).

use serde::{Deserialize, Serialize};

use super::{trim, Evaluation, FieldError, GoalTerm, Limit, Terms};
use crate::dvh::WeightedDoses;

/// `type = "eud"`: objective `w * gEUD_a`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eud {
    pub a: f64,
    pub weight: f64,
}

impl GoalTerm for Eud {
    fn type_name(&self) -> &'static str {
        "eud"
    }

    fn describe(&self) -> String {
        format!("gEUD a = {} (weight {})", trim(self.a), trim(self.weight))
    }

    fn metric(&self) -> String {
        "gEUD".into()
    }

    fn limit(&self) -> Option<Limit> {
        None
    }

    weight_field!();

    fn validate(&self) -> Result<(), FieldError> {
        if !(self.a.is_finite() && self.a >= 1.0) {
            return Err(("a", "gEUD needs a >= 1 to stay convex".into()));
        }
        Ok(())
    }

    fn evaluate(&self, d: &WeightedDoses) -> Evaluation {
        let e = d.mean_of(|x| x.max(0.0).powf(self.a)).powf(1.0 / self.a);
        Evaluation {
            achieved_gy: e,
            objective_value: Some(self.weight * e),
            cvar_gy: None,
        }
    }

    fn formulate(&self, t: &mut Terms) {
        if self.a == 1.0 {
            t.dose_sum(self.weight / t.total_weight());
        } else {
            // N^(-1/a) (sum_v w_v d_v^a)^(1/a) = (1/N sum_v w_v d_v^a)^(1/a).
            let cost = self.weight * t.total_weight().powf(-1.0 / self.a);
            t.power_mean(self.a, cost);
        }
    }

    clone_box!();
}
