//! Dose calculation (matRad's `dij` step): pencil-beam photon dose and the influence matrix.

pub mod correction;
pub mod engine;
pub mod exact;
pub mod grid;
pub mod influence;
pub mod kernel;
pub mod raytrace;
pub mod report;
pub mod seam;
pub mod superposition;

pub use correction::{scatter_correction, scatter_correction_bounded};
pub use engine::{
    dose_at_points, influence_matrix, influence_matrix_cancellable, DoseCalculation, DoseOptions,
};
pub use exact::{dose_from_weights, dose_from_weights_cancellable};
pub use grid::{DoseField, DoseGrid, DvhElements, StructureRows, WeightedRows};
pub use influence::{InfluenceMatrix, MatrixValues};
pub use seam::{engine_for, engine_of_kind, DoseEngine, PencilBeam, Superposition};
