//! Beams and beamlets (matRad's `stf` step).
//!
//! Angles follow IEC 61217: gantry, collimator and patient-support (couch) angles in degrees.
//! Beamlet positions are in the beam-limiting-device (BLD) frame projected to the isocentre
//! plane: `x` along leaf travel (the X jaws), `y` across leaf pairs (the Y jaws), mm.
// Index loops mirror the formulas; negated comparisons deliberately reject NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{Point3, Rotation3, Vector3};
use serde::{Deserialize, Serialize};

/// The regular beamlet (bixel) grid of one beam, in the isocentre plane.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BeamletGrid {
    /// Beamlet width along x (leaf travel), mm at the isocentre.
    pub size_x_mm: f64,
    /// Beamlet height along y (across leaves), mm at the isocentre; equals the leaf width.
    pub size_y_mm: f64,
    /// Columns (x) and rows (y) of the grid.
    pub nx: usize,
    pub ny: usize,
    /// Centre of beamlet (0, 0), mm in the isocentre plane (BLD frame).
    pub x0_mm: f64,
    pub y0_mm: f64,
}

impl BeamletGrid {
    /// Centre of beamlet `(ix, iy)`, mm in the isocentre plane.
    pub fn centre_mm(&self, ix: usize, iy: usize) -> [f64; 2] {
        [
            self.x0_mm + ix as f64 * self.size_x_mm,
            self.y0_mm + iy as f64 * self.size_y_mm,
        ]
    }
}

/// One beamlet: a column of the influence matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Beamlet {
    /// Index of the beam in the plan (0-based).
    pub beam: usize,
    /// Position in the beam's [`BeamletGrid`].
    pub ix: usize,
    pub iy: usize,
}

/// A treatment beam (static gantry, step-and-shoot IMRT).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Beam {
    /// Beam number in the plan (1-based, as in DICOM BeamNumber).
    pub number: usize,
    pub name: String,
    /// IEC 61217 gantry angle, degrees.
    pub gantry_deg: f64,
    /// IEC 61217 patient-support (couch) angle, degrees.
    pub couch_deg: f64,
    /// IEC 61217 beam-limiting-device (collimator) angle, degrees.
    pub collimator_deg: f64,
    /// Isocentre in DICOM patient coordinates (LPS, mm).
    pub isocenter_mm: [f64; 3],
    /// Source-axis distance, mm.
    pub sad_mm: f64,
    /// The beamlet grid.
    pub grid: BeamletGrid,
    /// Active beamlets `(ix, iy)`, in column order of the influence matrix.
    pub beamlets: Vec<[usize; 2]>,
    /// Column of the influence matrix holding this beam's first beamlet.
    pub first_column: usize,
}

use crate::error::{Error, Result};
use crate::geometry::Mask;
use crate::machine::MachineModel;

/// Fluence of one beam on its beamlet grid, MU per fraction, row-major (`mu[iy * nx + ix]`),
/// zero at inactive beamlets: the one fluence representation the optimiser reports and the
/// sequencer stratifies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FluenceMap {
    pub beam_number: usize,
    pub nx: usize,
    pub ny: usize,
    pub mu: Vec<f64>,
}

impl FluenceMap {
    /// The map of `beam` from plan-wide beamlet weights (columns `first_column..`). Errors
    /// name the beam: too few weights, a beamlet outside the grid, a weight that is not a
    /// finite number >= 0.
    pub fn of(beam: &Beam, weights_mu: &[f64]) -> Result<FluenceMap> {
        let g = &beam.grid;
        let end = beam.first_column + beam.beamlets.len();
        if end > weights_mu.len() {
            return Err(Error::Invalid(format!(
                "beam {} needs weights up to column {end}, only {} given",
                beam.number,
                weights_mu.len()
            )));
        }
        let mut mu = vec![0.0; g.nx * g.ny];
        for (k, &[ix, iy]) in beam.beamlets.iter().enumerate() {
            if ix >= g.nx || iy >= g.ny {
                return Err(Error::Invalid(format!(
                    "beam {}: beamlet ({ix}, {iy}) outside its {}x{} grid",
                    beam.number, g.nx, g.ny
                )));
            }
            let w = weights_mu[beam.first_column + k];
            if !w.is_finite() || w < 0.0 {
                return Err(Error::Invalid(format!(
                    "beam {}: beamlet ({ix}, {iy}) has weight {w}; weights must be finite and >= 0",
                    beam.number
                )));
            }
            mu[iy * g.nx + ix] = w;
        }
        Ok(FluenceMap {
            beam_number: beam.number,
            nx: g.nx,
            ny: g.ny,
            mu,
        })
    }

