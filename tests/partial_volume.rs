//! Structure volumes and DVHs as a planning system computes them (project issue 17, item 4):
//! partial-volume weights from the contours (`rtopt::geometry::partial`,
//! `rtopt::structures::partial_volume`) against figures computed here independently.
//!
//! - TG119's ROIs: the partial volumes on the CT grid and on the 3 mm dose grid agree within
//!   1 % with the polygon volumes (shoelace area of each contour, holes by nesting, times the
//!   contour-plane spacing, end planes a full spacing: dicompyler-core's `CalculatePlaneThickness`
//!   and "area x thickness" convention, `docs/metrics.md`).
//! - An analytic cylinder and a tube (a hole, even-odd rule) on a coarse grid that does not
//!   line up with them: volume within 0.5 % of the exact polygon volume.
//! - A hand-built weighted DVH: a square cut through half voxels with a dose that rises along
//!   x (D50, D95, mean, volume worked out by hand).
//! - `rtopt plan data/tg119`: the report's PTV D95 within 0.5 % of Rx (0.25 Gy) of a DVH
//!   computed here from the written RTDOSE and the RTSTRUCT by sampling every contour plane on
//!   a 0.25 mm lattice with trilinear dose lookup, as dicompyler-core does with interpolation
//!   (Ebert et al., PMB 55:N337, 2010, compared DVHs of several planning systems this way);
//!   the report's structure volumes within 1 % of the polygon volumes.

mod common;

use std::path::Path;
use std::process::Command;

use rtopt::dose::DoseGrid;
use rtopt::dvh::WeightedDoses;
use rtopt::geometry::Grid3;
use rtopt::structures::{self, Contour, Roi, StructureSet};

// ---------------------------------------------------------------- independent geometry

/// The contour planes of `roi`: (z, polygons (x, y)), z ascending.
fn planes(roi: &Roi) -> Vec<(f64, Vec<Vec<[f64; 2]>>)> {
    let mut out: Vec<(f64, Vec<Vec<[f64; 2]>>)> = Vec::new();
    for c in roi
        .contours
        .iter()
        .filter(|c| c.geometric_type == "CLOSED_PLANAR")
    {
        let z = c.points_mm[0][2];
        let poly: Vec<[f64; 2]> = c.points_mm.iter().map(|p| [p[0], p[1]]).collect();
        match out.iter_mut().find(|(pz, _)| (pz - z).abs() < 1e-3) {
            Some((_, v)) => v.push(poly),
            None => out.push((z, vec![poly])),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// dicompyler-core's plane thickness: the smallest spacing between neighbouring planes.
fn plane_thickness_mm(planes: &[(f64, Vec<Vec<[f64; 2]>>)]) -> f64 {
    planes
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|&d| d > 1e-3)
        .fold(f64::INFINITY, f64::min)
}

fn shoelace_mm2(p: &[[f64; 2]]) -> f64 {
    let n = p.len();
    0.5 * (0..n)
        .map(|i| p[i][0] * p[(i + 1) % n][1] - p[(i + 1) % n][0] * p[i][1])
        .sum::<f64>()
        .abs()
}

/// Point in polygon by the crossing number (Franklin's PNPOLY).
fn inside(p: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut c = false;
    let n = p.len();
    for i in 0..n {
        let (a, b) = (p[i], p[(i + n - 1) % n]);
        if (a[1] > y) != (b[1] > y) && x < (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]) + a[0] {
            c = !c;
        }
    }
    c
}

/// Even-odd area of one plane: each contour adds or removes its area by how many other
/// contours of the plane hold it (a hole inside an outline, an island inside the hole).
fn plane_area_mm2(polys: &[Vec<[f64; 2]>]) -> f64 {
    polys
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let depth = polys
                .iter()
                .enumerate()
                .filter(|&(j, q)| j != i && inside(q, p[0][0], p[0][1]))
                .count();
            if depth % 2 == 0 {
                shoelace_mm2(p)
            } else {
                -shoelace_mm2(p)
            }
        })
        .sum()
}

/// Polygon volume of an ROI, cm3: sum of plane areas x plane thickness (end planes full).
fn polygon_volume_cm3(roi: &Roi) -> f64 {
    let pl = planes(roi);
    let t = plane_thickness_mm(&pl);
    pl.iter()
        .map(|(_, polys)| plane_area_mm2(polys))
        .sum::<f64>()
        * t
        / 1000.0
}

// ---------------------------------------------------------------- TG119 volumes

