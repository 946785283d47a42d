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

criterion_group!(benches, segment_tg119);
criterion_main!(benches);
