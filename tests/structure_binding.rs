//! Strict structure binding (project issue 14, item 2; `docs/import.md`): ambiguous ROI names
//! and body outlines are refused, empty ROIs stay listed as empty and cannot carry a goal, every
//! ROI's frame of reference is checked, self-intersecting and zero-area contours are warned
//! about, and a missing PatientPosition is refused unless `assume_hfs`.
//!
//! Every bad input is generated here by code from a copy of the shipped TG119 case (open the
//! RTSTRUCT or CT with dicom-object, modify, write), and every load checks that the sha256 of
//! each input file is unchanged afterwards.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use rtopt::error::DicomError;
use rtopt::io::dicom::read::{self as dicom, tags};
use rtopt::structures::{contour_defect, ContourDefect};
use rtopt::{Case, Error, LoadOptions};
use sha2::{Digest, Sha256};

/// Voxel counts of the unmodified case (`rtopt inspect data/tg119` before this work, and
/// `tests/foundation.rs`).
const TG119_COUNTS: [(&str, usize); 3] = [("Core", 1320), ("OuterTarget", 7458), ("BODY", 601_736)];

fn rs(dir: &Path) -> PathBuf {
    dir.join("RS.TG119.dcm")
}

/// sha256 of every file in `dir`.
fn hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("list") {
        let p = e.expect("entry").path();
        let bytes = std::fs::read(&p).expect("read");
        let h: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        m.insert(p, h);
    }
    m
}

/// Load `dir` with `opts` and check that no input file changed.
fn load_with(dir: &Path, opts: &LoadOptions) -> rtopt::Result<Case> {
    let before = hashes(dir);
    let r = Case::load(dir, opts);
    assert_eq!(before, hashes(dir), "an input file changed during the load");
    r
}

fn load(dir: &Path) -> rtopt::Result<Case> {
    load_with(dir, &LoadOptions::default())
}

/// Run `rtopt inspect` (extra args first) on `dir`; the inputs must be unchanged afterwards.
fn inspect_cli(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let before = hashes(dir);
    let out = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .arg("inspect")
        .args(extra)
        .arg(dir)
        .output()
        .expect("run rtopt");
    assert_eq!(before, hashes(dir), "rtopt inspect changed an input file");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stdout, stderr)
}

fn modify(path: &Path, f: impl FnOnce(&mut InMemDicomObject)) {
    let mut file = dicom::read(path).expect("read");
    f(&mut file.obj);
    file.obj.write_to_file(path).expect("write");
}

