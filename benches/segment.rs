//! Classical auto-segmentation (body outline, lungs, contours) of the shipped TG119 CT
//! (167 x 167 x 129 voxels), and the mask -> contour step alone on its BODY.
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

fn segment_tg119(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tg119");
    let case = rtopt::Case::load(&dir, &rtopt::LoadOptions::default()).expect("loads");
    let body = case.structure("BODY").expect("BODY").mask.clone();
    let mut g = c.benchmark_group("segment");
    g.sample_size(10);
    g.bench_function("tg119_classical_body_lungs_contours", |b| {
        b.iter(|| rtopt::segment::segment_classical(&case.ct))
    });
    g.bench_function("tg119_body_mask_to_contours", |b| {
        b.iter(|| {
            rtopt::contours::mask_to_contours(&body, rtopt::contours::DEFAULT_TOLERANCE_VOXELS)
        })
    });
    g.finish();
}

/// The shipped ONNX model on the same 129-slice CT (after the classical steps: centring on the
/// body, resampling to 3 mm, inference in batches of 8 slices, resampling back, argmax,
/// post-processing, contours). The backend is the process's: tract, or ONNX Runtime when
/// `ORT_DYLIB_PATH` names a libonnxruntime; run the bench once for each.
#[cfg(feature = "onnx")]
fn segment_tg119_model(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let case =
        rtopt::Case::load(&root.join("data/tg119"), &rtopt::LoadOptions::default()).expect("loads");
    let mut model = rtopt::segment::model::SegmentationModel::load(
        &root.join("data/models/rtopt_abdomen_oar_2d.onnx"),
    )
    .expect("model loads");
    let name = match model.backend {
        rtopt::segment::model::Backend::Tract => "tg119_model_tract",
        rtopt::segment::model::Backend::OnnxRuntime => "tg119_model_onnxruntime",
    };
    let mut g = c.benchmark_group("segment");
    g.sample_size(10);
    g.bench_function(name, |b| {
        b.iter(|| rtopt::segment::segment_auto(&case.ct, Some(&mut model)).expect("segments"))
    });
    g.finish();
}

#[cfg(not(feature = "onnx"))]
fn segment_tg119_model(_: &mut Criterion) {}

criterion_group!(benches, segment_tg119, segment_tg119_model);
criterion_main!(benches);
