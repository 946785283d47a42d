//! Commissioning tests of the 6 MV pencil-beam engine against the Varian TrueBeam 6X golden
//! beam data (GBD; DRO-Physics/DCAL `Golden_Beam_Data.json`, commit 7c77e244, as tabulated in
//! `docs/dose.md` / shared beam-data notes). Tolerances follow Venselaar & Welleweerd,
//! Radiother Oncol 60:191 (2001): 2 % on the central axis beyond dmax, 2 mm in the penumbra
//! and for the 50 % width.

use rtopt::beams::{setup_beams, Beam, BeamSetup, BeamletGrid};
use rtopt::ct::{CtMeta, CtVolume};
use rtopt::dose::{dose_at_points, influence_matrix, DoseOptions};
use rtopt::geometry::{Grid3, Mask};
use rtopt::machine::MachineModel;

/// Cubic phantom of side `side_mm` centred at the origin, voxel `vox_mm`, HU from `hu(p)`.
fn phantom(side_mm: f64, vox_mm: f64, hu: impl Fn([f64; 3]) -> f32) -> CtVolume {
    let n = (side_mm / vox_mm).round() as usize;
    let o = -0.5 * side_mm + 0.5 * vox_mm;
    let grid = Grid3 {
        dims: [n; 3],
        origin_mm: [o; 3],
        spacing_mm: [vox_mm; 3],
    };
    let mut v = Vec::with_capacity(grid.len());
    for k in 0..n {
        for j in 0..n {
            for i in 0..n {
                v.push(hu(grid.centre_mm(i, j, k)));
            }
        }
    }
    CtVolume {
        grid,
        hu: v,
        meta: CtMeta::default(),
    }
}

/// A square open field of side `field_mm` (at the isocentre) made of 5 mm beamlets.
fn open_beam(gantry_deg: f64, iso: [f64; 3], field_mm: f64, first_column: usize) -> Beam {
    let n = (field_mm / 5.0).round() as usize;
    let x0 = -0.5 * field_mm + 2.5;
    Beam {
        number: 1,
        name: "open".into(),
        gantry_deg,
        couch_deg: 0.0,
        collimator_deg: 0.0,
        isocenter_mm: iso,
        sad_mm: 1000.0,
        grid: BeamletGrid {
            size_x_mm: 5.0,
            size_y_mm: 5.0,
            nx: n,
            ny: n,
            x0_mm: x0,
            y0_mm: x0,
        },
        beamlets: (0..n)
            .flat_map(|iy| (0..n).map(move |ix| [ix, iy]))
            .collect(),
        first_column,
    }
}

fn water() -> CtVolume {
    phantom(400.0, 5.0, |_| 0.0)
}

/// Central-axis dose (Gy) of a gantry-0 field entering the phantom surface at y = -200 mm with
/// the isocentre `iso_depth_mm` below the surface, at the given depths.
fn cax(ct: &CtVolume, field_mm: f64, iso_depth_mm: f64, mu: f64, depths: &[f64]) -> Vec<f64> {
    let m = MachineModel::default_6x();
    let beam = open_beam(0.0, [0.0, -200.0 + iso_depth_mm, 0.0], field_mm, 0);
    let w = vec![mu; beam.beamlets.len()];
    let pts: Vec<[f64; 3]> = depths.iter().map(|&d| [0.0, -200.0 + d, 0.0]).collect();
    dose_at_points(ct, &[beam], &m, &w, &pts).expect("dose")
}

fn fine_depths() -> Vec<f64> {
    (1..=300).map(|i| i as f64).collect()
}

fn pdd(ct: &CtVolume, field_mm: f64) -> (f64, Vec<f64>) {
    let depths = fine_depths();
    let d = cax(ct, field_mm, 0.0, 1.0, &depths);
    let (imax, &dmax) = d
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("non-empty");
    (
        depths[imax],
        d.iter().map(|v| 100.0 * v / dmax).collect::<Vec<_>>(),
    )
}

