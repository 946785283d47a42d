//! Import + rasterise the shipped TG119 case (129 CT slices, 3 ROIs).
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

fn import_tg119(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tg119");
    let mut g = c.benchmark_group("import");
    g.sample_size(20);
    g.bench_function("tg119_ct_rtstruct_rasterise", |b| {
        b.iter(|| rtopt::Case::load(&dir, &rtopt::LoadOptions::default()).expect("loads"))
    });
    g.finish();
}

criterion_group!(benches, import_tg119);
criterion_main!(benches);
