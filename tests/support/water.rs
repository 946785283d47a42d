//! Shared by `tests/dose_v2.rs` and `examples/commissioning.rs` (included with `#[path]`):
//! a water slab and the dose of a square open field in it through `dose_at_points`.

use rtopt::beams::{Beam, BeamletGrid};
use rtopt::ct::{CtMeta, CtVolume};
use rtopt::dose::dose_at_points;
use rtopt::geometry::Grid3;
use rtopt::machine::MachineModel;

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
    dose_at_points(ct, &[beam], m, &w, &pts)
}
