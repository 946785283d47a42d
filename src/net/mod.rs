//! DICOM networking (issue 21): `rtopt pull` (C-FIND a study by accession number or
//! StudyInstanceUID, C-GET its CT series and RT Structure Set into a checked case folder),
//! `rtopt push` (C-STORE a plan folder's objects with a status per object) and `rtopt listen`
//! (a storage SCP that receives a CT + RT Structure Set, plans it with the protocol a rule
//! file chooses and sends the plan back). Built on dicom-rs's upper layer (`dicom-ul`) with
//! command sets as `dicom-object` data sets; `docs/networking.md` has the configuration, the
//! rule file, the security and privacy rules and the limitations.
//!
//! Privacy: nothing here logs or puts into an error a patient's name or ID; events and
//! errors carry UIDs, accession numbers, AE titles, counts and file names only.
//!
//! One concern per file: [`config`] (TOML), [`association`] (opening an association),
//! [`dimse`] (command sets, messages, bounds), [`find`] (C-FIND), [`retrieve`] (C-GET,
//! C-MOVE), [`store`] (C-STORE SCU), [`receive`] (staging received objects), [`pull`](mod@pull),
//! [`scp`] (the storage SCP and its allow-list), [`rules`] (the listener's rule file) and
//! [`listen`] (receive, plan, send back).

pub mod association;
pub mod config;
pub mod dimse;
pub mod find;
pub mod listen;
pub mod pull;
pub mod receive;
pub mod retrieve;
pub mod rules;
pub mod scp;
pub mod store;
#[cfg(feature = "tls")]
pub mod tls;

pub use config::{NetConfig, Node};
pub use find::StudyKey;
pub use listen::{ListenEvent, Listener};
pub use pull::{pull, PullReport, PullRequest};
pub use store::{push, PushReport, StoreOutcome};
