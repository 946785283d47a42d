//! DICOM export (RT Plan, RT Dose, RT Structure Set) and deterministic UIDs.

pub mod uid;
