//! Classical auto-segmentation, mask -> contour conversion and RTSTRUCT export.
//!
//! Data: `data/tg119` (CORT TG-119, CC0) and `data/totalseg` (TotalSegmentator 2.18.0 test
//! fixtures, Apache-2.0; the reference labels are TotalSegmentator v2 model outputs, not manual
//! contours), see `data/README.md`. Measured values: `docs/segmentation.md`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rtopt::ct::{CtMeta, CtVolume};
use rtopt::geometry::Mask;
use rtopt::io::dicom::rtstruct::{self, write_rtstruct, RoiOut};
use rtopt::io::nifti;
use rtopt::segment::{self, eval, task as cli};
use rtopt::structures;
use rtopt::{Case, LoadOptions};
use sha2::{Digest, Sha256};

fn totalseg() -> PathBuf {
    common::repo().join("data/totalseg")
}

use common::{assert_dciodvfy_clean, ct_b};

fn sha(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("read")).to_vec()
}

fn union(a: &Mask, b: &Mask) -> Mask {
    Mask {
        grid: a.grid,
        inside: a
            .inside
            .iter()
            .zip(&b.inside)
            .map(|(&x, &y)| x || y)
            .collect(),
    }
}

fn find<'a>(v: &'a [(String, Mask)], name: &str) -> &'a Mask {
    &v.iter().find(|(n, _)| n == name).expect(name).1
}

#[test]
fn tg119_masks_round_trip_through_contours_and_rtstruct() {
    let case = Case::load(&common::tg119_dir(), &LoadOptions::default()).expect("TG119");
    let rois: Vec<RoiOut> = case
        .structures
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let mut roi = s.roi.clone();
            roi.number = n as i64 + 1;
            roi.contours = rtopt::contours::mask_to_contours(
                &s.mask,
                rtopt::contours::DEFAULT_TOLERANCE_VOXELS,
            );
            RoiOut {
                roi,
                generation_algorithm: "AUTOMATIC".into(),
                generation_description: "round trip".into(),
            }
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let (p1, p2) = (dir.path().join("RS.1.dcm"), dir.path().join("RS.2.dcm"));
    let t = common::fixed_time();
    let uid = write_rtstruct(&p1, &case.ct, &rois, "TEST", &t).expect("write");
    write_rtstruct(&p2, &case.ct, &rois, "TEST", &t).expect("write again");
    assert_eq!(
        std::fs::read(&p1).expect("read"),
        std::fs::read(&p2).expect("read"),
        "same inputs must give the same bytes"
    );
    // Dated by the given creation time (UTC), series 903 (the plan's are 901 and 902).
    let f = rtopt::io::dicom::read::read(&p1).expect("read");
    let tag = |g: u16, e: u16| {
        rtopt::io::dicom::read::opt_str(&f.obj, dicom_core::Tag(g, e)).unwrap_or_default()
    };
    assert_eq!(tag(0x3006, 0x0008), "20261202", "StructureSetDate");
    assert_eq!(tag(0x0008, 0x0012), "20261202", "InstanceCreationDate");
    assert_eq!(tag(0x0020, 0x0011), "903", "SeriesNumber");
    assert_eq!(tag(0x0012, 0x0062), case.ct.meta.patient_identity_removed);
    let input_uid = case
        .structure_set
        .as_ref()
        .expect("RS")
        .sop_instance_uid
        .clone();
    assert_ne!(uid, input_uid, "a new SOP instance, not the imported one");

    let ss = rtstruct::read_rtstruct(&p1).expect("re-import");
    assert_eq!(ss.sop_instance_uid, uid);
    assert_eq!(
        ss.frame_of_reference_uid.as_deref(),
        Some(case.ct.meta.frame_of_reference_uid.as_str())
    );
    let f = rtopt::io::dicom::read::read(&p1).expect("DICOM");
    let study = rtopt::io::dicom::read::tags::STUDY_INSTANCE_UID;
    assert_eq!(
        rtopt::io::dicom::read::opt_str(&f.obj, study).as_deref(),
        Some(case.ct.meta.study_instance_uid.as_str())
    );
    // Every CT slice is referenced (ContourImageSequence of the referenced series).
    let text = String::from_utf8_lossy(&std::fs::read(&p1).expect("read")).into_owned();
    for u in &case.ct.meta.sop_instance_uids {
        assert!(text.contains(u.as_str()), "CT slice {u} not referenced");
    }
    assert_eq!(ss.rois.len(), 3);
    for s in &case.structures {
        let back = ss.roi(&s.roi.name).expect("ROI read back");
        assert_eq!(back.interpreted_type, s.roi.interpreted_type);
        assert_eq!(back.color, s.roi.color);
        let m = structures::rasterize(back, &case.ct.grid).expect("rasterise");
        let d = m.dice(&s.mask);
        let n_points: usize = back.contours.iter().map(|c| c.points_mm.len()).sum();
        eprintln!(
            "{}: {:.1} cm3, {} contours, {n_points} points, Dice after export/import {d:.5}",
            s.roi.name,
            s.mask.volume_cm3(),
            back.contours.len()
        );
        assert!(s.mask.volume_cm3() > 5.0);
        assert!(d >= 0.98, "{}: Dice {d}", s.roi.name);
    }

    assert_dciodvfy_clean(&p1);
}

