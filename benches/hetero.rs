//! Final dose of the TG119 plan (9 beams 0..320 by 40, 5 mm beamlets, 1 MU each) with the
//! heterogeneous engine (`dose_engine: "superposition"`, beam model v2) against the pencil
//! beam's forward dose: criterion on the 3 mm grid, and a one-shot table of how the time
//! scales with the grid spacing (3/4/5 mm) and the beam count (3/5/9), and one run with
//! lung-density (0.3) blocks at 60 mm and more either side of the centre (a heterogeneous CT
//! needs more kernel widths per term); one build of each engine's influence matrix.
//! `cargo bench --bench hetero`

mod common;
#[path = "../tests/support/water.rs"]
mod support;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use rtopt::control::CancelToken;
use rtopt::dose::{engine_of_kind, DoseGrid};
use rtopt::machine::{DoseEngineKind, MachineModel};

fn bench(c: &mut Criterion) {
    let (case, _, beams, body) = common::tg119();
    let m = MachineModel::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/machines/truebeam_6x_v2.json"),
    )
    .expect("v2 machine");
    let cancel = CancelToken::new();
    let sup = engine_of_kind(DoseEngineKind::Superposition);
    let pb = engine_of_kind(DoseEngineKind::PencilBeam);
    let n_cols: usize = beams.iter().map(|b| b.beamlets.len()).sum();
    let w = vec![1.0; n_cols];
    eprintln!(
        "TG119: {} beams, {n_cols} beamlets, threads {}",
        beams.len(),
        rayon::current_num_threads()
    );
    eprintln!("grid mm  beams  voxels  superposition s  pencil beam s");
    for (sp, nb) in [(3.0, 9), (4.0, 9), (5.0, 9), (3.0, 5), (3.0, 3)] {
        let dg = DoseGrid::covering(&case.ct.grid, [sp; 3], &body);
        let bs = &beams[..nb];
        let wb = &w[..bs.iter().map(|b| b.beamlets.len()).sum::<usize>()];
        let t = Instant::now();
        sup.dose_from_weights(&case.ct, &dg, bs, &m, wb, &cancel)
            .expect("dose");
        let ts = t.elapsed().as_secs_f64();
        let t = Instant::now();
        pb.dose_from_weights(&case.ct, &dg, bs, &m, wb, &cancel)
            .expect("dose");
        let tp = t.elapsed().as_secs_f64();
        eprintln!(
            "{sp:>7.0}  {nb:>5}  {:>6}  {ts:>15.2}  {tp:>13.2}",
            dg.voxels.len()
        );
    }
    let dg = DoseGrid::covering(&case.ct.grid, [3.0; 3], &body);
    let mut lung_ct = case.ct.clone();
    let lung = support::hu_of(&m, 0.3);
    let gr = lung_ct.grid;
    let [nx, ny, _] = gr.dims;
    for (i, h) in lung_ct.hu.iter_mut().enumerate() {
        let p = gr.centre_mm(i % nx, (i / nx) % ny, i / (nx * ny));
        if body.inside[i] && p[0].abs() >= 60.0 {
            *h = lung;
        }
    }
    let t = Instant::now();
    sup.dose_from_weights(&lung_ct, &dg, &beams, &m, &w, &cancel)
        .expect("dose");
    eprintln!(
        "3 mm, 9 beams, lung blocks (0.3, |x| >= 60 mm): superposition {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let opts = rtopt::dose::DoseOptions::default();
    for (name, e) in [("superposition", sup), ("pencil beam", pb)] {
        let calc = e
            .influence_matrix(&case.ct, &body, &beams, &m, &opts, &cancel)
            .expect("matrix");
        eprintln!(
            "influence matrix (default options), {name}: {:.2} s, nnz {}",
            calc.build_seconds,
            calc.matrix.nnz()
        );
    }
    let mut g = c.benchmark_group("hetero");
    g.sample_size(10);
    g.bench_function("superposition_final_dose_tg119_3mm", |b| {
        b.iter(|| {
            sup.dose_from_weights(&case.ct, &dg, &beams, &m, &w, &cancel)
                .expect("dose")
        })
    });
    g.bench_function("pencil_beam_final_dose_tg119_3mm", |b| {
        b.iter(|| {
            pb.dose_from_weights(&case.ct, &dg, &beams, &m, &w, &cancel)
                .expect("dose")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