#[test]
fn pdd_10x10_matches_golden_beam_data() {
    let ct = water();
    let (dmax_mm, p) = pdd(&ct, 100.0);
    // GBD 10x10: dmax plateau 1.3-1.6 cm; brief tolerance 1.2-1.7 cm.
    assert!((12.0..=17.0).contains(&dmax_mm), "dmax {dmax_mm} mm");
    // GBD 10x10 PDD, SSD 100 cm, normalised at dmax.
    for &(d, gbd) in &[
        (50.0, 86.1),
        (100.0, 66.4),
        (150.0, 50.4),
        (200.0, 38.1),
        (300.0, 22.0),
    ] {
        let m = p[d as usize - 1];
        assert!((m - gbd).abs() <= 2.0, "PDD({d}) = {m:.2}, GBD {gbd}");
    }
}

#[test]
fn pdd_small_and_large_fields_and_output_trend() {
    let ct = water();
    // GBD PDD(10 cm): 3x3 60.4, 20x20 69.5; 2.5-point band (3-Gaussian model limits).
    for &(f, gbd) in &[(30.0, 60.4), (200.0, 69.5)] {
        let (_, p) = pdd(&ct, f);
        assert!(
            (p[99] - gbd).abs() <= 2.5,
            "{f} mm PDD(10) = {:.2}, GBD {gbd}",
            p[99]
        );
    }
    // Output at dmax (GBD relative output factors 0.880 / 1.000 / 1.067 for 3x3, 10x10, 20x20):
    // the trend must hold at 15 mm depth.
    let o: Vec<f64> = [30.0, 100.0, 200.0]
        .iter()
        .map(|&f| cax(&ct, f, 0.0, 1.0, &[15.0])[0])
        .collect();
    // (The magnitude is not asserted: the model has no head-scatter term, so its 3x3 / 10x10
    // ratio is about 0.97 against the GBD 0.880; see docs/dose.md, known limits.)
    assert!(o[0] < o[1] && o[1] < o[2], "outputs {o:?}");
}

#[test]
fn absolute_calibration_100_mu_gives_1_gy_at_dmax() {
    // Machine calibration: 1 cGy/MU at dmax, 10x10 cm, SSD 100 cm.
    let ct = water();
    let d = cax(&ct, 100.0, 0.0, 100.0, &fine_depths());
    let max = d.iter().cloned().fold(0.0, f64::max);
    assert!((max - 1.0).abs() <= 0.01, "dose at dmax {max:.4} Gy");
}

#[test]
fn profile_10x10_at_10cm_penumbra_and_50_percent_point() {
    let ct = water();
    let m = MachineModel::default_6x();
    let beam = open_beam(0.0, [0.0, -200.0, 0.0], 100.0, 0);
    let w = vec![1.0; beam.beamlets.len()];
    let xs: Vec<f64> = (0..=200).map(|i| i as f64 * 0.5).collect();
    let pts: Vec<[f64; 3]> = xs.iter().map(|&x| [x, -100.0, 0.0]).collect();
    let d = dose_at_points(&ct, &[beam], &m, &w, &pts).expect("dose");
    let at = |level: f64| {
        let target = level * d[0];
        let i = d.iter().position(|&v| v < target).expect("falls off");
        let (x0, x1, y0, y1) = (xs[i - 1], xs[i], d[i - 1], d[i]);
        x0 + (y0 - target) / (y0 - y1) * (x1 - x0)
    };
    let pen = at(0.2) - at(0.8);
    let x50 = at(0.5);
    // GBD-derived: 80-20 penumbra 6.9 mm, 50 % point 55.3 mm at 10 cm depth.
    assert!((pen - 6.9).abs() <= 2.0, "penumbra {pen:.2} mm");
    assert!((x50 - 55.3).abs() <= 2.0, "50% point {x50:.2} mm");
}