/// CT A of the TotalSegmentator fixtures (NIfTI, 122 x 101 x 30, 3 mm; lung bases) as a CT.
fn ct_a() -> CtVolume {
    let v = nifti::read_nifti(&totalseg().join("example_ct_sm.nii.gz")).expect("CT A");
    CtVolume {
        grid: v.grid,
        hu: v.values,
        meta: CtMeta::default(),
    }
}

// Measured 2026-11-28 (docs/segmentation.md): lungs on CT A, Dice left 0.958, right 0.969
// (HD95 3.0 mm, one voxel). Each lung spans about 11 slices of 3 mm here, so losing or adding
// one slice of a lung base moves the Dice by about 0.04; the margin (0.028 below the lower
// value) fails on that, and on a left/right swap, while leaving room for tie-breaking changes.
const LUNG_MIN_DICE: f64 = 0.93;
// Measured 2026-11-28: Body vs the union of all `total` labels on CT B, Dice 0.639. That
// reference has no skin or subcutaneous fat (1410 of the outline's 2890 cm3), so the Dice is
// bounded by the volume ratio (2 x 1410 / (1410 + 2890) = 0.656); the margin 0.04 is a few
// millimetres of outline, a body that leaks into the table or loses an arm drops far below.
const BODY_MIN_DICE: f64 = 0.60;

#[test]
fn classical_lungs_match_totalsegmentator_lobes_on_ct_a() {
    let ct = ct_a();
    let body = segment::body::body_outline(&ct);
    let lungs = segment::lungs::segment_lungs(&ct, &body);
    let refs = cli::reference_from_labelmap(
        &ct.grid,
        &totalseg().join("example_seg.nii.gz"),
        &cli::totalseg_default_map(),
    )
    .expect("labels A");
    let (rl, rr) = (find(&refs, "Lung_L"), find(&refs, "Lung_R"));
    let al = eval::agreement(&lungs.left, rl);
    let ar = eval::agreement(&lungs.right, rr);
    let both = union(&lungs.left, &lungs.right).dice(&union(rl, rr));
    eprintln!("CT A lungs: left {al:?}\n            right {ar:?}\n            both Dice {both:.4}");
    // Left is patient left = +x (LPS): the left lung's centroid lies at larger x than the right's.
    let (cl, cr) = (
        lungs.left.centroid_mm().expect("left lung"),
        lungs.right.centroid_mm().expect("right lung"),
    );
    assert!(cl[0] > cr[0] + 50.0, "left {cl:?} right {cr:?}");
    assert!(al.dice >= LUNG_MIN_DICE, "left lung Dice {}", al.dice);
    assert!(ar.dice >= LUNG_MIN_DICE, "right lung Dice {}", ar.dice);
    // Deterministic.
    let again = segment::lungs::segment_lungs(&ct, &body);
    assert_eq!(again.left, lungs.left);
}

