//! The ONNX model route of auto-segmentation, on the pure-Rust tract backend: equivalence with
//! ONNX Runtime on a saved reference, the shipped model's accuracy on a CT it never saw, and the
//! errors for bad model files.
//!
//! Model and reference files: `data/models/` (made by `tools/train_segmentation.py`, card in
//! `data/models/rtopt_abdomen_oar_2d.md`). Data: `data/totalseg` (TotalSegmentator 2.18.0 test
//! fixtures, Apache-2.0; the reference labels are TotalSegmentator v2 model outputs).
#![cfg(feature = "onnx")]

mod common;

use std::path::{Path, PathBuf};

use rtopt::segment::model::{self, Backend, BackendChoice, SegmentationModel};
use rtopt::segment::task as cli;

fn models() -> PathBuf {
    common::repo().join("data/models")
}

fn shipped() -> PathBuf {
    models().join("rtopt_abdomen_oar_2d.onnx")
}

fn read_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).expect("reference file");
    assert_eq!(b.len() % 4, 0);
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn tract() {
    assert_eq!(
        model::init_backend(BackendChoice::Tract).expect("tract backend"),
        Backend::Tract
    );
}

/// The bound: logits within 1e-4 of ONNX Runtime's, argmax identical.
const LOGIT_TOLERANCE: f32 = 1e-4;

#[test]
fn tract_logits_match_the_onnxruntime_reference() {
    tract();
    let mut m = SegmentationModel::load(&shipped()).expect("load shipped model");
    let (h, w, c) = (
        m.spec.input.height,
        m.spec.input.width,
        m.spec.classes.len(),
    );
    let input = read_f32(&models().join("rtopt_abdomen_oar_2d.ref_input.f32"));
    let reference = read_f32(&models().join("rtopt_abdomen_oar_2d.ref_logits.f32"));
    assert_eq!(input.len(), h * w);
    assert_eq!(reference.len(), c * h * w);
    let logits = m.run_raw(input, 1).expect("inference");
    let max_diff = logits
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let range = reference.iter().fold(0.0f32, |a, b| a.max(b.abs()));
    eprintln!(
        "tract vs ONNX Runtime: max |logit difference| {max_diff:.2e} (|logits| up to {range:.1})"
    );
    assert!(max_diff <= LOGIT_TOLERANCE, "max |difference| {max_diff}");
    let mut differing = 0;
    let mut labelled = 0;
    for p in 0..h * w {
        let at = |v: &[f32]| model::argmax(&(0..c).map(|k| v[k * h * w + p]).collect::<Vec<_>>());
        let (a, b) = (at(&logits), at(&reference));
        differing += usize::from(a != b);
        labelled += usize::from(b != 0);
    }
    assert_eq!(differing, 0, "argmax differs in {differing} pixels");
    // The reference slice is real abdominal CT: the model must label organs in it.
    assert!(labelled > 500, "only {labelled} non-background pixels");
}

// Measured 2026-11-28 on CT B (20 DICOM slices of another patient, never used in training;
// TotalSegmentator labels as reference), rtopt's pipeline on tract: Liver 0.928, Spleen 0.918,
// Stomach 0.653, Aorta 0.872, SpinalCord 0.882, Vertebrae 0.712 (data/models/
// rtopt_abdomen_oar_2d.md). Inference on tract is deterministic; what can move these numbers
// on another machine is tract choosing other SIMD kernels (logits differ by ~1e-5, flipping
// only exact near-ties), worth far less than 0.001 of Dice. The 0.02 margin leaves room for
// that and fails on any real change of the model, the resampling or the post-processing (one
// lost slice of spinal cord costs 0.05).
const HELD_OUT_FLOORS: &[(&str, f64)] = &[
    ("Liver", 0.908),
    ("Spleen", 0.898),
    ("Stomach", 0.633),
    ("Aorta", 0.852),
    ("SpinalCord", 0.862),
    ("Vertebrae", 0.692),
];

/// CT B lies above the kidneys (T11-T12) and its reference has none; the model labels 16.2 cm3
/// of kidney there (measured, a known false positive, see the model card). Bounded at 20 cm3
/// so that a model that invents more fails.
const KIDNEY_FALSE_POSITIVE_MAX_CM3: f64 = 20.0;

#[test]
fn shipped_model_dice_on_the_held_out_ct() {
    tract();
    let tmp = common::ct_b();
    let rows = cli::segment_eval_rows(&cli::SegmentEvalRequest {
        memory_budget_bytes: None,
        folder: tmp.path().to_path_buf(),
        reference: common::repo().join("data/totalseg/example_seg_dicom.nii.gz"),
        labels: None,
        model: Some(shipped()),
    })
    .expect("segment-eval with the model on CT B");
    eprint!("{}", cli::format_rows(&rows));
    for (name, floor) in HELD_OUT_FLOORS {
        let r = rows
            .iter()
            .find(|r| r.name == *name)
            .unwrap_or_else(|| panic!("no row for {name}"));
        assert!(
            r.agreement.dice >= *floor,
            "{name}: Dice {} < {floor}",
            r.agreement.dice
        );
    }
    let kidneys = rows.iter().find(|r| r.name == "Kidneys");
    assert!(kidneys.is_none_or(|r| r.agreement.volume_reference_cm3 == 0.0));
    let false_kidney_cm3 = kidneys.map_or(0.0, |r| r.agreement.volume_test_cm3);
    assert!(
        false_kidney_cm3 <= KIDNEY_FALSE_POSITIVE_MAX_CM3,
        "kidney false positive {false_kidney_cm3} cm3"
    );
}

