//! Classical lung segmentation: low-density voxels inside the body, airways removed, the two
//! largest 3D components kept, split into left and right.
//!
//! Steps (deterministic, no parameters learnt):
//! 1. body = [`super::body::body_outline`]; candidates = body and HU < [`LUNG_THRESHOLD_HU`];
//! 2. trachea and main bronchi: air below [`AIRWAY_THRESHOLD_HU`] grown in 3D from the
//!    candidate components in the most superior slices that are small (< 12 cm2 per slice)
//!    and near the body's left-right centre, and removed;
//! 3. components smaller than [`MIN_LUNG_CM3`] dropped (airways left over), components with
//!    [`MAX_AIR_FRACTION`] or more of pure air (bowel gas) dropped, at most the two largest kept, per-slice holes (vessels) filled;
//! 4. left/right: components whose centroid lies at patient left (+x in LPS) of the body centre
//!    are the left lung; a single component spanning both sides is split at the body centre.

use crate::ct::CtVolume;
use crate::geometry::Mask;

use crate::geometry::morph;

/// Lung parenchyma is below this (aerated lung is about -850 HU; soft tissue above -100).
pub const LUNG_THRESHOLD_HU: f32 = -400.0;
/// Airway lumen (air, about -1000 HU) is below this; parenchyma mostly above.
pub const AIRWAY_THRESHOLD_HU: f32 = -950.0;
/// A lung component has less than this fraction of voxels below [`AIRWAY_THRESHOLD_HU`].
/// Measured on the TotalSegmentator fixtures (docs/segmentation.md): lung bases 0.00, bowel
/// gas with stool 0.45 to 0.72. Lungs with severe emphysema (more than 30 % of the lung below
/// -950 HU) would be rejected too: a known limitation of this classical method.
pub const MAX_AIR_FRACTION: f64 = 0.3;
/// Smallest lung component kept, cm3.
pub const MIN_LUNG_CM3: f64 = 5.0;

/// Left and right lungs.
#[derive(Debug, Clone)]
pub struct Lungs {
    pub left: Mask,
    pub right: Mask,
}

impl Lungs {
    /// Both lungs together.
    pub fn union(&self) -> Mask {
        Mask {
            grid: self.left.grid,
            inside: self
                .left
                .inside
                .iter()
                .zip(&self.right.inside)
                .map(|(&a, &b)| a || b)
                .collect(),
        }
    }
}

/// Segment the lungs of `ct`, given its body mask (e.g. from [`super::body::body_outline`]).
pub fn segment_lungs(ct: &CtVolume, body: &Mask) -> Lungs {
    let g = ct.grid;
    let [nx, ny, nz] = g.dims;
    let plane = nx * ny;
    let mut cand = Mask::empty(g);
    for p in 0..g.len() {
        cand.inside[p] = body.inside[p] && ct.hu[p] < LUNG_THRESHOLD_HU;
    }
    // Bowel gas first, while its pure-air part is still attached (the airway removal below
    // would otherwise strip that part and leave the rest looking like lung).
    let cand = drop_air_components(&cand, &ct.hu);
    // Body left-right centre (mm).
    let body_cx = body.centroid_mm().map(|c| c[0]).unwrap_or(0.0);

    // Airway seeds: in each of the top slices (superior = high k) that contain candidates,
    // 2D components smaller than 12 cm2 whose centroid is within 30 mm of the body centre.
    let px_cm2 = g.spacing_mm[0] * g.spacing_mm[1] / 100.0;
    let mut seeds: Vec<usize> = Vec::new();
    let mut checked = 0;
    for k in (0..nz).rev() {
        let sl = &cand.inside[k * plane..(k + 1) * plane];
        if !sl.iter().any(|&b| b) {
            continue;
        }
        let comps = components_2d(sl, nx, ny);
        let mut any_large = false;
        for c in &comps {
            let area = c.len() as f64 * px_cm2;
            let cx = c.iter().map(|&p| (p % nx) as f64).sum::<f64>() / c.len() as f64;
            let cx_mm = g.origin_mm[0] + cx * g.spacing_mm[0];
            if area < 12.0 && (cx_mm - body_cx).abs() < 30.0 {
                seeds.extend(c.iter().map(|&p| k * plane + p));
            } else if area >= 12.0 {
                any_large = true;
            }
        }
        checked += 1;
        // Stop once the lungs proper appear (large components) after a few slices.
        if any_large && checked >= 3 {
            break;
        }
        if checked >= 40 {
            break;
        }
    }
    let mut lung = cand.clone();
    if !seeds.is_empty() {
        let airway = grow(
            &seeds,
            |p| cand.inside[p] && ct.hu[p] < AIRWAY_THRESHOLD_HU,
            g.dims,
        );
        // Only remove the airway tree if it did not leak into a lung (volume check: main
        // airways are well below 250 cm3).
        let airway_cm3 = airway.iter().filter(|&&b| b).count() as f64 * g.voxel_volume_cm3();
        if airway_cm3 < 250.0 {
            for (l, &a) in lung.inside.iter_mut().zip(&airway) {
                *l &= !a;
            }
        }
    }
    let min_vox = (MIN_LUNG_CM3 / g.voxel_volume_cm3()).ceil() as usize;
    let lung = morph::remove_small(&lung, min_vox.max(1));
    let lung = drop_air_components(&lung, &ct.hu);
    let lung = morph::keep_largest(&lung, 2);
    let lung = morph::fill_holes_2d(&lung);
    // Left/right split.
    let (label, sizes) = morph::components_3d(&lung);
    let mut sum_x = vec![0.0f64; sizes.len()];
    for (p, &l) in label.iter().enumerate() {
        if l != 0 {
            sum_x[l as usize] += g.origin_mm[0] + (p % nx) as f64 * g.spacing_mm[0];
        }
    }
    let n_comp = sizes.len() - 1;
    let mut left = Mask::empty(g);
    let mut right = Mask::empty(g);
    for (p, &l) in label.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let x_mm = g.origin_mm[0] + (p % nx) as f64 * g.spacing_mm[0];
        let is_left = if n_comp >= 2 {
            sum_x[l as usize] / sizes[l as usize] as f64 > body_cx
        } else {
            x_mm > body_cx
        };
        if is_left {
            left.inside[p] = true;
        } else {
            right.inside[p] = true;
        }
    }
    // A sliver from splitting one component at the body centre is not a lung.
    for m in [&mut left, &mut right] {
        if m.volume_cm3() < MIN_LUNG_CM3 {
            *m = Mask::empty(g);
        }
    }
    Lungs { left, right }
}

