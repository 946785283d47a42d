//! Minimal NIfTI-1 reader (`.nii` / `.nii.gz`) for reference label maps and test volumes.
//!
//! The image is reoriented onto an axis-aligned LPS [`Grid3`] (NIfTI world coordinates are RAS:
//! LPS = (-x, -y, z)). Only affines whose voxel axes are parallel to the world axes (any
//! permutation and sign) are accepted; oblique volumes are refused with an error.
//!
//! Orientation: the voxel-to-world affine is the sform when `sform_code > 0`, else the qform
//! (quaternion, `qfac` from `pixdim[0]`) when `qform_code > 0`, else `diag(pixdim)`. NIfTI world
//! coordinates are RAS+ (+x toward the patient's right, +y anterior, +z superior); DICOM's are
//! LPS+ (+x toward the patient's left, +y posterior, +z superior), so a point maps as
//! `(x, y, z)_LPS = (-x, -y, z)_RAS`. Voxel axes that run against an LPS axis are reversed while
//! copying, so the result is on an LPS grid with positive spacings like [`crate::ct`]'s.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::geometry::Grid3;

/// A NIfTI volume on an LPS grid; values with scl_slope/scl_inter applied.
#[derive(Debug, Clone)]
pub struct NiftiVolume {
    pub grid: Grid3,
    pub values: Vec<f32>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        reason: format!("NIfTI: {}", reason.into()),
    }
}

/// Largest decompressed NIfTI accepted (a gzip bomb or an absurd header is refused, not
/// allocated): 4 GiB, far above a CT label map (512 x 512 x 1000 int16 is 0.5 GiB).
pub const MAX_NIFTI_BYTES: u64 = 4 << 30;

/// Read a NIfTI-1 file (gzip detected by magic).
pub fn read_nifti(path: &Path) -> Result<NiftiVolume> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_nifti_bytes(path, &raw)
}

