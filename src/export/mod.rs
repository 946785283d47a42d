//! DICOM export (RT Plan, RT Dose, RT Structure Set) and deterministic UIDs.

pub mod builder;
pub mod plan_import;
pub mod rtdose;
pub mod rtplan;
pub mod rtstruct;
pub mod uid;
