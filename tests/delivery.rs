//! Deliverable plan: leaf sequencing, MU, RT Plan / RT Dose export and import, gamma.
//!
//! Sources for the known answers: Bortfeld et al. IJROBP 28:723 (1994) and matRad's Engel
//! sequencer for TNMU (`/work/shared/docs/sequencing.md`, example row [1,3,2]); Low et al.
//! Med Phys 25:656 (1998) for gamma; DICOM PS3.3 RT Plan / RT Dose IODs checked with
//! dicom3tools' `dciodvfy`; pydicom 3.0.2 test files for the foreign-plan and dose readers.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use rtopt::beams::{Beam, BeamletGrid};
use rtopt::dose::{DoseGrid, InfluenceMatrix};
use rtopt::gamma::{gamma_3d, GammaOptions};
use rtopt::geometry::Grid3;
use rtopt::io::dicom::rtdose::{read_rtdose, rtdose_bytes, write_rtdose, DoseExport};
use rtopt::io::dicom::rtplan::read_rtplan;
use rtopt::io::dicom::rtplan::{rtplan_bytes, write_rtplan, PlanExport, TargetPrescription};
use rtopt::machine::{default_leaf_boundaries_mm, Jaws, Mlc};
use rtopt::sequencing::{
    deliverable_weights, level_sum, open_area_mm2, reducing_levels, sequence_plan, sweep,
    sweep_row_units, tnmu, DeliveryMachine, Method, Segment, SequencingOptions,
};
use rtopt::Case;

// ---------------------------------------------------------------- helpers

/// xorshift64* (Vigna 2016): deterministic test randomness without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn machine(interdigitation: bool) -> DeliveryMachine {
    DeliveryMachine {
        name: "rtoptTest6X".into(),
        energy_mv: 6.0,
        mlc: Mlc {
            leaf_boundaries_mm: default_leaf_boundaries_mm(),
            min_leaf_gap_mm: 0.5,
            interdigitation,
            x_min_mm: -200.0,
            x_max_mm: 200.0,
            model: String::new(),
            max_leaf_span_mm: None,
            max_leaf_speed_mm_per_s: None,
            transmission: None,
            source_distance_mm: None,
        },
        jaws: Jaws {
            x_min_mm: -200.0,
            x_max_mm: 200.0,
            y_min_mm: -200.0,
            y_max_mm: 200.0,
            x1_max_mm: None,
            x2_min_mm: None,
            y1_max_mm: None,
            y2_min_mm: None,
            transmission: None,
            x_source_distance_mm: None,
            y_source_distance_mm: None,
        },
        min_segment_mu: 0.1,
        min_segment_area_mm2: 0.0,
        min_leaf_opening_mm: 0.0,
        manufacturer: String::new(),
        model_name: String::new(),
        setup_technique: "ISOCENTRIC".into(),
        dose_rate_mu_per_min: 600.0,
        tolerance_table: None,
    }
}

/// A synthetic plan over the TG119 CT: 5 coplanar beams of 16 x 12 beamlets (5 mm), a toy
/// pencil-beam matrix (Gaussian-blurred beamlet boxes times exponential attenuation) on a
/// 5 mm dose grid around the target, and smooth non-uniform weights.
struct Synthetic {
    case: Case,
    beams: Vec<Beam>,
    dose_grid: DoseGrid,
    a: InfluenceMatrix,
    weights: Vec<f64>,
    fractions: u32,
    target_rows: Vec<u32>,
}

fn box_blur(u: f64, half: f64, sigma: f64) -> f64 {
    let s = sigma * std::f64::consts::SQRT_2;
    0.5 * (libm::erf((u + half) / s) - libm::erf((u - half) / s))
}

fn synthetic() -> &'static Synthetic {
    static S: OnceLock<Synthetic> = OnceLock::new();
    S.get_or_init(|| {
        let case = Case::load(&common::tg119_dir(), &Default::default()).expect("load TG119");
        let target = case.structure("OuterTarget").expect("target");
        let c = target.mask.centroid_mm().expect("centroid");
        let iso = [c[0].round(), c[1].round(), c[2].round()];
        let grid = Grid3 {
            dims: [25, 25, 13],
            origin_mm: [iso[0] - 60.0, iso[1] - 60.0, iso[2] - 30.0],
            spacing_mm: [5.0, 5.0, 5.0],
        };
        let dose_grid = DoseGrid {
            grid,
            voxels: (0..grid.len() as u32).collect(),
        };
        let (nx, ny) = (16usize, 12usize);
        let mut beams = Vec::new();
        let mut cols = Vec::new();
        let mut weights = Vec::new();
        for b in 0..5usize {
            let gantry = 72.0 * b as f64;
            let bg = BeamletGrid {
                size_x_mm: 5.0,
                size_y_mm: 5.0,
                nx,
                ny,
                x0_mm: -37.5,
                y0_mm: -27.5,
            };
            let th = gantry.to_radians();
            let u = [-th.sin(), th.cos(), 0.0]; // toy beam axis
            let ex = [th.cos(), th.sin(), 0.0];
            let first = cols.len();
            let mut bl = Vec::new();
            for iy in 0..ny {
                for ix in 0..nx {
                    bl.push([ix, iy]);
                    let [cx, cy] = bg.centre_mm(ix, iy);
                    let mut rows = Vec::new();
                    let mut vals = Vec::new();
                    for (r, &v) in dose_grid.voxels.iter().enumerate() {
                        let [i, j, k] = grid.ijk(v as usize);
                        let p = grid.centre_mm(i, j, k);
                        let d = [p[0] - iso[0], p[1] - iso[1], p[2] - iso[2]];
                        let t = d[0] * u[0] + d[1] * u[1];
                        let px = d[0] * ex[0] + d[1] * ex[1];
                        let py = d[2];
                        let val = 0.01
                            * (-0.005 * (t + 100.0)).exp()
                            * box_blur(px - cx, 2.5, 3.0)
                            * box_blur(py - cy, 2.5, 3.0);
                        if val > 1e-6 {
                            rows.push(r as u32);
                            vals.push(val as f32);
                        }
                    }
                    cols.push((rows, vals));
                    let pat = 0.5
                        + 0.5
                            * (0.7 * ix as f64 + 1.3 * iy as f64 + b as f64).sin()
                            * (0.4 * iy as f64).cos();
                    weights.push(20.0 * (0.2 + 0.8 * pat));
                }
            }
            beams.push(Beam {
                number: b + 1,
                name: format!("G{}", gantry as i64),
                gantry_deg: gantry,
                couch_deg: 0.0,
                collimator_deg: 0.0,
                isocenter_mm: iso,
                sad_mm: 1000.0,
                grid: bg,
                beamlets: bl,
                first_column: first,
            });
        }
        let a = InfluenceMatrix::from_columns(dose_grid.len(), cols);
        let target_rows = dose_grid.rows_in(&target.mask);
        Synthetic {
            case,
            beams,
            dose_grid,
            a,
            weights,
            fractions: 30,
            target_rows,
        }
    })
}