    /// Row `iy` (one leaf-pair direction line), MU per beamlet.
    pub fn row(&self, iy: usize) -> &[f64] {
        &self.mu[iy * self.nx..(iy + 1) * self.nx]
    }

    /// The rows, `iy` ascending.
    pub fn rows(&self) -> impl Iterator<Item = &[f64]> {
        self.mu.chunks(self.nx.max(1)).take(self.ny)
    }

    /// Largest beamlet weight, MU (0 for an empty map).
    pub fn max_mu(&self) -> f64 {
        self.mu.iter().fold(0.0f64, |m, &v| m.max(v))
    }
}

/// Orthonormal beam frame in LPS: source position and BLD axes (IEC 61217, HFS).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamFrame {
    /// Source position, LPS mm.
    pub source_mm: [f64; 3],
    /// Unit vector of the central axis, source -> isocentre (LPS).
    pub axis: [f64; 3],
    /// BLD x axis (leaf travel, X jaws), LPS unit vector.
    pub x_axis: [f64; 3],
    /// BLD y axis (across leaves, Y jaws), LPS unit vector.
    pub y_axis: [f64; 3],
    /// Source-axis distance, mm.
    pub sad_mm: f64,
}

#[inline]
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

impl BeamFrame {
    /// Beam frame for IEC 61217 gantry, couch and collimator angles (degrees), HFS patient.
    ///
    /// HFS: IEC fixed X = LPS +x, Y = LPS +z, Z = LPS -y. At couch 0 the source sits at
    /// `iso + SAD (sin g, -cos g, 0)` (gantry 0 anterior, 90 patient left); the BLD x axis is
    /// `(cos g, sin g, 0)` and the BLD y axis LPS +z (towards the gantry). The collimator
    /// turns the BLD axes right-handedly about the axis pointing to the source
    /// (counter-clockwise seen from the source). The couch angle turns the patient
    /// counter-clockwise seen from above (about IEC Z), i.e. the beam turns about LPS +y by
    /// the couch angle in patient coordinates.
    pub fn new(
        gantry_deg: f64,
        couch_deg: f64,
        collimator_deg: f64,
        isocenter_mm: [f64; 3],
        sad_mm: f64,
    ) -> BeamFrame {
        let r = Self::rotation(gantry_deg, couch_deg, collimator_deg);
        let ex = r * Vector3::x();
        let ey = r * Vector3::z();
        let to_source = r * -Vector3::y();
        let source = Point3::from(isocenter_mm) + sad_mm * to_source;
        BeamFrame {
            source_mm: source.into(),
            axis: (-to_source).into(),
            x_axis: ex.into(),
            y_axis: ey.into(),
            sad_mm,
        }
    }

    /// The rotation that takes the gantry-0 beam limiting device frame (BLD x = LPS +x, BLD
    /// y = LPS +z, towards the source = LPS -y) to this beam's, in LPS (HFS):
    /// `R_y(couch) R_z(gantry) R_{-y}(collimator)`. The collimator turns about the direction
    /// to the source, the gantry about the patient's long axis (IEC Y = LPS +z), the couch
    /// about the vertical (IEC Z = LPS -y, i.e. +y by the couch angle in patient coordinates).
    pub fn rotation(gantry_deg: f64, couch_deg: f64, collimator_deg: f64) -> Rotation3<f64> {
        Rotation3::from_axis_angle(&Vector3::y_axis(), couch_deg.to_radians())
            * Rotation3::from_axis_angle(&Vector3::z_axis(), gantry_deg.to_radians())
            * Rotation3::from_axis_angle(&-Vector3::y_axis(), collimator_deg.to_radians())
    }

