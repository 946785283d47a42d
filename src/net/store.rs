//! C-STORE SCU (`rtopt push`): sends DICOM Part-10 files to a node on one association and
//! reports each object's status. A file whose transfer syntax the node accepted goes out as
//! its bytes on disk (no re-encoding, pixel data byte for byte); otherwise it is re-encoded
//! to a native syntax the node accepted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTable;

use dicom_ul::association::{CloseSocket, SyncAssociation};

use super::association::{with_association, OnAssociation, Proposal};
use super::config::{NetConfig, Node};
use super::dimse::{
    self, command, data_set_type, net_error, read_data_set, status_ok, ui, us, with_node,
    EXPLICIT_VR_LE, IMPLICIT_VR_LE,
};
use crate::error::{Error, Result};

/// One sent (or unsendable) object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOutcome {
    pub file: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The node's C-STORE status; `None`: not sent (see `note`).
    pub status: Option<u16>,
    /// Why an object was not sent, or the status' meaning.
    pub note: String,
}

impl StoreOutcome {
    /// Stored (success or warning).
    pub fn ok(&self) -> bool {
        self.status.is_some_and(status_ok)
    }
}

impl std::fmt::Display for StoreOutcome {
    /// `RTPLAN.dcm 1.2.3...: status 0000 (stored)`; UIDs and file names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self.status {
            Some(s) => write!(
                f,
                "{name} {}: status {s:04X} ({})",
                self.sop_instance_uid, self.note
            ),
            None => write!(
                f,
                "{name} {}: not sent ({})",
                self.sop_instance_uid, self.note
            ),
        }
    }
}

/// The outcome of a push.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub node: String,
    pub outcomes: Vec<StoreOutcome>,
    /// Data-set bytes sent.
    pub bytes: u64,
    /// Wall time from opening the association to its release, s.
    pub seconds: f64,
}

impl PushReport {
    /// Every object stored.
    pub fn all_ok(&self) -> bool {
        self.outcomes.iter().all(StoreOutcome::ok)
    }

    /// An error naming the objects that were not stored, when any.
    pub fn check(&self) -> Result<()> {
        let failed: Vec<String> = self
            .outcomes
            .iter()
            .filter(|o| !o.ok())
            .map(|o| o.to_string())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(net_error(
                &self.node,
                format!(
                    "{} of {} objects not stored: {}",
                    failed.len(),
                    self.outcomes.len(),
                    failed.join("; ")
                ),
            ))
        }
    }
}

/// A Part-10 file's meta information and where its data set starts.
#[derive(Debug, Clone)]
pub struct Part10 {
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    /// Byte offset of the data set (after preamble, magic and meta group).
    pub data_offset: u64,
}

/// Read a Part-10 file's meta group (not its data set).
pub fn read_part10_meta(path: &Path) -> Result<Part10> {
    let bad = |reason: String| Error::Config {
        path: path.to_path_buf(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = std::io::BufReader::new(f);
    let mut preamble = [0u8; 128];
    r.read_exact(&mut preamble)
        .map_err(|_| bad("not a DICOM Part-10 file (shorter than its preamble)".into()))?;
    let mut counted = CountingReader { inner: r, n: 0 };
    let meta = FileMetaTable::from_reader(&mut counted)
        .map_err(|e| bad(format!("not a DICOM Part-10 file: {e}")))?;
    Ok(Part10 {
        path: path.to_path_buf(),
        sop_class_uid: meta.media_storage_sop_class_uid().to_string(),
        sop_instance_uid: meta.media_storage_sop_instance_uid().to_string(),
        transfer_syntax: meta.transfer_syntax().to_string(),
        data_offset: 128 + counted.n,
    })
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// The DICOM files of `paths`: a file as given, a folder's regular files that are Part-10
/// DICOM (not hidden, not recursive), each folder sorted by name.
pub fn dicom_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && !f
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                        && has_dicm_magic(f)
                })
                .collect();
            v.sort();
            out.extend(v);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ));
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "no DICOM files in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(out)
}

fn has_dicm_magic(p: &Path) -> bool {
    let mut b = [0u8; 132];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut b))
        .map(|()| &b[128..] == b"DICM")
        .unwrap_or(false)
}

/// The data set of `file` encoded in `ts`: its bytes on disk when `ts` is its own syntax,
/// else decoded and re-encoded.
fn data_set_bytes(file: &Part10, ts: &str, max_object_bytes: u64) -> Result<Vec<u8>> {
    let len = std::fs::metadata(&file.path)
        .map_err(|e| Error::io(&file.path, e))?
        .len();
    if len > max_object_bytes.saturating_add(file.data_offset) {
        return Err(Error::Invalid(format!(
            "{}: {len} bytes, above the limit of {max_object_bytes} bytes per object",
            file.path.display()
        )));
    }
    let bytes = std::fs::read(&file.path).map_err(|e| Error::io(&file.path, e))?;
    // The file may have changed since its meta group was read: no slicing past its end.
    let data = bytes.get(file.data_offset as usize..).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: shorter than its file meta group (changed while being sent?)",
            file.path.display()
        ))
    })?;
    if ts == file.transfer_syntax {
        return Ok(data.to_vec());
    }
    let obj = read_data_set(data, &file.transfer_syntax)
        .map_err(|e| with_node(e, &file.path.display().to_string()))?;
    dimse::write_data_set(&obj, ts).map_err(|e| with_node(e, &file.path.display().to_string()))
}

