//! The backend-neutral vocabulary goals formulate themselves in: terms of the total dose
//! `d_v` of each voxel of the goal (Gy over the course, `d = fractions * A x`) and of a few
//! scalar variables of the goal's own. Both solvers translate every [`Part`]; a goal type is
//! therefore formulated once for both (the way Clarabel.rs puts one cone per file behind a
//! trait). Notation: voxel weights `w_v` (occupied fraction, or 1), `N = sum_v w_v`, goal
//! variables `y_k`.
//!
//! ```text
//! objective  += quadratic * sum_v w_v d_v^2 + linear * sum_v w_v d_v + constant
//!             + sum_k cost_k y_k                                    (Terms::variable)
//! Voxels:       sign d_v + sum_k c_k y_k [- u_v] <= h               for every voxel v
//!               Hinge::Squared: objective += hessian/2 * sum_v w_v u_v^2
//!               Hinge::Excess:  u_v >= 0, enters a Tail row
//! Sum:          coef * sum_v w_v d_v + sum_k c_k y_k <= h
//! Tail:         sum_k c_k y_k + beta * sum_v w_v u_v <= h           (u_v of a Voxels part)
//! PowerMean:    objective += cost * (sum_v w_v max(d_v, 0)^a)^(1/a)  (a > 1; Clarabel only)
//! ```
//!
//! A part marked `limit` is a hard limit of the goal: the interior-point backend tightens
//! its `h` by [`crate::optimize::ipm::model::LIMIT_EPS_GY`], and with `relax` (or in the
//! phase-1 feasibility solve) the goal's elastic slack enters it with coefficient `-1`.

use serde::Serialize;

/// A scalar variable of a goal ([`Terms::variable`]): its index in [`Terms::vars`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VarId(pub(crate) usize);

/// A part of a goal's formulation ([`Terms::voxels`]): its index in [`Terms::parts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartId(pub(crate) usize);

/// A scalar variable: linear cost, sign restriction and a starting value for the
/// interior-point method (Gy for dose-like variables).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Var {
    pub cost: f64,
    pub nonneg: bool,
    pub start: f64,
}

/// The per-voxel variable of a [`Part::Voxels`] row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hinge {
    /// None: the row holds for each voxel as it stands.
    None,
    /// `u_v`, penalised by `hessian/2 * w_v * u_v^2` (squared over- or underdose;
    /// `u_v >= 0` is implied by the minimisation).
    Squared { hessian: f64 },
    /// `u_v >= 0`, summed by a [`Part::Tail`] row (CVaR excesses).
    Excess,
}

/// One constraint family of a goal (see the module notes).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "part", rename_all = "snake_case")]
pub enum Part {
    Voxels {
        sign: f64,
        h_gy: f64,
        vars: Vec<(VarId, f64)>,
        hinge: Hinge,
        limit: bool,
    },
    Sum {
        coef: f64,
        vars: Vec<(VarId, f64)>,
        h_gy: f64,
        limit: bool,
    },
    Tail {
        voxels: PartId,
        beta: f64,
        vars: Vec<(VarId, f64)>,
        h_gy: f64,
        limit: bool,
    },
    PowerMean {
        a: f64,
        cost: f64,
    },
}

/// A goal's formulation, filled by [`super::GoalTerm::formulate`]; serialised as is into
/// the exported problem (`docs/peer-benchmark.md`), from which the CVXPY peer builds its
/// problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Terms {
    total_weight: f64,
    prescription_gy: f64,
    pub(crate) quadratic: f64,
    pub(crate) linear: f64,
    pub(crate) constant: f64,
    /// Whether the goal uses `sum_v w_v d_v^2` (even with a zero weight): the dense Gram
    /// block of its rows is then needed.
    pub(crate) uses_gram: bool,
    pub(crate) vars: Vec<Var>,
    pub(crate) parts: Vec<Part>,
}

