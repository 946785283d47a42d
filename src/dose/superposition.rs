//! The heterogeneous engine (issue 18 item 3): a density-scaled lateral-kernel
//! superposition.
//!
//! The pencil beam ([`super::kernel`]) scales only the *depth* of its kernel by density
//! (radiological depth), so in lung it behaves as an equivalent-path-length correction: the
//! lateral kernels keep their water widths and the small-field axis dose is overestimated
//! (`docs/dose.md`, "Heterogeneous engine"). This engine superposes the same fitted kernel
//! terms, but each term's lateral Gaussian is density-scaled (O'Connor's theorem applied
//! to the lateral transport): in a medium of relative electron density `rho` the lateral
//! distances of a kernel scale by `1/rho`, so
//!
//! ```text
//! D(p) = c (SAD/z)^2 sum_i D_i(d) [Phi * G(sigma_i,eff)](u, v)
//! sigma_i,eff^2 = sigma_src,i^2 + (sigma_i(d)^2 - sigma_src,i^2) / rho_i(p)^2
//! rho_i(p) = L_i / (geometric path of the last L_i of radiological depth before p)
//! L_i = clamp(1 / beta_i, 2 mm, 100 mm)
//! ```
//!
//! `d` is the radiological depth (density-scaled attenuation of the TERMA; the spectral
//! hardening is the one built into the depth terms fitted to the water PDDs), `sigma_src` the
//! geometric blur of the source ([`PRIMARY_SOURCE_SIGMA_MM`], in quadrature with the
//! extra-focal source's width for its terms; not scaled), `rho_i` the transport density
//! upstream of the point over a window as long as the term's build-up length (so the
//! narrow, electron-like term follows the local density within millimetres and the wide,
//! scatter-like terms average over centimetres). The window stops at air (density below
//! [`AIR_DENSITY`]), so a patient's skin is not averaged with the air in front of it.
//! Electron-contamination terms are not scaled. In water `rho_i = 1` and the engine equals the
//! pencil beam. Heterogeneity *along* the beam (build-down / build-up at interfaces) is not
//! modelled beyond the radiological depth and the windows.
//!
//! The forward dose on a grid convolves each beam's fluence with each term's Gaussian at a
//! geometric ladder of widths ([`SIGMA_RATIO`]) and interpolates in `ln sigma`; points are
//! computed exactly (beamlet-integrated erf) with rays traced per point. The influence
//! matrix is the pencil beam's builder (cutoff, threshold) with these widths at each voxel
//! (`engine::MatrixWidths`).

// Index loops over the kernel terms mirror the formulas (as in `kernel.rs`).
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::engine::{check_beams, check_patient_position, density_volume};
use super::engine::{influence_matrix_with, DoseCalculation, DoseOptions, MatrixWidths};
use super::exact::{beam_coordinates, convolve, fluence_map, Plane};
use super::grid::DoseGrid;
use super::kernel::{lateral_factors, Kernel, MAX_COMPONENTS};
use super::raytrace::{DensityVolume, DepthTable};
use crate::beams::{Beam, BeamFrame, BeamPoint, LpsPoint};
use crate::control::CancelToken;
use crate::ct::CtVolume;
use crate::error::{Error, Result};
use crate::geometry::Mask;
use crate::machine::MachineModel;

/// Relative electron density below which the transport window stops (air, not tissue).
pub const AIR_DENSITY: f64 = 0.05;
/// Shortest and longest transport window, mm of radiological depth.
pub const MIN_WINDOW_MM: f64 = 2.0;
pub const MAX_WINDOW_MM: f64 = 100.0;
/// Range of the transport density used to scale the kernels.
const RHO_MIN: f64 = 0.05;
const RHO_MAX: f64 = 3.0;
/// Ratio between consecutive kernel widths of the convolution ladder.
pub const SIGMA_RATIO: f64 = 1.06;
/// Width (mm, at the isocentre) of the primary source's geometric blur (focal spot and
/// collimator transmission: an in-air 80-20 % penumbra of about 3 mm, typical of 6 MV
/// linacs; an assumption of this engine, not fitted): the part of each kernel term's width
/// that is not lateral transport in the patient and is not density-scaled.
pub const PRIMARY_SOURCE_SIGMA_MM: f64 = 1.8;
/// Geometric distance the depth tables reach upstream of the dose grid, mm.
const UPSTREAM_MM: f64 = 300.0;

