//! Dose calculation (matRad's `dij` step): pencil-beam photon dose and the influence matrix.

pub mod engine;
pub mod grid;
pub mod influence;
pub mod kernel;
pub mod raytrace;

pub use engine::{dose_at_points, influence_matrix, DoseCalculation, DoseOptions};
pub use grid::DoseGrid;
pub use influence::InfluenceMatrix;
