//! Old path of the NIfTI reader, now [`crate::io::nifti`] (issue 15); temporary re-exports, to
//! be removed once every caller uses the new path.

#[doc(hidden)]
pub use crate::io::nifti::*;
