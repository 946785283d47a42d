//! Plan report: `report.json` (machine-readable) and `report.html` (one self-contained page
//! with DVH plot, goal table and dose-wash slices).

pub mod compare;
#[cfg(feature = "html-report")]
pub mod html;
pub mod metrics;

use serde::{Deserialize, Serialize};

pub use crate::optimize::GoalRole;
use crate::sequencing::BeamSequencingReport;

pub use metrics::{plan_quality, FidelityStep, ModelFidelity, PlanQuality, StructureMetrics};

/// One point of a cumulative DVH, as stored in the report.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct DvhSample {
    pub dose_gy: f64,
    pub volume_pct: f64,
}

/// Cumulative DVH of one structure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DvhCurve {
    pub structure: String,
    /// Display colour (RGB) from the RT Structure Set.
    pub color: [u8; 3],
    pub points: Vec<DvhSample>,
}

impl DvhCurve {
    /// Cumulative DVH of the weighted voxel doses `doses` sampled every `bin_gy`.
    pub fn compute(
        structure: &str,
        color: [u8; 3],
        doses: &crate::dvh::WeightedDoses,
        bin_gy: f64,
    ) -> Self {
        DvhCurve {
            structure: structure.to_string(),
            color,
            points: doses
                .cumulative(bin_gy)
                .into_iter()
                .map(|p| DvhSample {
                    dose_gy: p.dose_gy,
                    volume_pct: p.volume_pct,
                })
                .collect(),
        }
    }
}

/// One row of the goal table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoalRow {
    pub structure: String,
    /// The goal in the protocol's words, e.g. `D95 >= 50 Gy`.
    pub goal: String,
    /// `constraint` (hard) or `objective` (soft) or `report` (evaluation only).
    pub kind: GoalRole,
    /// The dose statistic the goal is judged on: `max`, `min`, `mean`, `gEUD` or `D<v>`.
    #[serde(default)]
    pub metric: String,
    /// Value of `metric` on the final dose, in `unit`.
    pub achieved: f64,
    pub unit: String,
    /// Objectives: the weighted term's value on the final dose (an objective is minimised,
    /// never "met").
    #[serde(default)]
    pub objective_value: Option<f64>,
    /// Constraints and report goals: whether the limit holds (within 0.5 %). Objectives: none.
    #[serde(default)]
    pub met: Option<bool>,
    /// Hard constraints: the optimiser's first-order objective increase per Gy of tightening
    /// the limit (its Lagrange multiplier; 0: the limit does not bind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective_per_gy: Option<f64>,
}

/// The optimiser's figures in the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSummary {
    /// Backend that solved (e.g. the interior point, or Clarabel).
    pub solver: String,
    pub status: String,
    pub iterations: u32,
    /// Constraint-generation rounds.
    pub rounds: usize,
    pub solve_seconds: f64,
    /// Objective value, protocol units.
    pub objective: f64,
    pub variables: usize,
    pub constraint_rows: usize,
    pub influence_matrix: InfluenceMatrixSummary,
}

/// Size and truncation of the optimisation influence matrix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InfluenceMatrixSummary {
    pub rows: usize,
    pub columns: usize,
    pub nnz: usize,
    /// Fraction of the beamlets' dose mass dropped by the lateral cutoff and threshold.
    pub truncated_mass_fraction: f64,
}

/// Sequencing and the deliverable plan in the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeliverySummary {
    pub sequencing: Vec<BeamSequencingReport>,
    /// Total meterset after normalisation, MU per fraction.
    pub total_mu_per_fraction: f64,
    /// MU factor of the deliverable normalisation.
    pub mu_normalisation_factor: f64,
    pub gamma: GammaSummary,
    /// The optimiser's dose against the untruncated dose of the optimised weights.
    #[serde(default)]
    pub optimiser_vs_final: ModelFidelity,
    /// Each evaluation of the dose-fidelity loop, the last one being `optimiser_vs_final`
    /// (empty when the loop was off).
    #[serde(default)]
    pub fidelity_corrections: Vec<FidelityStep>,
    /// The segment-weight optimisation after sequencing (absent when it was off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_weights: Option<SegmentWeightSummary>,
    /// MU efficiency: MU per fraction per cGy of prescribed dose per fraction.
    #[serde(default)]
    pub mu_per_cgy: f64,
}

