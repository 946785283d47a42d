//! The heterogeneous engine (issue 18 item 3, `dose_engine: "superposition"`,
//! `src/dose/superposition.rs`) against the pencil beam, in water and in a lung slab.
//!
//! Water: the engine's central-axis PDD agrees with the TrueBeam 6X golden beam data
//! (`data/beam/truebeam_6x_golden_beam_data.json`) within 2 % (local, beyond dmax; Venselaar
//! & Welleweerd 2001, the tolerance of `tests/dose_v2.rs`) for 3x3, 6x6, 10x10 and 20x20 cm,
//! and equals the pencil beam within 0.2 % (the density scaling is 1 in water).
//!
//! Lung slab: water 0-5 cm, lung (relative electron density 0.32, the case of issue 18)
//! 5-15 cm, water beyond; 6 MV, SSD 100 cm, 5x5 and 10x10 cm. **No published Monte Carlo or
//! measured figures for this geometry could be obtained in this work** (the tool library
//! holds abstracts, not the tables of Carrasco et al. 2004, Knoos et al. 2006 or Krieger &
//! Sauer 2005), so these tests do not claim the 3 % agreement with a benchmark: they
//! print the axis doses of both engines for the record (`docs/dose.md`) and check the
//! direction of the physics the issue names (lateral electronic disequilibrium: the axis
//! dose in lung falls against the pencil beam's equivalent-path-length value, more for the
//! smaller field, and the penumbra broadens in lung), which can fail.

use rtopt::ct::CtVolume;
use rtopt::dose::{engine_of_kind, DoseEngine, DoseGrid};
use rtopt::geometry::Mask;
use rtopt::machine::{DoseEngineKind, MachineModel};

#[path = "support/water.rs"]
mod support;
use support::{arr, field_dose_with, gbd, open_field, slab, water};

fn machine() -> MachineModel {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/machines/truebeam_6x_v2.json");
    let mut m = MachineModel::load(&p).expect("v2 machine file");
    m.dose_engine = DoseEngineKind::Superposition;
    m
}

fn sup() -> &'static dyn DoseEngine {
    engine_of_kind(DoseEngineKind::Superposition)
}

fn pb() -> &'static dyn DoseEngine {
    engine_of_kind(DoseEngineKind::PencilBeam)
}

fn axis(
    e: &dyn DoseEngine,
    ct: &CtVolume,
    m: &MachineModel,
    field_mm: f64,
    depths: &[f64],
) -> Vec<f64> {
    let pts: Vec<(f64, f64)> = depths.iter().map(|&d| (d, 0.0)).collect();
    field_dose_with(e, ct, m, field_mm, 1000.0, &pts).expect("dose")
}

#[test]
fn water_axis_matches_golden_pdd_and_the_pencil_beam() {
    let (ct, m) = (water(), machine());
    let g = gbd();
    let depth_axis = arr(&g["6MV PDD"]["Depth"]);
    let depths = [30.0, 50.0, 100.0, 150.0, 200.0, 250.0];
    let mut worst_gbd = 0.0f64;
    let mut worst_pb = 0.0f64;
    for f in [3u32, 6, 10, 20] {
        let curve = arr(&g["6MV PDD"]["FS"][format!("{f}cm")]);
        let scan: Vec<f64> = (10..=80).map(|i| 0.5 * i as f64).collect();
        let peak = axis(sup(), &ct, &m, 10.0 * f as f64, &scan)
            .into_iter()
            .fold(0.0, f64::max);
        if f == 10 {
            // Absolute calibration: 10x10, SSD 100, dmax = the machine's Gy/MU (the scan's
            // 0.5 mm steps can miss the maximum by a hair, hence 0.2 %).
            let cal = m.calibration.dose_gy_per_mu;
            println!("10x10 dmax: {peak:.6} Gy/MU (calibration {cal})");
            assert!((peak / cal - 1.0).abs() < 0.002, "{peak} vs {cal}");
        }
        let s = axis(sup(), &ct, &m, 10.0 * f as f64, &depths);
        let q = axis(pb(), &ct, &m, 10.0 * f as f64, &depths);
        for (k, &dmm) in depths.iter().enumerate() {
            let i = depth_axis
                .iter()
                .position(|&x| (x - dmm / 10.0).abs() < 1e-6)
                .expect("depth in GBD");
            let model = 100.0 * s[k] / peak;
            let e = (model - curve[i]) / curve[i];
            worst_gbd = worst_gbd.max(e.abs());
            worst_pb = worst_pb.max(((s[k] - q[k]) / q[k]).abs());
            println!(
                "{f:>2} cm  {:>5.1} cm  GBD {:6.2}  superposition {model:6.2}  ({:+.2} %)",
                dmm / 10.0,
                curve[i],
                100.0 * e
            );
        }
    }
    println!(
        "worst vs GBD {:.2} %, worst vs pencil beam {:.3} %",
        100.0 * worst_gbd,
        100.0 * worst_pb
    );
    assert!(
        worst_gbd <= 0.02,
        "PDD off GBD by {:.2} %",
        100.0 * worst_gbd
    );
    assert!(worst_pb <= 0.002, "differs from the pencil beam in water");
}

