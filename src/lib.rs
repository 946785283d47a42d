//! # rtopt
//!
//! Treatment-planning optimisation for external-beam photon IMRT, in the matRad workflow:
//! CT and structures ([`case`]), beams ([`beams`]), dose-influence matrix ([`dose`]),
//! fluence optimisation ([`optimize`]), leaf sequencing ([`sequencing`]), file formats
//! ([`io`]: DICOM per object type, NIfTI, NumPy, atomic writing) and the plan report
//! ([`report`]), tied together by the staged planner ([`plan`]). The module map and the seams
//! are in `docs/architecture.md`.
//!
//! Coordinates are DICOM patient coordinates (LPS, mm); angles follow IEC 61217; doses in a
//! protocol and a report are total doses over the course in Gy, beamlet weights are MU per
//! fraction.
//!
//! ## The staged API
//!
//! [`plan::Planner::prepare`] builds the beams and the influence matrix once;
//! [`plan::PreparedPlan::optimise`] solves a [`plan::Variant`] (changed weights or doses) as
//! often as wanted on it; [`plan::PreparedPlan::sequence`] and [`plan::PreparedPlan::finish`]
//! make the deliverable plan and its report, and [`plan::PlannedCase::write`] writes RTPLAN,
//! RTDOSE and the report atomically. Observers ([`plan::PlanObserver`]) see every stage and
//! solver iteration; a [`control::CancelToken`] stops any stage.
//!
//! ```
//! use std::sync::Arc;
//! use rtopt::beams::BeamSetup;
//! use rtopt::optimize::protocol::Protocol;
//! use rtopt::plan::{EventLog, Planner, Variant};
//!
//! // A water phantom with TG-119's C-shape target around a core (built in memory).
//! let case = rtopt::phantom::c_shape(4.0);
//! let protocol = Protocol::from_toml_str(
//!     r#"
//!     [prescription]
//!     total_dose_gy = 50.0
//!     fractions = 25
//!     target = "OuterTarget"
//!     [[structure]]
//!     name = "OuterTarget"
//!     goals = [{ type = "deviation", dose_gy = 50.0, weight = 100.0 }]
//!     [[structure]]
//!     name = "Core"
//!     goals = [{ type = "overdose", dose_gy = 20.0, weight = 10.0 }]
//!     "#,
//!     std::path::Path::new("<doctest>"),
//! )?;
//! let log = Arc::new(EventLog::default());
//! let mut prepared = Planner::new(case, protocol)
//!     .with_beam_setup(BeamSetup {
//!         gantry_deg: vec![0.0, 72.0, 144.0, 216.0, 288.0],
//!         beamlet_size_mm: 10.0,
//!         ..BeamSetup::default()
//!     })
//!     .with_observer(log.clone())
//!     .prepare()?;
//! let overdose = |o: &rtopt::plan::OptimisedPlan| {
//!     o.result.goals.iter().find(|g| g.structure == "Core").unwrap().objective_value.unwrap()
//! };
//! let base = prepared.optimise(&Variant::default())?;
//! let sparing = prepared.optimise(&Variant::new("core sparing").weight("Core", "overdose", 100.0))?;
//! // Ten times the weight: a smaller Core overdose term per unit weight.
//! assert!(overdose(&sparing) / 100.0 < overdose(&base) / 10.0);
//! assert!(log.iterations() > 0);
//! # Ok::<(), rtopt::Error>(())
//! ```

// `Error` carries paths and tag names for clear messages; it is large but only built on the
// cold error path, so boxing it everywhere would buy nothing.
#![allow(clippy::result_large_err)]

#[doc(hidden)]
pub mod beams;
pub mod budget;
pub mod calibration;
pub mod case;
pub mod contours;
pub mod control;
pub mod ct;
pub mod deliverability;
#[doc(hidden)]
pub mod dose;
pub mod dvh;
pub mod error;
pub mod gamma;
pub mod geometry;
pub mod io;
pub mod machine;
pub mod net;
pub mod optimize;
pub mod outputs;
pub mod phantom;
pub mod plan;
pub mod report;
pub mod segment;
pub mod sequencing;
pub mod structures;

pub use case::{Case, LoadOptions};
pub use ct::CtVolume;
pub use error::{Error, Result};
pub use geometry::{Grid3, Mask};