fn tg119() -> (rtopt::Case, StructureSet) {
    let case = rtopt::Case::load(&common::tg119_dir(), &Default::default()).expect("TG119");
    let ss = case.structure_set.clone().expect("RTSTRUCT");
    (case, ss)
}

/// The dose grid `rtopt plan` uses on TG119 (default 3 mm, restricted to the body).
fn dose_grid(case: &rtopt::Case) -> DoseGrid {
    let spacing = rtopt::dose::DoseOptions::default().grid_spacing_mm;
    DoseGrid::covering(&case.ct.grid, spacing, &case.body_mask())
}

#[test]
fn tg119_partial_volumes_match_the_polygon_volumes() {
    let (case, ss) = tg119();
    let dg = dose_grid(&case);
    let mut seconds = 0.0;
    for roi in &ss.rois {
        let reference = polygon_volume_cm3(roi);
        let on_ct = structures::partial_volume(roi, &case.ct.grid, &case.ct.grid).expect("CT");
        let t0 = std::time::Instant::now();
        let (on_dose, points) =
            structures::supersample(roi, &case.ct.grid, &dg.grid).expect("dose grid");
        seconds += t0.elapsed().as_secs_f64();
        let voxel_cm3 = dg.grid.voxel_volume_cm3();
        let points_cm3 = points.total_weight() * voxel_cm3;
        let centre_rule = dg
            .rows_in(&case.structure(&roi.name).expect("s").mask)
            .len() as f64
            * voxel_cm3;
        println!(
            "{}: polygon {reference:.2} cm3; partial volumes CT grid {:.2}, dose grid {:.2} \
             ({} voxels), DVH points {points_cm3:.2} ({} points); centre rule on the dose grid \
             {centre_rule:.2} ({:+.2} %)",
            roi.name,
            on_ct.volume_cm3(),
            on_dose.volume_cm3(),
            on_dose.len(),
            points.len(),
            100.0 * (centre_rule / reference - 1.0)
        );
        for (what, v) in [
            ("partial volumes on the CT grid", on_ct.volume_cm3()),
            ("partial volumes on the dose grid", on_dose.volume_cm3()),
            ("DVH points on the dose grid", points_cm3),
        ] {
            assert!(
                (v / reference - 1.0).abs() < 0.01,
                "{} {what}: {v:.2} cm3 vs polygon {reference:.2} cm3",
                roi.name
            );
        }
    }
    println!("partial volumes and DVH points of TG119's 3 ROIs on the dose grid: {seconds:.3} s");
    assert_eq!(ss.rois.len(), 3, "TG119 has Core, OuterTarget and BODY");
}

/// A synthetic problem whose structures carry hand-set weights: the goal checks judge the
/// DVH elements, and an exclusion subtracts the excluded structure's voxel weights.
#[test]
fn goal_checks_use_the_dvh_elements_and_exclusions_subtract_weights() {
    use rtopt::dose::{DvhElements, WeightedRows};
    let mut case = rtopt::optimize::synthetic::c_shape(30, 6, 5, 6.0);
    let ptv = case
        .structures
        .iter_mut()
        .find(|s| s.name == "OuterTarget")
        .expect("PTV");
    let rows = ptv.rows.clone();
    let (&last, kept) = rows.split_last().expect("PTV rows");
    // Every PTV voxel half occupied; the DVH without the last row.
    ptv.weighted = WeightedRows {
        rows: rows.clone(),
        weights: vec![0.5; rows.len()],
    };
    ptv.dvh = DvhElements::Rows(WeightedRows::uniform(kept));
    let protocol = rtopt::optimize::protocol::Protocol::from_toml_str(
        r#"
        [prescription]
        total_dose_gy = 50.0
        fractions = 25
        target = "OuterTarget"
        [[structure]]
        name = "OuterTarget"
        goals = [
          { type = "deviation", dose_gy = 50.0, weight = 1.0 },
          { type = "max_dose", dose_gy = 60.0, mode = "report" },
        ]
        [[structure]]
        name = "BODY"
        goals = [{ type = "max_dose", dose_gy = 60.0, exclude = ["OuterTarget"], mode = "report" }]
        "#,
        Path::new("<test>"),
    )
    .expect("protocol");
    let pb = rtopt::optimize::PlanningProblem::new(
        &case.matrix,
        &case.dose_grid,
        &case.beams,
        &case.structures,
        &protocol,
    )
    .expect("problem");
    // Dose = row number: the PTV's maximum is its last row's, which is not in its DVH.
    let dose: Vec<f64> = (0..case.dose_grid.len()).map(|r| r as f64).collect();
    let goals = pb.evaluate_goals(&dose).expect("goals");
    assert_eq!(goals[1].achieved_gy, *kept.last().expect("kept") as f64);
    assert!(goals[1].achieved_gy < last as f64);
    // BODY less the PTV: each PTV row keeps half its weight.
    let w = pb.voxel_weights(2).expect("BODY goal");
    let body = case
        .structures
        .iter()
        .find(|s| s.name == "BODY")
        .expect("BODY");
    assert_eq!(w.rows, body.rows, "every BODY row keeps a weight");
    for (r, &wt) in w.rows.iter().zip(&w.weights) {
        let expect = if rows.binary_search(r).is_ok() {
            0.5
        } else {
            1.0
        };
        assert_eq!(wt, expect, "row {r}");
    }
    assert!(pb.voxel_weights(3).is_none());
}

