//! The I/O layer: every file format rtopt reads or writes, apart from the domain types.
//!
//! - [`dicom`]: DICOM reading and writing per object type (CT, RT Structure Set, RT Plan,
//!   RT Dose), the shared reader and data-set builder, deterministic UIDs;
//! - [`nifti`]: NIfTI-1 label maps and volumes;
//! - [`npz`]: NumPy `.npy` / `.npz` arrays for the Python peers;
//! - [`atomic`]: atomic file and folder writing (temporary file, fsync, rename).
//!
//! Domain types ([`crate::ct::CtVolume`], [`crate::structures::StructureSet`], the plan and
//! dose types) hold no codec code; the codecs here build them from bytes and back.

pub mod atomic;
pub mod dicom;
pub mod nifti;
pub mod npz;
