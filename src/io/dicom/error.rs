//! Errors of the DICOM I/O layer: a file that is not readable DICOM, a missing or unusable
//! attribute, a CT series that cannot be assembled into one volume, pixel data this build
//! cannot decode. Every variant names the file (or folder) and, where there is one, the tag
//! and its keyword. They reach callers as [`crate::Error::Dicom`], with the same message
//! ([`crate::Error::kind`]: input).

use std::path::PathBuf;

/// A DICOM-specific failure. Messages never contain patient names or IDs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DicomError {
    /// The file has a DICOM preamble or meta header but could not be parsed (truncated or corrupt).
    #[error("{path}: not a readable DICOM file: {reason}")]
    BadDicom { path: PathBuf, reason: String },
    /// A required attribute is missing or has an unusable value.
    #[error("{path}: tag {tag} {name}: {reason}")]
    Tag {
        path: PathBuf,
        tag: String,
        name: &'static str,
        reason: String,
    },
    /// The folder holds no CT image.
    #[error("{dir}: no CT Image Storage files found ({found})")]
    NoCt { dir: PathBuf, found: String },
    /// Several CT series in one folder and no choice made.
    #[error(
        "{dir}: {count} CT series found; choose one with --series <SeriesInstanceUID>:\n{listing}"
    )]
    MultipleSeries {
        dir: PathBuf,
        count: usize,
        listing: String,
    },
    /// The requested series is not in the folder.
    #[error("{dir}: no CT series with SeriesInstanceUID {uid}; present:\n{listing}")]
    SeriesNotFound {
        dir: PathBuf,
        uid: String,
        listing: String,
    },
    /// A slice disagrees with the first slice of the series on geometry.
    /// `detail` reads e.g. `512, but the first slice CT.0001.dcm has 256`.
    #[error("{path}: tag {tag} {name} is {detail}")]
    InconsistentSlice {
        path: PathBuf,
        tag: &'static str,
        name: &'static str,
        detail: String,
    },
    /// Non-uniform slice positions: a missing or a duplicated slice.
    #[error("slice spacing: {first} and {second} are {gap_mm:.3} mm apart along the slice normal, expected {expected_mm:.3} mm ({kind})")]
    SliceSpacing {
        first: PathBuf,
        second: PathBuf,
        gap_mm: f64,
        expected_mm: f64,
        kind: &'static str,
    },
    /// An image orientation that rtopt does not support.
    #[error("{path}: tag (0020,0037) ImageOrientationPatient {value}: only axial slices with row direction +x and column direction +y (LPS) are supported; oblique or tilted series must be resampled first")]
    UnsupportedOrientation { path: PathBuf, value: String },
    /// Pixel data that this build cannot decode.
    #[error("{path}: transfer syntax {uid} ({name}) cannot be decoded by this build: {reason}")]
    UnsupportedTransferSyntax {
        path: PathBuf,
        uid: String,
        name: String,
        reason: String,
    },
}
