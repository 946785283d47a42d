//! Regular voxel grids in DICOM patient coordinates (LPS, mm).
//!
//! rtopt works on axis-aligned grids: the row direction is +x (patient left), the column
//! direction +y (posterior) and slices are stacked along +z (superior). Voxel `(i, j, k)`
//! has its centre at `origin_mm + (i dx, j dy, k dz)` and linear index `(k ny + j) nx + i`.

use serde::{Deserialize, Serialize};

pub mod morph;
pub mod partial;

pub use partial::PartialMask;

/// An axis-aligned voxel grid in LPS millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grid3 {
    /// Number of voxels along x (columns), y (rows) and z (slices).
    pub dims: [usize; 3],
    /// Centre of voxel (0, 0, 0), LPS mm.
    pub origin_mm: [f64; 3],
    /// Voxel size along x, y, z in mm (all positive).
    pub spacing_mm: [f64; 3],
}

impl Grid3 {
    /// Total number of voxels.
    pub fn len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// True when the grid has no voxel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Linear index of voxel `(i, j, k)`.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        (k * self.dims[1] + j) * self.dims[0] + i
    }

    /// Inverse of [`Grid3::index`].
    #[inline]
    pub fn ijk(&self, idx: usize) -> [usize; 3] {
        let i = idx % self.dims[0];
        let j = (idx / self.dims[0]) % self.dims[1];
        let k = idx / (self.dims[0] * self.dims[1]);
        [i, j, k]
    }

    /// Centre of voxel `(i, j, k)` in LPS mm.
    #[inline]
    pub fn centre_mm(&self, i: usize, j: usize, k: usize) -> [f64; 3] {
        [
            self.origin_mm[0] + i as f64 * self.spacing_mm[0],
            self.origin_mm[1] + j as f64 * self.spacing_mm[1],
            self.origin_mm[2] + k as f64 * self.spacing_mm[2],
        ]
    }

    /// Volume of one voxel in cm3.
    pub fn voxel_volume_cm3(&self) -> f64 {
        self.spacing_mm.iter().product::<f64>() / 1000.0
    }

    /// Continuous voxel coordinate (0 at the centre of voxel 0) of an LPS point.
    #[inline]
    pub fn continuous_index(&self, p_mm: [f64; 3]) -> [f64; 3] {
        [
            (p_mm[0] - self.origin_mm[0]) / self.spacing_mm[0],
            (p_mm[1] - self.origin_mm[1]) / self.spacing_mm[1],
            (p_mm[2] - self.origin_mm[2]) / self.spacing_mm[2],
        ]
    }

    /// Outer bounds of the grid (voxel edges, not centres): `(min, max)` in LPS mm.
    pub fn bounds_mm(&self) -> ([f64; 3], [f64; 3]) {
        let mut lo = [0.0; 3];
        let mut hi = [0.0; 3];
        for a in 0..3 {
            lo[a] = self.origin_mm[a] - 0.5 * self.spacing_mm[a];
            hi[a] = lo[a] + self.dims[a] as f64 * self.spacing_mm[a];
        }
        (lo, hi)
    }

    /// Trilinear interpolation of `values` (one per voxel) at an LPS point; points outside
    /// the grid of voxel centres clamp to the nearest edge voxel.
    pub fn sample_trilinear(&self, values: &[f32], p_mm: [f64; 3]) -> f32 {
        self.trilinear_at_index(self.continuous_index(p_mm), |idx| values[idx] as f64) as f32
    }

    /// Trilinear interpolation at a continuous voxel coordinate `c` ([`Grid3::continuous_index`])
    /// of the voxel values `value(linear index)`, clamped to the grid of voxel centres as
    /// [`Grid3::sample_trilinear`] (corners of zero weight are not read).
    pub fn trilinear_at_index(&self, c: [f64; 3], value: impl Fn(usize) -> f64) -> f64 {
        let mut i0 = [0usize; 3];
        let mut f = [0.0f64; 3];
        for a in 0..3 {
            let n = self.dims[a];
            if n <= 1 {
                i0[a] = 0;
                f[a] = 0.0;
                continue;
            }
            let x = c[a].clamp(0.0, (n - 1) as f64);
            let fl = x.floor().min((n - 2) as f64);
            i0[a] = fl as usize;
            f[a] = x - fl;
        }
        let mut acc = 0.0f64;
        for dz in 0..2 {
            for dy in 0..2 {
                for dx in 0..2 {
                    let w = (if dx == 1 { f[0] } else { 1.0 - f[0] })
                        * (if dy == 1 { f[1] } else { 1.0 - f[1] })
                        * (if dz == 1 { f[2] } else { 1.0 - f[2] });
                    if w == 0.0 {
                        continue;
                    }
                    let i = (i0[0] + dx).min(self.dims[0] - 1);
                    let j = (i0[1] + dy).min(self.dims[1] - 1);
                    let k = (i0[2] + dz).min(self.dims[2] - 1);
                    acc += w * value(self.index(i, j, k));
                }
            }
        }
        acc
    }
}

/// A binary voxel mask on a [`Grid3`].
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub grid: Grid3,
    /// One entry per voxel, in the grid's linear order.
    pub inside: Vec<bool>,
}

impl Mask {
    /// An empty mask on `grid`.
    pub fn empty(grid: Grid3) -> Self {
        Mask {
            grid,
            inside: vec![false; grid.len()],
        }
    }

    /// Number of voxels inside.
    pub fn count(&self) -> usize {
        self.inside.iter().filter(|&&b| b).count()
    }

    /// Volume in cm3 (voxel count times voxel volume).
    pub fn volume_cm3(&self) -> f64 {
        self.count() as f64 * self.grid.voxel_volume_cm3()
    }

    /// Centroid of the voxel centres inside, LPS mm (None when empty).
    pub fn centroid_mm(&self) -> Option<[f64; 3]> {
        let mut s = [0.0f64; 3];
        let mut n = 0usize;
        for (idx, &b) in self.inside.iter().enumerate() {
            if b {
                let [i, j, k] = self.grid.ijk(idx);
                let c = self.grid.centre_mm(i, j, k);
                for a in 0..3 {
                    s[a] += c[a];
                }
                n += 1;
            }
        }
        (n > 0).then(|| [s[0] / n as f64, s[1] / n as f64, s[2] / n as f64])
    }

    /// Bounding box of the voxel centres inside, LPS mm (None when empty).
    pub fn bbox_mm(&self) -> Option<([f64; 3], [f64; 3])> {
        let mut lo = [usize::MAX; 3];
        let mut hi = [0usize; 3];
        let mut any = false;
        for (idx, &b) in self.inside.iter().enumerate() {
            if b {
                any = true;
                let ijk = self.grid.ijk(idx);
                for a in 0..3 {
                    lo[a] = lo[a].min(ijk[a]);
                    hi[a] = hi[a].max(ijk[a]);
                }
            }
        }
        any.then(|| {
            (
                self.grid.centre_mm(lo[0], lo[1], lo[2]),
                self.grid.centre_mm(hi[0], hi[1], hi[2]),
            )
        })
    }

    /// Dice similarity coefficient with another mask on the same grid.
    pub fn dice(&self, other: &Mask) -> f64 {
        let (mut a, mut b, mut ab) = (0usize, 0usize, 0usize);
        for (&x, &y) in self.inside.iter().zip(&other.inside) {
            a += x as usize;
            b += y as usize;
            ab += (x && y) as usize;
        }
        if a + b == 0 {
            1.0
        } else {
            2.0 * ab as f64 / (a + b) as f64
        }
    }
}
