//! RT Structure Set domain types ([`StructureSet`], [`Roi`], [`Contour`]), their binding checks
//! and the rasterisation of contours onto the CT grid. Reading and writing the DICOM object is
//! [`crate::io::dicom::rtstruct`].
//!
//! Convention (the same as dicompyler-core): a voxel belongs to a structure when its centre
//! lies inside the slice's closed planar contours under the even-odd rule, so holes and
//! several islands per slice work. A contour is placed on the CT slice nearest to its z; if
//! that slice is more than half a slice spacing away the contour is off the grid (error).
//!
//! Binding rules (project issue 14, `docs/import.md`): every ROI's own
//! ReferencedFrameOfReferenceUID (3006,0024) must be the CT's ([`check_frame_of_reference`]);
//! an ROI without contours stays a (empty) structure ([`rasterize_all`]); self-intersecting and
//! zero-area contours are reported as warnings ([`contour_warnings`]), not refused.

// Input module: data from files must never panic (project issue 9, docs/reliability.md).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::geometry::partial::{self, row_crossings, ContourSlab, DvhPoints, PartialMask};
use crate::geometry::{Grid3, Mask};

/// One contour of an ROI, points in LPS mm.
#[derive(Debug, Clone, Serialize)]
pub struct Contour {
    /// ContourGeometricType, e.g. `CLOSED_PLANAR` or `POINT`.
    pub geometric_type: String,
    pub points_mm: Vec<[f64; 3]>,
}

/// A region of interest of an RT Structure Set.
#[derive(Debug, Clone, Serialize)]
pub struct Roi {
    /// ROINumber (3006,0022).
    pub number: i64,
    /// ROIName (3006,0026).
    pub name: String,
    /// RTROIInterpretedType (3006,00A4) as read, e.g. `PTV`, `ORGAN`, `EXTERNAL`; empty if
    /// absent. Written back unchanged; compare through [`Roi::roi_type`].
    pub interpreted_type: String,
    /// ROIDisplayColor (3006,002A), RGB.
    pub color: [u8; 3],
    pub contours: Vec<Contour>,
}

impl Roi {
    /// The interpreted type as a [`RoiType`].
    pub fn roi_type(&self) -> RoiType {
        RoiType::parse(&self.interpreted_type)
    }

    /// True when the ROI has at least one closed planar contour (a volume).
    pub fn is_volume(&self) -> bool {
        self.contours
            .iter()
            .any(|c| c.geometric_type == "CLOSED_PLANAR")
    }

    /// True when the ROI has contours but none of them is closed planar (POINT markers,
    /// OPEN_PLANAR lines): it is not a volume and is not rasterised.
    pub fn is_non_volume(&self) -> bool {
        !self.contours.is_empty() && !self.is_volume()
    }

    /// `ROI 3 'BODY' (EXTERNAL)`: how messages name an ROI.
    pub fn describe(&self) -> String {
        let t = if self.interpreted_type.is_empty() {
            "no RTROIInterpretedType"
        } else {
            &self.interpreted_type
        };
        format!("ROI {} '{}' ({t})", self.number, self.name)
    }
}