/// Axis doses in the lung slab, both engines, printed for the record; the direction of the
/// lateral-disequilibrium effect is checked.
#[test]
fn lung_slab_axis_dose_falls_below_the_pencil_beam_more_for_small_fields() {
    let m = machine();
    let ct = slab(&m, 0.32, 50.0, 150.0);
    let w = water();
    let depths = [30.0, 60.0, 80.0, 100.0, 120.0, 140.0, 160.0, 175.0, 200.0];
    let mut in_lung_ratio = Vec::new();
    let mut mid_lung_ratio = Vec::new();
    let mut beyond_ratio = Vec::new();
    for f in [50.0, 100.0] {
        let s = axis(sup(), &ct, &m, f, &depths);
        let p = axis(pb(), &ct, &m, f, &depths);
        let sw = axis(sup(), &w, &m, f, &depths);
        println!(
            "{} x {} cm, lung 0.32 at 5-15 cm, Gy/MU x 100:",
            f / 10.0,
            f / 10.0
        );
        println!("depth cm  water   pencil  superp.  superp./pencil");
        for k in 0..depths.len() {
            println!(
                "{:>7.1}  {:6.3}  {:6.3}  {:6.3}   {:.3}",
                depths[k] / 10.0,
                100.0 * sw[k],
                100.0 * p[k],
                100.0 * s[k],
                s[k] / p[k]
            );
        }
        // Before the lung both engines agree.
        assert!((s[0] / p[0] - 1.0).abs() < 0.003, "3 cm: {} {}", s[0], p[0]);
        mid_lung_ratio.push(s[3] / p[3]); // 10 cm, 5 cm into the lung
        in_lung_ratio.push(s[5] / p[5]); // 14 cm, deep in the lung
        beyond_ratio.push(s[8] / p[8]); // 20 cm, 5 cm beyond
    }
    for (name, r) in [
        ("10 cm (5 cm into the lung)", &mid_lung_ratio),
        ("14 cm (deep in the lung)", &in_lung_ratio),
        ("20 cm (5 cm beyond)", &beyond_ratio),
    ] {
        println!(
            "superposition / pencil at {name}: 5x5 {:.3}, 10x10 {:.3}",
            r[0], r[1]
        );
    }
    // Lateral electronic disequilibrium: the pencil beam overdoses the lung (up to ~10 %
    // against Monte Carlo for this class, Miften et al. 2001; Krieger & Sauer 2005), the
    // smaller field more where the electron term dominates (5 cm into the lung). Deeper in
    // the lung the density-scaled scatter terms lower the 10x10 dose as much (a property of
    // this model not checked against a benchmark, `docs/dose.md`).
    for r in [&mid_lung_ratio, &in_lung_ratio] {
        assert!(r[0] < 0.97 && r[1] < 1.0, "no disequilibrium: {r:?}");
        assert!(r[0] > 0.85 && r[1] > 0.85, "implausibly large loss: {r:?}");
    }
    assert!(
        mid_lung_ratio[0] < mid_lung_ratio[1] - 0.005,
        "smaller field must lose more: {mid_lung_ratio:?}"
    );
    // Beyond the lung the dose re-equilibrates towards the pencil beam's.
    for (b, l) in beyond_ratio.iter().zip(&in_lung_ratio) {
        assert!(*b > *l && *b < 1.005, "beyond {b:.3} in {l:.3}");
    }
}

/// 80-20 % penumbra (mm) at depth `d_mm` from a profile sampled every 0.5 mm.
fn penumbra(e: &dyn DoseEngine, ct: &CtVolume, m: &MachineModel, f: f64, d_mm: f64) -> f64 {
    let pts: Vec<(f64, f64)> = (0..=240).map(|i| (d_mm, 0.5 * i as f64)).collect();
    let p = field_dose_with(e, ct, m, f, 1000.0, &pts).expect("dose");
    let c = p[0];
    let cross = |lvl: f64| {
        let t = lvl * c;
        for i in 1..p.len() {
            if p[i] < t && p[i - 1] >= t {
                let a = (p[i - 1] - t) / (p[i - 1] - p[i]);
                return 0.5 * ((i - 1) as f64 + a);
            }
        }
        f64::NAN
    };
    cross(0.2) - cross(0.8)
}

