//! Dose calculation (matRad's `dij` step): pencil-beam photon dose and the influence matrix.

pub mod grid;
pub mod influence;

pub use grid::DoseGrid;
pub use influence::InfluenceMatrix;
