//! DICOM reading and writing, one module per object type.
//!
//! - [`read`]: parsing a file (with or without file meta header, lengths checked before any
//!   allocation) and typed attribute access whose errors name the file and the tag;
//! - [`ct`]: CT Image Storage series -> [`crate::ct::CtVolume`];
//! - [`rtstruct`]: RT Structure Set <-> [`crate::structures::StructureSet`];
//! - [`rtplan`]: RT Plan writer (step-and-shoot IMRT) and reader;
//! - [`rtdose`]: RT Dose writer and reader;
//! - [`plan_checklist`]: what an importing system checks on any RT Plan, item by item;
//! - [`error`]: [`DicomError`], chained into [`crate::Error::Dicom`];
//! - [`identity`]: creation date and time (clock or `SOURCE_DATE_EPOCH`), series numbers;
//! - [`builder`]: deterministic data-set building shared by the writers; [`uid`]: content-
//!   derived UIDs.

pub mod builder;
pub mod ct;
pub mod error;
pub mod identity;
pub mod plan_checklist;
pub mod read;
pub mod rtdose;
pub mod rtplan;
pub mod rtstruct;
pub mod uid;

pub use error::DicomError;
