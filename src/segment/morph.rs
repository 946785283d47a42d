//! Binary morphology on [`Mask`]s: 3D connected components and per-slice hole filling.

use crate::geometry::Mask;

/// Label the 6-connected components of `m`; returns (labels, sizes) with label 0 = outside and
/// `sizes[l]` the voxel count of component `l` (`sizes[0] = 0`). Labels follow scan order.
pub fn components_3d(m: &Mask) -> (Vec<u32>, Vec<usize>) {
    let [nx, ny, nz] = m.grid.dims;
    let mut label = vec![0u32; m.inside.len()];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for start in 0..m.inside.len() {
        if !m.inside[start] || label[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0usize;
        label[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let i = p % nx;
            let j = (p / nx) % ny;
            let k = p / (nx * ny);
            let mut nb = [usize::MAX; 6];
            if i > 0 {
                nb[0] = p - 1;
            }
            if i + 1 < nx {
                nb[1] = p + 1;
            }
            if j > 0 {
                nb[2] = p - nx;
            }
            if j + 1 < ny {
                nb[3] = p + nx;
            }
            if k > 0 {
                nb[4] = p - nx * ny;
            }
            if k + 1 < nz {
                nb[5] = p + nx * ny;
            }
            for q in nb {
                if q != usize::MAX && m.inside[q] && label[q] == 0 {
                    label[q] = id;
                    stack.push(q);
                }
            }
        }
        sizes.push(size);
    }
    (label, sizes)
}

/// Keep the `n` largest 6-connected components (ties: the earlier in scan order).
pub fn keep_largest(m: &Mask, n: usize) -> Mask {
    let (label, sizes) = components_3d(m);
    let mut order: Vec<usize> = (1..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut keep = vec![false; sizes.len()];
    for &l in order.iter().take(n) {
        keep[l] = true;
    }
    Mask {
        grid: m.grid,
        inside: label.iter().map(|&l| keep[l as usize]).collect(),
    }
}

/// Fill enclosed holes slice by slice (background not 4-connected to the slice border).
pub fn fill_holes_2d(m: &Mask) -> Mask {
    let [nx, ny, nz] = m.grid.dims;
    let plane = nx * ny;
    let mut out = m.clone();
    for k in 0..nz {
        let sl = &m.inside[k * plane..(k + 1) * plane];
        if sl.iter().any(|&b| b) {
            let f = super::body::fill_holes(sl, nx, ny);
            out.inside[k * plane..(k + 1) * plane].copy_from_slice(&f);
        }
    }
    out
}

/// Remove components smaller than `min_voxels`.
pub fn remove_small(m: &Mask, min_voxels: usize) -> Mask {
    let (label, sizes) = components_3d(m);
    Mask {
        grid: m.grid,
        inside: label
            .iter()
            .map(|&l| l != 0 && sizes[l as usize] >= min_voxels)
            .collect(),
    }
}
