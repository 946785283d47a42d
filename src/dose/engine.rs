//! The pencil-beam dose engine: influence matrix and point doses (`docs/dose.md`).
// Index loops mirror the formulas; negated comparisons deliberately reject NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use std::time::Instant;

use rayon::prelude::*;

use super::grid::DoseGrid;
use super::influence::InfluenceMatrix;
use super::kernel::{lateral_factors, Kernel, MAX_COMPONENTS};
use super::raytrace::{DensityVolume, DepthTable};
use crate::beams::{Beam, BeamFrame, BeamPoint, LpsPoint};
use crate::control::CancelToken;
use crate::ct::CtVolume;
use crate::error::{Error, Result};
use crate::geometry::Mask;
use crate::machine::MachineModel;

/// Options of the influence-matrix calculation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoseOptions {
    /// Dose-grid spacing, mm (x, y, z).
    pub grid_spacing_mm: [f64; 3],
    /// Lateral cutoff: a voxel receives dose from a beamlet only when its isocentre-plane
    /// distance from the beamlet square is at most this, mm.
    pub lateral_cutoff_mm: f64,
    /// Entries below this fraction of a beamlet's peak dose (its central-axis maximum in
    /// water at SSD = SAD) are dropped.
    pub relative_threshold: f64,
}

impl Default for DoseOptions {
    /// 3 mm grid, 30 mm cutoff, threshold 2e-3 (see `docs/dose.md`: the long-range scatter
    /// term is mostly dropped; on TG119 about 17 % of the dose mass, most of it low dose).
    fn default() -> Self {
        DoseOptions {
            grid_spacing_mm: [3.0; 3],
            lateral_cutoff_mm: 30.0,
            relative_threshold: 2e-3,
        }
    }
}

/// Result of [`influence_matrix`].
#[derive(Debug, Clone)]
pub struct DoseCalculation {
    pub dose_grid: DoseGrid,
    /// `A[r][c]`: Gy at dose voxel `r` per MU of beamlet `c`.
    pub matrix: InfluenceMatrix,
    /// Fraction of the dose mass (all beamlets at 1 MU, summed over the computed voxels)
    /// dropped by the lateral cutoff and the threshold, estimated on a 1-in-`MASS_SAMPLE`
    /// subsample of the rows.
    pub truncated_mass_fraction: f64,
    /// Wall-clock seconds of the build.
    pub build_seconds: f64,
}

/// Row subsampling stride of the truncated-mass estimate.
pub const MASS_SAMPLE: usize = 16;

/// The relative-electron-density volume of a CT.
pub fn density_volume(ct: &CtVolume, machine: &MachineModel) -> DensityVolume {
    DensityVolume {
        grid: ct.grid,
        rel_ed: ct
            .hu
            .par_iter()
            .map(|&h| machine.relative_electron_density(h))
            .collect(),
    }
}

/// Only head-first supine geometry is modelled (`docs/dose.md`); an empty PatientPosition
/// (CT built in memory) is taken as HFS.
pub(crate) fn check_patient_position(ct: &CtVolume) -> Result<()> {
    let pp = ct.meta.patient_position.trim();
    if pp.is_empty() || pp.eq_ignore_ascii_case("HFS") {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "CT PatientPosition (0018,5100) is '{pp}': only HFS beam geometry is implemented"
        )))
    }
}

pub(crate) fn check_beams(beams: &[Beam]) -> Result<usize> {
    let mut col = 0usize;
    for (b, beam) in beams.iter().enumerate() {
        if beam.first_column != col {
            return Err(Error::Invalid(format!(
                "beam {} ('{}'): first_column is {}, expected {col} (columns must follow beam order)",
                b + 1,
                beam.name,
                beam.first_column
            )));
        }
        let g = &beam.grid;
        if !(g.size_x_mm > 0.0 && g.size_y_mm > 0.0) {
            return Err(Error::Invalid(format!(
                "beam '{}': beamlet size must be positive",
                beam.name
            )));
        }
        if !(beam.sad_mm > 0.0) {
            return Err(Error::Invalid(format!(
                "beam '{}': SAD must be positive",
                beam.name
            )));
        }
        for &[ix, iy] in &beam.beamlets {
            if ix >= g.nx || iy >= g.ny {
                return Err(Error::Invalid(format!(
                    "beam '{}': beamlet ({ix}, {iy}) outside its {} x {} grid",
                    beam.name, g.nx, g.ny
                )));
            }
        }
        col += beam.beamlets.len();
    }
    Ok(col)
}

