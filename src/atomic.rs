//! Old path of the atomic writers, now [`crate::io::atomic`] (issue 15); temporary
//! re-exports, to be removed once every caller uses the new path.

#[doc(hidden)]
pub use crate::io::atomic::*;
