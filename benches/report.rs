//! The plan report of TG119 (issue 19, "Report generation, including images, stays under
//! 1 s"; figures in docs/benchmarks.md, section "Plan report"):
//!
//! - `report/tg119/html`: `PlannedCase::report_html`, the whole page with its dose washes,
//!   isodose lines, DVH and nine beam's-eye views (PNG and SVG encoded).
//! - `report/tg119/write`: `PlannedCase::write`, every output file (RT Plan, RT Dose,
//!   report.json, report.html) into a fresh folder, atomically.
//!
//! The plan is made once outside the timed loop.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use rtopt::optimize::protocol::Protocol;
use rtopt::outputs::Replace;
use rtopt::plan::Planner;

fn bench(c: &mut Criterion) {
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default()).expect("TG119");
    let protocol = Protocol::load(Path::new("data/protocols/tg119.toml")).expect("protocol");
    let planned = Planner::new(case, protocol).run().expect("plan");
    let mut g = c.benchmark_group("report/tg119");
    g.sample_size(10);
    g.bench_function("html", |b| {
        b.iter(|| planned.report_html().expect("html").len())
    });
    let work = tempfile::tempdir().expect("tmp");
    let mut n = 0usize;
    g.bench_function("write", |b| {
        b.iter(|| {
            n += 1;
            planned
                .write(&work.path().join(format!("out{n}")), Replace::Never)
                .expect("write")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
