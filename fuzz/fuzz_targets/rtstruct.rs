//! Fuzz target: bytes of one file -> RT Structure Set import (`io::dicom::rtstruct::read_rtstruct_bytes`)
//! and even-odd rasterisation of every volumetric ROI on a small grid that overlaps the TG119
//! phantom (64 x 64 x 129 voxels of 8 x 8 x 2.5 mm from (-250, -250, -160) mm, LPS).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rtopt::geometry::Grid3;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz/rtstruct.dcm");
    let Ok(ss) = rtopt::io::dicom::rtstruct::read_rtstruct_bytes(path, data) else {
        return;
    };
    let grid = Grid3 {
        dims: [64, 64, 129],
        origin_mm: [-250.0, -250.0, -160.0],
        spacing_mm: [8.0, 8.0, 2.5],
    };
    if let Ok(structures) = rtopt::structures::rasterize_all(&ss, &grid) {
        for s in &structures {
            assert_eq!(s.mask.inside.len(), grid.len());
        }
    }
});
