//! Output rules: what rtopt may write where (project issue 14, `docs/reliability.md`).
//!
//! rtopt never deletes, replaces or hides anything it did not create:
//!
//! - an output path that *is*, *contains* or *lies inside* one of the run's inputs (case folder,
//!   protocol, machine file, RT Structure Set, model) is refused;
//! - an existing output *folder* is replaced only when it is empty, or when it is a previous
//!   rtopt output and the caller asks for it ([`Replace::PreviousOutput`], `--force`). A
//!   previous output is recognised by its manifest ([`MANIFEST_NAME`]), which lists every file
//!   rtopt wrote with its SHA-256; a folder holding any file the manifest does not list, or a
//!   listed file that was changed since, is not rtopt's to replace;
//! - an existing output *file* is replaced only with [`Replace::PreviousOutput`];
//! - an existing file where a folder is to be written (or a folder where a file is to be
//!   written) is refused, never moved aside.
//!
//! The checks are cheap (path arithmetic and hashing a previous output's few files) and run
//! before any computation ([`check_output_dir`], [`check_output_file`]); the atomic writers of
//! [`crate::io::atomic`] repeat the folder check just before the final rename.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// File name of the manifest rtopt writes into every output folder.
pub const MANIFEST_NAME: &str = "rtopt-manifest.json";

/// Format tag of the manifest.
pub const MANIFEST_FORMAT: &str = "rtopt-output/1";

/// Whether an existing output may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replace {
    /// Only write where nothing exists (or an empty folder): the safe default.
    #[default]
    Never,
    /// Also replace a previous rtopt output (`--force`): a folder whose manifest matches its
    /// contents exactly, or an existing file.
    PreviousOutput,
}

impl Replace {
    /// `PreviousOutput` when `force`, else `Never`.
    pub fn from_force(force: bool) -> Self {
        if force {
            Replace::PreviousOutput
        } else {
            Replace::Never
        }
    }
}

/// One file of an output folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The manifest of an output folder. Holds no date, so reruns stay byte-identical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub rtopt_version: String,
    pub files: Vec<ManifestEntry>,
}

/// SHA-256 of a file, streamed (a listed file is never read into memory whole).
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The manifest of `dir` as JSON text: every regular file hashed (not recursive; sorted by
/// name; [`MANIFEST_NAME`] itself left out). Errors on a sub-folder or link: rtopt's output
/// folders are flat. [`crate::io::atomic::write_dir`] writes it as [`MANIFEST_NAME`].
pub fn manifest_json(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    for (name, path) in list_entries(dir)? {
        if name == MANIFEST_NAME {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if !meta.is_file() {
            return Err(Error::Output {
                path: path.clone(),
                reason: "output folders hold plain files only".into(),
            });
        }
        files.push(ManifestEntry {
            name,
            bytes: meta.len(),
            sha256: sha256_file(&path).map_err(|e| Error::io(&path, e))?,
        });
    }
    let m = Manifest {
        format: MANIFEST_FORMAT.into(),
        rtopt_version: env!("CARGO_PKG_VERSION").into(),
        files,
    };
    let text = serde_json::to_string_pretty(&m)
        .map_err(|e| Error::Invalid(format!("{MANIFEST_NAME}: {e}")))?;
    Ok(format!("{text}\n"))
}

/// Entries of a folder as (name, path), sorted by name.
fn list_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|err| Error::io(dir, err))?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    out.sort();
    Ok(out)
}

/// Largest manifest read back (a real one is well under 4 KiB).
const MANIFEST_MAX_BYTES: u64 = 1 << 20;

/// Why the existing folder `dir` may not be replaced, or `Ok(())` when it is a previous rtopt
/// output whose manifest matches its contents exactly.
fn verify_previous_output(dir: &Path) -> std::result::Result<(), String> {
    let mpath = dir.join(MANIFEST_NAME);
    let meta = match std::fs::symlink_metadata(&mpath) {
        Ok(m) if m.is_file() => m,
        _ => {
            return Err(format!(
                "is a folder that rtopt did not create (no {MANIFEST_NAME} in it); choose a new or empty folder"
            ))
        }
    };
    if meta.len() > MANIFEST_MAX_BYTES {
        return Err(format!("its {MANIFEST_NAME} is not rtopt's (too large)"));
    }
    let text = std::fs::read_to_string(&mpath).map_err(|e| format!("{MANIFEST_NAME}: {e}"))?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("its {MANIFEST_NAME} is not rtopt's ({e})"))?;
    if m.format != MANIFEST_FORMAT {
        return Err(format!(
            "its {MANIFEST_NAME} has format '{}', expected '{MANIFEST_FORMAT}'",
            m.format
        ));
    }
    let entries = list_entries(dir).map_err(|e| e.to_string())?;
    for (name, path) in &entries {
        if name == MANIFEST_NAME {
            continue;
        }
        let Some(entry) = m.files.iter().find(|f| &f.name == name) else {
            return Err(format!(
                "holds '{name}', which rtopt did not write (not in its {MANIFEST_NAME}); move it away first"
            ));
        };
        let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{name}: {e}"))?;
        if !meta.is_file() || meta.len() != entry.bytes {
            return Err(format!(
                "'{name}' was changed since rtopt wrote it; move it away first"
            ));
        }
        if sha256_file(path).map_err(|e| format!("{name}: {e}"))? != entry.sha256 {
            return Err(format!(
                "'{name}' was changed since rtopt wrote it; move it away first"
            ));
        }
    }
    Ok(())
}