fn plan_dose_full(s: &Synthetic, x: &[f64]) -> Vec<f32> {
    let d: Vec<f64> = s.a.dose(x).iter().map(|v| v * s.fractions as f64).collect();
    s.dose_grid.to_full(&d)
}

struct Exported {
    plan: Vec<u8>,
    dose: Vec<u8>,
    plan_uid: String,
    seq: rtopt::sequencing::SequencedPlan,
    x_del: Vec<f64>,
}

fn export(s: &Synthetic, weights: &[f64], m: &DeliveryMachine) -> Exported {
    let seq = sequence_plan(&s.beams, weights, m, &SequencingOptions::default()).expect("sequence");
    let x_del = deliverable_weights(&s.beams, &seq.beams, s.a.n_cols()).expect("weights");
    let ss = s.case.structure_set.as_ref().expect("rtstruct");
    let target = ss.roi("OuterTarget").expect("roi");
    let p = PlanExport {
        label: "TG119 synth".into(),
        ct: &s.case.ct.meta,
        structure_set_uid: ss.sop_instance_uid.clone(),
        target: TargetPrescription {
            roi_number: target.number,
            roi_name: target.name.clone(),
            prescription_gy: 50.0,
        },
        fractions: s.fractions,
        machine: m,
        beams: &s.beams,
        sequenced: &seq.beams,
        name: String::new(),
        description: String::new(),
        reference_point: None,
        ssd_mm: vec![None; seq.beams.len()],
        created: common::fixed_time(),
    };
    let (plan, plan_uid) = rtplan_bytes(&p).expect("rtplan");
    let full = plan_dose_full(s, &x_del);
    let (dose, _) = rtdose_bytes(&DoseExport {
        ct: &s.case.ct.meta,
        grid: &s.dose_grid.grid,
        dose_gy: &full,
        plan_sop_uid: &plan_uid,
        created: common::fixed_time(),
        beam_number: None,
        tissue_heterogeneity_correction: "IMAGE",
    })
    .expect("rtdose");
    Exported {
        plan,
        dose,
        plan_uid,
        seq,
        x_del,
    }
}

fn exported() -> &'static Exported {
    static E: OnceLock<Exported> = OnceLock::new();
    E.get_or_init(|| {
        let s = synthetic();
        export(s, &s.weights, &machine(true))
    })
}

// ---------------------------------------------------------------- sequencer

#[test]
fn row_132_gives_three_mu_in_two_segments() {
    let units = sweep_row_units(&[1, 3, 2]);
    // 1-based bixels {1,2} once, then {2,3} twice (0-based half-open intervals).
    assert_eq!(units, vec![(0, 2), (1, 3), (1, 3)]);
    let segs = sweep(&[vec![1, 3, 2]]);
    assert_eq!(segs.len(), 2);
    assert_eq!((segs[0].weight, segs[0].rows[0]), (1, Some((0, 2))));
    assert_eq!((segs[1].weight, segs[1].rows[0]), (2, Some((1, 3))));
    assert_eq!(tnmu(&[vec![1, 3, 2]]), 3);
}

#[test]
fn random_maps_decompose_exactly_with_tnmu() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for trial in 0..300 {
        let ny = 1 + rng.below(8) as usize;
        let nx = 1 + rng.below(15) as usize;
        let levels = 1 + rng.below(12) as u32;
        let map: Vec<Vec<u32>> = (0..ny)
            .map(|_| {
                (0..nx)
                    .map(|_| rng.below(levels as u64 + 1) as u32)
                    .collect()
            })
            .collect();
        // TNMU from its definition: max over rows of the sum of positive steps.
        let expect_tnmu = map
            .iter()
            .map(|r| {
                let mut p = 0i64;
                let mut c = 0i64;
                for &a in r.iter().chain(std::iter::once(&0)) {
                    c += (a as i64 - p).max(0);
                    p = a as i64;
                }
                c as u32
            })
            .max()
            .unwrap();
        let s = sweep(&map);
        assert_eq!(level_sum(&s, ny, nx), map, "trial {trial}: sweep not exact");
        let total: u32 = s.iter().map(|g| g.weight).sum();
        assert_eq!(total, expect_tnmu, "trial {trial}: sweep MU != TNMU");
        assert_eq!(tnmu(&map), expect_tnmu);
        for g in &s {
            assert!(g.weight > 0);
            assert!(g.rows.iter().flatten().all(|(l, r)| l < r && *r <= nx));
        }
        let x = reducing_levels(&map);
        assert_eq!(
            level_sum(&x, ny, nx),
            map,
            "trial {trial}: reducing levels not exact"
        );
        let xt: u32 = x.iter().map(|g| g.weight).sum();
        assert!(
            xt >= expect_tnmu,
            "trial {trial}: {xt} < TNMU {expect_tnmu}"
        );
    }
}

