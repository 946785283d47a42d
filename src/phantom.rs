//! Digital water phantoms built in memory: TG-119's C-shape geometry ([`c_shape`]) and a
//! prostate-like pelvis with two organs at risk ([`prostate`]), for the crate's doctests,
//! for an embedder's smoke test of the whole pipeline in a second, and for checks that need a
//! known geometry of a second shape. Not patients and not TG-119's published CT (that one
//! ships as DICOM in `data/tg119`).
//!
//! C-shape:
//! Geometry (LPS, mm, the origin at the centre): a water cylinder of radius 60 mm along the
//! patient axis z, 60 mm long (BODY, EXTERNAL, 0 HU); a core cylinder r <= 10 mm (Core,
//! ORGAN); the target annulus 15 mm <= r <= 37 mm without the 30 mm wide gap towards
//! anterior (-y), so that it wraps the core like TG-119's C-shape (OuterTarget, PTV); both
//! 40 mm long. Voxels are cubes of `voxel_mm`.

use crate::case::Case;
use crate::ct::{CtMeta, CtVolume};
use crate::geometry::{Grid3, Mask};
use crate::structures::{Roi, RoiType, Structure};

/// Body radius, mm.
pub const BODY_RADIUS_MM: f64 = 60.0;
/// Body length along z, mm.
pub const BODY_LENGTH_MM: f64 = 60.0;
/// Core radius, mm.
pub const CORE_RADIUS_MM: f64 = 10.0;
/// Target annulus, inner and outer radius, mm.
pub const TARGET_RADII_MM: [f64; 2] = [15.0, 37.0];
/// Length of the core and the target along z, mm.
pub const TARGET_LENGTH_MM: f64 = 40.0;

/// The C-shape phantom on cubic voxels of `voxel_mm` (3 mm gives 44 x 44 x 22 voxels).
/// `voxel_mm` is clamped to [1, 10] mm.
pub fn c_shape(voxel_mm: f64) -> Case {
    let v = voxel_mm.clamp(1.0, 10.0);
    let grid = centred_grid(v, [BODY_RADIUS_MM, BODY_RADIUS_MM], BODY_LENGTH_MM);
    let [n_xy, _, n_z] = grid.dims;
    let mut hu = Vec::with_capacity(grid.len());
    let mut body = Mask::empty(grid);
    let mut core = Mask::empty(grid);
    let mut target = Mask::empty(grid);
    for k in 0..n_z {
        for j in 0..n_xy {
            for i in 0..n_xy {
                let [x, y, z] = grid.centre_mm(i, j, k);
                let r = x.hypot(y);
                let idx = grid.index(i, j, k);
                let in_body = r <= BODY_RADIUS_MM && z.abs() <= 0.5 * BODY_LENGTH_MM;
                hu.push(if in_body { 0.0 } else { -1000.0 });
                body.inside[idx] = in_body;
                let in_length = z.abs() <= 0.5 * TARGET_LENGTH_MM;
                core.inside[idx] = in_length && r <= CORE_RADIUS_MM;
                let gap = y < 0.0 && x.abs() < 15.0;
                target.inside[idx] =
                    in_length && (TARGET_RADII_MM[0]..=TARGET_RADII_MM[1]).contains(&r) && !gap;
            }
        }
    }
    water_case(
        grid,
        hu,
        "rtopt C-shape water phantom",
        vec![
            ("BODY", RoiType::External, [0, 160, 0], body),
            ("OuterTarget", RoiType::Ptv, [255, 0, 0], target),
            ("Core", RoiType::Organ, [0, 0, 255], core),
        ],
    )
}

/// A water cube: `side_mm` wide (clamped to 50..500 mm) on cubic voxels of `voxel_mm`
/// (clamped to 1..10 mm), centred on `centre_mm` (LPS), HU 0 everywhere, BODY the whole
/// cube. The verification phantom of a plan whose CT is not at hand (`rtopt dose --plan
/// --water-phantom`).
pub fn water_cube(centre_mm: [f64; 3], side_mm: f64, voxel_mm: f64) -> Case {
    let v = voxel_mm.clamp(1.0, 10.0);
    let n = (side_mm.clamp(50.0, 500.0) / v).ceil() as usize;
    let grid = Grid3 {
        dims: [n; 3],
        origin_mm: [
            centre_mm[0] - 0.5 * (n - 1) as f64 * v,
            centre_mm[1] - 0.5 * (n - 1) as f64 * v,
            centre_mm[2] - 0.5 * (n - 1) as f64 * v,
        ],
        spacing_mm: [v; 3],
    };
    let body = Mask {
        grid,
        inside: vec![true; grid.len()],
    };
    water_case(
        grid,
        vec![0.0; grid.len()],
        "rtopt water cube",
        vec![("BODY", RoiType::External, [0, 160, 0], body)],
    )
}

