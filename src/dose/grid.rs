//! The dose grid: a regular grid separate from the CT grid, restricted to the body.

use crate::dvh::WeightedDoses;
use crate::error::{Error, Result};
use crate::geometry::partial::{self, DvhPoints};
use crate::geometry::{Grid3, Mask, PartialMask};
use crate::structures::{self, RoiType, Structure};

/// A structure's voxels as rows of a dose grid, which are the rows of the influence matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct StructureRows {
    /// ROIName (3006,0026).
    pub name: String,
    /// RTROIInterpretedType (3006,00A4).
    pub roi_type: RoiType,
    /// Rows of the dose grid whose voxel centre lies in the structure's CT-grid mask
    /// ([`DoseGrid::rows_in`]), ascending: each a whole voxel. The optimiser's rows for max
    /// and min limits.
    pub rows: Vec<u32>,
    /// The partial-volume rows: every computed row whose voxel the structure occupies at all,
    /// with the occupied fraction of the voxel's box, from the contours
    /// ([`structures::supersample`]). The optimiser's rows and voxel weights for goals that
    /// are volume averages ([`crate::optimize::GoalKind::is_volume_weighted`]).
    pub weighted: WeightedRows,
    /// What the structure's DVH is computed on: its supersampled points with trilinear dose
    /// (a structure with contours), or its rows (a structure known only as a mask). The
    /// report, the goal checks and the normalisation of a plan use these.
    pub dvh: DvhElements,
    /// The structure's volume on the whole dose grid, in voxels (sum of the occupied
    /// fractions, including voxels outside the computed rows), so that
    /// `volume_voxels x voxel volume` is the volume the contours enclose.
    pub volume_voxels: f64,
}

/// Rows of the dose grid with a weight each (the fraction of the voxel in a structure).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightedRows {
    /// Ascending.
    pub rows: Vec<u32>,
    /// In `(0, 1]`, one per row.
    pub weights: Vec<f32>,
}

impl WeightedRows {
    /// Every row with weight 1.
    pub fn uniform(rows: &[u32]) -> Self {
        WeightedRows {
            rows: rows.to_vec(),
            weights: vec![1.0; rows.len()],
        }
    }

    /// Sum of the weights, voxels (in row order).
    pub fn total_weight(&self) -> f64 {
        self.weights.iter().map(|&w| w as f64).sum()
    }

    /// These rows less the structures `excluded`: each row keeps its weight minus the
    /// excluded weights of that row, and rows left below [`partial::MIN_WEIGHT`] are dropped.
    /// Exact when the excluded parts of a voxel lie inside this structure's part and do not
    /// overlap each other (a target inside the body); otherwise the weight is a lower bound.
    /// `n_rows`: the rows of the dose grid.
    pub fn minus(&self, excluded: &[&WeightedRows], n_rows: usize) -> WeightedRows {
        if excluded.is_empty() {
            return self.clone();
        }
        let mut taken = vec![0.0f64; n_rows];
        for ex in excluded {
            for (&r, &w) in ex.rows.iter().zip(&ex.weights) {
                if let Some(t) = taken.get_mut(r as usize) {
                    *t += w as f64;
                }
            }
        }
        let mut out = WeightedRows::default();
        for (&r, &w) in self.rows.iter().zip(&self.weights) {
            let left = w as f64 - taken.get(r as usize).copied().unwrap_or(0.0);
            if left >= partial::MIN_WEIGHT {
                out.rows.push(r);
                out.weights.push(left as f32);
            }
        }
        out
    }

    /// The doses of these rows in `dose_gy` (one value per dose-grid row) with their weights,
    /// for the DVH metrics.
    pub fn doses(&self, dose_gy: &[f64]) -> WeightedDoses {
        let d: Vec<f64> = self
            .rows
            .iter()
            .map(|&r| dose_gy.get(r as usize).copied().unwrap_or(f64::NAN))
            .collect();
        WeightedDoses::new(&d, &self.weights)
    }
}

/// The elements a structure's DVH is computed on.
#[derive(Debug, Clone, PartialEq)]
pub enum DvhElements {
    /// Dose-grid rows with weights; each row's dose is the voxel's.
    Rows(WeightedRows),
    /// Supersampled points on the full dose grid ([`crate::geometry::partial`]); each point's
    /// dose is interpolated trilinearly (zero outside the computed rows, as in RTDOSE).
    Points(DvhPoints),
}

