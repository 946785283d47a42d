//! Deliverable normalisation: the MU of the sequenced plan are scaled so that a dose-volume
//! point of the target equals the prescription (clinics normalise after sequencing, usually
//! "D95 = Rx"; ICRU 83 §3.4 reports D98, D95, D50 and D2 of the PTV).

use crate::dvh::WeightedDoses;
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

    /// The MU factor that brings the target's dose (total dose per target voxel, weighted by
    /// the voxels' partial volumes) to `prescription_gy` at this point; 1 without
    /// normalisation or when the target receives no dose (the acceptance check then refuses
    /// the plan on its own figures).
    pub fn factor(&self, target: &WeightedDoses, prescription_gy: f64) -> f64 {
        match *self {
            Normalisation::None => 1.0,
            Normalisation::TargetCoverage { volume_pct } => {
                let d = target.dose_at_volume(volume_pct);
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
        let f = n.factor(&WeightedDoses::uniform(&d), 60.0);
        let scaled: Vec<f64> = d.iter().map(|v| v * f).collect();
        let d95 = crate::dvh::dose_at_volume(&scaled, 95.0);
        assert!((d95 - 60.0).abs() < 1e-9, "{d95}");
        assert_eq!(
            Normalisation::None.factor(&WeightedDoses::uniform(&d), 60.0),
            1.0
        );
        assert_eq!(n.factor(&WeightedDoses::uniform(&[0.0; 4]), 60.0), 1.0);
        // Weighted: the 50 voxels above 50 Gy occupied by 0.1 each, 55 voxels of volume in
        // all. The hottest 95 % (52.25) take the 5 light voxels and 47.25 of the others,
        // 50 Gy down to 3 Gy (5 + 48 >= 52.25 first at 3 Gy): D95 = 3 Gy, where it is 6 Gy
        // unweighted, so the factor is 60 / 3.
        let w: Vec<f32> = d
            .iter()
            .map(|&v| if v > 50.0 { 0.1 } else { 1.0 })
            .collect();
        let wd = WeightedDoses::new(&d, &w);
        let dw = wd.dose_at_volume(95.0);
        assert_eq!(dw, 3.0);
        assert!((n.factor(&wd, 60.0) - 20.0).abs() < 1e-12);
        assert!(Normalisation::TargetCoverage { volume_pct: 0.0 }
            .validate()
            .is_err());
        assert!(n.validate().is_ok());
    }
}
