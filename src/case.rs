//! A patient case: the CT series and its structures rasterised on the CT grid.
//! This is matRad's `ct` + `cst` step.
//!
//! Structure binding is strict (project issue 14, `docs/import.md`): a name that matches two
//! ROIs (exactly or ignoring case) is refused, an ROI without voxels stays as an empty
//! structure that cannot carry a goal ([`Case::check_names`]), and import findings that are not
//! errors (self-intersecting or zero-area contours, an assumed PatientPosition) are kept in
//! [`Case::warnings`].

// Input module: data from files must never panic (project issue 9, docs/reliability.md).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ct::CtVolume;
use crate::error::{Error, Result};
use crate::geometry::Mask;
use crate::io::dicom::ct::{self, CtImportOptions, FolderScan};
use crate::io::dicom::rtstruct;
use crate::structures::{self, Roi, RoiType, Structure, StructureSet};

/// CT, structure set and rasterised structures of one patient.
#[derive(Debug, Clone)]
pub struct Case {
    /// Folder the case was read from (None when built in memory).
    pub dir: Option<PathBuf>,
    pub ct: CtVolume,
    /// The RT Structure Set, if the folder had one.
    pub structure_set: Option<StructureSet>,
    /// Volumetric structures on the CT grid.
    pub structures: Vec<Structure>,
    /// What the folder scan set aside.
    pub scan: FolderScan,
    /// Import warnings (CT, contours, empty or same-named ROIs), one sentence each, naming the
    /// file, ROI and contour. Empty for a clean case.
    pub warnings: Vec<String>,
}

/// Options for [`Case::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub ct: CtImportOptions,
    /// RT Structure Set to use; default: the only RTSTRUCT in the folder.
    pub rtstruct: Option<PathBuf>,
}

