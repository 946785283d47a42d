//! Goals as units: one module per goal family, each owning its description, its evaluation
//! on a dose and its formulation, stated once in the backend-neutral vocabulary of
//! [`Terms`] that both solvers translate (the interior-point model in `ipm/model.rs`, the
//! conic problem of Clarabel in `clarabel.rs`) and the exported problem carries for the
//! CVXPY peer (`benches/peer/peer.py`).
//!
//! | family | module | goal types |
//! |---|---|---|
//! | squared dose | [`squared`] | `underdose`, `overdose`, `deviation` |
//! | mean dose | [`mean`] | `mean_dose`, `mean_max`, `mean_min` |
//! | generalised EUD | [`eud`] | `eud` |
//! | maximum penalty | [`max_penalty`] | `max_penalty` |
//! | voxel limits | [`voxel_limit`] | `max_dose`, `min_dose` |
//! | DVH limits (CVaR) | [`dvh`] | `dvh_max`, `dvh_min` |
//!
//! A new goal type is one file implementing [`GoalTerm`] plus one line in the
//! `goal_kinds!` list below (its protocol name comes from the variant name). A goal the
//! library does not ship can also be handed to [`super::PlanningProblem`] through
//! [`GoalKind::Custom`] without touching the library: `tests/goal_plugin.rs` adds a soft
//! mean-dose limit that way and solves it with both backends.
//!
//! Doses are **total** doses (Gy over the course); a goal never sees the influence matrix or
//! the number of fractions, only the doses `d_v` of its voxels and their weights `w_v` (the
//! occupied fraction of each voxel, or 1), with `N = sum_v w_v`.

/// `weight` and `weight_mut` of a goal struct with a `weight: f64` field.
macro_rules! weight_field {
    () => {
        fn weight(&self) -> Option<f64> {
            Some(self.weight)
        }
        fn weight_mut(&mut self) -> Option<&mut f64> {
            Some(&mut self.weight)
        }
    };
}

/// `dose_gy` and `dose_gy_mut` of a goal struct with a `dose_gy: f64` field.
macro_rules! dose_field {
    () => {
        fn dose_gy(&self) -> Option<f64> {
            Some(self.dose_gy)
        }
        fn dose_gy_mut(&mut self) -> Option<&mut f64> {
            Some(&mut self.dose_gy)
        }
    };
}

/// `limit` and `mode` of a limit struct generic over `const UPPER: bool` with a `mode` field.
macro_rules! limit_of_upper {
    () => {
        fn limit(&self) -> Option<Limit> {
            Some(Limit::from_upper(UPPER))
        }
        fn mode(&self) -> Mode {
            self.mode
        }
    };
}

/// `clone_box` of a `Clone` goal struct.
macro_rules! clone_box {
    () => {
        fn clone_box(&self) -> Box<dyn GoalTerm> {
            Box::new(self.clone())
        }
    };
}

pub mod dvh;
pub mod eud;
pub mod max_penalty;
pub mod mean;
pub mod squared;
pub mod terms;
pub mod voxel_limit;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use terms::{Hinge, Part, PartId, Terms, VarId};

use crate::dvh::WeightedDoses;

/// Whether a constraint-type goal is enforced or only evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Enforced as a hard constraint (or a heavy penalty with `relax`).
    #[default]
    Hard,
    /// Only evaluated on the final dose and reported (exact DVH, no CVaR).
    Report,
}

/// The direction of a limit: the dose statistic must stay below (`Upper`) or above
/// (`Lower`) the goal's dose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Upper,
    Lower,
}

impl Limit {
    /// `Upper` when `upper`, else `Lower`.
    pub const fn from_upper(upper: bool) -> Limit {
        if upper {
            Limit::Upper
        } else {
            Limit::Lower
        }
    }

    /// `+1` for an upper limit, `-1` for a lower one: rows are written `sign * d <= sign * D`.
    pub fn sign(self) -> f64 {
        match self {
            Limit::Upper => 1.0,
            Limit::Lower => -1.0,
        }
    }
}

/// A goal's statistics on a dose ([`GoalTerm::evaluate`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// The statistic the goal is about, Gy (its [`GoalTerm::metric`]); what a limit is judged on.
    pub achieved_gy: f64,
    /// The weighted objective term (objectives only).
    pub objective_value: Option<f64>,
    /// The CVaR a DVH limit bounds, Gy (DVH goals only); the exact check after an
    /// interior-point solve also holds it to the limit.
    pub cvar_gy: Option<f64>,
}

