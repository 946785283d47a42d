//! Reliability (project issue 9, docs/reliability.md): memory budget refused up front,
//! atomic outputs under SIGKILL, and no patient name or ID in logs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use rtopt::io::dicom::read::{self as dicom, tags};
use rtopt::{Case, Error, LoadOptions};

// ---- memory budget ----

/// TG119 needs 167 x 167 x 129 x 4 = 14,390,724 bytes of HU; a 1 MiB budget refuses it, and
/// refuses it before decoding pixels: a slice with its PixelData removed (which would fail in
/// decoding) still gives the budget error.
#[test]
fn ct_over_budget_is_refused_before_decoding() {
    let t = common::copy_tg119();
    let victim = common::ct_files(t.path())[10].clone();
    let mut f = dicom::read(&victim).expect("read");
    f.obj.remove_element(tags::PIXEL_DATA);
    f.obj.write_to_file(&victim).expect("write");

    let mut opts = LoadOptions::default();
    opts.ct.memory_budget_bytes = Some(1 << 20);
    let e = Case::load(t.path(), &opts).expect_err("over budget");
    let msg = e.to_string();
    match e {
        Error::MemoryBudget {
            needed_bytes,
            budget_bytes,
            ..
        } => {
            assert_eq!(needed_bytes, 167 * 167 * 129 * 4);
            assert_eq!(budget_bytes, 1 << 20);
        }
        other => panic!("expected MemoryBudget, got {other:?}"),
    }
    assert!(
        msg.contains("14390724") && msg.contains("167 x 167 x 129"),
        "{msg}"
    );

    // With the default budget (half the machine's memory) the same folder gets to decoding.
    let e = Case::load(t.path(), &LoadOptions::default()).expect_err("pixel data missing");
    assert!(e.to_string().contains("PixelData"), "{e}");
}

#[test]
fn default_options_carry_a_budget() {
    let b = LoadOptions::default()
        .ct
        .memory_budget_bytes
        .expect("default budget");
    // Half the machine's memory: the library never reads the environment (issue 15).
    let expected = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| rtopt::budget::parse_meminfo_total_bytes(&s))
        .map(|t| t / 2)
        .unwrap_or(rtopt::budget::FALLBACK_BUDGET_BYTES);
    assert_eq!(b, expected);
    assert_eq!(rtopt::budget::parse_budget_mb(" 100 ").unwrap(), 100 << 20);
    for bad in ["", "0", "-5", "1.5", "lots"] {
        let e = rtopt::budget::parse_budget_mb(bad).unwrap_err().to_string();
        assert!(e.contains("RTOPT_MEMORY_BUDGET_MB"), "{e}");
    }
}

/// The CLI applies the budget too (RTOPT_MEMORY_BUDGET_MB=1) and exits with the input code.
#[test]
fn cli_refuses_over_budget_ct() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .arg("inspect")
        .arg(common::tg119_dir())
        .env(rtopt::budget::BUDGET_ENV, "1")
        .output()
        .expect("run rtopt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("14390724") && stderr.contains("1048576"),
        "{stderr}"
    );
}

/// A budget that is not a number is refused by name, not ignored.
#[test]
fn cli_refuses_a_malformed_budget() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .arg("inspect")
        .arg(common::tg119_dir())
        .env(rtopt::budget::BUDGET_ENV, "lots")
        .output()
        .expect("run rtopt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("RTOPT_MEMORY_BUDGET_MB=\"lots\""),
        "{stderr}"
    );
}

// ---- atomic writes under SIGKILL ----

const CHILD_ENV: &str = "RTOPT_TEST_ATOMIC_CHILD";
const WRITE_BYTES: usize = 8 << 20;

/// Content of write number `n`: 8-byte little-endian `n`, then bytes `(n + i) % 251`.
fn payload(n: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(WRITE_BYTES);
    v.extend_from_slice(&n.to_le_bytes());
    v.extend((8..WRITE_BYTES).map(|i| ((n as usize + i) % 251) as u8));
    v
}

fn is_complete(bytes: &[u8]) -> bool {
    if bytes.len() != WRITE_BYTES {
        return false;
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[..8]);
    bytes == payload(u64::from_le_bytes(n)).as_slice()
}

