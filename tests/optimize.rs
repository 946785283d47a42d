//! Fluence optimisation: constraints hold on the final dose, infeasibility is diagnosed in the
//! protocol's words, the optimum agrees with an independent first-order solver, solves are
//! deterministic, and variants reuse the problem.

use std::path::Path;

use rtopt::dvh;
use rtopt::optimize::synthetic::{c_shape, SyntheticCase};
use rtopt::optimize::{fluence_maps, Normalization, OptimizeOptions, PlanningProblem, Protocol};
use rtopt::Error;

/// Small synthetic C-shape: 30 x 30 x 6 voxels, 5 beams, 6 mm beamlets (about 350 beamlets).
fn small() -> SyntheticCase {
    c_shape(30, 6, 5, 6.0)
}

fn protocol(extra: &str) -> Protocol {
    let text = format!(
        r#"
[prescription]
total_dose_gy = 50
fractions = 30
target = "OuterTarget"

[[structure]]
name = "OuterTarget"
goals = [{{ type = "deviation", dose_gy = 50, weight = 1000 }}]

[[structure]]
name = "BODY"
goals = [{{ type = "overdose", dose_gy = 30, weight = 100, exclude = ["OuterTarget"] }}]
{extra}
"#
    );
    Protocol::from_toml_str(&text, Path::new("test.toml")).unwrap()
}

fn rows<'a>(case: &'a SyntheticCase, name: &str) -> &'a [u32] {
    &case
        .structures
        .iter()
        .find(|s| s.name == name)
        .unwrap()
        .rows
}

fn doses(dose: &[f64], rows: &[u32]) -> Vec<f64> {
    rows.iter().map(|&r| dose[r as usize]).collect()
}

fn problem<'a>(case: &'a SyntheticCase, p: &Protocol) -> PlanningProblem<'a> {
    PlanningProblem::new(
        &case.matrix,
        &case.dose_grid,
        &case.beams,
        &case.structures,
        p,
    )
    .unwrap()
}

#[test]
fn cvar_dose_volume_constraint_holds_on_the_dvh() {
    let case = small();
    // Unconstrained reference: Core D20 as the objectives leave it.
    let free = protocol(
        r#"[[structure]]
name = "Core"
goals = [{ type = "dvh_max", dose_gy = 0, volume_pct = 20, mode = "report" }]"#,
    );
    let r0 = problem(&case, &free)
        .solve(&OptimizeOptions::default())
        .unwrap();
    let core = rows(&case, "Core");
    let d20_free = dvh::dose_at_volume(&doses(&r0.dose_gy, core), 20.0);
    let limit = (0.7 * d20_free * 10.0).round() / 10.0;
    assert!(limit > 1.0, "core D20 without constraint {d20_free} Gy");

    let cons = protocol(&format!(
        r#"[[structure]]
name = "Core"
goals = [{{ type = "dvh_max", dose_gy = {limit}, volume_pct = 20 }}]"#
    ));
    let r = problem(&case, &cons)
        .solve(&OptimizeOptions::default())
        .unwrap();
    let dc = doses(&r.dose_gy, core);
    let d20 = dvh::dose_at_volume(&dc, 20.0);
    // "At most 20 % of Core above the limit": exact DVH.
    assert!(d20 <= limit * (1.0 + 1e-4), "D20 {d20} Gy > {limit} Gy");
    let above = dc.iter().filter(|&&d| d > limit * (1.0 + 1e-4)).count();
    assert!(
        above as f64 <= 0.2 * dc.len() as f64,
        "{above} of {} voxels above",
        dc.len()
    );
    // CVaR (mean of the hottest 20 %) is what the solver bounds: conservative.
    let cvar = dvh::upper_cvar(&dc, 20.0);
    assert!(cvar <= limit * (1.0 + 1e-4), "CVaR {cvar}");
    let g = r.goal("Core", &format!("D20 <= {limit} Gy")).unwrap();
    assert_eq!(g.met, Some(true));
    println!(
        "Core D20: free {d20_free:.2} Gy, constrained {d20:.2} Gy (CVaR {cvar:.2}, limit {limit})"
    );
}