/// Which voxels a goal's voxel rows start from when constraint generation may leave some
/// out (large structures); the rest join when the dose shows they matter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Candidates {
    /// The goal has no voxel rows, or needs all of them.
    All,
    /// Voxels whose reference dose lies beyond (in the direction of `limit`) a threshold,
    /// less a margin: `dose_gy`, or the extreme reference dose of the goal when `None`.
    Threshold { limit: Limit, dose_gy: Option<f64> },
    /// The hottest (`Upper`) or coldest (`Lower`) `fraction` of the volume (a CVaR tail).
    Tail { limit: Limit, fraction: f64 },
}

/// A field of a goal that holds a value a TOML parser cannot reject: `(field, reason)`.
pub type FieldError = (&'static str, String);

/// One goal type: its words, its evaluation and its formulation. Implementations hold the
/// goal's parameters (doses in Gy total, dimensionless weights).
pub trait GoalTerm: fmt::Debug + Send + Sync {
    /// The protocol's name of the goal type, e.g. `dvh_min`.
    fn type_name(&self) -> &'static str;

    /// The goal in the protocol's words without its structure, e.g. `D95 >= 50 Gy`.
    fn describe(&self) -> String;

    /// Name of the statistic the goal is judged on ([`Evaluation::achieved_gy`]): `max`,
    /// `min`, `mean`, `gEUD` or `D<volume>`.
    fn metric(&self) -> String;

    /// `None` for an objective (a weighted term), the direction for a constraint.
    fn limit(&self) -> Option<Limit>;

    /// A constraint's mode (objectives: `Hard`, meaning "in the optimisation").
    fn mode(&self) -> Mode {
        Mode::Hard
    }

    /// An objective's weight.
    fn weight(&self) -> Option<f64> {
        None
    }

    /// The weight, for variants ([`super::PlanningProblem::set_goal_weight`]).
    fn weight_mut(&mut self) -> Option<&mut f64> {
        None
    }

    /// The reference or limit dose, Gy total, where the goal has one.
    fn dose_gy(&self) -> Option<f64> {
        None
    }

    /// The dose, for variants ([`super::PlanningProblem::set_goal_limit`]).
    fn dose_gy_mut(&mut self) -> Option<&mut f64> {
        None
    }

    /// True when the goal is a volume average (weighs each voxel by the fraction of it the
    /// structure occupies, as the DVH does); false for goals on whole voxels (max and min
    /// limits, the maximum penalty: a boundary voxel shared by a target and an organ would
    /// otherwise carry both limits).
    fn is_volume_weighted(&self) -> bool {
        true
    }

    /// Values beyond the common checks of weight and dose (`a >= 1`, `0 < volume < 100`).
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }

    /// The goal's statistics on its voxel doses.
    fn evaluate(&self, doses: &WeightedDoses) -> Evaluation;

    /// Where constraint generation starts ([`Candidates`]).
    fn candidates(&self) -> Candidates {
        Candidates::All
    }

    /// State the goal's contribution to the problem in [`Terms`] (total doses of the
    /// goal's voxels, `N` from [`Terms::total_weight`]). A backend that lacks a part says so
    /// (the interior-point method hands such a problem to Clarabel).
    fn formulate(&self, terms: &mut Terms);

    /// A boxed copy (for `Clone` of [`GoalKind::Custom`]).
    fn clone_box(&self) -> Box<dyn GoalTerm>;
}

/// A goal type from outside the library ([`GoalKind::Custom`]). Not read from protocol
/// files; written (to a report, a Python dict) as `{ type = "custom", name, description }`.
pub struct CustomGoal(pub Box<dyn GoalTerm>);

impl Serialize for CustomGoal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("CustomGoal", 2)?;
        st.serialize_field("name", self.0.type_name())?;
        st.serialize_field("description", &self.0.describe())?;
        st.end()
    }
}

impl CustomGoal {
    pub fn new(term: impl GoalTerm + 'static) -> CustomGoal {
        CustomGoal(Box::new(term))
    }
}

impl Clone for CustomGoal {
    fn clone(&self) -> Self {
        CustomGoal(self.0.clone_box())
    }
}