// ---------------------------------------------------------------- analytic shapes

/// A regular `n`-gon of radius `r_mm` around (cx, cy) at height z.
fn ngon(n: usize, r_mm: f64, cx: f64, cy: f64, z: f64) -> Vec<[f64; 3]> {
    (0..n)
        .map(|i| {
            let a = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
            [cx + r_mm * a.cos(), cy + r_mm * a.sin(), z]
        })
        .collect()
}

fn roi_of(contours: Vec<Vec<[f64; 3]>>) -> Roi {
    Roi {
        number: 1,
        name: "analytic".into(),
        interpreted_type: "ORGAN".into(),
        color: [0, 0, 0],
        contours: contours
            .into_iter()
            .map(|points_mm| Contour {
                geometric_type: "CLOSED_PLANAR".into(),
                points_mm,
            })
            .collect(),
    }
}

#[test]
fn cylinder_and_tube_volumes_on_a_coarse_grid() {
    // CT slices every 2 mm; a cylinder of radius 12.3 mm on 15 slices (30 mm with the end
    // caps), off-centre; the dose grid 4 mm with an origin that lines up with nothing.
    let ct = Grid3 {
        dims: [64, 64, 40],
        origin_mm: [-63.0, -63.0, -39.0],
        spacing_mm: [2.0, 2.0, 2.0],
    };
    let coarse = Grid3 {
        dims: [33, 33, 21],
        origin_mm: [-63.3, -62.9, -39.7],
        spacing_mm: [4.0, 4.0, 4.0],
    };
    let (n, r, cx, cy) = (360, 12.3, 3.7, -5.1);
    let polygon_area = 0.5 * n as f64 * r * r * (2.0 * std::f64::consts::PI / n as f64).sin();
    let zs: Vec<f64> = (0..15).map(|k| -15.0 + 2.0 * k as f64).collect();
    let cylinder = roi_of(zs.iter().map(|&z| ngon(n, r, cx, cy, z)).collect());
    let exact_cm3 = polygon_area * 2.0 * zs.len() as f64 / 1000.0;
    for g in [ct, coarse] {
        let v = structures::partial_volume(&cylinder, &ct, &g)
            .expect("cylinder")
            .volume_cm3();
        println!(
            "cylinder on {} mm voxels: {v:.4} cm3 vs {exact_cm3:.4}",
            g.spacing_mm[0]
        );
        assert!((v / exact_cm3 - 1.0).abs() < 0.005, "{v} vs {exact_cm3}");
    }
    // A tube: outer radius 12.3 mm, a hole of 6.1 mm drawn as a second contour (even-odd).
    let tube = roi_of(
        zs.iter()
            .flat_map(|&z| [ngon(n, r, cx, cy, z), ngon(n, 6.1, cx, cy, z)])
            .collect(),
    );
    let hole_area = 0.5 * n as f64 * 6.1 * 6.1 * (2.0 * std::f64::consts::PI / n as f64).sin();
    let tube_cm3 = (polygon_area - hole_area) * 2.0 * zs.len() as f64 / 1000.0;
    let v = structures::partial_volume(&tube, &ct, &coarse)
        .expect("tube")
        .volume_cm3();
    println!("tube on 4 mm voxels: {v:.4} cm3 vs {tube_cm3:.4}");
    assert!((v / tube_cm3 - 1.0).abs() < 0.005, "{v} vs {tube_cm3}");
    // This file's own polygon volume (used for TG119 above) gives the exact figure.
    assert!((polygon_volume_cm3(&tube) / tube_cm3 - 1.0).abs() < 1e-9);
}

