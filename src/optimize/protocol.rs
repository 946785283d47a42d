//! Planning protocols (TOML): prescription, optional beam arrangement, fluence regularisation
//! and per-structure goals, each a weighted objective or a hard constraint.
//!
//! **Doses in a protocol are total doses over the course** (clinical convention). The
//! influence matrix is Gy per MU for one fraction and beamlet weights are MU per fraction, so
//! the optimiser works with `total dose = fractions * A x`.
//!
//! ```toml
//! [prescription]
//! total_dose_gy = 50.0
//! fractions = 30
//! target = "OuterTarget"
//!
//! [[structure]]
//! name = "OuterTarget"
//! goals = [
//!   { type = "deviation", dose_gy = 50.0, weight = 1000.0 },
//!   { type = "dvh_min", dose_gy = 50.0, volume_pct = 95.0 },   # hard, CVaR
//! ]
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The prescription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prescription {
    /// Total dose over the course, Gy.
    pub total_dose_gy: f64,
    /// Number of fractions.
    pub fractions: u32,
    /// Name of the target structure the prescription refers to.
    pub target: String,
}

/// Optional beam arrangement (IEC 61217 angles, degrees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamsSection {
    pub gantry_deg: Vec<f64>,
    #[serde(default)]
    pub couch_deg: f64,
    #[serde(default)]
    pub collimator_deg: f64,
}

/// Fluence regularisation (not tied to a structure).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluenceSection {
    /// Weight of the smoothness term `sum over neighbouring beamlet pairs of one beam of
    /// (x_i - x_j)^2 / n_pairs`, per MU^2 (MU per fraction).
    #[serde(default)]
    pub smoothness_weight: f64,
    /// Weight of the total-MU term `sum_i x_i`, per MU (per fraction).
    #[serde(default)]
    pub total_mu_weight: f64,
    /// Optional upper bound on every beamlet weight, MU per fraction.
    #[serde(default)]
    pub max_beamlet_mu: Option<f64>,
}

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

/// One goal of a structure. Doses are total doses (Gy); weights are dimensionless multipliers
/// of the normalised terms described in `docs/optimization.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GoalKind {
    /// Objective `w/N sum_v max(D - d_v, 0)^2`.
    Underdose { dose_gy: f64, weight: f64 },
    /// Objective `w/N sum_v max(d_v - D, 0)^2`.
    Overdose { dose_gy: f64, weight: f64 },
    /// Objective `w/N sum_v (d_v - D)^2`.
    Deviation { dose_gy: f64, weight: f64 },
    /// Objective `w * mean(d)` (linear).
    MeanDose { weight: f64 },
    /// Objective `w * gEUD_a(d) = w (1/N sum_v d_v^a)^(1/a)`, `a >= 1` (convex).
    Eud { a: f64, weight: f64 },
    /// Objective `w * max_v d_v` (epigraph variable).
    MaxPenalty { weight: f64 },
    /// Constraint `d_v <= D` for every voxel.
    MaxDose {
        dose_gy: f64,
        #[serde(default)]
        mode: Mode,
    },
    /// Constraint `d_v >= D` for every voxel.
    MinDose {
        dose_gy: f64,
        #[serde(default)]
        mode: Mode,
    },
    /// Constraint `mean(d) <= D`.
    MeanMax {
        dose_gy: f64,
        #[serde(default)]
        mode: Mode,
    },
    /// Constraint `mean(d) >= D`.
    MeanMin {
        dose_gy: f64,
        #[serde(default)]
        mode: Mode,
    },
    /// "At most `volume_pct` % above `dose_gy`" (`D_pct <= D`), enforced conservatively as
    /// upper CVaR: mean of the hottest `volume_pct` % `<= D`.
    DvhMax {
        dose_gy: f64,
        volume_pct: f64,
        #[serde(default)]
        mode: Mode,
    },
    /// "At least `volume_pct` % at or above `dose_gy`" (`D_pct >= D`), enforced conservatively
    /// as lower CVaR: mean of the coldest `100 - volume_pct` % `>= D`.
    DvhMin {
        dose_gy: f64,
        volume_pct: f64,
        #[serde(default)]
        mode: Mode,
    },
}

