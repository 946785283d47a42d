//! Old path of the DICOM file reader, now [`crate::io::dicom::read`] (issue 15); temporary
//! re-exports, to be removed once every caller uses the new path.

#[doc(hidden)]
pub use crate::io::dicom::read::*;
