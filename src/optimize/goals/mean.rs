//! Mean-dose goals: the linear objective `w * mean(d)` and the limits `mean(d) <= D`,
//! `mean(d) >= D`, with `mean(d) = 1/N sum_v w_v d_v` (one dense row in the beamlets).

use serde::{Deserialize, Serialize};

use super::{gy, trim, Evaluation, GoalTerm, Limit, Mode, Terms};
use crate::dvh::WeightedDoses;

/// `type = "mean_dose"`: objective `w * mean(d)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanDose {
    pub weight: f64,
}

impl GoalTerm for MeanDose {
    fn type_name(&self) -> &'static str {
        "mean_dose"
    }

    fn describe(&self) -> String {
        format!("mean dose (weight {})", trim(self.weight))
    }

    fn metric(&self) -> String {
        "mean".into()
    }

    fn limit(&self) -> Option<Limit> {
        None
    }

    weight_field!();

    fn evaluate(&self, d: &WeightedDoses) -> Evaluation {
        let m = d.mean();
        Evaluation {
            achieved_gy: m,
            objective_value: Some(self.weight * m),
            cvar_gy: None,
        }
    }

    fn formulate(&self, t: &mut Terms) {
        t.dose_sum(self.weight / t.total_weight());
    }

    clone_box!();
}

/// A limit on the mean dose; `UPPER`: `mean(d) <= dose_gy`, else `>=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanLimit<const UPPER: bool> {
    pub dose_gy: f64,
    #[serde(default)]
    pub mode: Mode,
}

/// `type = "mean_max"`: `mean(d) <= dose_gy`.
pub type MeanMax = MeanLimit<true>;
/// `type = "mean_min"`: `mean(d) >= dose_gy`.
pub type MeanMin = MeanLimit<false>;

impl<const UPPER: bool> GoalTerm for MeanLimit<UPPER> {
    fn type_name(&self) -> &'static str {
        if UPPER {
            "mean_max"
        } else {
            "mean_min"
        }
    }

    fn describe(&self) -> String {
        let op = if UPPER { "<=" } else { ">=" };
        format!("mean dose {op} {}", gy(self.dose_gy))
    }

    fn metric(&self) -> String {
        "mean".into()
    }

    limit_of_upper!();

    dose_field!();

    fn evaluate(&self, d: &WeightedDoses) -> Evaluation {
        Evaluation {
            achieved_gy: d.mean(),
            objective_value: None,
            cvar_gy: None,
        }
    }

    fn formulate(&self, t: &mut Terms) {
        let s = if UPPER { 1.0 } else { -1.0 };
        t.sum(s / t.total_weight(), vec![], s * self.dose_gy, true);
    }

    clone_box!();
}
