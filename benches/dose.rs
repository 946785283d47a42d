//! Dose-engine benchmarks on TG119 (9 beams 0..320 by 40, 5 mm beamlets, 3 mm grid):
//! influence-matrix build, `A x`, `A^T y`, and a stream-copy reference bandwidth.
//! `cargo bench --bench dose`

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rayon::prelude::*;
use rtopt::dose::{influence_matrix, DoseOptions};

fn bench(c: &mut Criterion) {
    let (case, m, beams, body) = common::tg119();
    let opts = DoseOptions::default();
    let calc = influence_matrix(&case.ct, &body, &beams, &m, &opts).expect("matrix");
    let a = &calc.matrix;
    eprintln!(
        "TG119: {} beams, {} beamlets, {} dose voxels, nnz {}, {:.1} MB (CSR+CSC), truncated mass {:.3} %, build {:.2} s, threads {}",
        beams.len(),
        a.n_cols(),
        a.n_rows(),
        a.nnz(),
        a.bytes() as f64 / 1e6,
        100.0 * calc.truncated_mass_fraction,
        calc.build_seconds,
        rayon::current_num_threads()
    );
    let mut g = c.benchmark_group("dose");
    g.sample_size(10);
    g.bench_function("influence_matrix_tg119", |b| {
        b.iter(|| influence_matrix(&case.ct, &body, &beams, &m, &opts).expect("matrix"))
    });
    let x = vec![1.0; a.n_cols()];
    let y = vec![1.0; a.n_rows()];
    let mut out_r = vec![0.0; a.n_rows()];
    let mut out_c = vec![0.0; a.n_cols()];
    g.sample_size(50);
    g.bench_function("A_x_tg119", |b| {
        b.iter(|| a.dose_into(black_box(&x), &mut out_r))
    });
    g.bench_function("At_y_tg119", |b| {
        b.iter(|| a.adjoint_into(black_box(&y), &mut out_c))
    });
    // Stream copy of as many bytes as one CSR pass reads (8 bytes per non-zero), rayon.
    let n = a.nnz() * 2;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    eprintln!(
        "stream copy: {:.1} MB read + written per iteration",
        (n * 8) as f64 / 1e6
    );
    g.bench_function("stream_copy_nnz_x8_bytes", |b| {
        b.iter(|| {
            dst.par_chunks_mut(1 << 16)
                .zip(src.par_chunks(1 << 16))
                .for_each(|(d, s)| d.copy_from_slice(s));
            black_box(&dst);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
