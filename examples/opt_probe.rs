//! Probe: TG119 optimisation timing with chosen options (dev tool).
//! Usage: cargo run --release --example opt_probe -- <full_rows_limit> <tol> <cutoff_mm> <thr>
use std::path::Path;
use std::time::Instant;

fn main() -> rtopt::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let frl: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(30000);
    let tol: f64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1e-7);
    let cut: f64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(15.0);
    let thr: f64 = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(0.01);
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default())?;
    let pp = std::env::var("PROTO").unwrap_or_else(|_| "data/protocols/tg119.toml".into());
    let p = rtopt::optimize::protocol::Protocol::load(Path::new(&pp))?;
    let m = rtopt::machine::MachineModel::default_6x();
    let target = case.structure("OuterTarget")?;
    let beams = rtopt::beams::setup_beams(&target.mask, &Default::default(), &m)?;
    let dopt = rtopt::dose::DoseOptions { lateral_cutoff_mm: cut, relative_threshold: thr, ..Default::default() };
    let t = Instant::now();
    let dc = rtopt::dose::influence_matrix(&case.ct, &case.body_mask(), &beams, &m, &dopt)?;
    eprintln!("matrix {:.2} s nnz {}", t.elapsed().as_secs_f64(), dc.matrix.nnz());
    let st: Vec<(String, String, Vec<u32>)> = case.structures.iter().map(|s| (s.roi.name.clone(), s.roi.interpreted_type.clone(), dc.dose_grid.rows_in(&s.mask))).collect();
    let prob = rtopt::optimize::PlanningProblem::new(&dc.matrix, &dc.dose_grid, &beams, &st, &p)?;
    let t = Instant::now();
    let r = prob.solve(&rtopt::optimize::OptimizeOptions { full_rows_limit: frl, tolerance: tol, verbose: true, ..Default::default() })?;
    eprintln!("solve {:.2} s, {} iterations, {} rounds, rows {}", t.elapsed().as_secs_f64(), r.iterations, r.rounds, r.n_constraint_rows);
    for g in &r.goals { eprintln!("{:<12} {:<24} {:>8.2} {:?}", g.structure, g.description, g.achieved_gy, g.met); }
    Ok(())
}
