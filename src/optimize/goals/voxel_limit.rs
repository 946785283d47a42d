//! Limits on every voxel: `d_v <= D` (max dose) and `d_v >= D` (min dose), on whole voxels
//! (those whose centre lies inside the structure, so that a boundary voxel shared by a target
//! and an organ does not carry both limits).

use serde::{Deserialize, Serialize};

use super::{gy, Candidates, Evaluation, GoalTerm, Hinge, Limit, Mode, Terms};
use crate::dvh::WeightedDoses;

/// A limit on every voxel; `UPPER`: `d_v <= dose_gy`, else `d_v >= dose_gy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoxelLimit<const UPPER: bool> {
    pub dose_gy: f64,
    #[serde(default)]
    pub mode: Mode,
}

/// `type = "max_dose"`.
pub type MaxDose = VoxelLimit<true>;
/// `type = "min_dose"`.
pub type MinDose = VoxelLimit<false>;

impl<const UPPER: bool> VoxelLimit<UPPER> {
    fn side(&self) -> Limit {
        Limit::from_upper(UPPER)
    }
}

impl<const UPPER: bool> GoalTerm for VoxelLimit<UPPER> {
    fn type_name(&self) -> &'static str {
        if UPPER {
            "max_dose"
        } else {
            "min_dose"
        }
    }

    fn describe(&self) -> String {
        if UPPER {
            format!("max dose <= {}", gy(self.dose_gy))
        } else {
            format!("min dose >= {}", gy(self.dose_gy))
        }
    }

    fn metric(&self) -> String {
        if UPPER { "max" } else { "min" }.into()
    }

    limit_of_upper!();

    dose_field!();

    fn is_volume_weighted(&self) -> bool {
        false
    }

    fn evaluate(&self, d: &WeightedDoses) -> Evaluation {
        Evaluation {
            achieved_gy: if UPPER { d.max() } else { d.min() },
            objective_value: None,
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
        t.voxels(s, s * self.dose_gy, vec![], Hinge::None, true);
    }

    clone_box!();
}
