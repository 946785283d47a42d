//! The photon pencil-beam kernel: Bortfeld-style depth terms times Gaussian lateral kernels,
//! integrated analytically over square beamlets (`docs/dose.md`).
//!
//! Dose per MU from one beamlet (square of side `b` centred at `(u0, v0)` in the isocentre
//! plane) at a point with isocentre-plane coordinates `(u, v)`, distance `z` from the source
//! along the central axis and radiological depth `d`:
//!
//! ```text
//! D = c (SAD/z)^2 sum_i D_i(d) S_i(u - u0) S_i(v - v0)
//! D_i(d) = w_i beta_i/(beta_i - mu) (exp(-mu d) - exp(-beta_i d))        (Bortfeld 1993, eq. 17)
//! S_i(x) = 0.5 [erf((x + b/2)/(sqrt2 s_i)) - erf((x - b/2)/(sqrt2 s_i))]
//! s_i(d) = sigma_iso_i + slope_i d
//! ```
//!
//! `mu` is the attenuation coefficient of the primary fluence (1/mm,
//! [`crate::machine::PencilBeamModel::attenuation_per_mm`]), not monitor units.
//! `c` is fixed by the machine calibration (Gy/MU at dmax, reference field, reference SSD).
// Index loops mirror the formulas; negated comparisons deliberately reject NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use crate::machine::MachineModel;

/// Largest number of kernel terms the engine evaluates: the machine file's components
/// ([`crate::machine::MAX_KERNEL_COMPONENTS`]), an extra-focal twin of each, and two
/// electron-contamination terms (beam model v2).
pub const MAX_COMPONENTS: usize = 2 * crate::machine::MAX_KERNEL_COMPONENTS + 2;

/// A pencil-beam kernel ready for evaluation (calibrated).
#[derive(Debug, Clone)]
pub struct Kernel {
    pub n: usize,
    /// Attenuation coefficient of the primary fluence, 1/mm (`mu` in the formulas above).
    pub attenuation_per_mm: f64,
    pub weight: [f64; MAX_COMPONENTS],
    pub beta: [f64; MAX_COMPONENTS],
    pub sigma0: [f64; MAX_COMPONENTS],
    pub slope: [f64; MAX_COMPONENTS],
    /// Terms whose depth function is `w exp(-beta d)` (contamination electrons) instead of
    /// Bortfeld's.
    pub electron: [bool; MAX_COMPONENTS],
    /// Extra-focal source (weight, sigma in the isocentre plane, mm); weight 0: none.
    pub extra_focal: (f64, f64),
    /// Source-axis distance, mm.
    pub sad_mm: f64,
    /// Gy per MU per unit of the relative model (`c` above).
    pub gy_per_mu_scale: f64,
}

impl Kernel {
    /// Build from a machine model and compute the absolute calibration factor.
    pub fn new(m: &MachineModel) -> Kernel {
        let mut k = Kernel::uncalibrated(m);
        let cal = &m.calibration;
        let (_, peak) = k.open_field_dmax(cal.field_mm, cal.ssd_mm);
        k.gy_per_mu_scale = if peak > 0.0 {
            cal.dose_gy_per_mu / peak
        } else {
            0.0
        };
        k
    }

    /// Same kernel with scale 1 (relative units), for fitting.
    pub fn uncalibrated(m: &MachineModel) -> Kernel {
        let bm = &m.beam_model;
        let n = bm.components.len().min(MAX_COMPONENTS);
        let mut k = Kernel {
            n,
            attenuation_per_mm: bm.attenuation_per_mm,
            weight: [0.0; MAX_COMPONENTS],
            beta: [1.0; MAX_COMPONENTS],
            sigma0: [1.0; MAX_COMPONENTS],
            slope: [0.0; MAX_COMPONENTS],
            electron: [false; MAX_COMPONENTS],
            extra_focal: (0.0, 1.0),
            sad_mm: m.sad_mm,
            gy_per_mu_scale: 1.0,
        };
        for (i, c) in bm.components.iter().take(n).enumerate() {
            k.weight[i] = c.weight;
            k.beta[i] = c.beta_per_mm;
            k.sigma0[i] = c.sigma_iso_mm;
            k.slope[i] = c.sigma_slope;
        }
        // Beam model v2. Extra-focal source: each term gets a twin carrying the source's
        // fluence, whose width adds in quadrature at zero depth (the slope is scaled so that
        // sigma(d) keeps its first-order growth of sqrt(s0^2 + s_ef^2 + ...)).
        if let Some(ef) = &bm.extra_focal {
            if ef.weight > 0.0 {
                k.extra_focal = (ef.weight, ef.sigma_iso_mm);
                for i in 0..n {
                    let j = k.n;
                    let s0 = k.sigma0[i].hypot(ef.sigma_iso_mm);
                    k.weight[j] = k.weight[i] * ef.weight;
                    k.beta[j] = k.beta[i];
                    k.sigma0[j] = s0;
                    k.slope[j] = k.slope[i] * k.sigma0[i] / s0;
                    k.n += 1;
                }
            }
        }
        if let Some(e) = &bm.electron_contamination {
            let narrow = if n > 0 { k.sigma0[0] } else { 1.0 };
            for (w, s0) in [(e.weight_narrow, narrow), (e.weight_wide, e.sigma_wide_mm)] {
                if w > 0.0 {
                    let j = k.n;
                    k.weight[j] = w;
                    k.beta[j] = e.decay_per_mm;
                    k.sigma0[j] = s0;
                    k.slope[j] = 0.0;
                    k.electron[j] = true;
                    k.n += 1;
                }
            }
        }
        k
    }

