//! The untruncated fluence-convolution dose (`dose::exact`) against the per-point reference
//! (`dose::dose_at_points`, exact ray trace per point, no cutoff, no threshold), and the
//! scatter correction of the optimisation matrix (`plan::scatter_correction`).

mod common;

use rtopt::beams::{setup_beams, BeamSetup};
use rtopt::dose::{self, DoseGrid};
use rtopt::machine::MachineModel;

/// Deterministic pseudo-random weights in [0.5, 1.5) MU (64-bit LCG, Knuth's constants).
fn weights(n: usize) -> Vec<f64> {
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            0.5 + (s >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

#[test]
fn fluence_convolution_matches_point_reference_on_tg119() {
    let case = rtopt::Case::load(&common::tg119_dir(), &Default::default()).expect("case");
    let m = MachineModel::default_6x();
    let target = case.structure("OuterTarget").expect("ptv");
    let setup = BeamSetup {
        gantry_deg: vec![0.0, 120.0, 240.0],
        ..BeamSetup::default()
    };
    let beams = setup_beams(&target.mask, &setup, &m).expect("beams");
    let n: usize = beams.iter().map(|b| b.beamlets.len()).sum();
    let w = weights(n);
    let grid = DoseGrid::covering(&case.ct.grid, [3.0; 3], &case.body_mask());
    let exact = dose::dose_from_weights(&case.ct, &grid, &beams, &m, &w).expect("exact");
    let max = exact.iter().cloned().fold(0.0f64, f64::max);
    // Every 997th computed voxel (about 500 points over the whole body).
    let rows: Vec<usize> = (0..grid.len()).step_by(997).collect();
    let pts: Vec<[f64; 3]> = rows
        .iter()
        .map(|&r| {
            let [i, j, k] = grid.grid.ijk(grid.voxels[r] as usize);
            grid.grid.centre_mm(i, j, k)
        })
        .collect();
    let reference = dose::dose_at_points(&case.ct, &beams, &m, &w, &pts).expect("points");
    let mut worst = 0.0f64;
    for (&r, &d) in rows.iter().zip(&reference) {
        worst = worst.max((exact[r] - d).abs());
    }
    // Tolerance: 1 % of the maximum, the dose engine's own matrix-vs-point criterion
    // (tests/dose.rs); the residual comes from depth-table and 2-D grid interpolation.
    assert!(
        worst <= 0.01 * max,
        "largest difference {worst:.4} Gy at max {max:.4} Gy"
    );

    // The scatter correction makes the truncated optimisation matrix reproduce the
    // untruncated dose of the reference fluence wherever it is applied.
    let dc = dose::influence_matrix(
        &case.ct,
        &case.body_mask(),
        &beams,
        &m,
        &rtopt::plan::optimisation_dose_options(),
    )
    .expect("matrix");
    assert_eq!(dc.dose_grid.voxels, grid.voxels);
    let ax = dc.matrix.dose(&w);
    let f = rtopt::plan::scatter_correction(&ax, &exact);
    let mut a = dc.matrix.clone();
    a.scale_rows(&f);
    let corrected = a.dose(&w);
    let target_rows = grid.rows_in(&target.mask);
    let (mut before, mut after, mut truth) = (0.0, 0.0, 0.0);
    for &r in &target_rows {
        before += ax[r as usize];
        after += corrected[r as usize];
        truth += exact[r as usize];
    }
    // Truncation loses a sizeable part of the target dose; the correction restores it
    // (to f32 rounding of the stored values).
    assert!(before < 0.95 * truth, "truncated {before} vs exact {truth}");
    assert!((after - truth).abs() <= 1e-4 * truth, "{after} vs {truth}");
}