#[test]
fn classical_body_matches_labelled_anatomy_on_dicom_ct_b() {
    let tmp = ct_b();
    let dir = tmp.path().to_path_buf();
    let rows = cli::segment_eval_rows(&cli::SegmentEvalRequest {
        memory_budget_bytes: None,
        folder: dir.clone(),
        reference: totalseg().join("example_seg_dicom.nii.gz"),
        labels: None,
        model: None,
    })
    .expect("segment-eval on CT B");
    eprint!("{}", cli::format_rows(&rows));
    let body = rows
        .iter()
        .find(|r| r.name == segment::BODY)
        .expect("Body row");
    // CT B (upper abdomen) has no lung in the reference; bowel gas must not become a lung.
    assert_eq!(rows.len(), 1, "only Body expected on CT B");
    assert!(
        body.agreement.dice >= BODY_MIN_DICE,
        "Body Dice {}",
        body.agreement.dice
    );
    // The labelled trunk anatomy (organs, bones, muscles) lies inside the patient: all of it
    // must be inside the outline. A left-right or anterior-posterior flip of the label map (RAS
    // read as LPS) would put much of it outside. The arms (humerus, labels 69 and 70) lie beside
    // the trunk in this CT and the outline keeps the largest component per slice only, so they
    // are outside by design (docs/segmentation.md).
    let (ct, _) = rtopt::io::dicom::ct::load_ct_folder(&dir, &Default::default()).expect("CT B");
    let outline = segment::body::body_outline(&ct);
    let trunk: Vec<u32> = (1..=117).filter(|l| *l != 69 && *l != 70).collect();
    let map = vec![
        ("trunk".to_string(), trunk),
        ("arms".to_string(), vec![69, 70]),
    ];
    let refs =
        cli::reference_from_labelmap(&ct.grid, &totalseg().join("example_seg_dicom.nii.gz"), &map)
            .expect("labels B");
    let cover = |m: &Mask| {
        let inside = m
            .inside
            .iter()
            .zip(&outline.inside)
            .filter(|(&l, &b)| l && b)
            .count();
        inside as f64 / m.count() as f64
    };
    let (trunk, arms) = (cover(find(&refs, "trunk")), cover(find(&refs, "arms")));
    eprintln!("CT B: inside the outline: {trunk:.5} of the trunk labels, {arms:.3} of the arms");
    assert!(trunk >= 0.999, "trunk coverage {trunk}");
    assert!(arms < 0.5, "arms coverage {arms}");
}