#[test]
fn penumbra_broadens_in_lung() {
    let m = machine();
    let ct = slab(&m, 0.32, 50.0, 150.0);
    let w = water();
    for f in [50.0, 100.0] {
        let (sl, sw) = (
            penumbra(sup(), &ct, &m, f, 120.0),
            penumbra(sup(), &w, &m, f, 120.0),
        );
        let (pl, pw) = (
            penumbra(pb(), &ct, &m, f, 120.0),
            penumbra(pb(), &w, &m, f, 120.0),
        );
        println!(
            "{} cm field, 80-20 penumbra at 12 cm: superposition water {sw:.1} mm, lung {sl:.1} mm; pencil beam water {pw:.1} mm, lung {pl:.1} mm",
            f / 10.0
        );
        assert!(sl > sw + 2.0, "superposition penumbra must broaden in lung");
        assert!(
            sl > pl + 2.0,
            "and be broader than the pencil beam's in lung"
        );
    }
}

/// The lung slab, a 5x5 field (1 MU per beamlet) and a small dose region around its axis
/// (|x| < 60 mm, |z| < 8 mm, to 26 cm deep).
fn slab_case() -> (MachineModel, CtVolume, rtopt::beams::Beam, Vec<f64>, Mask) {
    let m = machine();
    let ct = slab(&m, 0.32, 50.0, 150.0);
    let (beam, wts, _) = open_field(50.0, 1000.0, &[]);
    let mut body = Mask::empty(ct.grid);
    let [nx, ny, _] = ct.grid.dims;
    for i in 0..body.inside.len() {
        let c = ct.grid.centre_mm(i % nx, (i / nx) % ny, i / (nx * ny));
        body.inside[i] = c[0].abs() < 60.0 && c[2].abs() < 8.0 && c[1] < 60.0;
    }
    (m, ct, beam, wts, body)
}

/// The grid forward dose (convolution ladder, depth tables) agrees with the exact point dose
/// in the slab, and repeats bit for bit.
#[test]
fn grid_dose_matches_point_dose_and_is_deterministic() {
    let (m, ct, beam, wts, body) = slab_case();
    let dg = DoseGrid::covering(&ct.grid, [5.0; 3], &body);
    let cancel = rtopt::control::CancelToken::new();
    let beams = [beam];
    let grid = sup()
        .dose_from_weights(&ct, &dg, &beams, &m, &wts, &cancel)
        .expect("grid dose");
    let again = sup()
        .dose_from_weights(&ct, &dg, &beams, &m, &wts, &cancel)
        .expect("grid dose");
    assert!(grid
        .iter()
        .zip(&again)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let pts = dg.centres_mm();
    let exact = sup()
        .dose_at_points(&ct, &beams, &m, &wts, &pts)
        .expect("point dose");
    let max = exact.iter().cloned().fold(0.0, f64::max);
    let worst = grid
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs() / max)
        .fold(0.0, f64::max);
    println!(
        "{} voxels, worst |grid - point| {:.2} % of max",
        pts.len(),
        100.0 * worst
    );
    assert!(worst < 0.02, "worst {:.2} % of max", 100.0 * worst);
}

#[test]
fn machine_file_selects_the_superposition_engine() {
    let k: DoseEngineKind = serde_json::from_str("\"superposition\"").unwrap();
    assert_eq!(k, DoseEngineKind::Superposition);
    let m = machine();
    let e = rtopt::dose::engine_for(&m);
    assert_eq!(e.kind(), DoseEngineKind::Superposition);
    assert_eq!(e.kind().as_str(), "superposition");
    assert_eq!(e.tissue_heterogeneity_correction(), "IMAGE");
}

/// `beamlet_doses_at_point` (used for the plan's dose reference point) is the per-beamlet
/// split of `dose_at_points` in the slab.
#[test]
fn beamlet_doses_at_point_sum_to_the_point_dose() {
    let m = machine();
    let ct = slab(&m, 0.32, 50.0, 150.0);
    let (beam, w, pts) = open_field(50.0, 1000.0, &[(100.0, 0.0), (120.0, 22.0)]);
    let beams = [beam];
    let d = sup()
        .dose_at_points(&ct, &beams, &m, &w, &pts)
        .expect("points");
    for (k, p) in pts.iter().enumerate() {
        let per_mu = sup()
            .beamlet_doses_at_point(&ct, &beams, &m, *p)
            .expect("per beamlet");
        let dot: f64 = per_mu.iter().zip(&w).map(|(a, b)| a * b).sum();
        assert!((dot - d[k]).abs() <= 1e-12 * d[k], "{dot} {}", d[k]);
    }
}