/// RTROIInterpretedType (3006,00A4): the defined terms of DICOM PS3.3 C.8.8.8, an unknown
/// value kept as written ([`RoiType::Other`]) and an absent or empty one
/// ([`RoiType::Unspecified`]), so nothing is lost on a round trip.
///
/// Parsed ignoring ASCII case (a Code String is upper case; a lower-case `external` from a
/// non-conforming writer is still the body outline), written back in the defined upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoiType {
    /// External patient contour (the body outline).
    External,
    /// Planning target volume (ICRU 50).
    Ptv,
    /// Clinical target volume (ICRU 50).
    Ctv,
    /// Gross tumour volume (ICRU 50).
    Gtv,
    /// Treated volume (ICRU 50).
    TreatedVolume,
    /// Irradiated volume (ICRU 50).
    IrradVolume,
    /// Patient bolus used for external beam therapy.
    Bolus,
    /// Region in which dose is to be minimised.
    Avoidance,
    /// Patient organ.
    Organ,
    /// Patient marker or marker on a localiser.
    Marker,
    /// Registration ROI.
    Registration,
    /// Treatment isocentre used for external beam therapy.
    Isocenter,
    /// Volume into which a contrast agent has been injected.
    ContrastAgent,
    /// Patient anatomical cavity.
    Cavity,
    /// Brachytherapy channel.
    BrachyChannel,
    /// Brachytherapy accessory device.
    BrachyAccessory,
    /// Brachytherapy source applicator.
    BrachySrcApp,
    /// Brachytherapy channel shield.
    BrachyChnlShld,
    /// External patient support device.
    Support,
    /// External patient fixation or immobilisation device.
    Fixation,
    /// ROI to be used as a dose reference.
    DoseRegion,
    /// ROI to be used in control of dose optimisation and calculation.
    Control,
    /// ROI representing a dose measurement device.
    DoseMeasurement,
    /// Absent or empty (3006,00A4).
    Unspecified,
    /// Any other value, as written.
    Other(String),
}

/// Defined terms and their variants, in the order of PS3.3 C.8.8.8.
const ROI_TYPES: [(&str, RoiType); 23] = [
    ("EXTERNAL", RoiType::External),
    ("PTV", RoiType::Ptv),
    ("CTV", RoiType::Ctv),
    ("GTV", RoiType::Gtv),
    ("TREATED_VOLUME", RoiType::TreatedVolume),
    ("IRRAD_VOLUME", RoiType::IrradVolume),
    ("BOLUS", RoiType::Bolus),
    ("AVOIDANCE", RoiType::Avoidance),
    ("ORGAN", RoiType::Organ),
    ("MARKER", RoiType::Marker),
    ("REGISTRATION", RoiType::Registration),
    ("ISOCENTER", RoiType::Isocenter),
    ("CONTRAST_AGENT", RoiType::ContrastAgent),
    ("CAVITY", RoiType::Cavity),
    ("BRACHY_CHANNEL", RoiType::BrachyChannel),
    ("BRACHY_ACCESSORY", RoiType::BrachyAccessory),
    ("BRACHY_SRC_APP", RoiType::BrachySrcApp),
    ("BRACHY_CHNL_SHLD", RoiType::BrachyChnlShld),
    ("SUPPORT", RoiType::Support),
    ("FIXATION", RoiType::Fixation),
    ("DOSE_REGION", RoiType::DoseRegion),
    ("CONTROL", RoiType::Control),
    ("DOSE_MEASUREMENT", RoiType::DoseMeasurement),
];

impl RoiType {
    /// The type of an RTROIInterpretedType value (see [`RoiType`] for case and empty values).
    pub fn parse(value: &str) -> RoiType {
        if value.is_empty() {
            return RoiType::Unspecified;
        }
        ROI_TYPES
            .iter()
            .find(|(term, _)| term.eq_ignore_ascii_case(value))
            .map_or_else(|| RoiType::Other(value.to_string()), |(_, t)| t.clone())
    }

    /// The value as written to (3006,00A4): the defined term, the other value as read, or
    /// empty.
    pub fn as_str(&self) -> &str {
        match self {
            RoiType::Unspecified => "",
            RoiType::Other(s) => s,
            t => ROI_TYPES
                .iter()
                .find(|(_, v)| v == t)
                .map_or("", |(term, _)| term),
        }
    }

    /// A target volume (PTV, CTV or GTV).
    pub fn is_target(&self) -> bool {
        matches!(self, RoiType::Ptv | RoiType::Ctv | RoiType::Gtv)
    }
}

impl std::fmt::Display for RoiType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for RoiType {
    fn from(value: &str) -> Self {
        RoiType::parse(value)
    }
}