/// The plan report's line for this engine.
pub const DESCRIPTION: &str = "density-scaled lateral-kernel superposition (pencil-beam kernel \
terms with lateral widths scaled by the upstream transport density; radiological depths from \
CT electron densities), untruncated";

/// How each kernel term is scaled.
#[derive(Debug, Clone)]
struct Terms {
    n: usize,
    /// Window index of each term, `None`: not scaled (electron contamination).
    window: [Option<usize>; MAX_COMPONENTS],
    /// Source (geometric) width of each term, mm, added in quadrature unscaled.
    src_sigma: [f64; MAX_COMPONENTS],
    /// Distinct window lengths, mm of radiological depth.
    windows: Vec<f64>,
}

impl Terms {
    fn new(kern: &Kernel, m: &MachineModel) -> Terms {
        let n_main = m
            .beam_model
            .components
            .len()
            .min(crate::machine::MAX_KERNEL_COMPONENTS)
            .min(kern.n);
        let (ef_w, ef_s) = kern.extra_focal;
        let mut t = Terms {
            n: kern.n,
            window: [None; MAX_COMPONENTS],
            src_sigma: [0.0; MAX_COMPONENTS],
            windows: Vec::new(),
        };
        for i in 0..kern.n {
            let ps = PRIMARY_SOURCE_SIGMA_MM.min(kern.sigma0[i]);
            let (main, src) = if i < n_main {
                (Some(i), ps)
            } else if ef_w > 0.0 && i < 2 * n_main {
                (Some(i - n_main), ps.hypot(ef_s))
            } else {
                (None, 0.0)
            };
            if let Some(j) = main {
                let l = (1.0 / kern.beta[j]).clamp(MIN_WINDOW_MM, MAX_WINDOW_MM);
                let w = match t.windows.iter().position(|&x| x == l) {
                    Some(w) => w,
                    None => {
                        t.windows.push(l);
                        t.windows.len() - 1
                    }
                };
                t.window[i] = Some(w);
                t.src_sigma[i] = src;
            }
        }
        t
    }

    /// Effective width of each term at radiological depth `d` for window densities `rho`.
    #[inline]
    fn sigma_eff(&self, kern: &Kernel, d: f64, rho: &[f64]) -> [f64; MAX_COMPONENTS] {
        let d = d.max(0.0);
        let mut out = [1.0; MAX_COMPONENTS];
        for i in 0..self.n {
            let s = kern.sigma0[i] + kern.slope[i] * d;
            out[i] = match self.window[i] {
                None => s,
                Some(w) => {
                    let src2 = self.src_sigma[i] * self.src_sigma[i];
                    let r = rho[w];
                    (src2 + (s * s - src2).max(0.0) / (r * r)).sqrt()
                }
            };
        }
        out
    }
}

/// Transport density of a window of `l` mm radiological depth ending at a point, from the
/// `(geometric, radiological)` lengths of the segments before it, nearest first; stops at
/// air. 1 when there is no tissue before the point.
fn window_density(segs_back: impl Iterator<Item = (f64, f64)>, l: f64) -> f64 {
    let (mut g, mut r) = (0.0, 0.0);
    for (gl, rl) in segs_back {
        if gl <= 0.0 {
            continue;
        }
        if rl < AIR_DENSITY * gl {
            break;
        }
        if r + rl >= l {
            g += gl * (l - r) / rl;
            r = l;
            break;
        }
        g += gl;
        r += rl;
    }
    if g > 1e-6 {
        (r / g).clamp(RHO_MIN, RHO_MAX)
    } else {
        1.0
    }
}