#[test]
fn sequenced_plan_reproduces_stratified_fluence_and_mu() {
    let s = synthetic();
    let m = machine(true);
    let opts = SequencingOptions {
        min_segment_mu: Some(0.0),
        ..Default::default()
    };
    let seq = sequence_plan(&s.beams, &s.weights, &m, &opts).expect("sequence");
    let x = deliverable_weights(&s.beams, &seq.beams, s.a.n_cols()).expect("weights");
    for (b, (sb, rep)) in s.beams.iter().zip(seq.beams.iter().zip(&seq.reports)) {
        let unit = rep.mu_per_level;
        let wmax = (0..b.beamlets.len())
            .map(|k| s.weights[b.first_column + k])
            .fold(0.0, f64::max);
        assert!((unit - wmax / opts.levels as f64).abs() < 1e-12);
        // Segment MU sum = beam MU = TNMU x MU per level.
        let sum: f64 = sb.segments.iter().map(|g| g.mu).sum();
        assert!((sum - sb.meterset_mu).abs() < 1e-9);
        assert!((sb.meterset_mu - rep.tnmu_levels as f64 * unit).abs() < 1e-9);
        for k in 0..b.beamlets.len() {
            let w = s.weights[b.first_column + k];
            let expect = (w / unit).round() * unit;
            assert!(
                (x[b.first_column + k] - expect).abs() < 1e-9,
                "beam {} beamlet {k}: deliverable {} vs stratified {expect}",
                b.number,
                x[b.first_column + k]
            );
        }
        // Jaws are the bounding box of the open leaves.
        for g in &sb.segments {
            let open: Vec<usize> = (0..g.leaf_pairs_mm.len())
                .filter(|&p| g.leaf_pairs_mm[p][1] - g.leaf_pairs_mm[p][0] > 1.0)
                .collect();
            let bnd = &sb.leaf_boundaries_mm;
            let x1 = open
                .iter()
                .map(|&p| g.leaf_pairs_mm[p][0])
                .fold(f64::MAX, f64::min);
            let x2 = open
                .iter()
                .map(|&p| g.leaf_pairs_mm[p][1])
                .fold(f64::MIN, f64::max);
            assert_eq!(g.jaw_x_mm, [x1, x2]);
            assert_eq!(g.jaw_y_mm, [bnd[open[0]], bnd[*open.last().unwrap() + 1]]);
            // Closed pairs sit with the minimum gap, hidden under the X1 jaw.
            for (p, l) in g.leaf_pairs_mm.iter().enumerate() {
                if !open.contains(&p) {
                    assert!((l[1] - l[0] - 0.5).abs() < 1e-9);
                    assert!(l[1] <= g.jaw_x_mm[0] + 1e-9);
                }
            }
        }
    }
    // Reducing levels: same fluence, at least as many MU, fewer or equal segments here.
    let xv = sequence_plan(
        &s.beams,
        &s.weights,
        &m,
        &SequencingOptions {
            method: Method::ReducingLevels,
            ..opts.clone()
        },
    )
    .expect("xv");
    let x2 = deliverable_weights(&s.beams, &xv.beams, s.a.n_cols()).expect("w");
    for (a, b) in x.iter().zip(&x2) {
        assert!((a - b).abs() < 1e-9);
    }
    assert!(xv.total_mu() >= seq.total_mu() - 1e-9);
}

#[test]
fn no_interdigitation_parks_closed_pairs_between_neighbours() {
    let s = synthetic();
    let m = machine(false);
    let seq = sequence_plan(&s.beams, &s.weights, &m, &SequencingOptions::default()).expect("seq");
    let mut checked = 0;
    for (sb, rep) in seq.beams.iter().zip(&seq.reports) {
        let mut found = 0;
        for g in &sb.segments {
            for p in 0..g.leaf_pairs_mm.len() - 1 {
                let (a, b) = (g.leaf_pairs_mm[p], g.leaf_pairs_mm[p + 1]);
                if a[0] > b[1] + 1e-9 || b[0] > a[1] + 1e-9 {
                    found += 1;
                }
                checked += 1;
            }
        }
        assert_eq!(found, rep.interdigitation_violations);
    }
    assert!(checked > 0);
}

#[test]
fn min_segment_mu_drops_or_rounds_and_reports() {
    let s = synthetic();
    let mut m = machine(true);
    m.min_segment_mu = 5.0; // far above one level (2 MU)
    let seq = sequence_plan(&s.beams, &s.weights, &m, &SequencingOptions::default()).expect("s");
    for (sb, rep) in seq.beams.iter().zip(&seq.reports) {
        assert!(sb.segments.iter().all(|g| g.mu >= 5.0 - 1e-12));
        assert!(rep.dropped_segments + rep.rounded_up_segments > 0);
        assert!(rep.min_mu_fluence_change > 0.0);
    }
}

