//! Old path of the DICOM writers and readers, now [`crate::io::dicom`] (issue 15).
//!
//! Temporary re-exports for code written before the I/O layer; to be removed once every
//! caller uses `crate::io::dicom`.

#[doc(hidden)]
pub use crate::io::dicom::*;

#[doc(hidden)]
pub mod plan_import;