#[test]
fn segment_command_keeps_input_bytes_and_suffixes_clashes() {
    let dir = common::copy_tg119();
    let rs = dir.path().join("RS.TG119.dcm");
    let before = sha(&rs);
    let out = dir.path().join("..").join(format!(
        "rtstruct-auto-{}.dcm",
        dir.path().file_name().expect("name").to_string_lossy()
    ));
    let run = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .arg("segment")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run rtopt");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success());
    assert_eq!(sha(&rs), before, "the input RTSTRUCT was modified");
    // TG119 has BODY (EXTERNAL): the new body clashes (case-insensitively) and is renamed,
    // and retyped so that the set keeps one EXTERNAL.
    assert!(
        stdout.contains("'Body' exists") && stdout.contains("'Body_auto'"),
        "{stdout}"
    );

    assert_dciodvfy_clean(&out);
    let input = rtstruct::read_rtstruct(&rs).expect("input");
    let written = rtstruct::read_rtstruct(&out).expect("output");
    assert_ne!(written.sop_instance_uid, input.sop_instance_uid);
    for r in &input.rois {
        let w = written
            .rois
            .iter()
            .find(|w| w.number == r.number)
            .expect("kept ROI");
        assert_eq!(
            (&w.name, &w.interpreted_type),
            (&r.name, &r.interpreted_type)
        );
        assert_eq!(w.contours.len(), r.contours.len(), "{}", r.name);
        for (a, b) in w.contours.iter().zip(&r.contours) {
            assert_eq!(a.points_mm.len(), b.points_mm.len());
            for (p, q) in a.points_mm.iter().zip(&b.points_mm) {
                for k in 0..3 {
                    assert!((p[k] - q[k]).abs() < 1e-6, "{}: {p:?} vs {q:?}", r.name);
                }
            }
        }
    }
    let auto = written.roi("Body_auto").expect("Body_auto");
    assert_eq!(auto.interpreted_type, "CONTROL");
    assert!(auto.number > input.rois.iter().map(|r| r.number).max().expect("rois"));
    // The new body agrees with the phantom's own BODY.
    let case = Case::load(&common::tg119_dir(), &LoadOptions::default()).expect("TG119");
    let d = structures::rasterize(auto, &case.ct.grid)
        .expect("rasterise")
        .dice(&case.structure("BODY").expect("BODY").mask);
    eprintln!("TG119 Body_auto vs BODY: Dice {d:.4}");
    assert!(d >= 0.98, "Body_auto vs BODY Dice {d}");

    // --out naming the input is refused, and the input stays as it was.
    let refused = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .arg("segment")
        .arg(dir.path())
        .arg("--out")
        .arg(&rs)
        .output()
        .expect("run rtopt");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("never overwrites its inputs"));
    assert_eq!(sha(&rs), before);
    std::fs::remove_file(&out).ok();

    // segment-eval against an RTSTRUCT reference: the classical Body vs TG119's BODY
    // (case-insensitive name match), through the command line.
    let run = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .arg("segment-eval")
        .arg(common::tg119_dir())
        .arg("--reference")
        .arg(common::tg119_dir().join("RS.TG119.dcm"))
        .arg("--json")
        .output()
        .expect("run rtopt");
    assert!(run.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON rows");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "Body");
    let dice = rows[0]["dice"].as_f64().expect("dice");
    let hd95 = rows[0]["hd95_mm"].as_f64().expect("hd95");
    eprintln!("segment-eval TG119 Body vs BODY: Dice {dice:.4}, HD95 {hd95:.1} mm");
    assert!(
        (dice - d).abs() < 1e-9 && hd95 <= 3.0,
        "Dice {dice} HD95 {hd95}"
    );
}

