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
    use rtopt::io::dicom::read::{self as dicom, tags};
    let t = copy_tg119();
    for e in std::fs::read_dir(t.path()).expect("list") {
        let p = e.expect("entry").path();
        let mut f = dicom::read(&p).expect("read");
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

/// CT B (20 DICOM slices) in a temporary folder, with the UIDs that the fixture's anonymiser
/// blanked filled in: StudyInstanceUID and SeriesInstanceUID derived from the
/// FrameOfReferenceUID, SOPClassUID and SOPInstanceUID from the file meta group. Pixel data
/// (JPEG 2000 lossless) and geometry are untouched. rtopt's CT reader needs a
/// SeriesInstanceUID to group slices.
pub fn ct_b() -> tempfile::TempDir {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use rtopt::io::dicom::read::tags;
    let out = tempfile::tempdir().expect("tempdir");
    let src = repo().join("data/totalseg/example_ct_dicom");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("CT B folder")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 20);
    for f in files {
        let mut obj = dicom_object::open_file(&f).expect("CT B slice");
        let frame =
            rtopt::io::dicom::read::opt_str(&obj, tags::FRAME_OF_REFERENCE_UID).expect("FoR");
        let sop = obj
            .meta()
            .media_storage_sop_instance_uid()
            .trim_end_matches('\0')
            .to_string();
        let class = obj
            .meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_string();
        let study = rtopt::io::dicom::uid::derive_uid("test-ct-b-study", &[frame.as_bytes()]);
        let series = rtopt::io::dicom::uid::derive_uid("test-ct-b-series", &[frame.as_bytes()]);
        for (tag, v) in [
            (tags::SOP_CLASS_UID, class),
            (tags::SOP_INSTANCE_UID, sop),
            (tags::STUDY_INSTANCE_UID, study),
            (tags::SERIES_INSTANCE_UID, series),
        ] {
            obj.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(v)));
        }
        obj.write_to_file(out.path().join(f.file_name().expect("name")))
            .expect("write CT B copy");
    }
    out
}

/// DICOM conformance (dciodvfy from dicom3tools), where installed: no line starting "Error".
pub fn assert_dciodvfy_clean(path: &Path) {
    let Ok(out) = std::process::Command::new("dciodvfy").arg(path).output() else {
        eprintln!("dciodvfy not installed: conformance check skipped");
        return;
    };
    let report =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("Error")).collect();
    eprintln!("dciodvfy {}: {} errors", path.display(), errors.len());
    assert!(errors.is_empty(), "dciodvfy errors:\n{}", errors.join("\n"));
}

/// Peak resident memory of this process, MiB (VmHWM of `/proc/self/status`; NaN elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse::<f64>().ok()))
                .flatten()
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A fixed creation time for reproducible outputs: 2026-12-02T16:46:56Z.
pub fn fixed_time() -> rtopt::io::dicom::identity::CreationTime {
    rtopt::io::dicom::identity::CreationTime::from_unix_seconds(1_796_230_016).expect("time")
}
