//! Reading DICOM files (with or without a file meta header) and typed access to attributes.
//!
//! Every accessor returns an [`Error::Tag`] naming the file, the tag and its keyword.

// Input module: data from files must never panic (project issue 9, docs/reliability.md).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

use crate::error::{Error, Result};

/// SOP Class UID of CT Image Storage.
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// SOP Class UID of RT Structure Set Storage.
pub const RT_STRUCTURE_SET_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.3";
/// SOP Class UID of RT Plan Storage.
pub const RT_PLAN_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.5";
/// SOP Class UID of RT Dose Storage.
pub const RT_DOSE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.2";

/// A parsed DICOM file together with its path and transfer syntax.
pub struct DicomFile {
    /// Where the file was read from (used in every error message).
    pub path: PathBuf,
    /// Transfer syntax UID of the data set.
    pub transfer_syntax: String,
    /// The data set (with a file meta table; synthesised when the file had none).
    pub obj: FileDicomObject<InMemDicomObject>,
    /// True when the file had no preamble / file meta header.
    pub had_meta: bool,
}

/// Outcome of probing a file: DICOM, or something to set aside.
pub enum Probe {
    Dicom(Box<DicomFile>),
    /// Not DICOM at all (no magic, no parseable data set); the reason is kept for listing.
    NotDicom(String),
}

/// Read `path` as DICOM. Files with a `DICM` magic that fail to parse are errors
/// (truncated or corrupt); files without magic are tried as a raw implicit- or explicit-VR
/// little-endian data set (as written by some tools, e.g. pydicom's `rtstruct.dcm`), and if
/// that fails they are reported as not DICOM.
pub fn probe(path: &Path) -> Result<Probe> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    probe_bytes(path, &bytes)
}