/// [`read_nifti`] on file bytes in memory; `path` is used in messages only. Never panics on
/// any input (unit test `mutated_headers_never_panic`).
pub fn read_nifti_bytes(path: &Path, raw: &[u8]) -> Result<NiftiVolume> {
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .take(MAX_NIFTI_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| bad(path, format!("gzip: {e}")))?;
        if out.len() as u64 > MAX_NIFTI_BYTES {
            return Err(bad(
                path,
                format!("decompresses to more than {MAX_NIFTI_BYTES} bytes"),
            ));
        }
        out
    } else {
        raw.to_vec()
    };
    if bytes.len() < 352 {
        return Err(bad(path, "file shorter than the 348-byte header"));
    }
    let le = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == 348;
    if !le && i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) != 348 {
        return Err(bad(path, "sizeof_hdr is not 348 (not NIfTI-1)"));
    }
    let i16_at = |o: usize| {
        let b = [bytes[o], bytes[o + 1]];
        if le {
            i16::from_le_bytes(b)
        } else {
            i16::from_be_bytes(b)
        }
    };
    let f32_at = |o: usize| {
        let b = [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
        if le {
            f32::from_le_bytes(b)
        } else {
            f32::from_be_bytes(b)
        }
    };
    let ndim = i16_at(40);
    if !(3..=7).contains(&ndim) {
        return Err(bad(path, format!("dim[0] = {ndim}; need a 3D volume")));
    }
    let n: Vec<usize> = (1..=3)
        .map(|a| i16_at(40 + 2 * a).max(0) as usize)
        .collect();
    if n.contains(&0) {
        return Err(bad(path, format!("dimensions {n:?} contain a zero")));
    }
    for a in 4..=ndim as usize {
        if i16_at(40 + 2 * a) > 1 {
            return Err(bad(path, "4D or higher volumes are not supported"));
        }
    }
    let datatype = i16_at(70);
    let pixdim: Vec<f64> = (0..8).map(|a| f32_at(76 + 4 * a) as f64).collect();
    // `as usize` saturates (NaN to 0); the length check below refuses absurd offsets.
    let vox_offset = f32_at(108).max(352.0) as usize;
    let (mut slope, inter) = (f32_at(112), f32_at(116));
    if slope == 0.0 || !slope.is_finite() {
        slope = 1.0;
    }
    let inter = if inter.is_finite() { inter } else { 0.0 };
    let qform_code = i16_at(252);
    let sform_code = i16_at(254);
    // 3x4 affine voxel -> RAS mm.
    let mut aff = [[0.0f64; 4]; 3];
    if sform_code > 0 {
        for (r, row) in aff.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f32_at(280 + 16 * r + 4 * c) as f64;
            }
        }
    } else if qform_code > 0 {
        let (b, c, d) = (f32_at(256) as f64, f32_at(260) as f64, f32_at(264) as f64);
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let off = [f32_at(268) as f64, f32_at(272) as f64, f32_at(276) as f64];
        for ((row, rot), o) in aff.iter_mut().zip(r).zip(off) {
            row[0] = rot[0] * pixdim[1];
            row[1] = rot[1] * pixdim[2];
            row[2] = rot[2] * pixdim[3] * qfac;
            row[3] = o;
        }
    } else {
        for (a, row) in aff.iter_mut().enumerate() {
            row[a] = pixdim[a + 1];
        }
    }
    // To LPS.
    for row in aff.iter_mut().take(2) {
        row.iter_mut().for_each(|v| *v = -*v);
    }
    // Map each voxel axis to one world axis.
    let mut world_of = [0usize; 3];
    let mut sign = [1.0f64; 3];
    let mut spacing = [0.0f64; 3];
    for v in 0..3 {
        let col = [aff[0][v], aff[1][v], aff[2][v]];
        let (w, mag) = (0..3)
            .map(|w| (w, col[w].abs()))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, 0.0));
        if !mag.is_finite() || mag <= 0.0 || (0..3).any(|o| o != w && col[o].abs() > 1e-3 * mag) {
            return Err(bad(
                path,
                "oblique affine (voxel axes not parallel to the patient axes)",
            ));
        }
        world_of[v] = w;
        sign[v] = col[w].signum();
        spacing[w] = mag;
    }
    if world_of[0] == world_of[1] || world_of[1] == world_of[2] || world_of[0] == world_of[2] {
        return Err(bad(path, "degenerate affine"));
    }
    let mut dims = [0usize; 3];
    let mut origin = [0.0f64; 3];
    for v in 0..3 {
        let w = world_of[v];
        dims[w] = n[v];
        // World coordinate of the first voxel along w in the output: the voxel index 0 when
        // the axis runs forward, n-1 when it runs backward.
        let first_index = if sign[v] > 0.0 {
            0.0
        } else {
            (n[v] - 1) as f64
        };
        let mut p = aff[w][3];
        p += aff[w][v] * first_index;
        origin[w] = p;
    }
    // Other axes' translation components do not affect world axis w (axis-aligned).
    type ReadFn = fn(&[u8], bool) -> f32;
    let (bpv, read): (usize, ReadFn) = match datatype {
        2 => (1, |b, _| b[0] as f32),
        256 => (1, |b, _| b[0] as i8 as f32),
        4 => (2, |b, le| {
            let a = [b[0], b[1]];
            (if le {
                i16::from_le_bytes(a)
            } else {
                i16::from_be_bytes(a)
            }) as f32
        }),
        512 => (2, |b, le| {
            let a = [b[0], b[1]];
            (if le {
                u16::from_le_bytes(a)
            } else {
                u16::from_be_bytes(a)
            }) as f32
        }),
        8 => (4, |b, le| {
            let a = [b[0], b[1], b[2], b[3]];
            (if le {
                i32::from_le_bytes(a)
            } else {
                i32::from_be_bytes(a)
            }) as f32
        }),
        16 => (4, |b, le| {
            let a = [b[0], b[1], b[2], b[3]];
            if le {
                f32::from_le_bytes(a)
            } else {
                f32::from_be_bytes(a)
            }
        }),
        64 => (8, |b, le| {
            let a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
            (if le {
                f64::from_le_bytes(a)
            } else {
                f64::from_be_bytes(a)
            }) as f32
        }),
        other => return Err(bad(path, format!("datatype {other} not supported"))),
    };
    let total = n[0] * n[1] * n[2];
    let needed = total
        .checked_mul(bpv)
        .and_then(|b| b.checked_add(vox_offset));
    if needed.is_none_or(|needed| bytes.len() < needed) {
        return Err(bad(
            path,
            format!(
                "truncated: {} bytes of voxel data, {} expected",
                bytes.len().saturating_sub(vox_offset),
                total * bpv
            ),
        ));
    }
    if origin.iter().any(|v| !v.is_finite()) {
        return Err(bad(path, "the affine's translation is not finite"));
    }
    let grid = Grid3 {
        dims,
        origin_mm: origin,
        spacing_mm: spacing,
    };
    let mut values = vec![0.0f32; total];
    for vk in 0..n[2] {
        for vj in 0..n[1] {
            for vi in 0..n[0] {
                let src = (vk * n[1] + vj) * n[0] + vi;
                let o = vox_offset + src * bpv;
                let v = read(&bytes[o..o + bpv], le) * slope + inter;
                let vidx = [vi, vj, vk];
                let mut out = [0usize; 3];
                for a in 0..3 {
                    let w = world_of[a];
                    out[w] = if sign[a] > 0.0 {
                        vidx[a]
                    } else {
                        n[a] - 1 - vidx[a]
                    };
                }
                values[grid.index(out[0], out[1], out[2])] = v;
            }
        }
    }
    Ok(NiftiVolume { grid, values })
}

