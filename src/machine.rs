//! Treatment-machine description (read from `data/machines/*.json`): geometry, MLC, jaws,
//! beam model and calibration.

use serde::{Deserialize, Serialize};

/// Multi-leaf collimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlc {
    /// Leaf-pair boundaries along y in the isocentre plane, mm, ascending (`n_pairs + 1` values).
    /// Default machine: 120-leaf MLC, 10 x 10 mm outer, 40 x 5 mm central, 10 x 10 mm outer,
    /// -200 .. +200 mm.
    pub leaf_boundaries_mm: Vec<f64>,
    /// Smallest gap between the two leaves of a pair when open, mm.
    pub min_leaf_gap_mm: f64,
    /// Whether a leaf may pass the opposite leaf of a neighbouring pair.
    pub interdigitation: bool,
    /// Leaf travel limits along x, mm at the isocentre.
    pub x_min_mm: f64,
    pub x_max_mm: f64,
}

impl Mlc {
    /// Number of leaf pairs.
    pub fn n_pairs(&self) -> usize {
        self.leaf_boundaries_mm.len().saturating_sub(1)
    }
}

/// Jaw limits in the isocentre plane, mm (ASYMX and ASYMY).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jaws {
    pub x_min_mm: f64,
    pub x_max_mm: f64,
    pub y_min_mm: f64,
    pub y_max_mm: f64,
}

/// The default 120-leaf boundaries: 10 x 10 mm, 40 x 5 mm, 10 x 10 mm (-200 .. +200 mm).
pub fn default_leaf_boundaries_mm() -> Vec<f64> {
    let mut b = Vec::with_capacity(61);
    let mut y = -200.0;
    b.push(y);
    for i in 0..60 {
        y += if (10..50).contains(&i) { 5.0 } else { 10.0 };
        b.push(y);
    }
    b
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_mlc_spans_400_mm_with_60_pairs() {
        let b = super::default_leaf_boundaries_mm();
        assert_eq!(b.len(), 61);
        assert_eq!(b[0], -200.0);
        assert_eq!(b[60], 200.0);
        assert_eq!(b[10], -100.0);
        assert_eq!(b[50], 100.0);
    }
}

/// A treatment machine: geometry, collimation and (added by the dose engine) its beam model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineModel {
    /// TreatmentMachineName written into RT Plans.
    pub name: String,
    /// Nominal beam energy, MV.
    pub energy_mv: f64,
    /// Source-axis distance, mm.
    pub sad_mm: f64,
    /// Beamlet width along leaf travel, mm at the isocentre.
    pub beamlet_size_mm: f64,
    pub mlc: Mlc,
    pub jaws: Jaws,
    /// Smallest deliverable segment, MU.
    pub min_segment_mu: f64,
}