    /// A patient point in this beam's frame: BLD coordinates projected to the isocentre plane
    /// (scaled by SAD / z) and the distance from the source along the central axis. Points at
    /// or behind the source (z <= 0) give non-finite lateral values.
    #[inline]
    pub fn to_beam(&self, p: LpsPoint) -> BeamPoint {
        let p = p.0;
        let r = [
            p[0] - self.source_mm[0],
            p[1] - self.source_mm[1],
            p[2] - self.source_mm[2],
        ];
        let z = dot(r, self.axis);
        let s = self.sad_mm / z;
        BeamPoint {
            x_iso_mm: dot(r, self.x_axis) * s,
            y_iso_mm: dot(r, self.y_axis) * s,
            z_mm: z,
        }
    }

    /// Inverse of [`BeamFrame::to_beam`].
    #[inline]
    pub fn to_lps(&self, b: BeamPoint) -> LpsPoint {
        let s = b.z_mm / self.sad_mm;
        let mut p = [0.0; 3];
        for a in 0..3 {
            p[a] = self.source_mm[a]
                + s * (self.sad_mm * self.axis[a]
                    + b.x_iso_mm * self.x_axis[a]
                    + b.y_iso_mm * self.y_axis[a]);
        }
        LpsPoint(p)
    }
}

/// A point in DICOM patient coordinates (LPS), mm: the frame of the CT, the structures and
/// the dose grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LpsPoint(pub [f64; 3]);

/// A point in a beam's frame (IEC 61217 beam limiting device, divergent): lateral
/// coordinates projected to the isocentre plane and the distance from the source along the
/// central axis. Only [`BeamFrame::to_beam`] makes one from an [`LpsPoint`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamPoint {
    /// BLD x (leaf travel), mm at the isocentre plane.
    pub x_iso_mm: f64,
    /// BLD y (across leaves), mm at the isocentre plane.
    pub y_iso_mm: f64,
    /// Distance from the source along the central axis, mm.
    pub z_mm: f64,
}

impl Beam {
    /// Source-to-surface distance along the central axis, mm: from the source to the first
    /// voxel of `body` (nearest-voxel membership) the axis enters, found by marching at a
    /// quarter of the smallest voxel spacing and refined by bisection to 0.01 mm. `None` when
    /// the axis misses the body within twice the SAD.
    pub fn ssd_mm(&self, body: &Mask) -> Option<f64> {
        let f = self.frame();
        let g = &body.grid;
        let inside = |t: f64| -> bool {
            let p = [
                f.source_mm[0] + t * f.axis[0],
                f.source_mm[1] + t * f.axis[1],
                f.source_mm[2] + t * f.axis[2],
            ];
            let c = g.continuous_index(p);
            let mut ijk = [0usize; 3];
            for a in 0..3 {
                let r = c[a].round();
                if !(r >= 0.0 && r < g.dims[a] as f64) {
                    return false;
                }
                ijk[a] = r as usize;
            }
            body.inside[g.index(ijk[0], ijk[1], ijk[2])]
        };
        let step = g.spacing_mm.iter().cloned().fold(f64::INFINITY, f64::min) / 4.0;
        if !(step.is_finite() && step > 0.0) {
            return None;
        }
        let mut t = 0.0;
        while t <= 2.0 * self.sad_mm {
            if inside(t) {
                let (mut lo, mut hi) = ((t - step).max(0.0), t);
                while hi - lo > 0.01 {
                    let m = 0.5 * (lo + hi);
                    if inside(m) {
                        hi = m;
                    } else {
                        lo = m;
                    }
                }
                return Some((hi * 10.0).round() / 10.0);
            }
            t += step;
        }
        None
    }

    /// The beam frame (source and BLD axes in LPS).
    pub fn frame(&self) -> BeamFrame {
        BeamFrame::new(
            self.gantry_deg,
            self.couch_deg,
            self.collimator_deg,
            self.isocenter_mm,
            self.sad_mm,
        )
    }

