//! Voxel masks to closed planar contours (the inverse of [`crate::structures::rasterize`]).
//!
//! Per axial slice, marching squares on the lattice of voxel centres at iso-level 0.5: every
//! contour vertex lies halfway between an inside and an outside voxel centre, so a voxel centre
//! is inside the resulting polygons (even-odd rule) exactly when the voxel is in the mask.
//! Saddle cells (two diagonal voxels inside) are resolved as separate, i.e. inside voxels are
//! 4-connected, the same connectivity as [`crate::segment::body`]. Holes come out as separate
//! loops with the opposite orientation; under the even-odd rule used by DICOM readers and by
//! rtopt's rasteriser they are holes.
//!
//! Loops are then simplified with Douglas-Peucker. With a tolerance below 0.35 voxel (the
//! smallest distance from a voxel centre to a marching-squares edge is 0.5/sqrt(2) voxel) the
//! simplified polygons still classify (almost) every voxel centre as the mask does.

use std::collections::BTreeMap;

use crate::geometry::Mask;
use crate::structures::Contour;

/// Default Douglas-Peucker tolerance, in voxels.
pub const DEFAULT_TOLERANCE_VOXELS: f64 = 0.3;

/// Closed loops of one binary slice (`nx * ny`, row-major, x fastest) in continuous voxel
/// coordinates (0 = centre of voxel 0). Deterministic order. Loops are not closed explicitly
/// (the last point connects to the first).
/// A slice whose length is not `nx * ny` gives no loop.
pub fn slice_loops(fg: &[bool], nx: usize, ny: usize) -> Vec<Vec<[f64; 2]>> {
    if fg.len() != nx * ny {
        return Vec::new();
    }
    let at = |i: i64, j: i64| -> bool {
        i >= 0
            && j >= 0
            && (i as usize) < nx
            && (j as usize) < ny
            && fg[j as usize * nx + i as usize]
    };
    // Edge-midpoint keys in doubled coordinates: (2x, 2y).
    let mut next: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for j in -1..ny as i64 {
        for i in -1..nx as i64 {
            let a = at(i, j);
            let b = at(i + 1, j);
            let c = at(i + 1, j + 1);
            let d = at(i, j + 1);
            let code = a as u8 | (b as u8) << 1 | (c as u8) << 2 | (d as u8) << 3;
            if code == 0 || code == 15 {
                continue;
            }
            // Edge midpoints (doubled): top a-b, right b-c, bottom c-d, left d-a.
            let e = [
                (2 * i + 1, 2 * j),
                (2 * i + 2, 2 * j + 1),
                (2 * i + 1, 2 * j + 2),
                (2 * i, 2 * j + 1),
            ];
            // Corner positions (doubled) and inside flags.
            let corners = [
                ((2 * i, 2 * j), a),
                ((2 * i + 2, 2 * j), b),
                ((2 * i + 2, 2 * j + 2), c),
                ((2 * i, 2 * j + 2), d),
            ];
            let mut segs: Vec<(usize, usize, (i64, i64))> = Vec::with_capacity(2);
            match code {
                5 => {
                    // a and c inside, separate
                    segs.push((3, 0, corners[0].0));
                    segs.push((1, 2, corners[2].0));
                }
                10 => {
                    segs.push((0, 1, corners[1].0));
                    segs.push((2, 3, corners[3].0));
                }
                _ => {
                    // Exactly two cell edges change sign in a non-saddle, mixed cell.
                    let mut crossing = (0..4).filter(|&k| corners[k].1 != corners[(k + 1) % 4].1);
                    let inside = corners.iter().find(|c| c.1).map(|c| c.0).unwrap_or((0, 0));
                    if let (Some(p), Some(q)) = (crossing.next(), crossing.next()) {
                        segs.push((p, q, inside));
                    }
                }
            }
            for (p, q, ins) in segs {
                let (mut s, mut t) = (e[p], e[q]);
                // Orient so that the inside corner lies to the left of s -> t
                // (cross product > 0 in x-right, y-down image coordinates counts as "left").
                let cross = (t.0 - s.0) * (ins.1 - s.1) - (t.1 - s.1) * (ins.0 - s.0);
                if cross < 0 {
                    std::mem::swap(&mut s, &mut t);
                }
                next.insert(s, t);
            }
        }
    }
    let mut loops = Vec::new();
    while let Some(&start) = next.keys().next() {
        let mut pts = Vec::new();
        let mut cur = start;
        while let Some(n) = next.remove(&cur) {
            pts.push([cur.0 as f64 * 0.5, cur.1 as f64 * 0.5]);
            cur = n;
            if cur == start {
                break;
            }
        }
        if pts.len() >= 3 {
            loops.push(pts);
        }
    }
    loops
}