/// What the segment-weight optimisation did (`plan::segment_weights`; `report.json`:
/// `delivery.segment_weights`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentWeightSummary {
    /// Segments handed over by sequencing, and kept after the minimum-MU rule.
    pub segments_in: usize,
    pub segments_out: usize,
    /// Segments the optimum put below half the minimum MU (dropped) or between half and the
    /// minimum (rounded up to it).
    pub dropped: usize,
    pub rounded_up: usize,
    /// Solver status and iterations of the segment problem.
    pub status: String,
    pub iterations: u32,
    /// Sum of the goals' objective terms on the segment model's dose: the sequenced MU
    /// before, the optimised (and minimum-MU-rounded) MU after.
    pub goal_objective_sequenced: f64,
    pub goal_objective_optimised: f64,
    /// Total MU per fraction before and after.
    pub mu_sequenced: f64,
    pub mu_optimised: f64,
    /// Non-zeros of the segment dose matrix.
    pub matrix_nnz: usize,
    /// The segment model's dose of the final MU against the untruncated deliverable dose
    /// (before normalisation), over the voxels above 10 % of Rx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_vs_deliverable: Option<ModelFidelity>,
    /// Why the sequenced weights were kept, when they were (an infeasible segment problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_because: Option<String>,
}

/// Gamma agreement of the deliverable with the optimised dose.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GammaSummary {
    /// Criteria in words, e.g. `3 %/2 mm global, 10 % threshold, deliverable vs optimised dose`.
    pub criteria: String,
    pub pass_rate_percent: f64,
    pub evaluated_points: usize,
    pub mean_gamma: f64,
}

/// One treatment beam.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BeamRow {
    pub number: usize,
    pub name: String,
    pub gantry_deg: f64,
    pub couch_deg: f64,
    pub collimator_deg: f64,
    /// Meterset per fraction, MU.
    pub mu: f64,
    pub segments: usize,
    /// Source-to-surface distance on the central axis, mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssd_mm: Option<f64>,
    /// The beam's dose at the plan's dose reference point, Gy per fraction (BeamDose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_dose_gy: Option<f64>,
    /// Estimated delivery time per fraction, s (a lower bound:
    /// [`crate::deliverability::beam_delivery_time_s`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_time_s: Option<f64>,
}

/// The plan block of the report: what identifies the plan and how its dose was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanBlock {
    /// RTPlanLabel, RTPlanName, RTPlanDescription.
    pub label: String,
    pub name: String,
    pub description: String,
    /// SOPInstanceUID of the RT Plan.
    pub sop_instance_uid: String,
    /// Creation date and time, UTC, ISO 8601 (`2026-12-02T16:46:56Z`).
    pub created_utc: String,
    /// TreatmentMachineName, nominal energy and technique.
    pub machine: String,
    pub energy_mv: f64,
    pub technique: String,
    /// Isocentre, DICOM patient coordinates (LPS), mm.
    pub isocenter_mm: [f64; 3],
    /// Dose engine and heterogeneity handling.
    pub dose_algorithm: String,
    /// The machine file's `dose_engine` (`pencil_beam`, ...): which engine computed the dose.
    #[serde(default)]
    pub dose_engine: String,
    /// Dose grid spacing (x, y, z), mm.
    pub dose_grid_mm: [f64; 3],
    /// Factor applied to every segment's MU to reach the prescription.
    pub normalisation_factor: f64,
    /// Total meterset per fraction, MU.
    pub total_mu_per_fraction: f64,
    /// Estimated beam-on plus leaf-travel time of all beams per fraction, s (lower bound;
    /// 0 when the machine file gives no leaf speed).
    #[serde(default)]
    pub delivery_time_s: f64,
    /// The dose reference point (DoseReferenceSequence COORDINATES), LPS mm, with the dose
    /// there: per fraction from the RT Dose, and summed over the beams' BeamDose.
    pub reference_point_mm: [f64; 3],
    pub reference_structure: String,
    pub reference_dose_per_fraction_gy: f64,
    pub reference_beam_dose_sum_gy: f64,
}