/// A grid of cubic `v` mm voxels centred on the origin, covering `semi_axes_mm` (x, y) plus
/// two voxels and `length_mm` along z plus one voxel at each end.
fn centred_grid(v: f64, semi_axes_mm: [f64; 2], length_mm: f64) -> Grid3 {
    let n = |half: f64| (2.0 * (half + 2.0 * v) / v).ceil() as usize;
    let (n_x, n_y) = (n(semi_axes_mm[0]), n(semi_axes_mm[1]));
    let n_z = (length_mm / v).ceil() as usize + 2;
    let centre = |k: usize| -0.5 * (k - 1) as f64 * v;
    Grid3 {
        dims: [n_x, n_y, n_z],
        origin_mm: [centre(n_x), centre(n_y), centre(n_z)],
        spacing_mm: [v; 3],
    }
}

/// The case of a water phantom: its CT (HFS, `description`) and its structures
/// `(name, type, colour, mask)`, numbered from 1 in order, without contours.
fn water_case(
    grid: Grid3,
    hu: Vec<f32>,
    description: &str,
    structures: Vec<(&str, RoiType, [u8; 3], Mask)>,
) -> Case {
    let ct = CtVolume {
        grid,
        hu,
        meta: CtMeta {
            patient_position: "HFS".into(),
            series_description: description.into(),
            ..CtMeta::default()
        },
    };
    let structures = structures
        .into_iter()
        .enumerate()
        .map(|(i, (name, kind, color, mask))| Structure {
            roi: Roi {
                number: i as i64 + 1,
                name: name.to_string(),
                interpreted_type: kind.to_string(),
                color,
                contours: Vec::new(),
            },
            mask,
        })
        .collect();
    Case::from_parts(ct, structures)
}

/// Prostate-like phantom: body semi-axes (x, y), mm, and length along z, mm.
pub const PELVIS_SEMI_AXES_MM: [f64; 2] = [140.0, 95.0];
pub const PELVIS_LENGTH_MM: f64 = 90.0;
/// PTV ellipsoid semi-axes (x, y, z), mm, centred at the origin.
pub const PROSTATE_PTV_SEMI_AXES_MM: [f64; 3] = [25.0, 20.0, 22.0];
/// Rectum: cylinder along z of this radius, centre at y = this offset (posterior, LPS +y),
/// 2 mm from the PTV, as long as the body.
pub const RECTUM_RADIUS_MM: f64 = 10.0;
pub const RECTUM_CENTRE_Y_MM: f64 = 32.0;
/// Bladder: sphere of this radius, centre anterior (-y) and superior (+z) of the PTV.
pub const BLADDER_RADIUS_MM: f64 = 25.0;
pub const BLADDER_CENTRE_MM: [f64; 3] = [0.0, -38.0, 18.0];