impl GoalKind {
    /// Name of the dose statistic a goal is judged and reported on (the
    /// `GoalResult::achieved_gy` of the goal): `max`, `min`, `mean`, `gEUD` or `D<volume>`.
    pub fn metric(&self) -> String {
        match self {
            GoalKind::Overdose { .. } | GoalKind::MaxPenalty { .. } | GoalKind::MaxDose { .. } => {
                "max".into()
            }
            GoalKind::Underdose { .. } | GoalKind::MinDose { .. } => "min".into(),
            GoalKind::Deviation { .. }
            | GoalKind::MeanDose { .. }
            | GoalKind::MeanMax { .. }
            | GoalKind::MeanMin { .. } => "mean".into(),
            GoalKind::Eud { .. } => "gEUD".into(),
            GoalKind::DvhMax { volume_pct, .. } | GoalKind::DvhMin { volume_pct, .. } => {
                format!("D{volume_pct}")
            }
        }
    }

    /// True for objectives (weighted terms), false for constraints.
    pub fn is_objective(&self) -> bool {
        matches!(
            self,
            GoalKind::Underdose { .. }
                | GoalKind::Overdose { .. }
                | GoalKind::Deviation { .. }
                | GoalKind::MeanDose { .. }
                | GoalKind::Eud { .. }
                | GoalKind::MaxPenalty { .. }
        )
    }

    /// True for goals that are volume averages (the squared-dose objectives, mean dose,
    /// gEUD, mean limits and DVH limits): the optimiser weighs each voxel by the fraction of
    /// it the structure occupies, as the DVH does. Max and min limits and the maximum
    /// penalty act on the voxels whose centre lies inside, each a whole voxel: a boundary
    /// voxel shared by a target and an organ would otherwise carry both limits.
    pub fn is_volume_weighted(&self) -> bool {
        !matches!(
            self,
            GoalKind::MaxDose { .. } | GoalKind::MinDose { .. } | GoalKind::MaxPenalty { .. }
        )
    }

    /// The mode of a constraint (objectives: `Hard`, meaning "in the optimisation").
    pub fn mode(&self) -> Mode {
        match self {
            GoalKind::MaxDose { mode, .. }
            | GoalKind::MinDose { mode, .. }
            | GoalKind::MeanMax { mode, .. }
            | GoalKind::MeanMin { mode, .. }
            | GoalKind::DvhMax { mode, .. }
            | GoalKind::DvhMin { mode, .. } => *mode,
            _ => Mode::Hard,
        }
    }

    /// The weight of an objective.
    pub fn weight(&self) -> Option<f64> {
        match self {
            GoalKind::Underdose { weight, .. }
            | GoalKind::Overdose { weight, .. }
            | GoalKind::Deviation { weight, .. }
            | GoalKind::MeanDose { weight }
            | GoalKind::Eud { weight, .. }
            | GoalKind::MaxPenalty { weight } => Some(*weight),
            _ => None,
        }
    }

    pub(crate) fn weight_mut(&mut self) -> Option<&mut f64> {
        match self {
            GoalKind::Underdose { weight, .. }
            | GoalKind::Overdose { weight, .. }
            | GoalKind::Deviation { weight, .. }
            | GoalKind::MeanDose { weight }
            | GoalKind::Eud { weight, .. }
            | GoalKind::MaxPenalty { weight } => Some(weight),
            _ => None,
        }
    }

