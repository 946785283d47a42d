//! Shared helpers for the integration tests. Everything is read from `data/` in this repo.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tg119_dir() -> PathBuf {
    repo().join("data/tg119")
}

/// Copy the DICOM files of the TG119 case (CT + RTSTRUCT) into a new temp folder.
pub fn copy_tg119() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(tg119_dir()).expect("read tg119") {
        let p = e.expect("entry").path();
        if p.extension().and_then(|s| s.to_str()) == Some("dcm") {
            std::fs::copy(&p, t.path().join(p.file_name().expect("name"))).expect("copy");
        }
    }
    t
}

pub fn ct_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("CT."))
        })
        .collect();
    v.sort();
    v
}

/// Decode a run-length encoded mask of `cort_reference.json` (start, length pairs).
pub fn decode_rle(rle: &[u64], n: usize) -> Vec<bool> {
    let mut m = vec![false; n];
    for pair in rle.chunks_exact(2) {
        let (s, l) = (pair[0] as usize, pair[1] as usize);
        for v in m.iter_mut().skip(s).take(l) {
            *v = true;
        }
    }
    m
}

/// A PatientName and a PatientID that must never appear in rtopt's output.
pub const SECRET_NAME: &str = "Privacy^Test";
pub const SECRET_ID: &str = "PID-SECRET-42";

/// Copy of TG119 whose every file carries [`SECRET_NAME`] and [`SECRET_ID`].
pub fn copy_tg119_with_identity() -> tempfile::TempDir {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use rtopt::dicom_io::{self, tags};
    let t = copy_tg119();
    for e in std::fs::read_dir(t.path()).expect("list") {
        let p = e.expect("entry").path();
        let mut f = dicom_io::read(&p).expect("read");
        f.obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from(SECRET_NAME),
        ));
        f.obj.put(DataElement::new(
            tags::PATIENT_ID,
            VR::LO,
            PrimitiveValue::from(SECRET_ID),
        ));
        f.obj.write_to_file(&p).expect("write");
    }
    t
}