/// A prostate-like water pelvis on cubic voxels of `voxel_mm` (clamped to [1, 10] mm): an
/// elliptic body cylinder (BODY, EXTERNAL), an ellipsoidal PTV at the centre (PTV), the
/// rectum posterior of it (Rectum, ORGAN) and the bladder anterior-superior of it, whose
/// lower part wraps the PTV's anterior surface (Bladder, ORGAN; the PTV voxels are removed
/// from it). The shape differs from the C-shape: a convex target between two organs.
pub fn prostate(voxel_mm: f64) -> Case {
    let v = voxel_mm.clamp(1.0, 10.0);
    let [ax, ay] = PELVIS_SEMI_AXES_MM;
    let grid = centred_grid(v, PELVIS_SEMI_AXES_MM, PELVIS_LENGTH_MM);
    let [n_x, n_y, n_z] = grid.dims;
    let mut hu = Vec::with_capacity(grid.len());
    let [mut body, mut ptv, mut rectum, mut bladder] = [(); 4].map(|_| Mask::empty(grid));
    let [px, py, pz] = PROSTATE_PTV_SEMI_AXES_MM;
    let [bx, by, bz] = BLADDER_CENTRE_MM;
    for k in 0..n_z {
        for j in 0..n_y {
            for i in 0..n_x {
                let [x, y, z] = grid.centre_mm(i, j, k);
                let idx = grid.index(i, j, k);
                let in_body =
                    (x / ax).powi(2) + (y / ay).powi(2) <= 1.0 && z.abs() <= 0.5 * PELVIS_LENGTH_MM;
                hu.push(if in_body { 0.0 } else { -1000.0 });
                body.inside[idx] = in_body;
                let in_ptv = (x / px).powi(2) + (y / py).powi(2) + (z / pz).powi(2) <= 1.0;
                ptv.inside[idx] = in_ptv;
                rectum.inside[idx] = in_body
                    && x.hypot(y - RECTUM_CENTRE_Y_MM) <= RECTUM_RADIUS_MM
                    && z.abs() <= 0.5 * PELVIS_LENGTH_MM - v;
                let rb = ((x - bx).powi(2) + (y - by).powi(2) + (z - bz).powi(2)).sqrt();
                bladder.inside[idx] = rb <= BLADDER_RADIUS_MM && !in_ptv;
            }
        }
    }
    water_case(
        grid,
        hu,
        "rtopt prostate-like water phantom",
        vec![
            ("BODY", RoiType::External, [0, 160, 0], body),
            ("PTV", RoiType::Ptv, [255, 0, 0], ptv),
            ("Rectum", RoiType::Organ, [150, 75, 0], rectum),
            ("Bladder", RoiType::Organ, [255, 255, 0], bladder),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_match_the_analytic_geometry() {
        let case = c_shape(2.0);
        let vol = |name: &str| case.structure(name).unwrap().mask.volume_cm3();
        let pi = std::f64::consts::PI;
        // Analytic volumes, cm^3: the core pi r^2 L; the body pi R^2 L.
        let core = pi * 1.0f64.powi(2) * 4.0;
        let body = pi * 6.0f64.powi(2) * 6.0;
        // The annulus minus the gap |x| < 15 mm, y < 0 (between r = 15 and 37 mm).
        let annulus = pi * (3.7f64.powi(2) - 1.5f64.powi(2)) * 4.0;
        let gap = {
            // Area of {|x| < 1.5 cm, y < 0, 1.5 <= r <= 3.7}, numerically (0.01 cm steps).
            let mut a = 0.0;
            let h = 0.001;
            let mut x = -1.5 + 0.5 * h;
            while x < 1.5 {
                let lo = (1.5f64.powi(2) - x * x).max(0.0).sqrt();
                let hi = (3.7f64.powi(2) - x * x).sqrt();
                a += (hi - lo) * h;
                x += h;
            }
            a * 4.0
        };
        for (name, want, tol) in [
            ("Core", core, 0.08),
            ("BODY", body, 0.03),
            ("OuterTarget", annulus - gap, 0.05),
        ] {
            let got = vol(name);
            assert!(
                (got - want).abs() <= tol * want,
                "{name}: {got:.2} cm3 vs analytic {want:.2} cm3"
            );
        }
        assert!(case
            .check_names(&["OuterTarget".into(), "Core".into()])
            .is_ok());
    }

    #[test]
    fn prostate_volumes_match_the_analytic_geometry() {
        let case = prostate(2.0);
        let vol = |name: &str| case.structure(name).unwrap().mask.volume_cm3();
        let pi = std::f64::consts::PI;
        let [px, py, pz] = PROSTATE_PTV_SEMI_AXES_MM.map(|a| a / 10.0);
        let ptv = 4.0 / 3.0 * pi * px * py * pz;
        let rectum = pi * 1.0f64.powi(2) * (PELVIS_LENGTH_MM / 10.0 - 0.4);
        let body = pi * 14.0 * 9.5 * PELVIS_LENGTH_MM / 10.0;
        for (name, want, tol) in [
            ("PTV", ptv, 0.03),
            ("Rectum", rectum, 0.05),
            ("BODY", body, 0.02),
        ] {
            let got = vol(name);
            assert!(
                (got - want).abs() <= tol * want,
                "{name}: {got:.2} cm3 vs analytic {want:.2} cm3"
            );
        }
        // The bladder sphere minus its overlap with the PTV: smaller than the sphere, and
        // no voxel in both.
        let sphere = 4.0 / 3.0 * pi * 2.5f64.powi(3);
        assert!(vol("Bladder") < sphere && vol("Bladder") > 0.8 * sphere);
        let (p, b) = (
            &case.structure("PTV").unwrap().mask,
            &case.structure("Bladder").unwrap().mask,
        );
        assert!(!p.inside.iter().zip(&b.inside).any(|(a, c)| *a && *c));
        // The rectum does not touch the PTV (2 mm apart).
        let r = &case.structure("Rectum").unwrap().mask;
        assert!(!p.inside.iter().zip(&r.inside).any(|(a, c)| *a && *c));
    }
}