/// An imported RT Structure Set.
#[derive(Debug, Clone, Serialize)]
pub struct StructureSet {
    #[serde(skip)]
    pub path: PathBuf,
    pub sop_instance_uid: String,
    pub label: String,
    /// Frame of reference the contours are given in.
    pub frame_of_reference_uid: Option<String>,
    /// Per-ROI ReferencedFrameOfReferenceUID (3006,0024) of the StructureSetROISequence,
    /// by ROINumber; ROIs without the attribute are absent.
    pub roi_frames: BTreeMap<i64, String>,
    pub rois: Vec<Roi>,
}

impl StructureSet {
    /// The ROI with this name (exact match first, then case-insensitive).
    pub fn roi(&self, name: &str) -> Option<&Roi> {
        self.rois
            .iter()
            .find(|r| r.name == name)
            .or_else(|| self.rois.iter().find(|r| r.name.eq_ignore_ascii_case(name)))
    }
}

/// Check that a structure set lies in the CT's frame of reference: the set-level frame
/// (ReferencedFrameOfReferenceSequence (3006,0010), else the first ROI's) and every ROI's own
/// ReferencedFrameOfReferenceUID (3006,0024) in the StructureSetROISequence.
pub fn check_frame_of_reference(ss: &StructureSet, ct_frame_uid: &str) -> Result<()> {
    if let Some(uid) = &ss.frame_of_reference_uid {
        if uid != ct_frame_uid {
            return Err(Error::FrameOfReferenceMismatch {
                path: ss.path.clone(),
                rtstruct_uid: uid.clone(),
                ct_uid: ct_frame_uid.to_string(),
            });
        }
    }
    for (number, uid) in &ss.roi_frames {
        if uid != ct_frame_uid {
            let roi = ss
                .rois
                .iter()
                .find(|r| r.number == *number)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            return Err(Error::RoiFrameOfReferenceMismatch {
                path: ss.path.clone(),
                number: *number,
                roi,
                roi_uid: uid.clone(),
                ct_uid: ct_frame_uid.to_string(),
            });
        }
    }
    Ok(())
}

/// Contours whose |shoelace area| is below this (mm^2) are zero-area (degenerate).
pub const ZERO_AREA_MM2: f64 = 1e-6;

/// A geometric defect of one closed planar contour (see [`contour_defect`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ContourDefect {
    /// |area| below [`ZERO_AREA_MM2`]: the points coincide or are collinear.
    ZeroArea { area_mm2: f64 },
    /// Edges `first` and `second` (edge e joins point e and point e + 1, the last edge closes
    /// the polygon; indices after dropping repeated consecutive points) touch or cross.
    SelfIntersection { first: usize, second: usize },
}