/// Window densities of a column of depth samples `d` (spacing `step` mm of path), written
/// to `out` (same length): a two-pointer sweep, O(len) per window.
fn column_densities(d: &[f32], step: f64, l: f64, out: &mut [f32]) {
    let mut s = 0usize; // window start node (the window begins in [s, s + 1])
    let mut air = 0usize; // the window may not start before this node
    for k in 0..d.len() {
        let dk = d[k] as f64;
        if k > 0 && ((dk - d[k - 1] as f64) < AIR_DENSITY * step) {
            air = k;
        }
        s = s.max(air).min(k);
        while s < k && dk - d[s + 1] as f64 >= l {
            s += 1;
        }
        let ds = d[s] as f64;
        let (rad, geo) = if s < k && dk - ds >= l {
            let d1 = d[s + 1] as f64;
            let f = if d1 > ds {
                (dk - l - ds) / (d1 - ds)
            } else {
                0.0
            };
            (l, ((k - s) as f64 - f) * step)
        } else {
            (dk - ds, (k - s) as f64 * step)
        };
        out[k] = if geo > 1e-6 && rad > 0.0 {
            (rad / geo).clamp(RHO_MIN, RHO_MAX) as f32
        } else {
            1.0
        };
    }
}

/// Window-density tables of each of `terms`' windows, on the fan and with the layout of the
/// depth table `table` (a two-pointer sweep along each ray).
fn density_tables(table: &DepthTable, frame: &BeamFrame, terms: &Terms) -> Vec<DepthTable> {
    let nz = table.nz;
    terms
        .windows
        .iter()
        .map(|&l| {
            let mut t = table.clone();
            t.depth_mm
                .par_chunks_mut(nz)
                .zip(table.depth_mm.par_chunks(nz))
                .enumerate()
                .for_each(|(ray, (out, d))| {
                    let (iu, iv) = (ray % table.nu, ray / table.nu);
                    let pf = path_factor(
                        table.u0 + iu as f64 * table.du,
                        table.v0 + iv as f64 * table.du,
                        frame.sad_mm,
                    );
                    column_densities(d, table.dz * pf, l, out);
                });
            t
        })
        .collect()
}

/// The influence matrix's kernel widths of this engine (`engine::MatrixWidths`): window
/// densities from tables over the matrix's box reaching [`UPSTREAM_MM`] before it, exact rays
/// for voxels outside the box.
struct SuperpositionWidths {
    terms: Terms,
}

impl MatrixWidths for SuperpositionWidths {
    type PerBeam = Vec<DepthTable>;

    fn prepare(
        &self,
        vol: &DensityVolume,
        frame: &BeamFrame,
        box_uv: [f64; 4],
        zmin: f64,
        zmax: f64,
        step: f64,
    ) -> Vec<DepthTable> {
        let [ulo, uhi, vlo, vhi] = box_uv;
        let nu = ((uhi - ulo) / step).ceil() as usize + 1;
        let nv = ((vhi - vlo) / step).ceil() as usize + 1;
        let z0 = (zmin - UPSTREAM_MM).max(1.0) - step;
        let nz = ((zmax + step - z0) / step).ceil() as usize + 1;
        let table = DepthTable::build(vol, frame, ulo, vlo, step, nu, nv, z0, step, nz);
        density_tables(&table, frame, &self.terms)
    }

    fn inv(
        &self,
        per_beam: Option<&Vec<DepthTable>>,
        kern: &Kernel,
        vol: &DensityVolume,
        frame: &BeamFrame,
        p: [f64; 3],
        uvz: [f64; 3],
        d: f64,
    ) -> [f64; MAX_COMPONENTS] {
        let [u, v, z] = uvz;
        let rho = match per_beam {
            Some(t) if !t.is_empty() && t[0].covers(u, v) => {
                let mut rho = [1.0; MAX_COMPONENTS];
                for (w, tw) in t.iter().enumerate() {
                    rho[w] = tw.sample(u, v, z);
                }
                rho
            }
            _ => point_depth(vol, frame, p, &self.terms).1,
        };
        let sig = self.terms.sigma_eff(kern, d, &rho);
        let mut inv = [0.0; MAX_COMPONENTS];
        for i in 0..kern.n {
            inv[i] = 1.0 / (std::f64::consts::SQRT_2 * sig[i]);
        }
        inv
    }
}

/// Geometric path length per mm of `z` along the ray through `(u, v)` in the isocentre plane.
#[inline]
fn path_factor(u: f64, v: f64, sad: f64) -> f64 {
    (1.0 + (u * u + v * v) / (sad * sad)).sqrt()
}

