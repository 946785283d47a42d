//! The dose grid: a regular grid separate from the CT grid, restricted to the body.

use crate::geometry::{Grid3, Mask};
use crate::structures::{RoiType, Structure};

/// A structure's voxels as rows of a dose grid, which are the rows of the influence matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct StructureRows {
    /// ROIName (3006,0026).
    pub name: String,
    /// RTROIInterpretedType (3006,00A4).
    pub roi_type: RoiType,
    /// Rows of the dose grid inside the structure ([`DoseGrid::rows_in`]), ascending.
    pub rows: Vec<u32>,
}

impl StructureRows {
    pub fn new(name: &str, roi_type: RoiType, rows: Vec<u32>) -> Self {
        StructureRows {
            name: name.to_string(),
            roi_type,
            rows,
        }
    }

    /// The rows of `structure` on `grid`.
    pub fn of(structure: &Structure, grid: &DoseGrid) -> Self {
        StructureRows {
            name: structure.roi.name.clone(),
            roi_type: structure.roi.roi_type(),
            rows: grid.rows_in(&structure.mask),
        }
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