fn load_err(path: &Path) -> String {
    tract();
    SegmentationModel::load(path)
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn bad_model_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(models().join("rtopt_abdomen_oar_2d.json")).expect("sidecar"),
    )
    .expect("sidecar JSON");

    // Missing model file.
    let e = load_err(&d.join("absent.onnx"));
    assert!(e.contains("absent.onnx") && e.contains("not found"), "{e}");

    // ONNX file without a sidecar.
    std::fs::copy(shipped(), d.join("lonely.onnx")).expect("copy");
    let e = load_err(&d.join("lonely.onnx"));
    assert!(e.contains("lonely.json") && e.contains("sidecar"), "{e}");

    // Corrupt ONNX file (truncated to half) with a valid sidecar.
    let bytes = std::fs::read(shipped()).expect("model");
    std::fs::write(d.join("corrupt.onnx"), &bytes[..bytes.len() / 2]).expect("write");
    let mut s = sidecar.clone();
    s["onnx_file"] = "corrupt.onnx".into();
    std::fs::write(d.join("corrupt.json"), s.to_string()).expect("write");
    let e = load_err(&d.join("corrupt.onnx"));
    assert!(
        e.contains("corrupt.onnx") && e.contains("not a loadable ONNX model"),
        "{e}"
    );

    // Not ONNX at all.
    std::fs::write(d.join("text.onnx"), b"this is not a protobuf").expect("write");
    let mut s = sidecar.clone();
    s["onnx_file"] = "text.onnx".into();
    std::fs::write(d.join("text.json"), s.to_string()).expect("write");
    let e = load_err(&d.join("text.onnx"));
    assert!(e.contains("text.onnx"), "{e}");

    // Sidecar input shape that disagrees with the network.
    std::fs::copy(shipped(), d.join("shape.onnx")).expect("copy");
    let mut s = sidecar.clone();
    s["onnx_file"] = "shape.onnx".into();
    s["input"]["height"] = 64.into();
    std::fs::write(d.join("shape.json"), s.to_string()).expect("write");
    let e = load_err(&d.join("shape.onnx"));
    assert!(
        e.contains("shape.onnx") && e.contains("[N, 1, 64, 128]"),
        "{e}"
    );

    // Sidecar with fewer classes than the network outputs: refused at the first inference.
    std::fs::copy(shipped(), d.join("classes.onnx")).expect("copy");
    let mut s = sidecar.clone();
    s["onnx_file"] = "classes.onnx".into();
    s["classes"].as_array_mut().expect("classes").pop();
    std::fs::write(d.join("classes.json"), s.to_string()).expect("write");
    let mut m = SegmentationModel::load(&d.join("classes.onnx")).expect("loads");
    let n = m.spec.input.height * m.spec.input.width;
    let e = m
        .run_raw(vec![0.0; n], 1)
        .expect_err("class count")
        .to_string();
    assert!(
        e.contains("classes.onnx") && e.contains("classes in the sidecar"),
        "{e}"
    );

    // A sidecar asking for an absurd canvas (memory) is refused before anything is allocated.
    let mut s = sidecar.clone();
    s["input"]["width"] = 100_000.into();
    std::fs::write(d.join("huge.json"), s.to_string()).expect("write");
    let e = load_err(&d.join("huge.json"));
    assert!(e.contains("huge.json") && e.contains("width 100000"), "{e}");

    // Class names and types that would make an invalid RT Structure Set.
    let mut s = sidecar.clone();
    s["classes"][1]["interpreted_type"] = "organ".into();
    std::fs::write(d.join("cs.json"), s.to_string()).expect("write");
    let e = load_err(&d.join("cs.json"));
    assert!(e.contains("cs.json") && e.contains("'organ'"), "{e}");
    let mut s = sidecar.clone();
    s["classes"][2]["name"] = "x".repeat(65).into();
    std::fs::write(d.join("long.json"), s.to_string()).expect("write");
    let e = load_err(&d.join("long.json"));
    assert!(e.contains("long.json") && e.contains("1 to 64"), "{e}");

    // A sidecar naming an unknown format, and one that is not JSON.
    let mut s = sidecar.clone();
    s["format"] = "other/1".into();
    std::fs::write(d.join("format.json"), s.to_string()).expect("write");
    let e = load_err(&d.join("format.json"));
    assert!(e.contains("format.json") && e.contains("other/1"), "{e}");
    std::fs::write(d.join("broken.json"), "{").expect("write");
    let e = load_err(&d.join("broken.json"));
    assert!(
        e.contains("broken.json") && e.contains("invalid model sidecar"),
        "{e}"
    );
}