#[test]
fn infeasible_protocol_names_both_conflicting_constraints() {
    let case = small();
    let p = protocol(
        r#"[[structure]]
name = "BODY"
goals = [{ type = "max_dose", dose_gy = 40 }]

[[structure]]
name = "OuterTarget"
goals = [{ type = "min_dose", dose_gy = 47.5 }]

[[structure]]
name = "Core"
goals = [{ type = "mean_max", dose_gy = 45 }]"#,
    );
    let pb = problem(&case, &p);
    // All rows from the start, and constraint generation from a reference plan.
    for limit in [usize::MAX, 300] {
        let opts = OptimizeOptions {
            full_rows_limit: limit,
            ..Default::default()
        };
        match pb.solve(&opts) {
            Err(Error::Infeasible {
                mut constraints, ..
            }) => {
                constraints.sort();
                assert_eq!(
                    constraints,
                    vec![
                        "BODY max dose <= 40 Gy".to_string(),
                        "OuterTarget min dose >= 47.5 Gy".to_string()
                    ]
                );
            }
            other => panic!("expected Infeasible, got {other:?}"),
        }
    }
    // Relaxed: solves and reports by how much the two constraints give way.
    let r = pb
        .solve(&OptimizeOptions {
            relax: true,
            ..Default::default()
        })
        .unwrap();
    let vb = r.goal("BODY", "max dose <= 40 Gy").unwrap();
    let vp = r.goal("OuterTarget", "min dose >= 47.5 Gy").unwrap();
    let (sb, sp) = (vb.violation_gy.unwrap(), vp.violation_gy.unwrap());
    // The reported slacks are the actual violations on the final dose:
    // BODY max = 40 + sb, PTV min = 47.5 - sp, and together they bridge the 7.5 Gy conflict.
    assert!(
        (vb.achieved_gy - (40.0 + sb)).abs() < 0.01,
        "{} vs {}",
        vb.achieved_gy,
        40.0 + sb
    );
    assert!(
        (vp.achieved_gy - (47.5 - sp)).abs() < 0.01,
        "{} vs {}",
        vp.achieved_gy,
        47.5 - sp
    );
    assert!(sb + sp >= 7.5 - 0.01);
    assert_eq!(vb.met, Some(false));
    let core = r.goal("Core", "mean dose <= 45 Gy").unwrap();
    assert!(core.violation_gy.unwrap() < 1e-3);
}

/// FISTA with adaptive restart on f(x) = sum_g w_g/N_g sum_v phi_g(30 (A x)_v), x >= 0.
fn fista(case: &SyntheticCase, terms: &[(Vec<u32>, i8, f64, f64)], iters: usize) -> Vec<f64> {
    let a = &case.matrix;
    let n = a.n_cols();
    let f = 30.0;
    let grad = |x: &[f64]| -> Vec<f64> {
        let d = a.dose(x);
        let mut y = vec![0.0; a.n_rows()];
        for (rows, kind, dref, w) in terms {
            let c = 2.0 * w / rows.len() as f64 * f;
            for &r in rows {
                let dv = f * d[r as usize];
                let g = match kind {
                    0 => dv - dref,
                    1 => (dv - dref).max(0.0),
                    _ => (dv - dref).min(0.0),
                };
                y[r as usize] += c * g;
            }
        }
        a.adjoint(&y)
    };
    // Lipschitz bound: power iteration on sum_g 2 w/N f^2 A_g^T A_g.
    let mut v = vec![1.0; n];
    let mut lip = 0.0;
    for _ in 0..100 {
        let d = a.dose(&v);
        let mut y = vec![0.0; a.n_rows()];
        for (rows, _, _, w) in terms {
            for &r in rows {
                y[r as usize] += 2.0 * w / rows.len() as f64 * f * f * d[r as usize];
            }
        }
        let hv = a.adjoint(&y);
        lip = hv.iter().map(|x| x * x).sum::<f64>().sqrt();
        v = hv.iter().map(|x| x / lip).collect();
    }
    let step = 1.0 / (1.01 * lip);
    let mut x = vec![0.0; n];
    let mut yk = x.clone();
    let mut t = 1.0f64;
    for _ in 0..iters {
        let g = grad(&yk);
        let xn: Vec<f64> = yk
            .iter()
            .zip(&g)
            .map(|(y, g)| (y - step * g).max(0.0))
            .collect();
        // gradient-based restart (O'Donoghue & Candes 2015)
        let restart = g
            .iter()
            .zip(xn.iter().zip(&x))
            .map(|(g, (a, b))| g * (a - b))
            .sum::<f64>()
            > 0.0;
        let tn = if restart {
            1.0
        } else {
            0.5 * (1.0 + (1.0 + 4.0 * t * t).sqrt())
        };
        let mom = if restart { 0.0 } else { (t - 1.0) / tn };
        yk = xn.iter().zip(&x).map(|(a, b)| a + mom * (a - b)).collect();
        x = xn;
        t = tn;
    }
    x
}