/// Douglas-Peucker simplification of a closed loop; keeps at least 3 points.
pub fn simplify_loop(pts: &[[f64; 2]], tol: f64) -> Vec<[f64; 2]> {
    let n = pts.len();
    if n <= 4 || tol <= 0.0 {
        return pts.to_vec();
    }
    // Split the loop at the point farthest from point 0, simplify both halves.
    let far = (1..n)
        .max_by(|&a, &b| dist2(pts[0], pts[a]).total_cmp(&dist2(pts[0], pts[b])))
        .unwrap_or(n / 2);
    let mut keep = vec![false; n + 1];
    keep[0] = true;
    keep[far] = true;
    keep[n] = true;
    let ring: Vec<[f64; 2]> = pts.iter().copied().chain(std::iter::once(pts[0])).collect();
    dp(&ring, 0, far, tol, &mut keep);
    dp(&ring, far, n, tol, &mut keep);
    let out: Vec<[f64; 2]> = (0..n).filter(|&i| keep[i]).map(|i| pts[i]).collect();
    if out.len() < 3 {
        pts.to_vec()
    } else {
        out
    }
}

fn dist2(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

fn dp(p: &[[f64; 2]], lo: usize, hi: usize, tol: f64, keep: &mut [bool]) {
    let mut stack = vec![(lo, hi)];
    while let Some((lo, hi)) = stack.pop() {
        if hi <= lo + 1 {
            continue;
        }
        let (a, b) = (p[lo], p[hi]);
        let (vx, vy) = (b[0] - a[0], b[1] - a[1]);
        let len = (vx * vx + vy * vy).sqrt();
        let mut best = (0.0, lo);
        for (i, q) in p.iter().enumerate().take(hi).skip(lo + 1) {
            let d = if len == 0.0 {
                dist2(a, *q).sqrt()
            } else {
                ((q[0] - a[0]) * vy - (q[1] - a[1]) * vx).abs() / len
            };
            if d > best.0 {
                best = (d, i);
            }
        }
        if best.0 > tol {
            keep[best.1] = true;
            stack.push((lo, best.1));
            stack.push((best.1, hi));
        }
    }
}

/// Contours of a whole mask: per slice, the simplified marching-squares loops in LPS mm
/// (`CLOSED_PLANAR`, z at the slice centre), slices in ascending z. `tolerance_voxels` is the
/// Douglas-Peucker tolerance in voxels (loops are simplified in continuous voxel coordinates,
/// before scaling to mm); 0 disables simplification.
pub fn mask_to_contours(mask: &Mask, tolerance_voxels: f64) -> Vec<Contour> {
    let g = mask.grid;
    let [nx, ny, nz] = g.dims;
    let plane = nx * ny;
    let mut out = Vec::new();
    for k in 0..nz {
        let sl = &mask.inside[k * plane..(k + 1) * plane];
        if !sl.iter().any(|&b| b) {
            continue;
        }
        let z = g.origin_mm[2] + k as f64 * g.spacing_mm[2];
        for lp in slice_loops(sl, nx, ny) {
            let s = simplify_loop(&lp, tolerance_voxels);
            out.push(Contour {
                geometric_type: "CLOSED_PLANAR".into(),
                points_mm: s
                    .iter()
                    .map(|p| {
                        [
                            g.origin_mm[0] + p[0] * g.spacing_mm[0],
                            g.origin_mm[1] + p[1] * g.spacing_mm[1],
                            z,
                        ]
                    })
                    .collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside_even_odd(loops: &[Vec<[f64; 2]>], x: f64, y: f64) -> bool {
        let mut c = false;
        for l in loops {
            for e in 0..l.len() {
                let p = l[e];
                let q = l[(e + 1) % l.len()];
                if (p[1] <= y) != (q[1] <= y) {
                    let xi = p[0] + (y - p[1]) * (q[0] - p[0]) / (q[1] - p[1]);
                    if x < xi {
                        c = !c;
                    }
                }
            }
        }
        c
    }

    #[test]
    fn ring_with_hole_and_diagonal_pixels_round_trip_exactly() {
        let (nx, ny) = (12, 10);
        let mut fg = vec![false; nx * ny];
        for j in 1..8 {
            for i in 1..8 {
                fg[j * nx + i] = !(3..5).contains(&i) || !(3..5).contains(&j);
            }
        }
        // two diagonal pixels (saddle) and an isolated pixel
        fg[9 + nx] = true;
        fg[10 + nx * 2] = true;
        fg[10 + nx * 8] = true;
        let loops = slice_loops(&fg, nx, ny);
        // ring outer + hole + 3 single pixels
        assert_eq!(loops.len(), 5, "{loops:?}");
        for tol in [0.0, DEFAULT_TOLERANCE_VOXELS] {
            let simp: Vec<_> = loops.iter().map(|l| simplify_loop(l, tol)).collect();
            for j in 0..ny {
                for i in 0..nx {
                    assert_eq!(
                        inside_even_odd(&simp, i as f64, j as f64),
                        fg[j * nx + i],
                        "voxel ({i},{j}) tol {tol}"
                    );
                }
            }
        }
        // the 7x7 square's outer loop simplifies to an octagon (corners cut)
        let outer = loops.iter().max_by_key(|l| l.len()).unwrap();
        assert_eq!(simplify_loop(outer, DEFAULT_TOLERANCE_VOXELS).len(), 8);
    }
}
