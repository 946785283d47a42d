//! The TG119 fluence optimisation alone (issue 16 aims; figures in docs/benchmarks.md,
//! section "Interior point on TG119"), on a prepared plan (influence matrix, scatter
//! correction and the Hessian blocks built outside the timed loop):
//!
//! - `solve/tg119/cold`: the shipped protocol, interior point, from the uniform start;
//! - `solve/tg119/variant`: the variant "Core overdose weight 3000 instead of 300", cold;
//! - `solve/tg119/resolve_from_zeros`: the shipped protocol again, starting from the
//!   previous solve's zero beamlets (`reuse_fixed_beamlets`, as the dose-fidelity loop does);
//! - `optimise/tg119/with_fidelity`: `PreparedPlan::optimise` with the dose-fidelity loop
//!   (first solve, untruncated doses, row rescaling, re-solves: issue 17).
//!
//! One solve per sample (seconds each): 10 samples, flat sampling. The resident memory
//! before the first solve and the peak afterwards (VmRSS / VmHWM) are printed.

mod common;

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use rtopt::optimize::protocol::Protocol;
use rtopt::plan::{DoseFidelity, Planner, Variant};

fn bench(c: &mut Criterion) {
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default()).expect("TG119");
    let protocol = Protocol::load(Path::new("data/protocols/tg119.toml")).expect("protocol");
    let no_loop = DoseFidelity {
        max_corrections: 0,
        ..DoseFidelity::default()
    };
    let mut prepared = Planner::new(case.clone(), protocol.clone())
        .with_dose_fidelity(no_loop)
        .prepare()
        .expect("prepare");
    prepared.problem().precompute();
    let before = common::rss_mib();
    let base = prepared.optimise(&Variant::default()).expect("solve");
    eprintln!(
        "solve/tg119: {} iterations, objective {:.6}, RSS before {before:.0} MiB, peak {:.0} MiB",
        base.result.iterations,
        base.result.objective,
        common::peak_rss_mib()
    );
    let mut g = c.benchmark_group("solve/tg119");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(40));
    let opts = rtopt::plan::optimisation_defaults();
    g.bench_function("cold", |b| {
        b.iter(|| prepared.problem().solve(&opts).expect("solve").objective)
    });
    let variant = Variant::new("core sparing").weight("Core", "overdose", 3000.0);
    g.bench_function("variant", |b| {
        b.iter(|| {
            prepared
                .optimise(&variant)
                .expect("variant")
                .result
                .objective
        })
    });
    prepared.optimise(&Variant::default()).expect("base");
    let hinted = rtopt::optimize::OptimizeOptions {
        reuse_fixed_beamlets: true,
        ..opts.clone()
    };
    g.bench_function("resolve_from_zeros", |b| {
        b.iter(|| prepared.problem().solve(&hinted).expect("solve").objective)
    });
    g.finish();
    drop(prepared);

    // Segment weights off: the loop's last re-solve then runs to the optimiser's tolerance,
    // as when this benchmark was first measured.
    let mut with_loop = Planner::new(case, protocol)
        .with_segment_weights(rtopt::plan::SegmentWeightOptions { enabled: false })
        .prepare()
        .expect("prepare");
    let mut g = c.benchmark_group("optimise/tg119");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(90));
    g.bench_function("with_fidelity", |b| {
        b.iter(|| {
            with_loop
                .optimise(&Variant::default())
                .expect("optimise")
                .result
                .objective
        })
    });
    g.finish();
    eprintln!("peak RSS of the process {:.0} MiB", common::peak_rss_mib());
}

criterion_group!(benches, bench);
criterion_main!(benches);
