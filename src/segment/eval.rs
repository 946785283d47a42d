//! Segmentation metrics: Dice and the 95th-percentile Hausdorff distance (HD95).
//!
//! HD95 follows the common definition (e.g. MONAI `compute_hausdorff_distance`, percentile 95):
//! surface voxels are inside voxels with a 6-neighbour outside (or on the grid border); for each
//! surface voxel of A the Euclidean distance (mm, anisotropic spacing) to the nearest surface
//! voxel of B, and vice versa; HD95 is the larger of the two 95th percentiles.

use crate::geometry::Mask;

/// Dice and HD95 of one structure.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Agreement {
    pub dice: f64,
    /// None when either mask is empty.
    pub hd95_mm: Option<f64>,
    pub volume_test_cm3: f64,
    pub volume_reference_cm3: f64,
}

/// Compare `test` with `reference` (same grid).
pub fn agreement(test: &Mask, reference: &Mask) -> Agreement {
    Agreement {
        dice: test.dice(reference),
        hd95_mm: hd95_mm(test, reference),
        volume_test_cm3: test.volume_cm3(),
        volume_reference_cm3: reference.volume_cm3(),
    }
}

fn surface(m: &Mask) -> Vec<bool> {
    let [nx, ny, nz] = m.grid.dims;
    let mut s = vec![false; m.inside.len()];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let p = m.grid.index(i, j, k);
                if !m.inside[p] {
                    continue;
                }
                let border =
                    i == 0 || j == 0 || k == 0 || i + 1 == nx || j + 1 == ny || k + 1 == nz;
                s[p] = border
                    || !m.inside[p - 1]
                    || !m.inside[p + 1]
                    || !m.inside[p - nx]
                    || !m.inside[p + nx]
                    || !m.inside[p - nx * ny]
                    || !m.inside[p + nx * ny];
            }
        }
    }
    s
}

/// 1D squared-distance transform (Felzenszwalb & Huttenlocher 2012) with sample spacing `h`.
fn dt1d(f: &[f64], h: f64, out: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    let mut k = 0usize;
    let Some(q0) = f.iter().position(|v| v.is_finite()) else {
        out.iter_mut().for_each(|o| *o = f64::INFINITY);
        return;
    };
    v[0] = q0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in q0 + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        loop {
            let p = v[k];
            let (qp, pp) = (q as f64 * h, p as f64 * h);
            let s = ((f[q] + qp * qp) - (f[p] + pp * pp)) / (2.0 * (qp - pp));
            if s <= z[k] && k > 0 {
                k -= 1;
                continue;
            }
            if s <= z[k] {
                // k == 0 and the new parabola dominates everywhere
                v[0] = q;
                z[0] = f64::NEG_INFINITY;
                z[1] = f64::INFINITY;
                break;
            }
            k += 1;
            v[k] = q;
            z[k] = s;
            z[k + 1] = f64::INFINITY;
            break;
        }
    }
    k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        let x = q as f64 * h;
        while z[k + 1] < x {
            k += 1;
        }
        let d = x - v[k] as f64 * h;
        *o = d * d + f[v[k]];
    }
}

/// Squared Euclidean distance (mm^2) from every voxel to the nearest `seed` voxel.
fn edt2(seed: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let mut d: Vec<f64> = seed
        .iter()
        .map(|&s| if s { 0.0 } else { f64::INFINITY })
        .collect();
    let [nx, ny, nz] = dims;
    let nmax = nx.max(ny).max(nz);
    let (mut f, mut out) = (vec![0.0; nmax], vec![0.0; nmax]);
    let (mut v, mut z) = (vec![0usize; nmax], vec![0.0; nmax + 1]);
    let strides = [1, nx, nx * ny];
    for axis in 0..3 {
        let n = dims[axis];
        let st = strides[axis];
        let others: Vec<usize> = (0..d.len()).filter(|&p| (p / st) % n == 0).collect();
        for base in others {
            for t in 0..n {
                f[t] = d[base + t * st];
            }
            dt1d(&f[..n], spacing[axis], &mut out[..n], &mut v, &mut z);
            for t in 0..n {
                d[base + t * st] = out[t];
            }
        }
    }
    d
}

fn percentile95(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((v.len() as f64 - 1.0) * 0.95).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// 95th-percentile symmetric Hausdorff distance in mm (None when either mask is empty).
pub fn hd95_mm(a: &Mask, b: &Mask) -> Option<f64> {
    let sa = surface(a);
    let sb = surface(b);
    if !sa.iter().any(|&x| x) || !sb.iter().any(|&x| x) {
        return None;
    }
    let g = a.grid;
    let db = edt2(&sb, g.dims, g.spacing_mm);
    let da = edt2(&sa, g.dims, g.spacing_mm);
    let ab: Vec<f64> = (0..sa.len())
        .filter(|&p| sa[p])
        .map(|p| db[p].sqrt())
        .collect();
    let ba: Vec<f64> = (0..sb.len())
        .filter(|&p| sb[p])
        .map(|p| da[p].sqrt())
        .collect();
    Some(percentile95(ab).max(percentile95(ba)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Grid3;

    #[test]
    fn hd95_of_shifted_box_equals_shift() {
        let g = Grid3 {
            dims: [30, 30, 20],
            origin_mm: [0.0; 3],
            spacing_mm: [1.0, 1.0, 2.5],
        };
        let mut a = Mask::empty(g);
        let mut b = Mask::empty(g);
        for k in 5..15 {
            for j in 5..25 {
                for i in 5..25 {
                    a.inside[g.index(i, j, k)] = true;
                    b.inside[g.index(i, j, k + 1)] = true; // shifted 2.5 mm in z
                }
            }
        }
        let h = hd95_mm(&a, &b).unwrap();
        assert!((h - 2.5).abs() < 1e-9, "hd95 {h}");
        assert_eq!(hd95_mm(&a, &a), Some(0.0));
        assert!(hd95_mm(&a, &Mask::empty(g)).is_none());
    }
}