/// A NIfTI-1 file with a 3x2x2 int16 volume, sform = `affine` (RAS), value 7 at voxel (2,0,1).
fn tiny_nifti(affine: [[f32; 4]; 3]) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (i, d) in [3i16, 3, 2, 2, 1, 1, 1, 1].iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&4i16.to_le_bytes()); // int16
    h[72..74].copy_from_slice(&16i16.to_le_bytes());
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[254..256].copy_from_slice(&1i16.to_le_bytes()); // sform_code
    for (r, row) in affine.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let o = 280 + 16 * r + 4 * c;
            h[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    for idx in 0..12 {
        let v: i16 = if idx == 2 + 3 * 2 { 7 } else { 0 };
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

#[test]
fn nifti_ras_affine_maps_to_lps_grid() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Voxel i runs toward patient left (RAS x decreasing: -2 mm/voxel), j anterior (+3 RAS y =
    // -3 LPS y), k superior (+4). Voxel (2,0,1): RAS (10-4, 20, 30+4) = (6, 20, 34),
    // i.e. LPS (-6, -20, 34).
    let path = dir.path().join("t.nii");
    std::fs::write(
        &path,
        tiny_nifti([
            [-2.0, 0.0, 0.0, 10.0],
            [0.0, 3.0, 0.0, 20.0],
            [0.0, 0.0, 4.0, 30.0],
        ]),
    )
    .expect("write");
    let v = nifti::read_nifti(&path).expect("read");
    assert_eq!(v.grid.dims, [3, 2, 2]);
    assert_eq!(v.grid.spacing_mm, [2.0, 3.0, 4.0]);
    // LPS x of voxel i: -(10 - 2 i) = -10 + 2 i, already ascending; LPS y of voxel j:
    // -(20 + 3 j), descending, so the axis is reversed: first LPS voxel is j = 1 (-23).
    assert_eq!(v.grid.origin_mm, [-10.0, -23.0, 30.0]);
    let hit: Vec<usize> = (0..v.values.len())
        .filter(|&p| v.values[p] == 7.0)
        .collect();
    assert_eq!(hit.len(), 1);
    let [i, j, k] = v.grid.ijk(hit[0]);
    assert_eq!(v.grid.centre_mm(i, j, k), [-6.0, -20.0, 34.0]);

    // The same bytes gzip-compressed read the same.
    let gz = dir.path().join("t.nii.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &std::fs::read(&path).expect("read")).expect("gz");
    std::fs::write(&gz, enc.finish().expect("gz")).expect("write");
    let w = nifti::read_nifti(&gz).expect("read gz");
    assert_eq!((w.grid, &w.values), (v.grid, &v.values));
}

#[test]
fn bad_reference_labelmaps_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = ct_b();
    let ct_dir = tmp.path().to_path_buf();
    let eval_with = |reference: PathBuf| {
        cli::segment_eval_rows(&cli::SegmentEvalRequest {
            memory_budget_bytes: None,
            folder: ct_dir.clone(),
            reference,
            labels: None,
            model: None,
        })
        .expect_err("must be refused")
        .to_string()
    };
    let missing = dir.path().join("missing.nii.gz");
    let e = eval_with(missing.clone());
    assert!(e.contains("missing.nii.gz"), "{e}");

    let corrupt = dir.path().join("corrupt.nii.gz");
    std::fs::write(&corrupt, b"\x1f\x8b\x08\x00 not really gzip").expect("write");
    let e = eval_with(corrupt);
    assert!(e.contains("corrupt.nii.gz") && e.contains("gzip"), "{e}");

    let truncated = dir.path().join("short.nii");
    std::fs::write(
        &truncated,
        &tiny_nifti([
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ])[..360],
    )
    .expect("write");
    let e = eval_with(truncated);
    assert!(e.contains("short.nii") && e.contains("truncated"), "{e}");

    // CT A's label map (122 x 101 x 30) against CT B (512 x 512 x 20).
    let e = eval_with(totalseg().join("example_seg.nii.gz"));
    assert!(
        e.contains("example_seg.nii.gz") && e.contains("[122, 101, 30]"),
        "{e}"
    );

    let labels = dir.path().join("labels.json");
    std::fs::write(&labels, "{\"Body\": [\"x\"]}").expect("write");
    let e = cli::segment_eval_rows(&cli::SegmentEvalRequest {
        memory_budget_bytes: None,
        folder: ct_dir.clone(),
        reference: totalseg().join("example_seg_dicom.nii.gz"),
        labels: Some(labels),
        model: None,
    })
    .expect_err("bad --labels")
    .to_string();
    assert!(e.contains("labels.json"), "{e}");
}

/// The classical body outline on the TG119 phantom against the phantom's own BODY contour.
/// The CT is longer than the phantom (z -160 to 160 mm, BODY -152.5 to 147.5 mm): on the end
/// slices the couch is the largest component of the slice and must not be taken for the body.
#[test]
fn classical_body_matches_the_tg119_body_and_leaves_the_couch_out() {
    let case = Case::load(&common::tg119_dir(), &LoadOptions::default()).expect("TG119");
    let body = segment::body::body_outline(&case.ct);
    let reference = &case.structure("BODY").expect("BODY").mask;
    let (lo, hi) = body.bbox_mm().expect("body");
    let (rlo, rhi) = reference.bbox_mm().expect("BODY");
    let d = body.dice(reference);
    eprintln!("TG119 classical body: Dice {d:.4}, z {:.1}..{:.1} mm (BODY {:.1}..{:.1}), y up to {:.1} mm (BODY {:.1})", lo[2], hi[2], rlo[2], rhi[2], hi[1], rhi[1]);
    // Posterior extent (+y): the couch lies behind the phantom, 75 mm and more.
    assert!(hi[1] <= rhi[1] + 3.0, "body reaches y = {} mm", hi[1]);
    // Measured 2026-11-28: Dice 0.9982 (with the couch on the end slices: z to +/-160 mm and
    // y to 192.5 mm). A systematic one-voxel (3 mm) growth or shrinkage of the outline costs
    // about 0.03 on this 306 x 153 mm section; 0.99 fails on that.
    assert!(d >= 0.99, "Dice {d}");
    assert!((lo[2] - rlo[2]).abs() < 1.0 && (hi[2] - rhi[2]).abs() < 1.0);
}