#[test]
fn inverse_square_ssd_90_vs_100() {
    // Same collimator setting, points at the same depth: the primary-dominated ratio is the
    // inverse square ((1000 + d) / (900 + d))^2; the changed field size at depth alters the
    // scatter by well under 1 % (BJR Suppl. 25 Mayneord F-factor practice).
    let ct = water();
    let depths = [15.0, 50.0, 100.0];
    let d100 = cax(&ct, 100.0, 0.0, 1.0, &depths);
    let d90 = cax(&ct, 100.0, 100.0, 1.0, &depths);
    for (i, &d) in depths.iter().enumerate() {
        let expected = ((1000.0 + d) / (900.0 + d)).powi(2);
        let got = d90[i] / d100[i];
        assert!(
            (got / expected - 1.0).abs() < 0.01,
            "depth {d}: ratio {got:.4}, expected {expected:.4}"
        );
    }
}

#[test]
fn lung_slab_raises_dose_beyond_it_by_the_radiological_depth_shift() {
    // 5 cm of lung (-700 HU) from 5 to 10 cm depth. HLUT (matRad/CORT): rel. ED(-700) =
    // 0.3200, rel. ED(0) = 1.0044, so the radiological depth beyond the slab shrinks by
    // 50 * (1.0044 - 0.3200) = 34.2 mm. The GBD 10x10 PDD falls from 66.4 to 50.4 between
    // 10 and 15 cm: ln(66.4/50.4)/50 = 0.00551 /mm, of which the inverse square
    // (1100/1150)^2 accounts for 2 ln(1150/1100)/50 = 0.00178 /mm. The point does not move,
    // so only the attenuation part, 0.00374 /mm, scales with the depth shift: at 15 cm the
    // dose rises by exp(0.00374 * 34.2) = 1.136 (+13.6 %). Tolerance 2 % (model vs GBD).
    let water = water();
    let lung = phantom(400.0, 5.0, |p| {
        if (-150.0..-100.0).contains(&p[1]) {
            -700.0
        } else {
            0.0
        }
    });
    let dw = cax(&water, 100.0, 0.0, 1.0, &[150.0, 40.0])[0..2].to_vec();
    let dl = cax(&lung, 100.0, 0.0, 1.0, &[150.0, 40.0]);
    let ratio = dl[0] / dw[0];
    assert!((ratio - 1.136).abs() < 0.02, "ratio {ratio:.4}");
    // Upstream of the slab nothing changes (pencil-beam: no back-scatter modelling).
    assert!((dl[1] / dw[1] - 1.0).abs() < 1e-6);
}

fn sphere_case(side: f64, vox: f64, r: f64) -> (CtVolume, Mask, Mask) {
    let ct = phantom(side, vox, |_| 0.0);
    let body = Mask {
        grid: ct.grid,
        inside: vec![true; ct.grid.len()],
    };
    let mut target = Mask::empty(ct.grid);
    for idx in 0..ct.grid.len() {
        let [i, j, k] = ct.grid.ijk(idx);
        let p = ct.grid.centre_mm(i, j, k);
        target.inside[idx] = p[0] * p[0] + p[1] * p[1] + p[2] * p[2] <= r * r;
    }
    (ct, body, target)
}