#[test]
fn min_segment_area_and_leaf_opening_hold_on_every_segment() {
    let s = synthetic();
    let plain = sequence_plan(
        &s.beams,
        &s.weights,
        &machine(true),
        &SequencingOptions::default(),
    )
    .expect("plain");
    let mut m = machine(true);
    m.min_segment_area_mm2 = 400.0; // 4 cm^2: above some of this plan's segments
    m.min_leaf_opening_mm = 10.0; // two 5 mm beamlets
    let seq = sequence_plan(&s.beams, &s.weights, &m, &SequencingOptions::default()).expect("s");
    let (mut small, mut widened, mut plain_small, mut plain_narrow) = (0, 0, 0, 0);
    for ((sb, rep), pb) in seq.beams.iter().zip(&seq.reports).zip(&plain.beams) {
        let bnd = &sb.leaf_boundaries_mm;
        for g in &sb.segments {
            assert!(open_area_mm2(g, bnd) >= 400.0, "{}", open_area_mm2(g, bnd));
            // Open pairs (inside the Y jaws) are at least 10 mm wide; parked pairs keep the
            // mechanical 0.5 mm gap.
            for (p, &[a, b]) in g.leaf_pairs_mm.iter().enumerate() {
                let inside = bnd[p] >= g.jaw_y_mm[0] - 1e-9 && bnd[p + 1] <= g.jaw_y_mm[1] + 1e-9;
                let w = b - a;
                assert!(
                    !inside || w >= 10.0 - 1e-9 || (w - 0.5).abs() < 1e-9,
                    "pair {p}: {w} mm"
                );
            }
        }
        for g in &pb.segments {
            plain_small += usize::from(open_area_mm2(g, bnd) < 400.0);
            plain_narrow += g
                .leaf_pairs_mm
                .iter()
                .filter(|[a, b]| b - a > 0.6 && b - a < 10.0 - 1e-9)
                .count();
        }
        small += rep.small_area_segments + rep.enlarged_segments;
        widened += rep.widened_openings;
    }
    // The rules did something on this plan, and the report counts it.
    assert!(
        plain_small > 0 && plain_narrow > 0,
        "{plain_small} {plain_narrow}"
    );
    assert!(small > 0 && widened > 0, "{small} {widened}");
    // An area no segment can reach: a clear error naming the machine parameter.
    m.min_segment_area_mm2 = 1.0e7;
    let e = sequence_plan(&s.beams, &s.weights, &m, &SequencingOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("min_segment_area_mm2"), "{e}");
    // A 5 mm x 5 mm aperture has 25 mm^2.
    let g = Segment {
        mu: 1.0,
        leaf_pairs_mm: vec![[0.0, 5.0]; 2],
        jaw_x_mm: [0.0, 5.0],
        jaw_y_mm: [0.0, 5.0],
    };
    assert!((open_area_mm2(&g, &[0.0, 5.0, 10.0]) - 25.0).abs() < 1e-12);
}

#[test]
fn beamlet_rows_off_the_leaf_bank_are_clear_errors() {
    let s = synthetic();
    let m = machine(true);
    let mut b = s.beams[0].clone();
    b.first_column = 0;
    b.grid.y0_mm = 222.5; // rows 220 .. 280 mm: beyond the 200 mm bank
    let w = vec![1.0; b.beamlets.len()];
    let e = sequence_plan(&[b.clone()], &w, &m, &SequencingOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the leaf bank"), "{e}");
    // 5 mm rows under 10 mm outer leaves: one leaf pair spans two rows.
    b.grid.y0_mm = 152.5;
    let e = sequence_plan(&[b], &w, &m, &SequencingOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("spans beamlet rows"), "{e}");
}

// ---------------------------------------------------------------- DICOM

fn dciodvfy(path: &Path) -> String {
    let out = Command::new("dciodvfy")
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "dciodvfy not runnable ({e}); install dicom3tools: apt-get install -y dicom3tools"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("Error")).collect();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        println!("dciodvfy {}: {l}", path.display());
    }
    assert!(
        errors.is_empty(),
        "dciodvfy errors for {}:\n{}",
        path.display(),
        errors.join("\n")
    );
    text
}

#[test]
fn rtplan_and_rtdose_pass_dciodvfy() {
    let e = exported();
    let t = tempfile::tempdir().unwrap();
    let (p, d) = (t.path().join("RP.dcm"), t.path().join("RD.dcm"));
    std::fs::write(&p, &e.plan).unwrap();
    std::fs::write(&d, &e.dose).unwrap();
    let tp = dciodvfy(&p);
    assert!(tp.contains("RTPlan") || tp.contains("RT Plan"), "{tp}");
    let td = dciodvfy(&d);
    assert!(td.contains("RTDose") || td.contains("RT Dose"), "{td}");
    // For manual inspection (dcmdump, a TPS import): RTOPT_DELIVERY_OUT=<folder>.
    if let Ok(dir) = std::env::var("RTOPT_DELIVERY_OUT") {
        std::fs::copy(&p, Path::new(&dir).join("RP.synthetic.dcm")).unwrap();
        std::fs::copy(&d, Path::new(&dir).join("RD.synthetic.dcm")).unwrap();
    }
}

