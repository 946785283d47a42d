//! The listener's rule file: which protocol plans a received study. Rules are tried in
//! order and the first whose every condition holds wins; a rule without conditions matches
//! every study (a default). Patterns are wildcards (`*` any run of characters, `?` one
//! character), compared without regard to ASCII case.
//!
//! ```toml
//! [[rule]]
//! name = "C-shape"
//! roi = "OuterTarget"              # some ROI of the RT Structure Set is named so
//! study_description = "*TG119*"    # and the study description matches
//! protocol = "protocols/tg119.toml"
//! ```
//!
//! Conditions look at the study description and the ROI names only, never at patient
//! attributes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::optimize::protocol::Protocol;

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Named in the listener's log.
    pub name: String,
    /// Some ROI name of the RT Structure Set matches this pattern.
    pub roi: Option<String>,
    /// StudyDescription (0008,1030) matches this pattern.
    pub study_description: Option<String>,
    /// The protocol (TOML), relative to the rule file.
    pub protocol: PathBuf,
}

/// The rules of a rule file, in order, with their protocols read and checked.
#[derive(Debug, Clone)]
pub struct Rules {
    pub path: PathBuf,
    pub rules: Vec<(Rule, Protocol)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// What a rule is matched against.
#[derive(Debug, Clone, Default)]
pub struct StudyFacts {
    pub study_description: String,
    pub roi_names: Vec<String>,
}

impl Rules {
    /// Read a rule file and every protocol it names (so a bad protocol fails at start, not
    /// when a study arrives).
    pub fn load(path: &Path) -> Result<Rules> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let f: File = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if f.rule.is_empty() {
            return Err(bad("no [[rule]]: the listener would plan nothing".into()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut rules = Vec::with_capacity(f.rule.len());
        for mut r in f.rule {
            if r.protocol.is_relative() {
                r.protocol = base.join(&r.protocol);
            }
            let p = Protocol::load(&r.protocol)?;
            rules.push((r, p));
        }
        Ok(Rules {
            path: path.to_path_buf(),
            rules,
        })
    }

    /// The first rule matching `facts`.
    pub fn choose(&self, facts: &StudyFacts) -> Option<&(Rule, Protocol)> {
        self.rules.iter().find(|(r, _)| r.matches(facts))
    }
}

impl Rule {
    /// Whether every condition of the rule holds.
    pub fn matches(&self, facts: &StudyFacts) -> bool {
        let roi_ok = self
            .roi
            .as_deref()
            .is_none_or(|p| facts.roi_names.iter().any(|n| wildcard(p, n)));
        let desc_ok = self
            .study_description
            .as_deref()
            .is_none_or(|p| wildcard(p, &facts.study_description));
        roi_ok && desc_ok
    }
}

/// `*` and `?` wildcard match, ASCII case-insensitive.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let t: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Iterative matching with back-tracking to the last star.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*TG119*", "CORT/matRad phantom TG119 (converted)"));
        assert!(wildcard("outer?arget", "OuterTarget"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("PTV*", "CTV_1"));
        assert!(!wildcard("a*b", "ab_c"));
        assert!(wildcard("a*b*c", "aXbYbZc"));
    }

    #[test]
    fn the_first_rule_whose_conditions_all_hold_wins() {
        let rule = |name: &str, roi: Option<&str>, desc: Option<&str>| Rule {
            name: name.into(),
            roi: roi.map(Into::into),
            study_description: desc.map(Into::into),
            protocol: PathBuf::new(),
        };
        let rules = [
            rule("prostate", Some("PTV_Prostate*"), None),
            rule("c-shape", Some("OuterTarget"), Some("*TG119*")),
            rule("default", None, None),
        ];
        let facts = StudyFacts {
            study_description: "phantom TG119".into(),
            roi_names: vec!["BODY".into(), "OuterTarget".into(), "Core".into()],
        };
        let chosen = rules.iter().find(|r| r.matches(&facts)).unwrap();
        assert_eq!(chosen.name, "c-shape");
        let other = StudyFacts {
            study_description: "head and neck".into(),
            roi_names: vec!["OuterTarget".into()],
        };
        assert_eq!(
            rules.iter().find(|r| r.matches(&other)).unwrap().name,
            "default"
        );
    }
}
