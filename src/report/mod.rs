//! Plan report: `report.json` (machine-readable) and `report.html` (one self-contained page
//! with DVH plot, goal table and dose-wash slices).

pub mod compare;
pub mod html;
pub mod metrics;

use serde::{Deserialize, Serialize};

pub use metrics::{plan_quality, PlanQuality, StructureMetrics};

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
    /// Cumulative DVH of `doses_gy` sampled every `bin_gy`.
    pub fn compute(structure: &str, color: [u8; 3], doses_gy: &[f64], bin_gy: f64) -> Self {
        DvhCurve {
            structure: structure.to_string(),
            color,
            points: crate::dvh::cumulative_dvh(doses_gy, bin_gy)
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
    pub kind: String,
    /// Achieved value in the goal's unit (Gy or %).
    pub achieved: f64,
    pub unit: String,
    pub met: bool,
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
    pub optimizer: serde_json::Value,
    /// Deliverable vs optimised dose (gamma pass rate etc.).
    pub delivery: serde_json::Value,
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
            .filter(|g| g.kind == "constraint")
            .all(|g| g.met)
    }

    /// True when every goal (hard and soft) is met.
    pub fn all_goals_met(&self) -> bool {
        self.goals.iter().all(|g| g.met)
    }

    /// The goal table as aligned text.
    pub fn goal_table(&self) -> String {
        let mut s = format!(
            "{:<16} {:<28} {:<11} {:>10}  {}\n",
            "structure", "goal", "kind", "achieved", "status"
        );
        for g in &self.goals {
            s.push_str(&format!(
                "{:<16} {:<28} {:<11} {:>7.2} {:<3} {}\n",
                g.structure,
                g.goal,
                g.kind,
                g.achieved,
                g.unit,
                if g.met { "met" } else { "NOT MET" }
            ));
        }
        s
    }
}