/// Check one closed planar contour (x, y of `points_mm`; z is ignored) for a zero area or a
/// self-intersection.
///
/// Consecutive repeated points (including a last point equal to the first, as some planning
/// systems write) are dropped first. Zero area: fewer than 3 distinct points, or all points on
/// one line (every point's cross product with the chord from the first point to the point
/// farthest from it below 2 x [`ZERO_AREA_MM2`]), or a simple polygon whose |shoelace area| is
/// below [`ZERO_AREA_MM2`]. Self-intersection: any two non-adjacent edges (the closing edge
/// included; edges sharing a vertex are adjacent and skipped) that cross or touch, by exact
/// orientation tests on the f64 coordinates. Edges are swept in order of their smallest x and
/// only pairs whose x and y ranges overlap are tested, so a simple contour costs O(n log n)
/// plus the overlapping pairs; the worst case is O(n^2) pair tests (about 2 M for 2000
/// points, a few ms).
pub fn contour_defect(points_mm: &[[f64; 3]]) -> Option<ContourDefect> {
    let mut p: Vec<[f64; 2]> = Vec::with_capacity(points_mm.len());
    for q in points_mm {
        if p.last() != Some(&[q[0], q[1]]) {
            p.push([q[0], q[1]]);
        }
    }
    while p.len() > 1 && p.first() == p.last() {
        p.pop();
    }
    let n = p.len();
    let pt = |i: usize| p.get(i % n.max(1)).copied().unwrap_or([0.0, 0.0]);
    let twice_area: f64 = (0..n)
        .map(|i| {
            let (a, b) = (pt(i), pt(i + 1));
            a[0] * b[1] - b[0] * a[1]
        })
        .sum();
    let area_mm2 = 0.5 * twice_area;
    // Collinear or coincident points: no polygon at all.
    let p0 = pt(0);
    let far = p
        .iter()
        .copied()
        .max_by(|a, b| dist2(p0, *a).total_cmp(&dist2(p0, *b)))
        .unwrap_or(p0);
    let spread = p
        .iter()
        .map(|&c| orient(p0, far, c).abs())
        .fold(0.0, f64::max);
    if n < 3 || spread.is_nan() || spread < 2.0 * ZERO_AREA_MM2 {
        return Some(ContourDefect::ZeroArea { area_mm2 });
    }
    if n >= 4 {
        if let Some((first, second)) = first_crossing(n, pt) {
            return Some(ContourDefect::SelfIntersection { first, second });
        }
    }
    if area_mm2.is_nan() || area_mm2.abs() < ZERO_AREA_MM2 {
        return Some(ContourDefect::ZeroArea { area_mm2 });
    }
    None
}

fn dist2(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// The lowest pair of non-adjacent edges of the closed polygon `pt(0..n)` that cross or touch
/// (sweep over x, see [`contour_defect`]).
fn first_crossing(n: usize, pt: impl Fn(usize) -> [f64; 2]) -> Option<(usize, usize)> {
    let boxes: Vec<[f64; 4]> = (0..n)
        .map(|e| {
            let (a, b) = (pt(e), pt(e + 1));
            [
                a[0].min(b[0]),
                a[0].max(b[0]),
                a[1].min(b[1]),
                a[1].max(b[1]),
            ]
        })
        .collect();
    let bx = |e: usize| boxes.get(e).copied().unwrap_or([0.0; 4]);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| bx(a)[0].total_cmp(&bx(b)[0]));
    let mut active: Vec<usize> = Vec::new();
    let mut found: Option<(usize, usize)> = None;
    for &e in &order {
        let be = bx(e);
        active.retain(|&f| bx(f)[1] >= be[0]);
        for &f in &active {
            let bf = bx(f);
            let adjacent = (e + 1) % n == f || (f + 1) % n == e;
            if adjacent || bf[3] < be[2] || be[3] < bf[2] {
                continue;
            }
            if segments_touch(pt(e), pt(e + 1), pt(f), pt(f + 1)) {
                let pair = (e.min(f), e.max(f));
                if found.is_none_or(|g| pair < g) {
                    found = Some(pair);
                }
            }
        }
        active.push(e);
    }
    found
}