#[test]
fn segment_with_model_never_changes_the_input_structure_set() {
    use sha2::{Digest, Sha256};
    tract();
    let dir = common::copy_tg119();
    let rs = dir.path().join("RS.TG119.dcm");
    let before = Sha256::digest(std::fs::read(&rs).expect("rtstruct"));
    // Outputs go outside the case folder (rtopt refuses an output inside an input).
    let outdir = tempfile::tempdir().expect("tmp");
    let out = outdir.path().join("auto.dcm");
    let done = cli::segment(&cli::SegmentRequest {
        memory_budget_bytes: None,
        folder: dir.path().to_path_buf(),
        out: Some(out.clone()),
        rtstruct: None,
        model: Some(models().join("rtopt_abdomen_oar_2d.json")),
        series: None,
        force: false,
        created: Some(common::fixed_time()),
    })
    .expect("segment with model");
    eprintln!("{}", done.report.join("\n"));
    assert_eq!(
        Sha256::digest(std::fs::read(&rs).expect("rtstruct")),
        before,
        "input RTSTRUCT changed"
    );
    common::assert_dciodvfy_clean(&out);
    // Deterministic: a second run gives the same bytes.
    let again = outdir.path().join("again.dcm");
    cli::segment(&cli::SegmentRequest {
        memory_budget_bytes: None,
        folder: dir.path().to_path_buf(),
        out: Some(again.clone()),
        rtstruct: None,
        model: Some(shipped()),
        series: None,
        force: false,
        created: Some(common::fixed_time()),
    })
    .expect("second run");
    assert!(
        std::fs::read(&again).expect("again") == std::fs::read(&out).expect("out"),
        "two runs differ"
    );
    // Every imported ROI is still there, unchanged in name, and the report names the model
    // for every class it considered.
    let ss = rtopt::io::dicom::rtstruct::read_rtstruct(&out).expect("read written RTSTRUCT");
    for name in ["Core", "OuterTarget", "BODY"] {
        assert!(ss.rois.iter().any(|r| r.name == name), "{name} lost");
    }
    let model_lines = done
        .report
        .iter()
        .filter(|l| l.contains("rtopt_abdomen_oar_2d"))
        .count();
    assert_eq!(model_lines, 7, "{:?}", done.report);
}

/// Tiling: the same CT segmented with one canvas and with overlapping canvases (a field
/// declared 2 canvases wide and high, so 3 x 3 canvases: the centred one and eight around it)
/// must agree.
/// The network is convolutional but not exactly shift-invariant (zero padding, three 2x2
/// poolings), so the agreement is high, not perfect; the floor is the measured value minus a
/// margin (see the comment on TILING_MIN_DICE).
#[test]
fn tiled_canvases_agree_with_a_single_canvas() {
    tract();
    let tmp = common::ct_b();
    let (ct, _) =
        rtopt::io::dicom::ct::load_ct_folder(tmp.path(), &Default::default()).expect("CT B");
    let body = rtopt::segment::body::body_outline(&ct);
    let c = body.centroid_mm().expect("body");
    let mut m = SegmentationModel::load(&shipped()).expect("model");
    let canvas = m.spec.input.width as f64 * m.spec.input.spacing_mm[0];
    let single = m
        .segment(
            &ct,
            [c[0], c[1]],
            ([c[0] - 100.0, c[1] - 100.0], [c[0] + 100.0, c[1] + 100.0]),
            None,
        )
        .expect("single canvas");
    let half = canvas;
    let tiled = m
        .segment(
            &ct,
            [c[0], c[1]],
            ([c[0] - half, c[1] - half], [c[0] + half, c[1] + half]),
            None,
        )
        .expect("tiled");
    assert_eq!(
        model::tile_centres(c[0], c[0] - half, c[0] + half, canvas).len(),
        3
    );
    for ((cls, a), (_, b)) in single.iter().zip(&tiled) {
        // CT B has no kidney: the model's 16 cm3 there is a false positive, whose extent is
        // as unstable as one would expect (measured single vs tiled Dice 0.47).
        if cls.name == "Kidneys" {
            continue;
        }
        let d = a.dice(b);
        eprintln!(
            "{}: single vs tiled Dice {d:.4} ({} / {} voxels)",
            cls.name,
            a.count(),
            b.count()
        );
        assert!(d >= TILING_MIN_DICE, "{}: Dice {d}", cls.name);
    }
}

// Measured 2026-11-28 (Gaussian blending, half-canvas steps): Liver 0.986, Spleen 0.955,
// Stomach 0.985, Aorta 0.9995, SpinalCord 0.998, Vertebrae 0.997. With flat weights and
// canvases spread edge to edge the spleen fell to 0.81 and the stomach to 0.24 (the model has
// learnt where in the canvas the patient lies); the floor 0.93 catches that.
const TILING_MIN_DICE: f64 = 0.93;
