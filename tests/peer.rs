//! `rtopt export-problem` and the CVXPY peer (`benches/peer/peer.py`): the exported problem
//! round-trips through NumPy/SciPy, the peer's NumPy re-evaluation of the objective equals
//! rtopt's, and CVXPY + Clarabel reaches the same optimum (within 0.1 %) with every hard
//! constraint satisfied by both. Runs when a Python with CVXPY is available (`.ci/run`
//! installs one into `benches/peer/.venv`); otherwise it says so and skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use rtopt::optimize::export::write_problem;
use rtopt::optimize::synthetic::c_shape_partial;
use rtopt::optimize::{OptimizeOptions, PlanningProblem, Protocol};

/// A Python that imports cvxpy: `RTOPT_PEER_PYTHON` (then it must work: CI sets it), the
/// project venv, or `python3`.
fn peer_python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let imports = |py: &Path| {
        Command::new(py)
            .args(["-c", "import cvxpy, scipy, numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if let Ok(p) = std::env::var("RTOPT_PEER_PYTHON") {
        let py = PathBuf::from(p);
        assert!(
            imports(&py),
            "RTOPT_PEER_PYTHON={} cannot import cvxpy, scipy and numpy",
            py.display()
        );
        return Some(py);
    }
    [
        root.join("benches/peer/.venv/bin/python"),
        PathBuf::from("python3"),
    ]
    .into_iter()
    .find(|py| imports(py))
}

/// Every goal type the exporter writes, on the synthetic C-shape.
const PROTOCOL: &str = r#"
[prescription]
total_dose_gy = 50
fractions = 25
target = "OuterTarget"

[fluence]
smoothness_weight = 0.5
total_mu_weight = 0.001

[[structure]]
name = "OuterTarget"
goals = [
  { type = "deviation", dose_gy = 50, weight = 100 },
  { type = "underdose", dose_gy = 49, weight = 200 },
  { type = "dvh_min", dose_gy = 48, volume_pct = 95 },
  { type = "dvh_max", dose_gy = 54, volume_pct = 5 },
  { type = "max_dose", dose_gy = 58 },
]

[[structure]]
name = "Core"
goals = [
  { type = "overdose", dose_gy = 20, weight = 50 },
  { type = "eud", a = 4, weight = 1 },
  { type = "dvh_max", dose_gy = 30, volume_pct = 10 },
  { type = "mean_max", dose_gy = 25 },
  { type = "max_dose", dose_gy = 10, mode = "report" },
]

[[structure]]
name = "BODY"
goals = [
  { type = "overdose", dose_gy = 30, weight = 20, exclude = ["OuterTarget"] },
  { type = "mean_dose", weight = 0.5 },
  { type = "max_penalty", weight = 0.2, exclude = ["OuterTarget"] },
]
"#;

#[test]
fn cvxpy_peer_agrees_with_rtopt_on_the_exported_problem() {
    // Partial volumes, so that the exported voxel weights are exercised.
    let case = c_shape_partial(30, 6, 5, 6.0);
    let protocol = Protocol::from_toml_str(PROTOCOL, Path::new("peer.toml")).unwrap();
    let problem = PlanningProblem::new(
        &case.matrix,
        &case.dose_grid,
        &case.beams,
        &case.structures,
        &protocol,
    )
    .unwrap();
    let opts = OptimizeOptions {
        tolerance: 1e-8,
        ..OptimizeOptions::default()
    };
    let res = problem.solve(&opts).unwrap();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("export");
    write_problem(
        &dir,
        rtopt::outputs::Replace::Never,
        "c-shape",
        &problem,
        &case.structures,
        case.dose_grid.grid.voxel_volume_cm3(),
        Some((&res, &opts)),
    )
    .unwrap();
    // Written as one folder with exactly these files.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "influence.npz",
            "problem.json",
            "problem.npz",
            rtopt::outputs::MANIFEST_NAME
        ]
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("problem.json")).unwrap()).unwrap();
    assert_eq!(meta["n_beamlets"], case.matrix.n_cols());
    assert_eq!(meta["goals"].as_array().unwrap().len(), 13);
    assert_eq!(meta["goals"][12]["in_problem"], true);
    assert_eq!(meta["goals"][9]["role"], "report");
    assert_eq!(meta["goals"][9]["in_problem"], false);
    // Goal 0 (OuterTarget deviation) is volume-weighted: boundary voxels count in part.
    let g0 = &meta["goals"][0];
    let (nw, nv) = (
        g0["total_weight"].as_f64().unwrap(),
        g0["n_voxels"].as_f64().unwrap(),
    );
    assert!(nw < nv, "total weight {nw} of {nv} voxels");
    // Each goal carries its formulation, from which peer.py builds its problem: the
    // deviation as a dense quadratic, the max dose as voxel rows.
    assert_eq!(g0["type"], "deviation");
    assert!(g0["terms"]["quadratic"].as_f64().unwrap() > 0.0, "{g0}");
    assert_eq!(meta["goals"][4]["terms"]["parts"][0]["part"], "voxels");
    // Goal 4 (OuterTarget max dose) acts on whole voxels.
    assert_eq!(
        meta["goals"][4]["total_weight"].as_f64(),
        meta["goals"][4]["n_voxels"].as_f64()
    );

    let Some(py) = peer_python() else {
        eprintln!(
            "SKIPPED: no Python with cvxpy (run `bash .ci/run` or `python3 -m venv benches/peer/.venv && benches/peer/.venv/bin/pip install -r benches/peer/requirements.txt`)"
        );
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/peer.py");
    let out_json = t.path().join("peer.json");
    let out = Command::new(&py)
        .arg(&script)
        .arg(&dir)
        .args(["--solver", "CLARABEL", "--json"])
        .arg(&out_json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peer.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_json).unwrap()).unwrap();
    let reported = r["rtopt"]["objective_reported"].as_f64().unwrap();
    let numpy = r["rtopt"]["objective_numpy"].as_f64().unwrap();
    // The objective's definition in problem.json matches what rtopt minimises.
    assert!(
        ((numpy - reported) / reported).abs() < 1e-6,
        "NumPy re-evaluation {numpy} vs rtopt's objective {reported}"
    );
    let rtopt_viol = r["rtopt"]["max_violation_gy"].as_f64().unwrap();
    assert!(
        rtopt_viol <= 1e-3,
        "rtopt violates a constraint by {rtopt_viol} Gy"
    );
    let peer = &r["solvers"][0];
    assert_eq!(peer["status"], "optimal", "{peer}");
    let obj = peer["objective"].as_f64().unwrap();
    assert!(
        ((obj - numpy) / numpy).abs() < 1e-3,
        "CVXPY+Clarabel objective {obj} vs rtopt {numpy}: more than 0.1 % apart"
    );
    let peer_viol = peer["max_violation_gy"].as_f64().unwrap();
    assert!(
        peer_viol <= 1e-3,
        "CVXPY violates a constraint by {peer_viol} Gy"
    );
}