/// Orientation of c relative to the line a -> b: > 0 left, < 0 right, 0 collinear.
fn orient(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// c lies within the bounding box of a, b (used when a, b, c are collinear).
fn within(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> bool {
    c[0] >= a[0].min(b[0])
        && c[0] <= a[0].max(b[0])
        && c[1] >= a[1].min(b[1])
        && c[1] <= a[1].max(b[1])
}

/// Segments a-b and c-d cross or touch (closed segments).
fn segments_touch(a: [f64; 2], b: [f64; 2], c: [f64; 2], d: [f64; 2]) -> bool {
    let (o1, o2) = (orient(a, b, c), orient(a, b, d));
    let (o3, o4) = (orient(c, d, a), orient(c, d, b));
    if ((o1 > 0.0 && o2 < 0.0) || (o1 < 0.0 && o2 > 0.0))
        && ((o3 > 0.0 && o4 < 0.0) || (o3 < 0.0 && o4 > 0.0))
    {
        return true;
    }
    (o1 == 0.0 && within(a, b, c))
        || (o2 == 0.0 && within(a, b, d))
        || (o3 == 0.0 && within(c, d, a))
        || (o4 == 0.0 && within(c, d, b))
}

/// Warnings for the closed planar contours of every ROI that are zero-area or
/// self-intersecting ([`contour_defect`]). Each names the ROI, the contour's index among the
/// ROI's contours (0-based, file order) and its z in mm. Such contours are still rasterised
/// under the even-odd rule: a zero-area contour adds no voxel, a self-intersecting one may
/// leave a lobe out.
pub fn contour_warnings(ss: &StructureSet) -> Vec<String> {
    let mut out = Vec::new();
    for roi in &ss.rois {
        for (ci, c) in roi.contours.iter().enumerate() {
            if c.geometric_type != "CLOSED_PLANAR" {
                continue;
            }
            let z = c.points_mm.first().map_or(f64::NAN, |p| p[2]);
            let what = match contour_defect(&c.points_mm) {
                None => continue,
                Some(ContourDefect::ZeroArea { area_mm2 }) => format!(
                    "has zero area ({:.3e} mm^2: its {} points coincide or are collinear); it covers no voxel",
                    area_mm2.abs(),
                    c.points_mm.len()
                ),
                Some(ContourDefect::SelfIntersection { first, second }) => format!(
                    "is self-intersecting (edges {first} and {second} of {} cross or touch); \
                     rasterised under the even-odd rule, so a crossed lobe may count as outside",
                    c.points_mm.len()
                ),
            };
            out.push(format!(
                "{}: {}: contour {ci} at z = {z:.2} mm {what}",
                ss.path.display(),
                roi.describe()
            ));
        }
    }
    out
}

/// The closed planar contours of `roi` grouped by the slice of `grid` they lie on (the nearest
/// one), after the checks every rasterisation makes: at least 3 finite points, planar, within
/// half a slice of a slice and not entirely outside the grid's x/y extent (errors name the ROI,
/// the contour and its z).
fn contours_by_slice<'a>(roi: &'a Roi, grid: &Grid3) -> Result<BTreeMap<usize, Vec<&'a Contour>>> {
    let nz = grid.dims[2];
    let dz = grid.spacing_mm[2];
    let mut by_slice: BTreeMap<usize, Vec<&Contour>> = BTreeMap::new();
    for (ci, c) in roi.contours.iter().enumerate() {
        if c.geometric_type != "CLOSED_PLANAR" {
            continue;
        }
        if c.points_mm.len() < 3 || c.points_mm.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::ContourOffGrid {
                roi: roi.name.clone(),
                contour: ci,
                z_mm: c.points_mm.first().map_or(f64::NAN, |p| p[2]),
                reason: format!(
                    "has {} point(s) or a non-finite coordinate; a CLOSED_PLANAR contour needs at least 3 finite points",
                    c.points_mm.len()
                ),
            });
        }
        let z = c.points_mm.iter().map(|p| p[2]).sum::<f64>() / c.points_mm.len() as f64;
        if c.points_mm
            .iter()
            .any(|p| (p[2] - z).abs() > 0.01 * dz.max(1.0))
        {
            return Err(Error::ContourOffGrid {
                roi: roi.name.clone(),
                contour: ci,
                z_mm: z,
                reason: "is not planar (its points differ in z); rtopt needs axial contours".into(),
            });
        }
        let kf = (z - grid.origin_mm[2]) / dz;
        let k = kf.round();
        if k < 0.0 || k >= nz as f64 || (kf - k).abs() > 0.5 + 1e-6 {
            return Err(Error::ContourOffGrid {
                roi: roi.name.clone(),
                contour: ci,
                z_mm: z,
                reason: format!(
                    "is not within half a slice ({:.2} mm) of any CT slice (z {:.2} .. {:.2} mm)",
                    0.5 * dz,
                    grid.origin_mm[2],
                    grid.origin_mm[2] + (nz.saturating_sub(1)) as f64 * dz
                ),
            });
        }
        let (lo, hi) = grid.bounds_mm();
        let (minx, maxx, miny, maxy) = c.points_mm.iter().fold(
            (
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ),
            |(a, b, cc, d), p| (a.min(p[0]), b.max(p[0]), cc.min(p[1]), d.max(p[1])),
        );
        if maxx < lo[0] || minx > hi[0] || maxy < lo[1] || miny > hi[1] {
            return Err(Error::ContourOffGrid {
                roi: roi.name.clone(),
                contour: ci,
                z_mm: z,
                reason: format!(
                    "lies entirely outside the CT's x/y extent (x {:.1}..{:.1}, y {:.1}..{:.1} mm)",
                    lo[0], hi[0], lo[1], hi[1]
                ),
            });
        }
        by_slice.entry(k as usize).or_default().push(c);
    }
    Ok(by_slice)
}