/// Child side of [`kill_during_atomic_write_leaves_no_partial_file`]: rewrite the file named
/// by `RTOPT_TEST_ATOMIC_CHILD` forever, through `atomic::write_file`. Does nothing otherwise.
#[test]
#[ignore = "child process of kill_during_atomic_write_leaves_no_partial_file"]
fn atomic_writer_child() {
    let Ok(dest) = std::env::var(CHILD_ENV) else {
        return;
    };
    for n in 0u64.. {
        rtopt::io::atomic::write_file(Path::new(&dest), &payload(n)).expect("write");
    }
}

/// SIGKILL a process at pseudo-random points while it rewrites an 8 MiB file atomically:
/// the destination is always absent or complete, never partial.
#[test]
fn kill_during_atomic_write_leaves_no_partial_file() {
    let t = tempfile::tempdir().expect("tempdir");
    let dest: PathBuf = t.path().join("RTDOSE.dcm");
    let exe = std::env::current_exe().expect("test binary");
    // Fixed-seed LCG: reproducible "random" kill times between 1 and 400 ms.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut seen_complete = 0;
    for round in 0..8 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay_ms = 1 + (state >> 33) % 400;
        let mut child = Command::new(&exe)
            .args(["--exact", "atomic_writer_child", "--ignored", "--nocapture"])
            .env(CHILD_ENV, &dest)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        child.wait().expect("reap");
        match std::fs::read(&dest) {
            Ok(bytes) => {
                assert!(
                    is_complete(&bytes),
                    "round {round} (kill after {delay_ms} ms): destination has {} bytes, not a complete write",
                    bytes.len()
                );
                seen_complete += 1;
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "round {round}"),
        }
        // Anything else in the folder is a hidden temp file, never a look-alike output.
        for e in std::fs::read_dir(t.path()).expect("list") {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            assert!(
                name == "RTDOSE.dcm"
                    || (name.starts_with(".RTDOSE.dcm.") && name.ends_with(".tmp")),
                "unexpected file {name}"
            );
        }
    }
    // The kill points must include some after a finished write, or the test proved nothing.
    assert!(seen_complete > 0, "no round got past the first write");
}

// ---- the whole plan folder: absent, previous or new, never partial ----

const DIR_CHILD_ENV: &str = "RTOPT_TEST_DIR_CHILD";
/// The files of an `rtopt plan` folder (`PlannedCase::write`).
const PLAN_FILES: [&str; 4] = ["RTPLAN.dcm", "RTDOSE.dcm", "report.json", "report.html"];

/// Child side of [`kill_during_export_leaves_no_partial_plan_folder`]: rewrite the plan folder
/// named by `RTOPT_TEST_DIR_CHILD` forever through `atomic::write_dir`, every file of write `n`
/// carrying payload `n`. Does nothing otherwise.
#[test]
#[ignore = "child process of kill_during_export_leaves_no_partial_plan_folder"]
fn plan_folder_writer_child() {
    let Ok(dest) = std::env::var(DIR_CHILD_ENV) else {
        return;
    };
    for n in 0u64.. {
        let bytes = payload(n);
        rtopt::io::atomic::write_dir(
            Path::new(&dest),
            rtopt::outputs::Replace::PreviousOutput,
            |dir| {
                for f in PLAN_FILES {
                    rtopt::io::atomic::write_file(&dir.join(f), &bytes)?;
                }
                Ok(())
            },
        )
        .expect("write plan folder");
    }
}