impl DvhElements {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            DvhElements::Rows(r) => r.rows.len(),
            DvhElements::Points(p) => p.len(),
        }
    }

    /// True when there is no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the weights, in dose-grid voxels.
    pub fn total_weight(&self) -> f64 {
        match self {
            DvhElements::Rows(r) => r.total_weight(),
            DvhElements::Points(p) => p.total_weight(),
        }
    }

    /// The elements' doses in `dose` with their weights, for the DVH metrics.
    pub fn doses(&self, dose: &DoseField) -> WeightedDoses {
        match self {
            DvhElements::Rows(r) => r.doses(dose.rows),
            DvhElements::Points(p) => WeightedDoses::new(&p.doses(dose.full()), &p.weights()),
        }
    }

    /// These elements less those of the structures `excluded` ([`WeightedRows::minus`],
    /// [`DvhPoints::minus`]); `n_rows`: the rows of the dose grid. Errors when rows and points
    /// are mixed (a structure known only as a mask excluded from one with contours, or the
    /// other way round) or the points lie on different grids; `what` names the goal.
    pub fn minus(&self, excluded: &[&DvhElements], n_rows: usize, what: &str) -> Result<Self> {
        let mixed = || {
            Error::Invalid(format!(
                "{what}: a structure with contours and one known only as a voxel mask cannot be \
                 subtracted from each other"
            ))
        };
        match self {
            DvhElements::Rows(r) => {
                let ex = all_of(excluded, |e| match e {
                    DvhElements::Rows(x) => Some(x),
                    DvhElements::Points(_) => None,
                })
                .ok_or_else(mixed)?;
                Ok(DvhElements::Rows(r.minus(&ex, n_rows)))
            }
            DvhElements::Points(p) => {
                let ex = all_of(excluded, |e| match e {
                    DvhElements::Points(x) => Some(x),
                    DvhElements::Rows(_) => None,
                })
                .ok_or_else(mixed)?;
                p.minus(&ex)
                    .map(DvhElements::Points)
                    .map_err(|e| Error::Invalid(format!("{what}: {e}")))
            }
        }
    }
}

/// `pick` of every element set, or `None` when one is of the other kind.
fn all_of<'e, T>(
    sets: &[&'e DvhElements],
    pick: impl Fn(&'e DvhElements) -> Option<&'e T>,
) -> Option<Vec<&'e T>> {
    sets.iter().map(|e| pick(e)).collect()
}

/// A dose on the rows of a dose grid, with its full-grid image made once when a DVH needs
/// it (supersampled points interpolate on the full grid, zero outside the computed rows).
pub struct DoseField<'a> {
    /// Gy per row.
    pub rows: &'a [f64],
    pub grid: &'a DoseGrid,
    full: std::cell::OnceCell<Vec<f64>>,
}

impl<'a> DoseField<'a> {
    pub fn new(rows: &'a [f64], grid: &'a DoseGrid) -> Self {
        DoseField {
            rows,
            grid,
            full: std::cell::OnceCell::new(),
        }
    }

    /// The dose on every voxel of the full grid, Gy (0 outside the computed rows).
    pub fn full(&self) -> &[f64] {
        self.full.get_or_init(|| {
            let mut f = vec![0.0; self.grid.grid.len()];
            for (&v, &d) in self.grid.voxels.iter().zip(self.rows) {
                if let Some(x) = f.get_mut(v as usize) {
                    *x = d;
                }
            }
            f
        })
    }
}

impl StructureRows {
    /// Rows without partial volumes: each row a whole voxel, the DVH on the rows.
    pub fn new(name: &str, roi_type: RoiType, rows: Vec<u32>) -> Self {
        let weighted = WeightedRows::uniform(&rows);
        StructureRows {
            name: name.to_string(),
            roi_type,
            dvh: DvhElements::Rows(weighted.clone()),
            weighted,
            volume_voxels: rows.len() as f64,
            rows,
        }
    }

    /// Rows (centre rule) with known partial volumes `weighted`, which are also the DVH
    /// elements (each row's dose is the voxel's): a phantom whose shapes are analytic.
    pub fn with_partial_volumes(
        name: &str,
        roi_type: RoiType,
        rows: Vec<u32>,
        weighted: WeightedRows,
    ) -> Self {
        StructureRows {
            name: name.to_string(),
            roi_type,
            dvh: DvhElements::Rows(weighted.clone()),
            volume_voxels: weighted.total_weight(),
            weighted,
            rows,
        }
    }

    /// The rows of `structure` on `grid`: centre rule on its CT-grid mask, and the partial
    /// volumes and DVH points of its contours ([`structures::supersample`], slabs of the
    /// mask's CT slices). A structure without closed planar contours (known only as a mask: a
    /// phantom, a segmentation) has its centre-rule rows with weight 1 for both. Errors: the
    /// contours do not fit the CT grid (as when the case was loaded).
    pub fn of(structure: &Structure, grid: &DoseGrid) -> Result<Self> {
        let rows = grid.rows_in(&structure.mask);
        let (weighted, dvh, volume_voxels) = if structure.roi.is_volume() {
            let (pm, points) =
                structures::supersample(&structure.roi, &structure.mask.grid, &grid.grid)?;
            (
                grid.rows_of(&pm),
                DvhElements::Points(points),
                pm.total_weight(),
            )
        } else {
            let w = WeightedRows::uniform(&rows);
            (w.clone(), DvhElements::Rows(w), rows.len() as f64)
        };
        Ok(StructureRows {
            name: structure.roi.name.clone(),
            roi_type: structure.roi.roi_type(),
            rows,
            weighted,
            dvh,
            volume_voxels,
        })
    }