/// Rasterise one ROI's closed planar contours onto `grid` (even-odd rule, voxel centres).
pub fn rasterize(roi: &Roi, grid: &Grid3) -> Result<Mask> {
    let [nx, ny, nz] = grid.dims;
    let dy = grid.spacing_mm[1];
    let dx = grid.spacing_mm[0];
    let by_slice = contours_by_slice(roi, grid)?;
    let mut mask = Mask::empty(*grid);
    let plane = nx * ny;
    let filled: Vec<(usize, Vec<bool>)> = by_slice
        .into_par_iter()
        .map(|(k, contours)| {
            let polygons: Vec<&[[f64; 3]]> =
                contours.iter().map(|c| c.points_mm.as_slice()).collect();
            let mut m = vec![false; plane];
            let mut xs: Vec<f64> = Vec::new();
            for j in 0..ny {
                let y = grid.origin_mm[1] + j as f64 * dy;
                xs.clear();
                row_crossings(&polygons, y, &mut xs);
                xs.sort_by(|a, b| a.total_cmp(b));
                for pair in xs.chunks_exact(2) {
                    let &[x0, x1] = pair else { continue };
                    // voxel centres with x0 <= x < x1
                    let i0 = ((x0 - grid.origin_mm[0]) / dx).ceil().max(0.0);
                    let i1 = ((x1 - grid.origin_mm[0]) / dx).ceil().min(nx as f64);
                    let (i0, i1) = (i0 as usize, i1.max(0.0) as usize);
                    // i1 <= nx and j < ny, so the run stays inside row j of the plane.
                    if i0 < i1 {
                        if let Some(run) = m.get_mut(j * nx + i0..j * nx + i1) {
                            run.fill(true);
                        }
                    }
                }
            }
            (k, m)
        })
        .collect();
    for (k, m) in filled {
        // k < nz was checked above, so the plane exists; refuse rather than panic otherwise.
        let Some(dst) = mask.inside.get_mut(k * plane..(k + 1) * plane) else {
            return Err(Error::Invalid(format!(
                "ROI '{}': slice {k} outside the grid of {nz} slices",
                roi.name
            )));
        };
        dst.copy_from_slice(&m);
    }
    Ok(mask)
}

/// The contour planes of `roi` as slabs of `ct_grid`'s z axis: each plane stands for the CT
/// slice it lies on (key: the slice index), the slab of one slice spacing centred on that
/// slice, so the first and last planes count a full slice thickness (end caps as
/// dicompyler-core's "area x plane thickness"). Checks as [`rasterize`].
fn contour_slabs<'a>(roi: &'a Roi, ct_grid: &Grid3) -> Result<Vec<ContourSlab<'a>>> {
    let dz = ct_grid.spacing_mm[2];
    contours_by_slice(roi, ct_grid)?
        .into_iter()
        .map(|(k, cs)| {
            let key = u16::try_from(k).map_err(|_| {
                Error::Invalid(format!(
                    "ROI '{}': CT slice {k} beyond the {} slices rtopt supports",
                    roi.name,
                    u16::MAX
                ))
            })?;
            let zc = ct_grid.origin_mm[2] + k as f64 * dz;
            Ok(ContourSlab {
                key,
                z_mm: zc,
                z_lo_mm: zc - 0.5 * dz,
                z_hi_mm: zc + 0.5 * dz,
                polygons: cs.iter().map(|c| c.points_mm.as_slice()).collect(),
            })
        })
        .collect()
}

