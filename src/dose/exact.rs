//! Untruncated dose of a set of beamlet weights by fluence convolution.
//!
//! The influence matrix drops each beamlet's dose beyond the lateral cutoff and below the
//! relative threshold; for the fitted 6 MV kernel, whose long-range scatter component has a
//! width of about 70 mm, that discards a large part of the scatter dose of a 5 mm beamlet
//! (see `docs/dose.md`). The plan's final dose must not carry that error, so it is computed
//! here without truncation: per beam and kernel component, the fluence map is convolved with
//! the component's beamlet-integrated Gaussian on a fine 2-D grid in the isocentre plane (a
//! separable double sum over beamlet columns and rows), at a set of depth levels spanning the
//! depth dependence of the kernel width; each dose voxel then reads the convolved fluence by
//! bilinear interpolation (linear between depth levels) and multiplies it by the component's
//! depth term and the inverse-square factor. Radiological depths come from the same fan of
//! exactly traced rays as the matrix.

use rayon::prelude::*;

use crate::beams::{Beam, BeamFrame, LpsPoint};
use crate::control::CancelToken;
use crate::ct::CtVolume;
use crate::dose::engine::density_volume;
use crate::dose::grid::DoseGrid;
use crate::dose::kernel::Kernel;
use crate::dose::raytrace::DepthTable;
use crate::error::{Error, Result};
use crate::machine::MachineModel;

/// Spacing between depth levels of the kernel width, mm of radiological depth.
const LEVEL_STEP_MM: f64 = 25.0;
/// Lateral extent of each component's convolved fluence beyond the field, in kernel widths.
const EXTENT_SIGMAS: f64 = 4.5;

/// One component's convolved fluence at one depth level on a regular 2-D grid.
///
/// The node grid spans the field plus [`EXTENT_SIGMAS`] kernel widths (`nu` x `nv` nodes from
/// `(u0, v0)`); only the nodes of a window (`nu_w` x `nv_w` from node `(iu_w, iv_w)`) that
/// covers the points to be sampled are computed and stored. A wide kernel term (sigma of
/// hundreds of mm on a 2.5 mm step) would otherwise fill metres of plane that no voxel reads.
/// The nodes keep their positions, so a windowed plane samples exactly as the full one.
pub(crate) struct Plane {
    u0: f64,
    v0: f64,
    h: f64,
    nu: usize,
    nv: usize,
    iu_w: usize,
    iv_w: usize,
    nu_w: usize,
    nv_w: usize,
    f: Vec<f64>,
}

impl Plane {
    #[inline]
    pub(crate) fn sample(&self, u: f64, v: f64) -> f64 {
        let fu = (u - self.u0) / self.h;
        let fv = (v - self.v0) / self.h;
        if fu < 0.0 || fv < 0.0 || fu > (self.nu - 1) as f64 || fv > (self.nv - 1) as f64 {
            return 0.0;
        }
        let iu = (fu.floor() as usize).min(self.nu - 2);
        let iv = (fv.floor() as usize).min(self.nv - 2);
        if iu < self.iu_w
            || iv < self.iv_w
            || iu + 1 >= self.iu_w + self.nu_w
            || iv + 1 >= self.iv_w + self.nv_w
        {
            return 0.0;
        }
        let (a, b) = (fu - iu as f64, fv - iv as f64);
        let r = |i: usize, j: usize| self.f[(j - self.iv_w) * self.nu_w + (i - self.iu_w)];
        (r(iu, iv) * (1.0 - a) + r(iu + 1, iv) * a) * (1.0 - b)
            + (r(iu, iv + 1) * (1.0 - a) + r(iu + 1, iv + 1) * a) * b
    }
}

/// Beamlet-integrated Gaussian: 0.5 [erf((x + b/2) k) - erf((x - b/2) k)], k = 1/(sqrt2 sigma).
#[inline]
fn s(x: f64, half: f64, k: f64) -> f64 {
    0.5 * (libm::erf((x + half) * k) - libm::erf((x - half) * k))
}