#[test]
fn rtplan_reads_back_with_same_beams_control_points_leaves_and_mu() {
    let s = synthetic();
    let e = exported();
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("RP.dcm");
    let m = machine(true);
    let ss = s.case.structure_set.as_ref().unwrap();
    let target = ss.roi("OuterTarget").unwrap();
    // Through the atomic writer this time.
    let uid = write_rtplan(
        &p,
        &PlanExport {
            label: "TG119 synth".into(),
            ct: &s.case.ct.meta,
            structure_set_uid: ss.sop_instance_uid.clone(),
            target: TargetPrescription {
                roi_number: target.number,
                roi_name: target.name.clone(),
                prescription_gy: 50.0,
            },
            fractions: s.fractions,
            machine: &m,
            beams: &s.beams,
            sequenced: &e.seq.beams,
            name: String::new(),
            description: String::new(),
            reference_point: None,
            ssd_mm: vec![None; e.seq.beams.len()],
            created: common::fixed_time(),
        },
    )
    .unwrap();
    assert_eq!(uid, e.plan_uid);
    assert_eq!(std::fs::read(&p).unwrap(), e.plan);
    let plan = read_rtplan(&p).unwrap();
    assert_eq!(plan.sop_instance_uid, e.plan_uid);
    assert_eq!(plan.fractions, 30);
    assert_eq!(plan.patient_position.as_deref(), Some("HFS"));
    assert_eq!(
        plan.frame_of_reference_uid.as_deref(),
        Some(s.case.ct.meta.frame_of_reference_uid.as_str())
    );
    assert_eq!(plan.beams.len(), s.beams.len());
    for ((ib, sb), b) in plan.beams.iter().zip(&e.seq.beams).zip(&s.beams) {
        assert_eq!(ib.number, b.number as i64);
        assert_eq!(ib.beam_type, "DYNAMIC");
        assert_eq!(ib.treatment_machine, "rtoptTest6X");
        assert_eq!(ib.nominal_energy_mv, Some(6.0));
        assert!((ib.control_points[0].gantry_deg - b.gantry_deg).abs() < 1e-9);
        assert_eq!(ib.control_points.len(), 2 * sb.segments.len());
        assert!((ib.meterset_mu - sb.meterset_mu).abs() < 1e-6 * sb.meterset_mu.max(1.0));
        assert_eq!(ib.leaf_boundaries_mm, default_leaf_boundaries_mm());
        assert_eq!(ib.segments.len(), sb.segments.len());
        for (k, (a, g)) in ib.segments.iter().zip(&sb.segments).enumerate() {
            assert!(
                (a.mu - g.mu).abs() < 1e-4,
                "beam {} seg {k}: MU {} vs {}",
                b.number,
                a.mu,
                g.mu
            );
            for (la, lg) in a.leaf_pairs_mm.iter().zip(&g.leaf_pairs_mm) {
                assert!((la[0] - lg[0]).abs() < 1e-6 && (la[1] - lg[1]).abs() < 1e-6);
            }
            assert_eq!(a.leaf_pairs_mm.len(), 60);
            assert!((a.jaw_x_mm[0] - g.jaw_x_mm[0]).abs() < 1e-6);
            assert!((a.jaw_y_mm[1] - g.jaw_y_mm[1]).abs() < 1e-6);
        }
        // Control points: both of a segment carry the same leaves, weights rise to 1.
        let last = ib.control_points.last().unwrap();
        assert!((last.cumulative_weight - 1.0).abs() < 1e-12);
    }
    // A few raw attributes through dicom-object directly.
    let obj = dicom_object::open_file(&p).unwrap();
    use dicom_dictionary_std::tags;
    let s_of = |t| obj.element(t).unwrap().to_str().unwrap().trim().to_string();
    assert_eq!(s_of(tags::RT_PLAN_GEOMETRY), "PATIENT");
    assert_eq!(s_of(tags::APPROVAL_STATUS), "UNAPPROVED");
    assert_eq!(
        s_of(tags::STUDY_INSTANCE_UID),
        s.case.ct.meta.study_instance_uid
    );
}

#[test]
fn imported_plan_recomputes_the_exported_dose_within_1_percent() {
    let s = synthetic();
    let e = exported();
    let t = tempfile::tempdir().unwrap();
    let (p, d) = (t.path().join("RP.dcm"), t.path().join("RD.dcm"));
    std::fs::write(&p, &e.plan).unwrap();
    std::fs::write(&d, &e.dose).unwrap();
    let plan = read_rtplan(&p).unwrap();
    let seq: Vec<_> = plan
        .beams
        .iter()
        .enumerate()
        .map(|(i, b)| b.to_sequenced(i))
        .collect();
    let x = deliverable_weights(&s.beams, &seq, s.a.n_cols()).unwrap();
    let recomputed = plan_dose_full(s, &x);
    let rd = read_rtdose(&d).unwrap();
    assert_eq!(rd.units, "GY");
    assert_eq!(rd.summation_type, "PLAN");
    assert_eq!(rd.referenced_plan_uid.as_deref(), Some(e.plan_uid.as_str()));
    assert_eq!(
        rd.frame_of_reference_uid,
        s.case.ct.meta.frame_of_reference_uid
    );
    assert_eq!(rd.grid.dims, s.dose_grid.grid.dims);
    for a in 0..3 {
        assert!((rd.grid.origin_mm[a] - s.dose_grid.grid.origin_mm[a]).abs() < 1e-6);
        assert!((rd.grid.spacing_mm[a] - s.dose_grid.grid.spacing_mm[a]).abs() < 1e-6);
    }
    let max = rd.dose.iter().fold(0f32, |m, &v| m.max(v)) as f64;
    assert!(max > 1.0, "plan dose max {max} Gy");
    let worst = rd
        .dose
        .iter()
        .zip(&recomputed)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 0.01 * max,
        "worst difference {worst} Gy of max {max} Gy"
    );
    // The deliverable weights from the export are what the dose was written from.
    for (a, b) in x.iter().zip(&e.x_del) {
        assert!((a - b).abs() < 1e-3);
    }
}

#[test]
fn same_inputs_give_byte_identical_files() {
    let s = synthetic();
    let a = exported();
    let b = export(s, &s.weights, &machine(true));
    assert!(a.plan == b.plan, "RT Plan bytes differ");
    assert!(a.dose == b.dose, "RT Dose bytes differ");
    // Different content, different UIDs.
    let mut w = s.weights.clone();
    w[3] *= 0.5;
    let c = export(s, &w, &machine(true));
    assert_ne!(c.plan_uid, a.plan_uid);
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("RD.dcm");
    let full = plan_dose_full(s, &a.x_del);
    write_rtdose(
        &path,
        &DoseExport {
            ct: &s.case.ct.meta,
            grid: &s.dose_grid.grid,
            dose_gy: &full,
            plan_sop_uid: &a.plan_uid,
            created: common::fixed_time(),
            beam_number: None,
            tissue_heterogeneity_correction: "IMAGE",
        },
    )
    .unwrap();
    assert!(std::fs::read(&path).unwrap() == a.dose);
}