    /// The reference or limit dose (Gy total), where the goal has one.
    pub fn dose_gy(&self) -> Option<f64> {
        match self {
            GoalKind::Underdose { dose_gy, .. }
            | GoalKind::Overdose { dose_gy, .. }
            | GoalKind::Deviation { dose_gy, .. }
            | GoalKind::MaxDose { dose_gy, .. }
            | GoalKind::MinDose { dose_gy, .. }
            | GoalKind::MeanMax { dose_gy, .. }
            | GoalKind::MeanMin { dose_gy, .. }
            | GoalKind::DvhMax { dose_gy, .. }
            | GoalKind::DvhMin { dose_gy, .. } => Some(*dose_gy),
            _ => None,
        }
    }

    pub(crate) fn dose_gy_mut(&mut self) -> Option<&mut f64> {
        match self {
            GoalKind::Underdose { dose_gy, .. }
            | GoalKind::Overdose { dose_gy, .. }
            | GoalKind::Deviation { dose_gy, .. }
            | GoalKind::MaxDose { dose_gy, .. }
            | GoalKind::MinDose { dose_gy, .. }
            | GoalKind::MeanMax { dose_gy, .. }
            | GoalKind::MeanMin { dose_gy, .. }
            | GoalKind::DvhMax { dose_gy, .. }
            | GoalKind::DvhMin { dose_gy, .. } => Some(dose_gy),
            _ => None,
        }
    }

    /// A description in the protocol's words, e.g. `max dose <= 40 Gy` (without structure).
    pub fn describe(&self) -> String {
        let g = |v: f64| format!("{} Gy", trim(v));
        match self {
            GoalKind::Underdose { dose_gy, weight } => {
                format!(
                    "squared underdose below {} (weight {})",
                    g(*dose_gy),
                    trim(*weight)
                )
            }
            GoalKind::Overdose { dose_gy, weight } => {
                format!(
                    "squared overdose above {} (weight {})",
                    g(*dose_gy),
                    trim(*weight)
                )
            }
            GoalKind::Deviation { dose_gy, weight } => {
                format!(
                    "squared deviation from {} (weight {})",
                    g(*dose_gy),
                    trim(*weight)
                )
            }
            GoalKind::MeanDose { weight } => format!("mean dose (weight {})", trim(*weight)),
            GoalKind::Eud { a, weight } => {
                format!("gEUD a = {} (weight {})", trim(*a), trim(*weight))
            }
            GoalKind::MaxPenalty { weight } => {
                format!("maximum dose penalty (weight {})", trim(*weight))
            }
            GoalKind::MaxDose { dose_gy, .. } => format!("max dose <= {}", g(*dose_gy)),
            GoalKind::MinDose { dose_gy, .. } => format!("min dose >= {}", g(*dose_gy)),
            GoalKind::MeanMax { dose_gy, .. } => format!("mean dose <= {}", g(*dose_gy)),
            GoalKind::MeanMin { dose_gy, .. } => format!("mean dose >= {}", g(*dose_gy)),
            GoalKind::DvhMax {
                dose_gy,
                volume_pct,
                ..
            } => format!("D{} <= {}", trim(*volume_pct), g(*dose_gy)),
            GoalKind::DvhMin {
                dose_gy,
                volume_pct,
                ..
            } => format!("D{} >= {}", trim(*volume_pct), g(*dose_gy)),
        }
    }
}

/// Shortest decimal form of a number (`40`, `47.5`).
pub(crate) fn trim(v: f64) -> String {
    format!("{v}")
}

/// A goal of a structure, with the structures whose voxels it leaves out.
// No `deny_unknown_fields` here: serde does not support it together with `flatten`; the
// tagged `GoalKind` rejects unknown fields instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    #[serde(flatten)]
    pub kind: GoalKind,
    /// Structures whose voxels this goal ignores (default: none; see the overlap rule in
    /// `docs/optimization.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// The goals of one structure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructureGoals {
    pub name: String,
    #[serde(default)]
    pub goals: Vec<Goal>,
}

