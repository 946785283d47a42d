//! The staged planner on TG119 (issue 15, figures in docs/benchmarks.md, section "Staged
//! planner"): what a dosimetrist's variant costs.
//!
//! - `staged/tg119/fresh_variant`: a variant the old way, a new `Planner` each time
//!   (`prepare`: beams, influence matrix, scatter correction; then `optimise`).
//! - `staged/tg119/prepared_variant`: the same variant on a prepared plan (`optimise` only:
//!   the matrix, the cached Hessian blocks and the candidate voxels are reused).
//!
//! The case is loaded once outside the timed loop. Both solve the same variant (Core
//! overdose weight 3000 instead of 300) to the same optimum.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use rtopt::optimize::protocol::Protocol;
use rtopt::plan::{Planner, Variant};

fn bench(c: &mut Criterion) {
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default()).expect("TG119");
    let protocol = Protocol::load(Path::new("data/protocols/tg119.toml")).expect("protocol");
    let variant = Variant::new("core sparing").weight("Core", "overdose", 3000.0);
    let mut g = c.benchmark_group("staged/tg119");
    // One solve per sample (each takes seconds): 10 samples, flat sampling.
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(60));
    g.bench_function("fresh_variant", |b| {
        b.iter(|| {
            let mut p = Planner::new(case.clone(), protocol.clone())
                .prepare()
                .expect("prepare");
            p.optimise(&variant).expect("optimise").result.objective
        })
    });
    let mut prepared = Planner::new(case.clone(), protocol.clone())
        .prepare()
        .expect("prepare");
    // The prepared protocol first, as a planner would, then the variant in the loop.
    prepared.optimise(&Variant::default()).expect("base");
    g.bench_function("prepared_variant", |b| {
        b.iter(|| {
            prepared
                .optimise(&variant)
                .expect("optimise")
                .result
                .objective
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
