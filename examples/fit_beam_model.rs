//! Fit the pencil-beam kernel of `data/machines/generic_6x.json` to the Varian TrueBeam 6X
//! golden beam data (GBD) quoted in `docs/dose.md` (source: DRO-Physics/DCAL
//! `Golden_Beam_Data.json`, commit 7c77e244; penumbra / 50 % points derived from it).
//!
//! `cargo run --release --example fit_beam_model [-- --write]`
//!
//! Deterministic Nelder-Mead (fixed start, fixed restarts) on a weighted least-squares
//! objective; prints the residual of every data point and the fitted `beam_model` JSON.
//! With `--write` the machine file is rewritten (atomically).

#![allow(clippy::needless_range_loop)]

use std::path::Path;

use rtopt::dose::kernel::Kernel;
use rtopt::machine::{KernelComponent, MachineModel, PencilBeamModel};

const DEPTHS_MM: [f64; 7] = [15.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0];
/// (field side mm, dmax plateau lo/hi mm, PDD at DEPTHS_MM), GBD SSD 100 cm.
const PDD: [(f64, f64, f64, [f64; 7]); 6] = [
    (
        30.0,
        13.0,
        16.0,
        [100.0, 82.6, 60.4, 44.0, 32.5, 24.1, 18.0],
    ),
    (
        40.0,
        13.0,
        15.0,
        [100.0, 83.5, 61.5, 45.2, 33.4, 24.9, 18.6],
    ),
    (
        60.0,
        13.0,
        15.0,
        [100.0, 84.7, 63.6, 47.3, 35.2, 26.3, 19.9],
    ),
    (
        100.0,
        13.0,
        16.0,
        [100.0, 86.1, 66.4, 50.4, 38.1, 28.9, 22.0],
    ),
    (
        200.0,
        11.0,
        15.0,
        [99.9, 87.3, 69.5, 54.6, 42.4, 32.8, 25.5],
    ),
    (
        400.0,
        11.0,
        13.0,
        [99.7, 88.2, 71.8, 57.6, 45.8, 36.3, 28.7],
    ),
];
/// (field mm, depth mm, 80-20 penumbra mm, 50 % point mm), SSD 100 cm, derived from the GBD.
const PROFILES: [(f64, f64, f64, f64); 6] = [
    (100.0, 15.0, 5.4, 51.0),
    (100.0, 50.0, 6.0, 52.8),
    (100.0, 100.0, 6.9, 55.3),
    (100.0, 200.0, 8.7, 60.4),
    (30.0, 100.0, 5.6, f64::NAN),
    (200.0, 100.0, 8.1, f64::NAN),
];
/// Relative output factors (GBD diagonal); assumed here at dmax, SSD 100 cm (the JSON does
/// not state the depth), so they get a low weight.
const ROF: [(f64, f64); 9] = [
    (30.0, 0.880),
    (40.0, 0.906),
    (50.0, 0.928),
    (70.0, 0.963),
    (100.0, 1.000),
    (150.0, 1.039),
    (200.0, 1.067),
    (300.0, 1.104),
    (400.0, 1.119),
];
const W_PDD: f64 = 1.0; // per percentage point
const W_PROFILE: f64 = 1.0; // per mm
const W_ROF: f64 = 0.3; // per percentage point
const W_DMAX: f64 = 1.0; // per mm outside the plateau

fn model_from(p: &[f64]) -> PencilBeamModel {
    // p: mu, then per component (log beta, log sigma0, log slope), then log w2, log w3.
    let mut comps = Vec::new();
    for i in 0..3 {
        comps.push(KernelComponent {
            weight: if i == 0 { 1.0 } else { p[9 + i].exp() },
            beta_per_mm: p[1 + 3 * i].exp(),
            sigma_iso_mm: p[2 + 3 * i].exp(),
            sigma_slope: p[3 + 3 * i].exp(),
        });
    }
    PencilBeamModel {
        attenuation_per_mm: p[0].exp(),
        components: comps,
        extra_focal: None,
        electron_contamination: None,
        fit_source: String::new(),
    }
}