/// A planning protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    pub prescription: Prescription,
    #[serde(default)]
    pub beams: Option<BeamsSection>,
    #[serde(default)]
    pub fluence: FluenceSection,
    #[serde(default, rename = "structure")]
    pub structures: Vec<StructureGoals>,
    /// How the RT Plan is named (`[plan]`); the command line's `--plan-label`, ... win.
    #[serde(default, skip_serializing_if = "PlanSection::is_empty")]
    pub plan: PlanSection,
}

/// `[plan]` of a protocol: the RT Plan's label (RTPlanLabel, at most 16 characters), name
/// (RTPlanName, 64) and description (RTPlanDescription, 1024). Unset: a label from the case
/// and the creation time, the label as name, no description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl PlanSection {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        self.label.is_none() && self.name.is_none() && self.description.is_none()
    }
}

impl Protocol {
    /// The beam arrangement the protocol asks for: its `[beams]` angles (IEC 61217, degrees)
    /// with the default beamlet size and margin, else the default nine equispaced beams.
    pub fn beam_setup(&self) -> crate::beams::BeamSetup {
        match &self.beams {
            Some(b) => crate::beams::BeamSetup {
                gantry_deg: b.gantry_deg.clone(),
                couch_deg: b.couch_deg,
                collimator_deg: b.collimator_deg,
                ..Default::default()
            },
            None => crate::beams::BeamSetup::default(),
        }
    }

    /// Parse a protocol; `source` names the file in error messages.
    pub fn from_toml_str(text: &str, source: &Path) -> Result<Protocol> {
        let p: Protocol = toml::from_str(text).map_err(|e| {
            let (line, col) = match e.span() {
                Some(span) => line_col(text, span.start),
                None => (0, 0),
            };
            Error::Config {
                path: source.to_path_buf(),
                reason: format!(
                    "line {line}, column {col}: {}",
                    e.message().trim_end().replace('\n', " ")
                ),
            }
        })?;
        p.validate(source)?;
        Ok(p)
    }