/// SIGKILL a process at pseudo-random points while it exports a plan folder (4 files of 8 MiB)
/// again and again: the folder is always absent or holds all 4 files of one complete write;
/// what a killed export leaves is a hidden `.plan.partial-<pid>` work folder only, and the next
/// export removes it.
#[test]
fn kill_during_export_leaves_no_partial_plan_folder() {
    let t = tempfile::tempdir().expect("tempdir");
    let dest: PathBuf = t.path().join("plan");
    let exe = std::env::current_exe().expect("test binary");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut seen_complete = 0;
    let mut seen_leftover = 0;
    let mut pids = Vec::new();
    for round in 0..10 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay_ms = 20 + (state >> 33) % 600;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "plan_folder_writer_child",
                "--ignored",
                "--nocapture",
            ])
            .env(DIR_CHILD_ENV, &dest)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        pids.push(child.id());
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        if dest.exists() {
            let first = std::fs::read(dest.join(PLAN_FILES[0])).unwrap_or_default();
            assert!(
                is_complete(&first),
                "round {round} (kill after {delay_ms} ms): {} incomplete",
                PLAN_FILES[0]
            );
            for f in PLAN_FILES {
                let bytes = std::fs::read(dest.join(f))
                    .unwrap_or_else(|e| panic!("round {round}: plan folder lacks {f}: {e}"));
                assert!(bytes == first, "round {round}: {f} is from another write");
            }
            seen_complete += 1;
        }
        // Besides the plan folder: only hidden work folders of killed children (each export
        // removes those of dead processes before it starts, so they do not pile up).
        for e in std::fs::read_dir(t.path()).expect("list") {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            if name == "plan" {
                continue;
            }
            let pid = name
                .strip_prefix(".plan.partial-")
                .and_then(|p| p.parse::<u32>().ok());
            assert!(pid.is_some(), "round {round}: unexpected {name}");
            assert!(
                pids.contains(&pid.unwrap_or(0)),
                "round {round}: {name} is not a child's"
            );
            seen_leftover += 1;
        }
    }
    assert!(seen_complete > 0, "no round got past the first export");
    // One more export, in this process, cleans up what the last killed child left.
    rtopt::io::atomic::write_dir(&dest, rtopt::outputs::Replace::PreviousOutput, |dir| {
        rtopt::io::atomic::write_file(&dir.join("report.json"), b"{}")
    })
    .expect("final export");
    let names: Vec<String> = std::fs::read_dir(t.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["plan".to_string()]);
    eprintln!(
        "{seen_complete} of 10 kills found a complete plan, {seen_leftover} left a work folder"
    );
}

// ---- no patient name or ID in logs ----

use common::{SECRET_ID, SECRET_NAME};

fn assert_no_secrets(what: &str, out: &std::process::Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for secret in [SECRET_NAME, SECRET_ID, "Privacy", "SECRET"] {
            assert!(
                !text.contains(secret),
                "{what}: {stream} contains '{secret}':\n{text}"
            );
        }
    }
}

fn rtopt_verbose(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .args(args)
        .env("RUST_LOG", "trace")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run rtopt")
}

#[test]
fn inspect_does_not_log_patient_identity() {
    let t = common::copy_tg119_with_identity();
    // The secrets are really in the files (else the test proves nothing).
    let f = dicom::read(&common::ct_files(t.path())[0]).expect("read");
    assert_eq!(
        dicom::opt_str(&f.obj, tags::PATIENT_ID).as_deref(),
        Some(SECRET_ID)
    );
    let case = Case::load(t.path(), &LoadOptions::default()).expect("loads");
    assert_eq!(case.ct.meta.patient_name, SECRET_NAME);

    for json in [false, true] {
        let mut args = vec![std::ffi::OsStr::new("inspect"), t.path().as_os_str()];
        if json {
            args.push("--json".as_ref());
        }
        let out = rtopt_verbose(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OuterTarget"));
        assert_no_secrets(&format!("inspect json={json}"), &out);
    }

    // Error paths too: a broken slice makes inspect fail with a message naming the file.
    let victim = common::ct_files(t.path())[5].clone();
    let mut f = dicom::read(&victim).expect("read");
    f.obj.put(DataElement::new(
        tags::MODALITY,
        VR::CS,
        PrimitiveValue::from("MR"),
    ));
    f.obj.write_to_file(&victim).expect("write");
    let out = rtopt_verbose(&[std::ffi::OsStr::new("inspect"), t.path().as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Modality"));
    assert_no_secrets("inspect (error)", &out);
}

// `rtopt plan` with a patient name and ID in every file is checked in tests/plan.rs, which
// runs the whole pipeline once with RUST_LOG=trace and reuses the outputs.

/// The influence matrix is estimated before it is built: with a 100 MiB budget the TG119 CT
/// (14.4 MB) loads but the matrix (an upper bound of several hundred MB for 9 beams of 5 mm
/// beamlets on a 3 mm grid) is refused with the options to make it fit; nothing is written.
#[test]
fn plan_refuses_an_influence_matrix_over_budget() {
    let out_dir = tempfile::tempdir().expect("tmp");
    let out = out_dir.path().join("plan");
    let o = Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .arg("plan")
        .arg(common::tg119_dir())
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .env(rtopt::budget::BUDGET_ENV, "100")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("dose-influence matrix") && stderr.contains("coarser dose grid"),
        "{stderr}"
    );
    assert!(!out.exists(), "no output folder may appear");
}
