//! Deliverable normalisation: the MU of the sequenced plan are scaled so that a dose-volume
//! point of the target equals the prescription (clinics normalise after sequencing, usually
//! "D95 = Rx"; ICRU 83 §3.4 reports D98, D95, D50 and D2 of the PTV).

use crate::error::{Error, Result};

/// How the deliverable plan is normalised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalisation {
    /// MU as optimised and sequenced.
    None,
    /// Scale the MU so that `volume_pct` % of the target receives the prescription
    /// (`D{volume_pct} = Rx`).
    TargetCoverage { volume_pct: f64 },
}

impl Default for Normalisation {
    /// D95 of the target = prescription.
    fn default() -> Self {
        Normalisation::TargetCoverage { volume_pct: 95.0 }
    }
}

impl Normalisation {
    /// Check the volume lies in (0, 100].
    pub fn validate(&self) -> Result<()> {
        match *self {
            Normalisation::None => Ok(()),
            Normalisation::TargetCoverage { volume_pct } => {
                if volume_pct.is_finite() && volume_pct > 0.0 && volume_pct <= 100.0 {
                    Ok(())
                } else {
                    Err(Error::Invalid(format!(
                        "normalisation volume {volume_pct} % must lie in (0, 100]"
                    )))
                }
            }
        }
    }

    /// The MU factor that brings `target_dose_gy` (total dose per target voxel) to
    /// `prescription_gy` at this point; 1 without normalisation or when the target receives no
    /// dose (the acceptance check then refuses the plan on its own figures).
    pub fn factor(&self, target_dose_gy: &[f64], prescription_gy: f64) -> f64 {
        match *self {
            Normalisation::None => 1.0,
            Normalisation::TargetCoverage { volume_pct } => {
                let d = crate::dvh::dose_at_volume(target_dose_gy, volume_pct);
                if d.is_finite() && d > 0.0 {
                    prescription_gy / d
                } else {
                    1.0
                }
            }
        }
    }

    /// One line for the report ("D95 of the target = prescription").
    pub fn describe(&self) -> String {
        match *self {
            Normalisation::None => "none (MU as optimised)".into(),
            Normalisation::TargetCoverage { volume_pct } => {
                format!("D{volume_pct} of the target = prescription")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_brings_the_coverage_point_to_the_prescription() {
        // 100 voxels at 1..=100 Gy: D95 (95 % of the volume receives at least) is about 6 Gy.
        let d: Vec<f64> = (1..=100).map(f64::from).collect();
        let n = Normalisation::default();
        let f = n.factor(&d, 60.0);
        let scaled: Vec<f64> = d.iter().map(|v| v * f).collect();
        let d95 = crate::dvh::dose_at_volume(&scaled, 95.0);
        assert!((d95 - 60.0).abs() < 1e-9, "{d95}");
        assert_eq!(Normalisation::None.factor(&d, 60.0), 1.0);
        assert_eq!(n.factor(&[0.0; 4], 60.0), 1.0);
        assert!(Normalisation::TargetCoverage { volume_pct: 0.0 }
            .validate()
            .is_err());
        assert!(n.validate().is_ok());
    }
}