impl Case {
    /// Import a case folder: one CT series and (optionally) one RT Structure Set.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Case> {
        let (ct, scan) = ct::load_ct_folder(dir, &opts.ct)?;
        let rs_path = match &opts.rtstruct {
            Some(p) => Some(p.clone()),
            None => match scan.rtstructs.len() {
                0 | 1 => scan.rtstructs.first().cloned(),
                n => {
                    return Err(Error::Invalid(format!(
                        "{}: {n} RT Structure Sets found ({}); choose one with --rtstruct",
                        dir.display(),
                        scan.rtstructs
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            },
        };
        let mut warnings = scan.warnings.clone();
        let (structure_set, structures) = match rs_path {
            Some(p) => {
                let ss = rtstruct::read_rtstruct(&p)?;
                structures::check_frame_of_reference(&ss, &ct.meta.frame_of_reference_uid)?;
                let st = structures::rasterize_all(&ss, &ct.grid)?;
                warnings.extend(structures::contour_warnings(&ss));
                (Some(ss), st)
            }
            None => (None, Vec::new()),
        };
        let mut case = Case {
            dir: Some(dir.to_path_buf()),
            ct,
            structure_set,
            structures,
            scan,
            warnings,
        };
        let more = case.binding_warnings();
        case.warnings.extend(more);
        Ok(case)
    }

    /// Warnings about empty structures, same-named ROIs and the body outline.
    fn binding_warnings(&self) -> Vec<String> {
        let src = self
            .structure_set
            .as_ref()
            .map(|ss| format!("{}: ", ss.path.display()))
            .unwrap_or_default();
        let mut out = Vec::new();
        for s in &self.structures {
            if let Some(reason) = empty_reason(s) {
                out.push(format!("{src}{} is empty: {reason}", s.roi.describe()));
            }
        }
        let mut seen: Vec<String> = Vec::new();
        for s in &self.structures {
            let key = s.roi.name.to_ascii_lowercase();
            if seen.contains(&key) {
                continue;
            }
            let same = self.matching(&s.roi.name);
            if same.len() > 1 {
                out.push(format!(
                    "{src}{} have the same name (ignoring case); a protocol or command naming '{}' is refused",
                    list_rois(&same),
                    s.roi.name
                ));
            }
            seen.push(key);
        }
        if let Err(e) = self.body() {
            out.push(format!("{src}{e}"));
        } else if self.body_candidates().is_empty() {
            if let Some(s) = self.structures.iter().find(|s| is_body_like(s)) {
                out.push(format!(
                    "{src}{} is empty; the body outline is computed from the CT (HU > -350)",
                    s.roi.describe()
                ));
            }
        }
        out
    }

    /// Build a case in memory (for embedding and for tests).
    pub fn from_parts(ct: CtVolume, structures: Vec<Structure>) -> Case {
        Case {
            dir: None,
            ct,
            structure_set: None,
            structures,
            scan: FolderScan::default(),
            warnings: Vec::new(),
        }
    }

    /// Import warnings (see [`Case::warnings`](Case#structfield.warnings)): what a plan
    /// report should list in its notes.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Structures whose name equals `name` ignoring ASCII case (exact matches included).
    fn matching(&self, name: &str) -> Vec<&Structure> {
        self.structures
            .iter()
            .filter(|s| s.roi.name.eq_ignore_ascii_case(name))
            .collect()
    }

    /// The structure with this name, matched ignoring case. A name that matches two or more
    /// ROIs (e.g. an ORGAN `BODY` and an EXTERNAL `body`) is refused with
    /// [`Error::AmbiguousStructure`], even when one of them matches exactly. An ROI with only
    /// POINT or open contours gives [`Error::EmptyStructure`]. The structure returned may be
    /// empty (no voxel); [`Case::check_names`] refuses that for goals.
    pub fn structure(&self, name: &str) -> Result<&Structure> {
        match self.matching(name).as_slice() {
            [one] => Ok(one),
            [] => {
                let marker = self.structure_set.as_ref().and_then(|ss| {
                    ss.rois
                        .iter()
                        .find(|r| r.is_non_volume() && r.name.eq_ignore_ascii_case(name))
                });
                match marker {
                    Some(r) => Err(Error::EmptyStructure {
                        name: name.to_string(),
                        number: r.number,
                        reason: format!(
                            "it has only {} contour(s), no CLOSED_PLANAR one (not a volume)",
                            geometric_types(r)
                        ),
                    }),
                    None => Err(Error::StructureNotFound {
                        name: name.to_string(),
                        present: self.structure_names().join(", "),
                    }),
                }
            }
            many => Err(Error::AmbiguousStructure {
                name: name.to_string(),
                rois: list_rois(many),
            }),
        }
    }

    /// Bind every name (e.g. [`Protocol::referenced_structures`]) before any computation:
    /// each must name exactly one structure ([`Case::structure`]) that has at least one voxel
    /// ([`Error::EmptyStructure`] otherwise), and the body outline must not be ambiguous
    /// ([`Case::body`]). Returns the first problem, in the order of `names`.
    ///
    /// [`Protocol::referenced_structures`]: crate::optimize::protocol::Protocol::referenced_structures
    pub fn check_names(&self, names: &[String]) -> Result<()> {
        for name in names {
            let s = self.structure(name)?;
            if let Some(reason) = empty_reason(s) {
                return Err(Error::EmptyStructure {
                    name: name.clone(),
                    number: s.roi.number,
                    reason,
                });
            }
        }
        self.body()?;
        Ok(())
    }

    /// Names of all structures.
    pub fn structure_names(&self) -> Vec<String> {
        self.structures.iter().map(|s| s.roi.name.clone()).collect()
    }

    /// Non-empty structures that could be the body outline: those of type EXTERNAL, or when
    /// there is none, those named BODY, External or Skin (any case).
    fn body_candidates(&self) -> Vec<&Structure> {
        let nonempty = |s: &&Structure| empty_reason(s).is_none();
        let external: Vec<&Structure> = self
            .structures
            .iter()
            .filter(|s| s.roi.roi_type() == RoiType::External)
            .filter(nonempty)
            .collect();
        if !external.is_empty() {
            return external;
        }
        self.structures
            .iter()
            .filter(|s| is_body_like(s))
            .filter(nonempty)
            .collect()
    }

    /// The body outline: the non-empty structure of type EXTERNAL, or when there is none the
    /// one named BODY, External or Skin; `None` when neither exists. Two or more candidates
    /// are refused ([`Error::AmbiguousBody`]) rather than one picked.
    pub fn body(&self) -> Result<Option<&Structure>> {
        let c = self.body_candidates();
        match c.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            many => {
                let reason = if many.iter().all(|s| s.roi.roi_type() == RoiType::External) {
                    "are all of type EXTERNAL"
                } else {
                    "have no EXTERNAL type and are all named like a body outline (BODY, External, Skin)"
                };
                Err(Error::AmbiguousBody {
                    rois: list_rois(many),
                    reason: reason.into(),
                })
            }
        }
    }

    /// Body mask: the body structure ([`Case::body`]), or an automatic outline (HU > -350,
    /// largest connected component per slice with holes filled) when none exists; an ambiguous
    /// body outline is refused.
    pub fn try_body_mask(&self) -> Result<Mask> {
        Ok(match self.body()? {
            Some(s) => s.mask.clone(),
            None => crate::ct::body_outline(&self.ct),
        })
    }

    /// Infallible [`Case::try_body_mask`] for callers that bound the case with
    /// [`Case::check_names`] first. When the body outline is ambiguous (which `check_names`
    /// refuses) it gives the union of the candidates, never just one of them.
    pub fn body_mask(&self) -> Mask {
        match self.body() {
            Ok(Some(s)) => s.mask.clone(),
            Ok(None) => crate::ct::body_outline(&self.ct),
            Err(_) => {
                let mut m = Mask::empty(self.ct.grid);
                for s in self.body_candidates() {
                    for (a, &b) in m.inside.iter_mut().zip(&s.mask.inside) {
                        *a |= b;
                    }
                }
                m
            }
        }
    }
}

/// Named like a body outline: BODY, External or Skin (any case).
fn is_body_like(s: &Structure) -> bool {
    let n = s.roi.name.to_ascii_lowercase();
    n == "body" || n == "external" || n == "skin"
}

/// Why a structure is empty, or `None` when it has a voxel.
fn empty_reason(s: &Structure) -> Option<String> {
    if s.mask.inside.iter().any(|&b| b) {
        return None;
    }
    Some(if s.roi.contours.is_empty() {
        "it has no contour in the RT Structure Set (ROIContourSequence (3006,0039))".to_string()
    } else {
        format!(
            "its {} contour(s) cover no CT voxel centre",
            s.roi.contours.len()
        )
    })
}

/// `ROI 3 'BODY' (ORGAN) and ROI 7 'body' (EXTERNAL)`.
fn list_rois(rois: &[&Structure]) -> String {
    let d: Vec<String> = rois.iter().map(|s| s.roi.describe()).collect();
    match d.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// The distinct ContourGeometricTypes of an ROI, e.g. `POINT` or `POINT/OPEN_PLANAR`.
fn geometric_types(r: &Roi) -> String {
    let mut t: Vec<&str> = r
        .contours
        .iter()
        .map(|c| c.geometric_type.as_str())
        .collect();
    t.sort_unstable();
    t.dedup();
    t.join("/")
}

/// Summary of a case, as printed by `rtopt inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub series_instance_uid: String,
    pub series_description: String,
    pub patient_position: String,
    pub dims: [usize; 3],
    pub spacing_mm: [f64; 3],
    pub origin_mm: [f64; 3],
    pub hu_min: f32,
    pub hu_max: f32,
    pub frame_of_reference_uid: String,
    pub structures: Vec<StructureSummary>,
    /// ROIs with only POINT or open contours (markers): listed, not rasterised.
    pub non_volume_rois: Vec<NonVolumeRoi>,
    pub set_aside: Vec<String>,
    /// Import warnings ([`Case::warnings`]).
    pub warnings: Vec<String>,
}

/// An ROI that is not a volume (only POINT or open contours).
#[derive(Debug, Clone, Serialize)]
pub struct NonVolumeRoi {
    pub number: i64,
    pub name: String,
    pub interpreted_type: String,
    /// ContourGeometricTypes present, e.g. `POINT`.
    pub geometric_types: String,
    /// Number of points over all contours.
    pub points: usize,
}

/// One row of the structure table.
#[derive(Debug, Clone, Serialize)]
pub struct StructureSummary {
    pub number: i64,
    pub name: String,
    pub interpreted_type: String,
    pub voxels: usize,
    pub volume_cm3: f64,
    /// Bounding box of voxel centres, LPS mm: `[min, max]`.
    pub bbox_mm: Option<[[f64; 3]; 2]>,
    /// No voxel: the ROI has no contour, or its contours cover no voxel centre.
    pub empty: bool,
}

impl Case {
    /// Build the inspection summary.
    pub fn inspect(&self) -> Inspection {
        let (hu_min, hu_max) = self.ct.hu_range();
        Inspection {
            series_instance_uid: self.ct.meta.series_instance_uid.clone(),
            series_description: self.ct.meta.series_description.clone(),
            patient_position: self.ct.meta.patient_position.clone(),
            dims: self.ct.grid.dims,
            spacing_mm: self.ct.grid.spacing_mm,
            origin_mm: self.ct.grid.origin_mm,
            hu_min,
            hu_max,
            frame_of_reference_uid: self.ct.meta.frame_of_reference_uid.clone(),
            structures: self
                .structures
                .iter()
                .map(|s| StructureSummary {
                    number: s.roi.number,
                    name: s.roi.name.clone(),
                    interpreted_type: s.roi.interpreted_type.clone(),
                    voxels: s.mask.count(),
                    volume_cm3: s.mask.volume_cm3(),
                    bbox_mm: s.mask.bbox_mm().map(|(a, b)| [a, b]),
                    empty: empty_reason(s).is_some(),
                })
                .collect(),
            non_volume_rois: self
                .structure_set
                .iter()
                .flat_map(|ss| ss.rois.iter().filter(|r| r.is_non_volume()))
                .map(|r| NonVolumeRoi {
                    number: r.number,
                    name: r.name.clone(),
                    interpreted_type: r.interpreted_type.clone(),
                    geometric_types: geometric_types(r),
                    points: r.contours.iter().map(|c| c.points_mm.len()).sum(),
                })
                .collect(),
            set_aside: self
                .scan
                .other_dicom
                .iter()
                .map(|(p, c)| format!("{} ({c})", p.display()))
                .chain(
                    self.scan
                        .not_dicom
                        .iter()
                        .map(|(p, r)| format!("{} ({r})", p.display())),
                )
                .collect(),
            warnings: self.warnings.clone(),
        }
    }
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "CT series {}", self.series_instance_uid)?;
        if !self.series_description.is_empty() {
            writeln!(f, "  description       {}", self.series_description)?;
        }
        writeln!(f, "  patient position  {}", self.patient_position)?;
        writeln!(
            f,
            "  dimensions        {} x {} x {} voxels",
            self.dims[0], self.dims[1], self.dims[2]
        )?;
        writeln!(
            f,
            "  spacing           {} x {} x {} mm",
            self.spacing_mm[0], self.spacing_mm[1], self.spacing_mm[2]
        )?;
        writeln!(
            f,
            "  first voxel       ({:.2}, {:.2}, {:.2}) mm (LPS)",
            self.origin_mm[0], self.origin_mm[1], self.origin_mm[2]
        )?;
        writeln!(
            f,
            "  HU range          {:.1} .. {:.1}",
            self.hu_min, self.hu_max
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<4} {:<20} {:<10} {:>10} {:>12}  bounding box (mm, LPS)",
            "#", "structure", "type", "voxels", "volume cm3"
        )?;
        for s in &self.structures {
            let bb = match s.bbox_mm {
                Some([a, b]) => format!(
                    "x {:.1}..{:.1}  y {:.1}..{:.1}  z {:.1}..{:.1}",
                    a[0], b[0], a[1], b[1], a[2], b[2]
                ),
                None => "empty (no voxel)".into(),
            };
            writeln!(
                f,
                "{:<4} {:<20} {:<10} {:>10} {:>12.2}  {}",
                s.number, s.name, s.interpreted_type, s.voxels, s.volume_cm3, bb
            )?;
        }
        for r in &self.non_volume_rois {
            let t = if r.interpreted_type.is_empty() {
                "-"
            } else {
                &r.interpreted_type
            };
            writeln!(
                f,
                "{:<4} {:<20} {:<10} {:>10} {:>12}  {} only, {} point(s): not a volume",
                r.number, r.name, t, "-", "-", r.geometric_types, r.points
            )?;
        }
        for s in &self.set_aside {
            writeln!(f, "set aside: {s}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}