/// What a status means, in a few words.
pub fn status_meaning(status: u16) -> &'static str {
    match status {
        0x0000 => "stored",
        0x0001 | 0xB000..=0xBFFF => "stored with a warning",
        0xA700..=0xA7FF => "refused: out of resources",
        0xA900..=0xA9FF => "error: data set does not match SOP class",
        0xC000..=0xCFFF => "error: cannot understand",
        0x0122 => "refused: SOP class not supported",
        0x0124 => "refused: not authorised",
        _ => "failed",
    }
}

/// C-STORE `files` to `node` on one association; every file gets an outcome. An error is
/// returned only when no association could be opened or it broke off (the outcomes so far
/// are lost with it: the caller reruns the push; storing the same instance again is
/// harmless at a PACS).
pub fn push(config: &NetConfig, node: &Node, files: &[PathBuf]) -> Result<PushReport> {
    let metas: Vec<Part10> = files
        .iter()
        .map(|f| read_part10_meta(f))
        .collect::<Result<_>>()?;
    let mut proposal = Proposal::default();
    for m in &metas {
        let mut tss = vec![m.transfer_syntax.clone()];
        for t in [EXPLICIT_VR_LE, IMPLICIT_VR_LE] {
            if !tss.iter().any(|x| x == t) {
                tss.push(t.to_string());
            }
        }
        // One context per (class, own syntax) pair.
        if !proposal
            .contexts
            .iter()
            .any(|(a, t)| *a == m.sop_class_uid && t[0] == tss[0])
        {
            proposal.contexts.push((m.sop_class_uid.clone(), tss));
        }
    }
    if proposal.contexts.len() > 128 {
        return Err(Error::Invalid(format!(
            "{} distinct SOP classes and transfer syntaxes: above the 128 presentation contexts of one association",
            proposal.contexts.len()
        )));
    }
    let label = node.label();
    let start = Instant::now();
    let op = Store {
        config,
        label: &label,
        metas: &metas,
    };
    let (outcomes, bytes) = with_association(config, node, &proposal, op)?;
    Ok(PushReport {
        node: label,
        outcomes,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

struct Store<'a> {
    config: &'a NetConfig,
    label: &'a str,
    metas: &'a [Part10],
}

impl OnAssociation for Store<'_> {
    /// The outcomes and the data-set bytes sent.
    type Output = (Vec<StoreOutcome>, u64);

    fn run<S, A>(self, assoc: &mut A) -> Result<Self::Output>
    where
        S: std::io::Read + std::io::Write + CloseSocket,
        A: SyncAssociation<S>,
    {
        let Store {
            config,
            label,
            metas,
        } = self;
        let mut outcomes = Vec::with_capacity(metas.len());
        let mut bytes_sent = 0u64;
        for (i, m) in metas.iter().enumerate() {
            let Some((ctx, ts)) =
                dimse::find_context(&*assoc, &m.sop_class_uid, Some(&m.transfer_syntax))
            else {
                outcomes.push(StoreOutcome {
                    file: m.path.clone(),
                    sop_class_uid: m.sop_class_uid.clone(),
                    sop_instance_uid: m.sop_instance_uid.clone(),
                    status: None,
                    note: "the node accepted no presentation context for its SOP class".into(),
                });
                continue;
            };
            let data = match data_set_bytes(m, &ts, config.limits.max_object_bytes) {
                Ok(d) => d,
                Err(e) => {
                    outcomes.push(StoreOutcome {
                        file: m.path.clone(),
                        sop_class_uid: m.sop_class_uid.clone(),
                        sop_instance_uid: m.sop_instance_uid.clone(),
                        status: None,
                        note: e.to_string(),
                    });
                    continue;
                }
            };
            let message_id = (i % 65535 + 1) as u16;
            let rq = dimse::command_set(vec![
                ui(tags::AFFECTED_SOP_CLASS_UID, &m.sop_class_uid),
                us(tags::COMMAND_FIELD, command::C_STORE_RQ),
                us(tags::MESSAGE_ID, message_id),
                us(tags::PRIORITY, 0),
                data_set_type(true),
                ui(tags::AFFECTED_SOP_INSTANCE_UID, &m.sop_instance_uid),
            ]);
            dimse::send(assoc, ctx, &rq, Some(&data)).map_err(|e| with_node(e, label))?;
            bytes_sent += data.len() as u64;
            let rsp = dimse::expect_message(
                assoc,
                config.limits.max_object_bytes,
                label,
                &format!("object {} of {}", i + 1, metas.len()),
            )?;
            if rsp.command_field().map_err(|e| with_node(e, label))? != command::C_STORE_RSP {
                return Err(net_error(label, "answered a C-STORE with another message"));
            }
            let status = rsp.status().map_err(|e| with_node(e, label))?;
            outcomes.push(StoreOutcome {
                file: m.path.clone(),
                sop_class_uid: m.sop_class_uid.clone(),
                sop_instance_uid: m.sop_instance_uid.clone(),
                status: Some(status),
                note: status_meaning(status).into(),
            });
        }
        Ok((outcomes, bytes_sent))
    }
}
