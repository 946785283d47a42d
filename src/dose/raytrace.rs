//! Radiological depth: exact voxel traversal (Amanatides & Woo 1987, equivalent to Siddon
//! 1985) through a relative-electron-density volume, and a per-beam lookup table of
//! radiological depth along a fan of rays.

use crate::beams::{BeamFrame, BeamPoint};
use crate::geometry::Grid3;
use rayon::prelude::*;

/// A relative-electron-density volume on the CT grid.
#[derive(Debug, Clone)]
pub struct DensityVolume {
    pub grid: Grid3,
    /// Electron density relative to water, one per voxel (grid linear order).
    pub rel_ed: Vec<f32>,
}

impl DensityVolume {
    /// Visit the voxels crossed by the segment `a + t (b - a)`, `t` in `[0, 1]`:
    /// `visit(t0, t1, rel_ed)` for each crossed voxel in order (parts outside the grid are
    /// skipped, i.e. treated as vacuum).
    pub fn traverse(&self, a: [f64; 3], b: [f64; 3], mut visit: impl FnMut(f64, f64, f32)) {
        let g = &self.grid;
        let (lo, hi) = g.bounds_mm();
        let dir = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let (mut t_in, mut t_out) = (0.0f64, 1.0f64);
        for ax in 0..3 {
            if dir[ax].abs() < 1e-12 {
                if a[ax] < lo[ax] || a[ax] >= hi[ax] {
                    return;
                }
            } else {
                let t1 = (lo[ax] - a[ax]) / dir[ax];
                let t2 = (hi[ax] - a[ax]) / dir[ax];
                t_in = t_in.max(t1.min(t2));
                t_out = t_out.min(t1.max(t2));
            }
        }
        if t_in >= t_out {
            return;
        }
        let tm = 0.5 * (t_in + t_out.min(t_in + 1e-9));
        let mut idx = [0i64; 3];
        let mut step = [0i64; 3];
        let mut t_next = [f64::INFINITY; 3];
        let mut t_delta = [f64::INFINITY; 3];
        for ax in 0..3 {
            let p = a[ax] + tm * dir[ax];
            let n = g.dims[ax] as i64;
            let i = (((p - lo[ax]) / g.spacing_mm[ax]).floor() as i64).clamp(0, n - 1);
            idx[ax] = i;
            if dir[ax] > 0.0 {
                step[ax] = 1;
                t_next[ax] = (lo[ax] + (i + 1) as f64 * g.spacing_mm[ax] - a[ax]) / dir[ax];
                t_delta[ax] = g.spacing_mm[ax] / dir[ax];
            } else if dir[ax] < 0.0 {
                step[ax] = -1;
                t_next[ax] = (lo[ax] + i as f64 * g.spacing_mm[ax] - a[ax]) / dir[ax];
                t_delta[ax] = -g.spacing_mm[ax] / dir[ax];
            }
        }
        let (nx, ny) = (g.dims[0] as i64, g.dims[1] as i64);
        let mut t = t_in;
        loop {
            let ax = if t_next[0] <= t_next[1] && t_next[0] <= t_next[2] {
                0
            } else if t_next[1] <= t_next[2] {
                1
            } else {
                2
            };
            let t_end = t_next[ax].min(t_out);
            let lin = ((idx[2] * ny + idx[1]) * nx + idx[0]) as usize;
            if t_end > t {
                visit(t, t_end, self.rel_ed[lin]);
            }
            if t_next[ax] >= t_out {
                break;
            }
            t = t_end;
            idx[ax] += step[ax];
            if idx[ax] < 0 || idx[ax] >= g.dims[ax] as i64 {
                break;
            }
            t_next[ax] += t_delta[ax];
        }
    }

    /// Radiological path length (water-equivalent mm) from `a` to `b`.
    pub fn radiological_length(&self, a: [f64; 3], b: [f64; 3]) -> f64 {
        let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2) + (b[2] - a[2]).powi(2)).sqrt();
        let mut s = 0.0f64;
        self.traverse(a, b, |t0, t1, r| s += (t1 - t0) * r as f64);
        s * len
    }
}