#[test]
fn weighted_dvh_of_a_square_through_half_voxels() {
    // 1 mm voxels with centres on integers: the square [0, 10] x [0, 10] mm covers columns
    // and rows 1..=9 whole and 0 and 10 by half. One slab 1 mm thick. Dose = x of the voxel
    // centre (Gy), so columns weigh 5, 10 x 9, 5 (mm^2): volume 100, mean exactly 5 Gy, the
    // hottest 50 % = 5 (x = 10) + 10 x 4 (x = 9..6) + 5 of x = 5, so D50 = 5 Gy; the hottest
    // 95 % end in column 1 (5 + 90 = 95): D95 = 1 Gy; D100 = 0 Gy (the half column x = 0).
    let g = Grid3 {
        dims: [16, 16, 1],
        origin_mm: [-2.0, -2.0, 0.0],
        spacing_mm: [1.0, 1.0, 1.0],
    };
    let sq = roi_of(vec![vec![
        [0.0, 0.0, 0.0],
        [10.0, 0.0, 0.0],
        [10.0, 10.0, 0.0],
        [0.0, 10.0, 0.0],
    ]]);
    let pm = structures::partial_volume(&sq, &g, &g).expect("square");
    assert!((pm.volume_cm3() - 0.1).abs() < 1e-12, "{}", pm.volume_cm3());
    let doses: Vec<f64> = pm
        .voxels
        .iter()
        .map(|&v| g.centre_mm(g.ijk(v as usize)[0], 0, 0)[0])
        .collect();
    let w = WeightedDoses::new(&doses, &pm.weights);
    assert_eq!(w.total_weight(), 100.0);
    assert_eq!(w.mean(), 5.0);
    assert_eq!(w.dose_at_volume(50.0), 5.0);
    assert_eq!(w.dose_at_volume(95.0), 1.0);
    assert_eq!(w.dose_at_volume(100.0), 0.0);
    assert_eq!(w.max(), 10.0);
    assert!((w.volume_at_dose(9.0) - 15.0).abs() < 1e-12);
    // Unweighted, the 11 half voxels of the column x = 0 count whole (11 of 121 voxels, 9 %),
    // and D95 falls to 0 Gy.
    assert_eq!(rtopt::dvh::dose_at_volume(&doses, 95.0), 0.0);
}

// ---------------------------------------------------------------- TG119 plan vs fine DVH

/// Trilinear interpolation of an RT Dose at an LPS point (clamped at the grid's edges).
fn trilinear(rd: &rtopt::io::dicom::rtdose::RtDose, p: [f64; 3]) -> f64 {
    let g = &rd.grid;
    let mut i0 = [0usize; 3];
    let mut f = [0.0; 3];
    for a in 0..3 {
        let c = ((p[a] - g.origin_mm[a]) / g.spacing_mm[a]).clamp(0.0, (g.dims[a] - 1) as f64);
        let fl = c.floor().min((g.dims[a] - 2) as f64);
        i0[a] = fl as usize;
        f[a] = c - fl;
    }
    let mut acc = 0.0;
    for (dz, wz) in [(0, 1.0 - f[2]), (1, f[2])] {
        for (dy, wy) in [(0, 1.0 - f[1]), (1, f[1])] {
            for (dx, wx) in [(0, 1.0 - f[0]), (1, f[0])] {
                let idx = ((i0[2] + dz) * g.dims[1] + i0[1] + dy) * g.dims[0] + i0[0] + dx;
                acc += wx * wy * wz * rd.dose[idx] as f64;
            }
        }
    }
    acc
}

/// Fine-sampling DVH samples of an ROI: (dose, volume mm^3) for every point of a `step_mm`
/// lattice inside each contour plane (even-odd over the plane's contours), each standing for
/// step^2 x plane thickness.
fn fine_samples(roi: &Roi, rd: &rtopt::io::dicom::rtdose::RtDose, step_mm: f64) -> Vec<(f64, f64)> {
    let pl = planes(roi);
    let t = plane_thickness_mm(&pl);
    let mut out = Vec::new();
    for (z, polys) in &pl {
        let pts = polys.iter().flatten();
        let (x0, x1) = pts
            .clone()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
                (a.0.min(p[0]), a.1.max(p[0]))
            });
        let (y0, y1) = pts.fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
            (a.0.min(p[1]), a.1.max(p[1]))
        });
        let nx = ((x1 - x0) / step_mm).ceil() as usize;
        let ny = ((y1 - y0) / step_mm).ceil() as usize;
        for j in 0..ny {
            let y = y0 + (j as f64 + 0.5) * step_mm;
            for i in 0..nx {
                let x = x0 + (i as f64 + 0.5) * step_mm;
                let n_in = polys.iter().filter(|p| inside(p, x, y)).count();
                if n_in % 2 == 1 {
                    out.push((trilinear(rd, [x, y, *z]), step_mm * step_mm * t));
                }
            }
        }
    }
    out
}

