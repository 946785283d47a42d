//! NumPy array files: `.npy` (one array) and `.npz` (a stored zip of `.npy` files), the format
//! `numpy.load` and `scipy.sparse.load_npz` read. Used to hand the optimisation problem to
//! Python peers (`rtopt export-problem`, `docs/peer-benchmark.md`).
//!
//! Format: NumPy's `.npy` version 1.0 — magic `\x93NUMPY`, version bytes 1 0, a little-endian
//! u16 header length, a Python-literal header dict padded with spaces and a newline to a
//! multiple of 64 bytes, then the raw little-endian data in C order.

use std::io::{Cursor, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// One array: its NumPy dtype string, shape and raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// NumPy `descr`, e.g. `<f4`, `<f8`, `<i4`, `<i8`, `<U3`.
    pub descr: String,
    /// Shape (empty for a 0-d array).
    pub shape: Vec<usize>,
    /// Data, little-endian, C order.
    pub data: Vec<u8>,
}

impl NpyArray {
    pub fn f32(v: &[f32]) -> Self {
        Self::from_le(v.len(), "<f4", v.iter().flat_map(|x| x.to_le_bytes()))
    }
    pub fn f64(v: &[f64]) -> Self {
        Self::from_le(v.len(), "<f8", v.iter().flat_map(|x| x.to_le_bytes()))
    }
    pub fn i32(v: &[i32]) -> Self {
        Self::from_le(v.len(), "<i4", v.iter().flat_map(|x| x.to_le_bytes()))
    }
    pub fn i64(v: &[i64]) -> Self {
        Self::from_le(v.len(), "<i8", v.iter().flat_map(|x| x.to_le_bytes()))
    }
    /// Row indices as `int32`. Errors when an index does not fit (more than 2^31 - 1 rows).
    pub fn indices(v: &[u32]) -> Result<Self> {
        let mut out = Vec::with_capacity(v.len());
        for &x in v {
            out.push(i32::try_from(x).map_err(|_| {
                Error::Invalid(format!("index {x} does not fit a NumPy int32 array"))
            })?);
        }
        Ok(Self::i32(&out))
    }
    /// A 0-d unicode string array (`numpy.array("csr")`).
    pub fn str_scalar(s: &str) -> Self {
        let n = s.chars().count().max(1);
        let mut data = Vec::with_capacity(4 * n);
        for c in s.chars().chain(std::iter::repeat('\0')).take(n) {
            data.extend_from_slice(&(c as u32).to_le_bytes());
        }
        NpyArray {
            descr: format!("<U{n}"),
            shape: Vec::new(),
            data,
        }
    }
    /// Reshape (the element count must match).
    pub fn reshaped(mut self, shape: &[usize]) -> Result<Self> {
        let old: usize = self.shape.iter().product();
        let new: usize = shape.iter().product();
        if old != new {
            return Err(Error::Invalid(format!(
                "cannot reshape {old} elements to {shape:?}"
            )));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    fn from_le(n: usize, descr: &str, bytes: impl Iterator<Item = u8>) -> Self {
        NpyArray {
            descr: descr.to_string(),
            shape: vec![n],
            data: bytes.collect(),
        }
    }

    /// The `.npy` file bytes.
    pub fn to_npy(&self) -> Vec<u8> {
        let shape = match self.shape.len() {
            0 => "()".to_string(),
            1 => format!("({},)", self.shape[0]),
            _ => format!(
                "({})",
                self.shape
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut header = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
            self.descr, shape
        );
        // magic (6) + version (2) + length (2) + header + '\n' padded to 64 bytes.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + self.data.len());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }
}

/// Write an `.npz` (uncompressed zip of `<name>.npy` members, fixed 1980-01-01 timestamps so
/// the bytes depend on the arrays only) atomically to `path`.
pub fn write_npz(path: &Path, arrays: &[(String, NpyArray)]) -> Result<()> {
    let bytes = npz_bytes(arrays).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    crate::io::atomic::write_file(path, &bytes)
}

fn npz_bytes(arrays: &[(String, NpyArray)]) -> std::result::Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(true);
    for (name, a) in arrays {
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(|e| format!("{name}: {e}"))?;
        zip.write_all(&a.to_npy())
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(zip
        .finish()
        .map_err(|e| format!("finishing the archive: {e}"))?
        .into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn npy_header_is_padded_to_64_bytes_and_data_follows() {
        let a = NpyArray::f64(&[1.5, -2.0]);
        let b = a.to_npy();
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert_eq!(
            header.trim_end(),
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
        );
        assert!(header.ends_with('\n'));
        assert_eq!(&b[10 + hlen..10 + hlen + 8], &1.5f64.to_le_bytes());
        assert_eq!(b.len(), 10 + hlen + 16);
    }

    #[test]
    fn two_d_and_scalar_shapes() {
        let a = NpyArray::i32(&[1, 2, 3, 4, 5, 6])
            .reshaped(&[3, 2])
            .unwrap();
        assert!(String::from_utf8_lossy(&a.to_npy()).contains("'shape': (3, 2), }"));
        assert!(NpyArray::i32(&[1]).reshaped(&[2]).is_err());
        let s = NpyArray::str_scalar("csr");
        assert_eq!(s.data.len(), 12);
        assert!(String::from_utf8_lossy(&s.to_npy()).contains("'<U3'"));
        assert!(NpyArray::indices(&[u32::MAX]).is_err());
    }

    #[test]
    fn npz_round_trips_through_a_zip_reader_and_is_deterministic() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.npz");
        let arrays = vec![
            ("x".to_string(), NpyArray::f32(&[0.25, 4.0])),
            ("rows".to_string(), NpyArray::indices(&[3, 7]).unwrap()),
        ];
        write_npz(&p, &arrays).unwrap();
        let first = std::fs::read(&p).unwrap();
        write_npz(&p, &arrays).unwrap();
        assert_eq!(first, std::fs::read(&p).unwrap());
        let mut z = zip::ZipArchive::new(std::fs::File::open(&p).unwrap()).unwrap();
        let mut buf = Vec::new();
        z.by_name("rows.npy")
            .unwrap()
            .read_to_end(&mut buf)
            .unwrap();
        assert_eq!(buf, arrays[1].1.to_npy());
    }
}