#[test]
fn opposed_beams_give_symmetric_dose_and_matrix_superposes() {
    let (ct, body, target) = sphere_case(200.0, 4.0, 30.0);
    let m = MachineModel::default_6x();
    let setup = BeamSetup {
        gantry_deg: vec![90.0, 270.0],
        ..Default::default()
    };
    let beams = setup_beams(&target, &setup, &m).expect("beams");
    let opts = DoseOptions {
        grid_spacing_mm: [4.0; 3],
        ..Default::default()
    };
    let calc = influence_matrix(&ct, &body, &beams, &m, &opts).expect("matrix");
    let n = calc.matrix.n_cols();
    let x = vec![1.0; n];
    let dose = calc.matrix.dose(&x);
    let full = calc.dose_grid.to_full(&dose);
    let g = calc.dose_grid.grid;
    let max = full.iter().cloned().fold(0.0f32, f32::max) as f64;
    let mut worst = 0.0f64;
    for k in 0..g.dims[2] {
        for j in 0..g.dims[1] {
            for i in 0..g.dims[0] {
                let a = full[g.index(i, j, k)] as f64;
                let b = full[g.index(g.dims[0] - 1 - i, j, k)] as f64;
                worst = worst.max((a - b).abs() / max);
            }
        }
    }
    assert!(worst < 0.005, "left-right asymmetry {:.4} of max", worst);

    // Superposition: the two-beam matrix times x equals the sum of single-beam matrices.
    let mut sum = vec![0.0; dose.len()];
    for b in &beams {
        let mut single = b.clone();
        single.first_column = 0;
        let c = influence_matrix(&ct, &body, &[single], &m, &opts).expect("single");
        let xb = vec![1.0; b.beamlets.len()];
        for (s, v) in sum.iter_mut().zip(c.matrix.dose(&xb)) {
            *s += v;
        }
    }
    for (a, b) in dose.iter().zip(&sum) {
        assert!((a - b).abs() <= 1e-6 * max, "{a} vs {b}");
    }

    // The matrix without truncation (depth table, analytic beamlet integrals) agrees with
    // exact point doses (per-point ray tracing) at the voxels receiving more than 20 % of
    // the maximum: within 1 % of the maximum.
    let wide = DoseOptions {
        grid_spacing_mm: [4.0; 3],
        lateral_cutoff_mm: 300.0,
        relative_threshold: 0.0,
    };
    let calc_wide = influence_matrix(&ct, &body, &beams, &m, &wide).expect("wide");
    assert!(calc_wide.truncated_mass_fraction < 1e-6);
    assert!(calc.truncated_mass_fraction > calc_wide.truncated_mass_fraction);
    let w: Vec<f64> = (0..n).map(|c| 1.0 + (c % 7) as f64 * 0.1).collect();
    let dose_w = calc_wide.matrix.dose(&w);
    let rows: Vec<usize> = (0..dose_w.len()).step_by(97).collect();
    let pts: Vec<[f64; 3]> = rows
        .iter()
        .map(|&r| {
            let [i, j, k] = g.ijk(calc.dose_grid.voxels[r] as usize);
            g.centre_mm(i, j, k)
        })
        .collect();
    let exact = dose_at_points(&ct, &beams, &m, &w, &pts).expect("points");
    let maxw = dose_w.iter().cloned().fold(0.0, f64::max);
    let mut checked = 0;
    for (&r, &e) in rows.iter().zip(&exact) {
        if e > 0.2 * maxw {
            checked += 1;
            assert!(
                (dose_w[r] - e).abs() < 0.01 * maxw,
                "row {r}: {} vs {e}",
                dose_w[r]
            );
        }
    }
    assert!(checked > 20, "only {checked} points checked");
}