/// Radiological depth and window densities of one point for one beam (exact ray).
fn point_depth(
    vol: &DensityVolume,
    frame: &BeamFrame,
    p: [f64; 3],
    terms: &Terms,
) -> (f64, [f64; MAX_COMPONENTS]) {
    let a = frame.source_mm;
    let len = ((p[0] - a[0]).powi(2) + (p[1] - a[1]).powi(2) + (p[2] - a[2]).powi(2)).sqrt();
    let mut segs: Vec<(f64, f64)> = Vec::new();
    vol.traverse(a, p, |t0, t1, r| {
        let g = (t1 - t0) * len;
        segs.push((g, g * r as f64));
    });
    let d: f64 = segs.iter().map(|s| s.1).sum();
    let mut rho = [1.0; MAX_COMPONENTS];
    for (w, &l) in terms.windows.iter().enumerate() {
        rho[w] = window_density(segs.iter().rev().copied(), l);
    }
    (d, rho)
}

/// Dose per MU of every beamlet of `beam` at one LPS point, `emit(column, value)`.
#[allow(clippy::too_many_arguments)]
fn point_beam(
    kern: &Kernel,
    terms: &Terms,
    vol: &DensityVolume,
    beam: &Beam,
    p: [f64; 3],
    sx: &mut [Vec<f64>; MAX_COMPONENTS],
    sy: &mut [Vec<f64>; MAX_COMPONENTS],
    tmp: &mut Vec<f64>,
    mut emit: impl FnMut(usize, f64),
) {
    let frame = beam.frame();
    let BeamPoint {
        x_iso_mm: u,
        y_iso_mm: v,
        z_mm: z,
    } = frame.to_beam(LpsPoint(p));
    if z.is_nan() || z <= 0.0 {
        return;
    }
    let (d, rho) = point_depth(vol, &frame, p, terms);
    let sig = terms.sigma_eff(kern, d, &rho);
    let mut inv = [0.0; MAX_COMPONENTS];
    for i in 0..kern.n {
        inv[i] = 1.0 / (std::f64::consts::SQRT_2 * sig[i]);
    }
    let dt = kern.depth_terms(d);
    let isq = (kern.sad_mm / z).powi(2);
    let g = &beam.grid;
    let ex0 = g.x0_mm - 0.5 * g.size_x_mm;
    let ey0 = g.y0_mm - 0.5 * g.size_y_mm;
    lateral_factors(kern, &inv, u, ex0, g.size_x_mm, g.nx, tmp, sx);
    lateral_factors(kern, &inv, v, ey0, g.size_y_mm, g.ny, tmp, sy);
    for (j, &[ix, iy]) in beam.beamlets.iter().enumerate() {
        let mut s = 0.0;
        for i in 0..kern.n {
            s += dt[i] * sx[i][ix] * sy[i][iy];
        }
        emit(beam.first_column + j, s * isq);
    }
}

/// Checks shared by the point calls.
fn check_inputs(ct: &CtVolume, beams: &[Beam]) -> Result<usize> {
    check_patient_position(ct)?;
    let n = check_beams(beams)?;
    if ct.hu.len() != ct.grid.len() {
        return Err(Error::Invalid("CT HU array does not match its grid".into()));
    }
    Ok(n)
}

fn check_weights(n_cols: usize, w: &[f64]) -> Result<()> {
    if w.len() != n_cols {
        return Err(Error::Invalid(format!(
            "{} beamlet weights given for {n_cols} beamlets",
            w.len()
        )));
    }
    Ok(())
}

/// Doses (Gy) at LPS points for beamlet weights (MU), exact rays, no cutoff.
pub fn dose_at_points(
    ct: &CtVolume,
    beams: &[Beam],
    machine: &MachineModel,
    weights_mu: &[f64],
    points_lps: &[[f64; 3]],
) -> Result<Vec<f64>> {
    let n_cols = check_inputs(ct, beams)?;
    check_weights(n_cols, weights_mu)?;
    let kern = Kernel::new(machine);
    let terms = Terms::new(&kern, machine);
    let vol = density_volume(ct, machine);
    Ok(points_lps
        .par_iter()
        .map_init(
            || (Default::default(), Default::default(), Vec::new()),
            |(sx, sy, tmp), &p| {
                let mut total = 0.0;
                for beam in beams {
                    point_beam(&kern, &terms, &vol, beam, p, sx, sy, tmp, |c, val| {
                        total += val * weights_mu[c]
                    });
                }
                total
            },
        )
        .collect())
}

