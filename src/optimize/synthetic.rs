//! A synthetic C-shape phantom with a simple parallel-beam influence matrix, for tests and
//! benchmarks of the optimiser without the dose engine. Not a dose model: each beamlet
//! deposits `0.01 Gy/MU * exp(-0.005/mm * depth) * g(lateral) * g(axial)` where `g` is a
//! rectangular 5 mm profile blurred by a 3 mm Gaussian penumbra; values below 0.1 % of the
//! peak are dropped.
//!
//! Geometry mimics TG-119's C-shape (easy): core cylinder r <= 10 mm, target annulus
//! 15..37 mm open towards +y over |x| < 15 mm, both 80 mm long, inside a 81 mm body
//! cylinder; voxels 3 x 3 x 2.5 mm.

use rayon::prelude::*;

use crate::beams::{Beam, BeamletGrid};
use crate::dose::{DoseGrid, InfluenceMatrix, StructureRows, WeightedRows};
use crate::geometry::Grid3;
use crate::structures::RoiType;

/// A synthetic planning case.
pub struct SyntheticCase {
    pub matrix: InfluenceMatrix,
    pub dose_grid: DoseGrid,
    pub beams: Vec<Beam>,
    /// "OuterTarget" (PTV), "Core" (ORGAN), "BODY" (EXTERNAL).
    pub structures: Vec<StructureRows>,
}

fn profile(u_mm: f64, width_mm: f64, sigma_mm: f64) -> f64 {
    let s = std::f64::consts::SQRT_2 * sigma_mm;
    0.5 * (libm::erf((u_mm + 0.5 * width_mm) / s) - libm::erf((u_mm - 0.5 * width_mm) / s))
}

/// Build the phantom: `n_side x n_side` voxels in-plane (3 mm), `n_slices` slices (2.5 mm),
/// `n_beams` equally spaced coplanar beams (gantry `0, 360/n, ...`), beamlets
/// `beamlet_mm` wide covering the target plus a 5 mm margin. Every structure voxel is whole
/// (weight 1).
pub fn c_shape(n_side: usize, n_slices: usize, n_beams: usize, beamlet_mm: f64) -> SyntheticCase {
    build(n_side, n_slices, n_beams, beamlet_mm, false)
}

/// [`c_shape`] with partial volumes: each structure's voxels carry the fraction of the voxel
/// its analytic shape occupies (4 x 4 x 2 sub-points per voxel, so weights are multiples of
/// 1/32), and its DVH is computed on those weighted voxels.
pub fn c_shape_partial(
    n_side: usize,
    n_slices: usize,
    n_beams: usize,
    beamlet_mm: f64,
) -> SyntheticCase {
    build(n_side, n_slices, n_beams, beamlet_mm, true)
}

/// Sub-points per voxel along x, y and z for [`c_shape_partial`].
const SUB: [usize; 3] = [4, 4, 2];