/// Elapsed time of one pipeline stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageTiming {
    pub stage: String,
    pub seconds: f64,
}

/// A protocol dose-volume metric (`D95`, `V20Gy`, ...) evaluated on a structure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProtocolMetric {
    pub structure: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
}

/// The whole machine-readable report (`report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub rtopt_version: String,
    /// Plan identity and calculation (the plan block).
    #[serde(default)]
    pub plan: PlanBlock,
    /// Case folder name (never patient names or IDs).
    pub case: String,
    pub protocol: String,
    pub prescription_gy: f64,
    pub fractions: u32,
    pub target: String,
    /// SHA-256 of each input file (hex), by file name.
    pub input_hashes: Vec<(String, String)>,
    pub structures: Vec<StructureMetrics>,
    pub protocol_metrics: Vec<ProtocolMetric>,
    pub quality: PlanQuality,
    pub goals: Vec<GoalRow>,
    pub beams: Vec<BeamRow>,
    /// Solver summary.
    #[serde(default)]
    pub optimizer: OptimizerSummary,
    /// Sequencing, MU and the deliverable's agreement with the optimised dose.
    #[serde(default)]
    pub delivery: DeliverySummary,
    /// Notes the planner must read (e.g. CVaR constraints are conservative).
    pub notes: Vec<String>,
    pub timings: Vec<StageTiming>,
    pub dvh: Vec<DvhCurve>,
}

impl Report {
    /// True when every hard constraint is met.
    pub fn constraints_met(&self) -> bool {
        self.goals
            .iter()
            .filter(|g| g.kind == GoalRole::Constraint)
            .all(|g| g.met != Some(false))
    }

    /// True when every constraint, hard or report-only, is met (objectives have no "met").
    pub fn all_goals_met(&self) -> bool {
        self.goals.iter().all(|g| g.met != Some(false))
    }

    /// The goal table as aligned text: objectives with the metric and the weighted term's
    /// value, constraints and report goals with met / NOT MET. Columns are as wide as their
    /// longest entry, so no line depends on the terminal width.
    pub fn goal_table(&self) -> String {
        let rows: Vec<[String; 7]> = self
            .goals
            .iter()
            .map(|g| {
                let status = match (g.met, g.objective_value) {
                    (Some(true), _) => "met".to_string(),
                    (Some(false), _) => "NOT MET".to_string(),
                    (None, Some(v)) => format!("term {v:.4}"),
                    (None, None) => "-".to_string(),
                };
                let cost = g
                    .objective_per_gy
                    .map(|c| format!("{c:+.4}"))
                    .unwrap_or_else(|| "-".into());
                [
                    g.structure.clone(),
                    g.goal.clone(),
                    g.kind.to_string(),
                    g.metric.clone(),
                    format!("{:.2} {}", g.achieved, g.unit),
                    status,
                    cost,
                ]
            })
            .collect();
        let head = [
            "structure",
            "goal",
            "kind",
            "metric",
            "achieved",
            "status / objective",
            "objective per Gy tighter",
        ];
        let mut w = head.map(|h| h.chars().count());
        for r in &rows {
            for (k, c) in r.iter().enumerate() {
                w[k] = w[k].max(c.chars().count());
            }
        }
        let line = |cells: [&str; 7]| {
            format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}  {:<w5$}  {}\n",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                cells[5],
                cells[6],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4],
                w5 = w[5]
            )
        };
        let mut s = line(head);
        for r in &rows {
            s.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]]));
        }
        s
    }
}