    /// In-air output ratio Sc of a square field of side `field_mm` (at the isocentre)
    /// relative to 10 x 10 (AAPM TG-74's definition: primary collision kerma in free space per
    /// MU, on the axis): `(1 + w A(F)) / (1 + w A(100))`, `A(F) = erf(F / (2 sqrt2 s))^2` the
    /// part of the extra-focal source seen through the aperture. 1 without the source.
    pub fn in_air_output_ratio(&self, field_mm: f64) -> f64 {
        let (w, s) = self.extra_focal;
        let a = |f: f64| libm::erf(0.5 * f / (std::f64::consts::SQRT_2 * s)).powi(2);
        (1.0 + w * a(field_mm)) / (1.0 + w * a(100.0))
    }

    /// Depth terms `D_i(d)` (times the calibration scale) at radiological depth `d_mm`.
    #[inline]
    pub fn depth_terms(&self, d_mm: f64) -> [f64; MAX_COMPONENTS] {
        let d = d_mm.max(0.0);
        let e_mu = (-self.attenuation_per_mm * d).exp();
        let mut out = [0.0; MAX_COMPONENTS];
        for i in 0..self.n {
            let b = self.beta[i];
            out[i] = if self.electron[i] {
                self.gy_per_mu_scale * self.weight[i] * (-b * d).exp()
            } else {
                self.gy_per_mu_scale * self.weight[i] * b / (b - self.attenuation_per_mm)
                    * (e_mu - (-b * d).exp())
            };
        }
        out
    }

    /// `1 / (sqrt(2) sigma_i(d))` for each component.
    #[inline]
    pub fn inv_sqrt2_sigma(&self, d_mm: f64) -> [f64; MAX_COMPONENTS] {
        let d = d_mm.max(0.0);
        let mut out = [0.0; MAX_COMPONENTS];
        for i in 0..self.n {
            out[i] = 1.0 / (std::f64::consts::SQRT_2 * (self.sigma0[i] + self.slope[i] * d));
        }
        out
    }

    /// Dose (model units times scale) at `(u, v)` in the isocentre plane, distance `z_mm`
    /// from the source and radiological depth `d_mm`, from a uniform rectangular field
    /// `[x1, x2] x [y1, y2]` (mm at the isocentre) of unit fluence. Exact: the erf
    /// integrals of adjoining beamlets telescope into the field's.
    pub fn field_dose(&self, d_mm: f64, z_mm: f64, field: [f64; 4], u: f64, v: f64) -> f64 {
        let dt = self.depth_terms(d_mm);
        let k = self.inv_sqrt2_sigma(d_mm);
        let isq = (self.sad_mm / z_mm).powi(2);
        let mut s = 0.0;
        for i in 0..self.n {
            let sx = 0.5 * (libm::erf((u - field[0]) * k[i]) - libm::erf((u - field[1]) * k[i]));
            let sy = 0.5 * (libm::erf((v - field[2]) * k[i]) - libm::erf((v - field[3]) * k[i]));
            s += dt[i] * sx * sy;
        }
        s * isq
    }

    /// Central-axis dose of a centred square field of side `field_mm` (at the isocentre) in
    /// water at source-surface distance `ssd_mm`, at depth `d_mm`.
    pub fn square_field_cax(&self, field_mm: f64, ssd_mm: f64, d_mm: f64) -> f64 {
        let h = 0.5 * field_mm;
        self.field_dose(d_mm, ssd_mm + d_mm, [-h, h, -h, h], 0.0, 0.0)
    }

    /// Depth (mm) and value of the central-axis maximum of a square field in water
    /// (golden-section refinement of a 1 mm scan over 1..100 mm).
    pub fn open_field_dmax(&self, field_mm: f64, ssd_mm: f64) -> (f64, f64) {
        let f = |d: f64| self.square_field_cax(field_mm, ssd_mm, d);
        let mut best = (0.0, f64::NEG_INFINITY);
        for i in 1..=100 {
            let d = i as f64;
            let v = f(d);
            if v > best.1 {
                best = (d, v);
            }
        }
        let (mut a, mut b) = ((best.0 - 1.0).max(0.0), best.0 + 1.0);
        let g = 0.5 * (5f64.sqrt() - 1.0);
        for _ in 0..30 {
            let c = b - g * (b - a);
            let d = a + g * (b - a);
            if f(c) > f(d) {
                b = d;
            } else {
                a = c;
            }
        }
        let d = 0.5 * (a + b);
        (d, f(d))
    }
}

/// Lateral factors of consecutive beamlets along one axis: for edges
/// `e_k = e0 + k b` (`k = 0..=n`), `out[i][k] = 0.5 (erf((x - e_k) k_i) - erf((x - e_{k+1}) k_i))`
/// for `k = 0..n`, using `scratch` (len >= n + 1) for the edge values.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn lateral_factors(
    kern: &Kernel,
    inv: &[f64; MAX_COMPONENTS],
    x: f64,
    e0: f64,
    b: f64,
    n: usize,
    scratch: &mut Vec<f64>,
    out: &mut [Vec<f64>; MAX_COMPONENTS],
) {
    for i in 0..kern.n {
        scratch.clear();
        for k in 0..=n {
            scratch.push(libm::erf((x - (e0 + k as f64 * b)) * inv[i]));
        }
        let o = &mut out[i];
        o.clear();
        for k in 0..n {
            o.push(0.5 * (scratch[k] - scratch[k + 1]));
        }
    }
}
