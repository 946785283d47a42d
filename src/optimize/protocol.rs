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

pub use super::goals::{GoalKind, Mode};
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

/// A goal of a structure, with the structures whose voxels it leaves out.
// No `deny_unknown_fields` here: serde does not support it together with `flatten`; each
// goal type's struct (`optimize/goals/`) rejects unknown fields instead.
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
                if let Err((name, reason)) = g.kind.term().validate() {
                    return Err(bad(field(name), &reason));
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
            GoalKind::DvhMin(crate::optimize::goals::dvh::DvhMin {
                dose_gy: 57.0,
                volume_pct: 95.0,
                mode: Mode::Hard
            })
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
