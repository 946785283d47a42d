//! # rtopt
//!
//! Treatment-planning optimisation for external-beam photon IMRT, in the matRad workflow:
//! CT and structures ([`case`]), beams ([`beams`]), dose-influence matrix ([`dose`]),
//! fluence optimisation, leaf sequencing ([`sequencing`]), DICOM export ([`export`]) and the
//! plan report ([`report`]).
//!
//! Coordinates are DICOM patient coordinates (LPS, mm); angles follow IEC 61217; doses are
//! in Gy and beamlet weights in MU.

// `Error` carries paths and tag names for clear messages; it is large but only built on the
// cold error path, so boxing it everywhere would buy nothing.
#![allow(clippy::result_large_err)]

pub mod atomic;
pub mod beams;
pub mod budget;
pub mod case;
pub mod cli;
pub mod contours;
pub mod ct;
pub mod dicom_io;
pub mod dose;
pub mod dvh;
pub mod error;
pub mod export;
pub mod gamma;
pub mod geometry;
pub mod machine;
pub mod npz;
pub mod optimize;
pub mod outputs;
pub mod plan;
pub mod progress;
pub mod report;
pub mod segment;
pub mod sequencing;
pub mod structures;

pub use case::{Case, LoadOptions};
pub use ct::CtVolume;
pub use error::{Error, Result};
pub use geometry::{Grid3, Mask};