/// Nearest-neighbour resampling of `values` on `src` onto `dst` (voxel centres); points
/// outside `src` get `outside`.
pub fn resample_nearest(src: &Grid3, values: &[f32], dst: &Grid3, outside: f32) -> Vec<f32> {
    let mut out = vec![outside; dst.len()];
    let [nx, ny, nz] = dst.dims;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let c = src.continuous_index(dst.centre_mm(i, j, k));
                let r: Vec<f64> = c.iter().map(|v| v.round()).collect();
                if (0..3).all(|a| r[a] >= 0.0 && (r[a] as usize) < src.dims[a]) {
                    let v = values.get(src.index(r[0] as usize, r[1] as usize, r[2] as usize));
                    out[dst.index(i, j, k)] = v.copied().unwrap_or(outside);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 x 2 x 2 int16 volume, sform diag(2, 3, 4) + (1, 2, 3), values 0..12.
    fn tiny() -> Vec<u8> {
        let mut h = vec![0u8; 352];
        h[0..4].copy_from_slice(&348i32.to_le_bytes());
        for (i, d) in [3i16, 3, 2, 2, 1, 1, 1, 1].iter().enumerate() {
            h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        h[70..72].copy_from_slice(&4i16.to_le_bytes());
        h[108..112].copy_from_slice(&352f32.to_le_bytes());
        h[254..256].copy_from_slice(&1i16.to_le_bytes());
        for (r, row) in [[2f32, 0., 0., 1.], [0., 3., 0., 2.], [0., 0., 4., 3.]]
            .iter()
            .enumerate()
        {
            for (c, v) in row.iter().enumerate() {
                h[280 + 16 * r + 4 * c..284 + 16 * r + 4 * c].copy_from_slice(&v.to_le_bytes());
            }
        }
        for v in 0..12i16 {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    #[test]
    fn mutated_headers_never_panic() {
        let p = Path::new("t.nii");
        let ok = read_nifti_bytes(p, &tiny()).expect("valid");
        // RAS x and y reversed into LPS: LPS x of voxel i is -(1 + 2 i).
        assert_eq!(ok.grid.origin_mm, [-5.0, -5.0, 3.0]);
        assert_eq!(ok.values[0], 2.0 + 3.0 * 1.0); // LPS voxel (0,0,0) = NIfTI (2,1,0)
        let mut refused = 0;
        for o in 0..352 {
            for v in [0x00u8, 0x7f, 0x80, 0xff] {
                let mut b = tiny();
                b[o] = v;
                refused += read_nifti_bytes(p, &b).is_err() as usize;
            }
        }
        for len in 0..tiny().len() {
            assert!(read_nifti_bytes(p, &tiny()[..len]).is_err(), "length {len}");
        }
        assert!(refused > 0);
    }
}