/// Dose per MU of every beamlet at one LPS point (Gy/MU, one value per column).
pub fn beamlet_doses_at_point(
    ct: &CtVolume,
    beams: &[Beam],
    machine: &MachineModel,
    point_lps: [f64; 3],
) -> Result<Vec<f64>> {
    let n_cols = check_inputs(ct, beams)?;
    let kern = Kernel::new(machine);
    let terms = Terms::new(&kern, machine);
    let vol = density_volume(ct, machine);
    let mut out = vec![0.0; n_cols];
    let (mut sx, mut sy, mut tmp) = (Default::default(), Default::default(), Vec::new());
    for beam in beams {
        point_beam(
            &kern,
            &terms,
            &vol,
            beam,
            point_lps,
            &mut sx,
            &mut sy,
            &mut tmp,
            |c, val| out[c] += val,
        );
    }
    Ok(out)
}

/// One term's ladder of convolved fluences: widths `s0 * SIGMA_RATIO^k`.
struct Ladder {
    ln_s0: f64,
    planes: Vec<Plane>,
}

impl Ladder {
    #[inline]
    fn sample(&self, sigma: f64, u: f64, v: f64) -> f64 {
        let n = self.planes.len();
        if n == 1 {
            return self.planes[0].sample(u, v);
        }
        let t = ((sigma.ln() - self.ln_s0) / SIGMA_RATIO.ln()).clamp(0.0, (n - 1) as f64);
        let k = (t.floor() as usize).min(n - 2);
        let a = t - k as f64;
        self.planes[k].sample(u, v) * (1.0 - a) + self.planes[k + 1].sample(u, v) * a
    }
}

/// The forward dose (Gy) of beamlet weights on the computed voxels of `dose_grid`.
pub fn dose_from_weights(
    ct: &CtVolume,
    dose_grid: &DoseGrid,
    beams: &[Beam],
    machine: &MachineModel,
    weights_mu: &[f64],
    cancel: &CancelToken,
) -> Result<Vec<f64>> {
    let n_cols = check_inputs(ct, beams)?;
    check_weights(n_cols, weights_mu)?;
    let kern = Kernel::new(machine);
    let terms = Terms::new(&kern, machine);
    let vol = density_volume(ct, machine);
    let points = dose_grid.centres_mm();
    let min_sp = dose_grid
        .grid
        .spacing_mm
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min);
    let nw = terms.windows.len();
    let mut total = vec![0.0f64; points.len()];
    for beam in beams {
        cancel.check("forward dose")?;
        let Some(fl) = fluence_map(beam, weights_mu) else {
            continue;
        };
        let frame = beam.frame();
        let q = beam_coordinates(&frame, &points);
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for p in q.iter().filter(|p| p[2] > 0.0) {
            for a in 0..3 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        if lo[0] > hi[0] {
            continue;
        }
        let du = min_sp;
        let dz = 0.5 * min_sp;
        let nu = ((hi[0] - lo[0]) / du).ceil() as usize + 2;
        let nv = ((hi[1] - lo[1]) / du).ceil() as usize + 2;
        let z0 = (lo[2] - UPSTREAM_MM).max(1.0);
        let nz = ((hi[2] - z0) / dz).ceil() as usize + 3;
        let (u0, v0) = (lo[0] - 0.5 * du, lo[1] - 0.5 * du);
        let table = DepthTable::build(&vol, &frame, u0, v0, du, nu, nv, z0 - dz, dz, nz);
        let rho_tables = density_tables(&table, &frame, &terms);
        // Depth and effective widths per voxel.
        let sig: Vec<(f64, [f64; MAX_COMPONENTS])> = q
            .par_iter()
            .map(|&[u, v, z]| {
                if z.is_nan() || z <= 0.0 {
                    return (f64::NAN, [f64::NAN; MAX_COMPONENTS]);
                }
                let d = table.sample(u, v, z);
                let mut rho = [1.0; MAX_COMPONENTS];
                for (w, t) in rho_tables.iter().enumerate().take(nw) {
                    rho[w] = t.sample(u, v, z);
                }
                (d, terms.sigma_eff(&kern, d, &rho))
            })
            .collect();
        let ladders: Vec<Ladder> = (0..kern.n)
            .map(|i| {
                let (mut smin, mut smax) = (f64::INFINITY, 0.0f64);
                for (d, s) in &sig {
                    if d.is_nan() {
                        continue;
                    }
                    smin = smin.min(s[i]);
                    smax = smax.max(s[i]);
                }
                if !smin.is_finite() {
                    smin = 1.0;
                    smax = 1.0;
                }
                let n = ((smax / smin).ln() / SIGMA_RATIO.ln()).ceil() as usize + 1;
                let n = n.max(1);
                let planes = (0..n)
                    .into_par_iter()
                    .map(|k| {
                        let s = smin * SIGMA_RATIO.powi(k as i32);
                        convolve(beam, &fl, s, (s / 5.0).max(2.5), None)
                    })
                    .collect();
                Ladder {
                    ln_s0: smin.ln(),
                    planes,
                }
            })
            .collect();
        total
            .par_iter_mut()
            .zip(q.par_iter().zip(sig.par_iter()))
            .for_each(|(t, (p, (d, s)))| {
                let [u, v, z] = *p;
                if d.is_nan() {
                    return;
                }
                let dt = kern.depth_terms(*d);
                let isq = (kern.sad_mm / z).powi(2);
                let mut acc = 0.0;
                for (i, lad) in ladders.iter().enumerate() {
                    acc += dt[i] * lad.sample(s[i], u, v);
                }
                *t += acc * isq;
            });
    }
    Ok(total)
}