/// Per-beam data used by the inner loops.
struct BeamCtx {
    frame: BeamFrame,
    /// Column of beamlet (ix, iy) or -1: `[iy * nx + ix]`.
    col_of: Vec<i64>,
    nx: usize,
    ny: usize,
    bx: f64,
    by: f64,
    /// Left / lower edge of column 0 / row 0 (isocentre plane, mm).
    ex0: f64,
    ey0: f64,
}

impl BeamCtx {
    fn new(beam: &Beam) -> BeamCtx {
        let g = &beam.grid;
        let mut col_of = vec![-1i64; g.nx * g.ny];
        for (j, &[ix, iy]) in beam.beamlets.iter().enumerate() {
            col_of[iy * g.nx + ix] = (beam.first_column + j) as i64;
        }
        BeamCtx {
            frame: beam.frame(),
            col_of,
            nx: g.nx,
            ny: g.ny,
            bx: g.size_x_mm,
            by: g.size_y_mm,
            ex0: g.x0_mm - 0.5 * g.size_x_mm,
            ey0: g.y0_mm - 0.5 * g.size_y_mm,
        }
    }

    /// Index range `[lo, hi)` of grid columns whose extent comes within `cut` of `x`.
    fn range(x: f64, e0: f64, b: f64, n: usize, cut: f64) -> (usize, usize) {
        let lo = ((x - cut - e0) / b).floor().max(0.0);
        let hi = ((x + cut - e0) / b).floor() + 1.0;
        let hi = hi.min(n as f64);
        if hi <= lo {
            (0, 0)
        } else {
            (lo as usize, hi as usize)
        }
    }
}

/// Scratch buffers for one worker.
struct Scratch {
    sx: [Vec<f64>; MAX_COMPONENTS],
    sy: [Vec<f64>; MAX_COMPONENTS],
    tmp: Vec<f64>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            sx: Default::default(),
            sy: Default::default(),
            tmp: Vec::new(),
        }
    }
}

/// Dose (Gy/MU) of every beamlet of a beam within `(ix, iy)` ranges at one point, calling
/// `emit(col, value, ix, iy)`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn beam_point(
    kern: &Kernel,
    ctx: &BeamCtx,
    u: f64,
    v: f64,
    z: f64,
    d: f64,
    inv: &[f64; MAX_COMPONENTS],
    xr: (usize, usize),
    yr: (usize, usize),
    sc: &mut Scratch,
    mut emit: impl FnMut(i64, f64, usize, usize),
) {
    let mut dt = kern.depth_terms(d);
    let isq = (kern.sad_mm / z).powi(2);
    for t in dt.iter_mut() {
        *t *= isq;
    }
    let nxr = xr.1 - xr.0;
    let nyr = yr.1 - yr.0;
    let ex = ctx.ex0 + xr.0 as f64 * ctx.bx;
    let ey = ctx.ey0 + yr.0 as f64 * ctx.by;
    lateral_factors(kern, inv, u, ex, ctx.bx, nxr, &mut sc.tmp, &mut sc.sx);
    lateral_factors(kern, inv, v, ey, ctx.by, nyr, &mut sc.tmp, &mut sc.sy);
    let n = kern.n;
    for jy in 0..nyr {
        let iy = yr.0 + jy;
        let mut a = [0.0; MAX_COMPONENTS];
        for i in 0..n {
            a[i] = dt[i] * sc.sy[i][jy];
        }
        let row = &ctx.col_of[iy * ctx.nx..(iy + 1) * ctx.nx];
        for jx in 0..nxr {
            let ix = xr.0 + jx;
            let c = row[ix];
            if c < 0 {
                continue;
            }
            let mut s = 0.0;
            for i in 0..n {
                s += a[i] * sc.sx[i][jx];
            }
            emit(c, s, ix, iy);
        }
    }
}