impl fmt::Debug for CustomGoal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for CustomGoal {
    /// The same type with the same words (which state every parameter).
    fn eq(&self, other: &Self) -> bool {
        self.0.type_name() == other.0.type_name() && self.0.describe() == other.0.describe()
    }
}

/// The goal types of a protocol, one variant per type; `type = "<snake_case variant>"` in
/// TOML, the other keys are the fields of the type's struct.
macro_rules! goal_kinds {
    ($($variant:ident($ty:path),)*) => {
        /// One goal of a structure. Doses are total doses (Gy); weights are dimensionless
        /// multipliers of the normalised terms described in `docs/optimization.md`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum GoalKind {
            $($variant($ty),)*
            /// A goal type defined outside the library, through [`GoalTerm`] (API only:
            /// written as its name and description, never read).
            #[serde(skip_deserializing)]
            Custom(CustomGoal),
        }

        impl GoalKind {
            /// The goal's implementation.
            pub fn term(&self) -> &dyn GoalTerm {
                match self {
                    $(GoalKind::$variant(g) => g,)*
                    GoalKind::Custom(g) => g.0.as_ref(),
                }
            }

            /// The goal's implementation, mutable (variants change weights and doses).
            pub fn term_mut(&mut self) -> &mut dyn GoalTerm {
                match self {
                    $(GoalKind::$variant(g) => g,)*
                    GoalKind::Custom(g) => g.0.as_mut(),
                }
            }
        }
    };
}

goal_kinds! {
    Underdose(squared::Underdose),
    Overdose(squared::Overdose),
    Deviation(squared::Deviation),
    MeanDose(mean::MeanDose),
    Eud(eud::Eud),
    MaxPenalty(max_penalty::MaxPenalty),
    MaxDose(voxel_limit::MaxDose),
    MinDose(voxel_limit::MinDose),
    MeanMax(mean::MeanMax),
    MeanMin(mean::MeanMin),
    DvhMax(dvh::DvhMax),
    DvhMin(dvh::DvhMin),
}

impl GoalKind {
    /// A goal of a type defined outside the library.
    pub fn custom(term: impl GoalTerm + 'static) -> GoalKind {
        GoalKind::Custom(CustomGoal::new(term))
    }

    /// See [`GoalTerm::metric`].
    pub fn metric(&self) -> String {
        self.term().metric()
    }

    /// True for objectives (weighted terms), false for constraints.
    pub fn is_objective(&self) -> bool {
        self.term().limit().is_none()
    }

    /// See [`GoalTerm::is_volume_weighted`].
    pub fn is_volume_weighted(&self) -> bool {
        self.term().is_volume_weighted()
    }

    /// See [`GoalTerm::mode`].
    pub fn mode(&self) -> Mode {
        self.term().mode()
    }

    /// The weight of an objective.
    pub fn weight(&self) -> Option<f64> {
        self.term().weight()
    }

    pub(crate) fn weight_mut(&mut self) -> Option<&mut f64> {
        self.term_mut().weight_mut()
    }

    /// The reference or limit dose (Gy total), where the goal has one.
    pub fn dose_gy(&self) -> Option<f64> {
        self.term().dose_gy()
    }

    pub(crate) fn dose_gy_mut(&mut self) -> Option<&mut f64> {
        self.term_mut().dose_gy_mut()
    }

    /// A description in the protocol's words, e.g. `max dose <= 40 Gy` (without structure).
    pub fn describe(&self) -> String {
        self.term().describe()
    }

    /// Whether the goal's formulation holds a dense `n x n` block in the beamlets (a squared
    /// deviation's Gram matrix), whatever its weight: what the optimiser's memory budget counts.
    pub fn needs_dense_block(&self) -> bool {
        let mut t = Terms::new(1.0, 1.0);
        self.term().formulate(&mut t);
        t.uses_gram()
    }

    /// The volume percentage of a DVH goal (`D<volume>`), else `None`.
    pub fn dvh_volume_pct(&self) -> Option<f64> {
        match self {
            GoalKind::DvhMax(g) => Some(g.volume_pct),
            GoalKind::DvhMin(g) => Some(g.volume_pct),
            _ => None,
        }
    }
}

/// Shortest decimal form of a number (`40`, `47.5`).
pub(crate) fn trim(v: f64) -> String {
    format!("{v}")
}

/// `{dose} Gy` in shortest form.
pub(crate) fn gy(v: f64) -> String {
    format!("{} Gy", trim(v))
}