/// Absolute, normalised form of `p` for comparisons: the longest existing prefix is
/// canonicalised (links resolved), the rest appended with `.` dropped and `..` applied.
pub fn resolve(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    // Lexical normalisation first, so `a/../b` does not depend on `a` existing.
    let mut lex = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                lex.pop();
            }
            other => lex.push(other.as_os_str()),
        }
    }
    let mut rest = Vec::new();
    let mut head = lex.clone();
    loop {
        if let Ok(c) = head.canonicalize() {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (head.file_name().map(|n| n.to_os_string()), head.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                head = parent.to_path_buf();
            }
            _ => return lex,
        }
    }
}

/// Refuse an output path that is, contains or lies inside one of `inputs`.
pub fn check_not_input(out: &Path, inputs: &[PathBuf]) -> Result<()> {
    let o = resolve(out);
    for inp in inputs {
        let i = resolve(inp);
        let relation = if o == i {
            Some("is the input")
        } else if o.starts_with(&i) {
            Some("lies inside the input")
        } else if i.starts_with(&o) {
            Some("contains the input")
        } else {
            None
        };
        if let Some(rel) = relation {
            return Err(Error::Output {
                path: out.to_path_buf(),
                reason: format!(
                    "{rel} {}; rtopt never overwrites its inputs, choose another output path",
                    inp.display()
                ),
            });
        }
    }
    Ok(())
}

/// Whether the folder `out` may be (re)written under `replace`: absent, empty, or (with
/// [`Replace::PreviousOutput`]) a previous rtopt output matching its manifest.
pub fn check_replaceable_dir(out: &Path, replace: Replace) -> Result<()> {
    let meta = match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(out, e)),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(Error::Output {
            path: out.to_path_buf(),
            reason: "is a symbolic link; rtopt does not write through links, give the real folder"
                .into(),
        });
    }
    if !meta.is_dir() {
        return Err(Error::Output {
            path: out.to_path_buf(),
            reason: "is an existing file; rtopt writes an output folder here and never moves or replaces a file it did not create".into(),
        });
    }
    if list_entries(out)?.is_empty() {
        return Ok(());
    }
    if let Err(why) = verify_previous_output(out) {
        return Err(Error::Output {
            path: out.to_path_buf(),
            reason: why,
        });
    }
    match replace {
        Replace::PreviousOutput => Ok(()),
        Replace::Never => Err(Error::Output {
            path: out.to_path_buf(),
            reason: "holds a previous rtopt output; give --force to replace it".into(),
        }),
    }
}

/// All checks for an output folder, before any computation: not an input, and replaceable.
pub fn check_output_dir(out: &Path, inputs: &[PathBuf], replace: Replace) -> Result<()> {
    check_not_input(out, inputs)?;
    check_replaceable_dir(out, replace)
}

/// All checks for an output file, before any computation: not an input (nor inside one), not
/// a folder, and absent unless `replace` is [`Replace::PreviousOutput`].
pub fn check_output_file(out: &Path, inputs: &[PathBuf], replace: Replace) -> Result<()> {
    check_not_input(out, inputs)?;
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(out, e)),
        Ok(m) if m.is_dir() => Err(Error::Output {
            path: out.to_path_buf(),
            reason: "is an existing folder; give a file name".into(),
        }),
        Ok(m) if m.file_type().is_symlink() => Err(Error::Output {
            path: out.to_path_buf(),
            reason: "is a symbolic link; rtopt does not write through links".into(),
        }),
        Ok(_) => match replace {
            Replace::PreviousOutput => Ok(()),
            Replace::Never => Err(Error::Output {
                path: out.to_path_buf(),
                reason: "exists; give --force to replace it".into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_to_inputs_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let case = t.path().join("case");
        std::fs::create_dir_all(&case).unwrap();
        let inputs = vec![case.clone()];
        for (out, word) in [
            (case.clone(), "is the input"),
            (case.join("plan"), "lies inside the input"),
            (t.path().to_path_buf(), "contains the input"),
            (case.join("x/../."), "is the input"),
        ] {
            let e = check_not_input(&out, &inputs).unwrap_err().to_string();
            assert!(e.contains(word), "{out:?}: {e}");
        }
        check_not_input(&t.path().join("plan"), &inputs).unwrap();
    }

    #[test]
    fn only_a_matching_manifest_makes_a_folder_replaceable() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        check_replaceable_dir(&out, Replace::Never).unwrap(); // empty
        std::fs::write(out.join("a.txt"), b"one").unwrap();
        let e = check_replaceable_dir(&out, Replace::PreviousOutput).unwrap_err();
        assert!(e.to_string().contains("did not create"), "{e}");
        std::fs::write(out.join(MANIFEST_NAME), manifest_json(&out).unwrap()).unwrap();
        let e = check_replaceable_dir(&out, Replace::Never).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        check_replaceable_dir(&out, Replace::PreviousOutput).unwrap();
        std::fs::write(out.join("a.txt"), b"two").unwrap();
        let e = check_replaceable_dir(&out, Replace::PreviousOutput).unwrap_err();
        assert!(e.to_string().contains("'a.txt' was changed"), "{e}");
        std::fs::write(out.join("a.txt"), b"one").unwrap();
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        let e = check_replaceable_dir(&out, Replace::PreviousOutput).unwrap_err();
        assert!(
            e.to_string()
                .contains("'notes.txt', which rtopt did not write"),
            "{e}"
        );
    }
}