/// Convolve one beam's fluence map with one component at kernel width `sigma_mm`, on a
/// plane of step `sigma / 3` clamped to `[0.5, h_max_mm]`, computed where it can be sampled
/// in `window` (`[u_min, u_max, v_min, v_max]`, plane coordinates, mm; `None`: everywhere).
pub(crate) fn convolve(
    beam: &Beam,
    fl: &[f64],
    sigma_mm: f64,
    h_max_mm: f64,
    window: Option<[f64; 4]>,
) -> Plane {
    let g = &beam.grid;
    let (nx, ny) = (g.nx, g.ny);
    let h = (sigma_mm / 3.0).clamp(0.5, h_max_mm.max(0.5));
    let ext = EXTENT_SIGMAS * sigma_mm;
    let u0 = g.x0_mm - 0.5 * g.size_x_mm - ext;
    let v0 = g.y0_mm - 0.5 * g.size_y_mm - ext;
    let nu = (((nx as f64 * g.size_x_mm + 2.0 * ext) / h).ceil() as usize + 1).max(2);
    let nv = (((ny as f64 * g.size_y_mm + 2.0 * ext) / h).ceil() as usize + 1).max(2);
    // The window's nodes (one node of margin each side, at least two per axis).
    let span = |lo: f64, hi: f64, o: f64, n: usize| -> (usize, usize) {
        let first = ((lo - o) / h).floor() - 1.0;
        let last = ((hi - o) / h).ceil() + 1.0;
        let first = if first.is_finite() {
            first.max(0.0) as usize
        } else {
            0
        };
        let last = if last.is_finite() {
            (last.max(0.0) as usize).min(n - 1)
        } else {
            n - 1
        };
        let first = first.min(n - 2);
        (first, last.max(first + 1) - first + 1)
    };
    let ((iu_w, nu_w), (iv_w, nv_w)) = match window {
        Some([ulo, uhi, vlo, vhi]) => (span(ulo, uhi, u0, nu), span(vlo, vhi, v0, nv)),
        None => ((0, nu), (0, nv)),
    };
    let k = 1.0 / (std::f64::consts::SQRT_2 * sigma_mm);
    let (hx, hy) = (0.5 * g.size_x_mm, 0.5 * g.size_y_mm);
    // sx[(iu - iu_w) * nx + ix], sy[(iv - iv_w) * ny + iy]: node positions from the full
    // grid's indices, so the values do not depend on the window.
    let sx: Vec<f64> = (0..nu_w * nx)
        .map(|t| {
            let (iu, ix) = (iu_w + t / nx, t % nx);
            s(
                u0 + iu as f64 * h - (g.x0_mm + ix as f64 * g.size_x_mm),
                hx,
                k,
            )
        })
        .collect();
    let sy: Vec<f64> = (0..nv_w * ny)
        .map(|t| {
            let (iv, iy) = (iv_w + t / ny, t % ny);
            s(
                v0 + iv as f64 * h - (g.y0_mm + iy as f64 * g.size_y_mm),
                hy,
                k,
            )
        })
        .collect();
    // G[iy][iu] = sum_ix fl[iy][ix] sx[iu][ix]
    let mut gm = vec![0.0; ny * nu_w];
    for iy in 0..ny {
        let row = &fl[iy * nx..(iy + 1) * nx];
        if row.iter().all(|&w| w == 0.0) {
            continue;
        }
        for iu in 0..nu_w {
            let sxr = &sx[iu * nx..(iu + 1) * nx];
            gm[iy * nu_w + iu] = row.iter().zip(sxr).map(|(a, b)| a * b).sum();
        }
    }
    // F[iv][iu] = sum_iy sy[iv][iy] G[iy][iu]
    let mut f = vec![0.0; nv_w * nu_w];
    for iv in 0..nv_w {
        let syr = &sy[iv * ny..(iv + 1) * ny];
        let out = &mut f[iv * nu_w..(iv + 1) * nu_w];
        for (iy, &w) in syr.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let grow = &gm[iy * nu_w..(iy + 1) * nu_w];
            for (o, gv) in out.iter_mut().zip(grow) {
                *o += w * gv;
            }
        }
    }
    Plane {
        u0,
        v0,
        h,
        nu,
        nv,
        iu_w,
        iv_w,
        nu_w,
        nv_w,
        f,
    }
}

/// A beam's fluence map `[iy * nx + ix]` from the weights of all beams (MU); `None` when
/// all of its weights are zero.
pub(crate) fn fluence_map(beam: &Beam, weights_mu: &[f64]) -> Option<Vec<f64>> {
    let g = &beam.grid;
    let w = &weights_mu[beam.first_column..beam.first_column + beam.beamlets.len()];
    if w.iter().all(|&x| x == 0.0) {
        return None;
    }
    let mut fl = vec![0.0; g.nx * g.ny];
    for (&[ix, iy], &x) in beam.beamlets.iter().zip(w) {
        fl[iy * g.nx + ix] = x;
    }
    Some(fl)
}