/// The planner with the heterogeneous engine: the prostate phantom with lateral lung-density
/// blocks (0.3 at 60-110 mm either side), beam model v2, `dose_engine: superposition`. The
/// influence matrix (density-scaled widths, truncated), the scatter correction and the
/// dose-fidelity loop all use this engine, so the optimiser's final dose must match this
/// engine's untruncated dose (issue 17's 2 % of Rx in 99 % of voxels above 10 % of Rx).
#[test]
fn planner_optimises_against_the_heterogeneous_dose() {
    use rtopt::optimize::protocol::Protocol;
    use rtopt::plan::{Planner, Variant};
    use rtopt::report::ModelFidelity;
    let m = machine();
    let mut case = rtopt::phantom::prostate(4.0);
    let lung = support::hu_of(&m, 0.3);
    let g = case.ct.grid;
    let [nx, ny, _] = g.dims;
    let body = case.body_mask();
    for (i, h) in case.ct.hu.iter_mut().enumerate() {
        let c = g.centre_mm(i % nx, (i / nx) % ny, i / (nx * ny));
        if body.inside[i] && (60.0..110.0).contains(&c[0].abs()) {
            *h = lung;
        }
    }
    let protocol = Protocol::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/protocols/prostate-phantom.toml"),
    )
    .expect("protocol");
    let rx = protocol.prescription.total_dose_gy;
    let mut prepared = Planner::new(case, protocol)
        .with_machine(m)
        .prepare()
        .expect("prepare");
    let opt = prepared.optimise(&Variant::default()).expect("optimise");
    let exact = opt.exact_dose_gy.clone().expect("untruncated dose");
    let fid = ModelFidelity::compute(&opt.result.dose_gy, &exact, rx, 10.0);
    println!(
        "fidelity steps {:?}; p99 {:.2} % of Rx",
        opt.fidelity, fid.p99_percent_rx
    );
    assert!(
        fid.p99_percent_rx <= 2.0,
        "p99 {:.2} % of Rx",
        fid.p99_percent_rx
    );
}

/// The influence matrix of the heterogeneous engine: the pencil beam's builder with the
/// density-scaled widths. Without cutoff and threshold it reproduces this engine's point dose
/// in the lung slab, and it lies below the pencil beam's matrix in the lung.
#[test]
fn influence_matrix_is_density_scaled() {
    use rtopt::dose::DoseOptions;
    let (m, ct, beam, wts, body) = slab_case();
    let opts = DoseOptions {
        grid_spacing_mm: [5.0; 3],
        lateral_cutoff_mm: 400.0,
        relative_threshold: 0.0,
    };
    let cancel = rtopt::control::CancelToken::new();
    let beams = [beam];
    let a = sup()
        .influence_matrix(&ct, &body, &beams, &m, &opts, &cancel)
        .expect("matrix");
    let b = pb()
        .influence_matrix(&ct, &body, &beams, &m, &opts, &cancel)
        .expect("matrix");
    let da = a.matrix.dose(&wts);
    let db = b.matrix.dose(&wts);
    let pts = a.dose_grid.centres_mm();
    let exact = sup()
        .dose_at_points(&ct, &beams, &m, &wts, &pts)
        .expect("points");
    let max = exact.iter().cloned().fold(0.0, f64::max);
    let worst = da
        .iter()
        .zip(&exact)
        .map(|(x, e)| (x - e).abs() / max)
        .fold(0.0, f64::max);
    // The voxel nearest the axis 12 cm deep (in the lung).
    let dist = |p: &[f64; 3]| p[0].powi(2) + (p[1] + 80.0).powi(2) + p[2].powi(2);
    let k = (0..pts.len())
        .min_by(|&i, &j| dist(&pts[i]).total_cmp(&dist(&pts[j])))
        .expect("voxels");
    assert!(dist(&pts[k]) < 30.0, "{:?}", pts[k]);
    println!(
        "worst |matrix - point| {:.2} % of max; in lung: superposition matrix {:.5}, pencil matrix {:.5}",
        100.0 * worst,
        da[k],
        db[k]
    );
    assert!(worst < 0.02, "worst {:.2} % of max", 100.0 * worst);
    assert!(da[k] < 0.97 * db[k], "{} vs {}", da[k], db[k]);
}
