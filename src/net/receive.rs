//! Receiving objects by C-STORE (the storage SCP of `rtopt listen` and the sub-operations of
//! a C-GET in `rtopt pull`) into a staging folder, and moving a complete, checked study into
//! place with one rename. A staging folder that is not committed is removed when dropped, so
//! an association that breaks off leaves nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_ul::association::{CloseSocket, SyncAssociation};

use super::config::Limits;
use super::dimse::{self, command, status, text_of, Message};
use crate::error::{Error, Result};

/// Name of the hidden folder, inside a destination's parent, that holds staging folders.
pub const STAGING_DIR: &str = ".rtopt-staging";

/// One received object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub modality: String,
    /// File name inside the staging (later the case) folder.
    pub file_name: String,
    /// Data-set bytes.
    pub bytes: u64,
}

/// A staging folder being filled by one association.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    objects: Vec<Received>,
    bytes: u64,
    limits: Limits,
    /// SOP classes accepted into this folder.
    accepted_classes: Vec<String>,
    committed: bool,
}

/// A UID as DICOM allows it (PS3.5 9.1): 1 to 64 characters of digits and dots. Also what
/// makes it safe as part of a file name.
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.')
        && !uid.contains("..")
}

impl Staging {
    /// A fresh staging folder under `<parent>/.rtopt-staging/`.
    pub fn create(parent: &Path, limits: Limits, accepted_classes: &[&str]) -> Result<Staging> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let root = parent.join(STAGING_DIR);
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("{}-{n}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Staging {
            dir,
            objects: Vec::new(),
            bytes: 0,
            limits,
            accepted_classes: accepted_classes.iter().map(|s| s.to_string()).collect(),
            committed: false,
        })
    }

    /// The folder objects are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The objects received so far.
    pub fn objects(&self) -> &[Received] {
        &self.objects
    }

    /// Data-set bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Check and write one C-STORE request's data set (transfer syntax `ts`) as a Part-10
    /// file. Returns the C-STORE status and, on failure, why (UIDs and limits only).
    pub fn store(&mut self, msg: &Message, ts: &str) -> (u16, Option<String>) {
        match self.try_store(msg, ts) {
            Ok(()) => (status::SUCCESS, None),
            Err((s, why)) => (s, Some(why)),
        }
    }

    fn try_store(&mut self, msg: &Message, ts: &str) -> std::result::Result<(), (u16, String)> {
        let class = msg.text(tags::AFFECTED_SOP_CLASS_UID);
        let instance = msg.text(tags::AFFECTED_SOP_INSTANCE_UID);
        if !self.accepted_classes.contains(&class) {
            return Err((
                status::SOP_CLASS_NOT_SUPPORTED,
                format!("SOP class {class} is not received here"),
            ));
        }
        if !valid_uid(&instance) {
            return Err((
                status::CANNOT_UNDERSTAND,
                "AffectedSOPInstanceUID (0000,1000) is not a valid UID".into(),
            ));
        }
        let Some(data) = &msg.data else {
            return Err((
                status::CANNOT_UNDERSTAND,
                "C-STORE without a data set".into(),
            ));
        };
        let replaced = self
            .objects
            .iter()
            .position(|o| o.sop_instance_uid == instance);
        if replaced.is_none() && self.objects.len() >= self.limits.max_objects_per_association {
            return Err((
                status::OUT_OF_RESOURCES,
                format!(
                    "more than {} objects in one association",
                    self.limits.max_objects_per_association
                ),
            ));
        }
        if self.bytes + data.len() as u64 > self.limits.max_association_bytes {
            return Err((
                status::OUT_OF_RESOURCES,
                format!(
                    "more than {} bytes in one association",
                    self.limits.max_association_bytes
                ),
            ));
        }
        let obj = dimse::read_data_set(data, ts)
            .map_err(|e| (status::CANNOT_UNDERSTAND, format!("{instance}: {e}")))?;
        let own_class = text_of(&obj, tags::SOP_CLASS_UID);
        let own_instance = text_of(&obj, tags::SOP_INSTANCE_UID);
        if own_class != class || own_instance != instance {
            return Err((
                status::DATA_SET_MISMATCH,
                format!(
                    "{instance}: the data set's SOPClassUID/SOPInstanceUID ({own_class}, {own_instance}) differ from the command's"
                ),
            ));
        }
        let modality = text_of(&obj, tags::MODALITY);
        let prefix = match class.as_str() {
            dimse::CT_IMAGE_STORAGE => "CT",
            dimse::RT_STRUCTURE_SET_STORAGE => "RS",
            dimse::RT_PLAN_STORAGE => "RP",
            dimse::RT_DOSE_STORAGE => "RD",
            _ => "OBJ",
        };
        let file_name = format!("{prefix}.{instance}.dcm");
        let path = self.dir.join(&file_name);
        write_part10(&path, &class, &instance, ts, data)
            .map_err(|e| (status::OUT_OF_RESOURCES, format!("{instance}: {e}")))?;
        let received = Received {
            sop_class_uid: class,
            sop_instance_uid: instance,
            study_instance_uid: text_of(&obj, tags::STUDY_INSTANCE_UID),
            series_instance_uid: text_of(&obj, tags::SERIES_INSTANCE_UID),
            modality,
            file_name,
            bytes: data.len() as u64,
        };
        match replaced {
            Some(i) => {
                self.bytes -= self.objects[i].bytes;
                self.objects[i] = received;
            }
            None => self.objects.push(received),
        }
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Move the staging folder to `dest` (which must not exist) by one rename. The caller has
    /// checked the contents.
    pub fn commit(mut self, dest: &Path) -> Result<PathBuf> {
        if dest.exists() {
            return Err(Error::Output {
                path: dest.to_path_buf(),
                reason: "exists already; a received study never replaces anything".into(),
            });
        }
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        std::fs::rename(&self.dir, dest).map_err(|e| Error::io(dest, e))?;
        self.committed = true;
        // The shared staging root goes when it is empty (fails harmlessly otherwise).
        if let Some(root) = self.dir.parent() {
            let _ = std::fs::remove_dir(root);
        }
        Ok(dest.to_path_buf())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
            // The shared staging root goes too when it is empty (fails harmlessly otherwise).
            if let Some(root) = self.dir.parent() {
                let _ = std::fs::remove_dir(root);
            }
        }
    }
}