/// Doses (Gy) at LPS points for beamlet weights `weights_mu` (one per influence-matrix
/// column, MU). Radiological depths are traced exactly per point; no lateral cutoff and no
/// threshold are applied, so this is the reference the matrix is compared with.
pub fn dose_at_points(
    ct: &CtVolume,
    beams: &[Beam],
    machine: &MachineModel,
    weights_mu: &[f64],
    points_lps: &[[f64; 3]],
) -> Result<Vec<f64>> {
    check_patient_position(ct)?;
    let n_cols = check_beams(beams)?;
    if weights_mu.len() != n_cols {
        return Err(Error::Invalid(format!(
            "{} beamlet weights given for {n_cols} beamlets",
            weights_mu.len()
        )));
    }
    if ct.hu.len() != ct.grid.len() {
        return Err(Error::Invalid("CT HU array does not match its grid".into()));
    }
    let kern = Kernel::new(machine);
    let vol = density_volume(ct, machine);
    let ctxs: Vec<BeamCtx> = beams.iter().map(BeamCtx::new).collect();
    Ok(points_lps
        .par_iter()
        .map_init(Scratch::new, |sc, &p| {
            let mut total = 0.0;
            point_beamlet_doses(&kern, &vol, &ctxs, p, sc, |c, val| {
                total += val * weights_mu[c as usize]
            });
            total
        })
        .collect())
}

/// Every beamlet's dose per MU at LPS point `p` (untruncated, exact depth), as
/// `emit(column, Gy/MU)`: the kernel of [`dose_at_points`] and [`beamlet_doses_at_point`].
fn point_beamlet_doses(
    kern: &Kernel,
    vol: &DensityVolume,
    ctxs: &[BeamCtx],
    p: [f64; 3],
    sc: &mut Scratch,
    mut emit: impl FnMut(i64, f64),
) {
    for ctx in ctxs {
        let BeamPoint {
            x_iso_mm: u,
            y_iso_mm: v,
            z_mm: z,
        } = ctx.frame.to_beam(LpsPoint(p));
        if !(z > 0.0) {
            continue;
        }
        let d = vol.radiological_length(ctx.frame.source_mm, p);
        beam_point(
            kern,
            ctx,
            u,
            v,
            z,
            d,
            &kern.inv_sqrt2_sigma(d),
            (0, ctx.nx),
            (0, ctx.ny),
            sc,
            |c, val, _, _| emit(c, val),
        );
    }
}

/// Dose per MU of every beamlet at one LPS point, Gy/MU (one value per influence-matrix
/// column), computed as [`dose_at_points`] computes it (exact depth, no cutoff, no
/// threshold): any weighting of the beamlets, a beam's or a segment's, is then a dot product.
pub fn beamlet_doses_at_point(
    ct: &CtVolume,
    beams: &[Beam],
    machine: &MachineModel,
    point_lps: [f64; 3],
) -> Result<Vec<f64>> {
    check_patient_position(ct)?;
    let n_cols = check_beams(beams)?;
    if ct.hu.len() != ct.grid.len() {
        return Err(Error::Invalid("CT HU array does not match its grid".into()));
    }
    let kern = Kernel::new(machine);
    let vol = density_volume(ct, machine);
    let ctxs: Vec<BeamCtx> = beams.iter().map(BeamCtx::new).collect();
    let mut out = vec![0.0; n_cols];
    point_beamlet_doses(
        &kern,
        &vol,
        &ctxs,
        point_lps,
        &mut Scratch::new(),
        |c, val| out[c as usize] += val,
    );
    Ok(out)
}

/// Output of one chunk of rows for one beam.
struct ChunkOut {
    counts: Vec<u32>,
    cols: Vec<u32>,
    vals: Vec<f32>,
    kept_sampled: f64,
    full_sampled: f64,
}

