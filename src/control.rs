//! Cooperative control of long computations: a cancellation flag shared between the caller
//! and a running stage, and the answer an observer gives after each reported step.
//!
//! The flag is checked inside the long loops (per beamlet of the influence matrix, per beam
//! of a forward dose, per solver iteration, between planning stages); a cancelled computation
//! ends with [`crate::Error::Cancelled`] naming the stage, and leaves no output behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Whether a computation goes on after a reported step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// A cancellation flag shared between the caller and a running computation (clones share
/// the flag; cancelling is permanent for that token).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the running computation to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// `Err(Cancelled { stage })` once cancelled.
    pub fn check(&self, stage: &str) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled {
                stage: stage.to_string(),
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_check_names_the_stage() {
        let t = CancelToken::new();
        let u = t.clone();
        assert!(t.check("beams").is_ok());
        u.cancel();
        assert!(t.is_cancelled());
        let e = t.check("dose influence matrix").unwrap_err();
        assert_eq!(e.to_string(), "cancelled during dose influence matrix");
    }
}