/// D_x of weighted samples: the dose at which the hottest `pct` % of the volume is reached.
fn fine_d(samples: &[(f64, f64)], pct: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = s.iter().map(|p| p.1).sum();
    let mut cum = 0.0;
    for (d, v) in &s {
        cum += v;
        if cum >= pct / 100.0 * total {
            return *d;
        }
    }
    s.last().map_or(f64::NAN, |p| p.0)
}

fn plan_tg119(out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .arg("plan")
        .arg(common::tg119_dir())
        .arg("--out")
        .arg(out)
        .output()
        .expect("run rtopt");
    assert!(
        o.status.success() || o.status.code() == Some(4),
        "rtopt plan failed ({:?}):\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn tg119_report_d95_agrees_with_a_fine_sampling_dvh_of_the_rtdose() {
    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("plan");
    plan_tg119(&out);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("json"))
            .expect("report.json parses");
    let rd = rtopt::io::dicom::rtdose::read_rtdose(&out.join("RTDOSE.dcm")).expect("RTDOSE");
    assert_eq!(rd.units, "GY");
    let (_, ss) = tg119();
    let rx = report["prescription_gy"].as_f64().expect("Rx");
    assert_eq!(rx, 50.0);
    let metrics = |name: &str| {
        report["structures"]
            .as_array()
            .expect("structures")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);

    // Volumes in the report: the contours' volumes (BODY: whole, though its outermost
    // partial voxels carry no dose).
    for roi in &ss.rois {
        let reference = polygon_volume_cm3(roi);
        let v = f(&metrics(&roi.name), "volume_cm3");
        println!(
            "{}: report volume {v:.2} cm3, polygon {reference:.2} cm3",
            roi.name
        );
        assert!(
            (v / reference - 1.0).abs() < 0.01,
            "{}: report {v:.2} cm3 vs polygon {reference:.2} cm3",
            roi.name
        );
    }

    let ptv = ss.roi("OuterTarget").expect("PTV");
    let fine = fine_samples(ptv, &rd, 0.25);
    let fine_d95 = fine_d(&fine, 95.0);
    let report_d95 = f(&metrics("OuterTarget"), "d95_gy");
    println!(
        "OuterTarget D95: report {report_d95:.3} Gy, fine sampling (0.25 mm, trilinear) \
         {fine_d95:.3} Gy, difference {:+.2} % of Rx",
        100.0 * (report_d95 - fine_d95) / rx
    );
    assert!(
        (report_d95 - fine_d95).abs() <= 0.005 * rx,
        "PTV D95: report {report_d95:.3} Gy vs fine-sampling {fine_d95:.3} Gy (tolerance 0.5 % of Rx)"
    );
    // The goal table judges the same D95.
    let goal = report["goals"]
        .as_array()
        .expect("goals")
        .iter()
        .find(|g| g["structure"] == "OuterTarget" && g["goal"] == "D95 >= 50 Gy")
        .expect("PTV D95 goal")
        .clone();
    assert_eq!(f(&goal, "achieved"), report_d95);
    // Mean and maximum of the Core, for the record (docs/metrics.md).
    let core = ss.roi("Core").expect("Core");
    let fc = fine_samples(core, &rd, 0.25);
    let fine_max = fc.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let vol: f64 = fc.iter().map(|p| p.1).sum();
    let fine_mean = fc.iter().map(|p| p.0 * p.1).sum::<f64>() / vol;
    let rc = metrics("Core");
    println!(
        "Core: max report {:.2} Gy vs fine {fine_max:.2} Gy; mean report {:.2} Gy vs fine \
         {fine_mean:.2} Gy",
        f(&rc, "max_gy"),
        f(&rc, "mean_gy"),
    );
    assert!((f(&rc, "mean_gy") - fine_mean).abs() <= 0.01 * fine_mean);
}
