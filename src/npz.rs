//! Old path of the NumPy writer, now [`crate::io::npz`] (issue 15); temporary re-exports, to
//! be removed once every caller uses the new path.

#[doc(hidden)]
pub use crate::io::npz::*;