/// Compute the dose-influence matrix of `beams` on a dose grid covering `body`.
///
/// Per beam, radiological depths come from a [`DepthTable`] (a fan of exactly traced rays,
/// lateral and depth spacing half the smallest dose-grid spacing, see `docs/dose.md`); every
/// body voxel then receives the analytic beamlet integrals of all beamlets within the
/// lateral cutoff. Rows are computed in parallel (rayon) and assembled deterministically.
pub fn influence_matrix(
    ct: &CtVolume,
    body: &Mask,
    beams: &[Beam],
    machine: &MachineModel,
    opts: &DoseOptions,
) -> Result<DoseCalculation> {
    influence_matrix_cancellable(ct, body, beams, machine, opts, &CancelToken::new())
}

/// [`influence_matrix`] that checks `cancel` before each beam and ends with
/// [`Error::Cancelled`] once it is set.
pub fn influence_matrix_cancellable(
    ct: &CtVolume,
    body: &Mask,
    beams: &[Beam],
    machine: &MachineModel,
    opts: &DoseOptions,
    cancel: &CancelToken,
) -> Result<DoseCalculation> {
    influence_matrix_with(ct, body, beams, machine, opts, cancel, &DepthOnly)
}

/// The kernel widths of the influence matrix at each voxel: the pencil beam's
/// ([`DepthOnly`], a function of the radiological depth) or a heterogeneous engine's
/// (`superposition`, also of the density around the ray).
pub(crate) trait MatrixWidths: Sync {
    /// Per-beam data (e.g. density tables) for the voxels in the isocentre-plane box
    /// `[ulo, uhi] x [vlo, vhi]` between `zmin` and `zmax` mm from the source.
    type PerBeam: Sync;
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &self,
        vol: &DensityVolume,
        frame: &BeamFrame,
        box_uv: [f64; 4],
        zmin: f64,
        zmax: f64,
        step: f64,
    ) -> Self::PerBeam;
    /// `1 / (sqrt2 sigma_i)` of each kernel term at LPS point `p` (beam coordinates `u`,
    /// `v`, `z`; radiological depth `d`); `per_beam` is `None` when no voxel of the beam
    /// was in the box.
    #[allow(clippy::too_many_arguments)]
    fn inv(
        &self,
        per_beam: Option<&Self::PerBeam>,
        kern: &Kernel,
        vol: &DensityVolume,
        frame: &BeamFrame,
        p: [f64; 3],
        uvz: [f64; 3],
        d: f64,
    ) -> [f64; MAX_COMPONENTS];
}

/// The pencil beam's widths: a function of the radiological depth only.
pub(crate) struct DepthOnly;

impl MatrixWidths for DepthOnly {
    type PerBeam = ();
    fn prepare(&self, _: &DensityVolume, _: &BeamFrame, _: [f64; 4], _: f64, _: f64, _: f64) {}
    #[inline]
    fn inv(
        &self,
        _: Option<&()>,
        kern: &Kernel,
        _: &DensityVolume,
        _: &BeamFrame,
        _: [f64; 3],
        _: [f64; 3],
        d: f64,
    ) -> [f64; MAX_COMPONENTS] {
        kern.inv_sqrt2_sigma(d)
    }
}