/// [`probe`] on bytes already in memory; `path` is only used in messages.
/// Never panics on any input (fuzzed: see `fuzz/fuzz_targets/ct_slice.rs`).
pub fn probe_bytes(path: &Path, bytes: &[u8]) -> Result<Probe> {
    let has_preamble = bytes.get(128..132) == Some(b"DICM".as_slice());
    let bare_meta = bytes.get(0..4) == Some(b"DICM".as_slice());
    if has_preamble || bare_meta {
        let opts = OpenFileOptions::new().read_preamble(if has_preamble {
            dicom_object::file::ReadPreamble::Always
        } else {
            dicom_object::file::ReadPreamble::Never
        });
        let obj = opts.from_reader(bytes).map_err(|e| Error::BadDicom {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let ts = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        return Ok(Probe::Dicom(Box::new(DicomFile {
            path: path.to_path_buf(),
            transfer_syntax: ts,
            obj,
            had_meta: true,
        })));
    }
    // No meta header: try a raw data set. A plausible one starts with a group-0008 element.
    let head = match bytes.get(..8) {
        Some(&[g0, g1, _, _, v0, v1, _, _]) if u16::from_le_bytes([g0, g1]) == 0x0008 => [v0, v1],
        _ => {
            return Ok(Probe::NotDicom(
                "no DICOM preamble, meta header or data set".into(),
            ))
        }
    };
    let [v0, v1] = head;
    let explicit = v0.is_ascii_uppercase() && v1.is_ascii_uppercase();
    let (ts, ts_uid) = if explicit {
        (
            EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            EXPLICIT_VR_LITTLE_ENDIAN.uid(),
        )
    } else {
        (
            IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            IMPLICIT_VR_LITTLE_ENDIAN.uid(),
        )
    };
    let ds = match InMemDicomObject::read_dataset_with_ts(bytes, &ts) {
        Ok(ds) => ds,
        Err(e) => return Ok(Probe::NotDicom(format!("unparseable data set: {e}"))),
    };
    let sop_class = opt_str(&ds, tags::SOP_CLASS_UID).unwrap_or_default();
    let sop_inst = opt_str(&ds, tags::SOP_INSTANCE_UID).unwrap_or_default();
    if sop_class.is_empty() {
        return Ok(Probe::NotDicom("data set without SOPClassUID".into()));
    }
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_inst)
        .transfer_syntax(ts_uid)
        .build()
        .map_err(|e| Error::BadDicom {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(Probe::Dicom(Box::new(DicomFile {
        path: path.to_path_buf(),
        transfer_syntax: ts_uid.to_string(),
        obj: ds.with_exact_meta(meta),
        had_meta: false,
    })))
}

/// Read a file that must be DICOM.
pub fn read(path: &Path) -> Result<DicomFile> {
    match probe(path)? {
        Probe::Dicom(f) => Ok(*f),
        Probe::NotDicom(reason) => Err(Error::BadDicom {
            path: path.to_path_buf(),
            reason,
        }),
    }
}

/// Standard tags used by rtopt, with their keywords for messages.
pub mod tags {
    pub use dicom_dictionary_std::tags::*;
}

/// Format a tag as `(gggg,eeee)`.
pub fn tag_str(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag.group(), tag.element())
}

/// Optional string value, trimmed of padding. Empty values give `None`.
pub fn opt_str(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if s.is_empty() {
        None
    } else {
        Some(s.to_string())
    }
}

/// Optional multi-valued float.
pub fn opt_f64s(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.get(tag)?.to_multi_float64().ok()
}

/// Accessors that report the file on failure.
pub struct Attr<'a> {
    pub path: &'a Path,
    pub obj: &'a InMemDicomObject,
}

impl<'a> Attr<'a> {
    pub fn new(path: &'a Path, obj: &'a InMemDicomObject) -> Self {
        Attr { path, obj }
    }

    fn err(&self, tag: Tag, name: &'static str, reason: impl Into<String>) -> Error {
        Error::Tag {
            path: self.path.to_path_buf(),
            tag: tag_str(tag),
            name,
            reason: reason.into(),
        }
    }

    /// Required string.
    pub fn string(&self, tag: Tag, name: &'static str) -> Result<String> {
        opt_str(self.obj, tag).ok_or_else(|| self.err(tag, name, "missing or empty"))
    }

    /// Required multi-valued float with exactly `n` values (or at least one when `n == 0`).
    pub fn f64s(&self, tag: Tag, name: &'static str, n: usize) -> Result<Vec<f64>> {
        let e = self
            .obj
            .get(tag)
            .ok_or_else(|| self.err(tag, name, "missing"))?;
        let v = e
            .to_multi_float64()
            .map_err(|err| self.err(tag, name, format!("not numeric: {err}")))?;
        if (n > 0 && v.len() != n) || v.is_empty() {
            return Err(self.err(
                tag,
                name,
                format!("has {} values, expected {}", v.len(), n.max(1)),
            ));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(self.err(tag, name, "contains a non-finite value"));
        }
        Ok(v)
    }

    /// Required multi-valued float with exactly `N` finite values, as an array.
    pub fn f64_array<const N: usize>(&self, tag: Tag, name: &'static str) -> Result<[f64; N]> {
        let v = self.f64s(tag, name, N)?;
        <[f64; N]>::try_from(v.as_slice())
            .map_err(|_| self.err(tag, name, format!("has {} values, expected {N}", v.len())))
    }

    /// Required float.
    pub fn f64(&self, tag: Tag, name: &'static str) -> Result<f64> {
        self.f64s(tag, name, 0)?
            .first()
            .copied()
            .ok_or_else(|| self.err(tag, name, "has no value"))
    }

    /// Optional float with a default.
    pub fn f64_or(&self, tag: Tag, name: &'static str, default: f64) -> Result<f64> {
        if self.obj.get(tag).is_none() {
            return Ok(default);
        }
        self.f64(tag, name)
    }

    /// Required integer.
    pub fn int(&self, tag: Tag, name: &'static str) -> Result<i64> {
        let e = self
            .obj
            .get(tag)
            .ok_or_else(|| self.err(tag, name, "missing"))?;
        e.to_int::<i64>()
            .map_err(|err| self.err(tag, name, format!("not an integer: {err}")))
    }

    /// Sequence items (empty when absent).
    pub fn items(&self, tag: Tag) -> &'a [InMemDicomObject] {
        self.obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
    }

    /// Error for a tag with a bad value.
    pub fn invalid(&self, tag: Tag, name: &'static str, reason: impl Into<String>) -> Error {
        self.err(tag, name, reason)
    }
}
