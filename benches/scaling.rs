//! How the TG119 constrained optimisation scales with the number of beamlets (issue 16's
//! scaling table, figures in docs/benchmarks.md): 5, 9, 15 and 36 equispaced coplanar beams
//! with 5 mm beamlets, and 9 beams with 3 mm beamlets; shipped protocol, pipeline matrix
//! (15 mm cutoff, 1 % threshold, scatter correction), no dose-fidelity loop, one cold
//! interior-point solve each.
//!
//! `cargo bench --bench scaling` runs every configuration in a child process of its own (so
//! that each peak resident memory is its own) and prints one Markdown row per configuration:
//! beamlets, matrix non-zeros, matrix build, Hessian blocks, solve, iterations, peak RSS.
//! `cargo bench --bench scaling -- 15x5` runs one configuration (beams x beamlet mm) in
//! this process.
//!
//! Not a criterion benchmark: the 36-beam solve alone takes minutes, so each configuration
//! runs once; the table gives the machine, date and load with it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rtopt::beams::BeamSetup;
use rtopt::optimize::protocol::Protocol;
use rtopt::plan::{DoseFidelity, Planner, SegmentWeightOptions};

const CONFIGS: [(usize, f64); 5] = [(5, 5.0), (9, 5.0), (15, 5.0), (9, 3.0), (36, 5.0)];

fn one(beams: usize, beamlet_mm: f64) {
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default()).expect("TG119");
    let protocol = Protocol::load(Path::new("data/protocols/tg119.toml")).expect("protocol");
    let setup = BeamSetup {
        gantry_deg: (0..beams)
            .map(|i| 360.0 * i as f64 / beams as f64)
            .collect(),
        beamlet_size_mm: beamlet_mm,
        ..BeamSetup::default()
    };
    let t0 = Instant::now();
    let prepared = Planner::new(case, protocol)
        .with_beam_setup(setup)
        .with_dose_fidelity(DoseFidelity {
            max_corrections: 0,
            ..DoseFidelity::default()
        })
        .with_segment_weights(SegmentWeightOptions { enabled: false })
        .prepare()
        .expect("prepare");
    let prepare_s = t0.elapsed().as_secs_f64();
    let (n, nnz) = {
        let a = prepared.problem().matrix();
        (a.n_cols(), a.nnz())
    };
    let t1 = Instant::now();
    prepared.problem().precompute();
    let hess_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let r = prepared
        .problem()
        .solve(&rtopt::plan::optimisation_defaults())
        .expect("solve");
    let solve_s = t2.elapsed().as_secs_f64();
    println!(
        "| {beams} | {beamlet_mm} | {n} | {:.1} | {prepare_s:.1} | {hess_s:.1} | {solve_s:.1} | {} | {} | {:.0} | {:.0} |",
        nnz as f64 / 1e6,
        r.iterations,
        r.status,
        r.objective,
        common::peak_rss_mib()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a configuration is `<beams>x<beamlet mm>`.
    let arg = std::env::args().skip(1).find(|a| a.contains('x'));
    if let Some(a) = arg {
        let (b, mm) = a.split_once('x').expect("beams x mm");
        one(
            b.parse().expect("beam count"),
            mm.parse().expect("beamlet size, mm"),
        );
        return;
    }
    println!(
        "| beams | beamlet mm | beamlets | nnz (M) | prepare s | Hessian blocks s | solve s | iterations | status | objective | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("own executable");
    for (b, mm) in CONFIGS {
        let out = Command::new(&exe)
            .arg(format!("{b}x{mm}"))
            .output()
            .expect("child run");
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().find(|l| l.starts_with('|')) {
            Some(row) if out.status.success() => println!("{row}"),
            _ => println!(
                "| {b} | {mm} | failed: {} |",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
        }
    }
}
