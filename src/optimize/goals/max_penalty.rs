//! The maximum-dose penalty `w * max_v d_v`, through an epigraph variable `z >= d_v` for every
//! voxel (whole voxels: the voxels whose centre lies inside).

use serde::{Deserialize, Serialize};

use super::{trim, Candidates, Evaluation, GoalTerm, Hinge, Limit, Terms};
use crate::dvh::WeightedDoses;

/// `type = "max_penalty"`: objective `w * max(d)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPenalty {
    pub weight: f64,
}

impl GoalTerm for MaxPenalty {
    fn type_name(&self) -> &'static str {
        "max_penalty"
    }

    fn describe(&self) -> String {
        format!("maximum dose penalty (weight {})", trim(self.weight))
    }

    fn metric(&self) -> String {
        "max".into()
    }

    fn limit(&self) -> Option<Limit> {
        None
    }

    weight_field!();

    fn is_volume_weighted(&self) -> bool {
        false
    }

    fn evaluate(&self, d: &WeightedDoses) -> Evaluation {
        let m = d.max();
        Evaluation {
            achieved_gy: m,
            objective_value: Some(self.weight * m),
            cvar_gy: None,
        }
    }

    fn candidates(&self) -> Candidates {
        Candidates::Threshold {
            limit: Limit::Upper,
            dose_gy: None,
        }
    }

    fn formulate(&self, t: &mut Terms) {
        let z = t.variable(self.weight, true, t.prescription_gy());
        t.voxels(1.0, 0.0, vec![(z, -1.0)], Hinge::None, false);
    }

    clone_box!();
}