fn build(
    n_side: usize,
    n_slices: usize,
    n_beams: usize,
    beamlet_mm: f64,
    partial: bool,
) -> SyntheticCase {
    let grid = Grid3 {
        dims: [n_side, n_side, n_slices],
        origin_mm: [
            -1.5 * (n_side as f64 - 1.0),
            -1.5 * (n_side as f64 - 1.0),
            -1.25 * (n_slices as f64 - 1.0),
        ],
        spacing_mm: [3.0, 3.0, 2.5],
    };
    let r_body = (1.5 * n_side as f64 - 3.0).min(81.0);
    let half_len = 40.0;
    let mut voxels = Vec::new();
    let mut pos = Vec::new();
    for k in 0..n_slices {
        for j in 0..n_side {
            for i in 0..n_side {
                let p = grid.centre_mm(i, j, k);
                if p[0].hypot(p[1]) <= r_body {
                    voxels.push(grid.index(i, j, k) as u32);
                    pos.push(p);
                }
            }
        }
    }
    // Which of OuterTarget, Core, BODY a point lies in.
    let inside = |p: [f64; 3]| -> [bool; 3] {
        let rad = p[0].hypot(p[1]);
        let in_len = p[2].abs() <= half_len;
        [
            in_len && (15.0..=37.0).contains(&rad) && !(p[1] > 0.0 && p[0].abs() < 15.0),
            in_len && rad <= 10.0,
            rad <= r_body,
        ]
    };
    let (mut ptv, mut core, mut body) = (Vec::new(), Vec::new(), Vec::new());
    for (r, p) in pos.iter().enumerate() {
        let [t, c, _] = inside(*p);
        body.push(r as u32);
        if c {
            core.push(r as u32);
        } else if t {
            ptv.push(r as u32);
        }
    }
    // Occupied fraction of each computed voxel, per structure.
    let weighted: Option<[WeightedRows; 3]> = partial.then(|| {
        let mut out: [WeightedRows; 3] = Default::default();
        let n_sub = (SUB[0] * SUB[1] * SUB[2]) as f64;
        for (r, p) in pos.iter().enumerate() {
            let mut count = [0usize; 3];
            for k in 0..SUB[2] {
                for j in 0..SUB[1] {
                    for i in 0..SUB[0] {
                        let off = |n: usize, idx: usize, h: f64| {
                            ((idx as f64 + 0.5) / n as f64 - 0.5) * h
                        };
                        let q = [
                            p[0] + off(SUB[0], i, grid.spacing_mm[0]),
                            p[1] + off(SUB[1], j, grid.spacing_mm[1]),
                            p[2] + off(SUB[2], k, grid.spacing_mm[2]),
                        ];
                        for (c, inside) in count.iter_mut().zip(inside(q)) {
                            *c += inside as usize;
                        }
                    }
                }
            }
            for (w, c) in out.iter_mut().zip(count) {
                if c > 0 {
                    w.rows.push(r as u32);
                    w.weights.push((c as f64 / n_sub) as f32);
                }
            }
        }
        out
    });
    let z_extent = half_len.min(1.25 * n_slices as f64) + 5.0;
    let lat_extent = 37.0 + 5.0;
    let nx = (2.0 * lat_extent / beamlet_mm).ceil() as usize;
    let ny = (2.0 * z_extent / beamlet_mm).ceil() as usize;
    let x0 = -0.5 * (nx as f64 - 1.0) * beamlet_mm;
    let y0 = -0.5 * (ny as f64 - 1.0) * beamlet_mm;
    let mut beams = Vec::new();
    let mut columns = Vec::new();
    for b in 0..n_beams {
        let gantry = 360.0 * b as f64 / n_beams as f64;
        let th = gantry.to_radians();
        // Beam travels along dir; lateral axis e; depth from the body surface.
        let dir = [th.sin(), -th.cos()];
        let e = [th.cos(), th.sin()];
        let first_column = columns.len();
        let cells: Vec<[usize; 2]> = (0..ny)
            .flat_map(|iy| (0..nx).map(move |ix| [ix, iy]))
            .collect();
        let cols: Vec<([usize; 2], Vec<u32>, Vec<f32>)> = cells
            .par_iter()
            .map(|&[ix, iy]| {
                let lx = x0 + ix as f64 * beamlet_mm;
                let lz = y0 + iy as f64 * beamlet_mm;
                let mut rows = Vec::new();
                let mut vals = Vec::new();
                for (r, p) in pos.iter().enumerate() {
                    let gl = profile(p[0] * e[0] + p[1] * e[1] - lx, beamlet_mm, 3.0);
                    if gl < 1e-3 {
                        continue;
                    }
                    let gz = profile(p[2] - lz, beamlet_mm, 3.0);
                    if gz < 1e-3 {
                        continue;
                    }
                    let depth = r_body + p[0] * dir[0] + p[1] * dir[1];
                    let v = 0.01 * (-0.005 * depth.max(0.0)).exp() * gl * gz;
                    rows.push(r as u32);
                    vals.push(v as f32);
                }
                ([ix, iy], rows, vals)
            })
            .collect();
        let mut beamlets = Vec::new();
        for (cell, rows, vals) in cols {
            // Beamlets that reach no voxel are not part of the plan.
            if !rows.is_empty() {
                beamlets.push(cell);
                columns.push((rows, vals));
            }
        }
        beams.push(Beam {
            number: b + 1,
            name: format!("G{gantry:.0}"),
            gantry_deg: gantry,
            couch_deg: 0.0,
            collimator_deg: 0.0,
            isocenter_mm: [0.0; 3],
            sad_mm: 1000.0,
            grid: BeamletGrid {
                size_x_mm: beamlet_mm,
                size_y_mm: beamlet_mm,
                nx,
                ny,
                x0_mm: x0,
                y0_mm: y0,
            },
            beamlets,
            first_column,
        });
    }
    let n_rows = voxels.len();
    SyntheticCase {
        matrix: InfluenceMatrix::from_columns(n_rows, columns),
        dose_grid: DoseGrid { grid, voxels },
        beams,
        structures: match weighted {
            None => vec![
                StructureRows::new("OuterTarget", RoiType::Ptv, ptv),
                StructureRows::new("Core", RoiType::Organ, core),
                StructureRows::new("BODY", RoiType::External, body),
            ],
            Some([wt, wc, wb]) => vec![
                StructureRows::with_partial_volumes("OuterTarget", RoiType::Ptv, ptv, wt),
                StructureRows::with_partial_volumes("Core", RoiType::Organ, core, wc),
                StructureRows::with_partial_volumes("BODY", RoiType::External, body, wb),
            ],
        },
    }
}