/// LPS points in a beam's frame: `[u, v, z]` (isocentre-plane coordinates, distance from
/// the source along the axis).
pub(crate) fn beam_coordinates(frame: &BeamFrame, points: &[[f64; 3]]) -> Vec<[f64; 3]> {
    points
        .par_iter()
        .map(|&p| {
            let b = frame.to_beam(LpsPoint(p));
            [b.x_iso_mm, b.y_iso_mm, b.z_mm]
        })
        .collect()
}

/// Total dose (Gy per MU-weighted fluence, i.e. Gy for weights in MU) on the computed voxels
/// of `dose_grid` (one value per row), without lateral cutoff or threshold.
pub fn dose_from_weights(
    ct: &CtVolume,
    dose_grid: &DoseGrid,
    beams: &[Beam],
    machine: &MachineModel,
    weights_mu: &[f64],
) -> Result<Vec<f64>> {
    dose_from_weights_cancellable(
        ct,
        dose_grid,
        beams,
        machine,
        weights_mu,
        &CancelToken::new(),
    )
}

/// [`dose_from_weights`] that checks `cancel` before each beam and ends with
/// [`Error::Cancelled`] once it is set.
pub fn dose_from_weights_cancellable(
    ct: &CtVolume,
    dose_grid: &DoseGrid,
    beams: &[Beam],
    machine: &MachineModel,
    weights_mu: &[f64],
    cancel: &CancelToken,
) -> Result<Vec<f64>> {
    let n_cols: usize = beams.iter().map(|b| b.beamlets.len()).sum();
    if weights_mu.len() != n_cols {
        return Err(Error::Invalid(format!(
            "{} beamlet weights given for {n_cols} beamlets",
            weights_mu.len()
        )));
    }
    let kern = Kernel::new(machine);
    let vol = density_volume(ct, machine);
    let points = dose_grid.centres_mm();
    let min_sp = dose_grid
        .grid
        .spacing_mm
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min);
    let mut total = vec![0.0f64; points.len()];
    for beam in beams {
        cancel.check("forward dose")?;
        let Some(fl) = fluence_map(beam, weights_mu) else {
            continue;
        };
        let frame = beam.frame();
        let q = beam_coordinates(&frame, &points);
        let (mut ulo, mut uhi, mut vlo, mut vhi, mut zlo, mut zhi) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for p in &q {
            if p[2] > 0.0 {
                ulo = ulo.min(p[0]);
                uhi = uhi.max(p[0]);
                vlo = vlo.min(p[1]);
                vhi = vhi.max(p[1]);
                zlo = zlo.min(p[2]);
                zhi = zhi.max(p[2]);
            }
        }
        if ulo > uhi {
            continue;
        }
        let du = min_sp;
        let dz = 0.5 * min_sp;
        let nu = ((uhi - ulo) / du).ceil() as usize + 2;
        let nv = ((vhi - vlo) / du).ceil() as usize + 2;
        let nz = ((zhi - zlo) / dz).ceil() as usize + 3;
        let table = DepthTable::build(
            &vol,
            &frame,
            ulo - du * 0.5,
            vlo - du * 0.5,
            du,
            nu,
            nv,
            zlo - dz,
            dz,
            nz,
        );
        let dmax = table.depth_mm.iter().fold(0.0f32, |m, &d| m.max(d)) as f64;
        let n_levels = (dmax / LEVEL_STEP_MM).ceil() as usize + 2;
        // planes[i][l]
        let planes: Vec<Vec<Plane>> = (0..kern.n)
            .map(|i| {
                (0..n_levels)
                    .into_par_iter()
                    .map(|l| {
                        let d = l as f64 * LEVEL_STEP_MM;
                        convolve(
                            beam,
                            &fl,
                            kern.sigma0[i] + kern.slope[i] * d,
                            2.5,
                            Some([ulo, uhi, vlo, vhi]),
                        )
                    })
                    .collect()
            })
            .collect();
        total.par_iter_mut().zip(q.par_iter()).for_each(|(t, p)| {
            let [u, v, z] = *p;
            if z.is_nan() || z <= 0.0 {
                return;
            }
            let d = table.sample(u, v, z);
            let dt = kern.depth_terms(d);
            let isq = (kern.sad_mm / z).powi(2);
            let lf = (d.max(0.0) / LEVEL_STEP_MM).min((n_levels - 1) as f64);
            let l0 = (lf.floor() as usize).min(n_levels - 2);
            let a = lf - l0 as f64;
            let mut acc = 0.0;
            for (i, pl) in planes.iter().enumerate() {
                let f = pl[l0].sample(u, v) * (1.0 - a) + pl[l0 + 1].sample(u, v) * a;
                acc += dt[i] * f;
            }
            *t += acc * isq;
        });
    }
    Ok(total)
}