#[test]
fn pydicom_static_jaw_plan_imports_with_carried_forward_jaws() {
    let p = common::repo().join("data/pydicom/rtplan.dcm");
    let plan = read_rtplan(&p).unwrap();
    assert_eq!(plan.fractions, 30);
    assert_eq!(plan.beams.len(), 1);
    let b = &plan.beams[0];
    assert_eq!(b.beam_type, "STATIC");
    assert!(b.leaf_boundaries_mm.is_empty());
    assert_eq!(b.control_points.len(), 2);
    // CP1 carries no devices: CP0's jaws are carried forward.
    assert_eq!(b.control_points[1].jaw_x_mm, Some([-100.0, 100.0]));
    assert_eq!(b.control_points[1].jaw_y_mm, Some([-100.0, 100.0]));
    assert_eq!(b.segments.len(), 1);
    assert!((b.segments[0].mu - 116.0036697).abs() < 1e-6);
    // Beamlets on a 5 mm grid covering the jaws get the full MU.
    let beam = b.to_beam(5.0, 0).unwrap();
    assert_eq!((beam.grid.nx, beam.grid.ny), (40, 40));
    let seq = b.to_sequenced(0);
    let x = deliverable_weights(
        std::slice::from_ref(&beam),
        std::slice::from_ref(&seq),
        1600,
    )
    .unwrap();
    assert!(x.iter().all(|&v| (v - 116.0036697).abs() < 1e-6));
    // Partial coverage: 10 mm beamlets centred on the jaw edges are half exposed.
    let mut half = beam.clone();
    half.grid = BeamletGrid {
        size_x_mm: 10.0,
        size_y_mm: 10.0,
        nx: 21,
        ny: 21,
        x0_mm: -100.0,
        y0_mm: -100.0,
    };
    half.beamlets = (0..21)
        .flat_map(|iy| (0..21).map(move |ix| [ix, iy]))
        .collect();
    let x = deliverable_weights(&[half], &[seq], 441).unwrap();
    let mu = 116.0036697;
    assert!((x[0] - 0.25 * mu).abs() < 1e-6); // corner
    assert!((x[1] - 0.5 * mu).abs() < 1e-6); // edge
    assert!((x[22] - mu).abs() < 1e-6); // inside
}

#[test]
fn pydicom_32bit_rtdose_reads_with_scaling() {
    let d = read_rtdose(&common::repo().join("data/pydicom/rtdose.dcm")).unwrap();
    assert_eq!(d.grid.dims, [10, 10, 15]);
    assert_eq!(d.units, "RELATIVE");
    assert_eq!(d.summation_type, "BEAM");
    assert!((d.grid.spacing_mm[0] - 10.0).abs() < 1e-9);
    assert!((d.grid.spacing_mm[2] - 5.0).abs() < 1e-9);
    assert!((d.dose_grid_scaling - 1e-6).abs() < 1e-15);
    assert!(d.dose.iter().any(|&v| v > 0.0));
}

// ---------------------------------------------------------------- gamma

fn gauss_grid(n: usize, sp: f64) -> (Grid3, Vec<f32>) {
    let g = Grid3 {
        dims: [n, n, n],
        origin_mm: [0.0; 3],
        spacing_mm: [sp; 3],
    };
    let c = (n - 1) as f64 * sp / 2.0;
    let v = (0..g.len())
        .map(|i| {
            let [a, b, k] = g.ijk(i);
            let p = g.centre_mm(a, b, k);
            let r2 = (p[0] - c).powi(2) + (p[1] - c).powi(2) + (p[2] - c).powi(2);
            (2.0 * (-r2 / (2.0 * 20.0f64.powi(2))).exp()) as f32
        })
        .collect();
    (g, v)
}

#[test]
fn gamma_identical_is_100_percent() {
    let (g, v) = gauss_grid(21, 3.0);
    let r = gamma_3d(&g, &v, &g, &v, &GammaOptions::default()).unwrap();
    assert!(r.evaluated > 100);
    assert_eq!(r.passed, r.evaluated);
    assert_eq!(r.max_gamma, 0.0);
}

#[test]
fn gamma_global_scaling_boundary() {
    // 1 mm voxels: trilinear interpolation puts a kink at a sampled peak (slope about
    // (1 - exp(-h^2 / 2 sigma^2)) D / h), which lowers γ there; at 3 mm it would read 1.07.
    let (g, v) = gauss_grid(41, 1.0);
    let scaled = |s: f32| v.iter().map(|x| x * s).collect::<Vec<f32>>();
    let opts = GammaOptions::default();
    let r = gamma_3d(&g, &v, &g, &scaled(1.029), &opts).unwrap();
    assert_eq!(r.pass_rate_percent, 100.0);
    let r = gamma_3d(&g, &v, &g, &scaled(1.035), &opts).unwrap();
    assert!(r.pass_rate_percent < 100.0);
    // At the peak the gradient is zero: γ = 0.035 / 0.03 (Gaussian σ = 20 mm, r=0 is optimal).
    let centre = g.index(20, 20, 20);
    println!("γ at the peak, 1 mm grid: {}", r.gamma[centre]);
    assert!(
        (r.gamma[centre] as f64 - 0.035 / 0.03).abs() < 0.02,
        "γ at peak {}",
        r.gamma[centre]
    );
}