struct Eval {
    rows: Vec<(String, f64, f64, f64)>, // label, model, reference, weighted residual
}

fn profile_point(k: &Kernel, field: f64, d: f64, level: f64) -> f64 {
    let ssd = 1000.0;
    let z = ssd + d;
    let h = 0.5 * field;
    let dose_at = |x: f64| {
        let u = x * k.sad_mm / z;
        let dray = d * (1.0 + (x / z).powi(2)).sqrt();
        k.field_dose(dray, z, [-h, h, -h, h], u, 0.0)
    };
    let c = dose_at(0.0);
    let (mut a, mut b) = (0.0, h * z / k.sad_mm + 80.0);
    for _ in 0..40 {
        let m = 0.5 * (a + b);
        if dose_at(m) / c > level {
            a = m;
        } else {
            b = m;
        }
    }
    0.5 * (a + b)
}

fn evaluate(machine: &MachineModel) -> Eval {
    let k = Kernel::uncalibrated(machine);
    let mut rows = Vec::new();
    let (_, ref10) = k.open_field_dmax(100.0, 1000.0);
    for &(f, lo, hi, pdd) in &PDD {
        let (dmax, peak) = k.open_field_dmax(f, 1000.0);
        for (j, &d) in DEPTHS_MM.iter().enumerate() {
            let m = 100.0 * k.square_field_cax(f, 1000.0, d) / peak;
            rows.push((
                format!("PDD {:>3.0} mm @ {:>3.0} mm (%)", f, d),
                m,
                pdd[j],
                W_PDD * (m - pdd[j]),
            ));
        }
        let out = (lo - dmax).max(0.0) + (dmax - hi).max(0.0);
        rows.push((
            format!("dmax {:>3.0} mm (mm, plateau {lo}-{hi})", f),
            dmax,
            0.5 * (lo + hi),
            W_DMAX * out,
        ));
    }
    for &(f, d, pen, x50) in &PROFILES {
        let p80 = profile_point(&k, f, d, 0.8);
        let p20 = profile_point(&k, f, d, 0.2);
        rows.push((
            format!("80-20 {:>3.0} mm @ {:>3.0} mm (mm)", f, d),
            p20 - p80,
            pen,
            W_PROFILE * (p20 - p80 - pen),
        ));
        if x50.is_finite() {
            let m = profile_point(&k, f, d, 0.5);
            rows.push((
                format!("x50   {:>3.0} mm @ {:>3.0} mm (mm)", f, d),
                m,
                x50,
                W_PROFILE * (m - x50),
            ));
        }
    }
    for &(f, rof) in &ROF {
        let (_, peak) = k.open_field_dmax(f, 1000.0);
        let m = peak / ref10;
        rows.push((
            format!("ROF   {:>3.0} mm @ dmax", f),
            m,
            rof,
            W_ROF * 100.0 * (m - rof),
        ));
    }
    Eval { rows }
}

fn objective(base: &MachineModel, p: &[f64]) -> f64 {
    let mut m = base.clone();
    m.beam_model = model_from(p);
    if m.validate().is_err() {
        return f64::INFINITY;
    }
    // keep the three depth terms distinct and mu physical (0.003 .. 0.008 /mm)
    let mu = p[0].exp();
    if !(0.003..0.008).contains(&mu) {
        return 1e9;
    }
    let e = evaluate(&m);
    let s: f64 = e.rows.iter().map(|r| r.3 * r.3).sum();
    if s.is_finite() {
        s
    } else {
        f64::INFINITY
    }
}

