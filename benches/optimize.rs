//! Fluence-optimisation benchmarks (figures in docs/benchmarks.md, section "Optimisation").
//!
//! - `optimize/synthetic/<voxels>x<beamlets>`: full solve (Hessian blocks, formulation,
//!   interior point) of the synthetic C-shape with hard CVaR constraints, cold problem each
//!   time; `optimize/clarabel/...` the same with the Clarabel reference backend.
//! - `optimize/variant/...`: re-solve after a weight change on a warm problem (cached
//!   Hessian blocks and constraint-generation rows).
//! - `optimize/tg119`: TG-119 C-shape with the project's dose engine; only when
//!   `RTOPT_BENCH_TG119=1` (the dose calculation takes minutes and is not timed).
//!
//! Peak resident memory of the process is printed at the end (VmHWM).

mod common;

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rtopt::optimize::synthetic::c_shape;
use rtopt::optimize::{Backend, OptimizeOptions, PlanningProblem, Protocol};

const PROTOCOL: &str = r#"
[prescription]
total_dose_gy = 50
fractions = 30
target = "OuterTarget"

[[structure]]
name = "OuterTarget"
goals = [
  { type = "deviation", dose_gy = 51, weight = 1000 },
  { type = "dvh_min", dose_gy = 50, volume_pct = 95 },
  { type = "dvh_max", dose_gy = 55, volume_pct = 10 },
]

[[structure]]
name = "Core"
goals = [
  { type = "overdose", dose_gy = 10, weight = 300 },
  { type = "dvh_max", dose_gy = 25, volume_pct = 10 },
]

[[structure]]
name = "BODY"
goals = [{ type = "overdose", dose_gy = 30, weight = 100, exclude = ["OuterTarget"] }]
"#;

fn synthetic(c: &mut Criterion) {
    let p = Protocol::from_toml_str(PROTOCOL, Path::new("bench.toml")).unwrap();
    let mut g = c.benchmark_group("optimize");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for (n_side, slices, beams, bl) in [(30, 6, 5, 6.0), (40, 8, 7, 5.0), (50, 12, 9, 5.0)] {
        let case = c_shape(n_side, slices, beams, bl);
        let label = format!("{}x{}", case.matrix.n_rows(), case.matrix.n_cols());
        let opts = OptimizeOptions::default();
        let probe = || {
            let r = PlanningProblem::new(
                &case.matrix,
                &case.dose_grid,
                &case.beams,
                &case.structures,
                &p,
            )
            .unwrap()
            .solve(&opts)
            .unwrap();
            eprintln!(
                "synthetic {label}: nnz {}, {} iterations, {} rounds, {} variables, {} rows, \
                 solve {:.2} s",
                case.matrix.nnz(),
                r.iterations,
                r.rounds,
                r.n_variables,
                r.n_constraint_rows,
                r.solve_seconds
            );
        };
        let mut probed = false;
        let clarabel = OptimizeOptions {
            backend: Backend::Clarabel,
            ..OptimizeOptions::default()
        };
        g.bench_function(format!("clarabel/synthetic/{label}"), |b| {
            b.iter(|| {
                PlanningProblem::new(
                    &case.matrix,
                    &case.dose_grid,
                    &case.beams,
                    &case.structures,
                    &p,
                )
                .unwrap()
                .solve(&clarabel)
                .unwrap()
            })
        });
        g.bench_function(format!("synthetic/{label}"), |b| {
            if !probed {
                probe();
                probed = true;
            }
            b.iter(|| {
                PlanningProblem::new(
                    &case.matrix,
                    &case.dose_grid,
                    &case.beams,
                    &case.structures,
                    &p,
                )
                .unwrap()
                .solve(&opts)
                .unwrap()
            })
        });
        let mut warm = PlanningProblem::new(
            &case.matrix,
            &case.dose_grid,
            &case.beams,
            &case.structures,
            &p,
        )
        .unwrap();
        warm.solve(&opts).unwrap();
        let goal = warm.find_goal("Core", "overdose").unwrap();
        let mut w = 300.0;
        g.bench_function(format!("variant/{label}"), |b| {
            b.iter(|| {
                w = if w == 300.0 { 600.0 } else { 300.0 };
                warm.set_goal_weight(goal, w).unwrap();
                warm.solve(&opts).unwrap()
            })
        });
    }
    g.finish();
    eprintln!("peak RSS {:.0} MiB", common::peak_rss_mib());
}

fn tg119(c: &mut Criterion) {
    if std::env::var("RTOPT_BENCH_TG119").as_deref() != Ok("1") {
        return;
    }
    use rtopt::beams::{setup_beams, BeamSetup};
    use rtopt::dose::{influence_matrix, DoseOptions};
    use rtopt::machine::MachineModel;
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default()).unwrap();
    let p = Protocol::load(Path::new("data/protocols/tg119.toml")).unwrap();
    let machine = MachineModel::default_6x();
    let target = &case.structure("OuterTarget").unwrap().mask;
    let beams = setup_beams(target, &BeamSetup::default(), &machine).unwrap();
    let calc = influence_matrix(
        &case.ct,
        &case.body_mask(),
        &beams,
        &machine,
        &DoseOptions::default(),
    )
    .unwrap();
    let structures: Vec<rtopt::dose::StructureRows> = ["OuterTarget", "Core", "BODY"]
        .iter()
        .map(|n| rtopt::dose::StructureRows::of(case.structure(n).unwrap(), &calc.dose_grid))
        .collect::<rtopt::Result<_>>()
        .unwrap();
    let opts = OptimizeOptions::default();
    let mut g = c.benchmark_group("optimize");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    let r = PlanningProblem::new(&calc.matrix, &calc.dose_grid, &beams, &structures, &p)
        .unwrap()
        .solve(&opts)
        .unwrap();
    eprintln!(
        "tg119: {} iterations, {} rounds, {}, solve {:.2} s, objective {:.6}, peak RSS {:.0} MiB",
        r.iterations,
        r.rounds,
        r.status,
        r.solve_seconds,
        r.objective,
        common::peak_rss_mib()
    );
    g.bench_function("tg119", |b| {
        b.iter(|| {
            PlanningProblem::new(&calc.matrix, &calc.dose_grid, &beams, &structures, &p)
                .unwrap()
                .solve(&opts)
                .unwrap()
        })
    });
    g.finish();
    eprintln!("peak RSS {:.0} MiB", common::peak_rss_mib());
}

criterion_group!(benches, synthetic, tg119);
criterion_main!(benches);