/// The partial-volume occupancy of one ROI on `grid`, any grid in the CT's frame (the dose
/// grid, or the CT grid itself): the fraction of each voxel inside the ROI
/// ([`crate::geometry::partial`]), the planes as slabs of the CT slices (see
/// [`supersample`]). The contours are checked against `ct_grid` as in [`rasterize`] (same
/// errors). An ROI without closed planar contours gives an empty mask.
pub fn partial_volume(roi: &Roi, ct_grid: &Grid3, grid: &Grid3) -> Result<PartialMask> {
    Ok(partial::occupancy(grid, &contour_slabs(roi, ct_grid)?))
}

/// The partial volumes of one ROI on `grid` ([`partial_volume`]) and its supersampled DVH
/// points there ([`partial::dvh_points`]: a point per deep cell, sub-cells along the contour,
/// on each contour plane). Each contour plane stands for the CT slice it lies on, the slab of
/// one slice spacing of `ct_grid` centred on that slice, so the first and last planes count a
/// full slice thickness (end caps as dicompyler-core's "area x plane thickness"); within a
/// plane the contours combine under the even-odd rule.
pub fn supersample(roi: &Roi, ct_grid: &Grid3, grid: &Grid3) -> Result<(PartialMask, DvhPoints)> {
    Ok(partial::occupancy_and_points(
        grid,
        &contour_slabs(roi, ct_grid)?,
    ))
}

/// A structure rasterised on the CT grid.
#[derive(Debug, Clone)]
pub struct Structure {
    pub roi: Roi,
    pub mask: Mask,
}

/// Rasterise every ROI of `ss` onto `grid`, except those that have contours but no closed
/// planar one (POINT markers, OPEN_PLANAR lines: [`Roi::is_non_volume`]). An ROI without any
/// contour stays, as an empty structure, so that a goal on it can say it is empty.
pub fn rasterize_all(ss: &StructureSet, grid: &Grid3) -> Result<Vec<Structure>> {
    ss.rois
        .iter()
        .filter(|r| !r.is_non_volume())
        .map(|r| {
            Ok(Structure {
                roi: r.clone(),
                mask: rasterize(r, grid)?,
            })
        })
        .collect()
}

// Temporary re-exports of the old paths, for code written before the I/O layer (issue 15);
// to be removed once every caller uses `crate::io::dicom::rtstruct`.

#[cfg(test)]
mod tests {
    use super::RoiType;

    #[test]
    fn roi_types_round_trip_and_keep_unknown_values() {
        for v in ["EXTERNAL", "PTV", "ORGAN", "DOSE_MEASUREMENT", "CONTROL"] {
            assert_eq!(RoiType::parse(v).as_str(), v);
            assert!(!matches!(RoiType::parse(v), RoiType::Other(_)), "{v}");
        }
        assert_eq!(RoiType::parse("external"), RoiType::External);
        assert_eq!(RoiType::parse(""), RoiType::Unspecified);
        assert_eq!(RoiType::parse("").as_str(), "");
        let other = RoiType::parse("SPINAL_PRV");
        assert_eq!(other, RoiType::Other("SPINAL_PRV".into()));
        assert_eq!(other.to_string(), "SPINAL_PRV");
        assert!(RoiType::Ptv.is_target() && !RoiType::Organ.is_target());
    }
}