    /// Source position, LPS mm (HFS).
    pub fn source_mm(&self) -> [f64; 3] {
        self.frame().source_mm
    }

    /// A patient point in this beam's frame ([`BeamFrame::to_beam`]).
    pub fn lps_to_beam(&self, p: LpsPoint) -> BeamPoint {
        self.frame().to_beam(p)
    }

    /// Inverse of [`Beam::lps_to_beam`].
    pub fn beam_to_lps(&self, b: BeamPoint) -> LpsPoint {
        self.frame().to_lps(b)
    }

    /// Number of active beamlets (columns of the influence matrix).
    pub fn n_beamlets(&self) -> usize {
        self.beamlets.len()
    }
}

/// How to place beams and beamlets around a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeamSetup {
    /// IEC 61217 gantry angles, degrees (one beam each).
    pub gantry_deg: Vec<f64>,
    /// IEC 61217 couch angle, degrees (all beams).
    pub couch_deg: f64,
    /// IEC 61217 collimator angle, degrees (all beams).
    pub collimator_deg: f64,
    /// Isocentre, LPS mm (default: the target centroid).
    pub isocenter_mm: Option<[f64; 3]>,
    /// Beamlet size at the isocentre, mm (square).
    pub beamlet_size_mm: f64,
    /// Margin around the target's beam's-eye-view projection, mm at the isocentre.
    pub margin_mm: f64,
}

impl Default for BeamSetup {
    /// Nine equispaced coplanar beams (0, 40, ..., 320), 5 mm beamlets, 5 mm margin.
    fn default() -> Self {
        BeamSetup {
            gantry_deg: (0..9).map(|i| 40.0 * i as f64).collect(),
            couch_deg: 0.0,
            collimator_deg: 0.0,
            isocenter_mm: None,
            beamlet_size_mm: 5.0,
            margin_mm: 5.0,
        }
    }
}

/// Place one beam per gantry angle with a beamlet grid covering the target's
/// beam's-eye-view projection plus `margin_mm`.
///
/// The grid edges lie on multiples of the beamlet size at the isocentre, so with 5 mm
/// beamlets every MLC leaf boundary of the default machine (multiples of 5 mm) is a row
/// edge. Beamlets are ordered row by row (`iy` outer, `ix` inner); `first_column` counts
/// cumulatively over the beams. Only HFS geometry is modelled (see [`BeamFrame::new`]).
/// Two gantry angles closer than this (degrees) are the same beam.
pub const DUPLICATE_BEAM_TOLERANCE_DEG: f64 = 0.1;

/// Check a beam arrangement's IEC 61217 angles: each a finite number in [0, 360) degrees (the
/// range DICOM RT Plan's GantryAngle (300A,011E), PatientSupportAngle (300A,0122) and
/// BeamLimitingDeviceAngle (300A,0120) take), and no gantry angle twice (within
/// [`DUPLICATE_BEAM_TOLERANCE_DEG`]; couch and collimator are shared by all beams). The error
/// names the offending angle.
pub fn check_angles(
    gantry_deg: &[f64],
    couch_deg: f64,
    collimator_deg: f64,
) -> std::result::Result<(), String> {
    let in_range = |what: &str, a: f64| {
        if a.is_finite() && (0.0..360.0).contains(&a) {
            Ok(())
        } else {
            Err(format!(
                "{what} angle {a} deg is outside [0, 360) (IEC 61217); write e.g. 350 for -10"
            ))
        }
    };
    for &g in gantry_deg {
        in_range("gantry", g)?;
    }
    in_range("couch", couch_deg)?;
    in_range("collimator", collimator_deg)?;
    for (i, &a) in gantry_deg.iter().enumerate() {
        for &b in gantry_deg.iter().skip(i + 1) {
            let diff = (a - b).abs();
            if diff.min(360.0 - diff) < DUPLICATE_BEAM_TOLERANCE_DEG {
                return Err(format!(
                    "gantry angles {a} and {b} deg are the same beam (duplicate beams are refused)"
                ));
            }
        }
    }
    Ok(())
}