    /// Read and parse a protocol file.
    pub fn load(path: &Path) -> Result<Protocol> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Protocol::from_toml_str(&text, path)
    }

    /// Check values a TOML parser cannot (positive doses, percentages, a >= 1, ...).
    pub fn validate(&self, source: &Path) -> Result<()> {
        let bad = |field: String, reason: &str| Error::Config {
            path: PathBuf::from(source),
            reason: format!("{field}: {reason}"),
        };
        let rx = &self.prescription;
        if !(rx.total_dose_gy.is_finite() && rx.total_dose_gy > 0.0) {
            return Err(bad(
                "prescription.total_dose_gy".into(),
                "must be a positive number of Gy",
            ));
        }
        if rx.fractions == 0 {
            return Err(bad("prescription.fractions".into(), "must be at least 1"));
        }
        let f = &self.fluence;
        if !(f.smoothness_weight.is_finite() && f.smoothness_weight >= 0.0) {
            return Err(bad("fluence.smoothness_weight".into(), "must be >= 0"));
        }
        if !(f.total_mu_weight.is_finite() && f.total_mu_weight >= 0.0) {
            return Err(bad("fluence.total_mu_weight".into(), "must be >= 0"));
        }
        if let Some(m) = f.max_beamlet_mu {
            if !(m.is_finite() && m > 0.0) {
                return Err(bad("fluence.max_beamlet_mu".into(), "must be > 0"));
            }
        }
        if let Some(b) = &self.beams {
            crate::beams::check_angles(&b.gantry_deg, b.couch_deg, b.collimator_deg)
                .map_err(|reason| bad("beams".into(), &reason))?;
        }
        // A plan must be steered by something on its target: an objective with a positive
        // weight or a hard constraint. Report-mode goals and zero weights steer nothing.
        let effective = |g: &Goal| {
            if g.kind.is_objective() {
                g.kind.weight().is_some_and(|w| w > 0.0)
            } else {
                g.kind.mode() == Mode::Hard
            }
        };
        let on_target = self
            .structures
            .iter()
            .filter(|s| s.name == rx.target)
            .flat_map(|s| s.goals.iter())
            .any(effective);
        if !on_target {
            return Err(bad(
                format!("structure '{}' (the prescription target)", rx.target),
                "has no effective goal: give it an objective with a weight > 0 or a hard constraint (report-mode goals and zero weights do not steer the optimiser)",
            ));
        }
        for s in &self.structures {
            for (i, g) in s.goals.iter().enumerate() {
                let field = |name: &str| format!("structure '{}' goal {} ({name})", s.name, i + 1);
                if let Some(w) = g.kind.weight() {
                    if !(w.is_finite() && w >= 0.0) {
                        return Err(bad(field("weight"), "must be a finite number >= 0"));
                    }
                }
                if let Some(d) = g.kind.dose_gy() {
                    if !(d.is_finite() && d >= 0.0) {
                        return Err(bad(field("dose_gy"), "must be a finite dose >= 0 Gy"));
                    }
                }
                match &g.kind {
                    GoalKind::Eud { a, .. } if !(a.is_finite() && *a >= 1.0) => {
                        return Err(bad(field("a"), "gEUD needs a >= 1 to stay convex"));
                    }
                    GoalKind::DvhMax { volume_pct, .. } | GoalKind::DvhMin { volume_pct, .. }
                        if !(*volume_pct > 0.0 && *volume_pct < 100.0) =>
                    {
                        return Err(bad(
                            field("volume_pct"),
                            "must lie strictly between 0 and 100",
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// All structure names a protocol refers to (goals, exclusions, prescription target).
    pub fn referenced_structures(&self) -> Vec<String> {
        let mut v = vec![self.prescription.target.clone()];
        for s in &self.structures {
            v.push(s.name.clone());
            for g in &s.goals {
                v.extend(g.exclude.iter().cloned());
            }
        }
        v
    }
}

fn line_col(text: &str, byte: usize) -> (usize, usize) {
    let byte = byte.min(text.len());
    let before = &text[..byte];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|p| byte - p).unwrap_or(byte + 1);
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
[prescription]
total_dose_gy = 60
fractions = 30
target = "PTV"

[[structure]]
name = "PTV"
goals = [
  { type = "deviation", dose_gy = 60, weight = 100 },
  { type = "dvh_min", dose_gy = 57, volume_pct = 95 },
]

[[structure]]
name = "Cord"
goals = [{ type = "max_dose", dose_gy = 45, exclude = ["PTV"] }]
"#;

    #[test]
    fn parses_goals_and_defaults() {
        let p = Protocol::from_toml_str(MINI, Path::new("mini.toml")).unwrap();
        assert_eq!(p.prescription.fractions, 30);
        assert_eq!(p.structures.len(), 2);
        assert_eq!(
            p.structures[0].goals[1].kind,
            GoalKind::DvhMin {
                dose_gy: 57.0,
                volume_pct: 95.0,
                mode: Mode::Hard
            }
        );
        assert_eq!(p.structures[1].goals[0].exclude, vec!["PTV".to_string()]);
        assert_eq!(
            p.structures[1].goals[0].kind.describe(),
            "max dose <= 45 Gy"
        );
        assert_eq!(p.structures[0].goals[1].kind.describe(), "D95 >= 57 Gy");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let bad = MINI.replace("volume_pct = 95", "volume_pc = 95");
        let e = Protocol::from_toml_str(&bad, Path::new("mini.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("mini.toml: line 11"), "{e}");
        assert!(e.contains("volume_pc"), "{e}");

        let bad = MINI.replace("fractions = 30", "fractions = \"thirty\"");
        let e = Protocol::from_toml_str(&bad, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml: line 4"), "{e}");

        let bad = MINI.replace("volume_pct = 95", "volume_pct = 100");
        let e = Protocol::from_toml_str(&bad, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("structure 'PTV' goal 2 (volume_pct)"), "{e}");
    }
}
