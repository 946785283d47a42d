//! Beams and beamlets (matRad's `stf` step).
//!
//! Angles follow IEC 61217: gantry, collimator and patient-support (couch) angles in degrees.
//! Beamlet positions are in the beam-limiting-device (BLD) frame projected to the isocentre
//! plane: `x` along leaf travel (the X jaws), `y` across leaf pairs (the Y jaws), mm.

use serde::{Deserialize, Serialize};

/// The regular beamlet (bixel) grid of one beam, in the isocentre plane.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BeamletGrid {
    /// Beamlet width along x (leaf travel), mm at the isocentre.
    pub size_x_mm: f64,
    /// Beamlet height along y (across leaves), mm at the isocentre; equals the leaf width.
    pub size_y_mm: f64,
    /// Columns (x) and rows (y) of the grid.
    pub nx: usize,
    pub ny: usize,
    /// Centre of beamlet (0, 0), mm in the isocentre plane (BLD frame).
    pub x0_mm: f64,
    pub y0_mm: f64,
}

impl BeamletGrid {
    /// Centre of beamlet `(ix, iy)`, mm in the isocentre plane.
    pub fn centre_mm(&self, ix: usize, iy: usize) -> [f64; 2] {
        [
            self.x0_mm + ix as f64 * self.size_x_mm,
            self.y0_mm + iy as f64 * self.size_y_mm,
        ]
    }
}

/// One beamlet: a column of the influence matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Beamlet {
    /// Index of the beam in the plan (0-based).
    pub beam: usize,
    /// Position in the beam's [`BeamletGrid`].
    pub ix: usize,
    pub iy: usize,
}

/// A treatment beam (static gantry, step-and-shoot IMRT).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Beam {
    /// Beam number in the plan (1-based, as in DICOM BeamNumber).
    pub number: usize,
    pub name: String,
    /// IEC 61217 gantry angle, degrees.
    pub gantry_deg: f64,
    /// IEC 61217 patient-support (couch) angle, degrees.
    pub couch_deg: f64,
    /// IEC 61217 beam-limiting-device (collimator) angle, degrees.
    pub collimator_deg: f64,
    /// Isocentre in DICOM patient coordinates (LPS, mm).
    pub isocenter_mm: [f64; 3],
    /// Source-axis distance, mm.
    pub sad_mm: f64,
    /// The beamlet grid.
    pub grid: BeamletGrid,
    /// Active beamlets `(ix, iy)`, in column order of the influence matrix.
    pub beamlets: Vec<[usize; 2]>,
    /// Column of the influence matrix holding this beam's first beamlet.
    pub first_column: usize,
}