pub fn setup_beams(target: &Mask, setup: &BeamSetup, machine: &MachineModel) -> Result<Vec<Beam>> {
    let b = setup.beamlet_size_mm;
    if !(b.is_finite() && b > 0.0) {
        return Err(Error::Invalid(format!(
            "beamlet size must be a positive number of mm, got {b}"
        )));
    }
    if !(setup.margin_mm.is_finite() && setup.margin_mm >= 0.0) {
        return Err(Error::Invalid(format!(
            "beamlet margin must be >= 0 mm, got {}",
            setup.margin_mm
        )));
    }
    if setup.gantry_deg.is_empty() {
        return Err(Error::Invalid("no gantry angle given".into()));
    }
    check_angles(&setup.gantry_deg, setup.couch_deg, setup.collimator_deg)
        .map_err(|reason| Error::Invalid(format!("beam arrangement: {reason}")))?;
    let iso = match setup.isocenter_mm {
        Some(i) => i,
        None => target
            .centroid_mm()
            .ok_or_else(|| Error::Invalid("target mask is empty: cannot place beams".into()))?,
    };
    let pts: Vec<[f64; 3]> = target
        .inside
        .iter()
        .enumerate()
        .filter(|(_, &v)| v)
        .map(|(idx, _)| {
            let [i, j, k] = target.grid.ijk(idx);
            target.grid.centre_mm(i, j, k)
        })
        .collect();
    if pts.is_empty() {
        return Err(Error::Invalid(
            "target mask is empty: cannot place beamlets".into(),
        ));
    }
    let mut beams = Vec::with_capacity(setup.gantry_deg.len());
    let mut first_column = 0usize;
    for (n, &g) in setup.gantry_deg.iter().enumerate() {
        let frame = BeamFrame::new(
            g,
            setup.couch_deg,
            setup.collimator_deg,
            iso,
            machine.sad_mm,
        );
        let proj: Vec<[f64; 2]> = pts
            .iter()
            .map(|&p| {
                let q = frame.to_beam(LpsPoint(p));
                [q.x_iso_mm, q.y_iso_mm]
            })
            .collect();
        let m = setup.margin_mm;
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for q in &proj {
            for a in 0..2 {
                lo[a] = lo[a].min(q[a] - m);
                hi[a] = hi[a].max(q[a] + m);
            }
        }
        // Grid edges on multiples of b.
        let e0 = [(lo[0] / b).floor(), (lo[1] / b).floor()];
        let nx = (((hi[0] / b).ceil() - e0[0]) as usize).max(1);
        let ny = (((hi[1] / b).ceil() - e0[1]) as usize).max(1);
        let mut active = vec![false; nx * ny];
        for q in &proj {
            let ix0 = (((q[0] - m) / b).floor() - e0[0]).max(0.0) as usize;
            let ix1 = ((((q[0] + m) / b).ceil() - e0[0]) as usize).min(nx);
            let iy0 = (((q[1] - m) / b).floor() - e0[1]).max(0.0) as usize;
            let iy1 = ((((q[1] + m) / b).ceil() - e0[1]) as usize).min(ny);
            for iy in iy0..iy1 {
                let y_lo = (e0[1] + iy as f64) * b;
                let dy = (y_lo - q[1]).max(q[1] - (y_lo + b)).max(0.0);
                for ix in ix0..ix1 {
                    let x_lo = (e0[0] + ix as f64) * b;
                    let dx = (x_lo - q[0]).max(q[0] - (x_lo + b)).max(0.0);
                    if dx * dx + dy * dy <= m * m + 1e-9 {
                        active[iy * nx + ix] = true;
                    }
                }
            }
        }
        let grid = BeamletGrid {
            size_x_mm: b,
            size_y_mm: b,
            nx,
            ny,
            x0_mm: (e0[0] + 0.5) * b,
            y0_mm: (e0[1] + 0.5) * b,
        };
        let beamlets: Vec<[usize; 2]> = (0..ny)
            .flat_map(|iy| (0..nx).map(move |ix| [ix, iy]))
            .filter(|&[ix, iy]| active[iy * nx + ix])
            .collect();
        let nb = beamlets.len();
        beams.push(Beam {
            number: n + 1,
            name: format!("G{:03.0}", g.rem_euclid(360.0)),
            gantry_deg: g,
            couch_deg: setup.couch_deg,
            collimator_deg: setup.collimator_deg,
            isocenter_mm: iso,
            sad_mm: machine.sad_mm,
            grid,
            beamlets,
            first_column,
        });
        first_column += nb;
    }
    Ok(beams)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(b: BeamPoint) -> [f64; 3] {
        [b.x_iso_mm, b.y_iso_mm, b.z_mm]
    }

    fn close(a: [f64; 3], b: [f64; 3], tol: f64) -> bool {
        (0..3).all(|i| (a[i] - b[i]).abs() < tol)
    }

    #[test]
    fn source_positions_iec61217_hfs() {
        let iso = [10.0, -20.0, 30.0];
        let f = |g| BeamFrame::new(g, 0.0, 0.0, iso, 1000.0).source_mm;
        // gantry 0: anterior (LPS -y); 90: patient left (+x); 180: posterior; 270: right.
        assert!(close(f(0.0), [10.0, -1020.0, 30.0], 1e-9));
        assert!(close(f(90.0), [1010.0, -20.0, 30.0], 1e-9));
        assert!(close(f(180.0), [10.0, 980.0, 30.0], 1e-9));
        assert!(close(f(270.0), [-990.0, -20.0, 30.0], 1e-9));
    }

    #[test]
    fn bld_axes_and_round_trip() {
        let fr = BeamFrame::new(90.0, 0.0, 0.0, [0.0; 3], 1000.0);
        assert!(close(fr.x_axis, [0.0, 1.0, 0.0], 1e-12));
        assert!(close(fr.y_axis, [0.0, 0.0, 1.0], 1e-12));
        // Right-handed BLD frame: x cross y points to the source.
        let fr0 = BeamFrame::new(0.0, 0.0, 0.0, [0.0; 3], 1000.0);
        let z = [
            fr0.x_axis[1] * fr0.y_axis[2] - fr0.x_axis[2] * fr0.y_axis[1],
            fr0.x_axis[2] * fr0.y_axis[0] - fr0.x_axis[0] * fr0.y_axis[2],
            fr0.x_axis[0] * fr0.y_axis[1] - fr0.x_axis[1] * fr0.y_axis[0],
        ];
        assert!(close(z, [0.0, -1.0, 0.0], 1e-12));
        for &(g, c, k) in &[(0.0, 0.0, 0.0), (37.0, 15.0, 290.0), (200.0, 350.0, 45.0)] {
            let fr = BeamFrame::new(g, c, k, [5.0, 6.0, 7.0], 1000.0);
            let p = [42.0, -17.0, 88.0];
            let q = fr.to_beam(LpsPoint(p));
            assert!(close(fr.to_lps(q).0, p, 1e-9));
            // The isocentre maps to (0, 0, SAD).
            assert!(close(
                arr(fr.to_beam(LpsPoint([5.0, 6.0, 7.0]))),
                [0.0, 0.0, 1000.0],
                1e-9
            ));
        }
        // A point 10 mm towards patient left at gantry 0 projects to x_iso = +10 mm at iso
        // depth and to 10 * 1000/1100 at 100 mm beyond the isocentre.
        let q = arr(fr0.to_beam(LpsPoint([10.0, 100.0, 0.0])));
        assert!(close(q, [10.0 * 1000.0 / 1100.0, 0.0, 1100.0], 1e-9));
        // Collimator 90: BLD x axis turns onto the old y axis (LPS +z).
        let fr = BeamFrame::new(0.0, 0.0, 90.0, [0.0; 3], 1000.0);
        assert!(close(fr.x_axis, [0.0, 0.0, 1.0], 1e-12));
        // Couch 90 with gantry 90: source moves from patient left towards the feet (-z).
        let fr = BeamFrame::new(90.0, 90.0, 0.0, [0.0; 3], 1000.0);
        assert!(close(fr.source_mm, [0.0, 0.0, -1000.0], 1e-9));
    }
}
