//! DVH limits `D_x <= D` ("at most x % above D") and `D_x >= D` ("at least x % at or above
//! D"), enforced conservatively through the conditional value at risk (Rockafellar & Uryasev,
//! J Risk 2:21, 2000; Romeijn et al., PMB 48:3521, 2003): the mean of the hottest `x` % is
//! held below `D` (upper), the mean of the coldest `100 - x` % above `D` (lower). With
//! `p` the tail fraction and `t` the value at risk:
//!
//! ```text
//! upper:  t + 1/(pN) sum_v w_v u_v <= D,   u_v >= d_v - t,  u_v >= 0
//! lower:  t - 1/(pN) sum_v w_v u_v >= D,   u_v >= t - d_v,  u_v >= 0
//! ```
//!
//! The goal is judged on the exact `D_x` (sorting the weighted doses); the CVaR is reported
//! beside it, and the interior-point backend's exact check holds both to the limit.

use serde::{Deserialize, Serialize};

use super::{gy, trim, Candidates, Evaluation, FieldError, GoalTerm, Hinge, Limit, Mode, Terms};
use crate::dvh::WeightedDoses;

/// A DVH limit; `UPPER`: `D_volume_pct <= dose_gy`, else `>=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DvhLimit<const UPPER: bool> {
    pub dose_gy: f64,
    pub volume_pct: f64,
    #[serde(default)]
    pub mode: Mode,
}

/// `type = "dvh_max"`.
pub type DvhMax = DvhLimit<true>;
/// `type = "dvh_min"`.
pub type DvhMin = DvhLimit<false>;

impl<const UPPER: bool> DvhLimit<UPPER> {
    fn side(&self) -> Limit {
        Limit::from_upper(UPPER)
    }

    /// The CVaR tail as a fraction of the volume.
    fn tail_fraction(&self) -> f64 {
        if UPPER {
            self.volume_pct / 100.0
        } else {
            1.0 - self.volume_pct / 100.0
        }
    }
}

impl<const UPPER: bool> GoalTerm for DvhLimit<UPPER> {
    fn type_name(&self) -> &'static str {
        if UPPER {
            "dvh_max"
        } else {
            "dvh_min"
        }
    }

    fn describe(&self) -> String {
        let op = if UPPER { "<=" } else { ">=" };
        format!("D{} {op} {}", trim(self.volume_pct), gy(self.dose_gy))
    }

    fn metric(&self) -> String {
        format!("D{}", self.volume_pct)
    }

    limit_of_upper!();

    dose_field!();

    fn validate(&self) -> Result<(), FieldError> {
        if !(self.volume_pct > 0.0 && self.volume_pct < 100.0) {
            return Err(("volume_pct", "must lie strictly between 0 and 100".into()));
        }
        Ok(())
    }

    fn evaluate(&self, d: &WeightedDoses) -> Evaluation {
        let cvar = if UPPER {
            d.upper_cvar(self.volume_pct)
        } else {
            d.lower_cvar(100.0 - self.volume_pct)
        };
        Evaluation {
            achieved_gy: d.dose_at_volume(self.volume_pct),
            objective_value: None,
            cvar_gy: Some(cvar),
        }
    }

    fn candidates(&self) -> Candidates {
        Candidates::Tail {
            limit: self.side(),
            fraction: self.tail_fraction(),
        }
    }

    fn formulate(&self, t: &mut Terms) {
        let s = self.side().sign();
        let beta = 1.0 / (self.tail_fraction() * t.total_weight());
        let var = t.variable(0.0, false, self.dose_gy);
        let excess = t.voxels(s, 0.0, vec![(var, -s)], Hinge::Excess, false);
        t.tail(excess, beta, vec![(var, s)], s * self.dose_gy, true);
    }

    clone_box!();
}
