//! Typed errors. Every variant that concerns user input names the file, the DICOM tag,
//! the structure or the goal it is about, so a planner can act on the message.

use std::path::PathBuf;

pub use crate::io::dicom::error::DicomError;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by rtopt. Messages never contain patient names or IDs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A DICOM-specific failure (unreadable file, missing or bad tag, CT series that cannot be
    /// assembled, pixel data this build cannot decode), with its message unchanged.
    #[error(transparent)]
    Dicom(#[from] DicomError),
    /// The RT Structure Set refers to another frame of reference than the CT.
    #[error("{path}: RTSTRUCT frame of reference {rtstruct_uid} does not match the CT's {ct_uid} (tag (3006,0024) ReferencedFrameOfReferenceUID)")]
    FrameOfReferenceMismatch {
        path: PathBuf,
        rtstruct_uid: String,
        ct_uid: String,
    },
    /// A contour cannot be placed on the CT grid.
    #[error("ROI '{roi}': contour {contour} at z = {z_mm:.2} mm {reason}")]
    ContourOffGrid {
        roi: String,
        contour: usize,
        z_mm: f64,
        reason: String,
    },
    /// A closed planar contour with fewer than three points, or non-planar.
    #[error("{path}: ROI '{roi}': contour {contour} {reason}")]
    BadContour {
        path: PathBuf,
        roi: String,
        contour: usize,
        reason: String,
    },
    /// A structure named by a protocol, a command or a goal is not present.
    #[error("structure '{name}' not found; present: {present}")]
    StructureNotFound { name: String, present: String },
    /// A machine, protocol or model file is invalid.
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// Invalid arguments given through the library API or the command line.
    #[error("{0}")]
    Invalid(String),
    /// The hard constraints of a protocol cannot all be met. `constraints` names the
    /// conflicting ones in the protocol's words; `violations_gy[i]` (when known: the
    /// interior-point backend's phase 1) is by how much constraint `i` gives way, Gy total,
    /// in the relaxation with the least total violation (one elastic slack per hard
    /// constraint, 1 per Gy).
    #[error("infeasible protocol: the hard constraints cannot all hold; conflicting: {}", conflicts(.constraints, .violations_gy))]
    Infeasible {
        constraints: Vec<String>,
        violations_gy: Vec<Option<f64>>,
    },
    /// The solver stopped without a usable solution.
    #[error("optimisation failed: {0}")]
    Solver(String),
    /// An output path that rtopt may not write (an input, a folder or file it did not
    /// create, a previous output without `--force`); checked before any computation.
    #[error("{path}: output refused: {reason}")]
    Output { path: PathBuf, reason: String },
    /// A finished plan that no clinic would accept (MU, normalisation, deliverable agreement,
    /// ...): nothing is exported. Each reason names the quantity, its value and the limit.
    #[error("plan refused as implausible: {}", .reasons.join("; "))]
    Implausible { reasons: Vec<String> },
    /// The caller cancelled a running computation (an observer or a cancel token).
    #[error("cancelled during {stage}")]
    Cancelled { stage: String },
    /// A planned resource would exceed the configured memory budget.
    #[error("{what} would need {needed_bytes} bytes, above the memory budget of {budget_bytes} bytes; {advice}")]
    MemoryBudget {
        what: String,
        needed_bytes: u64,
        budget_bytes: u64,
        advice: String,
    },
    /// A structure name matches several ROIs, exactly or case-insensitively (issue 14).
    /// `rois` reads e.g. `ROI 3 'BODY' (ORGAN) and ROI 7 'body' (EXTERNAL)`.
    #[error("structure '{name}' is ambiguous: {rois}; rename one in the RT Structure Set")]
    AmbiguousStructure { name: String, rois: String },
    /// Several ROIs could be the body outline (type EXTERNAL, or named BODY/External/Skin).
    #[error("the body outline is ambiguous: {rois} {reason}; keep one EXTERNAL ROI (RTROIInterpretedType (3006,00A4)) in the RT Structure Set")]
    AmbiguousBody { rois: String, reason: String },
    /// A structure named by a protocol or a command has no voxel on the CT grid.
    #[error("structure '{name}' (ROI {number}) is empty: {reason}; it cannot carry a goal")]
    EmptyStructure {
        name: String,
        number: i64,
        reason: String,
    },
    /// DICOM networking failed: a node could not be reached, refused the association or a
    /// request, sent something rtopt does not accept, or broke off. `node` names the node
    /// (configured name or AE title and address); `reason` never holds patient data.
    #[error("DICOM node {node}: {reason}")]
    Network { node: String, reason: String },
    /// One ROI of the RT Structure Set refers to another frame of reference than the CT.
    #[error("{path}: ROI {number} '{roi}': tag (3006,0024) ReferencedFrameOfReferenceUID {roi_uid} does not match the CT's FrameOfReferenceUID {ct_uid}")]
    RoiFrameOfReferenceMismatch {
        path: PathBuf,
        number: i64,
        roi: String,
        roi_uid: String,
        ct_uid: String,
    },
}

/// What kind of failure an [`Error`] is; the command line derives its exit code from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: a file, tag, structure, protocol, argument or output path (exit 2).
    Input,
    /// The protocol's hard constraints cannot all hold (exit 3).
    Infeasible,
    /// A plan was made but is not acceptable: implausible (exit 4; unmet hard goals after
    /// sequencing also exit 4, but are not an error).
    Refused,
    /// Reading or writing a file failed (exit 5).
    Io,
    /// The solver or rtopt itself failed (exit 1).
    Internal,
}

impl ErrorKind {
    /// The process exit code of `rtopt` for this kind (documented in `rtopt --help`).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::Input => 2,
            ErrorKind::Infeasible => 3,
            ErrorKind::Refused => 4,
            ErrorKind::Io => 5,
        }
    }
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Network { .. } => ErrorKind::Io,
            Error::Dicom(_) => ErrorKind::Input,
            Error::Infeasible { .. } => ErrorKind::Infeasible,
            Error::Implausible { .. } => ErrorKind::Refused,
            Error::Solver(_) => ErrorKind::Internal,
            Error::Cancelled { .. } => ErrorKind::Internal,
            _ => ErrorKind::Input,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `"A (gives way by 1.23 Gy); B"` for [`Error::Infeasible`].
fn conflicts(constraints: &[String], violations_gy: &[Option<f64>]) -> String {
    constraints
        .iter()
        .enumerate()
        .map(|(i, c)| match violations_gy.get(i).copied().flatten() {
            Some(v) => format!("{c} (gives way by {v:.2} Gy at the least total violation)"),
            None => c.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::{DicomError, Error, ErrorKind};

    #[test]
    fn dicom_errors_are_input_errors_with_their_own_message() {
        let e: Error = DicomError::Tag {
            path: "CT.1.dcm".into(),
            tag: "(0028,0010)".into(),
            name: "Rows",
            reason: "missing".into(),
        }
        .into();
        assert_eq!(e.kind(), ErrorKind::Input);
        assert_eq!(e.to_string(), "CT.1.dcm: tag (0028,0010) Rows: missing");
        assert!(matches!(
            e,
            Error::Dicom(DicomError::Tag { name: "Rows", .. })
        ));
    }
}