/// The influence matrix: the pencil beam's builder (lateral cutoff, threshold) with this
/// engine's density-scaled kernel widths at each voxel.
pub fn influence_matrix(
    ct: &CtVolume,
    body: &Mask,
    beams: &[Beam],
    machine: &MachineModel,
    opts: &DoseOptions,
    cancel: &CancelToken,
) -> Result<DoseCalculation> {
    let terms = Terms::new(&Kernel::new(machine), machine);
    influence_matrix_with(
        ct,
        body,
        beams,
        machine,
        opts,
        cancel,
        &SuperpositionWidths { terms },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_density_of_water_lung_and_air() {
        // 1 mm segments, nearest first: 10 mm lung (0.25) then water.
        let segs = |n_lung: usize| {
            (0..200).map(move |k| if k < n_lung { (1.0, 0.25) } else { (1.0, 1.0) })
        };
        assert!((window_density(segs(0), 10.0) - 1.0).abs() < 1e-12);
        // 10 mm radiological: 10 mm of lung (2.5) + 7.5 mm of water -> 10 / 17.5.
        assert!((window_density(segs(10), 10.0) - 10.0 / 17.5).abs() < 1e-12);
        // Air stops the window: 3 mm of water then air -> 1.
        let air = (0..50).map(|k| if k < 3 { (1.0, 1.0) } else { (1.0, 0.001) });
        assert!((window_density(air, 20.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn column_densities_match_the_segment_walk() {
        // Depth samples every 1 mm: 20 water, 40 lung (0.25), 40 water.
        let mut d = vec![0f32];
        for k in 0..100 {
            let r = if (20..60).contains(&k) { 0.25 } else { 1.0 };
            d.push(d[k] + r);
        }
        let mut out = vec![0f32; d.len()];
        column_densities(&d, 1.0, 10.0, &mut out);
        assert!((out[15] - 1.0).abs() < 1e-6);
        assert!((out[60] - 0.25).abs() < 1e-6, "{}", out[60]);
        // 5 mm into the water beyond: 5 mm water + 5 mm rad = 20 mm lung -> 10 / 25.
        assert!((out[65] - 0.4).abs() < 1e-5, "{}", out[65]);
    }
}
