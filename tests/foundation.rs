//! Foundation: CT and RTSTRUCT import, rasterisation, and the bad-input corpus.
//! Reference numbers come from `data/tg119/cort_reference.json` (written by the converter
//! that produced the DICOM files from matRad's TG119.mat) and `data/tg119/README.md`.

mod common;

use std::path::Path;
use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, VR};
use rtopt::error::DicomError;
use rtopt::io::dicom::read::{self as dicom, tags};
use rtopt::{Case, Error, LoadOptions};

fn load(dir: &Path) -> rtopt::Result<Case> {
    Case::load(dir, &LoadOptions::default())
}

#[test]
fn tg119_ct_geometry_and_hu() {
    let case = load(&common::tg119_dir()).expect("TG119 loads");
    let g = case.ct.grid;
    assert_eq!(g.dims, [167, 167, 129]);
    for (a, b) in g.spacing_mm.iter().zip([3.0, 3.0, 2.5]) {
        assert!((a - b).abs() < 1e-6, "spacing {:?}", g.spacing_mm);
    }
    for (a, b) in g.origin_mm.iter().zip([-250.0, -250.0, -160.0]) {
        assert!((a - b).abs() < 1e-6, "origin {:?}", g.origin_mm);
    }
    // cort_reference.json hu_range: [-1000.0, 1040.33]; stored as integers + 1024 -> +-0.5 HU.
    let (lo, hi) = case.ct.hu_range();
    assert!((lo + 1000.0).abs() <= 1.0, "HU min {lo}");
    assert!((hi - 1040.33).abs() <= 1.0, "HU max {hi}");
    assert_eq!(case.ct.meta.patient_position, "HFS");
    assert_eq!(case.ct.meta.sop_instance_uids.len(), 129);
}

#[test]
fn tg119_masks_match_ground_truth_voxel_for_voxel() {
    let case = load(&common::tg119_dir()).expect("TG119 loads");
    let text = std::fs::read_to_string(common::tg119_dir().join("cort_reference.json"))
        .expect("reference json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let n = case.ct.grid.len();
    let expected_counts = [
        ("Core", 1320usize),
        ("OuterTarget", 7458),
        ("BODY", 601_736),
    ];
    for s in v["structures"].as_array().expect("structures") {
        let name = s["name"].as_str().expect("name");
        let rle: Vec<u64> = s["mask_rle"]
            .as_array()
            .expect("rle")
            .iter()
            .map(|x| x.as_u64().expect("int"))
            .collect();
        let reference = common::decode_rle(&rle, n);
        let ours = &case.structure(name).expect("structure present").mask;
        let diff = ours
            .inside
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            diff, 0,
            "{name}: {diff} voxels differ from the ground truth"
        );
        let want = expected_counts
            .iter()
            .find(|(nm, _)| *nm == name)
            .map(|x| x.1)
            .expect("known structure");
        assert_eq!(ours.count(), want, "{name} voxel count");
    }
    let types: Vec<_> = case
        .structures
        .iter()
        .map(|s| (s.roi.name.as_str(), s.roi.interpreted_type.as_str()))
        .collect();
    assert!(types.contains(&("OuterTarget", "PTV")));
    assert!(types.contains(&("BODY", "EXTERNAL")));
}

#[test]
fn pydicom_rtstruct_without_meta_header_lists_rois() {
    let path = common::repo().join("data/pydicom/rtstruct.dcm");
    let f = dicom::read(&path).expect("reads");
    assert!(!f.had_meta, "the sample has no file meta header");
    let ss = rtopt::io::dicom::rtstruct::read_rtstruct(&path).expect("parses");
    let names: Vec<&str> = ss.rois.iter().map(|r| r.name.as_str()).collect();
    assert!(names.contains(&"patient"), "{names:?}");
    let patient = ss.roi("patient").expect("patient ROI");
    assert_eq!(patient.interpreted_type, "EXTERNAL");
    assert!(patient.is_volume());
    assert_eq!(ss.rois.len(), 3, "{names:?}");
}

// ---- bad-input corpus, built from the good files ----

fn modify(path: &Path, f: impl FnOnce(&mut dicom_object::InMemDicomObject)) {
    let mut file = dicom::read(path).expect("read");
    f(&mut file.obj);
    file.obj.write_to_file(path).expect("write");
}

fn err_of(dir: &Path) -> (Error, String) {
    let e = load(dir).expect_err("must fail");
    let msg = e.to_string();
    (e, msg)
}

