//! Adding a goal type is local (issue 16, "goals as units"): a soft mean-dose limit,
//! `w * max(mean(d) - D, 0)`, written here in the test crate against the public
//! [`GoalTerm`] trait and nowhere in the library, is solved by both backends on the synthetic
//! C-shape. Both must reach the same optimum (1e-5 relative), the interior-point method
//! natively (no hand-over to Clarabel), and the goal must do what it says: push the Core's
//! mean dose down to its limit as its weight grows.

use std::path::Path;

use rtopt::dvh::WeightedDoses;
use rtopt::optimize::goals::{Evaluation, GoalKind, GoalTerm, Limit, Terms};
use rtopt::optimize::synthetic::{c_shape, SyntheticCase};
use rtopt::optimize::{
    Backend, Goal, GoalRole, OptimizationResult, OptimizeOptions, PlanningProblem, Protocol,
};

/// `w * max(mean(d) - D, 0)`: linear above the limit, free below it. One scalar variable
/// `e >= 0` (cost `w`) and one row `1/N sum_v w_v d_v - e <= D`.
#[derive(Debug, Clone)]
struct SoftMeanBelow {
    dose_gy: f64,
    weight: f64,
}

impl GoalTerm for SoftMeanBelow {
    fn type_name(&self) -> &'static str {
        "soft_mean_below"
    }
    fn describe(&self) -> String {
        format!(
            "mean dose above {} Gy (weight {})",
            self.dose_gy, self.weight
        )
    }
    fn metric(&self) -> String {
        "mean".into()
    }
    fn limit(&self) -> Option<Limit> {
        None
    }
    fn weight(&self) -> Option<f64> {
        Some(self.weight)
    }
    fn weight_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight)
    }
    fn dose_gy(&self) -> Option<f64> {
        Some(self.dose_gy)
    }
    fn dose_gy_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.dose_gy)
    }
    fn evaluate(&self, d: &WeightedDoses) -> Evaluation {
        let m = d.mean();
        Evaluation {
            achieved_gy: m,
            objective_value: Some(self.weight * (m - self.dose_gy).max(0.0)),
            cvar_gy: None,
        }
    }
    fn formulate(&self, t: &mut Terms) {
        let excess = t.variable(self.weight, true, 1.0);
        t.sum(
            1.0 / t.total_weight(),
            vec![(excess, -1.0)],
            self.dose_gy,
            false,
        );
    }
    fn clone_box(&self) -> Box<dyn GoalTerm> {
        Box::new(self.clone())
    }
}

const PROTOCOL: &str = r#"
[prescription]
total_dose_gy = 50
fractions = 30
target = "OuterTarget"

[[structure]]
name = "OuterTarget"
goals = [{ type = "deviation", dose_gy = 50, weight = 1000 }]

[[structure]]
name = "BODY"
goals = [{ type = "overdose", dose_gy = 30, weight = 100, exclude = ["OuterTarget"] }]

[[structure]]
name = "Core"
goals = []
"#;

fn protocol(core_goal: Option<SoftMeanBelow>) -> Protocol {
    let mut p = Protocol::from_toml_str(PROTOCOL, Path::new("plugin.toml")).unwrap();
    if let Some(g) = core_goal {
        let core = p.structures.iter_mut().find(|s| s.name == "Core").unwrap();
        core.goals.push(Goal {
            kind: GoalKind::custom(g),
            exclude: vec![],
        });
    }
    p
}

fn solve(case: &SyntheticCase, p: &Protocol, backend: Backend) -> OptimizationResult {
    let pb = PlanningProblem::new(
        &case.matrix,
        &case.dose_grid,
        &case.beams,
        &case.structures,
        p,
    )
    .unwrap();
    pb.solve(&OptimizeOptions {
        backend,
        tolerance: 1e-8,
        ..Default::default()
    })
    .unwrap()
}

/// The Core's mean dose (partial-volume weights, as the goal sees it), Gy.
fn core_mean(case: &SyntheticCase, r: &OptimizationResult) -> f64 {
    let s = case.structures.iter().find(|s| s.name == "Core").unwrap();
    let d: Vec<f64> = s
        .weighted
        .rows
        .iter()
        .map(|&v| r.dose_gy[v as usize])
        .collect();
    WeightedDoses::new(&d, &s.weighted.weights).mean()
}

#[test]
fn a_goal_type_from_the_test_crate_is_solved_by_both_backends() {
    let case = c_shape(30, 6, 5, 6.0);
    let free = solve(&case, &protocol(None), Backend::Ipm);
    let free_mean = core_mean(&case, &free);
    // A limit 20 % below the Core's mean without the goal, so that the goal binds.
    let limit = 0.8 * free_mean;
    let goal = SoftMeanBelow {
        dose_gy: limit,
        weight: 5.0,
    };
    let p = protocol(Some(goal.clone()));
    // Written (report, Python dict) by its name and description; not read back.
    let json = serde_json::to_value(&p).unwrap();
    let core_goal = &json["structure"][2]["goals"][0];
    assert_eq!(core_goal["type"], "custom");
    assert_eq!(core_goal["name"], "soft_mean_below");
    assert_eq!(core_goal["description"], goal.describe());
    assert!(serde_json::from_value::<Protocol>(json).is_err());
    let ipm = solve(&case, &p, Backend::Ipm);
    let cla = solve(&case, &p, Backend::Clarabel);
    assert!(
        ipm.status.starts_with("Solved") && !ipm.status.contains("Clarabel"),
        "the interior-point method must solve the new goal itself: {}",
        ipm.status
    );
    let obj = |r: &OptimizationResult| r.goals.iter().filter_map(|g| g.objective_value).sum();
    let (oi, oc): (f64, f64) = (obj(&ipm), obj(&cla));
    let rel = (oi - oc) / oc.abs();
    assert!(rel.abs() <= 1e-5, "IPM {oi} vs Clarabel {oc} ({rel:.2e})");

    // The goal's row in the table is its own evaluation on the dose, recomputed here.
    let row = ipm
        .goals
        .iter()
        .find(|g| g.structure == "Core")
        .expect("Core goal in the table");
    assert_eq!(row.role, GoalRole::Objective);
    assert_eq!(row.description, goal.describe());
    let mean = core_mean(&case, &ipm);
    assert!(
        (row.achieved_gy - mean).abs() <= 1e-9 * mean,
        "{row:?} vs {mean}"
    );
    let expected = goal.weight * (mean - limit).max(0.0);
    assert!(
        (row.objective_value.unwrap() - expected).abs() <= 1e-9 * expected.max(1.0),
        "{row:?}: expected {expected}"
    );
    // It steers: the Core's mean drops towards the limit, and further with a larger weight.
    assert!(
        mean < free_mean - 0.05 * (free_mean - limit),
        "{mean} vs {free_mean}"
    );
    let heavy = solve(
        &case,
        &protocol(Some(SoftMeanBelow {
            weight: 500.0,
            ..goal
        })),
        Backend::Ipm,
    );
    let heavy_mean = core_mean(&case, &heavy);
    println!(
        "Core mean: {free_mean:.4} Gy without the goal, limit {limit:.4} Gy, {mean:.4} Gy at weight 5, {heavy_mean:.4} Gy at weight 500; objective IPM {oi:.9}, Clarabel {oc:.9}"
    );
    assert!(
        heavy_mean < mean && heavy_mean <= limit * (1.0 + 1e-4),
        "weight 500: mean {heavy_mean} Gy, weight 5: {mean} Gy, limit {limit} Gy"
    );
}
