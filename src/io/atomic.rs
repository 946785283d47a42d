//! Atomic output: write to a temporary file in the destination folder, fsync, then rename,
//! so a reader never sees a half-written file; and the same for a whole output folder
//! ([`write_dir`]), so a plan folder is either absent, the previous complete plan, or the new
//! complete plan.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::outputs::{check_replaceable_dir, Replace, MANIFEST_NAME};

/// Write `bytes` to `path` atomically (temp file in the same folder + rename).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Create the folder `out_dir` atomically: `fill` writes every file into a hidden sibling
/// `.<name>.partial-<pid>`, rtopt's manifest ([`crate::outputs::MANIFEST_NAME`]) is added,
/// and the folder is put in place by one rename (or, when `out_dir` already exists, one
/// atomic exchange on Linux, `renameat2(RENAME_EXCHANGE)`).
///
/// An existing `out_dir` is replaced only when [`crate::outputs::check_replaceable_dir`]
/// allows it under `replace` (empty, or a previous rtopt output with `PreviousOutput`); this
/// is checked before `fill` runs and again just before the rename, so nothing rtopt did not
/// create is ever replaced, moved or hidden.
///
/// Before writing, hidden `.<name>.partial-<pid>` / `.<name>.old-<pid>` folders left by a
/// process that no longer runs (killed during an earlier export) are removed; if such a process
/// died between the two renames of the non-Linux fallback, its complete `.old-` folder is put
/// back first. Readers therefore never see a partial plan folder under `out_dir`.
pub fn write_dir<F>(out_dir: &Path, replace: Replace, fill: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    check_replaceable_dir(out_dir, replace)?;
    let parent = parent_of(out_dir);
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Invalid(format!("{}: not a folder name", out_dir.display())))?;
    remove_stale(&parent, &name, out_dir)?;
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.partial-{pid}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = fill(&tmp)
        .and_then(|()| crate::outputs::manifest_json(&tmp))
        .and_then(|json| write_file(&tmp.join(MANIFEST_NAME), json.as_bytes()))
        .and_then(|()| check_replaceable_dir(out_dir, replace))
    {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // The files are fsynced by `write_file`; fsync the folder so its entries are durable too.
    if let Ok(d) = std::fs::File::open(&tmp) {
        let _ = d.sync_all();
    }
    if out_dir.exists() {
        if exchange(&tmp, out_dir).is_ok() {
            // `tmp` now holds the previous plan.
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        } else {
            let old = parent.join(format!(".{name}.old-{pid}"));
            std::fs::rename(out_dir, &old).map_err(|e| Error::io(out_dir, e))?;
            std::fs::rename(&tmp, out_dir).map_err(|e| Error::io(out_dir, e))?;
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
    } else {
        std::fs::rename(&tmp, out_dir).map_err(|e| Error::io(out_dir, e))?;
    }
    if let Ok(d) = std::fs::File::open(&parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Hidden work folders of `out_dir` left by processes that are no longer running:
/// `(path, is_old_copy)`.
fn stale_work_dirs(parent: &Path, name: &str) -> Vec<(PathBuf, bool)> {
    let partial = format!(".{name}.partial-");
    let old = format!(".{name}.old-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let (rest, is_old) = if let Some(r) = file.strip_prefix(&partial) {
            (r, false)
        } else if let Some(r) = file.strip_prefix(&old) {
            (r, true)
        } else {
            continue;
        };
        let Ok(pid) = rest.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            out.push((e.path(), is_old));
        }
    }
    out.sort();
    out
}

fn remove_stale(parent: &Path, name: &str, out_dir: &Path) -> Result<()> {
    for (path, is_old) in stale_work_dirs(parent, name) {
        if is_old && !out_dir.exists() {
            // A fallback replace died between its two renames: this is the complete previous
            // plan; put it back rather than lose it.
            std::fs::rename(&path, out_dir).map_err(|e| Error::io(&path, e))?;
        } else {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Whether a process with this id runs now. Where that cannot be told (no `/proc`), assume it
/// does, so its folders are left alone.
fn process_alive(pid: u32) -> bool {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true;
    }
    proc_root.join(pid.to_string()).exists()
}

/// Atomically swap two existing paths (Linux `renameat2(RENAME_EXCHANGE)`); an error where the
/// platform or file system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call;
    // AT_FDCWD resolves relative paths against the current directory.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "atomic exchange is Linux-only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_only_the_new_folder_and_removes_dead_leftovers() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("plan");
        write_dir(&out, Replace::PreviousOutput, |d| {
            write_file(&d.join("a.txt"), b"one")
        })
        .unwrap();
        // A leftover of a dead process (pid 0 is never a user process id in /proc).
        let stale = t.path().join(".plan.partial-0");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("a.txt"), b"half").unwrap();
        write_dir(&out, Replace::PreviousOutput, |d| {
            write_file(&d.join("a.txt"), b"two")
        })
        .unwrap();
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"two");
        let names: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["plan".to_string()]);
    }

    #[test]
    fn failed_fill_leaves_the_previous_folder() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("plan");
        write_dir(&out, Replace::PreviousOutput, |d| {
            write_file(&d.join("a.txt"), b"one")
        })
        .unwrap();
        let err = write_dir(&out, Replace::PreviousOutput, |_| {
            Err(Error::Invalid("boom".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("boom"));
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn dead_fallback_old_copy_is_restored() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("plan");
        let old = t.path().join(".plan.old-0");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("a.txt"), b"previous").unwrap();
        remove_stale(t.path(), "plan", &out).unwrap();
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"previous");
        assert!(!old.exists());
    }
}
