//! Old path of the RT Plan reader, now in [`crate::io::dicom::rtplan`] (issue 15); temporary
//! re-exports, to be removed once every caller uses the new path.

#[doc(hidden)]
pub use crate::io::dicom::rtplan::*;