/// Remove staging folders left by rtopt processes that no longer run (killed mid-transfer):
/// folders of `<parent>/.rtopt-staging/` named `<pid>-<n>` whose pid is not alive.
pub fn remove_stale_staging(parent: &Path) -> Result<usize> {
    let root = parent.join(STAGING_DIR);
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            std::fs::remove_dir_all(e.path()).map_err(|err| Error::io(e.path(), err))?;
            removed += 1;
        }
    }
    let _ = std::fs::remove_dir(&root);
    Ok(removed)
}

/// Write a Part-10 file: preamble, `DICM`, the meta group, and the data set's bytes as
/// received (not re-encoded).
fn write_part10(path: &Path, class: &str, instance: &str, ts: &str, data: &[u8]) -> Result<()> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(instance)
        .transfer_syntax(ts)
        .implementation_class_uid(crate::io::dicom::uid::derive_uid(
            "implementation",
            &[b"rtopt"],
        ))
        .implementation_version_name(concat!("RTOPT_", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Invalid(format!("cannot build a file meta group: {e}")))?;
    let mut out = Vec::with_capacity(data.len() + 512);
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| Error::Invalid(format!("cannot write a file meta group: {e}")))?;
    out.extend_from_slice(data);
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(&out)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Answer a C-STORE request received on `assoc`: store it into `staging` and send the
/// C-STORE response. Returns the status and why it failed, when it did.
pub fn answer_store<S, A>(
    assoc: &mut A,
    msg: &Message,
    staging: &mut Staging,
) -> Result<(u16, Option<String>)>
where
    S: std::io::Read + std::io::Write + CloseSocket,
    A: SyncAssociation<S>,
{
    let class = msg.text(tags::AFFECTED_SOP_CLASS_UID);
    let instance = msg.text(tags::AFFECTED_SOP_INSTANCE_UID);
    let message_id = msg.u16(tags::MESSAGE_ID, "MessageID")?;
    let (st, why) = match dimse::context_transfer_syntax(assoc, msg.context_id) {
        Some(ts) => staging.store(msg, &ts),
        None => (
            status::CANNOT_UNDERSTAND,
            Some(format!(
                "presentation context {} not accepted",
                msg.context_id
            )),
        ),
    };
    let rsp = dimse::response(
        command::C_STORE_RSP,
        &class,
        Some(&instance),
        message_id,
        st,
    );
    dimse::send(assoc, msg.context_id, &rsp, None)?;
    Ok((st, why))
}

#[cfg(test)]
mod tests {
    use super::valid_uid;

    #[test]
    fn uids_that_could_leave_a_folder_are_refused() {
        assert!(valid_uid("1.2.840.10008.5.1.4.1.1.2"));
        assert!(!valid_uid("../../etc"));
        assert!(!valid_uid("1..2"));
        assert!(!valid_uid(""));
        assert!(!valid_uid("1.2/3"));
        assert!(!valid_uid(&"1".repeat(65)));
    }
}