    /// The contours' volume on the dose grid, cm3.
    pub fn volume_cm3(&self, grid: &DoseGrid) -> f64 {
        self.volume_voxels * grid.grid.voxel_volume_cm3()
    }
}

/// Dose-calculation grid and the voxels on which dose is computed (the rows of `A`).
#[derive(Debug, Clone)]
pub struct DoseGrid {
    /// The full regular grid (LPS mm).
    pub grid: Grid3,
    /// Linear indices (in `grid`) of the computed voxels, ascending. Row `r` of the influence
    /// matrix is voxel `voxels[r]`.
    pub voxels: Vec<u32>,
}

impl DoseGrid {
    /// LPS centres (mm) of the computed voxels, one per row.
    pub fn centres_mm(&self) -> Vec<[f64; 3]> {
        use rayon::prelude::*;
        self.voxels
            .par_iter()
            .map(|&v| {
                let [i, j, k] = self.grid.ijk(v as usize);
                self.grid.centre_mm(i, j, k)
            })
            .collect()
    }

    /// A grid with spacing `spacing_mm` covering the bounds of `ct_grid`, restricted to the
    /// voxels whose centre falls inside `body` (nearest CT voxel).
    pub fn covering(ct_grid: &Grid3, spacing_mm: [f64; 3], body: &Mask) -> DoseGrid {
        let (lo, hi) = ct_grid.bounds_mm();
        let mut dims = [0usize; 3];
        let mut origin = [0.0; 3];
        for a in 0..3 {
            let n = ((hi[a] - lo[a]) / spacing_mm[a]).floor().max(1.0) as usize;
            dims[a] = n;
            // centre the dose grid on the CT extent
            let extent = n as f64 * spacing_mm[a];
            origin[a] = lo[a] + 0.5 * (hi[a] - lo[a] - extent) + 0.5 * spacing_mm[a];
        }
        let grid = Grid3 {
            dims,
            origin_mm: origin,
            spacing_mm,
        };
        let mut voxels = Vec::new();
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let p = grid.centre_mm(i, j, k);
                    if mask_at(body, p) {
                        voxels.push(grid.index(i, j, k) as u32);
                    }
                }
            }
        }
        DoseGrid { grid, voxels }
    }

    /// Number of computed voxels (rows of `A`).
    pub fn len(&self) -> usize {
        self.voxels.len()
    }

    /// True when no voxel is computed.
    pub fn is_empty(&self) -> bool {
        self.voxels.is_empty()
    }

    /// Rows of `A` whose voxel centre lies in `mask` (nearest voxel of the mask's grid).
    pub fn rows_in(&self, mask: &Mask) -> Vec<u32> {
        self.voxels
            .iter()
            .enumerate()
            .filter(|(_, &v)| {
                let [i, j, k] = self.grid.ijk(v as usize);
                mask_at(mask, self.grid.centre_mm(i, j, k))
            })
            .map(|(r, _)| r as u32)
            .collect()
    }

    /// The computed rows among the voxels of `pm` (a partial mask on this grid), with their
    /// weights; voxels of `pm` without a row (outside the computed region) are left out.
    pub fn rows_of(&self, pm: &PartialMask) -> WeightedRows {
        let mut out = WeightedRows::default();
        if pm.grid != self.grid {
            return out;
        }
        // Both lists ascend: merge.
        let mut r = 0usize;
        for (&v, &w) in pm.voxels.iter().zip(&pm.weights) {
            while self.voxels.get(r).is_some_and(|&x| x < v) {
                r += 1;
            }
            if self.voxels.get(r) == Some(&v) {
                out.rows.push(r as u32);
                out.weights.push(w);
            }
        }
        out
    }

    /// Scatter row values onto the full grid (zeros outside the computed voxels).
    pub fn to_full(&self, row_values: &[f64]) -> Vec<f32> {
        let mut full = vec![0f32; self.grid.len()];
        for (r, &v) in self.voxels.iter().enumerate() {
            full[v as usize] = row_values[r] as f32;
        }
        full
    }
}

/// Whether the mask voxel nearest to `p_mm` is inside (false outside the mask's grid).
pub fn mask_at(mask: &Mask, p_mm: [f64; 3]) -> bool {
    let c = mask.grid.continuous_index(p_mm);
    let mut ijk = [0usize; 3];
    for a in 0..3 {
        let r = c[a].round();
        if r < 0.0 || r >= mask.grid.dims[a] as f64 {
            return false;
        }
        ijk[a] = r as usize;
    }
    mask.inside[mask.grid.index(ijk[0], ijk[1], ijk[2])]
}
