//! Binary morphology on [`Mask`]s and single slices: 3D connected components, the largest
//! 4-connected component of a slice and per-slice hole filling. Shared by the body outline
//! ([`crate::ct::body_outline`]) and the segmentation post-processing ([`crate::segment`]).

use super::Mask;

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
            let f = fill_holes(sl, nx, ny);
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