fn inspect_fails_with(dir: &Path, needle: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .arg("inspect")
        .arg(dir)
        .output()
        .expect("run rtopt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(needle), "'{needle}' not in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_truncated_file() {
    let t = common::copy_tg119();
    let victim = common::ct_files(t.path())[60].clone();
    let bytes = std::fs::read(&victim).expect("read");
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).expect("truncate");
    let (_, msg) = err_of(t.path());
    let name = victim.file_name().expect("n").to_string_lossy().to_string();
    assert!(msg.contains(&name), "{msg}");
    inspect_fails_with(t.path(), &name);
}

#[test]
fn bad_pixel_data_removed() {
    let t = common::copy_tg119();
    let victim = common::ct_files(t.path())[10].clone();
    modify(&victim, |o| {
        o.remove_element(tags::PIXEL_DATA);
    });
    let (e, msg) = err_of(t.path());
    assert!(
        matches!(
            e,
            Error::Dicom(DicomError::Tag {
                name: "PixelData",
                ..
            })
        ),
        "{msg}"
    );
    assert!(
        msg.contains("(7FE0,0010)") && msg.contains("CT.TG119.0011.dcm"),
        "{msg}"
    );
    inspect_fails_with(t.path(), "PixelData");
}

#[test]
fn bad_wrong_modality() {
    let t = common::copy_tg119();
    let victim = common::ct_files(t.path())[5].clone();
    modify(&victim, |o| {
        o.put(DataElement::new(
            tags::MODALITY,
            VR::CS,
            PrimitiveValue::from("MR"),
        ));
    });
    let (e, msg) = err_of(t.path());
    assert!(
        matches!(
            e,
            Error::Dicom(DicomError::Tag {
                name: "Modality",
                ..
            })
        ),
        "{msg}"
    );
    assert!(msg.contains("'MR'"), "{msg}");
}

#[test]
fn bad_two_series_mixed_and_series_choice() {
    let t = common::copy_tg119();
    let files = common::ct_files(t.path());
    let other = "2.25.1234567890";
    for f in &files[65..] {
        modify(f, |o| {
            o.put(DataElement::new(
                tags::SERIES_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(other),
            ));
        });
    }
    let (e, msg) = err_of(t.path());
    assert!(
        matches!(e, Error::Dicom(DicomError::MultipleSeries { count: 2, .. })),
        "{msg}"
    );
    assert!(
        msg.contains(other) && msg.contains("64 slices") && msg.contains("65 slices"),
        "{msg}"
    );
    inspect_fails_with(t.path(), "--series");
    // Choosing one series works (the RTSTRUCT's contours beyond it are then off the grid,
    // so load the CT alone).
    let (ct, _) = rtopt::io::dicom::ct::load_ct_folder(
        t.path(),
        &rtopt::io::dicom::ct::CtImportOptions {
            series_uid: Some(other.into()),
            memory_budget_bytes: None,
            ..Default::default()
        },
    )
    .expect("chosen series loads");
    assert_eq!(ct.grid.dims[2], 64);
}

#[test]
fn bad_missing_slice() {
    let t = common::copy_tg119();
    let files = common::ct_files(t.path());
    std::fs::remove_file(&files[40]).expect("rm");
    let (e, msg) = err_of(t.path());
    assert!(
        matches!(
            e,
            Error::Dicom(DicomError::SliceSpacing {
                kind: "missing slice (gap)",
                ..
            })
        ),
        "{msg}"
    );
    assert!(
        msg.contains("CT.TG119.0040.dcm") && msg.contains("CT.TG119.0042.dcm"),
        "{msg}"
    );
    inspect_fails_with(t.path(), "missing slice");
}

#[test]
fn bad_duplicated_slice() {
    let t = common::copy_tg119();
    let files = common::ct_files(t.path());
    std::fs::copy(&files[30], t.path().join("CT.TG119.dup.dcm")).expect("dup");
    let (e, msg) = err_of(t.path());
    assert!(
        matches!(
            e,
            Error::Dicom(DicomError::SliceSpacing {
                kind: "duplicate slice position",
                ..
            })
        ),
        "{msg}"
    );
    assert!(
        msg.contains("CT.TG119.0031.dcm") && msg.contains("CT.TG119.dup.dcm"),
        "{msg}"
    );
}

#[test]
fn bad_tilted_orientation() {
    let t = common::copy_tg119();
    let (c, s) = (10f64.to_radians().cos(), 10f64.to_radians().sin());
    for f in common::ct_files(t.path()) {
        modify(&f, |o| {
            o.put(DataElement::new(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                PrimitiveValue::from(format!("1\\0\\0\\0\\{c:.6}\\{s:.6}")),
            ));
        });
    }
    let (e, msg) = err_of(t.path());
    assert!(
        matches!(e, Error::Dicom(DicomError::UnsupportedOrientation { .. })),
        "{msg}"
    );
    assert!(msg.contains("(0020,0037)"), "{msg}");
}

fn rs_path(dir: &Path) -> std::path::PathBuf {
    dir.join("RS.TG119.dcm")
}

#[test]
fn bad_rtstruct_other_frame_of_reference() {
    let t = common::copy_tg119();
    let rs = rs_path(t.path());
    let mut file = dicom::read(&rs).expect("read");
    let mut items = file
        .obj
        .get(tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE)
        .and_then(|e| e.items())
        .expect("seq")
        .to_vec();
    items[0].put(DataElement::new(
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        PrimitiveValue::from("2.25.999"),
    ));
    file.obj.put(DataElement::new(
        tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(items),
    ));
    file.obj.write_to_file(&rs).expect("write");
    let (e, msg) = err_of(t.path());
    assert!(matches!(e, Error::FrameOfReferenceMismatch { .. }), "{msg}");
    assert!(
        msg.contains("2.25.999") && msg.contains("RS.TG119.dcm"),
        "{msg}"
    );
    inspect_fails_with(t.path(), "frame of reference");
}

#[test]
fn bad_contour_with_two_points() {
    let t = common::copy_tg119();
    let rs = rs_path(t.path());
    let mut file = dicom::read(&rs).expect("read");
    let mut rois = file
        .obj
        .get(tags::ROI_CONTOUR_SEQUENCE)
        .and_then(|e| e.items())
        .expect("seq")
        .to_vec();
    let mut contours = rois[0]
        .get(tags::CONTOUR_SEQUENCE)
        .and_then(|e| e.items())
        .expect("contours")
        .to_vec();
    contours[0].put(DataElement::new(
        tags::CONTOUR_DATA,
        VR::DS,
        PrimitiveValue::from("0\\0\\0\\1\\1\\0"),
    ));
    contours[0].put(DataElement::new(
        tags::NUMBER_OF_CONTOUR_POINTS,
        VR::IS,
        PrimitiveValue::from("2"),
    ));
    rois[0].put(DataElement::new(
        tags::CONTOUR_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(contours),
    ));
    file.obj.put(DataElement::new(
        tags::ROI_CONTOUR_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(rois),
    ));
    file.obj.write_to_file(&rs).expect("write");
    let (e, msg) = err_of(t.path());
    assert!(matches!(e, Error::BadContour { .. }), "{msg}");
    assert!(
        msg.contains("2 point(s)") && msg.contains("contour 0"),
        "{msg}"
    );
}

#[test]
fn bad_contour_off_the_grid() {
    let case = load(&common::tg119_dir()).expect("loads");
    let mut roi = case.structure("Core").expect("core").roi.clone();
    for p in roi.contours[0].points_mm.iter_mut() {
        p[2] = 500.0;
    }
    let e = rtopt::structures::rasterize(&roi, &case.ct.grid).expect_err("off grid");
    let msg = e.to_string();
    assert!(msg.contains("Core") && msg.contains("z = 500.00"), "{msg}");
}

#[test]
fn bad_empty_folder_and_stray_files() {
    let t = tempfile::tempdir().expect("tmp");
    let (e, msg) = err_of(t.path());
    assert!(matches!(e, Error::Dicom(DicomError::NoCt { .. })), "{msg}");
    inspect_fails_with(t.path(), "no CT Image Storage files");
    // Stray files beside a good series are set aside, not errors.
    let t = common::copy_tg119();
    std::fs::write(t.path().join("notes.txt"), "not dicom").expect("write");
    std::fs::copy(
        common::repo().join("data/pydicom/rtplan.dcm"),
        t.path().join("plan.dcm"),
    )
    .expect("copy");
    let case = load(t.path()).expect("stray files are set aside");
    assert_eq!(case.scan.not_dicom.len(), 1);
    assert_eq!(case.scan.other_dicom.len(), 1);
}

#[test]
fn inspect_json_reports_structures() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .args(["inspect", "--json"])
        .arg(common::tg119_dir())
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["dims"], serde_json::json!([167, 167, 129]));
    let core = v["structures"]
        .as_array()
        .expect("arr")
        .iter()
        .find(|s| s["name"] == "Core")
        .expect("core");
    assert_eq!(core["voxels"], 1320);
    // 1320 voxels x 22.5 mm3 = 29.7 cm3 (cort_reference.json volume_cc)
    assert!((core["volume_cm3"].as_f64().expect("f") - 29.7).abs() < 1e-6);
}