fn objective(case: &SyntheticCase, terms: &[(Vec<u32>, i8, f64, f64)], x: &[f64]) -> f64 {
    let d = case.matrix.dose(x);
    terms
        .iter()
        .map(|(rows, kind, dref, w)| {
            w / rows.len() as f64
                * rows
                    .iter()
                    .map(|&r| {
                        let e = 30.0 * d[r as usize] - dref;
                        match kind {
                            0 => e * e,
                            1 => e.max(0.0).powi(2),
                            _ => e.min(0.0).powi(2),
                        }
                    })
                    .sum::<f64>()
        })
        .sum()
}

#[test]
fn clarabel_optimum_matches_independent_fista() {
    let case = small();
    let p = protocol(
        r#"[[structure]]
name = "Core"
goals = [{ type = "overdose", dose_gy = 20, weight = 300 }]"#,
    );
    let r = problem(&case, &p)
        .solve(&OptimizeOptions::default())
        .unwrap();
    let ptv = rows(&case, "OuterTarget").to_vec();
    let core = rows(&case, "Core").to_vec();
    let ptv_mask: std::collections::HashSet<u32> = ptv.iter().copied().collect();
    let body_ex: Vec<u32> = rows(&case, "BODY")
        .iter()
        .copied()
        .filter(|r| !ptv_mask.contains(r))
        .collect();
    let terms = vec![
        (ptv, 0i8, 50.0, 1000.0),
        (body_ex, 1, 30.0, 100.0),
        (core, 1, 20.0, 300.0),
    ];
    let xf = fista(&case, &terms, 4000);
    let fc = objective(&case, &terms, &r.weights_mu);
    let ff = objective(&case, &terms, &xf);
    println!(
        "objective: Clarabel {fc:.6}, FISTA {ff:.6}, reported {:.6}",
        r.objective
    );
    assert!((fc - ff).abs() <= 1e-3 * ff, "Clarabel {fc} vs FISTA {ff}");
    assert!(
        (r.objective - fc).abs() <= 1e-4 * fc,
        "reported {} vs {fc}",
        r.objective
    );
}

