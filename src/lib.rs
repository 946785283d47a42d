//! # rtopt
//!
//! Treatment-planning optimisation for external-beam photon IMRT, in the matRad workflow:
//! CT and structures ([`case`]), beams ([`beams`]), dose-influence matrix ([`dose`]),
//! fluence optimisation, leaf sequencing ([`sequencing`]), file formats ([`io`]: DICOM per object
//! type, NIfTI, NumPy, atomic writing) and the plan report ([`report`]).
//!
//! Coordinates are DICOM patient coordinates (LPS, mm); angles follow IEC 61217; doses are
//! in Gy and beamlet weights in MU.

// `Error` carries paths and tag names for clear messages; it is large but only built on the
// cold error path, so boxing it everywhere would buy nothing.
#![allow(clippy::result_large_err)]

#[doc(hidden)]
pub mod atomic;
pub mod beams;
pub mod budget;
pub mod calibration;
pub mod case;
pub mod cli;
pub mod contours;
pub mod ct;
#[doc(hidden)]
pub mod dicom_io;
pub mod dose;
pub mod dvh;
pub mod error;
#[doc(hidden)]
pub mod export;
pub mod gamma;
pub mod geometry;
pub mod io;
pub mod machine;
#[doc(hidden)]
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
