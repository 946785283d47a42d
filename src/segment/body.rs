//! Classical body outline: threshold, largest connected component per slice, holes filled,
//! then the largest 3D component. Deterministic; used when a case has no EXTERNAL structure.

use crate::ct::CtVolume;
use crate::geometry::Mask;

/// HU threshold separating patient from air.
pub const BODY_THRESHOLD_HU: f32 = -350.0;

/// Body outline of `ct`: per axial slice, voxels above [`BODY_THRESHOLD_HU`], the largest
/// 4-connected component kept, and enclosed holes (lungs, bowel gas) filled; then only the
/// largest 6-connected 3D component is kept, so that on slices beyond the patient (a scan
/// longer than the phantom or patient) the couch, which is then the largest component of the
/// slice, is not taken for the body.
pub fn body_outline(ct: &CtVolume) -> Mask {
    let [nx, ny, nz] = ct.grid.dims;
    let plane = nx * ny;
    let mut mask = Mask::empty(ct.grid);
    for k in 0..nz {
        let hu = &ct.hu[k * plane..(k + 1) * plane];
        let fg: Vec<bool> = hu.iter().map(|&v| v > BODY_THRESHOLD_HU).collect();
        let lab = largest_component(&fg, nx, ny);
        let filled = fill_holes(&lab, nx, ny);
        mask.inside[k * plane..(k + 1) * plane].copy_from_slice(&filled);
    }
    super::morph::keep_largest(&mask, 1)
}

/// Keep the largest 4-connected component of `fg`.
pub fn largest_component(fg: &[bool], nx: usize, ny: usize) -> Vec<bool> {
    let mut label = vec![0u32; fg.len()];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for start in 0..fg.len() {
        if !fg[start] || label[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0;
        label[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let (i, j) = (p % nx, p / nx);
            let mut visit = |q: usize| {
                if fg[q] && label[q] == 0 {
                    label[q] = id;
                    stack.push(q);
                }
            };
            if i > 0 {
                visit(p - 1);
            }
            if i + 1 < nx {
                visit(p + 1);
            }
            if j > 0 {
                visit(p - nx);
            }
            if j + 1 < ny {
                visit(p + nx);
            }
        }
        sizes.push(size);
    }
    let best = sizes
        .iter()
        .enumerate()
        .skip(1)
        .max_by_key(|(_, &s)| s)
        .map(|(i, _)| i as u32);
    match best {
        Some(b) => label.iter().map(|&l| l == b).collect(),
        None => vec![false; fg.len()],
    }
}

/// Fill holes: background not 4-connected to the image border becomes foreground.
pub fn fill_holes(fg: &[bool], nx: usize, ny: usize) -> Vec<bool> {
    let mut outside = vec![false; fg.len()];
    let mut stack = Vec::new();
    for i in 0..nx {
        stack.push(i);
        stack.push((ny - 1) * nx + i);
    }
    for j in 0..ny {
        stack.push(j * nx);
        stack.push(j * nx + nx - 1);
    }
    while let Some(p) = stack.pop() {
        if fg[p] || outside[p] {
            continue;
        }
        outside[p] = true;
        let (i, j) = (p % nx, p / nx);
        if i > 0 {
            stack.push(p - 1);
        }
        if i + 1 < nx {
            stack.push(p + 1);
        }
        if j > 0 {
            stack.push(p - nx);
        }
        if j + 1 < ny {
            stack.push(p + nx);
        }
    }
    outside.iter().map(|&o| !o).collect()
}