#[test]
fn gamma_shift_on_gradient_passes_within_dta() {
    // Linear ramp along x, 1.5 mm voxels, 100 Gy over 45 mm (3.33 % of max per voxel).
    let g = Grid3 {
        dims: [31, 9, 9],
        origin_mm: [0.0; 3],
        spacing_mm: [1.5; 3],
    };
    let ramp = |shift: f64| -> Vec<f32> {
        (0..g.len())
            .map(|i| {
                let [a, _, _] = g.ijk(i);
                (100.0 * ((a as f64 * 1.5 - shift) / 45.0)).clamp(0.0, 100.0) as f32
            })
            .collect()
    };
    let reference = ramp(0.0);
    let opts = GammaOptions {
        interp_fraction: 10.0,
        ..Default::default()
    };
    // 1 voxel (1.5 mm) shift: dose difference 3.33 % alone fails, DTA 1.5 mm < 2 mm passes.
    let r = gamma_3d(&g, &reference, &g, &ramp(1.5), &opts).unwrap();
    let mid = g.index(15, 4, 4);
    assert!(
        r.gamma[mid] <= 1.0 && r.gamma[mid] > 0.5,
        "γ {}",
        r.gamma[mid]
    );
    // 2 voxel (3 mm) shift: analytic γ = sqrt(min_d (a (d-3))^2 + (d/2)^2), a = (100/45)/3.
    let r = gamma_3d(&g, &reference, &g, &ramp(3.0), &opts).unwrap();
    let a: f64 = 100.0 / 45.0 / 3.0;
    let d = 3.0 * a * a / (a * a + 0.25);
    let expect = ((a * (d - 3.0)).powi(2) + (d / 2.0).powi(2)).sqrt();
    assert!(expect > 1.0);
    assert!(
        (r.gamma[mid] as f64 - expect).abs() < 0.02,
        "γ {} vs analytic {expect}",
        r.gamma[mid]
    );
}

// ---------------------------------------------------------------- deliverable vs optimised

