//! Classical body outline: threshold, largest connected component per slice, holes filled,
//! then the largest 3D component. Deterministic; used when a case has no EXTERNAL structure.
//!
//! The algorithm lives with the CT ([`crate::ct::body_outline`]) so that [`crate::case`] can
//! fall back to it without depending on `segment`; the 2D steps are in
//! [`crate::geometry::morph`]. This module names it for the segmentation pipeline.

pub use crate::ct::{body_outline, BODY_THRESHOLD_HU};