/// Radiological depth sampled on a fan of rays of one beam: a regular grid in
/// `(x_iso, y_iso, z)` (isocentre-plane lateral coordinates and distance from the source along
/// the central axis). Each ray is traced exactly from the source; values between rays and
/// between samples are interpolated trilinearly.
#[derive(Debug, Clone)]
pub struct DepthTable {
    pub u0: f64,
    pub v0: f64,
    pub z0: f64,
    pub du: f64,
    pub dz: f64,
    pub nu: usize,
    pub nv: usize,
    pub nz: usize,
    /// `[(iv * nu + iu) * nz + iz]`, water-equivalent mm.
    pub depth_mm: Vec<f32>,
}

impl DepthTable {
    /// Trace `nu x nv` rays through `vol` (rays at `u0 + iu du`, `v0 + iv du` in the
    /// isocentre plane), sampling the radiological depth every `dz` mm of `z` from `z0`.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        vol: &DensityVolume,
        frame: &BeamFrame,
        u0: f64,
        v0: f64,
        du: f64,
        nu: usize,
        nv: usize,
        z0: f64,
        dz: f64,
        nz: usize,
    ) -> DepthTable {
        let mut depth = vec![0f32; nu * nv * nz];
        let z_end = z0 + dz * (nz.max(1) - 1) as f64;
        depth
            .par_chunks_mut(nz.max(1))
            .enumerate()
            .for_each(|(ray, out)| {
                let (iu, iv) = (ray % nu, ray / nu);
                let (u, v) = (u0 + iu as f64 * du, v0 + iv as f64 * du);
                let a = frame.source_mm;
                let b = frame
                    .to_lps(BeamPoint {
                        x_iso_mm: u,
                        y_iso_mm: v,
                        z_mm: z_end,
                    })
                    .0;
                let len =
                    ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2) + (b[2] - a[2]).powi(2)).sqrt();
                // sample k is at t = (z0 + k dz) / z_end
                let mut cum = 0.0f64;
                let mut k = 0usize;
                vol.traverse(a, b, |t0, t1, r| {
                    while k < out.len() {
                        let tk = (z0 + k as f64 * dz) / z_end;
                        if tk > t1 {
                            break;
                        }
                        out[k] = (cum + (tk - t0).max(0.0) * len * r as f64) as f32;
                        k += 1;
                    }
                    cum += (t1 - t0) * len * r as f64;
                });
                for o in out.iter_mut().skip(k) {
                    *o = cum as f32;
                }
            });
        DepthTable {
            u0,
            v0,
            z0,
            du,
            dz,
            nu,
            nv,
            nz,
            depth_mm: depth,
        }
    }

    /// Whether `(u, v)` lies inside the table's lateral range.
    #[inline]
    pub fn covers(&self, u: f64, v: f64) -> bool {
        let fu = (u - self.u0) / self.du;
        let fv = (v - self.v0) / self.du;
        fu >= 0.0 && fv >= 0.0 && fu <= (self.nu - 1) as f64 && fv <= (self.nv - 1) as f64
    }

    /// Trilinear interpolation (clamped at the table edges).
    #[inline]
    pub fn sample(&self, u: f64, v: f64, z: f64) -> f64 {
        #[inline]
        fn split(x: f64, n: usize) -> (usize, f64) {
            if n <= 1 {
                return (0, 0.0);
            }
            let x = x.clamp(0.0, (n - 1) as f64);
            let i = (x.floor() as usize).min(n - 2);
            (i, x - i as f64)
        }
        let (iu, fu) = split((u - self.u0) / self.du, self.nu);
        let (iv, fv) = split((v - self.v0) / self.du, self.nv);
        let (iz, fz) = split((z - self.z0) / self.dz, self.nz);
        let iu1 = (iu + 1).min(self.nu - 1);
        let iv1 = (iv + 1).min(self.nv - 1);
        let iz1 = (iz + 1).min(self.nz - 1);
        let at = |a: usize, b: usize| {
            let base = (b * self.nu + a) * self.nz;
            let d0 = self.depth_mm[base + iz] as f64;
            let d1 = self.depth_mm[base + iz1] as f64;
            d0 + fz * (d1 - d0)
        };
        let r0 = at(iu, iv) * (1.0 - fu) + at(iu1, iv) * fu;
        let r1 = at(iu, iv1) * (1.0 - fu) + at(iu1, iv1) * fu;
        r0 * (1.0 - fv) + r1 * fv
    }
}