fn dx(values: &mut [f64], percent: f64) -> f64 {
    // D_x%: minimum dose of the hottest x % of the voxels.
    values.sort_by(|a, b| b.total_cmp(a));
    let n = ((percent / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values[n.min(values.len()) - 1]
}

#[test]
fn deliverable_dose_matches_optimised_dose() {
    let s = synthetic();
    let e = exported();
    let opt = plan_dose_full(s, &s.weights);
    let del = plan_dose_full(s, &e.x_del);
    let g = &s.dose_grid.grid;
    let r = gamma_3d(g, &opt, g, &del, &GammaOptions::default()).unwrap();
    println!(
        "deliverable vs optimised: gamma 3%/2mm pass {:.2} % of {} points, mean γ {:.3}",
        r.pass_rate_percent, r.evaluated, r.mean_gamma
    );
    assert!(
        r.pass_rate_percent >= 95.0,
        "pass rate {}",
        r.pass_rate_percent
    );
    let rows = &s.target_rows;
    assert!(!rows.is_empty());
    let od = s.a.dose(&s.weights);
    let dd = s.a.dose(&e.x_del);
    let mut ot: Vec<f64> = rows.iter().map(|&r| od[r as usize] * 30.0).collect();
    let mut dt: Vec<f64> = rows.iter().map(|&r| dd[r as usize] * 30.0).collect();
    for x in [95.0, 50.0, 2.0] {
        let (a, b) = (dx(&mut ot, x), dx(&mut dt, x));
        println!("target D{x}: optimised {a:.3} Gy, deliverable {b:.3} Gy");
        assert!((a - b).abs() <= 0.05 * a, "D{x} {a} vs {b}");
    }
}

/// The RT Plan checklist on the pydicom sample (a commercial system's static plan): it
/// documents which of the attributes issue 19 asks of rtopt another system's plan carries.
#[test]
fn checklist_documents_the_pydicom_sample_plan() {
    use rtopt::io::dicom::plan_checklist::{check_rtplan, Context, Status};
    let p = common::repo().join("data/pydicom/rtplan.dcm");
    let c = check_rtplan(&p, &Context::default()).expect("checklist");
    println!("{}", c.describe());
    let status = |name: &str| {
        c.item(name)
            .unwrap_or_else(|| panic!("{name}"))
            .status
            .clone()
    };
    for carried in [
        "treatment machine name",
        "nominal beam energy",
        "dose reference point",
        "beam dose per beam",
        "patient position",
        "plan date and time",
        "instance creation date",
        "equipment manufacturer",
    ] {
        assert_eq!(status(carried), Status::Pass, "{carried}");
    }
    for absent in [
        "tolerance table values",
        "setup technique",
        "beam description",
    ] {
        assert!(matches!(status(absent), Status::Absent(_)), "{absent}");
    }
}

/// `rtopt dose --plan` on the pydicom sample plan (a commercial system's static 6 MV jaw
/// field, no CT at hand): recalculated on a water cube around its isocentre, it completes and
/// states what it could not model; its RELATIVE reference dose is refused for an absolute
/// comparison, by name.
#[test]
fn pydicom_sample_plan_recalculates_on_a_water_phantom() {
    use rtopt::plan::recalculate::{compare, recalculate, RecalcOptions};
    let plan_path = common::repo().join("data/pydicom/rtplan.dcm");
    let plan = read_rtplan(&plan_path).unwrap();
    let iso = plan.beams[0].control_points[0]
        .isocenter_mm
        .expect("isocentre");
    let phantom = rtopt::phantom::water_cube(iso, 300.0, 3.0);
    let m = rtopt::machine::MachineModel::default_6x();
    let opts = RecalcOptions {
        ignore_frame_of_reference: true,
        ..RecalcOptions::default()
    };
    let r = recalculate(&phantom, &plan_path, &m, &opts).expect("recalculated");
    let all = r.statements.join("\n");
    println!("{all}");
    assert!(all.contains("no MLC") && all.contains("unit001"), "{all}");
    assert_eq!(r.fractions, 30);
    // 116.0 MU x 30 fractions of an open 20 x 20 cm field, isocentre 15 cm deep in water:
    // the maximum (near dmax, 15 mm, SSD 850 mm) is the calibration (1 cGy/MU at dmax of a
    // 10 x 10 field, SSD 1000) times the inverse square (1015 / 865)^2 = 1.377 and the
    // field's output factor (1.067 for 20 x 20 in the golden data, beam-data.md): 51.1 Gy.
    // rtopt's model gives 48.4 Gy, -5 %: it has no head scatter, so its 20 x 20 output
    // factor at dmax is 1.010 (issue 18's commissioning table). 10 % band.
    let max = r.dose_full_gy.iter().fold(0.0f32, |a, &b| a.max(b)) as f64;
    let expected = 116.0037 * 30.0 * 0.01 * (1015.0f64 / 865.0).powi(2) * 1.067;
    assert!(
        (max - expected).abs() <= 0.10 * expected,
        "max {max:.2} Gy, expected about {expected:.2} Gy"
    );
    let rd = rtopt::io::dicom::rtdose::read_rtdose(&common::repo().join("data/pydicom/rtdose.dcm"))
        .unwrap();
    let e = compare(&phantom, &r, &rd).unwrap_err().to_string();
    assert!(e.contains("RELATIVE"), "{e}");
    // Without the phantom's licence a plan of another frame of reference is refused.
    let ct = rtopt::Case::load(&common::tg119_dir(), &Default::default()).unwrap();
    let e = recalculate(&ct, &plan_path, &m, &RecalcOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("isocentre") || e.contains("FrameOfReferenceUID"),
        "{e}"
    );
}

/// Dose tracking in the RT Plan: the reference point (COORDINATES), BeamDose per beam naming
/// it by UID, and per control point the cumulative dose-reference coefficient of the segment
/// that starts (2k: the coefficient after segment k-1, 0 for the first) or ends (2k+1: after
/// segment k) there. Coefficients that do not rise to 1 are refused.
#[test]
fn reference_point_and_coefficients_are_encoded_per_control_point() {
    use rtopt::io::dicom::read::{self, Attr};
    use rtopt::io::dicom::rtplan::DoseReferencePoint;
    let s = synthetic();
    let m = machine(true);
    let e = exported();
    let coeffs: Vec<Vec<f64>> = e
        .seq
        .beams
        .iter()
        .map(|b| {
            let n = b.segments.len();
            (1..=n).map(|k| k as f64 / n as f64).collect()
        })
        .collect();
    let point = DoseReferencePoint {
        structure: "OuterTarget".into(),
        position_mm: [10.0, -20.0, 5.0],
        planned_dose_per_fraction_gy: 2.0,
        beam_dose_gy: (0..e.seq.beams.len())
            .map(|i| 0.1 * (i + 1) as f64)
            .collect(),
        cumulative_coefficients: coeffs.clone(),
    };
    let ss = s.case.structure_set.as_ref().unwrap();
    let target = ss.roi("OuterTarget").unwrap();
    let mut p = PlanExport {
        label: "TG119 synth".into(),
        name: String::new(),
        description: String::new(),
        ct: &s.case.ct.meta,
        structure_set_uid: ss.sop_instance_uid.clone(),
        target: TargetPrescription {
            roi_number: target.number,
            roi_name: target.name.clone(),
            prescription_gy: 50.0,
        },
        fractions: s.fractions,
        machine: &m,
        beams: &s.beams,
        sequenced: &e.seq.beams,
        reference_point: Some(point.clone()),
        ssd_mm: vec![Some(912.3); e.seq.beams.len()],
        created: common::fixed_time(),
    };
    let (bytes, _) = rtplan_bytes(&p).expect("rtplan");
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("RP.dcm");
    std::fs::write(&path, &bytes).unwrap();
    let f = read::read(&path).unwrap();
    let a = Attr::new(&path, &f.obj);
    let tag = dicom_core::Tag;
    let refs = a.items(tag(0x300A, 0x0010));
    let pt = refs
        .iter()
        .find(|d| read::opt_str(d, tag(0x300A, 0x0014)).as_deref() == Some("COORDINATES"))
        .expect("point dose reference");
    assert_eq!(
        read::opt_f64s(pt, tag(0x300A, 0x0018)).unwrap(),
        vec![10.0, -20.0, 5.0]
    );
    let point_uid = read::opt_str(pt, tag(0x300A, 0x0013)).unwrap();
    let fg = a.items(tag(0x300A, 0x0070));
    let rb = Attr::new(&path, &fg[0]).items(tag(0x300C, 0x0004));
    for (i, r) in rb.iter().enumerate() {
        let dose = read::opt_f64s(r, tag(0x300A, 0x0084)).unwrap()[0];
        assert!(
            (dose - point.beam_dose_gy[i]).abs() < 1e-9,
            "BeamDose {dose}"
        );
        assert_eq!(
            read::opt_str(r, tag(0x300A, 0x0083)).as_deref(),
            Some(point_uid.as_str())
        );
    }
    for (b, beam) in a.items(tag(0x300A, 0x00B0)).iter().enumerate() {
        let cps = Attr::new(&path, beam).items(tag(0x300A, 0x0111));
        assert_eq!(cps.len(), 2 * coeffs[b].len());
        for (i, cp) in cps.iter().enumerate() {
            let rdr = &Attr::new(&path, cp).items(tag(0x300C, 0x0050))[0];
            assert_eq!(
                read::opt_str(rdr, tag(0x300C, 0x0051)).as_deref(),
                Some("2")
            );
            let c = read::opt_f64s(rdr, tag(0x300A, 0x010C)).unwrap()[0];
            let k = i / 2;
            let want = if i % 2 == 1 {
                coeffs[b][k]
            } else if k == 0 {
                0.0
            } else {
                coeffs[b][k - 1]
            };
            assert!((c - want).abs() < 1e-6, "beam {b} cp {i}: {c} vs {want}");
        }
        let ssd = read::opt_f64s(&cps[0], tag(0x300A, 0x0130)).unwrap()[0];
        assert_eq!(ssd, 912.3);
    }
    // A coefficient sequence that falls is refused by name.
    let mut bad = point.clone();
    bad.cumulative_coefficients[0][0] = 1.5;
    p.reference_point = Some(bad);
    let err = rtplan_bytes(&p).unwrap_err().to_string();
    assert!(
        err.contains("cumulative dose-reference coefficients"),
        "{err}"
    );
}