/// [`influence_matrix_cancellable`] with the kernel widths of `widths`.
pub(crate) fn influence_matrix_with<W: MatrixWidths>(
    ct: &CtVolume,
    body: &Mask,
    beams: &[Beam],
    machine: &MachineModel,
    opts: &DoseOptions,
    cancel: &CancelToken,
    widths: &W,
) -> Result<DoseCalculation> {
    let t_start = Instant::now();
    check_patient_position(ct)?;
    let n_cols = check_beams(beams)?;
    if opts
        .grid_spacing_mm
        .iter()
        .any(|s| !(s.is_finite() && *s > 0.0))
    {
        return Err(Error::Invalid(format!(
            "dose grid spacing must be positive, got {:?}",
            opts.grid_spacing_mm
        )));
    }
    if !(opts.lateral_cutoff_mm.is_finite() && opts.lateral_cutoff_mm >= 0.0) {
        return Err(Error::Invalid(format!(
            "lateral cutoff must be >= 0 mm, got {}",
            opts.lateral_cutoff_mm
        )));
    }
    if !(opts.relative_threshold.is_finite() && (0.0..1.0).contains(&opts.relative_threshold)) {
        return Err(Error::Invalid(format!(
            "relative threshold must lie in [0, 1), got {}",
            opts.relative_threshold
        )));
    }
    if ct.hu.len() != ct.grid.len() {
        return Err(Error::Invalid("CT HU array does not match its grid".into()));
    }
    let dose_grid = DoseGrid::covering(&ct.grid, opts.grid_spacing_mm, body);
    let n_rows = dose_grid.len();
    let kern = Kernel::new(machine);
    let vol = density_volume(ct, machine);
    let points = dose_grid.centres_mm();
    let cut = opts.lateral_cutoff_mm;
    let min_sp = opts
        .grid_spacing_mm
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min);
    let table_step = 0.5 * min_sp;
    const CHUNK: usize = 1024;

    let mut per_beam: Vec<Vec<ChunkOut>> = Vec::with_capacity(beams.len());
    for beam in beams {
        cancel.check("dose influence matrix")?;
        let ctx = BeamCtx::new(beam);
        // Peak dose of one beamlet: its central-axis maximum in water at SSD = SAD.
        let bx = beam.grid.size_x_mm;
        let by = beam.grid.size_y_mm;
        let peak = {
            let mut best = 0.0f64;
            for i in 1..=100 {
                let d = i as f64 * 0.5;
                let v = kern.field_dose(
                    d,
                    beam.sad_mm + d,
                    [-0.5 * bx, 0.5 * bx, -0.5 * by, 0.5 * by],
                    0.0,
                    0.0,
                );
                best = best.max(v);
            }
            best
        };
        let thr = opts.relative_threshold * peak;
        // Lateral range of the table: the beamlet grid plus the cutoff (plus one step).
        let g = &beam.grid;
        let ulo = ctx.ex0 - cut - table_step;
        let uhi = ctx.ex0 + g.nx as f64 * g.size_x_mm + cut + table_step;
        let vlo = ctx.ey0 - cut - table_step;
        let vhi = ctx.ey0 + g.ny as f64 * g.size_y_mm + cut + table_step;
        let (zmin, zmax) = points
            .par_iter()
            .map(|&p| {
                let q = ctx.frame.to_beam(LpsPoint(p));
                let (u, v) = (q.x_iso_mm, q.y_iso_mm);
                if u >= ulo && u <= uhi && v >= vlo && v <= vhi && q.z_mm > 0.0 {
                    (q.z_mm, q.z_mm)
                } else {
                    (f64::INFINITY, f64::NEG_INFINITY)
                }
            })
            .reduce(
                || (f64::INFINITY, f64::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            );
        let beam_widths = (zmin <= zmax).then(|| {
            widths.prepare(
                &vol,
                &ctx.frame,
                [ulo, uhi, vlo, vhi],
                zmin,
                zmax,
                table_step,
            )
        });
        let table = if zmin <= zmax {
            let nu = ((uhi - ulo) / table_step).ceil() as usize + 1;
            let nv = ((vhi - vlo) / table_step).ceil() as usize + 1;
            let z0 = zmin - table_step;
            let nz = ((zmax + table_step - z0) / table_step).ceil() as usize + 1;
            Some(DepthTable::build(
                &vol, &ctx.frame, ulo, vlo, table_step, nu, nv, z0, table_step, nz,
            ))
        } else {
            None
        };
        let chunks: Vec<ChunkOut> = points
            .par_chunks(CHUNK)
            .enumerate()
            .map_init(Scratch::new, |sc, (ci, pts)| {
                let mut out = ChunkOut {
                    counts: Vec::with_capacity(pts.len()),
                    cols: Vec::new(),
                    vals: Vec::new(),
                    kept_sampled: 0.0,
                    full_sampled: 0.0,
                };
                let mut row_entries: Vec<(u32, f32)> = Vec::new();
                for (k, &p) in pts.iter().enumerate() {
                    let row = ci * CHUNK + k;
                    let sampled = row % MASS_SAMPLE == 0;
                    let BeamPoint {
                        x_iso_mm: u,
                        y_iso_mm: v,
                        z_mm: z,
                    } = ctx.frame.to_beam(LpsPoint(p));
                    row_entries.clear();
                    if z > 0.0 {
                        let xr = BeamCtx::range(u, ctx.ex0, ctx.bx, ctx.nx, cut);
                        let yr = BeamCtx::range(v, ctx.ey0, ctx.by, ctx.ny, cut);
                        let in_range = xr.1 > xr.0 && yr.1 > yr.0;
                        let d = match &table {
                            Some(t) if in_range && t.covers(u, v) => t.sample(u, v, z),
                            _ if in_range || sampled => {
                                vol.radiological_length(ctx.frame.source_mm, p)
                            }
                            _ => 0.0,
                        };
                        let inv = if in_range || sampled {
                            widths.inv(
                                beam_widths.as_ref(),
                                &kern,
                                &vol,
                                &ctx.frame,
                                p,
                                [u, v, z],
                                d,
                            )
                        } else {
                            [0.0; MAX_COMPONENTS]
                        };
                        if in_range {
                            let c2 = cut * cut;
                            beam_point(
                                &kern,
                                &ctx,
                                u,
                                v,
                                z,
                                d,
                                &inv,
                                xr,
                                yr,
                                sc,
                                |c, val, ix, iy| {
                                    let xc = ctx.ex0 + (ix as f64 + 0.5) * ctx.bx;
                                    let yc = ctx.ey0 + (iy as f64 + 0.5) * ctx.by;
                                    let dx = ((u - xc).abs() - 0.5 * ctx.bx).max(0.0);
                                    let dy = ((v - yc).abs() - 0.5 * ctx.by).max(0.0);
                                    if dx * dx + dy * dy <= c2 && val >= thr && val > 0.0 {
                                        row_entries.push((c as u32, val as f32));
                                    }
                                },
                            );
                        }
                        if sampled {
                            let mut full = 0.0;
                            beam_point(
                                &kern,
                                &ctx,
                                u,
                                v,
                                z,
                                d,
                                &inv,
                                (0, ctx.nx),
                                (0, ctx.ny),
                                sc,
                                |_, val, _, _| full += val,
                            );
                            out.full_sampled += full;
                            out.kept_sampled += row_entries.iter().map(|e| e.1 as f64).sum::<f64>();
                        }
                    }
                    if row_entries.windows(2).any(|w| w[1].0 <= w[0].0) {
                        row_entries.sort_unstable_by_key(|e| e.0);
                    }
                    out.counts.push(row_entries.len() as u32);
                    for &(c, v) in &row_entries {
                        out.cols.push(c);
                        out.vals.push(v);
                    }
                }
                out
            })
            .collect();
        per_beam.push(chunks);
    }

    // Assemble CSR: each row is the concatenation of the beams' entries (beam order =
    // column order, so rows stay sorted).
    let mut kept = 0.0;
    let mut full = 0.0;
    let mut row_ptr = vec![0usize; n_rows + 1];
    for chunks in &per_beam {
        let mut r = 0usize;
        for ch in chunks {
            kept += ch.kept_sampled;
            full += ch.full_sampled;
            for &c in &ch.counts {
                row_ptr[r + 1] += c as usize;
                r += 1;
            }
        }
    }
    for r in 0..n_rows {
        row_ptr[r + 1] += row_ptr[r];
    }
    let nnz = row_ptr[n_rows];
    let mut cols = vec![0u32; nnz];
    let mut vals = vec![0f32; nnz];
    let mut next = row_ptr.clone();
    for chunks in per_beam {
        let mut r = 0usize;
        for ch in chunks {
            let mut k = 0usize;
            for &c in &ch.counts {
                let c = c as usize;
                let dst = next[r];
                cols[dst..dst + c].copy_from_slice(&ch.cols[k..k + c]);
                vals[dst..dst + c].copy_from_slice(&ch.vals[k..k + c]);
                next[r] += c;
                k += c;
                r += 1;
            }
        }
    }
    let matrix = InfluenceMatrix::from_csr(n_rows, n_cols, row_ptr, cols, vals);
    let truncated_mass_fraction = if full > 0.0 {
        (1.0 - kept / full).max(0.0)
    } else {
        0.0
    };
    Ok(DoseCalculation {
        dose_grid,
        matrix,
        truncated_mass_fraction,
        build_seconds: t_start.elapsed().as_secs_f64(),
    })
}
