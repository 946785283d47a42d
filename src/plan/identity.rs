//! The identity of a plan's outputs: RT Plan label, name and description (the command line
//! over the protocol's `[plan]` over the defaults) and the creation time (the clock, or a
//! fixed instant for reproducible output: `SOURCE_DATE_EPOCH`).
//!
//! The default label is the case folder's name (at most 6 characters) and the creation time
//! `MMDD HHMM` in UTC, so two plans of one case made a minute apart do not share a label
//! (record-and-verify systems refuse a second plan with the same label for a patient).

use dicom_core::VR;
use serde::Serialize;

use crate::error::Result;
use crate::io::dicom::identity::{check_text, CreationTime};
use crate::optimize::PlanSection;

/// What the caller sets; every `None` falls back to the protocol, then to the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanIdentity {
    pub label: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Creation time of every output (`None`: the clock when the plan is finished).
    pub created: Option<CreationTime>,
}

/// The identity the outputs are written with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedIdentity {
    /// RTPlanLabel.
    pub label: String,
    /// RTPlanName.
    pub name: String,
    /// RTPlanDescription ("" when none).
    pub description: String,
    /// InstanceCreationDate/Time and RTPlanDate/Time (UTC).
    pub created: CreationTime,
}

impl PlanIdentity {
    /// Resolve against the protocol's `[plan]` for a case named `case_name`, created at
    /// `created` unless [`PlanIdentity::created`] fixes it. Errors name the attribute.
    pub fn resolve(
        &self,
        protocol: &PlanSection,
        case_name: &str,
        created: CreationTime,
    ) -> Result<ResolvedIdentity> {
        let created = self.created.unwrap_or(created);
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let label = pick(&self.label, &protocol.label).unwrap_or_else(|| {
            let case: String = case_name
                .chars()
                .filter(|c| !c.is_control() && *c != '\\')
                .take(6)
                .collect();
            format!("{} {}", case.trim(), created.label_stamp())
                .trim()
                .to_string()
        });
        if label.trim().is_empty() {
            return Err(crate::Error::Invalid(
                "RTPlanLabel must not be empty".into(),
            ));
        }
        let name = pick(&self.name, &protocol.name).unwrap_or_else(|| label.clone());
        let description = pick(&self.description, &protocol.description).unwrap_or_default();
        check_text("RTPlanLabel", &label, VR::SH)?;
        check_text("RTPlanName", &name, VR::LO)?;
        check_text("RTPlanDescription", &description, VR::ST)?;
        Ok(ResolvedIdentity {
            label,
            name,
            description,
            created,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_over_protocol_over_default() {
        let t = CreationTime::from_unix_seconds(1_796_230_016).unwrap();
        let none = PlanSection::default();
        let r = PlanIdentity::default().resolve(&none, "tg119", t).unwrap();
        assert_eq!(r.label, "tg119 1202 1646");
        assert_eq!(r.name, r.label);
        assert_eq!(r.description, "");
        let long = PlanIdentity::default()
            .resolve(&none, "prostate-phantom", t)
            .unwrap();
        assert_eq!(long.label, "prosta 1202 1646");
        let protocol = PlanSection {
            label: Some("C-shape v2".into()),
            name: None,
            description: Some("TG-119 C-shape, 9 fields".into()),
        };
        let r = PlanIdentity::default()
            .resolve(&protocol, "tg119", t)
            .unwrap();
        assert_eq!(
            (r.label.as_str(), r.name.as_str()),
            ("C-shape v2", "C-shape v2")
        );
        let cli = PlanIdentity {
            label: Some("C-shape v3".into()),
            created: Some(CreationTime::from_unix_seconds(0).unwrap()),
            ..Default::default()
        };
        let r = cli.resolve(&protocol, "tg119", t).unwrap();
        assert_eq!(r.label, "C-shape v3");
        assert_eq!(r.description, "TG-119 C-shape, 9 fields");
        assert_eq!(r.created.dicom_date(), "19700101");
        let e = PlanIdentity {
            label: Some("a label far too long".into()),
            ..Default::default()
        }
        .resolve(&none, "tg119", t)
        .unwrap_err()
        .to_string();
        assert!(e.contains("RTPlanLabel") && e.contains("16"), "{e}");
    }

    #[test]
    fn protocol_plan_table_parses_and_rejects_unknown_keys() {
        let base = "[prescription]\ntotal_dose_gy = 50.0\nfractions = 25\ntarget = \"PTV\"\n\
                    [[structure]]\nname = \"PTV\"\n\
                    goals = [{ type = \"deviation\", dose_gy = 50.0, weight = 1.0 }]\n";
        let src = std::path::Path::new("p.toml");
        let p = crate::optimize::Protocol::from_toml_str(
            &format!("{base}[plan]\nlabel = \"Prostate v2\"\ndescription = \"7 fields\"\n"),
            src,
        )
        .unwrap();
        assert_eq!(p.plan.label.as_deref(), Some("Prostate v2"));
        assert_eq!(p.plan.name, None);
        let e = crate::optimize::Protocol::from_toml_str(
            &format!("{base}[plan]\nlabell = \"typo\"\n"),
            src,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("p.toml") && e.contains("labell"), "{e}");
    }
}