#[test]
fn setup_beams_covers_target_and_lateral_beam_enters_from_its_side() {
    let (ct, _body, target) = sphere_case(200.0, 4.0, 30.0);
    let m = MachineModel::default_6x();
    let beams = setup_beams(&target, &BeamSetup::default(), &m).expect("beams");
    assert_eq!(beams.len(), 9);
    let mut col = 0;
    for b in &beams {
        assert_eq!(b.first_column, col);
        col += b.beamlets.len();
        // Rows aligned to the 5 mm leaf boundaries: edges at multiples of 5 mm.
        let edge = b.grid.y0_mm - 2.5;
        assert!((edge / 5.0 - (edge / 5.0).round()).abs() < 1e-9);
        // Every target voxel projects into an active beamlet.
        let fr = b.frame();
        for (idx, &inside) in target.inside.iter().enumerate() {
            if !inside {
                continue;
            }
            let [i, j, k] = target.grid.ijk(idx);
            let q = fr.to_beam(rtopt::beams::LpsPoint(target.grid.centre_mm(i, j, k)));
            let ix = ((q.x_iso_mm - (b.grid.x0_mm - 2.5)) / 5.0).floor() as usize;
            let iy = ((q.y_iso_mm - (b.grid.y0_mm - 2.5)) / 5.0).floor() as usize;
            assert!(
                b.beamlets.contains(&[ix, iy]),
                "target voxel outside the beamlets"
            );
        }
        // Isocentre = target centroid (the origin).
        assert!(b.isocenter_mm.iter().all(|c| c.abs() < 1e-9));
    }
    // Gantry 90 (source at patient left, +x): entrance dose at x = +80 exceeds exit at -80.
    let b90 = beams[0].clone();
    let mut single = setup_beams(
        &target,
        &BeamSetup {
            gantry_deg: vec![90.0],
            ..Default::default()
        },
        &m,
    )
    .expect("beam");
    single[0].first_column = 0;
    let w = vec![1.0; single[0].beamlets.len()];
    let d =
        dose_at_points(&ct, &single, &m, &w, &[[80.0, 0.0, 0.0], [-80.0, 0.0, 0.0]]).expect("dose");
    assert!(d[0] > 1.5 * d[1], "entrance {} exit {}", d[0], d[1]);
    assert_eq!(b90.gantry_deg, 0.0);
    // Wrong weight count: a clear error.
    let e = dose_at_points(&ct, &single, &m, &[1.0], &[[0.0; 3]]).unwrap_err();
    assert!(e.to_string().contains("weights"), "{e}");
    // Only HFS geometry is implemented: other patient positions are refused.
    let mut ffs = ct.clone();
    ffs.meta.patient_position = "FFS".into();
    let e = dose_at_points(&ffs, &single, &m, &w, &[[0.0; 3]]).unwrap_err();
    assert!(e.to_string().contains("FFS"), "{e}");
}

/// The engine seam (issue 18): a machine file without `dose_engine` selects the pencil beam,
/// whose calls through the trait give bit-identical doses to the free functions, and whose RT
/// Dose heterogeneity correction is `IMAGE` (CT densities scale the depths).
#[test]
fn engine_seam_selects_the_pencil_beam_and_reproduces_its_dose() {
    use rtopt::machine::DoseEngineKind;
    let m = MachineModel::default_6x();
    assert_eq!(m.dose_engine, DoseEngineKind::PencilBeam);
    let json = serde_json::to_string(&m).expect("serialise");
    assert!(json.contains("\"dose_engine\":\"pencil_beam\""), "{json}");
    let e = rtopt::dose::engine_for(&m);
    assert_eq!(e.kind(), DoseEngineKind::PencilBeam);
    assert_eq!(e.tissue_heterogeneity_correction(), "IMAGE");
    let ct = phantom(200.0, 5.0, |p| if p[1] > 0.0 { -700.0 } else { 0.0 });
    let beam = open_beam(0.0, [0.0, 0.0, 0.0], 40.0, 0);
    let w = vec![2.0; beam.beamlets.len()];
    let pts: Vec<[f64; 3]> = (0..20)
        .map(|i| [3.0, -90.0 + 9.0 * i as f64, 1.0])
        .collect();
    let free = dose_at_points(&ct, std::slice::from_ref(&beam), &m, &w, &pts).expect("free");
    let seam = e
        .dose_at_points(&ct, std::slice::from_ref(&beam), &m, &w, &pts)
        .expect("seam");
    assert_eq!(free, seam);
    let per_mu = e
        .beamlet_doses_at_point(&ct, std::slice::from_ref(&beam), &m, pts[5])
        .expect("per beamlet");
    let dot: f64 = per_mu.iter().zip(&w).map(|(a, b)| a * b).sum();
    assert!((dot - free[5]).abs() <= 1e-12 * free[5].abs().max(1e-30));
}
