//! Dose fidelity of the optimisation (issue 17): after the dose-fidelity loop the optimiser's
//! dose of its final weights must match the untruncated dose of the same weights, and the
//! deliverable plan must meet the goals without post-hoc scaling beyond +/- 2 %. Two
//! geometries: TG-119's C-shape (DICOM, `data/tg119`) and the in-memory prostate-like
//! phantom (`rtopt::phantom::prostate`, `data/protocols/prostate-phantom.toml`).
//!
//! Tolerances are the must-shows: |optimiser - untruncated| <= 2 % of Rx in 99 % of
//! the body voxels above 10 % of Rx; target and organ DVH points within 1 % of Rx;
//! deliverable vs optimised gamma 2 %/2 mm (global, 10 % threshold) >= 95 %; normalisation
//! factor in [0.98, 1.02]; every hard goal met on the exported (deliverable) dose, after
//! sequencing and the segment-weight optimisation.

mod common;

use rtopt::gamma::{gamma_3d, GammaOptions};
use rtopt::optimize::protocol::Protocol;
use rtopt::optimize::GoalRole;
use rtopt::plan::{Planner, Variant};
use rtopt::report::ModelFidelity;

/// Plan `case` with `protocol` and check the must-shows; `points` are `(structure, x)` for
/// the `D_x` compared between the optimiser's and the untruncated dose.
fn check(
    name: &str,
    case: rtopt::Case,
    protocol: Protocol,
    points: &[(&str, f64)],
    band_high: f64,
) {
    let rx = protocol.prescription.total_dose_gy;
    let mut prepared = Planner::new(case, protocol).prepare().expect(name);
    let opt = prepared.optimise(&Variant::default()).expect(name);
    let exact = opt
        .exact_dose_gy
        .clone()
        .expect("the dose-fidelity loop is on by default and returns the untruncated dose");
    assert!(
        opt.fidelity.len() >= 2,
        "{name}: at least one correction expected, got {:?}",
        opt.fidelity
    );
    let fid = ModelFidelity::compute(&opt.result.dose_gy, &exact, rx, 10.0);
    println!("{name}: fidelity steps {:?}", opt.fidelity);
    assert!(
        fid.p99_percent_rx <= 2.0,
        "{name}: 99th percentile {:.2} % of Rx (must be <= 2 %)",
        fid.p99_percent_rx
    );
    for &(structure, pct) in points {
        let s = prepared.case().structure(structure).expect(structure);
        let rows = prepared.dose_grid().rows_in(&s.mask);
        let pick = |d: &[f64]| rows.iter().map(|&r| d[r as usize]).collect::<Vec<_>>();
        let o = rtopt::dvh::dose_at_volume(&pick(&opt.result.dose_gy), pct);
        let e = rtopt::dvh::dose_at_volume(&pick(&exact), pct);
        println!("{name}: {structure} D{pct}: optimiser {o:.3} Gy, untruncated {e:.3} Gy");
        assert!(
            (o - e).abs() <= 0.01 * rx,
            "{name}: {structure} D{pct} optimiser {o:.3} Gy vs untruncated {e:.3} Gy (> 1 % of Rx)"
        );
    }

    let seq = prepared.sequence(&opt).expect(name);
    let planned = prepared.finish(&opt, seq).expect(name);
    println!("{name}: normalisation x{:.4}", planned.mu_scale);
    let sw = planned
        .report
        .delivery
        .segment_weights
        .clone()
        .expect("the segment-weight optimisation is on by default");
    println!("{name}: segment weights {sw:?}");
    assert_eq!(sw.kept_because, None, "{name}: segment problem not solved");
    let model = sw.model_vs_deliverable.expect("segment model fidelity");
    assert!(
        model.p99_percent_rx <= 2.0,
        "{name}: segment model vs deliverable, 99th percentile {:.2} % of Rx",
        model.p99_percent_rx
    );
    // MU efficiency: MU per fraction over cGy per fraction.
    let d = &planned.report.delivery;
    let cgy = rx * 100.0 / planned.protocol.prescription.fractions as f64;
    assert!((d.mu_per_cgy - d.total_mu_per_fraction / cgy).abs() < 1e-9 * d.mu_per_cgy);
    assert!(
        (0.98..=band_high).contains(&planned.mu_scale),
        "{name}: normalisation factor {:.4} outside [0.98, {band_high}]",
        planned.mu_scale
    );
    let grid = &planned.dose_grid.grid;
    let optimised_full = planned.dose_grid.to_full(&exact);
    let g = gamma_3d(
        grid,
        &optimised_full,
        grid,
        &planned.deliverable_full_gy,
        &GammaOptions {
            dose_percent: 2.0,
            dta_mm: 2.0,
            ..GammaOptions::default()
        },
    )
    .expect(name);
    println!("{name}: gamma 2 %/2 mm {:.2} %", g.pass_rate_percent);
    assert!(
        g.pass_rate_percent >= 95.0,
        "{name}: deliverable vs optimised gamma 2 %/2 mm {:.2} % (< 95 %)",
        g.pass_rate_percent
    );
    for row in &planned.report.goals {
        if row.kind == GoalRole::Constraint {
            assert_eq!(
                row.met,
                Some(true),
                "{name}: hard goal {} {} not met on the exported dose ({:.3} {})",
                row.structure,
                row.goal,
                row.achieved,
                row.unit
            );
        }
    }
}

#[test]
fn tg119_optimiser_dose_matches_the_delivered_dose() {
    let case = rtopt::Case::load(&common::tg119_dir(), &Default::default()).expect("TG119");
    let protocol =
        Protocol::load(&common::repo().join("data/protocols/tg119.toml")).expect("protocol");
    check(
        "TG119",
        case,
        protocol,
        &[("OuterTarget", 95.0), ("OuterTarget", 10.0), ("Core", 10.0)],
        // The segment-weight optimisation keeps D95 >= 50 Gy on the deliverable segments;
        // the rest of the factor (x1.020 measured 2026-12-02, 15 levels) is the optimiser's
        // whole-voxel D95 against the contour's DVH points (docs/sequencing.md).
        1.02,
    );
}

#[test]
fn prostate_phantom_optimiser_dose_matches_the_delivered_dose() {
    let protocol = Protocol::load(&common::repo().join("data/protocols/prostate-phantom.toml"))
        .expect("protocol");
    check(
        "prostate phantom",
        rtopt::phantom::prostate(3.0),
        protocol,
        &[
            ("PTV", 95.0),
            ("PTV", 5.0),
            ("Rectum", 30.0),
            ("Bladder", 25.0),
        ],
        1.02,
    );
}
