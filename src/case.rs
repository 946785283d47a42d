//! A patient case: the CT series and its structures rasterised on the CT grid.
//! This is matRad's `ct` + `cst` step.

// Input module: data from files must never panic (project issue 9, docs/reliability.md).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ct::{self, CtImportOptions, CtVolume, FolderScan};
use crate::error::{Error, Result};
use crate::geometry::Mask;
use crate::structures::{self, Structure, StructureSet};

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
        let (structure_set, structures) = match rs_path {
            Some(p) => {
                let ss = structures::read_rtstruct(&p)?;
                structures::check_frame_of_reference(&ss, &ct.meta.frame_of_reference_uid)?;
                let st = structures::rasterize_all(&ss, &ct.grid)?;
                (Some(ss), st)
            }
            None => (None, Vec::new()),
        };
        Ok(Case {
            dir: Some(dir.to_path_buf()),
            ct,
            structure_set,
            structures,
            scan,
        })
    }

    /// Build a case in memory (for embedding and for tests).
    pub fn from_parts(ct: CtVolume, structures: Vec<Structure>) -> Case {
        Case {
            dir: None,
            ct,
            structure_set: None,
            structures,
            scan: FolderScan::default(),
        }
    }

    /// The structure with this name (exact, then case-insensitive).
    pub fn structure(&self, name: &str) -> Result<&Structure> {
        self.structures
            .iter()
            .find(|s| s.roi.name == name)
            .or_else(|| {
                self.structures
                    .iter()
                    .find(|s| s.roi.name.eq_ignore_ascii_case(name))
            })
            .ok_or_else(|| Error::StructureNotFound {
                name: name.to_string(),
                present: self.structure_names().join(", "),
            })
    }

    /// Names of all structures.
    pub fn structure_names(&self) -> Vec<String> {
        self.structures.iter().map(|s| s.roi.name.clone()).collect()
    }

    /// The body outline: the structure of type EXTERNAL (or named BODY/External).
    pub fn body(&self) -> Option<&Structure> {
        self.structures
            .iter()
            .find(|s| s.roi.interpreted_type.eq_ignore_ascii_case("EXTERNAL"))
            .or_else(|| {
                self.structures.iter().find(|s| {
                    let n = s.roi.name.to_ascii_lowercase();
                    n == "body" || n == "external" || n == "skin"
                })
            })
    }

    /// Body mask: the EXTERNAL structure, or an automatic outline (HU > -350, largest
    /// connected component per slice with holes filled) when none exists.
    pub fn body_mask(&self) -> Mask {
        match self.body() {
            Some(s) => s.mask.clone(),
            None => crate::segment::body::body_outline(&self.ct),
        }
    }
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
    pub set_aside: Vec<String>,
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
                None => "empty".into(),
            };
            writeln!(
                f,
                "{:<4} {:<20} {:<10} {:>10} {:>12.2}  {}",
                s.number, s.name, s.interpreted_type, s.voxels, s.volume_cm3, bb
            )?;
        }
        for s in &self.set_aside {
            writeln!(f, "set aside: {s}")?;
        }
        Ok(())
    }
}
