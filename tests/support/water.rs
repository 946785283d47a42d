//! Shared by `tests/dose_v2.rs`, `tests/dose_hetero.rs` and `examples/commissioning.rs`
//! (included with `#[path]`): a water slab and the dose of a square open field in it through
//! `dose_at_points` (the pencil beam) or any engine's `dose_at_points`; the same phantom with
//! a lung slab.
#![allow(dead_code)]

use rtopt::beams::{Beam, BeamletGrid};
use rtopt::ct::{CtMeta, CtVolume};
use rtopt::dose::{dose_at_points, DoseEngine};
use rtopt::geometry::Grid3;
use rtopt::machine::MachineModel;
use serde_json::Value;

/// HU whose relative electron density is 1.000 on the default CT calibration (HU 0 is
/// 1.0044, `docs/dose.md`): the fit's water.
pub const WATER_HU: f32 = -4.55;

/// Water slab 600 x 420 x 600 mm (x, y = depth, z), 5 mm voxels, surface at y = -200 mm.
pub fn water() -> CtVolume {
    let grid = Grid3 {
        dims: [120, 84, 120],
        origin_mm: [-297.5, -197.5, -297.5],
        spacing_mm: [5.0; 3],
    };
    CtVolume {
        hu: vec![WATER_HU; grid.len()],
        grid,
        meta: CtMeta::default(),
    }
}

/// Dose per MU (Gy) of a gantry-0 square open field of side `field_mm` at the isocentre
/// (5 mm beamlets, 1 MU each), the surface `ssd_mm` from the source, at points given as
/// (depth below the surface, lateral x), mm.
pub fn field_dose(
    ct: &CtVolume,
    m: &MachineModel,
    field_mm: f64,
    ssd_mm: f64,
    pts_depth_x: &[(f64, f64)],
) -> rtopt::Result<Vec<f64>> {
    let (beam, w, pts) = open_field(field_mm, ssd_mm, pts_depth_x);
    dose_at_points(ct, &[beam], m, &w, &pts)
}

/// [`field_dose`] through `engine`.
pub fn field_dose_with(
    engine: &dyn DoseEngine,
    ct: &CtVolume,
    m: &MachineModel,
    field_mm: f64,
    ssd_mm: f64,
    pts_depth_x: &[(f64, f64)],
) -> rtopt::Result<Vec<f64>> {
    let (beam, w, pts) = open_field(field_mm, ssd_mm, pts_depth_x);
    engine.dose_at_points(ct, &[beam], m, &w, &pts)
}

/// The open field of [`field_dose`], its weights (1 MU per beamlet) and the LPS points.
pub fn open_field(
    field_mm: f64,
    ssd_mm: f64,
    pts_depth_x: &[(f64, f64)],
) -> (Beam, Vec<f64>, Vec<[f64; 3]>) {
    let b = 5.0;
    let n = (field_mm / b).round() as usize;
    let beam = Beam {
        number: 1,
        name: "open".into(),
        gantry_deg: 0.0,
        couch_deg: 0.0,
        collimator_deg: 0.0,
        isocenter_mm: [0.0, -200.0 + (1000.0 - ssd_mm), 0.0],
        sad_mm: 1000.0,
        grid: BeamletGrid {
            size_x_mm: b,
            size_y_mm: b,
            nx: n,
            ny: n,
            x0_mm: -0.5 * field_mm + 0.5 * b,
            y0_mm: -0.5 * field_mm + 0.5 * b,
        },
        beamlets: (0..n)
            .flat_map(|iy| (0..n).map(move |ix| [ix, iy]))
            .collect(),
        first_column: 0,
    };
    let w = vec![1.0; beam.beamlets.len()];
    let pts: Vec<[f64; 3]> = pts_depth_x
        .iter()
        .map(|&(d, x)| [x, -200.0 + d, 0.0])
        .collect();
    (beam, w, pts)
}

/// The TrueBeam 6X golden beam data (`data/beam/truebeam_6x_golden_beam_data.json`).
pub fn gbd() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/beam/truebeam_6x_golden_beam_data.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("GBD file")).expect("GBD json")
}

/// A JSON array of numbers (null: NaN).
pub fn arr(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// HU whose relative electron density is `rho` on the machine's CT calibration.
pub fn hu_of(m: &MachineModel, rho: f64) -> f32 {
    let (mut a, mut b) = (-1000.0f32, 0.0f32);
    for _ in 0..60 {
        let c = 0.5 * (a + b);
        if (m.relative_electron_density(c) as f64) < rho {
            a = c;
        } else {
            b = c;
        }
    }
    0.5 * (a + b)
}

/// The water phantom of `support` with a slab of density `rho` from depth `top_mm` to
/// `bottom_mm` (multiples of the 5 mm voxels).
pub fn slab(m: &MachineModel, rho: f64, top_mm: f64, bottom_mm: f64) -> CtVolume {
    let mut ct = water();
    let hu = hu_of(m, rho);
    let [nx, ny, _] = ct.grid.dims;
    for (i, h) in ct.hu.iter_mut().enumerate() {
        let j = (i / nx) % ny;
        let depth = ct.grid.origin_mm[1] + 5.0 * j as f64 + 200.0;
        if depth > top_mm && depth < bottom_mm {
            *h = hu;
        }
    }
    ct
}