#[test]
fn two_solves_give_bit_identical_weights() {
    let case = small();
    let p = protocol(
        r#"[[structure]]
name = "Core"
goals = [{ type = "overdose", dose_gy = 20, weight = 300 }, { type = "dvh_max", dose_gy = 25, volume_pct = 10 }]"#,
    );
    let a = problem(&case, &p)
        .solve(&OptimizeOptions::default())
        .unwrap();
    let b = problem(&case, &p)
        .solve(&OptimizeOptions::default())
        .unwrap();
    assert!(a
        .weights_mu
        .iter()
        .zip(&b.weights_mu)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_eq!(a.iterations, b.iterations);
}

#[test]
fn constraint_generation_reaches_the_full_row_optimum() {
    // A wider body (r = 63 mm) so that most body voxels stay far below the thresholds.
    let case = c_shape(44, 6, 5, 6.0);
    let p = protocol(
        r#"[[structure]]
name = "BODY"
goals = [{ type = "max_dose", dose_gy = 52 }]

[[structure]]
name = "OuterTarget"
goals = [{ type = "dvh_min", dose_gy = 49.5, volume_pct = 95 }, { type = "dvh_max", dose_gy = 51.5, volume_pct = 10 }]"#,
    );
    let pb = problem(&case, &p);
    let full = pb
        .solve(&OptimizeOptions {
            full_rows_limit: usize::MAX,
            ..Default::default()
        })
        .unwrap();
    let gen = problem(&case, &p)
        .solve(&OptimizeOptions {
            full_rows_limit: 300,
            ..Default::default()
        })
        .unwrap();
    println!(
        "rows: full {}, generated {} in {} rounds",
        full.n_constraint_rows, gen.n_constraint_rows, gen.rounds
    );
    assert!(gen.n_constraint_rows < full.n_constraint_rows);
    let rel = (gen.objective - full.objective).abs() / full.objective;
    assert!(
        rel < 1e-5,
        "objective {} vs {} ({rel})",
        gen.objective,
        full.objective
    );
    let bmax = dvh::max(&doses(&gen.dose_gy, rows(&case, "BODY")));
    assert!(bmax <= 52.0 * 1.0001, "BODY max {bmax}");
    let ptv = doses(&gen.dose_gy, rows(&case, "OuterTarget"));
    assert!(dvh::lower_cvar(&ptv, 5.0) >= 49.5 * (1.0 - 1e-4));
    assert!(dvh::upper_cvar(&ptv, 10.0) <= 51.5 * (1.0 + 1e-4));
}

#[test]
fn variant_reuses_problem_and_matches_fresh_solve() {
    let case = small();
    let text = |w: f64| {
        protocol(&format!(
            r#"[[structure]]
name = "Core"
goals = [{{ type = "overdose", dose_gy = 20, weight = {w} }}]"#
        ))
    };
    let mut pb = problem(&case, &text(300.0));
    let base = pb.solve(&OptimizeOptions::default()).unwrap();
    let g = pb.find_goal("Core", "overdose").unwrap();
    pb.set_goal_weight(g, 3000.0).unwrap();
    let variant = pb.solve(&OptimizeOptions::default()).unwrap();
    let fresh = problem(&case, &text(3000.0))
        .solve(&OptimizeOptions::default())
        .unwrap();
    let core = rows(&case, "Core");
    let m = |r: &rtopt::optimize::OptimizationResult| dvh::mean(&doses(&r.dose_gy, core));
    assert!(
        m(&variant) < m(&base),
        "higher weight must lower the core dose"
    );
    let wmax = fresh.weights_mu.iter().cloned().fold(0.0, f64::max);
    let diff = variant
        .weights_mu
        .iter()
        .zip(&fresh.weights_mu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        diff <= 1e-9 * wmax,
        "variant differs from fresh solve by {diff}"
    );
}

#[test]
fn normalisation_sets_d95_and_maps_hold_the_weights() {
    let case = small();
    let p = protocol("");
    let r = problem(&case, &p)
        .solve(&OptimizeOptions {
            normalize: Some(Normalization {
                structure: "OuterTarget".into(),
                volume_pct: 95.0,
                dose_gy: 50.0,
            }),
            ..Default::default()
        })
        .unwrap();
    let d95 = dvh::dose_at_volume(&doses(&r.dose_gy, rows(&case, "OuterTarget")), 95.0);
    assert!((d95 - 50.0).abs() < 1e-9, "D95 {d95}");
    assert!(r.normalization_factor != 1.0);
    let maps = fluence_maps(&case.beams, &r.weights_mu).unwrap();
    assert_eq!(maps.len(), 5);
    let total: f64 = maps.iter().map(|m| m.mu.iter().sum::<f64>()).sum();
    let w: f64 = r.weights_mu.iter().sum();
    assert!((total - w).abs() <= 1e-9 * w);
}

#[test]
fn unknown_structure_lists_present_ones() {
    let case = small();
    let p = protocol(
        r#"[[structure]]
name = "Rectum"
goals = [{ type = "max_dose", dose_gy = 40 }]"#,
    );
    let e = PlanningProblem::new(
        &case.matrix,
        &case.dose_grid,
        &case.beams,
        &case.structures,
        &p,
    )
    .err()
    .unwrap();
    assert_eq!(
        e.to_string(),
        "structure 'Rectum' not found; present: OuterTarget, Core, BODY"
    );
}

#[test]
fn shipped_tg119_protocol_parses() {
    let p = Protocol::load(Path::new("data/protocols/tg119.toml")).unwrap();
    assert_eq!(p.prescription.fractions, 30);
    assert_eq!(p.prescription.total_dose_gy, 50.0);
    let b = p.beams.as_ref().unwrap();
    assert_eq!(
        b.gantry_deg,
        (0..9).map(|i| 40.0 * i as f64).collect::<Vec<_>>()
    );
    let e = Protocol::load(Path::new("data/protocols/missing.toml")).unwrap_err();
    assert!(e.to_string().starts_with("data/protocols/missing.toml"));
}

#[test]
#[ignore = "timing probe: PROBE=0..3 selects the goal mix"]
fn probe_timing() {
    let case = small();
    let extra = match std::env::var("PROBE").as_deref() {
        Ok("0") => "",
        Ok("1") => "[[structure]]\nname = \"Core\"\ngoals = [{ type = \"overdose\", dose_gy = 20, weight = 300 }]",
        Ok("2") => "[[structure]]\nname = \"Core\"\ngoals = [{ type = \"dvh_max\", dose_gy = 25, volume_pct = 10 }]",
        _ => "[[structure]]\nname = \"OuterTarget\"\ngoals = [{ type = \"dvh_min\", dose_gy = 50, volume_pct = 95 }]",
    };
    let p = protocol(extra);
    let pb = problem(&case, &p);
    let t = std::time::Instant::now();
    pb.precompute();
    println!("precompute {:?}", t.elapsed());
    let ls = std::env::var("LS").unwrap_or("faer".into());
    let th: u32 = std::env::var("TH").map(|v| v.parse().unwrap()).unwrap_or(0);
    let r = pb
        .solve(&OptimizeOptions {
            verbose: std::env::var("V").is_ok(),
            linear_solver: ls,
            threads: th,
            ..Default::default()
        })
        .unwrap();
    println!(
        "solve {:.3} s, iters {}, vars {}, rows {}",
        r.solve_seconds, r.iterations, r.n_variables, r.n_constraint_rows
    );
}

/// TG-119 C-shape (easy) on the CORT phantom with the project's dose engine: 9 beams
/// 0..320 by 40, 5 mm beamlets, 3 mm dose grid, 50 Gy in 30 fractions (Ezzell et al. 2009;
/// goals in `data/protocols/tg119.toml`). Peer: matRad PTV D95 49.1 Gy, Core D10 23.8 Gy
/// before normalisation (`docs/tg119.md`).
#[test]
#[ignore = "TG-119 end to end: the solve did not finish within 30 min on the shared 2-core machine (per-voxel rows of ~10^3 non-zeros, see docs/benchmarks.md); run with --ignored"]
fn tg119_c_shape_meets_goals() {
    use rtopt::beams::setup_beams;
    use rtopt::dose::engine::{influence_matrix, DoseOptions};
    use rtopt::machine::MachineModel;
    let t = std::time::Instant::now();
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default()).unwrap();
    let p = Protocol::load(Path::new("data/protocols/tg119.toml")).unwrap();
    let machine = MachineModel::default_6x();
    let target = &case.structure("OuterTarget").unwrap().mask;
    let beams = setup_beams(target, &p.beam_setup(), &machine).unwrap();
    let body = case.body_mask();
    let calc =
        influence_matrix(&case.ct, &body, &beams, &machine, &DoseOptions::default()).unwrap();
    println!(
        "dose: {} rows x {} beamlets, {} nnz, {:.1} s",
        calc.matrix.n_rows(),
        calc.matrix.n_cols(),
        calc.matrix.nnz(),
        calc.build_seconds
    );
    let structures: Vec<rtopt::dose::StructureRows> = ["OuterTarget", "Core", "BODY"]
        .iter()
        .map(|n| rtopt::dose::StructureRows::of(case.structure(n).unwrap(), &calc.dose_grid))
        .collect::<rtopt::Result<_>>()
        .unwrap();
    let pb = PlanningProblem::new(&calc.matrix, &calc.dose_grid, &beams, &structures, &p).unwrap();
    let r = pb.solve(&OptimizeOptions::default()).unwrap();
    let d = |name: &str| {
        doses(
            &r.dose_gy,
            &structures.iter().find(|s| s.name == name).unwrap().rows,
        )
    };
    let (ptv, core) = (d("OuterTarget"), d("Core"));
    let (d95, d10, c10) = (
        dvh::dose_at_volume(&ptv, 95.0),
        dvh::dose_at_volume(&ptv, 10.0),
        dvh::dose_at_volume(&core, 10.0),
    );
    println!(
        "TG-119 C-shape: PTV D95 {d95:.2} Gy (>= 50), D10 {d10:.2} Gy (<= 55); Core D10 {c10:.2} Gy \
         (<= 25; TG-119 'hard' goal 10 Gy); matRad: D95 49.1, Core D10 23.8. \
         Solve {:.1} s, {} iterations, {} rounds, {} variables, {} rows; total {:.0} s",
        r.solve_seconds, r.iterations, r.rounds, r.n_variables, r.n_constraint_rows,
        t.elapsed().as_secs_f64()
    );
    for g in &r.goals {
        println!(
            "  {} {}: achieved {:.2} Gy, met {:?}",
            g.structure, g.description, g.achieved_gy, g.met
        );
    }
    assert!(d95 >= 50.0 * (1.0 - 1e-4), "PTV D95 {d95}");
    assert!(d10 <= 55.0, "PTV D10 {d10}");
    assert!(c10 <= 25.0, "Core D10 {c10}");
    // Hard constraints hold on the final dose within 0.5 %.
    for g in r
        .goals
        .iter()
        .filter(|g| g.role == rtopt::optimize::GoalRole::Constraint)
    {
        assert_eq!(
            g.met,
            Some(true),
            "{} {}: {}",
            g.structure,
            g.description,
            g.achieved_gy
        );
    }
}
