//! Sparse products of the TG119 optimisation matrix (the pipeline's 15 mm / 1 % matrix,
//! 6.8 M non-zeros): rtopt's CSR/CSC kernels (`f32` values, `u32` indices, rayon) against
//! nalgebra-sparse's `CsrMatrix<f64>` (serial), to decide where nalgebra-sparse can serve
//! (issue 15). Figures in docs/benchmarks.md, section "Sparse storage".
//! `cargo bench --bench sparse`

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use nalgebra::DVector;
use rayon::prelude::*;
use rtopt::dose::influence_matrix;

fn bench(c: &mut Criterion) {
    let (case, m, beams, body) = common::tg119();
    let opts = rtopt::plan::optimisation_dose_options();
    let a = influence_matrix(&case.ct, &body, &beams, &m, &opts)
        .expect("matrix")
        .matrix;
    let csr = a.to_nalgebra_csr().expect("nalgebra-sparse CSR");
    eprintln!(
        "TG119 optimisation matrix: {} x {}, nnz {}; rtopt {:.1} MB (CSR+CSC), nalgebra-sparse CSR+CSC {:.1} MB; threads {}",
        a.n_rows(),
        a.n_cols(),
        a.nnz(),
        a.bytes() as f64 / 1e6,
        (2 * a.nnz() * (8 + 8)) as f64 / 1e6,
        rayon::current_num_threads()
    );
    let x = vec![1.0; a.n_cols()];
    let y = vec![1.0; a.n_rows()];
    let xv = DVector::from_vec(x.clone());
    let yv = DVector::from_vec(y.clone());
    let mut out_r = vec![0.0; a.n_rows()];
    let mut out_c = vec![0.0; a.n_cols()];
    let mut g = c.benchmark_group("sparse/tg119");
    g.sample_size(30);
    g.bench_function("rtopt_A_x", |b| {
        b.iter(|| a.dose_into(black_box(&x), &mut out_r))
    });
    g.bench_function("nalgebra_sparse_csr_A_x", |b| {
        b.iter(|| black_box(&csr * black_box(&xv)))
    });
    g.bench_function("rtopt_At_y", |b| {
        b.iter(|| a.adjoint_into(black_box(&y), &mut out_c))
    });
    g.bench_function("nalgebra_sparse_csr_of_At_y", |b| {
        // A^T y as the CSR of A^T: the transpose done once outside, like rtopt's CSC.
        let at = csr.transpose();
        b.iter(|| black_box(&at * black_box(&yv)))
    });
    g.finish();
    // The machine's memory bandwidth on the same two threads (STREAM-like, McCalpin 1995): a
    // read (sum) and a copy of 256 MiB of f32, far beyond the caches. `A x` reads 8 bytes
    // per non-zero (f32 value, u32 column) plus the row pointers; issue 16 asks for at least
    // 60 % of this bandwidth.
    let n = 64 << 20;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let chunk = 1 << 16;
    let mut g = c.benchmark_group("stream");
    g.sample_size(30);
    g.bench_function("read_256MiB", |b| {
        b.iter(|| {
            // Eight independent sums per chunk, so that the adds vectorise and the loop is
            // bound by memory, not by the latency of one running sum.
            src.par_chunks(chunk)
                .map(|c| {
                    let lanes = c.chunks_exact(8).fold([0f32; 8], |mut acc, v| {
                        for (a, x) in acc.iter_mut().zip(v) {
                            *a += x;
                        }
                        acc
                    });
                    lanes.iter().sum::<f32>()
                })
                .sum::<f32>()
        })
    });
    g.bench_function("copy_256MiB", |b| {
        b.iter(|| {
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(d, s)| d.copy_from_slice(s))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