fn nelder_mead(f: &dyn Fn(&[f64]) -> f64, x0: &[f64], step: f64, iters: usize) -> (Vec<f64>, f64) {
    let n = x0.len();
    let mut simplex: Vec<Vec<f64>> = vec![x0.to_vec()];
    for i in 0..n {
        let mut x = x0.to_vec();
        x[i] += step;
        simplex.push(x);
    }
    let mut fv: Vec<f64> = simplex.iter().map(|x| f(x)).collect();
    for _ in 0..iters {
        let mut idx: Vec<usize> = (0..=n).collect();
        idx.sort_by(|&a, &b| fv[a].total_cmp(&fv[b]));
        simplex = idx.iter().map(|&i| simplex[i].clone()).collect();
        fv = idx.iter().map(|&i| fv[i]).collect();
        let mut c = vec![0.0; n];
        for x in &simplex[..n] {
            for j in 0..n {
                c[j] += x[j] / n as f64;
            }
        }
        let lerp =
            |t: f64| -> Vec<f64> { (0..n).map(|j| c[j] + t * (simplex[n][j] - c[j])).collect() };
        let xr = lerp(-1.0);
        let fr = f(&xr);
        if fr < fv[0] {
            let xe = lerp(-2.0);
            let fe = f(&xe);
            if fe < fr {
                simplex[n] = xe;
                fv[n] = fe;
            } else {
                simplex[n] = xr;
                fv[n] = fr;
            }
        } else if fr < fv[n - 1] {
            simplex[n] = xr;
            fv[n] = fr;
        } else {
            let xc = if fr < fv[n] { lerp(-0.5) } else { lerp(0.5) };
            let fc = f(&xc);
            if fc < fv[n].min(fr) {
                simplex[n] = xc;
                fv[n] = fc;
            } else {
                for i in 1..=n {
                    for j in 0..n {
                        simplex[i][j] = simplex[0][j] + 0.5 * (simplex[i][j] - simplex[0][j]);
                    }
                    fv[i] = f(&simplex[i]);
                }
            }
        }
    }
    let best = (0..=n)
        .min_by(|&a, &b| fv[a].total_cmp(&fv[b]))
        .unwrap_or(0);
    (simplex[best].clone(), fv[best])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let write = std::env::args().any(|a| a == "--write");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/machines/generic_6x.json");
    let base = MachineModel::load(&path)?;
    // Start: matRad generic 6 MV betas and mu (docs/beam-data.md), guessed widths.
    let mut p = vec![
        0.005066f64.ln(),
        0.3252f64.ln(),
        3.0f64.ln(),
        0.01f64.ln(),
        0.0160f64.ln(),
        15.0f64.ln(),
        0.1f64.ln(),
        0.0051f64.ln(),
        50.0f64.ln(),
        0.1f64.ln(),
        0.1f64.ln(),
        0.05f64.ln(),
    ];
    // Start from the current file when it already holds three components.
    if base.beam_model.components.len() == 3 {
        let bm = &base.beam_model;
        p[0] = bm.attenuation_per_mm.ln();
        for (i, c) in bm.components.iter().enumerate() {
            p[1 + 3 * i] = c.beta_per_mm.ln();
            p[2 + 3 * i] = c.sigma_iso_mm.ln();
            p[3 + 3 * i] = c.sigma_slope.max(1e-6).ln();
            if i > 0 {
                p[9 + i] = (c.weight / bm.components[0].weight).max(1e-6).ln();
            }
        }
    }
    let f = |x: &[f64]| objective(&base, x);
    let mut best = f(&p);
    eprintln!("start objective {best:.3}");
    for round in 0..4 {
        let step = if round % 2 == 0 { 0.3 } else { 0.08 };
        let (x, v) = nelder_mead(&f, &p, step, 3000);
        eprintln!("round {round}: objective {v:.4}");
        if v < best {
            best = v;
            p = x;
        }
    }
    let mut m = base.clone();
    m.beam_model = model_from(&p);
    let e = evaluate(&m);
    println!(
        "{:<40} {:>9} {:>9} {:>9}",
        "data point", "model", "GBD", "w*resid"
    );
    for r in &e.rows {
        println!("{:<40} {:>9.3} {:>9.3} {:>9.3}", r.0, r.1, r.2, r.3);
    }
    println!("objective (sum of squared weighted residuals): {best:.4}");
    let json = serde_json::to_string_pretty(&m.beam_model)?;
    println!("beam_model = {json}");
    if write {
        let mut v = serde_json::to_value(&m)?;
        v["beam_model"] = serde_json::to_value(&m.beam_model)?;
        let text = serde_json::to_string_pretty(&v)? + "\n";
        rtopt::io::atomic::write_file(&path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