/// Edit the items of the sequence `tag` of `obj` (empty when absent).
fn edit_seq(obj: &mut InMemDicomObject, tag: Tag, f: impl FnOnce(&mut Vec<InMemDicomObject>)) {
    let mut items = obj
        .get(tag)
        .and_then(|e| e.items())
        .map(|i| i.to_vec())
        .unwrap_or_default();
    f(&mut items);
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

fn item_of(items: &mut [InMemDicomObject], number_tag: Tag, number: i64) -> &mut InMemDicomObject {
    items
        .iter_mut()
        .find(|it| {
            it.get(number_tag)
                .and_then(|e| e.to_int::<i64>().ok())
                .is_some_and(|n| n == number)
        })
        .expect("item with that ROI number")
}

/// Set the ROIName of ROI `number`.
fn rename_roi(dir: &Path, number: i64, name: &str) {
    modify(&rs(dir), |o| {
        edit_seq(o, tags::STRUCTURE_SET_ROI_SEQUENCE, |items| {
            put_str(
                item_of(items, tags::ROI_NUMBER, number),
                tags::ROI_NAME,
                VR::LO,
                name,
            );
        })
    });
}

/// Set the RTROIInterpretedType of ROI `number`.
fn retype_roi(dir: &Path, number: i64, kind: &str) {
    modify(&rs(dir), |o| {
        edit_seq(o, tags::RTROI_OBSERVATIONS_SEQUENCE, |items| {
            put_str(
                item_of(items, tags::REFERENCED_ROI_NUMBER, number),
                tags::RTROI_INTERPRETED_TYPE,
                VR::CS,
                kind,
            );
        })
    });
}

/// A contour item with these points.
fn contour_item(kind: &str, points: &[[f64; 3]]) -> InMemDicomObject {
    let mut c = InMemDicomObject::new_empty();
    put_str(&mut c, tags::CONTOUR_GEOMETRIC_TYPE, VR::CS, kind);
    put_str(
        &mut c,
        tags::NUMBER_OF_CONTOUR_POINTS,
        VR::IS,
        &points.len().to_string(),
    );
    let data: Vec<String> = points.iter().flatten().map(|v| format!("{v}")).collect();
    put_str(&mut c, tags::CONTOUR_DATA, VR::DS, &data.join("\\"));
    c
}

/// Add ROI `number` named `name` of type `kind`, in the CT's frame, with `contours`
/// (no ROIContourSequence item at all when `contours` is None).
fn add_roi(
    dir: &Path,
    number: i64,
    name: &str,
    kind: &str,
    contours: Option<Vec<InMemDicomObject>>,
) {
    modify(&rs(dir), |o| {
        let frame = dicom::opt_str(
            o.get(tags::STRUCTURE_SET_ROI_SEQUENCE)
                .and_then(|e| e.items())
                .and_then(|i| i.first())
                .expect("an ROI item"),
            tags::REFERENCED_FRAME_OF_REFERENCE_UID,
        )
        .expect("per-ROI frame");
        edit_seq(o, tags::STRUCTURE_SET_ROI_SEQUENCE, |items| {
            let mut it = InMemDicomObject::new_empty();
            put_str(&mut it, tags::ROI_NUMBER, VR::IS, &number.to_string());
            put_str(
                &mut it,
                tags::REFERENCED_FRAME_OF_REFERENCE_UID,
                VR::UI,
                &frame,
            );
            put_str(&mut it, tags::ROI_NAME, VR::LO, name);
            put_str(&mut it, tags::ROI_GENERATION_ALGORITHM, VR::CS, "MANUAL");
            items.push(it);
        });
        edit_seq(o, tags::RTROI_OBSERVATIONS_SEQUENCE, |items| {
            let mut it = InMemDicomObject::new_empty();
            put_str(
                &mut it,
                tags::OBSERVATION_NUMBER,
                VR::IS,
                &number.to_string(),
            );
            put_str(
                &mut it,
                tags::REFERENCED_ROI_NUMBER,
                VR::IS,
                &number.to_string(),
            );
            put_str(&mut it, tags::RTROI_INTERPRETED_TYPE, VR::CS, kind);
            put_str(&mut it, tags::ROI_INTERPRETER, VR::PN, "");
            items.push(it);
        });
        if let Some(contours) = contours {
            edit_seq(o, tags::ROI_CONTOUR_SEQUENCE, |items| {
                let mut it = InMemDicomObject::new_empty();
                put_str(&mut it, tags::ROI_DISPLAY_COLOR, VR::IS, "0\\255\\0");
                it.put(DataElement::new(
                    tags::CONTOUR_SEQUENCE,
                    VR::SQ,
                    DataSetSequence::from(contours),
                ));
                put_str(
                    &mut it,
                    tags::REFERENCED_ROI_NUMBER,
                    VR::IS,
                    &number.to_string(),
                );
                items.push(it);
            });
        }
    });
}

fn counts(case: &Case) -> Vec<(String, usize)> {
    case.structures
        .iter()
        .map(|s| (s.roi.name.clone(), s.mask.count()))
        .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---- the valid case is unchanged ----

#[test]
fn clean_tg119_has_no_warnings_and_the_same_voxel_counts() {
    let t = common::copy_tg119();
    let case = load(t.path()).expect("TG119 loads");
    assert!(case.warnings().is_empty(), "{:?}", case.warnings());
    let want: Vec<(String, usize)> = TG119_COUNTS
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
    assert_eq!(counts(&case), want);
    case.check_names(&names(&["OuterTarget", "Core", "BODY", "body", "core"]))
        .expect("every TG119 name binds");
    assert_eq!(
        case.body().expect("one body").expect("BODY").roi.name,
        "BODY"
    );
    assert_eq!(case.try_body_mask().expect("body mask").count(), 601_736);
    let ins = case.inspect();
    assert!(ins.warnings.is_empty() && ins.non_volume_rois.is_empty());
    assert!(ins.structures.iter().all(|s| !s.empty));
    assert!(!ins.to_string().contains("warning"), "{ins}");
    // The shipped folder itself, through the CLI.
    let (code, stdout, stderr) = inspect_cli(&common::tg119_dir(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stdout.contains("warning") && !stdout.contains("empty"),
        "{stdout}"
    );
}

// ---- ambiguous names ----

#[test]
fn exact_duplicate_name_is_refused_naming_both_rois_and_types() {
    let t = common::copy_tg119();
    rename_roi(t.path(), 1, "BODY"); // the ORGAN Core becomes a second BODY
    let case = load(t.path()).expect("loads: ambiguity is refused at binding");
    let want = "structure 'BODY' is ambiguous: ROI 1 'BODY' (ORGAN) and ROI 3 'BODY' (EXTERNAL); \
                rename one in the RT Structure Set";
    for e in [
        case.structure("BODY").expect_err("ambiguous"),
        case.check_names(&names(&["OuterTarget", "BODY"]))
            .expect_err("ambiguous"),
    ] {
        assert!(matches!(e, Error::AmbiguousStructure { .. }), "{e:?}");
        assert_eq!(e.to_string(), want);
    }
    // Other names still bind; the body outline is the one EXTERNAL.
    assert_eq!(
        case.structure("OuterTarget").expect("ptv").mask.count(),
        7458
    );
    assert_eq!(
        case.body().expect("one EXTERNAL").expect("body").roi.number,
        3
    );
    assert!(
        case.warnings()
            .iter()
            .any(|w| w
                .contains("ROI 1 'BODY' (ORGAN) and ROI 3 'BODY' (EXTERNAL) have the same name")),
        "{:?}",
        case.warnings()
    );
}

#[test]
fn case_insensitive_duplicate_name_is_refused() {
    let t = common::copy_tg119();
    rename_roi(t.path(), 1, "body");
    let case = load(t.path()).expect("loads");
    for name in ["BODY", "body", "Body"] {
        let e = case.structure(name).expect_err("ambiguous");
        assert_eq!(
            e.to_string(),
            format!(
                "structure '{name}' is ambiguous: ROI 1 'body' (ORGAN) and ROI 3 'BODY' (EXTERNAL); \
                 rename one in the RT Structure Set"
            )
        );
    }
    let e = case.check_names(&names(&["BODY"])).expect_err("ambiguous");
    assert!(matches!(e, Error::AmbiguousStructure { .. }), "{e:?}");
}

#[test]
fn two_external_rois_make_the_body_ambiguous() {
    let t = common::copy_tg119();
    retype_roi(t.path(), 1, "EXTERNAL");
    let case = load(t.path()).expect("loads");
    let want =
        "the body outline is ambiguous: ROI 1 'Core' (EXTERNAL) and ROI 3 'BODY' (EXTERNAL) \
                are all of type EXTERNAL; keep one EXTERNAL ROI (RTROIInterpretedType (3006,00A4)) \
                in the RT Structure Set";
    let e = case.body().expect_err("two EXTERNAL");
    assert!(matches!(e, Error::AmbiguousBody { .. }), "{e:?}");
    assert_eq!(e.to_string(), want);
    assert_eq!(
        case.try_body_mask().expect_err("ambiguous").to_string(),
        want
    );
    // check_names binds the body too, even when the protocol does not name it.
    let e = case
        .check_names(&names(&["OuterTarget"]))
        .expect_err("ambiguous body");
    assert_eq!(e.to_string(), want);
    // The infallible mask is the union, never one of the two (Core lies inside BODY).
    assert_eq!(case.body_mask().count(), 601_736);
    assert!(
        case.warnings().iter().any(|w| w.contains(want)),
        "{:?}",
        case.warnings()
    );
}

// ---- empty ROIs ----

#[test]
fn empty_rois_are_listed_and_refused_for_goals() {
    let t = common::copy_tg119();
    // ROI 4: no contour at all. ROI 5: a triangle between voxel centres (x, y centres lie at
    // -250 + 3 i mm, so 0.5 .. 1.0 mm holds none). ROI 6: a POINT marker.
    add_roi(t.path(), 4, "Empty", "ORGAN", None);
    let z = -40.0;
    add_roi(
        t.path(),
        5,
        "Tiny",
        "ORGAN",
        Some(vec![contour_item(
            "CLOSED_PLANAR",
            &[[0.5, 0.5, z], [1.0, 0.5, z], [0.5, 1.0, z]],
        )]),
    );
    add_roi(
        t.path(),
        6,
        "Iso",
        "MARKER",
        Some(vec![contour_item("POINT", &[[0.0, 0.0, 0.0]])]),
    );
    let case = load(t.path()).expect("loads");
    let c = counts(&case);
    assert!(
        c.contains(&("Empty".into(), 0)) && c.contains(&("Tiny".into(), 0)),
        "{c:?}"
    );
    assert!(
        !c.iter().any(|(n, _)| n == "Iso"),
        "a marker is not a volume: {c:?}"
    );
    for (n, want) in TG119_COUNTS {
        assert!(c.contains(&(n.to_string(), want)), "{c:?}");
    }

    // inspect: 0 voxels and the word "empty"; the marker as a point.
    let ins = case.inspect();
    let row = |n: &str| ins.structures.iter().find(|s| s.name == n).expect("row");
    assert!(row("Empty").empty && row("Empty").voxels == 0);
    assert!(row("Tiny").empty && row("Tiny").voxels == 0);
    assert!(!row("Core").empty);
    let text = ins.to_string();
    let line = |n: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(n))
            .unwrap_or_else(|| panic!("no line for {n} in:\n{text}"))
            .to_string()
    };
    assert!(
        line("Empty").contains(" 0 ") && line("Empty").contains("empty"),
        "{text}"
    );
    assert!(line("Tiny").contains("empty"), "{text}");
    assert!(line("Iso").contains("POINT only, 1 point(s)"), "{text}");
    assert_eq!(ins.non_volume_rois.len(), 1);
    assert!(
        case.warnings()
            .iter()
            .any(|w| w.contains("ROI 4 'Empty' (ORGAN) is empty: it has no contour")),
        "{:?}",
        case.warnings()
    );

    // A goal on them says empty, not "not found".
    let e = case
        .check_names(&names(&["OuterTarget", "Empty"]))
        .expect_err("empty");
    assert!(
        matches!(e, Error::EmptyStructure { number: 4, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "structure 'Empty' (ROI 4) is empty: it has no contour in the RT Structure Set \
         (ROIContourSequence (3006,0039)); it cannot carry a goal"
    );
    let e = case.check_names(&names(&["tiny"])).expect_err("empty");
    assert_eq!(
        e.to_string(),
        "structure 'tiny' (ROI 5) is empty: its 1 contour(s) cover no CT voxel centre; \
         it cannot carry a goal"
    );
    let e = case.check_names(&names(&["Iso"])).expect_err("marker");
    assert!(
        matches!(e, Error::EmptyStructure { number: 6, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("only POINT contour(s)"), "{e}");
    assert!(!e.to_string().contains("not found"), "{e}");
    case.check_names(&names(&["OuterTarget", "Core", "BODY"]))
        .expect("the other names still bind");

    // Through the CLI: listed, exit 0; JSON marks it empty.
    let (code, stdout, stderr) = inspect_cli(t.path(), &["--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let empty = v["structures"]
        .as_array()
        .expect("structures")
        .iter()
        .find(|s| s["name"] == "Empty")
        .expect("Empty listed");
    assert_eq!(empty["voxels"], 0);
    assert_eq!(empty["empty"], true);
    assert_eq!(v["non_volume_rois"][0]["name"], "Iso");
}

// ---- frame of reference per ROI ----

#[test]
fn one_roi_in_another_frame_of_reference_is_refused() {
    let t = common::copy_tg119();
    modify(&rs(t.path()), |o| {
        edit_seq(o, tags::STRUCTURE_SET_ROI_SEQUENCE, |items| {
            put_str(
                item_of(items, tags::ROI_NUMBER, 2),
                tags::REFERENCED_FRAME_OF_REFERENCE_UID,
                VR::UI,
                "2.25.999",
            );
        })
    });
    let ct_uid = load(&common::tg119_dir())
        .expect("original")
        .ct
        .meta
        .frame_of_reference_uid;
    let e = load(t.path()).expect_err("per-ROI frame differs");
    assert!(
        matches!(e, Error::RoiFrameOfReferenceMismatch { number: 2, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("RS.TG119.dcm")
            && msg.contains("ROI 2 'OuterTarget'")
            && msg.contains("(3006,0024) ReferencedFrameOfReferenceUID 2.25.999")
            && msg.contains(&format!("the CT's FrameOfReferenceUID {ct_uid}")),
        "{msg}"
    );
    let (code, _, stderr) = inspect_cli(t.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("ROI 2 'OuterTarget'") && stderr.contains("2.25.999"),
        "{stderr}"
    );
}

// ---- contour warnings ----

#[test]
fn self_intersecting_and_zero_area_contours_are_warned_about() {
    let t = common::copy_tg119();
    let original =
        rtopt::io::dicom::rtstruct::read_rtstruct(&rs(&common::tg119_dir())).expect("rs");
    let core = original.roi("Core").expect("Core");
    let z0 = core.contours[0].points_mm[0][2];
    let z1 = core.contours[1].points_mm[0][2];
    modify(&rs(t.path()), |o| {
        edit_seq(o, tags::ROI_CONTOUR_SEQUENCE, |items| {
            let it = item_of(items, tags::REFERENCED_ROI_NUMBER, 1);
            edit_seq(it, tags::CONTOUR_SEQUENCE, |cs| {
                // Contour 0: a bow-tie (edges 0 and 2 cross at the centre).
                cs[0] = contour_item(
                    "CLOSED_PLANAR",
                    &[
                        [-5.0, -5.0, z0],
                        [5.0, 5.0, z0],
                        [5.0, -5.0, z0],
                        [-5.0, 5.0, z0],
                    ],
                );
                // Contour 1: three collinear points (zero area).
                cs[1] = contour_item(
                    "CLOSED_PLANAR",
                    &[[-5.0, 0.0, z1], [0.0, 0.0, z1], [5.0, 0.0, z1]],
                );
            });
        })
    });
    let case = load(t.path()).expect("warnings, not errors");
    let w = case.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    let bow = format!("ROI 1 'Core' (ORGAN): contour 0 at z = {z0:.2} mm is self-intersecting");
    let flat = format!("ROI 1 'Core' (ORGAN): contour 1 at z = {z1:.2} mm has zero area");
    assert!(
        w[0].contains(&bow) && w[0].contains("RS.TG119.dcm"),
        "{w:?}"
    );
    assert!(w[1].contains(&flat), "{w:?}");
    // The goal still binds (Core has voxels on its other contours).
    case.check_names(&names(&["Core"])).expect("Core binds");
    assert!(case.inspect().warnings == w);

    let (code, stdout, stderr) = inspect_cli(t.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("warning: ") && stdout.contains(&bow),
        "{stdout}"
    );
    let (code, stdout, _) = inspect_cli(t.path(), &["--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let ws = v["warnings"].as_array().expect("warnings array");
    assert!(
        ws.iter()
            .any(|x| x.as_str().is_some_and(|s| s.contains(&flat))),
        "{ws:?}"
    );
}

#[test]
fn contour_defect_cases() {
    let p = |v: &[[f64; 2]]| v.iter().map(|a| [a[0], a[1], 0.0]).collect::<Vec<_>>();
    let square = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
    assert_eq!(contour_defect(&p(&square)), None);
    // Repeated points and a closing point equal to the first are not defects.
    let repeated = [
        [0.0, 0.0],
        [10.0, 0.0],
        [10.0, 0.0],
        [10.0, 10.0],
        [0.0, 10.0],
        [0.0, 0.0],
    ];
    assert_eq!(contour_defect(&p(&repeated)), None);
    // A concave simple polygon (a U shape) is fine.
    let u = [
        [0.0, 0.0],
        [9.0, 0.0],
        [9.0, 9.0],
        [6.0, 9.0],
        [6.0, 3.0],
        [3.0, 3.0],
        [3.0, 9.0],
        [0.0, 9.0],
    ];
    assert_eq!(contour_defect(&p(&u)), None);
    let bow = [[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]];
    assert_eq!(
        contour_defect(&p(&bow)),
        Some(ContourDefect::SelfIntersection {
            first: 0,
            second: 2
        })
    );
    // Two loops touching at one vertex (a figure 8 through (5, 5)).
    let eight = [
        [0.0, 0.0],
        [5.0, 5.0],
        [10.0, 0.0],
        [10.0, 10.0],
        [5.0, 5.0],
        [0.0, 10.0],
    ];
    assert!(matches!(
        contour_defect(&p(&eight)),
        Some(ContourDefect::SelfIntersection { .. })
    ));
    // The closing edge (3, from the last point back to the first) crosses edge 1.
    let closing = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
    assert_eq!(
        contour_defect(&p(&closing)),
        Some(ContourDefect::SelfIntersection {
            first: 1,
            second: 3
        })
    );
    let line = [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]];
    assert!(matches!(
        contour_defect(&p(&line)),
        Some(ContourDefect::ZeroArea { .. })
    ));
    let same = [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]];
    assert!(matches!(
        contour_defect(&p(&same)),
        Some(ContourDefect::ZeroArea { .. })
    ));
    // A large simple polygon (a 2000-gon) is checked quickly and passes.
    let circle: Vec<[f64; 2]> = (0..2000)
        .map(|i| {
            let a = i as f64 * std::f64::consts::TAU / 2000.0;
            [100.0 * a.cos(), 100.0 * a.sin()]
        })
        .collect();
    let t0 = std::time::Instant::now();
    assert_eq!(contour_defect(&p(&circle)), None);
    assert!(t0.elapsed().as_secs_f64() < 1.0);
}

// ---- PatientPosition ----

#[test]
fn missing_patient_position_is_refused_unless_assumed() {
    for empty_value in [false, true] {
        let t = common::copy_tg119();
        for f in common::ct_files(t.path()) {
            modify(&f, |o| {
                if empty_value {
                    put_str(o, tags::PATIENT_POSITION, VR::CS, "");
                } else {
                    o.remove_element(tags::PATIENT_POSITION);
                }
            });
        }
        let e = load(t.path()).expect_err("no PatientPosition");
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                Error::Dicom(DicomError::Tag {
                    name: "PatientPosition",
                    ..
                })
            ),
            "{msg}"
        );
        assert!(
            msg.contains("CT.TG119.")
                && msg.contains("tag (0018,5100) PatientPosition: missing or empty")
                && msg.contains("--assume-hfs"),
            "{msg}"
        );
        let (code, _, stderr) = inspect_cli(t.path(), &[]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("(0018,5100)"), "{stderr}");

        let mut opts = LoadOptions::default();
        opts.ct.assume_hfs = true;
        let case = load_with(t.path(), &opts).expect("assumed HFS");
        assert_eq!(case.ct.meta.patient_position, "HFS");
        assert_eq!(case.warnings().len(), 1, "{:?}", case.warnings());
        assert!(
            case.warnings()[0]
                .contains("(0018,5100) PatientPosition is missing or empty; assumed HFS"),
            "{:?}",
            case.warnings()
        );
        assert_eq!(case.inspect().warnings, case.warnings());
    }
    // A present PatientPosition is kept as is, with or without the option.
    let mut opts = LoadOptions::default();
    opts.ct.assume_hfs = true;
    let case = load_with(&common::tg119_dir(), &opts).expect("loads");
    assert!(case.warnings().is_empty());
    assert_eq!(case.ct.meta.patient_position, "HFS");
}

// ---- duplicate ROI numbers ----

#[test]
fn duplicate_roi_number_is_refused() {
    let t = common::copy_tg119();
    modify(&rs(t.path()), |o| {
        edit_seq(o, tags::STRUCTURE_SET_ROI_SEQUENCE, |items| {
            put_str(
                item_of(items, tags::ROI_NUMBER, 2),
                tags::ROI_NUMBER,
                VR::IS,
                "1",
            );
        })
    });
    let e = load(t.path()).expect_err("two ROIs numbered 1");
    let msg = e.to_string();
    assert!(
        msg.contains("RS.TG119.dcm")
            && msg.contains("(3006,0022) ROINumber")
            && msg.contains("1 is used by both 'Core' and 'OuterTarget'"),
        "{msg}"
    );
}