/// Drop the 6-connected components of `m` with [`MAX_AIR_FRACTION`] or more of their voxels
/// below [`AIRWAY_THRESHOLD_HU`] (aerated lung is about -850 HU; bowel gas is pure air).
fn drop_air_components(m: &Mask, hu: &[f32]) -> Mask {
    let (label, sizes) = morph::components_3d(m);
    let mut air = vec![0usize; sizes.len()];
    for (&l, &h) in label.iter().zip(hu) {
        if l != 0 && h < AIRWAY_THRESHOLD_HU {
            air[l as usize] += 1;
        }
    }
    Mask {
        grid: m.grid,
        inside: label
            .iter()
            .map(|&l| {
                l != 0 && (air[l as usize] as f64) < MAX_AIR_FRACTION * sizes[l as usize] as f64
            })
            .collect(),
    }
}

/// 4-connected 2D components, each a list of in-slice indices (scan order).
fn components_2d(fg: &[bool], nx: usize, ny: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; fg.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for s in 0..fg.len() {
        if !fg[s] || seen[s] {
            continue;
        }
        let mut comp = Vec::new();
        seen[s] = true;
        stack.push(s);
        while let Some(p) = stack.pop() {
            comp.push(p);
            let (i, j) = (p % nx, p / nx);
            let nb = [
                (i > 0).then(|| p - 1),
                (i + 1 < nx).then(|| p + 1),
                (j > 0).then(|| p - nx),
                (j + 1 < ny).then(|| p + nx),
            ];
            for q in nb.into_iter().flatten() {
                if fg[q] && !seen[q] {
                    seen[q] = true;
                    stack.push(q);
                }
            }
        }
        out.push(comp);
    }
    out
}

/// 6-connected region growing from `seeds` over voxels where `ok` holds.
fn grow(seeds: &[usize], ok: impl Fn(usize) -> bool, dims: [usize; 3]) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    let mut m = vec![false; nx * ny * nz];
    let mut stack: Vec<usize> = Vec::new();
    for &s in seeds {
        if ok(s) && !m[s] {
            m[s] = true;
            stack.push(s);
        }
    }
    while let Some(p) = stack.pop() {
        let i = p % nx;
        let j = (p / nx) % ny;
        let k = p / (nx * ny);
        let nb = [
            (i > 0).then(|| p - 1),
            (i + 1 < nx).then(|| p + 1),
            (j > 0).then(|| p - nx),
            (j + 1 < ny).then(|| p + nx),
            (k > 0).then(|| p - nx * ny),
            (k + 1 < nz).then(|| p + nx * ny),
        ];
        for q in nb.into_iter().flatten() {
            if !m[q] && ok(q) {
                m[q] = true;
                stack.push(q);
            }
        }
    }
    m
}