impl Terms {
    /// An empty formulation for a goal whose voxel weights sum to `total_weight` (N, voxels)
    /// in a plan prescribed `prescription_gy` (total).
    pub fn new(total_weight: f64, prescription_gy: f64) -> Terms {
        Terms {
            total_weight,
            prescription_gy,
            quadratic: 0.0,
            linear: 0.0,
            constant: 0.0,
            uses_gram: false,
            vars: Vec::new(),
            parts: Vec::new(),
        }
    }

    /// `N`: the sum of the goal's voxel weights, voxels.
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// The prescription dose, Gy total (a scale for starting values).
    pub fn prescription_gy(&self) -> f64 {
        self.prescription_gy
    }

    /// Objective `+= coef * sum_v w_v d_v^2`.
    pub fn dose_squared(&mut self, coef: f64) {
        self.quadratic += coef;
        self.uses_gram = true;
    }

    /// Objective `+= coef * sum_v w_v d_v`.
    pub fn dose_sum(&mut self, coef: f64) {
        self.linear += coef;
    }

    /// Objective `+= value`.
    pub fn constant(&mut self, value: f64) {
        self.constant += value;
    }

    /// A new scalar variable with objective `+= cost * y`.
    pub fn variable(&mut self, cost: f64, nonneg: bool, start: f64) -> VarId {
        self.vars.push(Var {
            cost,
            nonneg,
            start,
        });
        VarId(self.vars.len() - 1)
    }

    /// Rows `sign d_v + sum_k c_k y_k [- u_v] <= h_gy`, one per voxel.
    pub fn voxels(
        &mut self,
        sign: f64,
        h_gy: f64,
        vars: Vec<(VarId, f64)>,
        hinge: Hinge,
        limit: bool,
    ) -> PartId {
        self.push(Part::Voxels {
            sign,
            h_gy,
            vars,
            hinge,
            limit,
        })
    }

    /// The row `coef sum_v w_v d_v + sum_k c_k y_k <= h_gy`.
    pub fn sum(&mut self, coef: f64, vars: Vec<(VarId, f64)>, h_gy: f64, limit: bool) -> PartId {
        self.push(Part::Sum {
            coef,
            vars,
            h_gy,
            limit,
        })
    }

    /// The row `sum_k c_k y_k + beta sum_v w_v u_v <= h_gy` over the excesses `u_v` of
    /// `voxels` (a [`Part::Voxels`] with [`Hinge::Excess`]).
    pub fn tail(
        &mut self,
        voxels: PartId,
        beta: f64,
        vars: Vec<(VarId, f64)>,
        h_gy: f64,
        limit: bool,
    ) -> PartId {
        self.push(Part::Tail {
            voxels,
            beta,
            vars,
            h_gy,
            limit,
        })
    }

    /// Objective `+= cost (sum_v w_v max(d_v, 0)^a)^(1/a)`, `a > 1`.
    pub fn power_mean(&mut self, a: f64, cost: f64) -> PartId {
        self.push(Part::PowerMean { a, cost })
    }

    fn push(&mut self, p: Part) -> PartId {
        self.parts.push(p);
        PartId(self.parts.len() - 1)
    }

    /// The parts, in the order the goal stated them.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The scalar variables, in the order the goal created them.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Whether the goal needs the Gram block `A_s^T W_s A_s` of its rows.
    pub fn uses_gram(&self) -> bool {
        self.uses_gram
    }

    /// Whether the goal needs the column sums `A_s^T w_s` of its rows.
    pub fn uses_colsum(&self) -> bool {
        self.linear != 0.0
            || self.uses_gram
            || self.parts.iter().any(|p| matches!(p, Part::Sum { .. }))
    }

    /// `(quadratic, linear, constant)` coefficients of the dose terms.
    pub fn dose_coefficients(&self) -> (f64, f64, f64) {
        (self.quadratic, self.linear, self.constant)
    }
}
